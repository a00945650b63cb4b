//! The registry as replicas share it: one [`EdgeRecord`] per edge, written by whichever replica
//! heard from the edge last, and merged by every other one (`Registry::merge`, beside the
//! registry's other methods so this module imports nothing of it).
//!
//! Times cross replicas as wall-clock milliseconds (replicas' clocks are assumed NTP-close; a
//! skew only shifts `applied_ms` and liveness by that much). Positions merge by maximum, so a
//! stale record never moves an edge back.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use stratus_config::protocol::{EdgeStats, Failure};

/// What one replica knows of one edge, as stored in the `stratus_edges` bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EdgeRecord {
    /// The replica that wrote it.
    pub writer: String,
    /// When it was written (Unix ms).
    pub written_ms: u64,
    pub url: String,
    pub admin: Option<String>,
    pub version: String,
    pub pop: Option<String>,
    pub peer_url: Option<String>,
    pub joined_after: u64,
    pub applied: u64,
    pub last_seen_ms: u64,
    pub last_heartbeat_ms: Option<u64>,
    pub stats: EdgeStats,
    pub config: u64,
    pub subscriptions: usize,
    /// Recent acks that moved `applied`: `[seq, Unix ms]`, oldest first.
    pub acks: Vec<[u64; 2]>,
    /// Recent entries the edge could not apply.
    pub failed: Vec<Failure>,
}

pub(super) fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// The monotonic instant of wall-clock time `at` (now, if `at` is in the future).
pub(super) fn instant(at: SystemTime) -> Instant {
    let ago = SystemTime::now().duration_since(at).unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// The bucket key of edge `id`. Ids are `A-Z a-z 0-9 - _ . :` and bucket keys may not hold
/// `:`, so it is written `=3A` (`=` cannot occur in an id, so the mapping is one to one).
pub fn key(id: &str) -> String {
    id.replace(':', "=3A")
}

/// The edge id of bucket key `key`.
pub fn id(key: &str) -> String {
    key.replace("=3A", ":")
}
