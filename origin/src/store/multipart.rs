//! Multipart uploads: an upload is a directory of durable part files; completing it
//! concatenates the parts into a new object file and commits it like any other write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::Bucket;
use super::error::StoreError;
use super::format::{Headers, ObjectMeta, read_meta};
use super::staging::{Sealed, Staged, ensure_dir, fsync_dir, unique_suffix};

/// S3's minimum size of every part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// What CreateMultipartUpload recorded: the object's future headers and metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UploadInfo {
    pub key: String,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub user: BTreeMap<String, String>,
    pub initiated_ms: u64,
}

/// A stored part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    pub modified_ms: u64,
}

/// Upload ids are 32 hex digits; anything else names no upload (and no path).
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn part_name(n: u32) -> String {
    format!("part.{n:05}")
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Bucket {
    /// Whether an upload started at `initiated_ms` is past the bucket's expiry at `now_ms`.
    fn expired(&self, initiated_ms: u64, now_ms: u64) -> bool {
        self.upload_expiry.is_some_and(|age| {
            now_ms.saturating_sub(initiated_ms) >= u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
        })
    }

    fn upload_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        if valid_id(id) { Ok(self.uploads.join(id)) } else { Err(StoreError::NoSuchUpload) }
    }

    /// Starts an upload and returns its id.
    pub async fn create_upload(&self, info: &UploadInfo) -> Result<String, StoreError> {
        self.check_live()?;
        let id = unique_suffix();
        let dir = self.uploads.join(&id);
        ensure_dir(&dir).await?;
        let tmp = dir.join(format!(".tmp.{}", unique_suffix()));
        let json = serde_json::to_vec(info).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let write = async {
            let file = tokio::fs::File::create(&tmp).await?;
            let mut file = file;
            tokio::io::AsyncWriteExt::write_all(&mut file, &json).await?;
            file.sync_all().await?;
            tokio::fs::rename(&tmp, dir.join("upload.json")).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e.into());
        }
        fsync_dir(&dir).await?;
        Ok(id)
    }

    /// The upload's recorded info, checking it exists and is for `key`.
    pub async fn upload(&self, id: &str, key: &str) -> Result<UploadInfo, StoreError> {
        let dir = self.upload_dir(id)?;
        let json = match tokio::fs::read(dir.join("upload.json")).await {
            Ok(j) => j,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NoSuchUpload),
            Err(e) => return Err(e.into()),
        };
        let info: UploadInfo =
            serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // An expired upload is gone even before the sweeper deletes its files.
        if info.key != key || self.expired(info.initiated_ms, now_ms()) {
            return Err(StoreError::NoSuchUpload);
        }
        Ok(info)
    }

    /// Starts writing a part of upload `id`.
    pub async fn stage_part(&self, id: &str) -> Result<Staged, StoreError> {
        self.check_live()?;
        Staged::create(&self.upload_dir(id)?).await
    }

    /// Makes a sealed part durable under its number (replacing an earlier one).
    pub async fn commit_part(&self, id: &str, number: u32, sealed: Sealed) -> Result<(), StoreError> {
        let dir = self.upload_dir(id)?;
        sealed.rename_to(&dir.join(part_name(number))).await?;
        fsync_dir(&dir).await
    }

    /// Every stored part, by number.
    pub async fn parts(&self, id: &str) -> Result<Vec<PartInfo>, StoreError> {
        let dir = self.upload_dir(id)?;
        let mut parts = Vec::new();
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NoSuchUpload,
            _ => e.into(),
        })?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(number) = name.strip_prefix("part.").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let mut file = tokio::fs::File::open(entry.path()).await?;
            let meta = read_meta(&mut file).await?;
            parts.push(PartInfo { number, size: meta.size, etag: meta.etag, modified_ms: meta.modified_ms });
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Concatenates the listed parts into a sealed object file, not yet visible; returns it
    /// with its metadata. `meta` carries the headers, metadata and time; size, ETag and part
    /// sizes are filled in. [`Bucket::finish_upload`] commits it.
    pub async fn assemble_upload(
        &self,
        id: &str,
        chosen: &[(u32, String)],
        mut meta: ObjectMeta,
    ) -> Result<(Sealed, ObjectMeta), StoreError> {
        let dir = self.upload_dir(id)?;
        if chosen.is_empty() {
            return Err(StoreError::InvalidPart("no parts given".into()));
        }
        if chosen.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(StoreError::InvalidPartOrder);
        }
        let stored = self.parts(id).await?;
        let mut files = Vec::with_capacity(chosen.len());
        let mut etag_md5 = Md5::new();
        for (i, (number, etag)) in chosen.iter().enumerate() {
            let part = stored
                .iter()
                .find(|p| p.number == *number)
                .ok_or_else(|| StoreError::InvalidPart(format!("part {number} was not uploaded")))?;
            if etag.trim_matches('"') != part.etag {
                return Err(StoreError::InvalidPart(format!("part {number} has another etag")));
            }
            if i + 1 < chosen.len() && part.size < MIN_PART_SIZE {
                return Err(StoreError::EntityTooSmall(*number));
            }
            let digest = hex::decode(&part.etag).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            etag_md5.update(&digest);
            files.push((dir.join(part_name(*number)), part.size));
        }
        meta.part_sizes = files.iter().map(|(_, size)| *size).collect();
        let mut staged = self.stage(&meta.key).await?;
        let mut buf = vec![0u8; 1 << 20];
        for (path, size) in files {
            let mut file = tokio::fs::File::open(&path).await?.take(size);
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                staged.write(&buf[..n]).await?;
            }
        }
        meta.size = staged.size();
        meta.etag = format!("{}-{}", hex::encode(etag_md5.finalize()), chosen.len());
        meta.parts = u32::try_from(chosen.len()).ok();
        let sealed = staged.seal(&meta).await?;
        Ok((sealed, meta))
    }

    /// Commits an assembled upload as the object and deletes the upload.
    pub async fn finish_upload(&self, id: &str, sealed: Sealed, meta: &ObjectMeta) -> Result<(), StoreError> {
        let dir = self.upload_dir(id)?;
        self.commit(sealed, meta).await?;
        // The object is durable; the parts are garbage now. A crash here leaves an upload that
        // can still be aborted (or expires).
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(())
    }

    /// Every upload in progress (not expired) with its id, sorted by key, then start time,
    /// then id.
    pub async fn uploads(&self) -> Result<Vec<(String, UploadInfo)>, StoreError> {
        let now = now_ms();
        let mut out = self.all_uploads().await?;
        out.retain(|(_, info)| !self.expired(info.initiated_ms, now));
        Ok(out)
    }

    /// Aborts every upload past the bucket's expiry, deleting its parts; returns how many. An
    /// upload directory without a readable `upload.json` (a crash during CreateMultipartUpload)
    /// is deleted once it is older than the expiry too.
    pub async fn expire_uploads(&self) -> Result<usize, StoreError> {
        let Some(age) = self.upload_expiry else { return Ok(0) };
        let now = now_ms();
        let known = self.all_uploads().await?;
        let mut expired = 0;
        for (id, info) in &known {
            if self.expired(info.initiated_ms, now) {
                match self.abort_upload(id).await {
                    Ok(()) | Err(StoreError::NoSuchUpload) => expired += 1,
                    Err(e) => return Err(e),
                }
                tracing::info!(bucket = %self.name, upload = %id, key = %info.key, "expired an incomplete multipart upload");
            }
        }
        let mut entries = tokio::fs::read_dir(&self.uploads).await?;
        while let Some(entry) = entries.next_entry().await? {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !valid_id(&id) || known.iter().any(|(k, _)| *k == id) {
                continue;
            }
            let old = entry.metadata().await?.modified().ok().and_then(|m| m.elapsed().ok());
            if old.is_some_and(|elapsed| elapsed >= age) {
                tracing::warn!(bucket = %self.name, upload = %id, "removing an upload directory without upload.json");
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
        Ok(expired)
    }

    /// Every upload directory with a readable `upload.json`, expired or not, sorted.
    async fn all_uploads(&self) -> Result<Vec<(String, UploadInfo)>, StoreError> {
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.uploads).await?;
        while let Some(entry) = entries.next_entry().await? {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !valid_id(&id) {
                continue;
            }
            let Ok(json) = tokio::fs::read(entry.path().join("upload.json")).await else { continue };
            match serde_json::from_slice::<UploadInfo>(&json) {
                Ok(info) => out.push((id, info)),
                Err(e) => tracing::warn!(upload = %id, error = %e, "unreadable upload; ignored"),
            }
        }
        out.sort_by(|a, b| (&a.1.key, a.1.initiated_ms, &a.0).cmp(&(&b.1.key, b.1.initiated_ms, &b.0)));
        Ok(out)
    }

    /// Drops an upload and its parts.
    pub async fn abort_upload(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.upload_dir(id)?;
        if tokio::fs::metadata(dir.join("upload.json")).await.is_err() {
            return Err(StoreError::NoSuchUpload);
        }
        let trash = self.uploads.join(format!(".trash.{}", unique_suffix()));
        tokio::fs::rename(&dir, &trash).await?;
        let _ = tokio::fs::remove_dir_all(&trash).await;
        Ok(())
    }
}
