//! Configuration of `stratus control`, the control plane (`[control]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// Directory for the event log and registry.
    pub data: PathBuf,
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
            token: None,
            allowed_hosts: Vec::new(),
            origin: None,
            retain_entries: default_retain(),
            edge_timeout: default_edge_timeout(),
            metrics_token: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
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
