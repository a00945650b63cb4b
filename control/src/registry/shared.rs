//! The registry as replicas share it: one [`EdgeRecord`] per edge, written by whichever replica
//! heard from the edge last, and merged by every other one.
//!
//! Times cross replicas as wall-clock milliseconds (replicas' clocks are assumed NTP-close; a
//! skew only shifts `applied_ms` and liveness by that much). Positions merge by maximum, so a
//! stale record never moves an edge back.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use stratus_config::protocol::{EdgeStats, Failure};

use super::{Edge, Registry};

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

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// The monotonic instant of wall-clock time `at` (now, if `at` is in the future).
fn instant(at: SystemTime) -> Instant {
    let ago = SystemTime::now().duration_since(at).unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

impl Registry {
    /// Waits until an edge changed locally and returns the changed ids (empty for a registry
    /// of one replica, which never changes anything to share).
    pub async fn take_dirty(&self) -> Vec<String> {
        let Some(outbox) = &self.outbox else {
            std::future::pending::<()>().await;
            return Vec::new();
        };
        loop {
            let taken =
                std::mem::take(&mut *outbox.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            if !taken.is_empty() {
                return taken.into_iter().collect();
            }
            outbox.ready.notified().await;
        }
    }

    /// Queues ids again after writing their records failed.
    pub fn requeue(&self, ids: Vec<String>) {
        for id in ids {
            self.mark(&id);
        }
    }

    /// The record of edge `id` as this replica (`writer`) knows it.
    pub fn record(&self, id: &str, writer: &str) -> Option<EdgeRecord> {
        let inner = self.lock();
        let e = inner.edges.get(id)?;
        Some(EdgeRecord {
            writer: writer.to_owned(),
            written_ms: ms(SystemTime::now()),
            url: e.url.clone(),
            admin: e.admin.clone(),
            version: e.version.clone(),
            joined_after: e.joined_after,
            applied: e.applied,
            last_seen_ms: ms(e.last_seen_at),
            last_heartbeat_ms: e.last_heartbeat_at.map(ms),
            stats: e.stats,
            config: e.config,
            subscriptions: e.shown_subscriptions.0,
            acks: e.acks.iter().map(|(seq, at)| [*seq, ms(*at)]).collect(),
            failed: e.failures.iter().cloned().collect(),
        })
    }

    /// Merges a record another replica wrote. Positions and times only move forward; entries
    /// this replica tracks are timed from the acks the record lists.
    pub fn merge(&self, id: &str, r: &EdgeRecord) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let edge = inner.edges.entry(id.to_owned()).or_insert_with(|| Edge {
            url: String::new(),
            admin: None,
            version: String::new(),
            joined_after: r.joined_after,
            applied: 0,
            last_seen: instant(time(r.last_seen_ms)),
            last_seen_at: time(r.last_seen_ms),
            last_heartbeat_at: None,
            stats: EdgeStats::default(),
            config: 0,
            subscriptions: 0,
            shown_subscriptions: (0, SystemTime::UNIX_EPOCH),
            acks: Default::default(),
            failures: Default::default(),
        });
        if !r.url.is_empty() {
            edge.url.clone_from(&r.url);
            edge.admin.clone_from(&r.admin);
            edge.version.clone_from(&r.version);
        }
        edge.joined_after = edge.joined_after.min(r.joined_after);
        let seen = time(r.last_seen_ms);
        if seen > edge.last_seen_at {
            edge.last_seen_at = seen;
            edge.last_seen = instant(seen);
        }
        if let Some(beat) = r.last_heartbeat_ms.map(time)
            && edge.last_heartbeat_at.is_none_or(|local| beat > local)
        {
            edge.last_heartbeat_at = Some(beat);
            edge.stats = r.stats;
            edge.config = r.config;
        }
        let written = time(r.written_ms);
        if written > edge.shown_subscriptions.1 {
            edge.shown_subscriptions = (r.subscriptions, written);
        }
        edge.applied = edge.applied.max(r.applied);
        // Time the tracked entries each listed ack covered: an ack of `seq` covers everything
        // after the previous listed ack (for the oldest listed, only `seq` itself is known).
        let mut previous: Option<u64> = None;
        for &[seq, at] in &r.acks {
            let from = previous.map_or(seq, |p| p + 1);
            previous = Some(seq);
            let at = time(at);
            for tracked in inner.tracked.range_mut(from..=seq).map(|(_, t)| t) {
                // Milliseconds on the wire, and clocks of two hosts: never below zero.
                let took = at.duration_since(tracked.created_at).unwrap_or_default();
                tracked.applied.entry(id.to_owned()).or_insert(took);
            }
        }
        for f in &r.failed {
            if let Some(tracked) = inner.tracked.get_mut(&f.seq) {
                tracked.failed.entry(id.to_owned()).or_insert_with(|| f.error.clone());
            }
        }
        drop(guard);
        self.progress.send_replace(());
    }
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

#[cfg(test)]
mod tests {
    use stratus_config::protocol::{EdgeState, Register};

    use super::*;

    impl Registry {
        fn take_dirty_now(&self) -> Vec<String> {
            let outbox = self.outbox.as_ref().expect("shared");
            std::mem::take(&mut *outbox.dirty.lock().expect("dirty")).into_iter().collect()
        }
    }

    fn reg(id: &str) -> Register {
        Register { id: id.into(), version: "t".into(), url: "http://e".into(), admin: None }
    }

    #[test]
    fn keys_round_trip_every_id_character() {
        for id in ["a", "edge-1.pop_2", "a:b:c", ":3A:"] {
            assert_eq!(super::id(&key(id)), id, "{id}");
        }
        assert_eq!(key("pop:1"), "pop=3A1");
    }

    #[test]
    fn a_replica_learns_what_another_heard_and_never_moves_back() {
        let a = Registry::shared(Duration::from_secs(15));
        let b = Registry::shared(Duration::from_secs(15));
        for r in [&a, &b] {
            r.track(1, Instant::now());
            r.track(2, Instant::now());
        }
        a.register(reg("e"), 0);
        a.subscribed("e", 0, 2);
        a.ack("e", 2, 2);
        a.failed("e", &[Failure { seq: 1, error: "bad".into() }]);
        assert_eq!(a.take_dirty_now(), vec!["e".to_owned()]);
        let record = a.record("e", "a").expect("record");
        b.merge("e", &record);
        let p = b.progress(2);
        assert_eq!((p.len(), p[0].state), (1, EdgeState::Applied));
        assert!(p[0].applied_ms.is_some(), "timed from the record's acks");
        assert_eq!(b.progress(1)[0].error.as_deref(), Some("bad"));
        assert!(b.complete(2));
        let view = &b.edges(2)[0];
        assert_eq!((view.url.as_str(), view.subscriptions, view.live), ("http://e", 1, true));
        // An older record (another replica that saw less) changes nothing.
        let stale = EdgeRecord { applied: 1, written_ms: 1, subscriptions: 0, ..record };
        b.merge("e", &stale);
        assert_eq!(b.edges(2)[0].applied, 2);
        assert_eq!(b.edges(2)[0].subscriptions, 1);
        // Merging queues nothing: records do not bounce between replicas.
        assert!(b.take_dirty_now().is_empty());
    }
}
