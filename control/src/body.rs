//! Request bodies of the control API and their validation.
//!
//! A purge body is Cloudflare-shaped (`files`, `prefixes`, `tags`, `hosts`, `purge_everything`)
//! plus `soft` and `objects` (docs/PROTOCOL.md). Every problem is reported as a
//! [`Invalid`] naming the field (`files[2]`), which the API turns into a 400.
//!
//! Batch limits (per request, like Cloudflare's but more generous for a self-hosted fleet):
//! [`MAX_FILES`] files, [`MAX_PREFIXES`] prefixes, [`MAX_TAGS`] tags, [`MAX_HOSTS`] hosts,
//! [`MAX_OBJECTS`] objects, each value at most [`MAX_VALUE_LEN`] bytes, and a body of at most
//! [`MAX_BODY_BYTES`].

use serde::Deserialize;

use crate::error::Invalid;

/// Most URLs in one purge or prewarm.
pub const MAX_FILES: usize = 1000;
/// Most prefixes in one purge.
pub const MAX_PREFIXES: usize = 100;
/// Most tags in one purge.
pub const MAX_TAGS: usize = 1000;
/// Most hosts in one purge.
pub const MAX_HOSTS: usize = 100;
/// Most objects in one purge or prewarm (also the cap on a bucket listing).
pub const MAX_OBJECTS: usize = 10_000;
/// Longest single value (URL, prefix, tag, host, key).
pub const MAX_VALUE_LEN: usize = 4096;
/// Largest request body accepted by the API.
pub const MAX_BODY_BYTES: usize = 1 << 20;

pub use stratus_config::purge::{ObjectRef, PurgeRequest};

/// `POST /v1/prewarm`: URLs, objects, or every object under a bucket prefix.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrewarmBody {
    /// URLs to fetch, `http://host/path`.
    pub files: Vec<String>,
    /// Objects to fetch, mapped by each edge to its sites.
    pub objects: Vec<ObjectRef>,
    /// List this bucket on the origin and prewarm what it holds under `prefix`.
    pub bucket: Option<String>,
    /// Key prefix within `bucket` (empty: the whole bucket).
    pub prefix: Option<String>,
}

/// `POST /v1/events/origin`: object changes reported by an origin.
#[derive(Clone, Debug, Deserialize)]
pub struct OriginEvents {
    /// The changes, oldest first.
    pub events: Vec<OriginEvent>,
}

/// One object change. Fields beyond these (etag, size, time) are accepted and ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct OriginEvent {
    /// `put`, `copy`, `complete_multipart` or `delete`.
    pub kind: String,
    /// Bucket of the object.
    pub bucket: String,
    /// Key of the object.
    pub key: String,
}

/// Parses JSON into `T`, naming the offending field on error.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Invalid> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        Invalid::new(field, e.into_inner().to_string())
    })
}

fn check_count(field: &str, len: usize, max: usize) -> Result<(), Invalid> {
    if len > max {
        return Err(Invalid::new(field, format!("at most {max} values per request, got {len}")));
    }
    Ok(())
}

fn check_value(field: &str, i: usize, value: &str) -> Result<(), Invalid> {
    let at = || format!("{field}[{i}]");
    if value.trim().is_empty() {
        return Err(Invalid::new(at(), "must not be empty"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(Invalid::new(at(), format!("longer than {MAX_VALUE_LEN} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::new(at(), "must not contain control characters"));
    }
    Ok(())
}

/// Checks a URL naming cached content: absolute `http(s)://host/path` or a bare `/path`.
fn check_url(field: &str, i: usize, value: &str) -> Result<(), Invalid> {
    check_value(field, i, value)?;
    if value.starts_with('/') {
        return Ok(());
    }
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(Invalid::new(
            format!("{field}[{i}]"),
            "must be an http(s) URL with a host, or a path starting with /",
        )),
    }
}

fn check_host(field: &str, i: usize, value: &str) -> Result<(), Invalid> {
    check_value(field, i, value)?;
    let ok =
        value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if !ok {
        return Err(Invalid::new(format!("{field}[{i}]"), "must be a host name such as cdn.example"));
    }
    Ok(())
}

fn check_objects(objects: &[ObjectRef]) -> Result<(), Invalid> {
    check_count("objects", objects.len(), MAX_OBJECTS)?;
    for (i, o) in objects.iter().enumerate() {
        if o.bucket.is_empty() || o.bucket.contains('/') {
            return Err(Invalid::new(format!("objects[{i}].bucket"), "must be a bucket name"));
        }
        if o.key.is_empty() || o.key.len() > MAX_VALUE_LEN {
            return Err(Invalid::new(format!("objects[{i}].key"), "must be a non-empty object key"));
        }
    }
    Ok(())
}

/// Checks a purge's limits and the shape of every value.
pub fn validate_purge(purge: &PurgeRequest) -> Result<(), Invalid> {
    if purge.is_empty() {
        return Err(Invalid::new(
            "body",
            "name at least one target: files, prefixes, tags, hosts, objects or purge_everything",
        ));
    }
    check_count("files", purge.files.len(), MAX_FILES)?;
    check_count("prefixes", purge.prefixes.len(), MAX_PREFIXES)?;
    check_count("tags", purge.tags.len(), MAX_TAGS)?;
    check_count("hosts", purge.hosts.len(), MAX_HOSTS)?;
    for (i, f) in purge.files.iter().enumerate() {
        check_url("files", i, f)?;
    }
    for (i, p) in purge.prefixes.iter().enumerate() {
        check_value("prefixes", i, p)?;
        if p.contains("://") {
            return Err(Invalid::new(
                format!("prefixes[{i}]"),
                "must be host/path without a scheme, or /path",
            ));
        }
    }
    for (i, t) in purge.tags.iter().enumerate() {
        check_value("tags", i, t)?;
        if t.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(Invalid::new(format!("tags[{i}]"), "must not contain spaces or commas"));
        }
    }
    for (i, h) in purge.hosts.iter().enumerate() {
        check_host("hosts", i, h)?;
    }
    check_objects(&purge.objects)
}

impl PrewarmBody {
    /// Checks limits and shapes; a bucket listing is checked when it is made.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.prefix.is_some() && self.bucket.is_none() {
            return Err(Invalid::new("bucket", "a prefix needs a bucket"));
        }
        if self.files.is_empty() && self.objects.is_empty() && self.bucket.is_none() {
            return Err(Invalid::new("body", "name files, objects, or a bucket (with an optional prefix)"));
        }
        if let Some(bucket) = &self.bucket
            && (bucket.is_empty() || bucket.contains('/'))
        {
            return Err(Invalid::new("bucket", "must be a bucket name"));
        }
        check_count("files", self.files.len(), MAX_FILES)?;
        for (i, f) in self.files.iter().enumerate() {
            check_url("files", i, f)?;
            if f.starts_with('/') {
                return Err(Invalid::new(format!("files[{i}]"), "a prewarm URL needs a host"));
            }
        }
        check_objects(&self.objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expected: Result<(), (&str, &str)>) {
        let got = parse::<PurgeRequest>(json.as_bytes()).and_then(|b| validate_purge(&b));
        match (got, expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err((field, needle))) => {
                assert_eq!(e.field, field, "{json}: {e:?}");
                assert!(e.message.contains(needle), "{json}: {e:?} should mention {needle:?}");
            }
            (got, expected) => panic!("{json}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn purge_bodies() {
        check(r#"{"files": ["http://cdn.example/a.png", "/b.png"]}"#, Ok(()));
        check(r#"{"prefixes": ["cdn.example/img/"], "soft": true}"#, Ok(()));
        check(r#"{"tags": ["blog"], "hosts": ["cdn.example"]}"#, Ok(()));
        check(r#"{"objects": [{"bucket": "demo", "key": "a/b.css"}]}"#, Ok(()));
        check(r#"{"purge_everything": true}"#, Ok(()));
        check(r#"{}"#, Err(("body", "at least one target")));
        check(r#"{"soft": true}"#, Err(("body", "at least one target")));
        check(r#"{"files": ["ftp://x/a"]}"#, Err(("files[0]", "http(s) URL")));
        check(r#"{"files": ["/ok", "not a url"]}"#, Err(("files[1]", "http(s) URL")));
        check(r#"{"files": [""]}"#, Err(("files[0]", "empty")));
        check(r#"{"files": "http://a/b"}"#, Err(("files", "expected a sequence")));
        check(r#"{"prefixes": ["http://cdn.example/img/"]}"#, Err(("prefixes[0]", "without a scheme")));
        check(r#"{"tags": ["a b"]}"#, Err(("tags[0]", "spaces")));
        check(r#"{"hosts": ["cdn.example/x"]}"#, Err(("hosts[0]", "host name")));
        check(r#"{"objects": [{"bucket": "", "key": "k"}]}"#, Err(("objects[0].bucket", "bucket")));
        check(r#"{"fils": ["/a"]}"#, Err(("fils", "unknown field `fils`")));
        check(r#"{"purge_everything": "yes"}"#, Err(("purge_everything", "expected a boolean")));
        let many = format!(r#"{{"hosts": [{}]}}"#, vec!["\"h\""; MAX_HOSTS + 1].join(","));
        check(&many, Err(("hosts", "at most 100")));
    }

    #[test]
    fn prewarm_bodies() {
        let check = |json: &str, field: Option<&str>| {
            let got = parse::<PrewarmBody>(json.as_bytes()).and_then(|b| b.validate());
            assert_eq!(got.err().map(|e| e.field), field.map(str::to_owned), "{json}");
        };
        check(r#"{"files": ["http://cdn.example/a"]}"#, None);
        check(r#"{"bucket": "demo", "prefix": "img/"}"#, None);
        check(r#"{"prefix": "img/"}"#, Some("bucket"));
        check(r#"{}"#, Some("body"));
        check(r#"{"files": ["/a"]}"#, Some("files[0]"));
    }
}
