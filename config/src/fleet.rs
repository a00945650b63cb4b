//! The fleet configuration: the part of an edge's configuration that the control plane
//! distributes (`PUT /v1/config`, `config` log entries; `docs/PROTOCOL.md`). Today that is the
//! sites — hosts, origins, TTL and negative rules, key rules, timeouts — in exactly the schema
//! of `[[edge.sites]]`, so a site block moves between a file and the API unchanged. Like the
//! purge body it lives here because it is a contract between parts.

use serde::{Deserialize, Serialize};

use crate::edge::{Site, validate_sites};
use crate::invalid::Invalid;

/// Settings pushed to every edge that follows a control plane. An edge replaces its sites with
/// these and keeps every other setting from its own file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The sites, as in `[[edge.sites]]`.
    pub sites: Vec<Site>,
}

impl FleetConfig {
    /// Checks the sites with the same rules as a configuration file.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_sites(&self.sites)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expected: Option<&str>) {
        let got = serde_json::from_str::<FleetConfig>(json).map_err(|e| e.to_string()).and_then(|c| {
            let round = serde_json::to_string(&c).map_err(|e| e.to_string())?;
            let again: FleetConfig = serde_json::from_str(&round).map_err(|e| e.to_string())?;
            again.validate().map_err(|e| e.path)
        });
        assert_eq!(got.err().as_deref(), expected, "{json}");
    }

    #[test]
    fn pushed_sites_follow_the_file_rules_and_round_trip() {
        check(r#"{"sites": [{"hosts": ["a.example"], "origins": ["http://127.0.0.1:9000/demo"]}]}"#, None);
        check(
            r#"{"sites": [{"hosts": ["*"], "origins": ["http://o:1"], "ttl": [{"prefix": "/", "default": "5m"}],
                "negative": [{"status": 404, "ttl": "10s"}], "key": {"query": "sort"},
                "timeouts": {"connect": "1s", "first_byte": "2s", "total": "3s"}}]}"#,
            None,
        );
        check(r#"{"sites": []}"#, Some("sites"));
        check(r#"{"sites": [{"hosts": [], "origins": ["http://o:1"]}]}"#, Some("sites[0].hosts"));
        check(
            r#"{"sites": [{"hosts": ["a"], "origins": ["http://o:1"]}, {"hosts": ["A"], "origins": ["http://o:1"]}]}"#,
            Some("sites[1].hosts"),
        );
        check(
            r#"{"sites": [{"hosts": ["a"], "origins": ["http://o:1"], "ttl": [{"prefix": "x"}]}]}"#,
            Some("sites[0].ttl[0].prefix"),
        );
        check(
            r#"{"sites": [{"hosts": ["a"], "origins": ["http://o:1"], "negative": [{"status": 200, "ttl": "1s"}]}]}"#,
            Some("sites[0].negative[0].status"),
        );
    }
}
