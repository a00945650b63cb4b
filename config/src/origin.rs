//! Configuration of `stratus origin`, the S3-compatible bucket server (`[origin]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;
use crate::net::{HttpUrl, ListenAddr};
use crate::secret::Secret;
use crate::units::Duration;

/// The origin: where it listens, where buckets live, who may write.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Address to bind, e.g. `0.0.0.0:9000`.
    pub listen: ListenAddr,
    /// Directory holding one folder per bucket.
    pub data: PathBuf,
    /// Region reported to S3 clients and used in SigV4 scopes.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id; `STRATUS_ACCESS_KEY` takes its place when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<Secret>,
    /// Secret access key; `STRATUS_SECRET_KEY` takes its place when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// Domain for virtual-hosted-style requests (`bucket.DOMAIN/key`), e.g. `s3.local`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Per-bucket settings; buckets not listed are private with no default Cache-Control.
    #[serde(default)]
    pub buckets: Vec<Bucket>,
    /// Where object events (put, copy, delete) are posted, e.g.
    /// `http://127.0.0.1:7070/v1/events/origin`.
    #[serde(default)]
    pub notify: Option<HttpUrl>,
    /// Bearer token sent with events; `STRATUS_TOKEN` takes its place when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Read-only token for `GET /metrics`; `STRATUS_METRICS_TOKEN` takes its place when unset.
    /// Without it `/metrics` needs no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<Secret>,
    /// Age after which an incomplete multipart upload is aborted and its parts deleted, counted
    /// from its creation, as S3's `AbortIncompleteMultipartUpload` lifecycle rule does.
    #[serde(default = "default_multipart_expiry")]
    pub multipart_expiry: Duration,
}

/// A week: long enough for any real upload, short enough that abandoned parts do not pile up.
fn default_multipart_expiry() -> Duration {
    Duration::secs(7 * 24 * 3600)
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Settings of one bucket.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// Bucket name.
    pub name: String,
    /// Anyone may GET and HEAD its objects without signing.
    #[serde(default)]
    pub public: bool,
    /// `Cache-Control` for objects stored without one, e.g. `public, max-age=300`.
    #[serde(default)]
    pub cache_control: Option<String>,
}

impl OriginConfig {
    /// An origin with defaults for everything but the listener and the data directory.
    pub fn new(listen: ListenAddr, data: PathBuf) -> Self {
        Self {
            listen,
            data,
            region: default_region(),
            access_key: None,
            secret_key: None,
            domain: None,
            buckets: Vec::new(),
            notify: None,
            token: None,
            metrics_token: None,
            multipart_expiry: default_multipart_expiry(),
        }
    }

    /// Marks a bucket public, adding it to `buckets` when it is not listed.
    pub fn make_public(&mut self, name: &str) {
        match self.buckets.iter_mut().find(|b| b.name == name) {
            Some(b) => b.public = true,
            None => self.buckets.push(Bucket { name: name.to_owned(), public: true, cache_control: None }),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let mut seen = std::collections::HashSet::new();
        for (i, b) in self.buckets.iter().enumerate() {
            if let Err(why) = check_bucket_name(&b.name) {
                return Err(Invalid::new(format!("buckets[{i}].name"), why));
            }
            if !seen.insert(&b.name) {
                return Err(Invalid::new(
                    format!("buckets[{i}].name"),
                    format!("bucket {:?} is listed twice", b.name),
                ));
            }
        }
        if self.multipart_expiry.get().is_zero() {
            return Err(Invalid::new(
                "multipart_expiry",
                "must be longer than 0s (every upload would expire at once); use e.g. \"7d\"",
            ));
        }
        if self.access_key.is_some() != self.secret_key.is_some() {
            return Err(Invalid::new("secret_key", "access_key and secret_key go together"));
        }
        Ok(())
    }
}

/// Checks an S3 bucket name: 3–63 characters of lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars =
        name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ok_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends && !name.contains("..") {
        Ok(())
    } else {
        Err(format!("invalid bucket name {name:?} (3-63 of a-z, 0-9, '-', '.')"))
    }
}
