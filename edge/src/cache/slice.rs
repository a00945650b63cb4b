//! Slices: how an object of a site with `slice = true` is cut, named and recognised.
//!
//! A sliced object is stored as fixed-size, aligned pieces (`cache.slice_size`), slice `i`
//! holding bytes `i * size ..= (i + 1) * size - 1` of the representation (the last one
//! shorter). Each slice is an ordinary cache entry under its own key — the object's primary key,
//! [`MARK`], then the index — so the store weighs, expires, evicts and purges it like any
//! object, and the disk tier keeps slices under the same keys (`proxy/slice.rs` reads them back). Every
//! slice carries the whole head of the `206` it came from, `Content-Range: bytes a-b/N`
//! included, so any one slice tells the object's length and validator.
//!
//! Slices are combined only when their strong validators are equal (RFC 9111 §3.4):
//! [`validator`] is the `ETag` when it is strong, else `Last-Modified`; an object with neither
//! is not sliced.
//!
//! The fetching and serving lives in `proxy/slice.rs`; this file is pure.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header;
use http::{HeaderMap, Response};

use crate::cache::entry::Entry;
use crate::error::ProxyError;
use crate::upstream::OriginBody;

/// An origin's answer to a slice request that is not a slice (it ignored `Range`: a `200`, a
/// `404`, ...), with the time the request was sent: handed, once, to the ordinary fill so the
/// origin is not asked twice. Whoever takes it first answers with it.
pub type Answer = Arc<Mutex<Option<(Response<OriginBody>, SystemTime)>>>;

/// What follows the primary key in a slice's key: the `Vary` variant mark
/// (`key::VARIANT_MARK`; a variant's key has a header name after it, and `@` is not a token
/// character, so the two never meet), then `@`.
pub const MARK: &str = "\u{1f}\u{1f}@";

/// The key of slice `index` of the object under `primary`.
pub fn key(primary: &str, index: u64) -> Arc<str> {
    Arc::from(format!("{primary}{MARK}{index}"))
}

/// `Content-Range: bytes first-last/complete` of a `206` (RFC 9110 §14.4), with a known
/// complete length: the only form a slice can be stored from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte.
    pub first: u64,
    /// Last byte (inclusive).
    pub last: u64,
    /// The representation's complete length.
    pub complete: u64,
}

impl ContentRange {
    /// Parses a `Content-Range` value; `None` for anything but a satisfied range of a known
    /// length (`bytes */N`, `bytes a-b/*`, `last < first`, `last >= complete`, junk).
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.trim().strip_prefix("bytes ")?.trim_start();
        let (span, complete) = rest.split_once('/')?;
        let (first, last) = span.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
        };
        let (first, last, complete) = (num(first)?, num(last)?, num(complete)?);
        (first <= last && last < complete).then_some(Self { first, last, complete })
    }

    /// The `Content-Range` of the first header of that name in `headers`.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        Self::parse(headers.get(header::CONTENT_RANGE)?.to_str().ok()?)
    }
}

/// The bytes slice `index` covers in an object of `complete` bytes, cut in `size`-byte
/// slices; `None` when the object ends before it.
pub fn bounds(index: u64, size: u64, complete: u64) -> Option<(u64, u64)> {
    let first = index.checked_mul(size)?;
    (first < complete).then(|| (first, first.saturating_add(size - 1).min(complete - 1)))
}

/// The first byte a `Range` value asks for, when it says so without knowing the length: a
/// single `bytes=a-` or `bytes=a-b`. Suffix ranges and lists need the length first.
pub fn first_byte(range: &str) -> Option<u64> {
    let spec = range.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, _) = spec.split_once('-')?;
    let a = a.trim();
    if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    a.parse().ok()
}

/// The strong validator slices are combined by (RFC 9111 §3.4): a strong `ETag`, else
/// `Last-Modified`; `None` when there is neither (such an object is not sliced).
pub fn validator(headers: &HeaderMap) -> Option<String> {
    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::trim)
        && etag.starts_with('"')
    {
        return Some(format!("etag {etag}"));
    }
    let lm = headers.get(header::LAST_MODIFIED)?.to_str().ok()?;
    httpdate::parse_http_date(lm).ok()?;
    Some(format!("last-modified {}", lm.trim()))
}

/// A slice fetched from the origin (shared by every request waiting for it).
#[derive(Clone, Debug)]
pub enum Fetched {
    /// The slice: its entry (stored or not), the range it holds, and the origin's status.
    Slice {
        /// Head and body (just the slice's bytes).
        entry: Arc<Entry>,
        /// What it holds, of how much.
        range: ContentRange,
        /// Whether it was stored.
        stored: bool,
    },
    /// The origin's answer is a `206` that cannot be kept as a slice; why (the request falls
    /// back to fetching the whole object, as for sites without slices).
    NotSliceable(&'static str),
    /// The origin answered with something else than a `206` (or `416`): the answer, for the
    /// ordinary path to use as its fill's.
    Whole(Answer),
}

/// What waiting on a slice fetch gives.
pub type SliceResult = Result<Fetched, ProxyError>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn content_range_table() {
        let ok = |first, last, complete| Some(ContentRange { first, last, complete });
        let cases: &[(&str, Option<ContentRange>)] = &[
            ("bytes 0-99/1000", ok(0, 99, 1000)),
            ("bytes 900-999/1000", ok(900, 999, 1000)),
            (" bytes  5-5/6 ", ok(5, 5, 6)),
            ("bytes 0-99/*", None),
            ("bytes */1000", None),
            ("bytes 100-99/1000", None),
            ("bytes 0-1000/1000", None),
            ("bytes 0-99", None),
            ("items 0-99/1000", None),
            ("bytes -1-99/1000", None),
            ("bytes +0-99/1000", None),
            ("bytes 0-99/18446744073709551616", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(&ContentRange::parse(value), want, "{value}");
        }
    }

    #[test]
    fn first_byte_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("bytes=100-199", Some(100)),
            ("bytes=100-", Some(100)),
            ("bytes= 7 - 9", Some(7)),
            ("bytes=-100", None),
            ("bytes=0-1,5-6", None),
            ("bytes=x-1", None),
            ("items=1-2", None),
        ];
        for (value, want) in cases {
            assert_eq!(&first_byte(value), want, "{value}");
        }
    }

    #[test]
    fn validators() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, http::HeaderValue::from_static(v));
            }
            m
        };
        let lm = "Tue, 15 Nov 1994 12:45:26 GMT";
        assert_eq!(validator(&h(&[("etag", "\"a\"")])).as_deref(), Some("etag \"a\""));
        assert_eq!(
            validator(&h(&[("etag", "W/\"a\""), ("last-modified", lm)])),
            Some(format!("last-modified {lm}"))
        );
        assert_eq!(validator(&h(&[("etag", "W/\"a\"")])), None);
        assert_eq!(validator(&h(&[("last-modified", "yesterday")])), None);
        assert_eq!(validator(&h(&[])), None);
    }

    #[test]
    fn slice_keys_stay_under_the_object_for_purges() {
        let k = key("h/video.mp4?q=1", 7);
        assert!(crate::cache::key::is_for_path(&k, "h/video.mp4"));
        assert_eq!(crate::cache::key::host_and_path(&k), ("h", "/video.mp4"));
        assert_ne!(key("h/a", 1), key("h/a", 11));
    }

    proptest! {
        #[test]
        fn content_range_parses_anything_without_panicking(value in "\\PC{0,40}") {
            if let Some(r) = ContentRange::parse(&value) {
                prop_assert!(r.first <= r.last && r.last < r.complete);
            }
        }

        #[test]
        fn content_range_round_trips(first in 0u64..1 << 40, len in 1u64..1 << 30, extra in 0u64..1 << 30) {
            let last = first + len - 1;
            let complete = last + 1 + extra;
            let parsed = ContentRange::parse(&format!("bytes {first}-{last}/{complete}"));
            prop_assert_eq!(parsed, Some(ContentRange { first, last, complete }));
        }

        #[test]
        fn slices_tile_the_object(size in 1u64..5000, complete in 1u64..100_000) {
            let mut next = 0;
            let mut i = 0;
            while let Some((a, b)) = bounds(i, size, complete) {
                prop_assert_eq!(a, next);
                prop_assert!(b >= a && b - a < size);
                next = b + 1;
                i += 1;
            }
            prop_assert_eq!(next, complete);
        }
    }
}
