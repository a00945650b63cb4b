//! The purge body: one wire type for the control API, the control plane's log entries, the
//! edge admin API and purge steps in load-test scenarios (`docs/PROTOCOL.md`, "Purge body").
//! It lives here, beside the configuration types, because it is a contract between parts and
//! no part may reach into another's crate.

use serde::{Deserialize, Serialize};

/// A purge. Every field is optional; at least one target must be given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PurgeRequest {
    /// URLs (`http://host/path`, or `/path` for every host).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// `host/path-prefix`, or `/path-prefix` for every host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Surrogate keys / cache tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Host names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Objects of an S3 origin, mapped by each edge to paths on the sites in front of their bucket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectRef>,
    /// Everything in every cache.
    pub purge_everything: bool,
    /// Mark stale instead of removing.
    pub soft: bool,
}

/// An object in an S3 bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

impl PurgeRequest {
    /// Whether the request names no target at all.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.prefixes.is_empty()
            && self.tags.is_empty()
            && self.hosts.is_empty()
            && self.objects.is_empty()
            && !self.purge_everything
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_round_trips_with_only_the_fields_set() {
        let p = PurgeRequest { tags: vec!["blog".into()], soft: true, ..PurgeRequest::default() };
        let json = serde_json::to_string(&p).expect("serialize");
        assert_eq!(json, r#"{"tags":["blog"],"purge_everything":false,"soft":true}"#);
        assert_eq!(serde_json::from_str::<PurgeRequest>(&json).expect("parse"), p);
        assert!(serde_json::from_str::<PurgeRequest>(r#"{"urls":[]}"#).is_err(), "unknown field accepted");
        assert!(PurgeRequest::default().is_empty() && !p.is_empty());
    }
}
