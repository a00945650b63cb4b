//! The memory store: a moka cache weighed in bytes with a per-entry expiry, plus the indexes
//! purges need (host + path → keys, tag → keys).
//!
//! Slots under one key are objects, `Vary` markers (the primary key of a varying resource
//! points to the header names that pick a variant) or hit-for-miss markers (the last response
//! was not storable, so requests go to the origin at once instead of queueing behind a fill).
//!
//! Index entries carry the entry's generation, so a late eviction notice for an old entry can
//! never remove the index entry of a newer one under the same key. The index lock is never held
//! while calling into moka, whose eviction listener takes the same lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::header::HeaderName;
use moka::notification::RemovalCause;

use crate::entry::Entry;
use crate::key::{CacheKey, host_and_path, is_for_path};

/// How long a hit-for-miss marker lasts (Varnish's default is 120 s).
const HIT_FOR_MISS: Duration = Duration::from_secs(60);

/// What one cache key holds.
#[derive(Clone, Debug)]
pub enum Slot {
    /// A stored response.
    Object(Arc<Entry>),
    /// The resource varies on these request headers; variants live under variant keys.
    Vary(Arc<[HeaderName]>, Duration),
    /// The last response was not storable: go to the origin without coalescing.
    HitForMiss,
}

impl Slot {
    fn keep(&self) -> Duration {
        match self {
            Self::Object(e) => e.keep(),
            Self::Vary(_, keep) => *keep,
            Self::HitForMiss => HIT_FOR_MISS,
        }
    }

    fn weight(&self) -> u32 {
        let w = match self {
            Self::Object(e) => e.weight(),
            Self::Vary(names, _) => 256 + names.iter().map(|n| n.as_str().len()).sum::<usize>(),
            Self::HitForMiss => 128,
        };
        u32::try_from(w).unwrap_or(u32::MAX)
    }
}

/// The result of a lookup.
#[derive(Debug)]
pub enum Found {
    /// A stored response for this request's variant.
    Object(Arc<Entry>),
    /// Nothing storable lately: go to the origin directly.
    HitForMiss,
    /// Nothing under the primary key.
    UriMiss,
    /// The resource varies and this variant is not stored.
    VaryMiss,
}

struct SlotExpiry;

impl moka::Expiry<Arc<str>, Slot> for SlotExpiry {
    fn expire_after_create(&self, _key: &Arc<str>, value: &Slot, _now: Instant) -> Option<Duration> {
        Some(value.keep())
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        value: &Slot,
        _now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep())
    }
}

#[derive(Default)]
struct Index {
    /// Every stored object's key → generation. Keys start with host and path (see
    /// `key::CacheKey`), so the objects of a host, a path or a path prefix are one range of
    /// this map, and the keys are the same `Arc<str>`s the cache holds.
    keys: BTreeMap<Arc<str>, u64>,
    /// tag → key → generation.
    tags: HashMap<Box<str>, HashMap<Arc<str>, u64>>,
}

impl Index {
    fn add(&mut self, key: &Arc<str>, e: &Entry) {
        self.keys.insert(key.clone(), e.generation);
        for tag in &e.tags {
            self.tags.entry(tag.clone()).or_default().insert(key.clone(), e.generation);
        }
    }

    fn remove(&mut self, key: &Arc<str>, e: &Entry) {
        if self.keys.get(key) == Some(&e.generation) {
            self.keys.remove(key);
        }
        for tag in &e.tags {
            if let Some(map) = self.tags.get_mut(tag) {
                if map.get(key) == Some(&e.generation) {
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

/// The cache and its purge indexes.
#[derive(Clone)]
pub struct Store {
    cache: moka::sync::Cache<Arc<str>, Slot>,
    index: Arc<Mutex<Index>>,
    evictions: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("entries", &self.cache.entry_count()).finish_non_exhaustive()
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
    pub fn new(capacity: u64) -> Self {
        let index = Arc::new(Mutex::new(Index::default()));
        let evictions = Arc::new(AtomicU64::new(0));
        let (idx, ev) = (index.clone(), evictions.clone());
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_k: &Arc<str>, v: &Slot| v.weight())
            .expire_after(SlotExpiry)
            .eviction_listener(move |key: Arc<Arc<str>>, value: Slot, cause: RemovalCause| {
                if cause == RemovalCause::Size {
                    ev.fetch_add(1, Ordering::Relaxed);
                }
                // A replaced entry's key lives on under its successor, which `insert` indexes.
                if let (Slot::Object(e), true) = (&value, cause != RemovalCause::Replaced) {
                    lock(&idx).remove(&key, e);
                }
            })
            .build();
        Self { cache, index, evictions, generation: Arc::new(AtomicU64::new(1)) }
    }

    /// A fresh generation number for a new entry.
    pub fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed)
    }

    /// Finds what serves a request with `headers` for `key`; also returns the key of the
    /// variant looked up (the key a fill for this request would store under).
    pub fn lookup(&self, key: &CacheKey, headers: &http::HeaderMap) -> (Found, Arc<str>) {
        let primary = key.primary();
        match self.cache.get(&**primary) {
            None => (Found::UriMiss, primary.clone()),
            Some(Slot::Object(e)) => (Found::Object(e), primary.clone()),
            Some(Slot::HitForMiss) => (Found::HitForMiss, primary.clone()),
            Some(Slot::Vary(names, _)) => {
                let vk = key.variant(&names, headers);
                match self.cache.get(&vk) {
                    Some(Slot::Object(e)) => (Found::Object(e), vk),
                    Some(Slot::HitForMiss) => (Found::HitForMiss, vk),
                    _ => (Found::VaryMiss, vk),
                }
            }
        }
    }

    /// Whether anything is stored under `key` (used to close the lookup/fill race). Unlike a
    /// lookup it does not count as an access: TinyLFU admits objects by how often they are
    /// asked for, and a miss that counted three times (lookup, this check, the check after
    /// storing) would push out objects asked for twice as often.
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
            let keep = entry.keep() + Duration::from_secs(60);
            self.cache.insert(entry.key.primary().clone(), Slot::Vary(Arc::from(vary), keep));
            entry.key.variant(vary, request_headers)
        };
        self.cache.insert(key.clone(), Slot::Object(entry.clone()));
        lock(&self.index).add(&key, entry);
        // If moka already dropped it, undo the index entry so it cannot leak. (A refusal by
        // the admission policy comes later, through the eviction listener.)
        if !self.cache.contains_key(&key) {
            lock(&self.index).remove(&key, entry);
        }
        key
    }

    /// Remembers that `key`'s last response was not storable.
    pub fn mark_hit_for_miss(&self, key: Arc<str>) {
        self.cache.insert(key, Slot::HitForMiss);
    }

    /// Removes whatever `key` holds (a stale entry replaced by an uncacheable response).
    pub fn remove(&self, key: &str) {
        self.cache.invalidate(key);
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
                && !e.tags.iter().any(|x| **x == **t)
            {
                continue;
            }
            n += 1;
            if soft {
                e.invalidate();
            } else {
                self.cache.invalidate(&key);
                // A URL, prefix or host purge removes every variant of the path, so the Vary
                // marker goes too and the next request is a plain miss. (A tag may name only
                // some variants; then the marker must stay.)
                if !matches!(target, Target::Tag(_))
                    && key != *e.key.primary()
                    && let Some(Slot::Vary(..)) = self.cache.get(&**e.key.primary())
                {
                    self.cache.invalidate(&**e.key.primary());
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
            self.cache.invalidate_all();
            let mut index = lock(&self.index);
            index.keys.clear();
            index.tags.clear();
        }
        n
    }

    /// Runs moka's housekeeping (expiry, eviction, listener calls) off the request path.
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// Bytes held (weighted size).
    pub fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Slots held.
    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Entries evicted for room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

fn lock(m: &Mutex<Index>) -> MutexGuard<'_, Index> {
    // A panic while holding the lock cannot leave the index worse than stale hints, which every
    // user re-checks against the cache, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
