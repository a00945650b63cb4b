//! The state the writers and the delivery task share: the outbox on disk and, in memory, the
//! events ready to post (bounded) and the ones still being written.
//!
//! Memory holds at most [`QUEUE_CAPACITY`] ready events. When more pile up (the control plane
//! is down) the rest wait on disk only, and the delivery task reloads them, oldest first, once
//! memory is empty. Events are keyed by sequence number, so one loaded twice is posted once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::event::Event;
use super::outbox::Outbox;

/// Ready events held in memory.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Events per POST.
pub const BATCH: usize = 100;

#[derive(Debug)]
pub struct Shared {
    pub outbox: Outbox,
    state: Mutex<State>,
    /// Signalled when an event becomes ready.
    pub ready: Notify,
    next_seq: AtomicU64,
    warned_full: AtomicBool,
    /// Ready events memory holds, [`QUEUE_CAPACITY`] but in tests.
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    events: BTreeMap<u64, Event>,
    /// Written to the outbox, but the change they announce is not visible yet.
    pending: BTreeSet<u64>,
    /// Ready events are on disk that memory does not hold.
    on_disk_only: bool,
}

impl Shared {
    /// Shared state over `outbox`, whose highest sequence number is `last`. Whatever the outbox
    /// holds is loaded by the delivery task's first round.
    pub fn new(outbox: Outbox, last: Option<u64>) -> Self {
        Self::with_capacity(outbox, last, QUEUE_CAPACITY)
    }

    fn with_capacity(outbox: Outbox, last: Option<u64>, capacity: usize) -> Self {
        // Sequence numbers start above both the outbox's and the clock's (in microseconds), so
        // they keep increasing across restarts even after the outbox was emptied.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        let first = last.map_or(now, |l| l.saturating_add(1).max(now));
        Self {
            outbox,
            state: Mutex::new(State { on_disk_only: true, ..State::default() }),
            ready: Notify::new(),
            next_seq: AtomicU64::new(first),
            warned_full: AtomicBool::new(false),
            capacity,
        }
    }

    /// How many events to load into memory at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new sequence number, pending until [`Shared::ready`] or [`Shared::abandon`].
    pub fn begin(&self) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.state().pending.insert(seq);
        seq
    }

    /// The change behind `seq` is visible: queue its event for delivery.
    pub fn ready(&self, seq: u64, event: Event) {
        let mut state = self.state();
        state.pending.remove(&seq);
        if state.events.len() < self.capacity {
            state.events.insert(seq, event);
        } else {
            state.on_disk_only = true;
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    capacity = self.capacity,
                    "event backlog exceeds memory; the rest waits in the outbox"
                );
            }
        }
        drop(state);
        self.ready.notify_one();
    }

    /// The change behind `seq` did not happen; the caller removes its file.
    pub fn abandon(&self, seq: u64) {
        self.state().pending.remove(&seq);
    }

    /// The oldest ready events, up to [`BATCH`], taken out of memory (they stay on disk).
    pub fn take_batch(&self) -> Vec<(u64, Event)> {
        let mut state = self.state();
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            let Some(entry) = state.events.pop_first() else { break };
            batch.push(entry);
        }
        batch
    }

    /// Whether memory is empty while ready events wait on disk; then the pending set to skip.
    pub fn needs_reload(&self) -> Option<BTreeSet<u64>> {
        let state = self.state();
        (state.events.is_empty() && state.on_disk_only).then(|| state.pending.clone())
    }

    /// Adds events read from the outbox; `more` says whether others remain on disk only.
    pub fn reload(&self, events: Vec<(u64, Event)>, more: bool) {
        let mut state = self.state();
        state.events.extend(events);
        state.on_disk_only = more;
        if !more {
            self.warned_full.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::event::Kind;

    #[tokio::test]
    async fn a_backlog_beyond_memory_waits_on_disk_and_comes_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (outbox, last) = Outbox::open(dir.path()).await.expect("open");
        let shared = Shared::with_capacity(outbox, last, 4);
        let pending = shared.needs_reload().expect("first round reads the outbox");
        let (events, more) = shared.outbox.load(shared.capacity(), &pending).await.expect("load");
        shared.reload(events, more);
        let total = 17;
        for i in 0..total {
            let event = Event::new(Kind::Put, "b", &format!("k{i}"), Some("e"), Some(1));
            let seq = shared.begin();
            shared.outbox.write(seq, &event).await.expect("write");
            shared.ready(seq, event);
        }
        let mut delivered = Vec::new();
        loop {
            if let Some(pending) = shared.needs_reload() {
                let (events, more) = shared.outbox.load(shared.capacity(), &pending).await.expect("load");
                shared.reload(events, more);
            }
            let batch = shared.take_batch();
            if batch.is_empty() {
                break;
            }
            let seqs: Vec<u64> = batch.iter().map(|(s, _)| *s).collect();
            shared.outbox.remove(&seqs).await;
            delivered.extend(batch.into_iter().map(|(_, e)| e.key));
        }
        let expected: Vec<String> = (0..total).map(|i| format!("k{i}")).collect();
        assert_eq!(delivered, expected, "every event once, oldest first");
    }

    #[tokio::test]
    async fn pending_events_are_not_loaded_until_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (outbox, last) = Outbox::open(dir.path()).await.expect("open");
        let shared = Shared::new(outbox, last);
        let seq = shared.begin();
        let event = Event::new(Kind::Delete, "b", "k", None, None);
        shared.outbox.write(seq, &event).await.expect("write");
        let pending = shared.needs_reload().expect("reload");
        let (events, _) = shared.outbox.load(10, &pending).await.expect("load");
        assert!(events.is_empty(), "a pending event is not posted before its change is visible");
        shared.reload(events, false);
        shared.ready(seq, event.clone());
        assert_eq!(shared.take_batch(), vec![(seq, event)]);
    }
}
