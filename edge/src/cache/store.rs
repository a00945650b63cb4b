//! The memory store: a `quick_cache` map weighed in bytes, plus the indexes purges need (host
//! + path → keys, tag → keys).
//!
//! Eviction is quick_cache's CLOCK-Pro: a new object is *cold* and goes when the clock reaches
//! it unless it was asked for again meanwhile; an object asked for again becomes *hot* (most
//! of the room); a key evicted lately (a *ghost*, remembered by its hash) comes back hot. This
//! keeps one-hit wonders from pushing out the popular objects, as moka's TinyLFU admission
//! did, at a fraction of moka's cost: a read is one hash-table probe under a shard's read lock
//! and a reference bit, where moka queued every read and replayed it on its linked lists, and
//! an entry costs about 60 bytes of bookkeeping where moka's cost about 250
//! (`docs/performance.md`, "Disk tier hits, fourth look: both tiers on quick_cache").
//!
//! Slots expire by their own deadlines, checked where they are read: a lookup that finds an
//! expired slot removes it and reports a miss, and [`Store::sweep`] removes the ones nobody
//! asked for. Per-entry expiry in the cache would need a timer-wheel node per entry, 48 bytes
//! that a small object cannot afford. Expired slots are weighed like the others until they
//! go, so the cache never holds more than its size.
//!
//! Slots under one key are objects, `Vary` markers (the primary key of a varying resource
//! points to the header names that pick a variant) or hit-for-miss markers (the last response
//! was not storable, so requests go to the origin at once instead of queueing behind a fill).
//!
//! Index entries carry the entry's [`id`], so a late eviction notice for an old entry can never
//! remove the index entry of a newer one under the same key. Evicted objects are handed to the
//! disk tier and dropped from the index after the cache has let go of its shard's lock
//! ([`Evicted`]), and the index lock is never held while calling into the cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::header::HeaderName;
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};

use crate::cache::disk::promote::Doorkeeper;
use crate::cache::disk::slot::hash;
use crate::cache::entry::{Entry, Moment};
use crate::cache::key::{CacheKey, host_and_path, is_for_path};
use crate::cache::shards;

/// How long a hit-for-miss marker lasts (Varnish's default is 120 s).
const HIT_FOR_MISS: Duration = Duration::from_secs(60);

/// What one cache key holds.
#[derive(Clone, Debug)]
pub enum Slot {
    /// A stored response.
    Object(Arc<Entry>),
    /// The resource varies on these request headers; variants live under variant keys.
    Vary(Arc<VaryMarker>),
    /// The last response was not storable: go to the origin without coalescing, until then.
    HitForMiss(Moment),
}

impl Slot {
    fn is_expired(&self, now: Instant) -> bool {
        match self {
            Self::Object(e) => e.is_expired(now),
            Self::Vary(v) => v.until <= Moment::of(now),
            Self::HitForMiss(until) => *until <= Moment::of(now),
        }
    }

    /// The slot as read at `now`, or itself back once it has expired. An object comes with
    /// its age then, computed once for the expiry check and handed on to the hit.
    fn read(self, now: Instant) -> Result<Read, Self> {
        match self {
            Self::Object(e) => {
                let age = e.age(now);
                if e.expired_at(age) { Err(Self::Object(e)) } else { Ok(Read::Object(e, age)) }
            }
            expired if expired.is_expired(now) => Err(expired),
            Self::Vary(v) => Ok(Read::Vary(v)),
            Self::HitForMiss(_) => Ok(Read::HitForMiss),
        }
    }

    /// Whether both are the very same slot (not just equal).
    fn is(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Object(a), Self::Object(b)) => Arc::ptr_eq(a, b),
            (Self::Vary(a), Self::Vary(b)) => Arc::ptr_eq(a, b),
            (Self::HitForMiss(a), Self::HitForMiss(b)) => a == b,
            _ => false,
        }
    }

    fn weight(&self) -> u64 {
        let w = match self {
            Self::Object(e) => e.weight(),
            Self::Vary(v) => 256 + v.names.iter().map(|n| n.as_str().len()).sum::<usize>(),
            Self::HitForMiss(_) => 128,
        };
        w as u64
    }
}

/// What a `Vary` marker holds (behind an `Arc`, so that every slot stays two words: the cache
/// keeps a slot in each of its entries).
#[derive(Debug)]
pub struct VaryMarker {
    /// The request headers that select a variant.
    pub names: Box<[HeaderName]>,
    /// When the marker expires.
    until: Moment,
}

/// A slot that has not expired, as a lookup reads it.
enum Read {
    /// An object and its age at the lookup.
    Object(Arc<Entry>, Duration),
    Vary(Arc<VaryMarker>),
    HitForMiss,
}

/// Stored variants of a resource, each with its key.
pub type Variants = Vec<(Arc<str>, Arc<Entry>)>;

/// The result of a lookup.
#[derive(Debug)]
pub enum Found {
    /// A stored response for this request's variant, and its age (`Entry::age`) at the
    /// lookup's `now`.
    Object(Arc<Entry>, Duration),
    /// Nothing storable lately: go to the origin directly.
    HitForMiss,
    /// Nothing under the primary key.
    UriMiss,
    /// The resource varies and this variant is not stored.
    VaryMiss,
}

/// What tells two entries under one key apart in the index: the entry's address. The index
/// compares it only with an entry it holds a reference to (being inserted, or just evicted),
/// and two live entries never share an address, so an old entry's late eviction can never
/// remove the index slot of its successor.
fn id(e: &Entry) -> usize {
    std::ptr::from_ref(e).addr()
}

#[derive(Default)]
struct Index {
    /// Every stored object's key → [`id`] of its entry. Keys start with host and path (see
    /// `key::CacheKey`), so the objects of a host, a path or a path prefix are one range of
    /// this map, and the keys are the same `Arc<str>`s the cache holds.
    keys: BTreeMap<Arc<str>, usize>,
    /// tag → key → [`id`] of its entry.
    tags: HashMap<Box<str>, HashMap<Arc<str>, usize>>,
}

impl Index {
    fn add(&mut self, key: &Arc<str>, e: &Entry) {
        self.keys.insert(key.clone(), id(e));
        for tag in e.tags() {
            match self.tags.get_mut(tag) {
                Some(keys) => keys.insert(key.clone(), id(e)),
                None => self.tags.entry(tag.into()).or_default().insert(key.clone(), id(e)),
            };
        }
    }

    fn remove(&mut self, key: &Arc<str>, e: &Entry) {
        if self.keys.get(key) == Some(&id(e)) {
            self.keys.remove(key);
        }
        for tag in e.tags() {
            if let Some(map) = self.tags.get_mut(tag) {
                if map.get(key) == Some(&id(e)) {
                    map.remove(key);
                }
                if map.is_empty() {
                    self.tags.remove(tag);
                }
            }
        }
    }

    /// Keys starting with `start`, by a range scan of the sorted keys.
    fn starting_with<'a>(&'a self, start: &'a str) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        self.keys
            .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(start))
            .map(|(k, _)| k)
    }

    /// Keys whose path satisfies `matches`, on every host.
    fn with_path<'a>(
        &'a self,
        matches: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        self.keys.keys().filter(move |k| matches(host_and_path(k).1))
    }
}

/// Where objects go besides memory (the disk tier): called with the slot key (primary,
/// variant or slice key) of every object stored (`true`) and of every object evicted for room
/// (`false`). It must not block.
pub type Spill = Arc<dyn Fn(&Arc<str>, &Arc<Entry>, bool) + Send + Sync>;

/// How the store hashes keys. Keys are the client's host, path and query, so the hash must be
/// keyed with secrets an attacker cannot learn, or chosen keys would all land in one bucket:
/// aHash, keyed from the operating system's random source per process and per store, which
/// holds DoS resistance as a goal (SipHash-1-3 did the same for about 150 instructions more a
/// lookup; `docs/performance.md`, "The store's lookup and the site policy").
type Hasher = ahash::RandomState;

/// The share of the memory tier kept for objects asked for more than once (quick_cache's
/// default).
const HOT_SHARE: f64 = 0.97;
/// The size of a typical object, for sizing the cache's tables and its list of ghosts.
const TYPICAL_OBJECT: u64 = 2 << 10;

/// The cache and its purge indexes.
#[derive(Clone)]
pub struct Store {
    cache: Arc<Cache<Arc<str>, Slot, ByWeight, Hasher, Evictor>>,
    index: Arc<Mutex<Index>>,
    evictions: Arc<AtomicU64>,
    spill: Option<Spill>,
    /// Which objects read back from disk are promoted (`disk/promote.rs`).
    doorkeeper: Arc<Doorkeeper>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("entries", &self.cache.len()).finish_non_exhaustive()
    }
}

/// A purge target resolved to what the index can match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Exact path on one host (or every host), optionally one normalized query only.
    Url { host: Option<String>, path: String, query: Option<String> },
    /// Path prefix on one host (or every host).
    Prefix { host: Option<String>, prefix: String },
    /// Every object of a host.
    Host(String),
    /// Objects carrying a tag.
    Tag(String),
}

impl Store {
    /// A store holding at most `capacity` bytes.
    #[cfg(test)]
    pub fn new(capacity: u64) -> Self {
        Self::with_spill(capacity, capacity, None)
    }

    /// A store holding at most `capacity` bytes, in objects of at most `largest` bytes, that
    /// hands every object — whole, a `Vary` variant or a slice — to `spill` when it stores it
    /// and when it evicts it for room.
    pub fn with_spill(capacity: u64, largest: u64, spill: Option<Spill>) -> Self {
        let index = Arc::new(Mutex::new(Index::default()));
        let evictions = Arc::new(AtomicU64::new(0));
        let evictor = Evictor { index: index.clone(), evictions: evictions.clone(), spill: spill.clone() };
        // The hot share stays 97 % even where one shard is all there is: an object heavier than
        // that (only when `max_object_size` is nearly the whole tier) is not kept in memory; it
        // goes to the disk tier, if any. Growing the hot part for it would leave the clock no
        // cold part for every other object.
        let options = OptionsBuilder::new()
            .shards(shards::for_largest(capacity, largest))
            .hot_allocation(HOT_SHARE)
            .weight_capacity(capacity)
            .estimated_items_capacity(usize::try_from(capacity / TYPICAL_OBJECT).unwrap_or(usize::MAX))
            .build()
            .expect("every option is set");
        let cache = Arc::new(Cache::with_options(options, ByWeight, Hasher::new(), evictor));
        Self { cache, index, evictions, spill, doorkeeper: Arc::new(Doorkeeper::for_memory(capacity)) }
    }

    /// Finds what serves a request with `headers` for `key` at `now` (slots expired by then are
    /// removed and miss); also returns the key of the variant looked up (the key a fill for this
    /// request would store under).
    pub fn lookup(&self, key: &CacheKey, headers: &http::HeaderMap, now: Instant) -> (Found, Arc<str>) {
        let primary = key.primary();
        match self.get(primary, now) {
            None => (Found::UriMiss, primary.clone()),
            Some(Read::Object(e, age)) => (Found::Object(e, age), primary.clone()),
            Some(Read::HitForMiss) => (Found::HitForMiss, primary.clone()),
            Some(Read::Vary(v)) => {
                let vk = key.variant(&v.names, headers);
                match self.get(&vk, now) {
                    Some(Read::Object(e, age)) => (Found::Object(e, age), vk),
                    Some(Read::HitForMiss) => (Found::HitForMiss, vk),
                    _ => (Found::VaryMiss, vk),
                }
            }
        }
    }

    /// The slot under `key` unless it has expired (then it is removed).
    fn get(&self, key: &Arc<str>, now: Instant) -> Option<Read> {
        match self.cache.get(&**key)?.read(now) {
            Ok(read) => Some(read),
            Err(expired) => {
                self.remove_slot(key, &expired);
                None
            }
        }
    }

    /// Removes `slot` from under `key`, unless something else has replaced it meanwhile.
    fn remove_slot(&self, key: &Arc<str>, slot: &Slot) {
        if let Some((key, slot)) = self.cache.remove_if(&**key, |current| current.is(slot)) {
            self.unindex(&key, &slot);
        }
    }

    /// Drops the index entries of `slot`, removed from under `key`.
    fn unindex(&self, key: &Arc<str>, slot: &Slot) {
        if let Slot::Object(e) = slot {
            lock(&self.index).remove(key, e);
        }
    }

    /// Removes every expired slot; returns how many. It walks the whole cache (reading
    /// entries this way counts as no access), so it runs seldom: expired slots found by a
    /// lookup go at once.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<_> = self.cache.iter().filter(|(_, slot)| slot.is_expired(now)).collect();
        for (key, slot) in &expired {
            self.remove_slot(key, slot);
        }
        expired.len()
    }

    /// Whether anything is stored under `key` (used to close the lookup/fill race). Unlike a
    /// lookup it does not count as an access: an object found by this check alone is not
    /// made hot.
    pub fn contains(&self, key: &str) -> bool {
        self.cache.contains_key(key)
    }

    /// Stores `entry`; when it varies, under its variant key with a marker at the primary key.
    pub fn insert(
        &self,
        entry: &Arc<Entry>,
        vary: &[HeaderName],
        request_headers: &http::HeaderMap,
    ) -> Arc<str> {
        let key = if vary.is_empty() {
            entry.key.primary().clone()
        } else {
            let until = Moment::of(Instant::now()).after(entry.keep() + Duration::from_secs(60));
            let marker = VaryMarker { names: vary.into(), until };
            self.cache.insert(entry.key.primary().clone(), Slot::Vary(Arc::new(marker)));
            entry.key.variant(vary, request_headers)
        };
        if let Some(spill) = &self.spill {
            spill(&key, entry, true);
        }
        self.put(&key, entry);
        key
    }

    /// Offers an object read back from the disk tier under `key` to memory: it is stored there
    /// (and not handed to the disk tier again) on its second read from disk within a while
    /// (`disk/promote.rs`); whether it was. With `vary`, a variant, whose `Vary` marker goes
    /// back under the primary key in any case, so that the next lookup reads one file, not two.
    /// A large object whose body is a file stays on disk only: memory would hold its open
    /// file, which the disk tier's size no longer counts once it evicts it.
    pub fn promote(&self, key: &Arc<str>, entry: &Arc<Entry>, vary: &[HeaderName]) -> bool {
        if entry.file().is_some() {
            return false;
        }
        if !vary.is_empty() {
            let until = Moment::of(Instant::now()).after(entry.keep() + Duration::from_secs(60));
            let marker = VaryMarker { names: vary.into(), until };
            self.cache.insert(entry.key.primary().clone(), Slot::Vary(Arc::new(marker)));
        }
        if !self.doorkeeper.admit(hash(key)) {
            return false;
        }
        self.put(key, entry);
        true
    }

    fn put(&self, key: &Arc<str>, entry: &Arc<Entry>) {
        self.cache.insert(key.clone(), Slot::Object(entry.clone()));
        lock(&self.index).add(key, entry);
        // If the cache already dropped it (evicted at once: larger than it takes), undo the
        // index entry so it cannot leak.
        if !self.cache.contains_key(key) {
            lock(&self.index).remove(key, entry);
        }
    }

    /// The object stored under exactly `key` (a slice key, `cache/slice.rs`) unless it has
    /// expired (then it is removed).
    pub fn object(&self, key: &Arc<str>, now: Instant) -> Option<Arc<Entry>> {
        match self.get(key, now)? {
            Read::Object(e, _) => Some(e),
            _ => None,
        }
    }

    /// Stores `entry` under exactly `key` (a slice of its object), indexed for purges like any
    /// object: `key` starts with the object's primary key.
    pub fn insert_at(&self, key: &Arc<str>, entry: &Arc<Entry>) {
        if let Some(spill) = &self.spill {
            spill(key, entry, true);
        }
        self.put(key, entry);
    }

    /// What is stored for a primary key (the cache inspection): the slot there, and when it
    /// is a `Vary` marker, every variant stored under it with its key. Reading this way
    /// counts as no access.
    pub fn inspect(&self, primary: &Arc<str>) -> (Option<Slot>, Variants) {
        let slot = self.cache.get(&**primary);
        let Some(Slot::Vary(_)) = &slot else { return (slot, Vec::new()) };
        // Variant keys are the primary key, then `SEP SEP name:value`... (`key::CacheKey::variant`).
        let start = format!("{primary}{}", crate::cache::key::VARIANT_MARK);
        let keys: Vec<Arc<str>> = lock(&self.index).starting_with(&start).cloned().collect();
        let variants = keys
            .into_iter()
            .filter_map(|k| match self.cache.get(&*k) {
                Some(Slot::Object(e)) => Some((k, e)),
                _ => None,
            })
            .collect();
        (slot, variants)
    }

    /// The entry that would serve a request with `headers` for `key`, if any, and the key of
    /// its variant (the debug header). Expired entries are reported as they are, not removed.
    pub fn peek(&self, key: &CacheKey, headers: &http::HeaderMap) -> (Option<Arc<Entry>>, Arc<str>) {
        let primary = key.primary();
        match self.cache.get(&**primary) {
            Some(Slot::Object(e)) => (Some(e), primary.clone()),
            Some(Slot::Vary(v)) => {
                let vk = key.variant(&v.names, headers);
                match self.cache.get(&*vk) {
                    Some(Slot::Object(e)) => (Some(e), vk),
                    _ => (None, vk),
                }
            }
            _ => (None, primary.clone()),
        }
    }

    /// Drops whatever is stored under exactly `key` (a large object went to disk only, and an
    /// older copy must not answer in its place).
    pub fn remove(&self, key: &str) {
        if let Some((key, slot)) = self.cache.remove(key) {
            self.unindex(&key, &slot);
        }
    }

    /// The memory tier's size in bytes.
    pub fn capacity(&self) -> u64 {
        self.cache.capacity()
    }

    /// Remembers that `key`'s last response was not storable.
    pub fn mark_hit_for_miss(&self, key: Arc<str>) {
        self.cache.insert(key, Slot::HitForMiss(Moment::of(Instant::now()).after(HIT_FOR_MISS)));
    }

    /// Removes (or, with `soft`, marks stale) every entry `target` names; returns how many.
    pub fn purge(&self, target: &Target, soft: bool) -> usize {
        let keys: Vec<Arc<str>> = {
            let index = lock(&self.index);
            match target {
                Target::Url { host: Some(h), path, .. } => {
                    let host_path = format!("{h}{path}");
                    index.starting_with(&host_path).filter(|k| is_for_path(k, &host_path)).cloned().collect()
                }
                Target::Url { host: None, path, .. } => index.with_path(|p| p == path).cloned().collect(),
                Target::Prefix { host: Some(h), prefix } => {
                    index.starting_with(&format!("{h}{prefix}")).cloned().collect()
                }
                Target::Prefix { host: None, prefix } => {
                    index.with_path(|p| p.starts_with(prefix.as_str())).cloned().collect()
                }
                Target::Host(h) => index.starting_with(&format!("{h}/")).cloned().collect(),
                Target::Tag(t) => {
                    index.tags.get(t.as_str()).map(|m| m.keys().cloned().collect()).unwrap_or_default()
                }
            }
        };
        let query = match target {
            Target::Url { query, .. } => query.as_deref(),
            _ => None,
        };
        let mut n = 0;
        for key in keys {
            let Some(Slot::Object(e)) = self.cache.get(&key) else { continue };
            if query.is_some_and(|q| e.key.query() != Some(q)) {
                continue;
            }
            if let Target::Tag(t) = target
                && !e.tags().any(|x| x == t)
            {
                continue;
            }
            n += 1;
            if soft {
                e.invalidate();
            } else {
                self.remove(&key);
                // A URL, prefix or host purge removes every variant of the path, so the Vary
                // marker goes too and the next request is a plain miss. (A tag may name only
                // some variants; then the marker must stay.)
                if !matches!(target, Target::Tag(_))
                    && key != *e.key.primary()
                    && let Some(Slot::Vary(..)) = self.cache.get(&**e.key.primary())
                {
                    self.remove(e.key.primary());
                }
            }
        }
        n
    }

    /// Removes (or marks stale) everything; returns how many objects it held.
    pub fn purge_all(&self, soft: bool) -> usize {
        let mut n = 0;
        for (_, slot) in self.cache.iter() {
            if let Slot::Object(e) = slot {
                n += 1;
                if soft {
                    e.invalidate();
                }
            }
        }
        if !soft {
            self.cache.clear();
            let mut index = lock(&self.index);
            index.keys.clear();
            index.tags.clear();
        }
        n
    }

    /// Bytes held (weighted size).
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// Slots held.
    pub fn entries(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Entries evicted for room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

/// A slot weighs [`Slot::weight`].
#[derive(Clone)]
struct ByWeight;

impl Weighter<Arc<str>, Slot> for ByWeight {
    fn weight(&self, _: &Arc<str>, slot: &Slot) -> u64 {
        slot.weight()
    }
}

/// What the cache calls when it evicts for room.
#[derive(Clone)]
struct Evictor {
    index: Arc<Mutex<Index>>,
    evictions: Arc<AtomicU64>,
    spill: Option<Spill>,
}

impl Lifecycle<Arc<str>, Slot> for Evictor {
    type RequestState = Evicted;

    fn on_evict(&self, evicted: &mut Evicted, key: Arc<str>, slot: Slot) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
        if let Slot::Object(e) = slot {
            evicted.by.get_or_insert_with(|| self.clone());
            evicted.objects.push((key, e));
        }
    }
}

/// The objects one call into the cache evicted, handed to the disk tier and dropped from the
/// index when the call is done, after the cache has let go of its shard's lock (quick_cache
/// drops this after the call): the index's lock is never taken under it, and the requests
/// reading that shard are not held up by this work.
#[derive(Default)]
pub struct Evicted {
    by: Option<Evictor>,
    objects: Vec<(Arc<str>, Arc<Entry>)>,
}

impl Drop for Evicted {
    fn drop(&mut self) {
        let Some(by) = &self.by else { return };
        for (key, e) in self.objects.drain(..) {
            if let Some(spill) = &by.spill {
                spill(&key, &e, false);
            }
            lock(&by.index).remove(&key, &e);
        }
    }
}

fn lock(m: &Mutex<Index>) -> MutexGuard<'_, Index> {
    // A panic while holding the lock cannot leave the index worse than stale hints, which every
    // user re-checks against the cache, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::cache::entry::{Exchange, StoredHead};
    use crate::cache::freshness::Policy;

    fn key(path: &'static str) -> CacheKey {
        let rules = stratus_config::edge::KeyRules::default();
        CacheKey::new("h", &http::Uri::from_static(path), &rules, &HeaderMap::new())
    }

    /// An entry with a 10 s lifetime that arrived `ago` seconds ago (no validators, so it is
    /// kept one minute past its freshness).
    fn entry(path: &'static str, ago: u64) -> Arc<Entry> {
        let policy = Policy::fresh_for(Duration::from_secs(10));
        let head = StoredHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            targeted: HeaderMap::new(),
            tags: vec![],
            policy,
        };
        let ex = Exchange {
            request_time: SystemTime::now(),
            response_time: SystemTime::now(),
            response_instant: Instant::now().checked_sub(Duration::from_secs(ago)).expect("clock"),
        };
        Arc::new(Entry::new(head, Bytes::from_static(b"x"), key(path), &ex))
    }

    fn found(store: &Store, path: &'static str) -> &'static str {
        match store.lookup(&key(path), &HeaderMap::new(), Instant::now()).0 {
            Found::Object(..) => "object",
            Found::HitForMiss => "hit-for-miss",
            Found::UriMiss => "miss",
            Found::VaryMiss => "vary-miss",
        }
    }

    #[test]
    fn an_expired_object_is_a_miss_and_leaves_store_and_index() {
        let store = Store::new(1 << 20);
        store.insert(&entry("/stale", 30), &[], &HeaderMap::new());
        store.insert(&entry("/gone", 71), &[], &HeaderMap::new());
        assert_eq!(found(&store, "/stale"), "object", "stale but within its stale window");
        assert_eq!(found(&store, "/gone"), "miss", "10 s fresh + 60 s stale window are over");
        assert!(!store.contains("h/gone"), "the lookup removed it");
        assert_eq!(store.purge(&Target::Host("h".into()), false), 1, "only /stale is left to purge");
    }

    /// A hit comes with the age its expiry check computed (the pipeline uses it for the
    /// freshness decision, `Age` and `Cache-Status`), also for a variant.
    #[test]
    fn a_hit_comes_with_its_age() {
        let store = Store::new(1 << 20);
        let e = entry("/a", 30);
        store.insert(&e, &[], &HeaderMap::new());
        let now = Instant::now();
        let Found::Object(got, age) = store.lookup(&key("/a"), &HeaderMap::new(), now).0 else {
            panic!("a miss")
        };
        assert!(Arc::ptr_eq(&got, &e));
        assert_eq!(age, e.age(now));
        assert!(age >= Duration::from_secs(30) && age < Duration::from_secs(31), "{age:?}");
        let mut headers = HeaderMap::new();
        headers.insert("accept-encoding", "br".parse().unwrap());
        let v = entry("/v", 5);
        store.insert(&v, &[HeaderName::from_static("accept-encoding")], &headers);
        let Found::Object(_, age) = store.lookup(&key("/v"), &headers, now).0 else { panic!("a miss") };
        assert_eq!(age, v.age(now));
    }

    #[test]
    fn an_expired_hit_for_miss_marker_is_a_miss() {
        let store = Store::new(1 << 20);
        let k = key("/p");
        store.mark_hit_for_miss(k.primary().clone());
        assert_eq!(found(&store, "/p"), "hit-for-miss");
        let past = Moment::of(Instant::now().checked_sub(Duration::from_secs(1)).expect("clock"));
        store.cache.insert(k.primary().clone(), Slot::HitForMiss(past));
        assert_eq!(found(&store, "/p"), "miss");
    }

    #[test]
    fn the_sweep_removes_expired_entries_only() {
        let store = Store::new(1 << 20);
        for (path, ago) in [("/a", 0), ("/b", 100), ("/c", 5), ("/d", 1000)] {
            store.insert(&entry(path, ago), &[], &HeaderMap::new());
        }
        assert_eq!(store.sweep(), 2);
        assert_eq!(store.entries(), 2);
        assert_eq!((found(&store, "/a"), found(&store, "/c")), ("object", "object"));
    }

    /// Every object is handed to the disk tier under the key it is stored under — a variant
    /// under its variant key, a slice under its slice key — when stored, and again when evicted
    /// for room; one promoted from disk is not handed back.
    #[test]
    fn objects_spill_under_their_slot_keys() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let spill: Spill = Arc::new(move |k: &Arc<str>, _: &Arc<Entry>, fresh: bool| {
            into.lock().unwrap().push((k.to_string(), fresh));
        });
        let store = Store::with_spill(1 << 20, 1 << 20, Some(spill));
        let mut headers = HeaderMap::new();
        headers.insert("accept-encoding", "gzip".parse().unwrap());
        let vary = [HeaderName::from_static("accept-encoding")];
        let variant = store.insert(&entry("/v", 0), &vary, &headers);
        assert_eq!(&*variant, "h/v\u{1f}\u{1f}accept-encoding:gzip");
        let slice = crate::cache::slice::key("h/s", 2);
        store.insert_at(&slice, &entry("/s", 0));
        store.insert(&entry("/p", 0), &[], &HeaderMap::new());
        let (read, promoted) = (Arc::from("h/d"), entry("/d", 0));
        assert!(!store.promote(&read, &promoted, &[]), "promoted on its first read from disk");
        assert!(store.promote(&read, &promoted, &[]), "not promoted on its second read");
        assert!(store.contains(&read));
        let want = [(variant.to_string(), true), (slice.to_string(), true), ("h/p".to_owned(), true)];
        assert_eq!(*seen.lock().unwrap(), want);
        // A promoted variant brings its marker back: the next lookup finds it.
        let promoted = entry("/w", 0);
        let key = promoted.key.variant(&vary, &headers);
        store.promote(&key, &promoted, &vary);
        store.promote(&key, &promoted, &vary);
        assert!(
            matches!(store.lookup(&promoted.key, &headers, Instant::now()), (Found::Object(..), k) if k == key)
        );
        assert!(matches!(store.lookup(&promoted.key, &HeaderMap::new(), Instant::now()).0, Found::VaryMiss));
    }

    /// Objects evicted for room are handed to the disk tier and leave the purge index with
    /// them; objects asked for again outlast a stream of objects asked for once; the store
    /// stays within its size.
    #[test]
    fn evictions_spill_unindex_and_spare_what_is_asked_for_again() {
        let spilled = Arc::new(Mutex::new(Vec::new()));
        let into = spilled.clone();
        let spill: Spill = Arc::new(move |k: &Arc<str>, _: &Arc<Entry>, fresh: bool| {
            if !fresh {
                into.lock().unwrap().push(k.to_string());
            }
        });
        let capacity = 64 << 10;
        let store = Store::with_spill(capacity, 4 << 10, Some(spill));
        let paths: Vec<&'static str> =
            (0..2_000).map(|i| &*Box::leak(format!("/k{i}").into_boxed_str())).collect();
        let popular = &paths[..8];
        for p in popular {
            store.insert(&entry(p, 0), &[], &HeaderMap::new());
        }
        for (i, p) in paths[8..].iter().enumerate() {
            for q in popular {
                assert_eq!(found(&store, q), "object", "{q} evicted after {i} one-time objects");
            }
            store.insert(&entry(p, 0), &[], &HeaderMap::new());
            assert!(store.bytes() <= capacity, "{} bytes held", store.bytes());
        }
        let spilled = spilled.lock().unwrap();
        assert!(spilled.len() as u64 >= 1_992 - store.entries(), "{} spilled", spilled.len());
        assert!(spilled.iter().all(|k| !store.contains(k)), "a spilled object is still in memory");
        assert_eq!(store.evictions(), spilled.len() as u64);
        // The purge index holds exactly what the store holds.
        let held = store.entries();
        assert_eq!(lock(&store.index).keys.len() as u64, held);
        assert_eq!(store.purge(&Target::Host("h".into()), false) as u64, held);
        assert_eq!(store.entries(), 0);
        assert_eq!(lock(&store.index).keys.len(), 0);
    }

    /// A lookup that found an expired entry must not remove the fresh one stored meanwhile.
    #[test]
    fn removing_an_expired_slot_spares_its_replacement() {
        let store = Store::new(1 << 20);
        let old = entry("/p", 1000);
        store.insert(&old, &[], &HeaderMap::new());
        store.insert(&entry("/p", 0), &[], &HeaderMap::new());
        store.remove_slot(old.key.primary(), &Slot::Object(old.clone()));
        assert_eq!(found(&store, "/p"), "object");
    }
}
