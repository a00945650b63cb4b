//! One upstream server — an origin of a site, a peer of the cluster or a parent edge: its
//! address, pooled client, slots and health, and the task that probes it (active health checks).

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use http::{Method, Request, Uri};
use stratus_config::HttpUrl;
use stratus_config::edge::{Health, OriginPool, OriginTimeouts};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::body::empty;
use crate::error::Error;
use crate::upstream::chain::error_chain;
use crate::upstream::connect::{self, OriginClient};
use crate::upstream::dns::Dns;
use crate::upstream::health::OriginHealth;

/// Which tier an upstream server belongs to: the order a fill tries them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Another edge of this PoP that owns the key (`[edge.cluster]`).
    Peer,
    /// An upper-tier edge of the site (`parents`).
    Parent,
    /// The site's origin.
    Origin,
}

/// How to reach and judge one upstream server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings<'a> {
    pub(crate) tier: Tier,
    pub(crate) timeouts: &'a OriginTimeouts,
    pub(crate) pool: &'a OriginPool,
    pub(crate) health: &'a Health,
    pub(crate) tls: &'a Arc<rustls::ClientConfig>,
    pub(crate) dns: &'a Dns,
}

/// One origin of a site.
#[derive(Debug)]
pub(crate) struct Origin {
    /// The configured URL, for logs.
    pub(crate) name: String,
    /// `scheme://host:port`, for probes.
    pub(crate) base: String,
    pub(crate) scheme: Scheme,
    /// The origin URL's path without a trailing slash, put before every request path.
    pub(crate) prefix: String,
    /// `host[:port]` as configured: the `Host` sent with `origin_host`.
    pub(crate) host: HeaderValue,
    pub(crate) authority: Authority,
    pub(crate) client: OriginClient,
    /// Requests in flight (`pool.max_connections`).
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) health: OriginHealth,
    /// The tier it belongs to.
    pub(crate) tier: Tier,
    /// Its timeouts (the site's, or the cluster's for peers).
    pub(crate) timeouts: OriginTimeouts,
    /// Its health-check settings (passive checks use them on every failure).
    pub(crate) health_cfg: Health,
}

impl Origin {
    /// The client and state for the server at `url`.
    pub(crate) fn new(url: &HttpUrl, s: Settings<'_>) -> Result<Self, Error> {
        let what = match s.tier {
            Tier::Origin => "origin",
            Tier::Peer => "peer",
            Tier::Parent => "parent",
        };
        let bad = |reason: &str| Error::Origin { origin: format!("{what} {url}"), reason: reason.to_owned() };
        let u = url.url();
        let host = u.host_str().ok_or_else(|| bad("no host"))?;
        let port = u.port_or_known_default().ok_or_else(|| bad("no port"))?;
        let scheme = if url.is_https() { Scheme::HTTPS } else { Scheme::HTTP };
        let hostport = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let base = format!("{scheme}://{host}:{port}");
        let target = base.parse::<Uri>().map_err(|_| bad("invalid host"))?;
        Ok(Self {
            name: url.to_string(),
            scheme,
            prefix: u.path().trim_end_matches('/').to_owned(),
            host: HeaderValue::from_str(&hostport).map_err(|_| bad("invalid host"))?,
            authority: hostport.parse().map_err(|_| bad("invalid host"))?,
            client: connect::client(s.timeouts.connect.get(), s.pool, target, s.tls, s.dns),
            slots: Arc::new(Semaphore::new(s.pool.max_connections)),
            health: OriginHealth::default(),
            base,
            tier: s.tier,
            timeouts: s.timeouts.clone(),
            health_cfg: s.health.clone(),
        })
    }
}

/// Starts the probe task of `origin` when the site has a health path.
pub(crate) fn spawn_probe(
    origin: &Arc<Origin>,
    cfg: &Health,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let path = cfg.path.clone()?;
    let weak: Weak<Origin> = Arc::downgrade(origin);
    let cfg = cfg.clone();
    Some(tokio::spawn(async move {
        let mut streak = (0, 0);
        let mut tick = tokio::time::interval(cfg.interval.get());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let Some(origin) = weak.upgrade() else { break };
            let passed = tokio::select! {
                () = stop.cancelled() => break,
                passed = probe(&origin, &path, cfg.timeout.get()) => passed,
            };
            match origin.health.probed(passed, &mut streak, &cfg) {
                Some(true) => tracing::info!(origin = %origin.name, "origin passes its health checks again"),
                Some(false) => {
                    tracing::warn!(origin = %origin.name, %path, "origin failed its health checks; marked down");
                }
                None => {}
            }
        }
        tracing::debug!("health probe stopped");
    }))
}

/// One probe: `GET path` with the origin's own `Host`; a 2xx or 3xx within `limit` passes.
async fn probe(origin: &Origin, path: &str, limit: Duration) -> bool {
    let Ok(uri) = format!("{}{path}", origin.base).parse::<http::Uri>() else { return false };
    let mut req = Request::new(empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    req.headers_mut().insert(http::header::HOST, origin.host.clone());
    req.headers_mut()
        .insert(http::header::USER_AGENT, http::HeaderValue::from_static("stratus-health-check"));
    match tokio::time::timeout(limit, origin.client.request(req)).await {
        Ok(Ok(res)) => {
            let status = res.status();
            // Drain the body so the connection can go back to the pool.
            let _ = tokio::time::timeout(limit, http_body_util::BodyExt::collect(res.into_body())).await;
            let ok = status.is_success() || status.is_redirection();
            if !ok {
                tracing::debug!(origin = %origin.name, status = status.as_u16(), "health probe failed");
            }
            ok
        }
        Ok(Err(e)) => {
            tracing::debug!(origin = %origin.name, error = %error_chain(&e), "health probe failed");
            false
        }
        Err(_) => {
            tracing::debug!(origin = %origin.name, "health probe timed out");
            false
        }
    }
}
