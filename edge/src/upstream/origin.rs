//! One origin of a site: its address, pooled client, slots and health, and the task that
//! probes it (active health checks).

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use http::{Method, Request};
use stratus_config::edge::Health;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::body::empty;
use crate::upstream::chain::error_chain;
use crate::upstream::connect::OriginClient;
use crate::upstream::health::OriginHealth;

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
