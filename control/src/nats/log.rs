//! The log as a JetStream stream, shared by every control replica.
//!
//! **Appends.** An entry's operation carries its own sequence number (`p-12`), so a replica
//! builds it for the sequence it expects and publishes with `Nats-Expected-Last-Sequence`: the
//! stream stores it only if nothing was appended since, which keeps sequence numbers contiguous
//! and equal to the stream's own while several replicas append at once. A replica that lost the
//! race learns the new last sequence and builds again. Each append carries a `Nats-Msg-Id`, so a
//! retry after a lost acknowledgement (a node died mid-publish) is answered with the sequence the
//! first attempt got instead of being stored twice. The API answers `202` only after the
//! stream's acknowledgement, which JetStream sends once a quorum of its replicas stored the entry.
//!
//! **Reads.** Every replica reads the stream from its first retained entry with an ordered
//! consumer into a mirror in memory, exactly like the embedded log's, so subscriptions stream
//! from RAM and the edge protocol does not change. An entry that disappears from the stream
//! before the mirror read it (retention) moves the mirror's floor, and subscribers behind it are
//! told to reset, as with the embedded log. An edge that resumes after a sequence this replica
//! has not read yet (it followed a faster replica) waits for the mirror instead of being reset.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::log::{Failure, Mirror, Read};
use crate::nats::{CONFIG_KEY, Cluster, SUBJECT};

/// Header with the wall-clock time (Unix ms) the entry's API call arrived.
const CREATED: &str = "Stratus-Created-Ms";
/// Header marking a `config` entry.
const CONFIG: &str = "Stratus-Config";
/// How long one append keeps retrying (lost races, a leader election) before it fails.
const APPEND_DEADLINE: Duration = Duration::from_secs(15);

/// What the mirror calls for every entry it reads: sequence and creation time.
pub(crate) type OnEntry = Box<dyn Fn(u64, SystemTime) + Send + Sync>;

/// The configuration in force as stored in the `stratus_config` bucket.
#[derive(Debug, Serialize, Deserialize)]
struct Current {
    seq: u64,
    op: String,
}

/// What the mirror task and the handlers share.
struct Shared {
    mirror: RwLock<Mirror>,
    head: watch::Sender<u64>,
    /// The stream's last sequence as last learnt from the server (info, acknowledgements).
    stream_last: AtomicU64,
    retain: u64,
    failure: Mutex<Option<Failure>>,
    on_entry: OnEntry,
    config_kv: kv::Store,
}

/// The JetStream log of one replica.
pub(crate) struct NatsLog {
    js: jetstream::Context,
    stream: stream::Stream,
    shared: Arc<Shared>,
    /// Serialises this replica's appends; holds the last sequence it knows of.
    writer: tokio::sync::Mutex<u64>,
    /// This replica's id, the prefix of its message ids.
    replica: String,
    counter: AtomicU64,
}

impl std::fmt::Debug for NatsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLog").field("replica", &self.replica).field("head", &self.head()).finish()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl NatsLog {
    /// Starts reading the stream into the mirror and returns once the mirror holds every
    /// entry the stream held when it started, so the first answers are not behind.
    pub async fn open(
        cluster: &Cluster,
        replica: String,
        retain: u64,
        on_entry: OnEntry,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        let mut mirror = Mirror::default();
        if let Ok(Some(bytes)) = cluster.config.get(CONFIG_KEY).await
            && let Ok(current) = serde_json::from_slice::<Current>(&bytes)
        {
            mirror.config = Some((current.seq, Arc::from(current.op)));
        }
        let info = cluster
            .stream
            .get_info()
            .await
            .map_err(|e| Error::Nats { what: "read the log stream's state", error: e.to_string() })?;
        let last = info.state.last_sequence;
        let shared = Arc::new(Shared {
            mirror: RwLock::new(mirror),
            head: watch::channel(0).0,
            stream_last: AtomicU64::new(last),
            retain,
            failure: Mutex::default(),
            on_entry,
            config_kv: cluster.config.clone(),
        });
        tokio::spawn(read_stream(cluster.stream.clone(), shared.clone(), shutdown.clone()));
        tokio::spawn(poll_last(cluster.stream.clone(), shared.clone(), shutdown));
        let mut head = shared.head.subscribe();
        let caught_up = tokio::time::timeout(Duration::from_secs(60), head.wait_for(|h| *h >= last)).await;
        if caught_up.is_err() {
            return Err(Error::Nats {
                what: "read the log stream",
                error: format!("not at {last} within 60 s"),
            });
        }
        tracing::info!(replica = %replica, floor = shared.read().floor, head = last, "nats log opened");
        Ok(Self {
            js: cluster.js.clone(),
            stream: cluster.stream.clone(),
            shared,
            writer: tokio::sync::Mutex::new(last),
            replica,
            counter: AtomicU64::new(0),
        })
    }

    /// Appends `build(seq)` once a quorum of the stream's replicas stored it; `committed(seq)`
    /// runs before the answer. `config` marks a `config` entry, also kept in the config bucket.
    pub async fn append(
        &self,
        build: &(dyn Fn(u64) -> String + Send + Sync),
        committed: Box<dyn FnOnce(u64) + Send>,
        config: bool,
        created: SystemTime,
    ) -> Result<u64, Error> {
        match self.publish(build, config, created).await {
            Ok((seq, text)) => {
                if self.shared.lock_failure().take().is_some() {
                    tracing::info!("log appends recovered");
                }
                committed(seq);
                if config {
                    // Kept apart before answering, so compaction never loses it; the mirror
                    // of every replica writes it too, should this replica die right here.
                    store_config(&self.shared.config_kv, seq, &text).await;
                }
                Ok(seq)
            }
            Err(e) => {
                let mut failure = self.shared.lock_failure();
                let since = failure.take().map_or_else(
                    || humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                    |f| f.since,
                );
                *failure = Some(Failure { since, error: e.to_string() });
                Err(e)
            }
        }
    }

    async fn publish(
        &self,
        build: &(dyn Fn(u64) -> String + Send + Sync),
        config: bool,
        created: SystemTime,
    ) -> Result<(u64, String), Error> {
        let mut last = self.writer.lock().await;
        *last = (*last).max(self.head()).max(self.shared.stream_last.load(Ordering::Relaxed));
        let id = format!("{}-{}", self.replica, self.counter.fetch_add(1, Ordering::Relaxed));
        let deadline = tokio::time::Instant::now() + APPEND_DEADLINE;
        loop {
            let seq = *last + 1;
            let text = build(seq);
            let mut message = PublishMessage::build()
                .payload(text.clone().into())
                .message_id(&id)
                .expected_last_sequence(*last)
                .header(CREATED, unix_ms(created).to_string().as_str());
            if config {
                message = message.header(CONFIG, "1");
            }
            let acked = match self.js.send_publish(SUBJECT, message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let error = match acked {
                Ok(ack) => {
                    *last = (*last).max(ack.sequence);
                    self.shared.stream_last.fetch_max(ack.sequence, Ordering::Relaxed);
                    if ack.duplicate {
                        tracing::info!(seq = ack.sequence, id = %id, "append was stored by an earlier attempt");
                    }
                    // A duplicate was stored by an earlier attempt with this very id: it was
                    // built for the sequence it got, so `text` for that sequence is the same.
                    let text = if ack.sequence == seq { text } else { build(ack.sequence) };
                    return Ok((ack.sequence, text));
                }
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Durability(format!("nats did not acknowledge the entry: {error}")));
            }
            match error.kind() {
                PublishErrorKind::WrongLastSequence => {
                    // Another replica appended first: learn where the stream is now.
                    match self.stream.get_info().await {
                        Ok(info) => *last = info.state.last_sequence,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the log stream's state");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                PublishErrorKind::MaxPayloadExceeded => {
                    return Err(Error::Durability(format!(
                        "the entry is larger than the nats servers accept (max_payload): {error}"
                    )));
                }
                _ => {
                    // No quorum yet (a node died, a leader election), or the connection moves
                    // to another server: the same id makes a retry safe.
                    tracing::warn!(error = %error, seq, "append not acknowledged; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Up to `max` entries after `after`, or a reset when `after` is no longer in the log.
    pub fn read_after(&self, after: u64, max: usize) -> Read {
        let m = self.shared.read();
        if after < m.floor {
            return Read::Reset { next: m.floor + 1 };
        }
        if after > m.head() {
            // Ahead of this replica's mirror: another replica served it entries this one has
            // not read yet (wait for them), unless the stream itself is behind (it was lost).
            if after <= self.shared.stream_last.load(Ordering::Relaxed) {
                return Read::UpToDate;
            }
            return Read::Reset { next: m.head() + 1 };
        }
        if after == m.head() {
            return Read::UpToDate;
        }
        m.entries_after(after, max)
    }

    /// The operation at `seq`, if it is still in the mirror.
    pub fn get(&self, seq: u64) -> Option<Arc<str>> {
        self.shared.read().get(seq)
    }

    /// The newest `config` entry and its sequence number.
    pub fn config(&self) -> Option<(u64, Arc<str>)> {
        self.shared.read().config.clone()
    }

    /// The last sequence number read into the mirror.
    pub fn head(&self) -> u64 {
        *self.shared.head.borrow()
    }

    /// The highest sequence number no longer in the mirror.
    pub fn floor(&self) -> u64 {
        self.shared.read().floor
    }

    /// Why appends fail, while they do.
    pub fn failure(&self) -> Option<Failure> {
        self.shared.lock_failure().clone()
    }

    /// A receiver that changes whenever the mirror reads an entry.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        self.mirror.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_failure(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds entry `seq` to the mirror; returns whether it was new.
    fn add(&self, seq: u64, text: Arc<str>, config: bool) -> bool {
        let mut m = self.mirror.write().unwrap_or_else(PoisonError::into_inner);
        if seq <= m.head() {
            return false;
        }
        if seq > m.head() + 1 {
            // The stream no longer holds the entries in between (retention moved past them
            // before this replica read them): subscribers behind `seq` must reset.
            tracing::warn!(from = m.head() + 1, to = seq - 1, "log entries expired before they were read");
            m.entries.clear();
            m.floor = seq - 1;
        }
        if config && m.config.as_ref().is_none_or(|(s, _)| *s < seq) {
            m.config = Some((seq, text.clone()));
        }
        m.entries.push_back(text);
        while m.entries.len() as u64 > self.retain {
            m.entries.pop_front();
            m.floor += 1;
        }
        true
    }
}

/// Writes the configuration in force to its bucket unless a newer one is there.
async fn store_config(bucket: &kv::Store, seq: u64, text: &str) {
    let value = match serde_json::to_vec(&Current { seq, op: text.to_owned() }) {
        Ok(v) => v,
        Err(e) => return tracing::error!(error = %e, "cannot encode the configuration"),
    };
    for _ in 0..10 {
        let entry = match bucket.entry(CONFIG_KEY).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the configuration bucket");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let stored = entry.as_ref().and_then(|e| serde_json::from_slice::<Current>(&e.value).ok());
        if stored.is_some_and(|c| c.seq >= seq) {
            return;
        }
        let written = match entry {
            Some(e) => bucket
                .update(CONFIG_KEY, value.clone().into(), e.revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => {
                bucket.create(CONFIG_KEY, value.clone().into()).await.map(|_| ()).map_err(|e| e.to_string())
            }
        };
        match written {
            Ok(()) => return,
            // Another replica wrote in between: read again.
            Err(e) => tracing::debug!(error = %e, seq, "configuration write raced; retrying"),
        }
    }
    tracing::error!(seq, "cannot store the configuration in force; the log still holds it");
}

/// Reads the stream into the mirror until `shutdown`, resuming after the mirror's head
/// whenever the consumer fails (a node died, the connection moved).
async fn read_stream(stream: stream::Stream, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let head = *shared.head.borrow();
        let deliver_policy = if head == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: head + 1 }
        };
        let consumer = stream.create_consumer(pull::OrderedConfig { deliver_policy, ..Default::default() });
        let messages = match consumer.await {
            Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match messages {
            Ok(mut messages) => loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = next_or_stall(&mut messages, &shared) => next,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading the log stream failed; resuming");
                        break;
                    }
                    None => break,
                };
                backoff = Duration::from_millis(100);
                let Ok(seq) = message.info().map(|i| i.stream_sequence) else {
                    tracing::error!("a log stream message without its sequence; resuming");
                    break;
                };
                let headers = message.headers.as_ref();
                let created = headers
                    .and_then(|h| h.get(CREATED))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .map_or_else(SystemTime::now, |ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
                let config = headers.and_then(|h| h.get(CONFIG)).is_some();
                let Ok(text) = std::str::from_utf8(&message.payload) else {
                    tracing::error!(seq, "a log entry is not UTF-8; stopping the mirror");
                    return;
                };
                let text: Arc<str> = Arc::from(text);
                if shared.add(seq, text.clone(), config) {
                    (shared.on_entry)(seq, created);
                    shared.stream_last.fetch_max(seq, Ordering::Relaxed);
                    shared.head.send_replace(seq);
                    if config {
                        let bucket = shared.config_kv.clone();
                        tokio::spawn(async move { store_config(&bucket, seq, &text).await });
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot read the log stream; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The next message of the stream, or an error when the reader stalled: the consumer lives on
/// one server, and when that server dies the client may not notice for long. Behind the stream
/// and not moving for 3 s means: read again from a new consumer.
async fn next_or_stall(
    messages: &mut pull::Ordered,
    shared: &Shared,
) -> Option<Result<jetstream::Message, String>> {
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut seen = *shared.head.borrow();
    let mut stalled = 0;
    loop {
        tokio::select! {
            next = messages.next() => return next.map(|r| r.map_err(|e| e.to_string())),
            _ = check.tick() => {}
        }
        let head = *shared.head.borrow();
        let behind = shared.stream_last.load(Ordering::Relaxed) > head;
        stalled = if head == seen && behind { stalled + 1 } else { 0 };
        seen = head;
        if stalled > 3 {
            return Some(Err(format!("no entry read for 3 s while the stream is ahead of {head}")));
        }
    }
}

/// Keeps `stream_last` current from the server, so an edge ahead of a lost stream is reset.
async fn poll_last(stream: stream::Stream, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if let Ok(info) = stream.get_info().await {
            shared.stream_last.store(info.state.last_sequence.max(*shared.head.borrow()), Ordering::Relaxed);
        }
    }
}
