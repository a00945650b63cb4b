//! What the control-plane follower drives ([`FollowTarget`], implemented by the edge in
//! `fleet/target.rs`) and how it introduces itself ([`Registration`]). Kept apart from the
//! follower so that its session and the edge both depend on these types, not on each other.

use std::future::Future;
use std::pin::Pin;

use stratus_config::fleet::FleetConfig;

use crate::fleet::purge::{ObjectRef, PurgeRequest};

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
    /// Replaces the sites with those of `config` entry `seq`; on error the running ones stay.
    fn configure(&self, seq: u64, config: &FleetConfig) -> Result<(), String>;
    /// The `config` entry whose sites are in force (0: the edge's own file's).
    fn fleet_seq(&self) -> u64;
    /// Where following stands: the last entry applied and the log's last entry as the control
    /// plane last said (metrics). Does nothing unless the target keeps it.
    fn progress(&self, _applied: u64, _head: u64) {}
    /// Replaces the cluster's peers with the edges at `urls` (`[edge.cluster] discover`).
    /// Does nothing unless the target has such a cluster.
    fn set_peers(&self, _urls: &[String]) {}
    /// The last entry applied before this process started, when the target kept it (the disk
    /// tier does): following resumes after it instead of at the log's head.
    fn resume_from(&self) -> Option<u64> {
        None
    }
    /// Keeps `seq` as the last entry applied, for [`FollowTarget::resume_from`] after a restart.
    fn persist_applied(&self, _seq: u64) {}
    /// Every entry up to the head the control plane announced at registration is applied
    /// (what was kept from before a restart may be served from now on).
    fn caught_up(&self) {}
}

/// Where following the control plane stands, for metrics: sequence numbers and when an entry
/// was last applied.
#[derive(Debug, Default)]
pub struct Progress {
    /// The last log entry applied.
    pub applied: std::sync::atomic::AtomicU64,
    /// The log's last entry, as the control plane last said.
    pub head: std::sync::atomic::AtomicU64,
    /// Whether this edge follows a control plane at all.
    pub following: std::sync::atomic::AtomicBool,
}

/// Counters an edge reports in heartbeats (a protocol type, `stratus_config::protocol`).
pub use stratus_config::protocol::EdgeStats;

/// How this edge introduces itself to the control plane.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Edge id in the registry.
    pub id: String,
    /// Client-facing URL of this edge.
    pub url: String,
    /// Admin API URL, when there is one.
    pub admin: Option<String>,
    /// This edge's point of presence (`[edge] pop`).
    pub pop: Option<String>,
    /// The URL its cluster peers reach it at (`[edge.cluster] self`).
    pub peer_url: Option<String>,
    /// Whether its cluster peers are the live edges of its `pop` (`[edge.cluster] discover`).
    pub discover: bool,
}
