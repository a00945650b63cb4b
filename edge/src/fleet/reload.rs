//! Reloading a running edge: SIGHUP (the file read again) and `config` entries from the control
//! plane both end here, in [`Edge::reload`] and [`Edge::apply_fleet`].
//!
//! **What reloads**: the sites — hosts, origins, `origin_host`, TTL and negative rules, key
//! rules, origin timeouts, and the sites' certificates (every certificate file is read again;
//! see `tls.rs`). A new [`Router`](crate::proxy::route::Router) is built beside the running one and
//! swapped in with one atomic store; a request routed before the swap keeps the `SiteState` it
//! started with, so in-flight responses, open client connections and the cache are untouched.
//! Sites whose configuration did not change keep their upstream client, its pooled connections
//! and origin health; the others' health probes stop with their upstream.
//! Cached objects are not purged: an object cached for a host whose origin changed stays until
//! it expires or is purged, as in Varnish after a VCL reload.
//!
//! **What needs a restart**: listeners, the admin listener, the cache section (the memory
//! tier's capacity and shards are fixed when it is built), limits (baked into the accept
//! loops), `id`, `control` and `token`. When a reloaded file changes one of them a warning
//! names it and the running value stays.
//!
//! **Precedence**: once the control plane has pushed a site configuration, its sites are in
//! force and a SIGHUP'd file's sites are checked and remembered but not applied; the file still
//! decides every other setting. An edge that restarts starts from its file and takes the
//! control plane's sites again when it registers (`docs/PROTOCOL.md`).
//!
//! **Invalid input changes nothing**: a configuration whose sites fail validation or whose
//! upstream clients cannot be built is refused with the error, and the running one stays.

use std::sync::{Arc, MutexGuard, PoisonError};

use stratus_config::EdgeConfig;
use stratus_config::edge::{Site, validate_sites, validate_sites_for_listeners};
use stratus_config::fleet::FleetConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::edge::{Edge, Sources};
use crate::error::Error;

impl Edge {
    fn sources(&self) -> MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a configuration read again from the edge's file (SIGHUP). New sites, origins
    /// and TTL rules apply to requests routed from now on; settings that need a restart are
    /// logged and left as they run. An invalid configuration changes nothing.
    pub fn reload(&self, config: &EdgeConfig) -> Result<(), Error> {
        validate_sites(&config.sites).map_err(Error::InvalidSites)?;
        // Serialises reloads: two at once must not both build from the same old router.
        let mut sources = self.sources();
        for setting in needs_restart(&sources.started, config) {
            tracing::warn!(
                setting,
                "changed in the configuration file, but takes effect only after a restart; the running value stays"
            );
        }
        if let Some(seq) = sources.pushed {
            // Checked anyway, so a broken file is reported now rather than at the next restart;
            // the certificates are still those of the pushed sites.
            self.router().rebuild(&config.sites)?;
            sources.file_sites = config.sites.clone();
            tracing::info!(
                config_seq = seq,
                "configuration file reloaded; the sites pushed by the control plane stay in force"
            );
            return Ok(());
        }
        self.install(&sources, &config.sites)?;
        sources.file_sites = config.sites.clone();
        tracing::info!(sites = config.sites.len(), "configuration reloaded");
        Ok(())
    }

    /// Applies the site configuration of the control plane's log entry `seq`: its sites
    /// replace the running ones, every other setting stays. An invalid one changes nothing.
    pub fn apply_fleet(&self, seq: u64, fleet: &FleetConfig) -> Result<(), Error> {
        fleet.validate().map_err(Error::InvalidSites)?;
        let mut sources = self.sources();
        self.install(&sources, &fleet.sites)?;
        sources.pushed = Some(seq);
        tracing::info!(seq, sites = fleet.sites.len(), "site configuration from the control plane applied");
        Ok(())
    }

    /// The sequence number of the control plane's configuration in force (0: the file's).
    pub fn fleet_seq(&self) -> u64 {
        self.sources().pushed.unwrap_or(0)
    }

    /// Builds the router and the certificates for `sites` and swaps both in, or neither.
    fn install(&self, sources: &Sources, sites: &[Site]) -> Result<(), Error> {
        // Listeners stay as the edge started, so pushed sites are checked against those.
        validate_sites_for_listeners(sites, &sources.started.listeners).map_err(Error::InvalidSites)?;
        let router = self.router().rebuild(sites)?;
        // Listeners need a restart, so certificates follow the ones bound at start.
        self.certs.reload(&sources.started.listeners, sites)?;
        self.router.store(Arc::new(router));
        Ok(())
    }
}

/// The settings that differ between `running` and `new` but need a restart to change.
pub(crate) fn needs_restart(running: &EdgeConfig, new: &EdgeConfig) -> Vec<&'static str> {
    // The config types are plain data; comparing their serialized form avoids asking every
    // config type for `PartialEq`. Secrets serialize masked, so the token is compared itself.
    fn json<T: serde::Serialize>(v: &T) -> Option<serde_json::Value> {
        serde_json::to_value(v).ok()
    }
    let token = |c: &EdgeConfig| c.token.as_ref().map(|t| t.expose().to_owned());
    [
        ("listeners", json(&running.listeners) != json(&new.listeners)),
        ("admin", json(&running.admin) != json(&new.admin)),
        ("cache", json(&running.cache) != json(&new.cache)),
        ("limits", json(&running.limits) != json(&new.limits)),
        ("control", json(&running.control) != json(&new.control)),
        // The resolver (and its cache) is shared by every router the edge builds.
        ("dns", json(&running.dns) != json(&new.dns)),
        ("trusted_proxies", running.trusted_proxies != new.trusted_proxies),
        // The peers and their clients are shared by every router the edge builds.
        ("cluster", json(&running.cluster) != json(&new.cluster)),
        ("id", running.id != new.id),
        ("access_log", running.access_log != new.access_log),
        ("access_log_format", running.access_log_format != new.access_log_format),
        ("health_path", running.health_path != new.health_path),
        ("token", token(running) != token(new)),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

/// Applies each configuration that arrives on `reloads` until `shutdown` or until every
/// sender is gone. Errors are logged; the running configuration stays.
pub(crate) async fn serve(
    edge: Arc<Edge>,
    mut reloads: mpsc::Receiver<EdgeConfig>,
    shutdown: CancellationToken,
) {
    loop {
        let config = tokio::select! {
            () = shutdown.cancelled() => return,
            config = reloads.recv() => match config {
                Some(config) => config,
                None => return,
            },
        };
        if let Err(e) = edge.reload(&config) {
            tracing::error!(error = %e, "reload refused; the running configuration stays");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hosts: &[&str]) -> EdgeConfig {
        let mut c = EdgeConfig::simple(
            "127.0.0.1:0".parse().expect("listen"),
            "http://127.0.0.1:1".parse().expect("origin"),
        );
        c.sites[0].hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        c
    }

    fn routes(edge: &Edge, host: &str) -> bool {
        edge.router().route(host).is_some()
    }

    #[test]
    fn settings_that_need_a_restart_are_named() {
        let a = config(&["a"]);
        let mut b = config(&["b"]);
        assert!(needs_restart(&a, &b).is_empty(), "sites reload");
        b.cache.size = stratus_config::ByteSize::mib(1);
        b.limits.max_connections = 3;
        b.listeners[0].listen = "127.0.0.1:9".parse().expect("listen");
        b.token = Some(stratus_config::Secret::new("x"));
        assert_eq!(needs_restart(&a, &b), vec!["listeners", "cache", "limits", "token"]);
    }

    #[tokio::test]
    async fn file_reloads_and_pushed_sites_take_turns_by_precedence() {
        let edge = Edge::new(&config(&["a"]), &Default::default()).expect("edge");
        let before = edge.router().route("a").cloned().expect("site a");
        edge.reload(&config(&["a", "b"])).expect("reload");
        assert!(routes(&edge, "b"));
        // A request routed before the reload keeps its site; the store did not change.
        assert_eq!(before.cfg.hosts, vec!["a".to_owned()]);

        // An invalid file and one whose upstream cannot be built change nothing.
        let mut bad = config(&["c"]);
        bad.sites[0].ttl.push(stratus_config::edge::TtlRule {
            prefix: "x".into(),
            default: None,
            min: None,
            max: None,
        });
        assert!(matches!(edge.reload(&bad), Err(Error::InvalidSites(_))));
        let mut unbuildable = config(&["c"]);
        unbuildable.sites[0].ca_file = Some("/nonexistent/ca.pem".into());
        assert!(edge.reload(&unbuildable).is_err());
        assert!(routes(&edge, "b") && !routes(&edge, "c"));

        // The control plane's sites win over the file's until the edge restarts.
        let pushed = FleetConfig { sites: config(&["p"]).sites };
        edge.apply_fleet(7, &pushed).expect("apply");
        assert!(routes(&edge, "p") && !routes(&edge, "a"));
        assert_eq!(edge.fleet_seq(), 7);
        edge.reload(&config(&["f"])).expect("file reload");
        assert!(routes(&edge, "p") && !routes(&edge, "f"));
        assert!(edge.apply_fleet(8, &FleetConfig { sites: unbuildable.sites.clone() }).is_err());
        // Pushed sites that redirect to HTTPS on an edge without a TLS listener would send
        // clients nowhere.
        let mut redirect = config(&["r"]);
        redirect.sites[0].https_redirect = true;
        let refused = edge.apply_fleet(9, &FleetConfig { sites: redirect.sites });
        assert!(matches!(refused, Err(Error::InvalidSites(_))), "{refused:?}");
        assert!(routes(&edge, "p") && !routes(&edge, "r"));
        assert!(routes(&edge, "p"));
        assert_eq!(edge.fleet_seq(), 7);
    }
}
