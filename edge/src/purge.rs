//! What a purge names: the body shared by the admin API and the control plane's log entries
//! (see `docs/PROTOCOL.md`, "Purge body").

use serde::{Deserialize, Serialize};

/// A purge request. Every field is optional; at least one target must be given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PurgeRequest {
    /// URLs (`http://host/path`, or `/path` for every host).
    pub files: Vec<String>,
    /// `host/path-prefix`, or `/path-prefix` for every host.
    pub prefixes: Vec<String>,
    /// Surrogate keys / cache tags.
    pub tags: Vec<String>,
    /// Host names.
    pub hosts: Vec<String>,
    /// Objects of an S3 origin, mapped to paths on the sites in front of their bucket.
    pub objects: Vec<ObjectRef>,
    /// Everything in the cache.
    pub purge_everything: bool,
    /// Mark stale instead of removing.
    pub soft: bool,
}

/// An object in an S3 bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

impl PurgeRequest {
    /// Whether the request names no target at all.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.prefixes.is_empty()
            && self.tags.is_empty()
            && self.hosts.is_empty()
            && self.objects.is_empty()
            && !self.purge_everything
    }
}
