//! Buckets and objects on the local filesystem.
//!
//! Layout under the data directory:
//!
//! ```text
//! DATA/BUCKET/objects/ab/abcdef…      one file per object (see `format`): body, metadata, trailer
//! DATA/BUCKET/objects/ab/.tmp.…       a write in progress (removed on failure and at startup)
//! DATA/BUCKET/uploads/ID/upload.json  a multipart upload; its parts are `part.00001`, …
//! ```
//!
//! **Durability.** Every write goes to a temporary file in the destination's directory, is
//! fsynced, renamed over the destination and the directory is fsynced: a crash leaves the old
//! object or the new one, never a torn one, and a temporary file is never listed or served.
//! Concurrent writers to one key each rename a whole file; the last rename wins.
//!
//! **Index.** Each bucket keeps a sorted in-memory index (key → size, ETag, time) for listings,
//! rebuilt from the files at startup. It is updated under the bucket's write lock together with
//! the rename, so its order of updates is the order of renames. GET and HEAD read the metadata
//! from the object file itself, so the ETag always belongs to the body being served.

mod error;
pub mod format;
pub mod listing;
pub mod multipart;
pub mod staging;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

pub use error::StoreError;
pub use format::{Headers, ObjectMeta};
use format::{is_object_name, key_path, read_meta};
use listing::{ListPage, ListQuery};
use staging::{Sealed, Staged, ensure_dir, fsync_dir, unique_suffix};

/// An entry of a bucket's listing index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub size: u64,
    pub etag: String,
    pub modified_ms: u64,
}

impl From<&ObjectMeta> for Entry {
    fn from(m: &ObjectMeta) -> Self {
        Self { size: m.size, etag: m.etag.clone(), modified_ms: m.modified_ms }
    }
}

/// All buckets under one data directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    buckets: RwLock<BTreeMap<String, Arc<Bucket>>>,
    /// Serialises bucket creation and deletion.
    admin: tokio::sync::Mutex<()>,
    /// Incomplete multipart uploads older than this are gone (see `multipart`).
    upload_expiry: Option<Duration>,
}

/// One bucket: its directories and listing index.
#[derive(Debug)]
pub struct Bucket {
    pub name: String,
    dir: PathBuf,
    objects: PathBuf,
    uploads: PathBuf,
    pub created: SystemTime,
    index: RwLock<BTreeMap<String, Entry>>,
    /// Held while renaming into or removing from `objects` and updating `index`.
    write: tokio::sync::Mutex<()>,
    deleted: AtomicBool,
    upload_expiry: Option<Duration>,
}

impl Store {
    /// Opens (creating if needed) the data directory and indexes every bucket in it. Leftover
    /// temporary files from a crash are removed. Multipart uploads never expire.
    pub async fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, None).await
    }

    /// Like [`Store::open`]; incomplete multipart uploads older than `upload_expiry` (counted
    /// from their creation) are treated as aborted, and [`Bucket::expire_uploads`] deletes them.
    pub async fn open_with(root: &Path, upload_expiry: Option<Duration>) -> Result<Self, StoreError> {
        ensure_dir(root).await?;
        let mut buckets = BTreeMap::new();
        let mut dir = tokio::fs::read_dir(root).await?;
        while let Some(entry) = dir.next_entry().await? {
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name.starts_with(".trash.") {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
                continue;
            }
            if !entry.file_type().await?.is_dir() || stratus_config::origin::check_bucket_name(&name).is_err()
            {
                continue;
            }
            let bucket = Bucket::load(name.clone(), entry.path(), upload_expiry).await?;
            buckets.insert(name, Arc::new(bucket));
        }
        Ok(Self {
            root: root.to_owned(),
            buckets: RwLock::new(buckets),
            admin: tokio::sync::Mutex::new(()),
            upload_expiry,
        })
    }

    /// The bucket named `name`.
    pub fn bucket(&self, name: &str) -> Result<Arc<Bucket>, StoreError> {
        let buckets = self.buckets.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets.get(name).cloned().ok_or(StoreError::NoSuchBucket)
    }

    /// Every bucket, sorted by name.
    pub fn buckets(&self) -> Vec<Arc<Bucket>> {
        let buckets = self.buckets.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets.values().cloned().collect()
    }

    /// Creates a bucket; `name` must already be a valid bucket name.
    pub async fn create_bucket(&self, name: &str) -> Result<(), StoreError> {
        let _admin = self.admin.lock().await;
        if self.bucket(name).is_ok() {
            return Err(StoreError::BucketExists);
        }
        let dir = self.root.join(name);
        ensure_dir(&dir.join("objects")).await?;
        ensure_dir(&dir.join("uploads")).await?;
        let bucket = Bucket::load(name.to_owned(), dir, self.upload_expiry).await?;
        let mut buckets = self.buckets.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets.insert(name.to_owned(), Arc::new(bucket));
        Ok(())
    }

    /// Deletes an empty bucket. The directory is first renamed away, so the bucket disappears
    /// at once even if removing its files takes time or is interrupted.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), StoreError> {
        let _admin = self.admin.lock().await;
        let bucket = self.bucket(name)?;
        let _write = bucket.write.lock().await;
        if !bucket.index().is_empty() {
            return Err(StoreError::BucketNotEmpty);
        }
        bucket.deleted.store(true, Ordering::SeqCst);
        let trash = self.root.join(format!(".trash.{}", unique_suffix()));
        tokio::fs::rename(&bucket.dir, &trash).await?;
        fsync_dir(&self.root).await?;
        self.buckets.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
        let _ = tokio::fs::remove_dir_all(&trash).await;
        Ok(())
    }
}

impl Bucket {
    async fn load(name: String, dir: PathBuf, upload_expiry: Option<Duration>) -> Result<Self, StoreError> {
        let objects = dir.join("objects");
        let uploads = dir.join("uploads");
        ensure_dir(&objects).await?;
        ensure_dir(&uploads).await?;
        let created = tokio::fs::metadata(&dir).await?.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let index = scan(&objects).await?;
        clean_uploads(&uploads).await?;
        tracing::info!(bucket = %name, objects = index.len(), "bucket loaded");
        Ok(Self {
            name,
            dir,
            objects,
            uploads,
            created,
            index: RwLock::new(index),
            write: tokio::sync::Mutex::new(()),
            deleted: AtomicBool::new(false),
            upload_expiry,
        })
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_live(&self) -> Result<(), StoreError> {
        if self.deleted.load(Ordering::SeqCst) { Err(StoreError::NoSuchBucket) } else { Ok(()) }
    }

    /// The ETag of the current version of `key`, from the index.
    pub fn current_etag(&self, key: &str) -> Option<String> {
        self.index().get(key).map(|e| e.etag.clone())
    }

    /// Whether the bucket holds no object.
    pub fn is_empty(&self) -> bool {
        self.index().is_empty()
    }

    /// Starts writing an object body for `key`.
    pub async fn stage(&self, key: &str) -> Result<Staged, StoreError> {
        self.check_live()?;
        let path = key_path(&self.objects, key);
        Staged::create(path.parent().unwrap_or(&self.objects)).await
    }

    /// Makes a sealed write the current version of `meta.key`, durably.
    pub async fn commit(&self, sealed: Sealed, meta: &ObjectMeta) -> Result<(), StoreError> {
        self.commit_if(sealed, meta, |_| true).await.map(|_| ())
    }

    /// Like [`Bucket::commit`], but only if `allowed` accepts the current version (or its
    /// absence) at the moment of the rename; returns whether it committed. This makes
    /// `If-None-Match: *` and `If-Match` writes atomic: of concurrent creates, exactly one wins.
    pub async fn commit_if(
        &self,
        sealed: Sealed,
        meta: &ObjectMeta,
        allowed: impl FnOnce(Option<&Entry>) -> bool,
    ) -> Result<bool, StoreError> {
        let path = key_path(&self.objects, &meta.key);
        {
            let _write = self.write.lock().await;
            self.check_live()?;
            if !allowed(self.index().get(&meta.key)) {
                // Dropping `sealed` removes the temporary file.
                return Ok(false);
            }
            sealed.rename_to(&path).await?;
            let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            index.insert(meta.key.clone(), Entry::from(meta));
        }
        fsync_dir(path.parent().unwrap_or(&self.objects)).await?;
        Ok(true)
    }

    /// Opens `key` for reading: the file (positioned at the body) and its metadata. The open
    /// file keeps this version readable even if it is replaced or deleted meanwhile.
    pub async fn open(&self, key: &str) -> Result<Option<(tokio::fs::File, ObjectMeta)>, StoreError> {
        self.check_live()?;
        let path = key_path(&self.objects, key);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta = read_meta(&mut file).await?;
        if meta.key != key {
            return Err(StoreError::Corrupt(format!("file {} holds another key", path.display())));
        }
        Ok(Some((file, meta)))
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let path = key_path(&self.objects, key);
        {
            let _write = self.write.lock().await;
            self.check_live()?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
        }
        fsync_dir(path.parent().unwrap_or(&self.objects)).await?;
        Ok(true)
    }

    /// One page of a listing.
    pub fn list(&self, q: &ListQuery<'_>) -> ListPage<Entry> {
        listing::list(&self.index(), q)
    }
}

/// Removes what an interrupted abort (`.trash.*`) or part write (`ID/.tmp.*`) left behind.
async fn clean_uploads(uploads: &Path) -> Result<(), StoreError> {
    let mut entries = tokio::fs::read_dir(uploads).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".trash.") {
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        } else if entry.file_type().await?.is_dir() {
            let mut files = tokio::fs::read_dir(entry.path()).await?;
            while let Some(f) = files.next_entry().await? {
                if f.file_name().to_string_lossy().starts_with(".tmp.") {
                    let _ = tokio::fs::remove_file(f.path()).await;
                }
            }
        }
    }
    Ok(())
}

/// Reads every object file's metadata; removes temporary files left by a crash.
async fn scan(objects: &Path) -> Result<BTreeMap<String, Entry>, StoreError> {
    let mut index = BTreeMap::new();
    let mut fans = tokio::fs::read_dir(objects).await?;
    while let Some(fan) = fans.next_entry().await? {
        if !fan.file_type().await?.is_dir() {
            continue;
        }
        let mut files = tokio::fs::read_dir(fan.path()).await?;
        while let Some(file) = files.next_entry().await? {
            let name = file.file_name().to_string_lossy().into_owned();
            let path = file.path();
            if name.starts_with(".tmp.") {
                tracing::info!(path = %path.display(), "removing an interrupted write");
                let _ = tokio::fs::remove_file(&path).await;
                continue;
            }
            if !is_object_name(&name) {
                continue;
            }
            let meta = match tokio::fs::File::open(&path).await {
                Ok(mut f) => read_meta(&mut f).await,
                Err(e) => Err(e.into()),
            };
            match meta {
                Ok(meta) if key_path(objects, &meta.key) == path => {
                    index.insert(meta.key.clone(), Entry::from(&meta));
                }
                Ok(_) => tracing::warn!(path = %path.display(), "object file under the wrong name; ignored"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable object file; ignored");
                }
            }
        }
    }
    Ok(index)
}
