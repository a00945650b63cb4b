//! The ordered event log: entries with contiguous sequence numbers, persisted in redb under
//! `--data` and mirrored in memory so subscriptions stream from RAM.
//!
//! An append commits with [`redb::Durability::Immediate`] before it returns, so an entry whose
//! id was answered to a client survives SIGKILL. Only the newest `retain_entries` entries are
//! kept; older ones are compacted away and the compaction floor is persisted, so a subscriber
//! behind it is told to reset rather than silently missing entries. Retention is by count, not
//! by the slowest edge: an edge that was gone for long drops its cache instead of pinning the
//! log forever (the same trade Kafka's retention makes).
//!
//! The newest `config` entry is also kept apart, in the same transaction that appends it, so
//! compaction never loses the configuration in force: registering edges are given it
//! ([`Log::config`]).
//!
//! A commit that fails (disk full, an I/O error) fails its callers and leaves the log
//! [failing](Log::failure), which `/healthz` and the dashboard report. redb refuses every write
//! after an I/O error until the database is reopened, so the failed database is closed and the
//! next append reopens it and reloads the mirror from the file, the one truth: the log recovers
//! as soon as the disk does, without a restart. (An entry whose commit reported failure may
//! still have reached the disk; after the reload it is streamed like any other — a purge its
//! client retries is then applied twice, which is harmless.)

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use tokio::sync::watch;

use crate::error::Error;

/// Entries by sequence number; the value is the operation as JSON text.
const ENTRIES: TableDefinition<'_, u64, &str> = TableDefinition::new("entries");
/// Bookkeeping: `floor` = the highest sequence number compacted away (0 when none).
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// The newest `config` entry, by sequence number: one row at most.
const CONFIG: TableDefinition<'_, u64, &str> = TableDefinition::new("config");

/// What a subscriber positioned after some sequence number gets next.
#[derive(Debug)]
pub enum Read {
    /// The entries after the position, in order (at most the requested number).
    Entries(Vec<(u64, Arc<str>)>),
    /// The position is gone (compacted, or ahead of this log): start over at `next`.
    Reset {
        /// First sequence number still in the log (or the next one to be written).
        next: u64,
    },
    /// Nothing new yet.
    UpToDate,
}

/// The in-memory mirror of a log (this one's or a JetStream stream's): `entries[i]` has
/// sequence number `floor + 1 + i`.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    pub(crate) floor: u64,
    pub(crate) entries: VecDeque<Arc<str>>,
    /// The newest `config` entry and its sequence number.
    pub(crate) config: Option<(u64, Arc<str>)>,
}

impl Mirror {
    /// The last sequence number held.
    pub(crate) fn head(&self) -> u64 {
        self.floor + self.entries.len() as u64
    }

    /// Up to `max` entries after `after`, which the caller checked is within `floor..head`.
    pub(crate) fn entries_after(&self, after: u64, max: usize) -> Read {
        let start = usize::try_from(after - self.floor).unwrap_or(usize::MAX);
        let entries = self.entries.iter().skip(start).take(max);
        Read::Entries(entries.enumerate().map(|(i, op)| (after + 1 + i as u64, op.clone())).collect())
    }

    /// The operation at `seq`, if it is still held.
    pub(crate) fn get(&self, seq: u64) -> Option<Arc<str>> {
        let index = seq.checked_sub(self.floor + 1)?;
        self.entries.get(usize::try_from(index).ok()?).cloned()
    }
}

/// An append waiting for the writer.
struct Pending {
    build: Box<dyn FnOnce(u64) -> String + Send>,
    /// A `config` entry: also kept as the configuration in force.
    config: bool,
    committed: Box<dyn FnOnce(u64) + Send>,
    reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

/// The persisted, ordered log.
#[derive(Debug)]
pub struct Log {
    store: Arc<Store>,
    /// Appends not yet taken by a writer.
    queue: Mutex<Vec<Pending>>,
    /// Held by the request that commits the next batch, so followers queue up behind it.
    writer: tokio::sync::Mutex<()>,
}

/// What a commit touches. A commit runs whole on a blocking thread, so a request cancelled
/// while waiting for it (client gone) never leaves the disk and the mirror disagreeing.
#[derive(Debug)]
struct Store {
    path: PathBuf,
    /// Taken for a whole commit: sequence numbers are assigned and written under it. `None`
    /// after a failed commit, until the next one reopens the file.
    db: Mutex<Option<Database>>,
    mirror: RwLock<Mirror>,
    head: watch::Sender<u64>,
    retain: u64,
    /// Set while commits fail.
    failure: Mutex<Option<Failure>>,
}

/// Why and since when the log cannot be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// When the first of the failing commits failed (RFC 3339).
    pub since: String,
    /// The latest error.
    pub error: String,
}

fn storage(e: impl Into<redb::Error>) -> Error {
    Error::Storage(e.into())
}

/// Opens (or creates) the database at `path` and reads the retained entries into a mirror.
fn load(path: &Path) -> Result<(Database, Mirror), Error> {
    let db = Database::create(path).map_err(|e| Error::Open { path: path.to_owned(), source: e })?;
    // Create the tables on first start so readers never see them missing.
    let txn = db.begin_write().map_err(storage)?;
    txn.open_table(ENTRIES).map_err(storage)?;
    txn.open_table(META).map_err(storage)?;
    txn.open_table(CONFIG).map_err(storage)?;
    txn.commit().map_err(storage)?;

    let mut mirror = Mirror::default();
    let txn = db.begin_read().map_err(storage)?;
    let meta = txn.open_table(META).map_err(storage)?;
    mirror.floor = meta.get("floor").map_err(storage)?.map_or(0, |v| v.value());
    let entries = txn.open_table(ENTRIES).map_err(storage)?;
    for row in entries.range(mirror.floor + 1..).map_err(storage)? {
        let (seq, op) = row.map_err(storage)?;
        // Appends are contiguous; a hole would mean a damaged file, and streaming past it
        // would break the no-gap promise, so refuse to start instead.
        if seq.value() != mirror.head() + 1 {
            return Err(Error::Corrupt { seq: mirror.head() + 1 });
        }
        mirror.entries.push_back(Arc::from(op.value()));
    }
    let config = txn.open_table(CONFIG).map_err(storage)?;
    if let Some((seq, op)) = redb::ReadableTable::last(&config).map_err(storage)? {
        mirror.config = Some((seq.value(), Arc::from(op.value())));
    }
    drop((meta, entries, config, txn));
    Ok((db, mirror))
}

impl Log {
    /// Opens (or creates) the log in `dir/log.redb` and loads the retained entries.
    pub fn open(dir: &Path, retain: u64) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Data { path: dir.to_owned(), source })?;
        let path = dir.join("log.redb");
        let (db, mirror) = load(&path)?;
        let (head, _) = watch::channel(mirror.head());
        tracing::info!(path = %path.display(), floor = mirror.floor, head = mirror.head(), "log opened");
        Ok(Self {
            store: Arc::new(Store {
                path,
                db: Mutex::new(Some(db)),
                mirror: RwLock::new(mirror),
                head,
                retain,
                failure: Mutex::default(),
            }),
            queue: Mutex::default(),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Appends the operation `build(seq)` returns and answers once it is durable on disk.
    /// `committed(seq)` runs after the commit and before subscribers are woken, so whatever it
    /// records is in place before any edge can ack the entry.
    ///
    /// Appends that arrive while a commit is in flight are committed together by whichever of
    /// them gets the writer next (group commit): one fsync for the batch, each caller answered
    /// only once its own entry is durable.
    pub async fn append(
        &self,
        build: impl FnOnce(u64) -> String + Send + 'static,
        committed: impl FnOnce(u64) + Send + 'static,
    ) -> Result<u64, Error> {
        self.push(Box::new(build), Box::new(committed), false).await
    }

    /// Appends a `config` entry as [`Self::append`] does, and keeps it as the configuration in
    /// force ([`Self::config`]) beyond compaction.
    pub async fn append_config(
        &self,
        build: impl FnOnce(u64) -> String + Send + 'static,
        committed: impl FnOnce(u64) + Send + 'static,
    ) -> Result<u64, Error> {
        self.push(Box::new(build), Box::new(committed), true).await
    }

    async fn push(
        &self,
        build: Box<dyn FnOnce(u64) -> String + Send>,
        committed: Box<dyn FnOnce(u64) + Send>,
        config: bool,
    ) -> Result<u64, Error> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.lock_queue().push(Pending { build, config, committed, reply });
        let _writer = self.writer.lock().await;
        // An earlier writer may have committed this entry along with its own.
        if let Ok(result) = answer.try_recv() {
            return result.map_err(Error::Durability);
        }
        let batch: Vec<Pending> = std::mem::take(&mut *self.lock_queue());
        let store = self.store.clone();
        // Awaiting the handle does not cancel the commit if this request goes away.
        if let Err(e) = tokio::task::spawn_blocking(move || store.commit(batch)).await {
            tracing::error!(error = %e, "log commit task failed");
        }
        answer
            .try_recv()
            .unwrap_or_else(|_| Err("the commit lost this entry".into()))
            .map_err(Error::Durability)
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to `max` entries after `after`, or a reset when `after` is no longer in the log.
    pub fn read_after(&self, after: u64, max: usize) -> Read {
        let m = self.read_mirror();
        if after < m.floor || after > m.head() {
            return Read::Reset { next: m.floor.max(m.head().min(after)) + 1 };
        }
        if after == m.head() {
            return Read::UpToDate;
        }
        m.entries_after(after, max)
    }

    /// The operation at `seq`, if it is still in the log.
    pub fn get(&self, seq: u64) -> Option<Arc<str>> {
        self.read_mirror().get(seq)
    }

    /// The newest `config` entry and its sequence number, compacted or not.
    pub fn config(&self) -> Option<(u64, Arc<str>)> {
        self.read_mirror().config.clone()
    }

    /// The last sequence number written (0 for an empty log).
    pub fn head(&self) -> u64 {
        *self.store.head.borrow()
    }

    /// The highest sequence number compacted away.
    pub fn floor(&self) -> u64 {
        self.read_mirror().floor
    }

    /// Why the log cannot be written, while the last commit failed.
    pub fn failure(&self) -> Option<Failure> {
        self.store.failure.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A receiver that changes whenever an entry is appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.store.head.subscribe()
    }

    fn read_mirror(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        self.store.read_mirror()
    }
}

impl Store {
    /// Writes `batch` in one durable transaction and answers every entry in it.
    fn commit(&self, batch: Vec<Pending>) {
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        // Empty when an earlier writer took this caller's entry and was cancelled: having
        // waited for the lock, that commit is done and has answered.
        if batch.is_empty() {
            return;
        }
        if db.is_none() {
            match self.reopen() {
                Ok(reopened) => *db = Some(reopened),
                Err(e) => return self.failed(&e, batch),
            }
        }
        let Some(database) = db.as_ref() else { return };
        let (first, floor, old_config) = {
            let m = self.read_mirror();
            (m.head() + 1, m.floor, m.config.as_ref().map(|(seq, _)| *seq))
        };
        let mut ops: Vec<Arc<str>> = Vec::with_capacity(batch.len());
        let mut hooks = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut config = None;
        for (seq, p) in (first..).zip(batch) {
            ops.push(Arc::from((p.build)(seq)));
            if p.config {
                config = Some((seq, ops.len() - 1));
            }
            hooks.push(p.committed);
            replies.push(p.reply);
        }
        let last = first + ops.len() as u64 - 1;
        let new_floor = floor.max(last.saturating_sub(self.retain));
        let written = (|| -> Result<(), Error> {
            let mut txn = database.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(|e| Error::Durability(e.to_string()))?;
            {
                let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
                for (seq, text) in (first..).zip(&ops) {
                    entries.insert(seq, &**text).map_err(storage)?;
                }
                for old in floor + 1..=new_floor {
                    entries.remove(old).map_err(storage)?;
                }
                let mut meta = txn.open_table(META).map_err(storage)?;
                meta.insert("floor", new_floor).map_err(storage)?;
                if let Some((seq, i)) = config {
                    let mut current = txn.open_table(CONFIG).map_err(storage)?;
                    if let Some(old) = old_config {
                        current.remove(old).map_err(storage)?;
                    }
                    current.insert(seq, &*ops[i]).map_err(storage)?;
                }
            }
            txn.commit().map_err(storage)
        })();
        if let Err(e) = written {
            // redb refuses every write after an I/O error until it is reopened: close it now
            // and reopen on the next commit.
            *db = None;
            self.fail(&e, replies.len());
            for reply in replies {
                let _ = reply.send(Err(e.to_string()));
            }
            return;
        }
        if self.failure.lock().unwrap_or_else(PoisonError::into_inner).take().is_some() {
            tracing::info!(path = %self.path.display(), "log writes recovered");
        }
        {
            let mut m = self.mirror.write().unwrap_or_else(PoisonError::into_inner);
            if let Some((seq, i)) = config {
                m.config = Some((seq, ops[i].clone()));
            }
            m.entries.extend(ops);
            while m.floor < new_floor {
                m.entries.pop_front();
                m.floor += 1;
            }
        }
        for (seq, hook) in (first..).zip(hooks) {
            hook(seq);
        }
        tracing::debug!(first, last, "log entries committed");
        self.head.send_replace(last);
        for (seq, reply) in (first..).zip(replies) {
            let _ = reply.send(Ok(seq));
        }
    }

    fn read_mirror(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        self.mirror.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reopens the file after a failed commit and reloads the mirror from it.
    fn reopen(&self) -> Result<Database, Error> {
        let (db, mirror) = load(&self.path)?;
        let head = mirror.head();
        let before =
            std::mem::replace(&mut *self.mirror.write().unwrap_or_else(PoisonError::into_inner), mirror);
        tracing::info!(path = %self.path.display(), head, was = before.head(), "log reopened");
        self.head.send_if_modified(|h| std::mem::replace(h, head) != head);
        Ok(db)
    }

    /// Records a failed commit of `entries` entries.
    fn fail(&self, e: &Error, entries: usize) {
        tracing::error!(error = %e, entries, "log commit failed; the next append reopens the log");
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        let since = failure
            .take()
            .map_or_else(|| humantime::format_rfc3339_millis(SystemTime::now()).to_string(), |f| f.since);
        *failure = Some(Failure { since, error: e.to_string() });
    }

    /// Fails every entry of `batch` with `e`.
    fn failed(&self, e: &Error, batch: Vec<Pending>) {
        self.fail(e, batch.len());
        for p in batch {
            let _ = p.reply.send(Err(e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(read: Read) -> Vec<u64> {
        match read {
            Read::Entries(v) => v.into_iter().map(|(s, _)| s).collect(),
            other => panic!("expected entries, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn appends_are_contiguous_compacted_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), 3).expect("open");
        assert!(matches!(log.read_after(0, 10), Read::UpToDate));
        for i in 1..=5u64 {
            let seq = log.append(|seq| format!("{{\"n\":{seq}}}"), |_| ()).await.expect("append");
            assert_eq!(seq, i);
        }
        assert_eq!(log.floor(), 2);
        assert_eq!(seqs(log.read_after(2, 10)), vec![3, 4, 5]);
        assert_eq!(seqs(log.read_after(3, 1)), vec![4]);
        assert!(matches!(log.read_after(1, 10), Read::Reset { next: 3 }));
        assert!(matches!(log.read_after(9, 10), Read::Reset { next: 6 }));
        assert!(matches!(log.read_after(5, 10), Read::UpToDate));
        assert_eq!(log.get(4).as_deref(), Some("{\"n\":4}"));
        assert_eq!(log.get(2), None);
        drop(log);

        let log = Log::open(dir.path(), 3).expect("reopen");
        assert_eq!((log.floor(), log.head()), (2, 5));
        assert_eq!(seqs(log.read_after(2, 10)), vec![3, 4, 5]);
        assert_eq!(log.append(|_| "{}".to_owned(), |_| ()).await.expect("append"), 6);
    }

    #[tokio::test]
    async fn the_newest_config_outlives_compaction_and_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), 2).expect("open");
        assert_eq!(log.config(), None);
        log.append_config(|seq| format!("{{\"c\":{seq}}}"), |_| ()).await.expect("config");
        log.append_config(|seq| format!("{{\"c\":{seq}}}"), |_| ()).await.expect("config");
        for _ in 0..4 {
            log.append(|_| "{}".to_owned(), |_| ()).await.expect("append");
        }
        assert_eq!(log.floor(), 4, "both config entries are compacted away");
        assert_eq!(log.config(), Some((2, Arc::from("{\"c\":2}"))));
        drop(log);
        let log = Log::open(dir.path(), 2).expect("reopen");
        assert_eq!(log.config(), Some((2, Arc::from("{\"c\":2}"))));
        log.append_config(|seq| format!("{{\"c\":{seq}}}"), |_| ()).await.expect("config");
        drop(log);
        let log = Log::open(dir.path(), 2).expect("reopen");
        assert_eq!(log.config(), Some((7, Arc::from("{\"c\":7}"))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_grouped_without_losing_or_reordering_any() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(Log::open(dir.path(), 1000).expect("open"));
        let hooked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (log, hooked) = (log.clone(), hooked.clone());
                tokio::spawn(async move {
                    let seq = log
                        .append(
                            move |seq| format!("{{\"i\":{i},\"seq\":{seq}}}"),
                            move |seq| {
                                hooked.lock().expect("hooks").push(seq);
                            },
                        )
                        .await
                        .expect("append");
                    (i, seq)
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            let (i, seq) = t.await.expect("task");
            // Each caller gets the sequence number its own entry was written under.
            let op = log.get(seq).expect("entry");
            assert!(op.starts_with(&format!("{{\"i\":{i},\"seq\":{seq}}}")), "{op}");
            got.push(seq);
        }
        got.sort_unstable();
        assert_eq!(got, (1..=50).collect::<Vec<u64>>());
        assert_eq!(hooked.lock().expect("hooks").len(), 50);
        assert_eq!(log.head(), 50);
        drop(log);
        let log = Log::open(dir.path(), 1000).expect("reopen");
        assert_eq!(seqs(log.read_after(0, 100)).len(), 50);
    }
}
