//! Configuration of `stratus control`, the control plane (`[control]`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::invalid::Invalid;
use crate::net::{HttpUrl, ListenAddr};
use crate::secret::Secret;
use crate::units::Duration;

/// The control plane: API listener, log storage, and how it reaches the origin.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Address to bind, e.g. `0.0.0.0:7070`.
    pub listen: ListenAddr,
    /// Directory for the embedded event log; required unless `log` names a NATS cluster.
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub data: PathBuf,
    /// Where the log lives: absent for the embedded redb log in `data` (one machine), or
    /// `nats://HOST:PORT[,HOST:PORT…]` for a JetStream stream on a NATS cluster, which lets
    /// several control replicas serve the API at once (`docs/control.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<NatsServers>,
    /// Replicas of the JetStream stream and buckets (Raft group size); defaults to the number
    /// of servers in `log`, at most 3. Used only when the stream and buckets are created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_replicas: Option<usize>,
    /// Bearer token for the API and edge subscriptions; `STRATUS_TOKEN` takes its place when
    /// unset. Without any, the API is open (fine on loopback, logged as a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Host names (without port) the API answers for while no token is configured, besides IP
    /// addresses and `localhost`; other `Host` values get 421, so a web page cannot reach an
    /// open control plane through DNS rebinding. Ignored when a token is configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// The S3 origin used to list objects for prewarm by bucket and prefix.
    #[serde(default)]
    pub origin: Option<HttpUrl>,
    /// Log entries kept after every known edge applied them; older ones are compacted.
    #[serde(default = "default_retain")]
    pub retain_entries: u64,
    /// An edge with no heartbeat for this long counts as down (not waited for by `?wait`).
    #[serde(default = "default_edge_timeout")]
    pub edge_timeout: Duration,
    /// Read-only token for `GET /metrics`; `STRATUS_METRICS_TOKEN` takes its place when unset.
    /// Without it `/metrics` needs no token (like `/healthz`); the API token is accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<Secret>,
}

fn is_empty_path(p: &std::path::Path) -> bool {
    p.as_os_str().is_empty()
}

fn default_retain() -> u64 {
    100_000
}

fn default_edge_timeout() -> Duration {
    Duration::secs(15)
}

impl ControlConfig {
    /// A control plane with defaults for everything but the listener and the data directory.
    pub fn new(listen: ListenAddr, data: PathBuf) -> Self {
        Self {
            listen,
            data,
            log: None,
            log_replicas: None,
            token: None,
            allowed_hosts: Vec::new(),
            origin: None,
            retain_entries: default_retain(),
            edge_timeout: default_edge_timeout(),
            metrics_token: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.log.is_none() && self.data.as_os_str().is_empty() {
            return Err(Invalid::new("data", "is required unless `log` names a NATS cluster"));
        }
        if let Some(r) = self.log_replicas
            && !(1..=5).contains(&r)
        {
            return Err(Invalid::new("log_replicas", "must be 1 to 5 (JetStream's limit)"));
        }
        if self.retain_entries == 0 {
            return Err(Invalid::new("retain_entries", "must be at least 1"));
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            let name = host.strip_suffix('.').unwrap_or(host);
            let ok = !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return Err(Invalid::new(
                    format!("allowed_hosts[{i}]"),
                    "must be a host name such as control.internal, without scheme or port",
                ));
            }
        }
        Ok(())
    }
}

impl ControlConfig {
    /// Replicas of the JetStream stream and buckets: `log_replicas`, or the number of servers
    /// named in `log` (at most 3).
    pub fn replicas(&self) -> usize {
        self.log_replicas.unwrap_or_else(|| self.log.as_ref().map_or(1, |l| l.0.len().min(3)))
    }
}

/// The servers of a NATS cluster: `nats://HOST:PORT[,HOST:PORT…]`. The scheme may be repeated
/// on each server (`nats://a:4222,nats://b:4222`); each server is kept as `nats://HOST:PORT`.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsServers(pub Vec<String>);

impl FromStr for NatsServers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = |why: String| format!("invalid NATS servers {s:?}: {why}");
        let text = s.trim();
        let Some(rest) = text.strip_prefix("nats://") else {
            return Err(invalid(
                "must start with nats:// (e.g. nats://127.0.0.1:4222,127.0.0.1:4223)".into(),
            ));
        };
        let mut servers = Vec::new();
        for part in rest.split(',') {
            let part = part.trim();
            let hostport = part.strip_prefix("nats://").unwrap_or(part);
            let Some((host, port)) = hostport.rsplit_once(':') else {
                return Err(invalid(format!("{part:?} has no port")));
            };
            let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                v6.parse::<std::net::Ipv6Addr>().is_ok()
            } else {
                !host.is_empty()
                    && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            };
            if !host_ok {
                return Err(invalid(format!("{part:?} has no valid host")));
            }
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(invalid(format!("{part:?} has no valid port")));
            }
            servers.push(format!("nats://{hostport}"));
        }
        if servers.len() > 32 {
            return Err(invalid("more than 32 servers".into()));
        }
        Ok(Self(servers))
    }
}

impl fmt::Display for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl fmt::Debug for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl<'de> Deserialize<'de> for NatsServers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for NatsServers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// The control plane replicas an edge follows: one URL, several separated by commas
/// (`http://a:7070,http://b:7070`), or a list in a file. The edge follows one at a time and
/// fails over to the next when a session fails.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlUrls(pub Vec<HttpUrl>);

impl ControlUrls {
    /// The first replica, the one followed first.
    pub fn first(&self) -> &HttpUrl {
        &self.0[0]
    }
}

impl FromStr for ControlUrls {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let urls = s.split(',').map(str::parse).collect::<Result<Vec<HttpUrl>, String>>()?;
        Self::try_from(urls)
    }
}

impl TryFrom<Vec<HttpUrl>> for ControlUrls {
    type Error = String;

    fn try_from(urls: Vec<HttpUrl>) -> Result<Self, String> {
        match urls.len() {
            0 => Err("at least one control plane URL is required".into()),
            n if n > 32 => Err("at most 32 control plane URLs".into()),
            _ => Ok(Self(urls)),
        }
    }
}

impl From<HttpUrl> for ControlUrls {
    fn from(url: HttpUrl) -> Self {
        Self(vec![url])
    }
}

impl fmt::Display for ControlUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<&str> = self.0.iter().map(HttpUrl::as_str).collect();
        f.write_str(&texts.join(","))
    }
}

impl fmt::Debug for ControlUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl<'de> Deserialize<'de> for ControlUrls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<HttpUrl>),
        }
        match Raw::deserialize(d)? {
            Raw::One(text) => text.parse(),
            Raw::Many(urls) => Self::try_from(urls),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Serialize for ControlUrls {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn nats_servers() {
        let ok = |s: &str, want: &[&str]| assert_eq!(s.parse::<NatsServers>().expect(s).0, want, "{s}");
        ok("nats://127.0.0.1:4222", &["nats://127.0.0.1:4222"]);
        ok("nats://a:1,b:2, nats://c.example:3", &["nats://a:1", "nats://b:2", "nats://c.example:3"]);
        ok("nats://[::1]:4222", &["nats://[::1]:4222"]);
        for bad in [
            "",
            "127.0.0.1:4222",
            "http://a:1",
            "nats://",
            "nats://a",
            "nats://a:0",
            "nats://a:x",
            "nats://a:1,",
            "nats://:1",
            "nats://a b:1",
            "nats://a:70000",
            "nats://[zz]:1",
        ] {
            assert!(bad.parse::<NatsServers>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn control_urls_from_a_list_or_commas() {
        let urls: ControlUrls = "http://a:1,https://b:2/".parse().expect("two");
        assert_eq!(urls.to_string(), "http://a:1,https://b:2");
        assert!("http://a:1,,http://b:2".parse::<ControlUrls>().is_err());
        assert!("".parse::<ControlUrls>().is_err());
        #[derive(Deserialize)]
        struct T {
            control: ControlUrls,
        }
        let t: T = toml::from_str("control = [\"http://a:1\", \"http://b:2\"]").expect("list");
        assert_eq!(t.control.0.len(), 2);
        let t: T = toml::from_str("control = \"http://a:1\"").expect("one");
        assert_eq!(t.control.first().as_str(), "http://a:1");
        assert!(toml::from_str::<T>("control = []").is_err());
    }

    proptest! {
        /// Whatever the text, parsing answers (never panics), and what it accepts prints back
        /// to text that parses to the same servers.
        #[test]
        fn nats_servers_round_trip(text in "(nats://)?[a-z0-9:.,\\[\\] ]{0,40}") {
            if let Ok(servers) = text.parse::<NatsServers>() {
                prop_assert!(!servers.0.is_empty());
                prop_assert_eq!(servers.to_string().parse::<NatsServers>(), Ok(servers));
            }
        }

        #[test]
        fn control_urls_round_trip(text in "(https?://[a-z0-9.:/]{1,12},?){0,4}") {
            if let Ok(urls) = text.parse::<ControlUrls>() {
                prop_assert_eq!(urls.to_string().parse::<ControlUrls>(), Ok(urls));
            }
        }
    }
}
