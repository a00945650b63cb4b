//! Following the control plane's event log: register, subscribe, apply in order, ack, heartbeat
//! (`docs/PROTOCOL.md`, "Edge ↔ control"). The edge keeps serving whatever happens here.

use std::future::Future;
use std::pin::Pin;

use crate::purge::{ObjectRef, PurgeRequest};

/// What the follower needs from the running edge. The edge's state implements it; the follower
/// knows nothing else of the edge.
pub trait FollowTarget: Send + Sync + 'static {
    /// Applies a purge; returns how many entries it removed or marked stale.
    fn purge(&self, purge: &PurgeRequest) -> usize;
    /// Drops the whole cache (the log was compacted past this edge's position).
    fn clear(&self);
    /// Fetches URLs and objects into the cache through the edge's own pipeline.
    fn prewarm(&self, urls: Vec<String>, objects: Vec<ObjectRef>)
    -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Counters for heartbeats.
    fn stats(&self) -> EdgeStats;
}

/// Counters an edge reports in heartbeats.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EdgeStats {
    /// Client requests served.
    pub requests: u64,
    /// Of those, cache hits.
    pub hits: u64,
    /// Bytes held in the cache.
    pub cache_bytes: u64,
    /// Entries in the cache.
    pub cache_entries: u64,
}

/// How this edge introduces itself to the control plane.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Edge id in the registry.
    pub id: String,
    /// Client-facing URL of this edge.
    pub url: String,
    /// Admin API URL, when there is one.
    pub admin: Option<String>,
}

/// Registers with the control plane at `control`, then follows its log until `shutdown`,
/// reconnecting with backoff. Never returns an error: failures are logged and retried.
pub async fn run(
    control: stratus_config::HttpUrl,
    token: Option<stratus_config::Secret>,
    registration: Registration,
    target: std::sync::Arc<dyn FollowTarget>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    // Filled in by the control-plane work (issue #6).
    let _ = (control, token, registration, target);
    shutdown.cancelled().await;
}
