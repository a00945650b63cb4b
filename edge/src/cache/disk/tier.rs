//! The disk tier: objects in files under the cache directory, behind the memory store, kept
//! across restarts (`docs/edge.md`, "Disk tier").
//!
//! Layout, like nginx's `proxy_cache`: `objects/xx/<hash>-<seq>`, where `hash` is the XXH3 of
//! the cache key (`xx` its top byte, so no directory grows huge) and `seq` a number that grows
//! with every write, so a rewrite never touches the file a reader may have open and the file
//! of a replaced entry can be deleted by name. Files are written to `tmp/` and renamed into
//! place complete; each carries its key and a checksum (`file.rs`), so a torn or corrupted
//! file and a hash collision are misses, never garbage.
//!
//! The index (`index.rs`) maps key hashes to files, weighed by file size: its clock keeps
//! the directory within its size, and the files of entries it drops are deleted. On start the
//! index is rebuilt from file names and sizes alone (no file is opened), so an edge with many
//! objects is ready quickly.
//!
//! Writes never block a request: the memory store hands every object it stores (and every
//! object it evicts for room that is not on disk yet) to a bounded queue that one writer
//! thread drains; when the queue is full the object is not written (counted). A small file
//! the page cache holds is read on the runtime thread, anything else on tokio's blocking pool
//! (`load.rs`). Write and read errors (disk full, I/O errors) are counted and logged
//! and make the edge memory-only for [`PAUSE`]; nothing on the request path fails for them.
//!
//! Large objects (bodies over an eighth of the memory tier, [`Disk::streams_above`]) take
//! another way: the fill hands their body chunks to a writer task on the blocking pool as
//! they arrive, in batches bounded in bytes ([`Disk::begin_large`], `handoff.rs`; format in
//! `stream.rs`), and the file is indexed once the body is complete; they never pass through
//! memory whole. Reading one back opens its file and checks its head only: the body is read
//! block by block as it is served (`blocks.rs`).
//!
//! Purges are persisted as bans (`bans.rs`) and checked when an object is read back.
//!
//! Every object the memory store holds has a slot key that starts with its primary key
//! (`cache/key.rs`), and the tier keeps it under that slot key: the object itself under the
//! primary key, a `Vary` variant under its variant key, a slice under its slice key. As in the
//! memory store, the primary slot of a resource that varies holds a `Vary` marker (a small file
//! naming the request headers that select a variant), written by the writer thread before the
//! first variant under it, so that a lookup that finds nothing in memory — after an eviction or
//! a restart — computes the variant key from the request exactly as the memory store does
//! (`CacheKey::variant`) and reads that file. Every file carries its whole slot key, so a read
//! never serves another variant's or slice's body, even on a hash collision. Markers carry no
//! freshness of their own: one whose variants are gone costs a miss, and a marker is replaced
//! when the resource stops varying (an object under the primary key) or varies on other headers.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use http::HeaderMap;
use http::header::HeaderName;

use crate::cache::disk::bans::{Ban, Bans, MAX_BANS, Verdict, What};
use crate::cache::disk::blocks::FileBody;
use crate::cache::disk::file::{self, Content, Record};
use crate::cache::disk::handoff::{self, Batch};
use crate::cache::disk::index::{Index, Meta};
use crate::cache::disk::load::{self, Contents};
use crate::cache::disk::slot::{ObjectName, hash, now_ms, object_path, parse_name, variant_names};
use crate::cache::disk::stream::{self, StreamWriter};
use crate::cache::entry::Entry;
use crate::cache::key::CacheKey;

/// Room for a file's head (key, header fields, tags) beyond its body, when sizing the index.
const FILE_HEAD_MAX: u64 = 64 << 10;

/// The file holding the last control-plane entry applied.
const APPLIED: &str = "applied.seq";
/// How long the tier stays memory-only after a write error.
pub const PAUSE: Duration = Duration::from_secs(5);
/// Objects waiting to be written, at most.
const QUEUE: usize = 1024;
/// Body bytes waiting to be written, at most (one larger object may wait alone).
const QUEUE_BYTES: u64 = 64 << 20;
/// A body larger than the memory tier's size divided by this goes to disk only, written as it
/// streams in (see [`Disk::begin_large`]).
const MEMORY_SHARE: u64 = 8;

/// Counters of the disk tier (`/metrics`, `/stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskStats {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub writes: u64,
    pub errors: u64,
    pub corrupt: u64,
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    dropped: AtomicU64,
}

/// What a lookup found on disk.
#[derive(Debug)]
pub struct Loaded {
    /// The slot key it was stored under (the primary key, or a variant's key).
    pub slot: Arc<str>,
    pub entry: Arc<Entry>,
    /// The headers its resource varies on (empty when it does not vary): the memory store
    /// needs them to put the `Vary` marker back.
    pub vary: Vec<HeaderName>,
}

/// A large object's file being written as its body arrives (see [`Disk::begin_large`]).
/// Dropped without [`LargeFill::finish`] (a body cut short), it leaves no file.
#[derive(Debug)]
pub struct LargeFill {
    tx: handoff::Sender,
    done: tokio::task::JoinHandle<bool>,
}

impl LargeFill {
    /// Hands over the next body chunk (waits while the writer is more than
    /// [`handoff::LIMIT`] behind); false once the file is abandoned (an I/O error, or the
    /// body outgrew the tier).
    pub async fn push(&mut self, chunk: Bytes) -> bool {
        self.tx.push(chunk).await
    }

    /// Completes the file and puts it in the tier's index; whether it is stored.
    pub async fn finish(mut self) -> bool {
        let sent = self.tx.end();
        self.done.await.unwrap_or(false) && sent
    }
}

/// What one slot's file held.
enum Read {
    Object(Entry),
    Vary(Vec<HeaderName>),
}

/// What the writer thread and readers share.
struct Shared {
    dir: PathBuf,
    /// `dir/objects`, and that directory held open: reads open files by their name under it
    /// (`load::cached`), so the kernel walks two path components, not the whole path.
    objects: PathBuf,
    objects_dir: OwnedFd,
    /// Objects queued and not yet written (or skipped).
    pending: AtomicU64,
    index: Index,
    seq: AtomicU64,
    queued_bytes: AtomicU64,
    bans: Mutex<Bans>,
    counters: Arc<Counters>,
    /// Until when writes are skipped after an error.
    paused_until: Mutex<Option<Instant>>,
}

/// The disk tier.
pub struct Disk {
    shared: Arc<Shared>,
    tx: SyncSender<(Arc<str>, Arc<Entry>)>,
    capacity: u64,
    /// Whether objects may be read back: held while an edge that follows a control plane has
    /// not yet applied the purges it missed while it was down.
    reads: AtomicBool,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

impl Disk {
    /// Opens the tier in `cfg.path` (created when missing), rebuilds its index from the files
    /// there and starts the writer thread. With `hold_reads`, nothing is read back until
    /// [`Disk::open_reads`].
    pub fn open(cfg: &stratus_config::edge::Disk, largest: u64, hold_reads: bool) -> io::Result<Self> {
        let started = Instant::now();
        let dir = cfg.path.clone();
        fs::create_dir_all(dir.join("objects"))?;
        // Whatever is in tmp/ is a write a crash cut short.
        let _ = fs::remove_dir_all(dir.join("tmp"));
        fs::create_dir_all(dir.join("tmp"))?;
        let counters = Arc::new(Counters::default());
        let (bans, intact) = Bans::open(&dir.join("bans.log"))?;
        let objects = dir.join("objects");
        let dir_flags =
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        let objects_dir = rustix::fs::open(&objects, dir_flags, rustix::fs::Mode::empty())?;
        // A file holds its object's body, a CRC per 256 KiB of it, and its head.
        let largest_file = largest.saturating_add(largest / 65_536).saturating_add(FILE_HEAD_MAX);
        let index = Index::new(objects_dir.try_clone()?, cfg.size.bytes(), largest_file);
        let shared = Arc::new(Shared {
            objects,
            objects_dir,
            pending: AtomicU64::new(0),
            index,
            seq: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            bans: Mutex::new(bans),
            counters,
            paused_until: Mutex::new(None),
            dir,
        });
        let found = shared.recover()?;
        if !intact {
            tracing::warn!(dir = %shared.dir.display(), "ban log unreadable: emptying the disk cache");
            shared.clear();
        } else if shared.index.len() == 0 {
            // No object is older than any ban: the log has nothing left to say.
            lock(&shared.bans).reset()?;
        }
        let (tx, rx) = mpsc::sync_channel::<(Arc<str>, Arc<Entry>)>(QUEUE);
        let writer = shared.clone();
        std::thread::Builder::new().name("stratus-disk-writer".into()).spawn(move || {
            for (slot, entry) in rx {
                writer.write(&slot, &entry);
                writer.pending.fetch_sub(1, Ordering::Relaxed);
            }
        })?;
        tracing::info!(
            dir = %shared.dir.display(),
            objects = found,
            bytes = shared.index.bytes(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "disk cache ready"
        );
        Ok(Self { shared, tx, capacity: cfg.size.bytes(), reads: AtomicBool::new(!hold_reads) })
    }

    /// Lets objects be read back (the follower has caught up with the control plane).
    pub fn open_reads(&self) {
        if !self.reads.swap(true, Ordering::Relaxed) {
            tracing::info!("control plane caught up: serving from the disk cache");
        }
    }

    /// The last control-plane entry applied, as kept in the cache directory.
    pub fn applied_seq(&self) -> Option<u64> {
        fs::read_to_string(self.shared.dir.join(APPLIED)).ok()?.trim().parse().ok()
    }

    /// Keeps `seq` as the last control-plane entry applied (written aside, then renamed, so a
    /// crash leaves the old value or the new one). Purges are in the ban log before this
    /// moves past them.
    pub fn persist_applied_seq(&self, seq: u64) {
        let dir = &self.shared.dir;
        let tmp = dir.join("tmp").join(APPLIED);
        let result = fs::write(&tmp, format!("{seq}\n")).and_then(|()| fs::rename(&tmp, dir.join(APPLIED)));
        if let Err(e) = result {
            self.shared.fail("persist applied sequence", &e);
        }
    }

    /// Queues `entry`, stored in memory under `slot` (its primary key, a variant's or a
    /// slice's key), to be written, unless it is on disk already, too big, or the queue is
    /// full. Never blocks.
    pub fn spill(&self, slot: &Arc<str>, entry: &Arc<Entry>, fresh: bool) {
        let s = &self.shared;
        // A body in a file is on disk already (a refreshed large object keeps its file).
        if entry.file().is_some() || (!fresh && s.index.contains(hash(slot))) {
            return;
        }
        let size = entry.weight() as u64;
        if size > self.capacity || s.is_paused() {
            s.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let queued = s.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if queued > 0 && queued + size > QUEUE_BYTES {
            s.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            s.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        s.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send((slot.clone(), entry.clone()))
        {
            s.pending.fetch_sub(1, Ordering::Relaxed);
            s.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            s.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The body size above which a fill for a memory tier of `memory` bytes goes to disk
    /// only: one eighth of the memory tier, so that no single object takes a large share of
    /// it (`docs/edge.md`, "Disk tier").
    pub fn streams_above(memory: u64) -> u64 {
        memory / MEMORY_SHARE
    }

    /// Starts writing the large object `entry` (stored with an empty body) under `slot` as its
    /// body arrives, `length` bytes when known; `None` when the tier cannot take it now (too
    /// big, or paused after an error). Blocking work runs on tokio's blocking pool.
    pub fn begin_large(&self, slot: &Arc<str>, entry: Arc<Entry>, length: Option<u64>) -> Option<LargeFill> {
        let s = &self.shared;
        if length.is_some_and(|n| n > self.capacity) || s.is_paused() {
            s.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let suffix: Arc<str> = Arc::from(slot.strip_prefix(&**entry.key.primary())?);
        let (tx, rx) = handoff::pipe();
        let (shared, h, capacity) = (s.clone(), hash(slot), self.capacity);
        let done = tokio::task::spawn_blocking(move || shared.write_large(h, &entry, &suffix, capacity, rx));
        Some(LargeFill { tx, done })
    }

    /// Waits (blocking) up to `limit` for the queued objects to be written; on shutdown, so
    /// that a SIGTERM loses nothing that was fetched.
    pub fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.shared.pending.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What serves a request with `headers` for `key` from disk, after the memory store
    /// found nothing under the primary key: the object there, or, when a `Vary` marker is
    /// there, the request's variant. `None` when missing, corrupt, expired or purged.
    pub async fn lookup(&self, key: &CacheKey, headers: &HeaderMap) -> Option<Loaded> {
        let primary = key.primary().clone();
        let found = match self.read_slot(key, &primary).await {
            Some(Read::Object(e)) => Some(Loaded { slot: primary, entry: Arc::new(e), vary: Vec::new() }),
            Some(Read::Vary(names)) => {
                let slot = key.variant(&names, headers);
                match self.read_slot(key, &slot).await {
                    Some(Read::Object(e)) => Some(Loaded { slot, entry: Arc::new(e), vary: names }),
                    _ => None,
                }
            }
            None => None,
        };
        self.count(found.is_some());
        found
    }

    /// The object stored under exactly `slot` (a variant's key whose `Vary` marker is in
    /// memory, or a slice's key) for the resource `key`, unless it is missing, corrupt,
    /// expired or purged.
    pub async fn load_at(&self, key: &CacheKey, slot: &Arc<str>) -> Option<Arc<Entry>> {
        let found = match self.read_slot(key, slot).await {
            Some(Read::Object(e)) => Some(Arc::new(e)),
            _ => None,
        };
        self.count(found.is_some());
        found
    }

    /// Whether a file is indexed under `slot` (it may still turn out unusable when read).
    pub fn contains(&self, slot: &str) -> bool {
        self.reads.load(Ordering::Relaxed) && self.shared.index.contains(hash(slot))
    }

    /// Drops the file under `slot`, if any (a slice of a version the origin no longer has).
    pub fn remove(&self, slot: &str) {
        self.shared.index.remove(hash(slot));
    }

    fn count(&self, hit: bool) {
        let c = &self.shared.counters;
        let n = if hit { &c.hits } else { &c.misses };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the file under `slot` of the resource `key`: on the runtime thread when it is
    /// small and the page cache holds it (`load.rs`), else on tokio's blocking pool.
    async fn read_slot(&self, key: &CacheKey, slot: &Arc<str>) -> Option<Read> {
        if !self.reads.load(Ordering::Relaxed) {
            return None;
        }
        let h = hash(slot);
        let suffix = slot.strip_prefix(&**key.primary())?;
        let meta = self.shared.index.get(h)?;
        let name = ObjectName::new(h, meta.seq);
        let loaded = match load::cached(self.shared.objects_dir.as_fd(), name.as_str(), meta.size) {
            Ok(Some(contents)) => Ok(contents),
            Err(e) => Err(e),
            Ok(None) => {
                let path = self.shared.objects.join(name.as_str());
                let (shared, key, suffix) = (self.shared.clone(), key.clone(), Arc::<str>::from(suffix));
                return tokio::task::spawn_blocking(move || {
                    let loaded = load::blocking(&path, meta.size);
                    shared.read(h, meta.seq, &path, loaded, &key, &suffix)
                })
                .await
                .ok()
                .flatten();
            }
        };
        self.shared.read(h, meta.seq, Path::new(name.as_str()), loaded, key, suffix)
    }

    /// Records a purge so that it applies to objects on disk, now and after restarts; returns
    /// false when it could not be recorded durably (the tier was emptied instead).
    pub fn ban(&self, what: Vec<What>, soft: bool) -> bool {
        let s = &self.shared;
        let at = now_ms();
        if what.contains(&What::All) && !soft {
            s.clear();
        }
        let mut bans = lock(&s.bans);
        if bans.len() + what.len() > MAX_BANS {
            drop(bans);
            tracing::info!(max = MAX_BANS, "ban log full: emptying the disk cache");
            s.clear();
            bans = lock(&s.bans);
        }
        for what in what {
            if let Err(error) = bans.add(Ban { at, soft, what }) {
                drop(bans);
                s.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "cannot record a purge on disk: emptying the disk cache");
                s.clear();
                return false;
            }
        }
        true
    }

    /// Empties the tier (a control-plane reset).
    pub fn clear(&self) {
        self.shared.clear();
    }

    /// The tier's counters.
    pub fn stats(&self) -> DiskStats {
        let (s, c) = (&self.shared, &self.shared.counters);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DiskStats {
            entries: s.index.len(),
            bytes: s.index.bytes(),
            hits: get(&c.hits),
            misses: get(&c.misses),
            evictions: s.index.evictions(),
            writes: get(&c.writes),
            errors: get(&c.errors),
            corrupt: get(&c.corrupt),
            dropped: get(&c.dropped),
        }
    }
}

impl Shared {
    /// Indexes the object files found on disk; returns how many.
    fn recover(&self) -> io::Result<u64> {
        let objects = self.dir.join("objects");
        let mut max_seq = 0;
        let mut found = 0;
        for sub in fs::read_dir(&objects)? {
            let sub = sub?.path();
            let Ok(files) = fs::read_dir(&sub) else { continue };
            for f in files.flatten() {
                let name = f.file_name();
                let parsed = name.to_str().and_then(parse_name);
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                let Some((h, seq)) = parsed.filter(|_| size > 0) else {
                    let _ = fs::remove_file(f.path());
                    continue;
                };
                max_seq = max_seq.max(seq);
                match self.index.peek(h) {
                    // An older copy of the same key: the newer one wins.
                    Some(m) if m.seq > seq => {
                        let _ = fs::remove_file(f.path());
                    }
                    _ => {
                        self.index.insert(h, Meta { seq, size, vary: None });
                        found += 1;
                    }
                }
            }
        }
        self.seq.store(max_seq + 1, Ordering::Relaxed);
        Ok(found)
    }

    fn is_paused(&self) -> bool {
        let mut p = self.paused_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *p {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *p = None;
                tracing::info!(dir = %self.dir.display(), "disk cache writes resumed");
                false
            }
            None => false,
        }
    }

    fn fail(&self, what: &'static str, error: &io::Error) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut p = self.paused_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.is_none() {
            tracing::warn!(%error, op = what, pause_s = PAUSE.as_secs(), "disk cache error: memory only for now");
        }
        *p = Some(Instant::now() + PAUSE);
    }

    /// Writes one queued entry, stored under `slot` (the writer thread); a variant's `Vary`
    /// marker first, unless this process already wrote it.
    fn write(&self, slot: &Arc<str>, entry: &Entry) {
        let size = entry.weight() as u64;
        self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        let now = Instant::now();
        if self.is_paused() || entry.is_expired(now) {
            return;
        }
        // Every slot key starts with its object's primary key; anything else is not ours.
        let Some(suffix) = slot.strip_prefix(&**entry.key.primary()) else { return };
        let written_ms = now_ms();
        let resident = u64::try_from(entry.resident(now).as_millis()).unwrap_or(u64::MAX);
        let stored_ms = written_ms.saturating_sub(resident);
        if let Some(names) = variant_names(suffix) {
            let primary = hash(entry.key.primary());
            let names_hash = hash(&names.iter().map(HeaderName::as_str).collect::<Vec<_>>().join(","));
            if self.index.peek(primary).and_then(|m| m.vary) != Some(names_hash) {
                let marker = Record {
                    key: entry.key.clone(),
                    suffix: Arc::from(""),
                    content: Content::Vary(names),
                    written_ms,
                    stored_ms,
                };
                if !self.put(primary, &marker, Some(names_hash)) {
                    return;
                }
            }
        }
        let record = Record {
            key: entry.key.clone(),
            suffix: Arc::from(suffix),
            content: Content::Object(entry.persist(now)),
            written_ms,
            stored_ms,
        };
        self.put(hash(slot), &record, None);
    }

    /// Writes a large object's file from the chunks `rx` brings (blocking); once complete,
    /// renames it into place and indexes it under hash `h`. False when the body did not end
    /// complete, outgrew `capacity` or an I/O error occurred: then no file is left.
    fn write_large(
        &self,
        h: u64,
        entry: &Entry,
        suffix: &Arc<str>,
        capacity: u64,
        mut rx: handoff::Receiver,
    ) -> bool {
        let record = |now: Instant| {
            let written_ms = now_ms();
            let resident = u64::try_from(entry.resident(now).as_millis()).unwrap_or(u64::MAX);
            Record {
                key: entry.key.clone(),
                suffix: suffix.clone(),
                content: Content::Object(entry.persist(now)),
                written_ms,
                stored_ms: written_ms.saturating_sub(resident),
            }
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join("tmp").join(format!("{seq:x}"));
        let dest = object_path(&self.dir.join("objects"), h, seq);
        let result = (|| {
            let mut w = StreamWriter::create(&tmp, &record(Instant::now()))?;
            let mut batch = Vec::new();
            loop {
                match rx.take(&mut batch) {
                    Batch::Data => {
                        w.write_chunks(&batch)?;
                        batch.clear();
                        if w.body_len() > capacity {
                            return Ok(None);
                        }
                    }
                    Batch::End => break,
                    Batch::Abandoned => return Ok(None),
                }
            }
            let now = Instant::now();
            if entry.is_expired(now) {
                return Ok(None);
            }
            let n = w.finish(&record(now))?;
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&tmp, &dest)?;
            Ok::<Option<u64>, io::Error>(Some(n))
        })();
        match result {
            Ok(Some(n)) => {
                self.index.insert(h, Meta { seq, size: n, vary: None });
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key = %entry.key.primary(), bytes = n, "large object written to disk");
                true
            }
            Ok(None) => {
                let _ = fs::remove_file(&tmp);
                false
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.fail("write", &e);
                false
            }
        }
    }

    /// Writes `record` as the file of hash `h`; false after an error (then counted).
    fn put(&self, h: u64, record: &Record, vary: Option<u64>) -> bool {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join("tmp").join(format!("{seq:x}"));
        let dest = object_path(&self.dir.join("objects"), h, seq);
        let result = (|| {
            let mut w = BufWriter::with_capacity(256 << 10, fs::File::create(&tmp)?);
            let n = file::encode(&mut w, record)?;
            w.flush()?;
            drop(w);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&tmp, &dest)?;
            Ok::<u64, io::Error>(n)
        })();
        match result {
            Ok(n) => {
                self.index.insert(h, Meta { seq, size: n, vary });
                if vary.is_none() {
                    self.counters.writes.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.fail("write", &e);
                false
            }
        }
    }

    /// Makes what [`load`] read of the file `path` (under `objects/`, or whole; hash `h`,
    /// written `seq`-th) into slot `suffix` of the resource `key`: checks it, restores its
    /// entry, applies bans. A large object's file is not read whole: its head is, and its body
    /// is read when served.
    fn read(
        self: &Arc<Self>,
        h: u64,
        seq: u64,
        path: &Path,
        loaded: io::Result<Contents>,
        key: &CacheKey,
        suffix: &str,
    ) -> Option<Read> {
        let decoded = match loaded {
            Ok(Contents::Whole(data)) => file::decode(&data).map(|r| (r, None)),
            Ok(Contents::Streamed(f, len)) => {
                stream::open(&f, len).map(|o| (o.record, Some((f, o.at, o.len, o.crcs))))
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    self.fail("read", &e);
                }
                self.index.forget(h, seq);
                return None;
            }
        };
        let (record, body) = match decoded {
            Ok(r) => r,
            Err(why) => {
                self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %self.objects.join(path).display(), %why, "corrupt object file dropped");
                self.index.forget(h, seq);
                return None;
            }
        };
        // A different key with the same hash: not ours, and not corrupt either.
        if record.key != *key || &*record.suffix != suffix {
            return None;
        }
        let persisted = match record.content {
            Content::Object(p) => p,
            // Markers are not checked against bans: a purge that names the resource names its
            // variants too, and they are checked when read.
            Content::Vary(names) => return Some(Read::Vary(names)),
        };
        let aged = Duration::from_millis(
            persisted.age_ms.saturating_add(now_ms().saturating_sub(record.written_ms)),
        );
        let now = Instant::now();
        let Some(entry) = Entry::restore(persisted, record.key, aged, now) else {
            self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
            self.index.forget(h, seq);
            return None;
        };
        if entry.is_expired(now) {
            self.index.forget(h, seq);
            return None;
        }
        match lock(&self.bans).verdict(&entry, record.stored_ms) {
            Verdict::Drop => {
                self.index.forget(h, seq);
                return None;
            }
            Verdict::Stale => entry.invalidate(),
            Verdict::Keep => {}
        }
        let Some((f, at, body_len, crcs)) = body else { return Some(Read::Object(entry)) };
        let tier = Arc::downgrade(self);
        let on_corrupt = Box::new(move || {
            if let Some(tier) = tier.upgrade() {
                tier.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                tier.index.forget(h, seq);
            }
        });
        Some(Read::Object(entry.with_file(Arc::new(FileBody::new(f, at, body_len, crcs, on_corrupt)))))
    }

    /// Empties the tier: the index (which deletes the files) and the ban log.
    fn clear(&self) {
        self.index.clear();
        if let Err(error) = lock(&self.bans).reset() {
            tracing::warn!(%error, "cannot reset the ban log");
        }
    }
}

fn lock(m: &Mutex<Bans>) -> MutexGuard<'_, Bans> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
