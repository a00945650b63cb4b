//! The disk tier's index: from a slot's hash to the file that holds it, weighed by file size,
//! kept within the tier's size by `quick_cache` (CLOCK-Pro), and deleting what it drops.
//!
//! Every disk hit asks the index first, so its lookup is on the request path. It was a moka
//! cache, as the memory tier was, until `docs/performance.md` ("Disk tier hits, fourth look")
//! measured a tenth of a disk hit's CPU in it: moka keeps its LRU order by queueing every read
//! and moving the entry's node to the back of a linked list later, several dependent cache
//! misses per read on an index that does not fit the CPU's cache. `quick_cache`'s read takes a
//! shard's read lock, probes one hash table and sets the entry's reference bit; eviction is its
//! clock hand passing over the entries, on the insert that needs the room (the writer thread).
//!
//! Policy: a new file is *cold* and is dropped when the clock reaches it unless it was read
//! since it was written; a file read from disk becomes *hot* and stays while it keeps being
//! read. Half the tier is kept for cold files ([`COLD_SHARE`]): a file is written when the
//! memory tier stores its object and is first read only after the memory tier has dropped it,
//! so the cold part must outlast the memory tier by far (quick_cache's default, 3 %, would
//! drop most files before they are ever read). A key dropped not long ago (a *ghost*) comes
//! back hot when it is written again. This is the probationary and protected halves of a
//! segmented LRU, approximated by clocks, as disk caches have long used.
//!
//! The files of entries the index drops (evicted, replaced, removed or forgotten) are deleted
//! by name under the open `objects/` directory, so the index and the directory agree; a read
//! that raced a deletion finds no file, which is a miss.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::{Cache, EntryAction, EntryResult};
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use crate::cache::disk::slot::ObjectName;
use crate::cache::shards;

/// The share of the tier's bytes kept for files not read since they were written.
const COLD_SHARE: f64 = 0.5;
/// The typical file size the index is sized for (its ghost list holds half as many keys).
const TYPICAL_FILE: u64 = 16 << 10;

/// Where an object's file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The write that made the file (its name is `<hash>-<seq>`).
    pub seq: u64,
    /// The file's size in bytes.
    pub size: u64,
    /// For a `Vary` marker this process wrote: the hash of its header names (so it is not
    /// written again for every variant). `None` for objects and markers found on start.
    pub vary: Option<u64>,
}

/// The index of the files under `objects/`.
pub struct Index {
    map: Cache<u64, Meta, BySize, DefaultHashBuilder, Unlink>,
    unlink: Unlink,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("files", &self.map.len()).finish_non_exhaustive()
    }
}

impl Index {
    /// An empty index of at most `capacity` bytes of files under the directory `objects`
    /// (held open), where no file is larger than `largest` bytes (a larger one is dropped as
    /// soon as it is indexed).
    pub fn new(objects: OwnedFd, capacity: u64, largest: u64) -> Self {
        let unlink = Unlink { objects: Arc::new(objects), evictions: Arc::new(AtomicU64::new(0)) };
        let (shards, hot) = shards::layout(capacity, largest, 1.0 - COLD_SHARE);
        let options = OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(capacity)
            .estimated_items_capacity(
                usize::try_from(capacity / TYPICAL_FILE).unwrap_or(usize::MAX).max(1024),
            )
            .hot_allocation(hot)
            .build()
            .expect("every option is set");
        let map = Cache::with_options(options, BySize, DefaultHashBuilder::default(), unlink.clone());
        Self { map, unlink }
    }

    /// The file of hash `h`, marked as read.
    pub fn get(&self, h: u64) -> Option<Meta> {
        self.map.get(&h)
    }

    /// The file of hash `h`, not marked as read.
    pub fn peek(&self, h: u64) -> Option<Meta> {
        self.map.peek(&h)
    }

    /// Whether a file is indexed under `h` (not marked as read).
    pub fn contains(&self, h: u64) -> bool {
        self.map.contains_key(&h)
    }

    /// Indexes `meta` under `h`; the file it replaces, if another, is deleted. Files the room
    /// for it takes are evicted (and deleted) on this call.
    pub fn insert(&self, h: u64, meta: Meta) {
        let replaced =
            match self.map.entry(&h, None, |_, cur| EntryAction::Retain(std::mem::replace(cur, meta))) {
                EntryResult::Retained(old) => Some(old),
                EntryResult::Vacant(guard) => {
                    // Refused only when a removal of `h` came in between: this file goes too.
                    if guard.insert(meta).is_err() {
                        self.unlink.delete(h, meta.seq);
                    }
                    None
                }
                EntryResult::Removed(_, old) | EntryResult::Replaced(_, old) => Some(old),
                EntryResult::Timeout => None,
            };
        if let Some(old) = replaced.filter(|old| old.seq != meta.seq) {
            self.unlink.delete(h, old.seq);
        }
    }

    /// Drops the entry of `h` and deletes its file.
    pub fn remove(&self, h: u64) {
        if let Some((_, m)) = self.map.remove(&h) {
            self.unlink.delete(h, m.seq);
        }
    }

    /// Drops the entry of `h` and deletes its file if it is still file `seq` (a newer write
    /// may have replaced it since it was read).
    pub fn forget(&self, h: u64, seq: u64) {
        if self.map.remove_if(&h, |m| m.seq == seq).is_some() {
            self.unlink.delete(h, seq);
        }
    }

    /// Drops every entry and deletes their files.
    pub fn clear(&self) {
        for (h, m) in self.map.drain() {
            self.unlink.delete(h, m.seq);
        }
    }

    /// Files indexed.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Bytes of the files indexed.
    pub fn bytes(&self) -> u64 {
        self.map.weight()
    }

    /// Files evicted for room so far (including files too large to be kept at all).
    pub fn evictions(&self) -> u64 {
        self.unlink.evictions.load(Ordering::Relaxed)
    }
}

/// A file weighs its size (at least 1: quick_cache never evicts what weighs 0).
#[derive(Clone)]
struct BySize;

impl Weighter<u64, Meta> for BySize {
    fn weight(&self, _: &u64, m: &Meta) -> u64 {
        m.size.max(1)
    }
}

/// Deletes the files of evicted entries.
#[derive(Clone)]
struct Unlink {
    objects: Arc<OwnedFd>,
    evictions: Arc<AtomicU64>,
}

impl Unlink {
    fn delete(&self, h: u64, seq: u64) {
        let name = ObjectName::new(h, seq);
        let _ = rustix::fs::unlinkat(&*self.objects, name.as_str(), rustix::fs::AtFlags::empty());
    }
}

impl Lifecycle<u64, Meta> for Unlink {
    type RequestState = Evicted;

    fn on_evict(&self, evicted: &mut Evicted, h: u64, m: Meta) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
        evicted.by.get_or_insert_with(|| self.clone());
        evicted.files.push((h, m.seq));
    }
}

/// The files an insert evicted, deleted when the insert is done: after quick_cache has let go
/// of the shard's lock, so that a slow `unlink` never holds up a reader of the shard (a request
/// on a runtime thread).
#[derive(Default)]
pub struct Evicted {
    by: Option<Unlink>,
    files: Vec<(u64, u64)>,
}

impl Drop for Evicted {
    fn drop(&mut self) {
        let Some(by) = &self.by else { return };
        for (h, seq) in self.files.drain(..) {
            by.delete(h, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustix::fs::{Mode, OFlags};

    use super::*;

    fn index(capacity: u64, largest: u64) -> (tempfile::TempDir, Index) {
        let d = tempfile::tempdir().unwrap();
        let fd =
            rustix::fs::open(d.path(), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .unwrap();
        (d, Index::new(fd, capacity, largest))
    }

    /// Writes the file of `(h, seq)`, `size` bytes, and indexes it.
    fn put(d: &Path, ix: &Index, h: u64, seq: u64, size: u64) {
        let name = ObjectName::new(h, seq);
        let path = d.join(name.as_str());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0u8; size as usize]).unwrap();
        ix.insert(h, Meta { seq, size, vary: None });
    }

    fn exists(d: &Path, h: u64, seq: u64) -> bool {
        d.join(ObjectName::new(h, seq).as_str()).exists()
    }

    /// A replaced file is deleted, the new one kept; a removed or forgotten one is deleted,
    /// but only the file the caller names is forgotten.
    #[test]
    fn files_the_index_drops_are_deleted() {
        let (d, ix) = index(1 << 20, 64 << 10);
        put(d.path(), &ix, 7, 1, 100);
        put(d.path(), &ix, 7, 2, 100);
        assert!(!exists(d.path(), 7, 1) && exists(d.path(), 7, 2));
        assert_eq!(ix.get(7), Some(Meta { seq: 2, size: 100, vary: None }));
        ix.forget(7, 1);
        assert!(exists(d.path(), 7, 2), "an older write's name does not drop the newer file");
        ix.forget(7, 2);
        assert!(!exists(d.path(), 7, 2) && ix.get(7).is_none());
        put(d.path(), &ix, 8, 3, 100);
        ix.remove(8);
        assert!(!exists(d.path(), 8, 3) && !ix.contains(8));
        put(d.path(), &ix, 9, 4, 100);
        put(d.path(), &ix, 10, 5, 100);
        ix.clear();
        assert!(!exists(d.path(), 9, 4) && !exists(d.path(), 10, 5));
        assert_eq!((ix.len(), ix.bytes()), (0, 0));
    }

    /// A file as large as the index was told to expect is kept, even when it is most of the
    /// capacity (the bench's 2 GiB object on a 4 GiB tier; it was dropped at once when the
    /// hot half of the one shard was smaller than the file). Not a file as large as the whole
    /// capacity while other files are hot: quick_cache makes room from cold files only.
    #[test]
    fn a_file_of_the_largest_size_is_kept() {
        for (capacity, largest) in [(4u64 << 20, 3u64 << 20), (4 << 20, 2 << 20), (8 << 20, 3 << 20)] {
            let (d, ix) = index(capacity, largest);
            put(d.path(), &ix, 1, 1, 10 << 10);
            put(d.path(), &ix, 2, 2, largest);
            assert!(ix.get(2).is_some(), "{largest} of {capacity}: dropped");
            assert!(exists(d.path(), 2, 2));
            assert!(ix.bytes() <= capacity);
        }
    }

    /// Writing far more than the capacity keeps the files within it, deletes every evicted
    /// file, and keeps the files that are read over those that are not.
    #[test]
    fn eviction_keeps_the_size_and_prefers_files_that_are_read() {
        let (d, ix) = index(100 << 10, 4 << 10);
        let size = 1 << 10;
        let hot: Vec<u64> = (0..20).collect();
        for &h in &hot {
            put(d.path(), &ix, h, h, size);
        }
        for round in 0..10u64 {
            for &h in &hot {
                assert!(ix.get(h).is_some(), "hot file {h} dropped in round {round}");
            }
            for i in 0..100u64 {
                let h = 1_000 + round * 100 + i;
                put(d.path(), &ix, h, h, size);
            }
            assert!(ix.bytes() <= 100 << 10, "{} bytes", ix.bytes());
        }
        let on_disk = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|sub| std::fs::read_dir(sub.path()).unwrap().count() as u64)
            .sum::<u64>();
        assert_eq!(on_disk, ix.len(), "every file the index dropped is deleted");
        assert!(ix.evictions() >= 1_000 - ix.len());
    }
}
