//! Configuration of the edge's way to its origins: TLS trust, connection pools, health checks
//! (per site) and DNS (`[edge.dns]`, shared by every site). Re-exported from [`crate::edge`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;
use crate::units::Duration;

/// Which certificate authorities an HTTPS origin's certificate may chain to (besides `ca_file`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaRoots {
    /// The Mozilla root store compiled into the binary (`webpki-roots`): the same on every
    /// machine, works in minimal containers without `/etc/ssl`.
    #[default]
    Webpki,
    /// The operating system's store (`/etc/ssl/certs` and friends), read at start and reload.
    System,
    /// None: only the site's `ca_file` (a private CA).
    None,
}

/// Timeouts towards a site's origins.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginTimeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// From the request sent to the response head.
    pub first_byte: Duration,
    /// The whole response, body included.
    pub total: Duration,
}

impl Default for OriginTimeouts {
    fn default() -> Self {
        Self { connect: Duration::secs(5), first_byte: Duration::secs(30), total: Duration::secs(300) }
    }
}

/// Connections to each origin of a site.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginPool {
    /// Requests in flight to one origin at most (with HTTP/1.1 that is its open connections;
    /// HTTP/2 multiplexes them over fewer). More wait up to the connect timeout, then fail over.
    pub max_connections: usize,
    /// Idle keep-alive connections kept per origin; 0 opens a connection per request.
    pub max_idle: usize,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
}

impl Default for OriginPool {
    fn default() -> Self {
        Self { max_connections: 256, max_idle: 32, idle_timeout: Duration::secs(60) }
    }
}

/// Health checks of a site's origins. Requests go to the first healthy origin in order; when
/// none is healthy they try every origin in order anyway.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Active checks: `GET` this path on every origin each `interval`; a 2xx or 3xx answer
    /// within `timeout` passes. Off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between probes of one origin.
    pub interval: Duration,
    /// A probe that takes longer fails.
    pub timeout: Duration,
    /// Consecutive passed probes that bring a down origin back.
    pub healthy_threshold: u32,
    /// Consecutive failed probes that take an origin down.
    pub unhealthy_threshold: u32,
    /// Passive checks: this many consecutive failed requests (no connection, TLS or DNS
    /// failure, timeout, broken response) take an origin down; 0 turns passive checks off.
    pub max_fails: u32,
    /// How long an origin taken down by passive checks is skipped before it is tried again.
    pub fail_timeout: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            path: None,
            interval: Duration::secs(5),
            timeout: Duration::secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            max_fails: 3,
            fail_timeout: Duration::secs(10),
        }
    }
}

/// How origin host names are resolved (`[edge.dns]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Name servers (`IP:PORT`) asked over UDP, then TCP for truncated answers. Empty: the
    /// system configuration (`/etc/resolv.conf`). `/etc/hosts` is read first either way.
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for one answer.
    pub timeout: Duration,
    /// Queries per name server before giving up.
    pub attempts: usize,
}

impl Default for Dns {
    fn default() -> Self {
        Self { nameservers: Vec::new(), timeout: Duration::secs(2), attempts: 2 }
    }
}

impl Health {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if let Some(path) = &self.path
            && !path.starts_with('/')
        {
            return Err(Invalid::new("path", "must start with /"));
        }
        if self.interval.get().is_zero() {
            return Err(Invalid::new("interval", "must be greater than 0"));
        }
        if self.timeout.get().is_zero() {
            return Err(Invalid::new("timeout", "must be greater than 0"));
        }
        if self.healthy_threshold == 0 {
            return Err(Invalid::new("healthy_threshold", "must be at least 1"));
        }
        if self.unhealthy_threshold == 0 {
            return Err(Invalid::new("unhealthy_threshold", "must be at least 1"));
        }
        Ok(())
    }
}

impl OriginPool {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.max_connections == 0 {
            return Err(Invalid::new("max_connections", "must be at least 1"));
        }
        Ok(())
    }
}

impl Dns {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.timeout.get().is_zero() {
            return Err(Invalid::new("timeout", "must be greater than 0"));
        }
        if self.attempts == 0 {
            return Err(Invalid::new("attempts", "must be at least 1"));
        }
        Ok(())
    }
}

impl Invalid {
    /// The same error one level down, e.g. `interval` within `sites[0].health`.
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.path = format!("{prefix}.{}", self.path);
        self
    }
}

/// Checks a site's TLS trust settings.
pub(crate) fn validate_trust(roots: CaRoots, ca_file: Option<&PathBuf>) -> Result<(), Invalid> {
    if roots == CaRoots::None && ca_file.is_none() {
        return Err(Invalid::new(
            "ca_roots",
            "\"none\" needs a ca_file, or no HTTPS origin could be trusted",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "[edge]\nlisteners = [{ listen = \"127.0.0.1:0\" }]\n\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"https://a.example\", \"http://10.0.0.2:8080\"]\n";

    #[test]
    fn origin_keys_parse_with_safe_defaults() {
        let edge = crate::parse("t.toml", SITE).expect("valid").edge.expect("edge");
        let site = &edge.sites[0];
        assert_eq!(site.ca_roots, CaRoots::Webpki);
        assert_eq!((site.pool.max_connections, site.pool.max_idle), (256, 32));
        assert_eq!((site.health.path.as_deref(), site.health.max_fails), (None, 3));
        assert!(edge.dns.nameservers.is_empty());

        let full = format!(
            "{SITE}ca_roots = \"system\"\nca_file = \"/etc/ca.pem\"\npool = {{ max_connections = 8, max_idle = 0, idle_timeout = \"5s\" }}\n\
             health = {{ path = \"/healthz\", interval = \"1s\", max_fails = 0 }}\n\
             [edge.dns]\nnameservers = [\"127.0.0.1:5353\"]\ntimeout = \"500ms\"\n"
        );
        let edge = crate::parse("t.toml", &full).expect("valid").edge.expect("edge");
        let site = &edge.sites[0];
        assert_eq!((site.ca_roots, site.pool.max_connections, site.pool.max_idle), (CaRoots::System, 8, 0));
        assert_eq!(site.health.path.as_deref(), Some("/healthz"));
        assert_eq!(edge.dns.nameservers, vec!["127.0.0.1:5353".parse::<SocketAddr>().expect("addr")]);
    }

    #[test]
    fn origin_key_errors_are_located() {
        let cases = [
            ("health = { path = \"healthz\" }\n", "edge.sites[0].health.path: must start with /"),
            ("pool = { max_connections = 0 }\n", "edge.sites[0].pool.max_connections: must be at least 1"),
            ("ca_roots = \"none\"\n", "edge.sites[0].ca_roots: \"none\" needs a ca_file"),
            ("[edge.dns]\nattempts = 0\n", "edge.dns.attempts: must be at least 1"),
        ];
        for (extra, want) in cases {
            let got = crate::parse("t.toml", &format!("{SITE}{extra}")).expect_err(extra).to_string();
            assert!(got.contains(want), "{extra}: {got}");
        }
    }

    #[test]
    fn health_rules() {
        let ok = Health::default();
        let cases: [(Health, Option<&str>); 4] = [
            (ok.clone(), None),
            (Health { path: Some("healthz".into()), ..ok.clone() }, Some("path")),
            (Health { healthy_threshold: 0, ..ok.clone() }, Some("healthy_threshold")),
            (Health { interval: Duration::secs(0), ..ok }, Some("interval")),
        ];
        for (h, bad) in cases {
            assert_eq!(h.validate().err().map(|e| e.path), bad.map(str::to_owned));
        }
    }
}
