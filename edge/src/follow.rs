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
    fn prewarm(&self, urls: Vec<String>, objects: Vec<ObjectRef>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
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
