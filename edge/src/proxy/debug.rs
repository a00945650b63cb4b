//! The opt-in `Stratus-Debug` response field (`debug_header = true` on a site): what an
//! operator debugging one URL needs, in a structured-field-like `k=v; k=v` list.
//!
//! Keys, variant keys and tags come from clients and origins, so they are written as quoted
//! strings in which only printable ASCII appears: `"` and `\` are escaped with `\`, and every
//! other byte (CR, LF, the key separator, non-ASCII) and `%` itself become `%XX`. No value can
//! end the field or start another header line.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::cache::key::{CacheKey, vary_names};
use crate::cache::store::Store;
use crate::proxy::status::CacheStatus;

/// The field's name.
pub(crate) const STRATUS_DEBUG: HeaderName = HeaderName::from_static("stratus-debug");

/// The `Stratus-Debug` value for a response with `status` to a request for `key`.
///
/// `key` and `variant` are the primary and variant cache keys; `tier` is the cache tier that
/// answered or `origin`; `age`, `ttl` and `hits` are those of the entry that answered (for a
/// hit) or that is stored now (`hits=0` just after a fill); `tags` its cache tags;
/// `origin-status` and `origin-time` (milliseconds to the response head) are there when this
/// request asked the origin.
pub(crate) fn value(
    store: &Store,
    key: &CacheKey,
    headers: &HeaderMap,
    status: &CacheStatus,
    response: &HeaderMap,
) -> HeaderValue {
    let (entry, mut slot) = store.peek(key, headers);
    if entry.is_none()
        && Arc::ptr_eq(&slot, key.primary())
        && let Some(names) = vary_names(response).filter(|n| !n.is_empty())
    {
        // A miss whose response is still being stored: its `Vary` names the variant.
        slot = key.variant(&names, headers);
    }
    let mut s = String::with_capacity(160);
    s.push_str("key=");
    quoted(&mut s, key.primary());
    s.push_str("; variant=");
    quoted(&mut s, &slot);
    s.push_str("; tier=");
    s.push_str(status.tier().unwrap_or(if status.fwd_status.is_some() { "origin" } else { "none" }));
    let now = Instant::now();
    if let Some(e) = &entry {
        let _ = write!(s, "; age={}; ttl={}; hits={}", e.age(now).as_secs(), e.ttl(now), e.hits());
        s.push_str("; tags=");
        let tags: Vec<&str> = e.tags().collect();
        quoted(&mut s, &tags.join(" "));
    } else if let Some(ttl) = status.ttl {
        let _ = write!(s, "; ttl={ttl}");
    }
    if let Some(code) = status.fwd_status {
        let _ = write!(s, "; origin-status={code}");
    }
    if let Some(t) = status.origin_time {
        let _ = write!(s, "; origin-time={}", t.as_millis());
    }
    // Only printable ASCII went in, so this cannot fail.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Appends `v` as a quoted string of printable ASCII (see the module comment).
fn quoted(s: &mut String, v: &str) {
    s.push('"');
    for b in v.bytes() {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            b'%' => s.push_str("%25"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "%{b:02X}");
            }
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_table() {
        let cases = [
            ("a/b?c=d", r#""a/b?c=d""#),
            ("say \"hi\"\\", r#""say \"hi\"\\""#),
            ("x\r\nSet-Cookie: y", r#""x%0D%0ASet-Cookie: y""#),
            ("h\u{1f}\u{1f}accept:gzip", r#""h%1F%1Faccept:gzip""#),
            ("50%", r#""50%25""#),
            ("é", r#""%C3%A9""#),
        ];
        for (input, expected) in cases {
            let mut s = String::new();
            quoted(&mut s, input);
            assert_eq!(s, expected, "{input:?}");
        }
    }
}
