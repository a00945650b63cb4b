//! The running edge's shared state: sites, cache, fills in flight, metrics, certificates.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::header::HeaderName;
use stratus_config::EdgeConfig;
use stratus_config::edge::{Limits, Site};
use stratus_config::protocol::{MAX_ORIGIN_HEALTH, OriginHealth};
use tokio_util::sync::CancellationToken;

use crate::cache::coalesce::{Inflight, SliceFlights};
use crate::cache::disk::bans::What;
use crate::cache::disk::tier::Disk;
use crate::cache::store::{Spill, Store};
use crate::error::Error;
use crate::fleet::follow_target::EdgeStats;
use crate::fleet::purge::PurgeRequest;
use crate::metrics::Metrics;
use crate::observe::AccessLog;
use crate::proxy::route::Router;
use crate::proxy::tls::CertStore;
use crate::upstream::Outbound;

/// The running edge's shared state.
#[derive(Debug)]
pub struct Edge {
    /// Sites by host; swapped whole on reload (see [`reload`]).
    pub(crate) router: ArcSwap<Router>,
    /// Where the running sites came from; taken by reloads only.
    pub(crate) sources: Mutex<Sources>,
    /// The cache (memory tier).
    pub store: Store,
    /// The disk tier behind it (`[edge.cache.disk]`), if any.
    pub disk: Option<Arc<Disk>>,
    /// Origin fetches in flight.
    pub inflight: Inflight,
    /// Slice fetches in flight (sites with `slice = true`).
    pub slices: SliceFlights,
    /// `cache.slice_size` in bytes.
    pub slice_size: u64,
    /// Metrics.
    pub metrics: Metrics,
    /// This cache's name in `Cache-Status`.
    pub name: String,
    /// This edge process's `edge` parameter in `CDN-Loop`: its name and a random suffix, so
    /// that a request that comes back to it is recognised whatever the other edges are called.
    pub instance: String,
    /// Largest object stored, in bytes.
    pub max_object: u64,
    /// Response headers that carry tags.
    pub tag_headers: Vec<HeaderName>,
    /// Client limits.
    pub limits: Limits,
    /// Host used for prewarming paths of catch-all sites.
    pub default_host: String,
    /// Certificates of the TLS listeners, chosen by SNI; reloaded with the sites.
    pub certs: Arc<CertStore>,
    /// Port put in `https_redirect` locations: the first TLS listener's, unless it is 443 or 0.
    pub https_port: Option<u16>,
    /// Proxies whose forwarding fields reach the origin (`trusted_proxies`).
    pub trusted_proxies: Vec<stratus_config::IpRange>,
    /// The access log (observe phase).
    pub access_log: AccessLog,
    /// Path answered `200 ok` on client listeners for load balancers; empty for none.
    pub health_path: String,
    /// Where following the control plane stands (metrics).
    pub progress: crate::fleet::follow_target::Progress,
    /// The peers of this PoP (`[edge.cluster]`), the same the sites' upstreams use.
    pub cluster: Option<Arc<crate::upstream::Cluster>>,
}

impl Edge {
    /// Builds the edge's state from its configuration (sites, store, metrics); binds nothing.
    /// Origin health probes run until `shutdown` is cancelled or the router is dropped.
    pub fn new(config: &EdgeConfig, shutdown: &CancellationToken) -> Result<Arc<Self>, Error> {
        let name = cache_name(config.id.as_deref());
        let instance = format!("{name}-{:08x}", random_u32());
        let cdn_loop = http::HeaderValue::from_str(&format!("stratus; edge={instance}"))
            .map_err(|e| Error::Origin { origin: "cdn-loop".to_owned(), reason: e.to_string() })?;
        let outbound = Outbound::for_edge(config, cdn_loop, shutdown.clone())?
            .with_origin_credentials(config.origin_access_key.as_ref(), config.origin_secret_key.as_ref());
        let tag_headers = config
            .cache
            .tag_headers
            .iter()
            .filter_map(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
            .collect();
        let default_host = config.listeners.first().map_or_else(
            || "localhost".to_owned(),
            |l| {
                if l.listen.0.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    l.listen.0.ip().to_string()
                }
            },
        );
        let disk = match &config.cache.disk {
            Some(d) => Some(Arc::new(
                Disk::open(d, config.cache.max_object_size.bytes(), config.control.is_some())
                    .map_err(|source| Error::CacheDir { path: d.path.clone(), source })?,
            )),
            None => None,
        };
        let metrics = Metrics::new(disk.is_some())?;
        let spill = disk
            .clone()
            .map(|d| Arc::new(move |k: &Arc<str>, e: &Arc<_>, fresh| d.spill(k, e, fresh)) as Spill);
        Ok(Arc::new(Self {
            router: ArcSwap::from_pointee(Router::new(&config.sites, &outbound)?),
            sources: Sources::new(config),
            store: Store::with_spill(
                config.cache.size.bytes(),
                config.cache.max_object_size.bytes().min(config.cache.size.bytes()),
                spill,
            ),
            disk,
            inflight: Inflight::default(),
            slices: SliceFlights::default(),
            slice_size: config.cache.slice_size.bytes(),
            metrics,
            instance,
            max_object: config.cache.max_object_size.bytes(),
            tag_headers,
            limits: config.limits.clone(),
            default_host,
            certs: Arc::new(CertStore::new(config)?),
            https_port: config
                .listeners
                .iter()
                .find(|l| l.tls)
                .map(|l| l.listen.0.port())
                .filter(|p| *p != 443 && *p != 0),
            trusted_proxies: config.trusted_proxies.clone(),
            access_log: AccessLog::open(&config.access_log, config.access_log_format, &name)?,
            health_path: config.health_path.clone(),
            progress: crate::fleet::follow_target::Progress::default(),
            cluster: outbound.cluster.clone(),
            name,
        }))
    }

    /// The sites in force: one atomic load, no lock. A request routes once and keeps the
    /// `SiteState` it got, so a reload never changes a request halfway.
    pub fn router(&self) -> arc_swap::Guard<Arc<Router>> {
        self.router.load()
    }

    /// Applies a purge (admin API and control plane alike); returns entries removed or marked.
    pub fn purge(&self, purge: &PurgeRequest) -> usize {
        let targets = if purge.purge_everything {
            Vec::new()
        } else {
            crate::fleet::purge::targets(purge, &self.router())
        };
        // The disk tier records the purge first, so that once it is reported done it holds
        // across restarts too.
        if let Some(disk) = &self.disk {
            let what = if purge.purge_everything {
                vec![What::All]
            } else {
                targets.iter().map(What::from).collect()
            };
            disk.ban(what, purge.soft);
        }
        let n = if purge.purge_everything {
            self.store.purge_all(purge.soft)
        } else {
            targets.iter().map(|t| self.store.purge(t, purge.soft)).sum()
        };
        tracing::info!(purged = n, soft = purge.soft, "purge applied");
        n
    }

    /// What `/metrics` shows besides the recorder's own series.
    pub fn snapshot(&self) -> crate::metrics::Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let router = self.router();
        let origins = router
            .sites()
            .iter()
            .flat_map(|s| s.upstream.health().map(|(o, up)| (s.name.to_string(), o.to_owned(), up)))
            .collect();
        let p = &self.progress;
        crate::metrics::Snapshot {
            stats: self.stats(),
            evictions: self.store.evictions(),
            origins,
            control: p.following.load(Relaxed).then(|| (p.applied.load(Relaxed), p.head.load(Relaxed))),
            access_log_dropped: self.access_log.dropped(),
            disk: self.disk.as_ref().map(|d| d.stats()),
        }
    }

    /// Counters for heartbeats and `/stats`.
    pub fn stats(&self) -> EdgeStats {
        let (requests, hits) = self.metrics.counts();
        let (served_bytes, server_errors) = self.metrics.traffic();
        EdgeStats {
            requests,
            hits,
            cache_bytes: self.store.bytes(),
            cache_entries: self.store.entries(),
            served_bytes,
            server_errors,
            origins: self
                .router()
                .sites()
                .iter()
                .flat_map(|s| {
                    s.upstream.health().map(|(o, up)| OriginHealth {
                        site: s.name.to_string(),
                        origin: o.to_owned(),
                        up,
                    })
                })
                .take(MAX_ORIGIN_HEALTH)
                .collect(),
        }
    }
}

/// Where the running sites came from, and the settings fixed at start.
#[derive(Debug)]
pub(crate) struct Sources {
    /// The configuration the edge started with: the running values of every fixed setting.
    pub(crate) started: EdgeConfig,
    /// The sites of the last good file (start or SIGHUP).
    pub(crate) file_sites: Vec<Site>,
    /// The sequence number of the control plane's configuration in force, if any.
    pub(crate) pushed: Option<u64>,
}

impl Sources {
    pub(crate) fn new(started: &EdgeConfig) -> Mutex<Self> {
        Mutex::new(Self { started: started.clone(), file_sites: started.sites.clone(), pushed: None })
    }
}

/// 32 random bits (std's per-process random hasher keys; no cryptographic need here).
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish() as u32
}

/// The cache name in `Cache-Status`: the edge id when it is a valid token, else `stratus`.
fn cache_name(id: Option<&str>) -> String {
    match id {
        Some(id)
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => "stratus".to_owned(),
    }
}
