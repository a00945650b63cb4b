//! The on-disk object format and the mapping from keys to file names.
//!
//! An object is **one file**: the body bytes, then the metadata as JSON, then a 12-byte trailer
//! (`u32` little-endian JSON length, then the magic `STRATUS1`). Body and metadata therefore
//! switch together in a single `rename`, so a reader can never pair one version's body with
//! another version's ETag. Writing the metadata after the body lets the body stream straight to
//! disk while its MD5 and size are computed.
//!
//! Files are named by the SHA-256 of the key (`objects/ab/abcdef…`), never by the key itself:
//! no key — `..`, `%2e%2e`, an absolute path, 1,024 bytes of unicode — can name a path outside
//! the bucket, hit a file-name length limit, or collide with a temporary file (those start with
//! `.tmp.`). The key itself is kept in the metadata and checked on every read.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::StoreError;

/// Bytes after the body and the JSON: JSON length (u32 LE) and magic.
pub const TRAILER_LEN: u64 = 12;
const MAGIC: &[u8; 8] = b"STRATUS1";
/// Metadata larger than this is refused when reading (it cannot be ours).
const MAX_META_LEN: u32 = 1 << 20;

/// Everything stored about an object besides its body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The S3 key, exactly as the client sent it.
    pub key: String,
    /// Body length in bytes.
    pub size: u64,
    /// ETag without quotes: hex MD5, or `hex-N` for a multipart object.
    pub etag: String,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Headers stored with the object and returned on GET/HEAD.
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// `x-amz-meta-*` user metadata, names lowercased without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    /// Number of parts for a multipart object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// Size of each part of a multipart object, in order (for GET/HEAD `?partNumber=`). Objects
    /// completed before this was recorded have none and are served as one part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_sizes: Vec<u64>,
}

impl ObjectMeta {
    /// The byte range of part `number` (1-based) and the number of parts, as S3 counts them:
    /// an object not uploaded in parts is one part. `None` when there is no such part.
    pub fn part_range(&self, number: u32) -> Option<(std::ops::Range<u64>, u32)> {
        if self.part_sizes.is_empty() {
            return (number == 1).then_some((0..self.size, 1));
        }
        let count = u32::try_from(self.part_sizes.len()).ok()?;
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        let start: u64 = self.part_sizes.get(..index)?.iter().sum();
        let len = *self.part_sizes.get(index)?;
        Some((start..start + len, count))
    }
}

/// The standard headers S3 stores with an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
}

impl Headers {
    fn is_empty(&self) -> bool {
        self == &Headers::default()
    }
}

/// The file name of `key` inside a bucket's `objects` directory: `ab/abcdef…` (SHA-256 hex).
pub fn key_path(objects: &Path, key: &str) -> PathBuf {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    objects.join(&hash[..2]).join(hash)
}

/// Whether `name` is an object file name (64 lowercase hex digits) rather than a temp file.
pub fn is_object_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The trailer written after the body: JSON, then its length and the magic.
pub fn encode_trailer(meta: &ObjectMeta) -> Result<Vec<u8>, StoreError> {
    let mut out = serde_json::to_vec(meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let len = u32::try_from(out.len()).map_err(|_| StoreError::Corrupt("metadata too large".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
}

/// Reads the metadata of an open object file and checks it is whole and consistent.
pub async fn read_meta(file: &mut tokio::fs::File) -> Result<ObjectMeta, StoreError> {
    let total = file.metadata().await?.len();
    if total < TRAILER_LEN {
        return Err(StoreError::Corrupt("file shorter than its trailer".into()));
    }
    file.seek(SeekFrom::Start(total - TRAILER_LEN)).await?;
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact(&mut trailer).await?;
    if &trailer[4..] != MAGIC {
        return Err(StoreError::Corrupt("bad magic".into()));
    }
    let len = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if len > MAX_META_LEN || u64::from(len) + TRAILER_LEN > total {
        return Err(StoreError::Corrupt("bad metadata length".into()));
    }
    file.seek(SeekFrom::Start(total - TRAILER_LEN - u64::from(len))).await?;
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json).await?;
    let meta: ObjectMeta = serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if meta.size + u64::from(len) + TRAILER_LEN != total {
        return Err(StoreError::Corrupt("size does not match the file".into()));
    }
    file.seek(SeekFrom::Start(0)).await?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_leave_the_objects_directory() {
        let objects = Path::new("/data/b/objects");
        for key in ["../../etc/passwd", "/etc/passwd", "%2e%2e/x", "a/b/../../..", "\u{0}", ".tmp.x"] {
            let path = key_path(objects, key);
            assert!(path.starts_with(objects), "{key:?} -> {path:?}");
            assert_eq!(path.components().count(), objects.components().count() + 2, "{key:?}");
            assert!(is_object_name(path.file_name().and_then(|n| n.to_str()).unwrap_or("")));
        }
        assert!(!is_object_name(".tmp.abc"));
    }

    #[test]
    fn part_ranges_follow_the_recorded_sizes() {
        let meta =
            ObjectMeta { size: 12, parts: Some(3), part_sizes: vec![5, 5, 2], ..ObjectMeta::default() };
        assert_eq!(meta.part_range(1), Some((0..5, 3)));
        assert_eq!(meta.part_range(3), Some((10..12, 3)));
        assert_eq!(meta.part_range(0), None);
        assert_eq!(meta.part_range(4), None);
        let single = ObjectMeta { size: 7, ..ObjectMeta::default() };
        assert_eq!(single.part_range(1), Some((0..7, 1)));
        assert_eq!(single.part_range(2), None);
    }

    #[test]
    fn long_keys_get_short_names() {
        let key = "é".repeat(512);
        let name = key_path(Path::new("o"), &key);
        assert_eq!(name.file_name().map(|n| n.len()), Some(64));
    }
}
