//! Stratus edge: the caching reverse proxy.
//!
//! `stratus edge` answers clients over HTTP/1.1 and HTTP/2 (h2c, or h2 by ALPN on TLS
//! listeners, see [`tls`]), caches origin responses in memory as
//! a shared cache (RFC 9111), coalesces concurrent misses into one origin fetch that every
//! waiter streams from, and exposes an admin API for purges and metrics.
//!
//! ```text
//! client ─► server.rs ─► pipeline.rs: route → key → lookup ─┬─ hit ─────────────► respond.rs
//!                                                           └─ miss/stale ─► coalesce.rs ◄─ fill.rs ─► upstream/ ─► origin
//!                                                                                 │ store.rs (moka + purge indexes)
//! admin ─► admin.rs (purge, metrics, stats)        control ─► follow.rs ─► target.rs
//! ```
//!
//! Module map: [`pipeline`] runs the phases for GET and HEAD and [`passthrough`] handles the
//! other methods; [`directives`] and [`freshness`] decide storability and freshness; [`key`]
//! builds cache keys; [`store`], [`entry`] and [`fields`] hold responses; [`coalesce`] and
//! [`fill`] run origin fetches; [`respond`] and [`range`] answer from held responses; [`status`]
//! is the one source of `Cache-Status` and request metrics; [`error`] maps failures to
//! responses; [`admin`] is the admin API and [`target`] what the control-plane follower drives.
//!
//! Decisions where the RFCs leave room are written down in the module that makes them
//! (see `freshness`, `coalesce`, `store`) and in `docs/edge.md`.

pub mod admin;
pub mod coalesce;
pub mod directives;
pub mod entry;
pub mod error;
pub mod fields;
pub mod fill;
pub mod follow;
pub mod freshness;
pub mod headers;
pub mod https;
pub mod key;
pub mod metrics;
pub mod passthrough;
pub mod pipeline;
pub mod purge;
pub mod range;
pub mod reload;
pub mod respond;
pub mod route;
pub mod server;
pub mod status;
pub mod store;
pub mod target;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::HeaderName;
use stratus_config::EdgeConfig;
use stratus_config::edge::Limits;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::Error;

use crate::coalesce::Inflight;
use crate::follow::EdgeStats;
use crate::metrics::Metrics;
use crate::purge::PurgeRequest;
use crate::route::Router;
use crate::store::Store;
use crate::upstream::Outbound;

/// The running edge's shared state.
#[derive(Debug)]
pub struct Edge {
    /// Sites by host; swapped whole on reload (see [`reload`]).
    router: ArcSwap<Router>,
    /// Where the running sites came from; taken by reloads only.
    sources: Mutex<reload::Sources>,
    /// The cache.
    pub store: Store,
    /// Origin fetches in flight.
    pub inflight: Inflight,
    /// Metrics.
    pub metrics: Metrics,
    /// This cache's name in `Cache-Status`.
    pub name: String,
    /// Largest object stored, in bytes.
    pub max_object: u64,
    /// Response headers that carry tags.
    pub tag_headers: Vec<HeaderName>,
    /// Client limits.
    pub limits: Limits,
    /// Host used for prewarming paths of catch-all sites.
    pub default_host: String,
    /// Certificates of the TLS listeners, chosen by SNI; reloaded with the sites.
    pub certs: Arc<tls::CertStore>,
    /// Port put in `https_redirect` locations: the first TLS listener's, unless it is 443 or 0.
    pub https_port: Option<u16>,
}

impl Edge {
    /// Builds the edge's state from its configuration (sites, store, metrics); binds nothing.
    /// Origin health probes run until `shutdown` is cancelled or the router is dropped.
    pub fn new(config: &EdgeConfig, shutdown: &CancellationToken) -> Result<Arc<Self>, Error> {
        let outbound = Outbound::new(&config.dns, shutdown.clone());
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
        Ok(Arc::new(Self {
            router: ArcSwap::from_pointee(Router::new(&config.sites, &outbound)?),
            sources: reload::Sources::new(config),
            store: Store::new(config.cache.size.bytes()),
            inflight: Inflight::default(),
            metrics: Metrics::new()?,
            name: cache_name(config.id.as_deref()),
            max_object: config.cache.max_object_size.bytes(),
            tag_headers,
            limits: config.limits.clone(),
            default_host,
            certs: Arc::new(tls::CertStore::new(config)?),
            https_port: config
                .listeners
                .iter()
                .find(|l| l.tls)
                .map(|l| l.listen.0.port())
                .filter(|p| *p != 443 && *p != 0),
        }))
    }

    /// The sites in force: one atomic load, no lock. A request routes once and keeps the
    /// `SiteState` it got, so a reload never changes a request halfway.
    pub fn router(&self) -> arc_swap::Guard<Arc<Router>> {
        self.router.load()
    }

    /// Applies a purge (admin API and control plane alike); returns entries removed or marked.
    pub fn purge(&self, purge: &PurgeRequest) -> usize {
        let n = if purge.purge_everything {
            self.store.purge_all(purge.soft)
        } else {
            crate::purge::targets(purge, &self.router()).iter().map(|t| self.store.purge(t, purge.soft)).sum()
        };
        tracing::info!(purged = n, soft = purge.soft, "purge applied");
        n
    }

    /// Counters for heartbeats and `/stats`.
    pub fn stats(&self) -> EdgeStats {
        let (requests, hits) = self.metrics.counts();
        // moka updates its size and count in housekeeping; settle it so the numbers are current.
        self.store.run_pending_tasks();
        EdgeStats { requests, hits, cache_bytes: self.store.bytes(), cache_entries: self.store.entries() }
    }
}

/// Runs the edge until `shutdown` is cancelled. Every configuration sent on `reloads` is
/// applied with [`Edge::reload`] (SIGHUP in `stratus edge`); dropping the sender is fine.
///
/// Prints one line `listening edge http http://ADDR` (or `listening edge https https://ADDR`
/// for a TLS listener) on stdout per bound listener.
pub async fn run(
    config: EdgeConfig,
    shutdown: CancellationToken,
    reloads: mpsc::Receiver<EdgeConfig>,
) -> Result<(), Error> {
    let edge = Edge::new(&config, &shutdown)?;
    let mut servers = tokio::task::JoinSet::new();
    let mut first_url = None;
    for (i, l) in config.listeners.iter().enumerate() {
        let listener = bind(l.listen.0).await?;
        let scheme = if l.tls { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}",
            listener.local_addr().map_err(|e| Error::Bind { addr: l.listen.0, source: e })?
        );
        let acceptor = if l.tls {
            Some(Arc::new(tls::Acceptor::new(
                edge.certs.clone(),
                i,
                config.limits.header_read_timeout.get(),
            )?))
        } else {
            None
        };
        println!("listening edge {scheme} {url}");
        tracing::info!(%url, "edge listening");
        first_url.get_or_insert(url);
        let e = edge.clone();
        let handler =
            move |req, peer: SocketAddr| pipeline::handle(e.clone(), pipeline::boxed(req), Some(peer));
        servers.spawn(server::serve(
            listener,
            server::builder(&config.limits),
            handler,
            acceptor,
            config.limits.max_connections,
            shutdown.clone(),
            config.limits.drain_timeout.get(),
        ));
    }
    let mut admin_url = None;
    if let Some(admin) = &config.admin {
        let listener = bind(admin.listen.0).await?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| Error::Bind { addr: admin.listen.0, source: e })?
        );
        println!("listening edge admin {url}");
        tracing::info!(%url, "edge admin listening");
        admin_url = Some(url);
        let (e, token) = (edge.clone(), config.token.clone());
        let handler = move |req, _peer: SocketAddr| admin::handle(e.clone(), token.clone(), req);
        servers.spawn(server::serve(
            listener,
            server::builder(&config.limits),
            handler,
            None,
            256,
            shutdown.clone(),
            Duration::from_secs(5),
        ));
    }

    // Housekeeping off the request path: moka's eviction work, metrics upkeep, and every 30 s
    // a sweep for expired entries.
    let (e, stop) = (edge.clone(), shutdown.clone());
    servers.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    e.store.run_pending_tasks();
                    // Histogram samples wait in memory until drained: 8 bytes a request.
                    e.metrics.upkeep();
                    n += 1;
                    if n.is_multiple_of(60) {
                        e.store.sweep();
                    }
                }
            }
        }
    });

    // Certificate files replaced on disk are picked up by new handshakes.
    if config.listeners.iter().any(|l| l.tls) {
        let (certs, stop) = (edge.certs.clone(), shutdown.clone());
        servers.spawn(async move {
            let mut tick = tokio::time::interval(tls::POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let certs = certs.clone();
                        let _ = tokio::task::spawn_blocking(move || certs.poll()).await;
                    }
                }
            }
        });
    }

    servers.spawn(reload::serve(edge.clone(), reloads, shutdown.clone()));

    if let Some(control) = config.control.clone() {
        let registration = follow::Registration {
            id: config.id.clone().unwrap_or_else(host_name),
            url: first_url.unwrap_or_default(),
            admin: admin_url,
        };
        let target: Arc<dyn follow::FollowTarget> = Arc::new(target::EdgeTarget(edge.clone()));
        servers.spawn(follow::run(control, config.token.clone(), registration, target, shutdown.clone()));
    }

    while let Some(done) = servers.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "edge task failed");
        }
    }
    tracing::info!("edge stopped");
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
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

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edge".to_owned())
}
