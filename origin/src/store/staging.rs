//! Temporary files that become objects: written next to their final name, fsynced, renamed.
//!
//! A [`Staged`] file lives in the directory of its destination (so the rename is atomic on
//! the same filesystem) under a `.tmp.` name that no object can have. If the write fails or the
//! request is dropped (client gone, shutdown), the guard removes the file; if the process dies,
//! the startup scan removes it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

use super::error::StoreError;
use super::format::{ObjectMeta, encode_trailer};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique within this process and across restarts (time, pid and a counter).
pub fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = Md5::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(n.to_le_bytes());
    hex::encode(h.finalize())
}

/// Creates `dir` (and parents) if missing, fsyncing the parent of each new directory so the
/// new entry survives a crash.
pub async fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if tokio::fs::metadata(dir).await.is_ok() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        Box::pin(ensure_dir(parent)).await?;
    }
    match tokio::fs::create_dir(dir).await {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                fsync_dir(parent).await?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes the entries of `dir` (a rename, a removal) durable.
pub async fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
    Ok(())
}

/// Removes the temporary file unless it was committed.
#[derive(Debug)]
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: a leftover is also removed by the next startup scan.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A body being written to a temporary file, with its MD5 and size.
#[derive(Debug)]
pub struct Staged {
    file: tokio::fs::File,
    guard: TempGuard,
    md5: Md5,
    size: u64,
}

impl Staged {
    /// Creates a temporary file in `dir` (created if missing).
    pub async fn create(dir: &Path) -> Result<Self, StoreError> {
        ensure_dir(dir).await?;
        let path = dir.join(format!(".tmp.{}", unique_suffix()));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        Ok(Self { file, guard: TempGuard(Some(path)), md5: Md5::new(), size: 0 })
    }

    /// Appends body bytes.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.md5.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ends the body: returns its MD5; the metadata is written by [`Staged::seal`].
    pub fn md5(&self) -> [u8; 16] {
        self.md5.clone().finalize().into()
    }

    /// Writes the metadata trailer and fsyncs; the file is then ready to be renamed.
    pub async fn seal(mut self, meta: &ObjectMeta) -> Result<Sealed, StoreError> {
        let trailer = encode_trailer(meta)?;
        self.file.write_all(&trailer).await?;
        self.file.flush().await?;
        self.file.sync_all().await?;
        Ok(Sealed { guard: self.guard })
    }
}

/// A complete, fsynced temporary file waiting for its rename.
#[derive(Debug)]
pub struct Sealed {
    guard: TempGuard,
}

impl Sealed {
    /// Renames the file to `dest`; from here on it is an object (or part).
    pub async fn rename_to(mut self, dest: &Path) -> Result<(), StoreError> {
        let Some(tmp) = self.guard.0.clone() else {
            return Err(StoreError::Corrupt("temporary file already consumed".into()));
        };
        tokio::fs::rename(&tmp, dest).await?;
        self.guard.0 = None;
        Ok(())
    }
}
