//! The edge registry and per-entry progress: who follows the log, how far each edge got, when
//! it applied each tracked entry, and its last heartbeat stats.
//!
//! The registry lives in memory. After a control-plane restart edges re-register within their
//! reconnect backoff (at most 5 s) and their subscriptions say where they are, so nothing here
//! needs to survive a crash; the log does.
//!
//! With several control replicas (a NATS log) each keeps this registry and shares it through
//! a key-value bucket: every local change marks the edge in the outbox, the sync task writes the
//! edge's [`shared::EdgeRecord`], and records other replicas wrote are merged in
//! ([`Registry::merge`]). Merging is monotone — positions and times only move forward — so the
//! order records arrive in does not matter and every replica converges on the same answer.
//!
//! An edge is *live* while it was heard from (register, subscribe, ack, heartbeat) within
//! `edge_timeout`. For a tracked entry an edge is `applied` once it acked it, `pending` while it
//! is live and has not, and `failed` when it went down before applying it (it still applies the
//! entry when it comes back, and then shows `applied`) or when it reported that it could not
//! apply it (a `config` entry it cannot build; the edge keeps its old configuration, the entry
//! shows `failed` with the edge's `error`, and the edge moves on past it).

mod shared;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use stratus_config::observe::{DURATION_BUCKETS, Histogram};
use stratus_config::protocol::{
    EdgeProgress, EdgeState, EdgeStats, Failure, Heartbeat, MAX_ORIGIN_HEALTH, OriginHealth, Register,
};
use tokio::sync::{Notify, watch};

pub use shared::{EdgeRecord, id, key};
use shared::{instant, ms, time};

/// How many recent entries keep per-edge timings.
const TRACKED: usize = 10_000;
/// Recent acks (and failures) kept per edge for other replicas to time entries with.
const RECENT: usize = 64;

#[derive(Debug)]
struct Edge {
    url: String,
    admin: Option<String>,
    version: String,
    /// Its `pop` label and the URL its cluster peers reach it at.
    pop: Option<String>,
    peer_url: Option<String>,
    /// Entries at or below this were written before the edge joined; it never needed them.
    joined_after: u64,
    applied: u64,
    last_seen: Instant,
    last_seen_at: SystemTime,
    last_heartbeat_at: Option<SystemTime>,
    stats: EdgeStats,
    /// The `config` entry the edge runs (last heartbeat).
    config: u64,
    subscriptions: usize,
    /// `subscriptions` as the replica that last wrote this edge saw it, and when: with several
    /// replicas the newest view wins (the edge follows one replica at a time).
    shown_subscriptions: (usize, SystemTime),
    /// Recent acks that moved `applied`: (sequence, when), oldest first.
    acks: VecDeque<(u64, SystemTime)>,
    /// Recent entries this edge reported it could not apply.
    failures: VecDeque<Failure>,
}

impl Edge {
    /// An edge known by its id only (no registration seen yet), last heard from at `seen`.
    fn unknown(joined_after: u64, applied: u64, last_seen: Instant, seen: SystemTime) -> Self {
        Self {
            url: String::new(),
            admin: None,
            version: String::new(),
            pop: None,
            peer_url: None,
            joined_after,
            applied,
            last_seen,
            last_seen_at: seen,
            last_heartbeat_at: None,
            stats: EdgeStats::default(),
            config: 0,
            subscriptions: 0,
            shown_subscriptions: (0, SystemTime::UNIX_EPOCH),
            acks: VecDeque::new(),
            failures: VecDeque::new(),
        }
    }
}

/// A recent entry whose application by each edge is timed.
#[derive(Debug)]
struct Tracked {
    created: Instant,
    created_at: SystemTime,
    applied: HashMap<String, Duration>,
    /// Edges that reported they could not apply it, and why.
    failed: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct Inner {
    edges: BTreeMap<String, Edge>,
    tracked: BTreeMap<u64, Tracked>,
}

/// One row of `GET /v1/edges`.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeView {
    /// Edge id.
    pub id: String,
    /// Client-facing URL.
    pub url: String,
    /// Admin API URL.
    pub admin: Option<String>,
    /// Edge software version.
    pub version: String,
    /// Its point of presence (`[edge] pop`), if it sent one.
    pub pop: Option<String>,
    /// The URL its cluster peers reach it at, if it sent one.
    pub peer_url: Option<String>,
    /// Heard from within `edge_timeout`.
    pub live: bool,
    /// Open subscriptions (normally 0 or 1).
    pub subscriptions: usize,
    /// When the edge was last heard from (RFC 3339).
    pub last_seen: String,
    /// Milliseconds since then.
    pub last_seen_ms: u64,
    /// When its last heartbeat arrived (RFC 3339).
    pub last_heartbeat: Option<String>,
    /// Highest sequence number applied.
    pub applied: u64,
    /// Entries written but not applied yet.
    pub lag: u64,
    /// Client requests served (last heartbeat).
    pub requests: u64,
    /// Cache hits (last heartbeat).
    pub hits: u64,
    /// hits / requests, 0 without requests.
    pub hit_ratio: f64,
    /// Bytes in the cache (last heartbeat).
    pub cache_bytes: u64,
    /// Entries in the cache (last heartbeat).
    pub cache_entries: u64,
    /// The `config` entry whose sites the edge runs, 0 for its own file's (last heartbeat).
    pub config: u64,
    /// Response body bytes sent (last heartbeat).
    pub served_bytes: u64,
    /// Responses with a 5xx status (last heartbeat).
    pub server_errors: u64,
    /// Each configured origin of each site, up or down (last heartbeat).
    pub origins: Vec<OriginHealth>,
}

/// Edges and their progress through the log.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Bumped on every change of progress, so waiters re-check.
    progress: watch::Sender<()>,
    timeout: Duration,
    /// Edges changed here and not yet written for the other replicas (`None`: one replica).
    outbox: Option<Outbox>,
    /// From a log entry's API call to each edge's ack of it, for the acks this replica took.
    propagation: Histogram,
}

/// Edge ids whose record changed locally; bounded by the number of edges.
#[derive(Debug, Default)]
pub struct Outbox {
    dirty: Mutex<BTreeSet<String>>,
    ready: Notify,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Registry {
    /// An empty registry; edges unheard for `timeout` count as down.
    pub fn new(timeout: Duration) -> Self {
        Self {
            inner: Mutex::default(),
            progress: watch::channel(()).0,
            timeout,
            outbox: None,
            propagation: Histogram::new(&DURATION_BUCKETS),
        }
    }

    /// A registry shared with other replicas: local changes are queued for [`Self::take_dirty`].
    pub fn shared(timeout: Duration) -> Self {
        Self { outbox: Some(Outbox::default()), ..Self::new(timeout) }
    }

    /// Queues edge `id` to be written for the other replicas.
    fn mark(&self, id: &str) {
        if let Some(outbox) = &self.outbox {
            outbox.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_owned());
            outbox.ready.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch<'a>(inner: &'a mut Inner, id: &str, head: u64) -> &'a mut Edge {
        let edge = inner
            .edges
            .entry(id.to_owned())
            .or_insert_with(|| Edge::unknown(head, head, Instant::now(), SystemTime::now()));
        edge.last_seen = Instant::now();
        edge.last_seen_at = SystemTime::now();
        edge
    }

    /// Records a registration; `head` is the log's last sequence number.
    pub fn register(&self, r: Register, head: u64) {
        let id = r.id.clone();
        let mut inner = self.lock();
        let edge = Self::touch(&mut inner, &r.id, head);
        edge.url = r.url;
        edge.admin = r.admin;
        edge.version = r.version;
        edge.pop = r.pop;
        edge.peer_url = r.peer_url;
        drop(inner);
        self.mark(&id);
        self.progress.send_replace(());
    }

    /// Records a subscription starting after `after`: the edge has applied everything up to it.
    pub fn subscribed(&self, id: &str, after: u64, head: u64) {
        let mut inner = self.lock();
        let edge = Self::touch(&mut inner, id, head);
        edge.subscriptions += 1;
        edge.shown_subscriptions = (edge.subscriptions, SystemTime::now());
        edge.joined_after = edge.joined_after.min(after);
        edge.applied = after.min(head);
        drop(inner);
        self.mark(id);
        self.progress.send_replace(());
    }

    /// Records that a subscription ended.
    pub fn unsubscribed(&self, id: &str) {
        if let Some(edge) = self.lock().edges.get_mut(id) {
            edge.subscriptions = edge.subscriptions.saturating_sub(1);
            edge.shown_subscriptions = (edge.subscriptions, SystemTime::now());
        }
        self.mark(id);
    }

    /// Records an ack of everything up to `seq` and times the tracked entries it covers.
    pub fn ack(&self, id: &str, seq: u64, head: u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let edge = Self::touch(inner, id, head);
        let seq = seq.min(head);
        if seq > edge.applied {
            let from = edge.applied + 1;
            edge.applied = seq;
            if edge.acks.len() == RECENT {
                edge.acks.pop_front();
            }
            edge.acks.push_back((seq, SystemTime::now()));
            let now = Instant::now();
            for tracked in inner.tracked.range_mut(from..=seq).map(|(_, t)| t) {
                if let Entry::Vacant(slot) = tracked.applied.entry(id.to_owned()) {
                    let took = now - tracked.created;
                    self.propagation.record(took);
                    slot.insert(took);
                }
            }
        }
        drop(guard);
        self.mark(id);
        self.progress.send_replace(());
    }

    /// Time from purges' API calls to edges' acks, as seen by this replica.
    pub fn propagation(&self) -> &Histogram {
        &self.propagation
    }

    /// Records a heartbeat (its `applied` counts as an ack).
    pub fn heartbeat(&self, id: &str, beat: &Heartbeat, head: u64) {
        {
            let mut inner = self.lock();
            let edge = Self::touch(&mut inner, id, head);
            edge.stats = beat.stats.clone();
            // A heartbeat is the edge's word, but no edge makes the control plane keep more
            // than a configuration's worth of rows.
            edge.stats.origins.truncate(MAX_ORIGIN_HEALTH);
            edge.config = beat.config;
            edge.last_heartbeat_at = Some(SystemTime::now());
        }
        self.ack(id, beat.applied, head);
    }

    /// Records entries edge `id` reported it could not apply.
    pub fn failed(&self, id: &str, failures: &[Failure]) {
        if failures.is_empty() {
            return;
        }
        let mut inner = self.lock();
        if let Some(edge) = inner.edges.get_mut(id) {
            for f in failures {
                if !edge.failures.contains(f) {
                    if edge.failures.len() == RECENT {
                        edge.failures.pop_front();
                    }
                    edge.failures.push_back(f.clone());
                }
            }
        }
        for f in failures {
            if let Some(tracked) = inner.tracked.get_mut(&f.seq)
                && !tracked.failed.contains_key(id)
            {
                tracing::warn!(edge = %id, seq = f.seq, error = %f.error, "edge could not apply an entry");
                tracked.failed.insert(id.to_owned(), f.error.clone());
            }
        }
        drop(inner);
        self.mark(id);
        self.progress.send_replace(());
    }

    /// Starts timing entry `seq`, created at `created` (when its API call arrived). Tracking an
    /// entry again changes nothing (with several replicas both the one that wrote it and the
    /// log's reader track it).
    pub fn track(&self, seq: u64, created: Instant) {
        let mut inner = self.lock();
        let created_at = SystemTime::now().checked_sub(created.elapsed()).unwrap_or_else(SystemTime::now);
        inner.tracked.entry(seq).or_insert_with(|| Tracked {
            created,
            created_at,
            applied: HashMap::new(),
            failed: HashMap::new(),
        });
        while inner.tracked.len() > TRACKED {
            inner.tracked.pop_first();
        }
    }

    /// When the API call that wrote entry `seq` arrived (RFC 3339), while it is tracked.
    pub fn created_at(&self, seq: u64) -> Option<String> {
        self.lock().tracked.get(&seq).map(|t| rfc3339(t.created_at))
    }

    /// Every edge that needs entry `seq` and how far it got with it.
    pub fn progress(&self, seq: u64) -> Vec<EdgeProgress> {
        let inner = self.lock();
        let tracked = inner.tracked.get(&seq);
        inner
            .edges
            .iter()
            .filter(|(id, e)| e.joined_after < seq || tracked.is_some_and(|t| t.failed.contains_key(*id)))
            .map(|(id, e)| {
                let applied_ms =
                    tracked.and_then(|t| t.applied.get(id)).map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
                let error = tracked.and_then(|t| t.failed.get(id)).cloned();
                let state = if error.is_some() {
                    EdgeState::Failed
                } else if e.applied >= seq {
                    EdgeState::Applied
                } else if e.last_seen.elapsed() < self.timeout {
                    EdgeState::Pending
                } else {
                    EdgeState::Failed
                };
                EdgeProgress { id: id.clone(), state, applied_ms, error }
            })
            .collect()
    }

    /// Whether every live edge that needs `seq` applied it. Called on every ack while a
    /// `?wait` is open, so it allocates nothing.
    pub fn complete(&self, seq: u64) -> bool {
        let inner = self.lock();
        inner
            .edges
            .values()
            .filter(|e| e.joined_after < seq && e.applied < seq)
            .all(|e| e.last_seen.elapsed() >= self.timeout)
    }

    /// Waits until [`Self::complete`] or until `limit` passes; returns whether it completed.
    pub async fn wait(&self, seq: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = self.progress.subscribe();
        loop {
            changed.mark_unchanged();
            if self.complete(seq) {
                return true;
            }
            // Liveness changes with time alone, so re-check at least every second.
            let tick = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
            tokio::select! {
                _ = changed.changed() => {}
                () = tokio::time::sleep_until(tick) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return self.complete(seq);
            }
        }
    }

    /// Every known edge, for `GET /v1/edges` and the dashboard.
    pub fn edges(&self, head: u64) -> Vec<EdgeView> {
        let inner = self.lock();
        inner
            .edges
            .iter()
            .map(|(id, e)| EdgeView {
                id: id.clone(),
                url: e.url.clone(),
                admin: e.admin.clone(),
                version: e.version.clone(),
                pop: e.pop.clone(),
                peer_url: e.peer_url.clone(),
                live: e.last_seen.elapsed() < self.timeout,
                subscriptions: if self.outbox.is_some() { e.shown_subscriptions.0 } else { e.subscriptions },
                last_seen: rfc3339(e.last_seen_at),
                last_seen_ms: u64::try_from(e.last_seen.elapsed().as_millis()).unwrap_or(u64::MAX),
                last_heartbeat: e.last_heartbeat_at.map(rfc3339),
                applied: e.applied,
                lag: head.saturating_sub(e.applied),
                requests: e.stats.requests,
                hits: e.stats.hits,
                hit_ratio: if e.stats.requests == 0 {
                    0.0
                } else {
                    e.stats.hits as f64 / e.stats.requests as f64
                },
                cache_bytes: e.stats.cache_bytes,
                cache_entries: e.stats.cache_entries,
                config: e.config,
                served_bytes: e.stats.served_bytes,
                server_errors: e.stats.server_errors,
                origins: e.stats.origins.clone(),
            })
            .collect()
    }
}

/// Sharing with other replicas (`shared`).
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
            pop: e.pop.clone(),
            peer_url: e.peer_url.clone(),
            joined_after: e.joined_after,
            applied: e.applied,
            last_seen_ms: ms(e.last_seen_at),
            last_heartbeat_ms: e.last_heartbeat_at.map(ms),
            stats: e.stats.clone(),
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
        let edge = inner.edges.entry(id.to_owned()).or_insert_with(|| {
            Edge::unknown(r.joined_after, 0, instant(time(r.last_seen_ms)), time(r.last_seen_ms))
        });
        if !r.url.is_empty() {
            edge.url.clone_from(&r.url);
            edge.admin.clone_from(&r.admin);
            edge.version.clone_from(&r.version);
            edge.pop.clone_from(&r.pop);
            edge.peer_url.clone_from(&r.peer_url);
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
            edge.stats = r.stats.clone();
            edge.stats.origins.truncate(MAX_ORIGIN_HEALTH);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str) -> Register {
        Register {
            id: id.into(),
            version: "t".into(),
            url: String::new(),
            admin: None,
            pop: None,
            peer_url: None,
        }
    }

    fn states(r: &Registry, seq: u64) -> Vec<(String, EdgeState)> {
        r.progress(seq).into_iter().map(|p| (p.id, p.state)).collect()
    }

    #[tokio::test]
    async fn acks_move_entries_from_pending_to_applied() {
        let r = Registry::new(Duration::from_secs(15));
        r.register(reg("a"), 0);
        r.register(reg("b"), 0);
        r.subscribed("a", 0, 0);
        r.track(1, Instant::now());
        r.track(2, Instant::now());
        assert_eq!(states(&r, 1), vec![("a".into(), EdgeState::Pending), ("b".into(), EdgeState::Pending)]);
        r.ack("a", 2, 2);
        assert_eq!(states(&r, 2), vec![("a".into(), EdgeState::Applied), ("b".into(), EdgeState::Pending)]);
        assert!(r.progress(1)[0].applied_ms.is_some());
        assert!(!r.wait(2, Duration::from_millis(30)).await);
        let stats = EdgeStats { requests: 4, hits: 3, ..EdgeStats::default() };
        r.heartbeat("b", &Heartbeat { applied: 2, stats, ..Heartbeat::default() }, 2);
        assert!(r.wait(2, Duration::from_millis(30)).await);
        let edges = r.edges(3);
        assert_eq!((edges[1].lag, edges[1].hit_ratio), (1, 0.75));
        // An edge that joins later never needed the earlier entries.
        r.register(reg("c"), 2);
        assert_eq!(r.progress(2).len(), 2);
        assert_eq!(r.progress(3).len(), 3);
    }

    #[test]
    fn reported_failures_show_with_their_error_and_do_not_block() {
        let r = Registry::new(Duration::from_secs(15));
        r.register(reg("a"), 0);
        r.register(reg("b"), 0);
        r.track(1, Instant::now());
        r.failed(
            "a",
            &[
                Failure { seq: 1, error: "cannot build".into() },
                Failure { seq: 9, error: "untracked".into() },
            ],
        );
        r.ack("a", 1, 1);
        r.ack("b", 1, 1);
        let p = r.progress(1);
        assert_eq!((p[0].state, p[0].error.as_deref()), (EdgeState::Failed, Some("cannot build")));
        assert_eq!((p[1].state, p[1].error.as_deref()), (EdgeState::Applied, None));
        assert!(r.complete(1));
        // An edge that joined after the entry is listed when it reports failing it (a config it
        // was given when it registered).
        r.register(reg("c"), 1);
        r.failed("c", &[Failure { seq: 1, error: "no".into() }]);
        assert_eq!(states(&r, 1).len(), 3);
    }

    #[test]
    fn silent_edges_fail_instead_of_blocking() {
        let r = Registry::new(Duration::ZERO);
        r.register(reg("a"), 0);
        assert_eq!(states(&r, 1), vec![("a".into(), EdgeState::Failed)]);
        assert!(r.complete(1));
    }
}

#[cfg(test)]
mod shared_tests {
    use stratus_config::protocol::{EdgeState, Register};

    use super::*;
    use std::time::Duration;

    impl Registry {
        fn take_dirty_now(&self) -> Vec<String> {
            let outbox = self.outbox.as_ref().expect("shared");
            std::mem::take(&mut *outbox.dirty.lock().expect("dirty")).into_iter().collect()
        }
    }

    fn reg(id: &str) -> Register {
        Register {
            id: id.into(),
            version: "t".into(),
            url: "http://e".into(),
            admin: None,
            pop: None,
            peer_url: None,
        }
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
