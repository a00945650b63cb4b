//! What the cache did for one request. Both the `Cache-Status` header (RFC 9211) and the
//! request metrics are derived from this one value, never assembled elsewhere.

use std::cell::RefCell;

use http::HeaderValue;

/// The `Cache-Status` field's name (RFC 9211).
pub use crate::cache::heads::CACHE_STATUS;

/// How the response was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Served fresh from the cache.
    Hit,
    /// Served stale from the cache (`stale-while-revalidate`, `max-stale`).
    StaleHit(StaleWhy),
    /// Fetched from the origin (or from a fill another request started).
    Forward(Fwd),
    /// Served stale because the origin failed (`stale-if-error`).
    StaleIfError,
    /// Not forwarded and not served from cache (`only-if-cached` miss).
    Unsatisfied,
    /// An error response made by the edge.
    Error,
    /// A redirect to HTTPS made by the edge (`https_redirect`).
    Redirect,
}

/// Why a stale response was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleWhy {
    /// `stale-while-revalidate`; a background revalidation runs.
    WhileRevalidate,
    /// The client's `max-stale` allowed it.
    MaxStale,
}

/// Why the request went forward (RFC 9211 §2.2 `fwd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fwd {
    /// Nothing stored for the URI.
    UriMiss,
    /// Stored, but not this variant.
    VaryMiss,
    /// The last response was not storable (hit-for-miss) or the request bypasses the cache.
    Bypass,
    /// The method is not cacheable.
    Method,
    /// A stored response was stale and was revalidated.
    Stale,
    /// The request's directives did not allow the stored response.
    Request,
    /// Part of the response was stored (slices), the rest was fetched.
    Partial,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Bypass => "bypass",
            Self::Method => "method",
            Self::Stale => "stale",
            Self::Request => "request",
            Self::Partial => "partial",
        }
    }
}

/// `Cache-Status` for one response, and the source of its metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStatus {
    /// What happened.
    pub outcome: Outcome,
    /// Status the origin answered with, when it was asked.
    pub fwd_status: Option<u16>,
    /// Whether the response was (or is being) stored.
    pub stored: bool,
    /// Whether this request waited on another request's origin fetch.
    pub collapsed: bool,
    /// Remaining freshness in seconds of the response served.
    pub ttl: Option<i64>,
    /// Extra detail (RFC 9211 `detail`).
    pub detail: Option<&'static str>,
    /// How long the origin took to send a response head, when it was asked (access log).
    pub origin_time: Option<std::time::Duration>,
}

impl CacheStatus {
    /// A status with only the outcome set.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            fwd_status: None,
            stored: false,
            collapsed: false,
            ttl: None,
            detail: None,
            origin_time: None,
        }
    }

    /// The metrics label: one of `hit`, `stale`, `miss`, `revalidated`, `pass`, `error`,
    /// `redirect`.
    pub fn label(&self) -> &'static str {
        match self.outcome {
            Outcome::Hit => "hit",
            Outcome::StaleHit(_) | Outcome::StaleIfError => "stale",
            Outcome::Forward(Fwd::UriMiss | Fwd::VaryMiss | Fwd::Partial) => "miss",
            Outcome::Forward(Fwd::Stale | Fwd::Request) => "revalidated",
            Outcome::Forward(Fwd::Bypass | Fwd::Method) => "pass",
            Outcome::Unsatisfied | Outcome::Error => "error",
            Outcome::Redirect => "redirect",
        }
    }

    /// All labels [`CacheStatus::label`] can return.
    pub const LABELS: [&'static str; 7] =
        ["hit", "stale", "miss", "revalidated", "pass", "error", "redirect"];

    /// The cache tier that answered, when a stored response did (`memory`, the only tier).
    pub fn tier(&self) -> Option<&'static str> {
        match self.outcome {
            Outcome::Hit | Outcome::StaleHit(_) | Outcome::StaleIfError => Some("memory"),
            Outcome::Forward(Fwd::Stale | Fwd::Request) if self.fwd_status == Some(304) => Some("memory"),
            _ => None,
        }
    }

    /// Whether the response came from the cache without waiting on the origin.
    pub fn is_hit(&self) -> bool {
        matches!(self.outcome, Outcome::Hit | Outcome::StaleHit(_))
    }

    /// The `Cache-Status` field value, e.g. `stratus; fwd=uri-miss; fwd-status=200; stored; ttl=60`.
    /// Written with `itoa` rather than the formatter: every response carries one.
    pub fn header(&self, cache: &str) -> HeaderValue {
        TEXT.with_borrow_mut(|s| self.header_in(s, cache))
    }

    fn header_in(&self, s: &mut Vec<u8>, cache: &str) -> HeaderValue {
        s.clear();
        s.extend_from_slice(cache.as_bytes());
        let mut num = itoa::Buffer::new();
        match self.outcome {
            Outcome::Hit | Outcome::StaleHit(_) => s.extend_from_slice(b"; hit"),
            Outcome::Forward(fwd) => {
                s.extend_from_slice(b"; fwd=");
                s.extend_from_slice(fwd.as_str().as_bytes());
            }
            Outcome::StaleIfError => s.extend_from_slice(b"; fwd=stale"),
            Outcome::Unsatisfied | Outcome::Error | Outcome::Redirect => {}
        }
        if let Some(code) = self.fwd_status {
            s.extend_from_slice(b"; fwd-status=");
            s.extend_from_slice(num.format(code).as_bytes());
        }
        if self.stored {
            s.extend_from_slice(b"; stored");
        }
        if self.collapsed {
            s.extend_from_slice(b"; collapsed");
        }
        if let Some(ttl) = self.ttl {
            s.extend_from_slice(b"; ttl=");
            s.extend_from_slice(num.format(ttl).as_bytes());
        }
        let detail = match self.outcome {
            Outcome::StaleIfError => Some("stale-if-error"),
            Outcome::StaleHit(StaleWhy::WhileRevalidate) => Some("stale-while-revalidate"),
            Outcome::StaleHit(StaleWhy::MaxStale) => Some("max-stale"),
            Outcome::Redirect => Some("https-redirect"),
            _ => self.detail,
        };
        if let Some(d) = detail {
            s.extend_from_slice(b"; detail=");
            s.extend_from_slice(d.as_bytes());
        }
        // The cache name is a checked token and the rest is ours, so this never fails. The
        // text is copied out of the thread's buffer into a value of its exact size: one
        // allocation (a `Vec` with room to spare becomes `Bytes` with a second one).
        HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(s))
            .unwrap_or_else(|_| HeaderValue::from_static("stratus"))
    }
}

thread_local! {
    /// Where `Cache-Status` values are written (one per response); a few dozen bytes.
    static TEXT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `Cache-Status` with our member appended to the members of the caches closer to the origin
/// (RFC 9211 §2: each cache appends its own and keeps the others).
pub fn chained(upstream: Option<&HeaderValue>, ours: HeaderValue) -> HeaderValue {
    let Some(prev) = upstream.filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace)) else {
        return ours;
    };
    let mut s = Vec::with_capacity(prev.len() + 2 + ours.len());
    s.extend_from_slice(prev.as_bytes());
    s.extend_from_slice(b", ");
    s.extend_from_slice(ours.as_bytes());
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).unwrap_or(ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_table() {
        let mut miss = CacheStatus::new(Outcome::Forward(Fwd::UriMiss));
        miss.fwd_status = Some(200);
        miss.stored = true;
        miss.ttl = Some(60);
        let mut collapsed = miss;
        collapsed.collapsed = true;
        let mut hit = CacheStatus::new(Outcome::Hit);
        hit.ttl = Some(42);
        let mut swr = CacheStatus::new(Outcome::StaleHit(StaleWhy::WhileRevalidate));
        swr.ttl = Some(-3);
        let mut sie = CacheStatus::new(Outcome::StaleIfError);
        sie.fwd_status = Some(503);
        let cases = [
            (miss, "edge-a; fwd=uri-miss; fwd-status=200; stored; ttl=60", "miss"),
            (collapsed, "edge-a; fwd=uri-miss; fwd-status=200; stored; collapsed; ttl=60", "miss"),
            (hit, "edge-a; hit; ttl=42", "hit"),
            (swr, "edge-a; hit; ttl=-3; detail=stale-while-revalidate", "stale"),
            (sie, "edge-a; fwd=stale; fwd-status=503; detail=stale-if-error", "stale"),
        ];
        for (status, header, label) in cases {
            assert_eq!(status.header("edge-a").to_str().unwrap(), header);
            assert_eq!(status.label(), label);
        }
    }

    #[test]
    fn members_chain_closest_to_the_origin_first() {
        let ours = HeaderValue::from_static("edge-a; fwd=uri-miss; fwd-status=200");
        let up = HeaderValue::from_static("edge-b; hit; ttl=50");
        assert_eq!(
            chained(Some(&up), ours.clone()),
            "edge-b; hit; ttl=50, edge-a; fwd=uri-miss; fwd-status=200"
        );
        assert_eq!(chained(None, ours.clone()), ours);
        assert_eq!(chained(Some(&HeaderValue::from_static(" ")), ours.clone()), ours);
    }
}
