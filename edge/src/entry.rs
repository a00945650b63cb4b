//! A stored response: status, client-facing headers and the whole body as one `Bytes`, so a
//! hit hands out reference-counted slices and copies no body bytes. Its age follows RFC 9111
//! §4.2.3 exactly: the corrected initial age is fixed when the response arrives and resident
//! time is measured on the monotonic clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};

use crate::fields::Fields;
use crate::freshness::{Policy, date_header};
use crate::key::CacheKey;

/// How long entries that can be revalidated (they carry `ETag` or `Last-Modified`) are kept
/// past their freshness and stale windows: a 304 is cheaper than a full fetch.
const REVALIDATION_KEEP: Duration = Duration::from_secs(600);
/// How long other entries are kept once stale, for clients that accept stale (`max-stale`).
const STALE_KEEP: Duration = Duration::from_secs(60);
/// Per-entry memory beyond the body and the header text, for the weigher: the entry, its key,
/// moka's node, timer and hash-table links, the purge-index slot and allocator slack.
/// Calibrated against the RSS growth per cached object that `bench/run.py` measures (2,184 B
/// for a 1 KiB body with eight headers, 2026-11-25), so that `--cache-size` bounds real memory,
/// not an optimistic estimate.
const ENTRY_OVERHEAD: usize = 960;

/// One cached response.
#[derive(Debug)]
pub struct Entry {
    /// Response status.
    pub status: StatusCode,
    /// Headers as clients get them, minus `Age` and `Cache-Status` (added per response).
    pub headers: Fields,
    /// The complete body.
    pub body: Bytes,
    /// Host, path and query the entry was stored under (for purges).
    pub key: CacheKey,
    /// Surrogate keys / cache tags.
    pub tags: Box<[Box<str>]>,
    /// `CDN-Cache-Control` / `Surrogate-Control` as received: hidden from clients, but needed
    /// to recompute freshness when a 304 refreshes the entry.
    pub targeted: Fields,
    /// Storability and freshness.
    pub policy: Policy,
    /// `corrected_initial_age` of §4.2.3.
    pub initial_age: Duration,
    /// When the response arrived (monotonic), for resident time.
    pub stored_at: Instant,
    /// Unique per stored response, so index removals never hit a newer entry under the same key.
    pub generation: u64,
    /// Set by a soft purge: the entry is stale from then on.
    invalidated: AtomicBool,
}

/// Times around an origin exchange, for §4.2.3.
#[derive(Clone, Copy, Debug)]
pub struct Exchange {
    /// When the request was sent.
    pub request_time: SystemTime,
    /// When the response head arrived.
    pub response_time: SystemTime,
    /// `response_time` on the monotonic clock.
    pub response_instant: Instant,
}

impl Exchange {
    /// An exchange whose request was sent at `request_time` and whose response arrived now.
    pub fn now(request_time: SystemTime) -> Self {
        Self { request_time, response_time: SystemTime::now(), response_instant: Instant::now() }
    }
}

/// `corrected_initial_age` (RFC 9111 §4.2.3).
pub fn initial_age(headers: &HeaderMap, ex: &Exchange) -> Duration {
    let age_value = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let date = date_header(headers, &header::DATE).unwrap_or(ex.response_time);
    let apparent_age = ex.response_time.duration_since(date).unwrap_or_default();
    let response_delay = ex.response_time.duration_since(ex.request_time).unwrap_or_default();
    apparent_age.max(age_value + response_delay)
}

/// A response head ready to be stored.
#[derive(Debug)]
pub struct StoredHead {
    /// Status.
    pub status: StatusCode,
    /// Client-facing headers.
    pub headers: HeaderMap,
    /// Fields targeted at us, removed from `headers`.
    pub targeted: HeaderMap,
    /// Tags.
    pub tags: Vec<String>,
    /// Freshness.
    pub policy: Policy,
}

impl Entry {
    /// A new entry; `generation` must be unique.
    pub fn new(head: StoredHead, body: Bytes, key: CacheKey, exchange: &Exchange, generation: u64) -> Self {
        let initial_age = initial_age(&head.headers, exchange);
        let (headers, targeted, body) = pack(&head.headers, &head.targeted, body);
        Self {
            status: head.status,
            headers,
            body,
            key,
            tags: head.tags.into_iter().map(String::into_boxed_str).collect(),
            targeted,
            policy: head.policy,
            initial_age,
            stored_at: exchange.response_instant,
            generation,
            invalidated: AtomicBool::new(false),
        }
    }

    /// `current_age` at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// Remaining freshness in seconds; negative once stale (for `Cache-Status: ttl`).
    pub fn ttl(&self, now: Instant) -> i64 {
        let life = self.policy.lifetime.as_secs_f64();
        let age = self.age(now).as_secs_f64();
        (life - age).floor() as i64
    }

    /// How long past its freshness the entry is (zero when fresh).
    pub fn staleness(&self, now: Instant) -> Duration {
        self.age(now).saturating_sub(self.policy.lifetime)
    }

    /// Fresh: within its lifetime and not soft-purged.
    pub fn is_fresh(&self, now: Instant) -> bool {
        !self.is_invalidated() && self.age(now) < self.policy.lifetime
    }

    /// Whether a soft purge marked it stale.
    pub fn is_invalidated(&self) -> bool {
        self.invalidated.load(Ordering::Relaxed)
    }

    /// Marks it stale (soft purge).
    pub fn invalidate(&self) {
        self.invalidated.store(true, Ordering::Relaxed);
    }

    /// Whether a conditional request can revalidate it.
    pub fn has_validators(&self) -> bool {
        self.headers.contains(&header::ETAG) || self.headers.contains(&header::LAST_MODIFIED)
    }

    /// How long the store keeps it from now: freshness left, then the longest stale window.
    pub fn keep(&self) -> Duration {
        let fresh_left = self.policy.lifetime.saturating_sub(self.age(Instant::now()));
        let keep = if self.has_validators() { REVALIDATION_KEEP } else { STALE_KEEP };
        let stale = self.policy.swr.max(self.policy.sie).max(keep);
        fresh_left + stale
    }

    /// Bytes this entry costs: body, headers, key and bookkeeping.
    pub fn weight(&self) -> usize {
        let headers = self.headers.bytes() + self.targeted.bytes();
        let tags: usize = self.tags.iter().map(|t| t.len() + 24).sum();
        self.body.len() + headers + tags + self.key.primary().len() + ENTRY_OVERHEAD
    }
}

/// Bodies up to this size are copied into the entry's own buffer when stored.
const COMPACT_BODY_MAX: usize = 256 << 10;

/// The fields and body of a new entry, all in one buffer of their own: header values first,
/// then the body (when it is small). hyper hands out body chunks and header values as slices of
/// its connection read buffer; storing such slices would pin the whole buffer for as long as
/// the entry lives, several KiB for a 1 KiB object. One copy per fill is cheap; hits share the
/// stored bytes without copying.
fn pack(headers: &HeaderMap, targeted: &HeaderMap, body: Bytes) -> (Fields, Fields, Bytes) {
    let small = body.len() <= COMPACT_BODY_MAX;
    let fields = Fields::encoded_len(headers) + Fields::encoded_len(targeted);
    let mut buf = BytesMut::with_capacity(fields + if small { body.len() } else { 0 });
    Fields::encode(headers, &mut buf);
    Fields::encode(targeted, &mut buf);
    if small {
        buf.extend_from_slice(&body);
    }
    let mut buf = buf.freeze();
    let headers = Fields::take_from(headers, &mut buf);
    let targeted = Fields::take_from(targeted, &mut buf);
    (headers, targeted, if small { buf } else { body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn entry(lifetime: u64, swr: u64, sie: u64, etag: bool) -> Entry {
        let mut headers = HeaderMap::new();
        if etag {
            headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        }
        let policy = Policy {
            storable: Ok(()),
            lifetime: Duration::from_secs(lifetime),
            swr: Duration::from_secs(swr),
            sie: Duration::from_secs(sie),
            no_cache: false,
            must_revalidate: false,
        };
        let head = StoredHead {
            status: StatusCode::OK,
            headers,
            targeted: HeaderMap::new(),
            tags: Vec::new(),
            policy,
        };
        let key = CacheKey::new(
            "h",
            &http::Uri::from_static("/p"),
            &stratus_config::edge::KeyRules::default(),
            &HeaderMap::new(),
        );
        Entry::new(head, Bytes::from_static(b"body"), key, &Exchange::now(SystemTime::now()), 1)
    }

    /// The store expires an entry after `keep()` (moka's per-entry expiry calls nothing else):
    /// freshness left, then the longest window in which a stale copy is still of use.
    #[test]
    fn entries_are_kept_for_freshness_plus_their_longest_stale_window() {
        let within = |got: Duration, want: u64| {
            let want = Duration::from_secs(want);
            assert!(got <= want && got + Duration::from_secs(1) > want, "kept {got:?}, expected {want:?}");
        };
        // No validators: freshness plus a minute for max-stale, or a longer swr/sie window.
        within(entry(10, 0, 0, false).keep(), 10 + STALE_KEEP.as_secs());
        within(entry(10, 300, 0, false).keep(), 310);
        within(entry(10, 30, 3600, false).keep(), 3610);
        // Validators make a stale copy worth keeping for revalidation.
        within(entry(10, 0, 0, true).keep(), 10 + REVALIDATION_KEEP.as_secs());
        // Already stale: only the stale window is left.
        within(entry(0, 0, 120, false).keep(), 120);
    }

    #[test]
    fn stored_headers_and_small_bodies_own_their_bytes() {
        let backing = Bytes::from(vec![b'x'; 8192]);
        let mut h = HeaderMap::new();
        h.append(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        let mut t = HeaderMap::new();
        t.append("cdn-cache-control", HeaderValue::from_static("max-age=5"));
        let (headers, targeted, body) = pack(&h, &t, backing.slice(0..1024));
        assert_eq!(body, backing.slice(0..1024));
        assert_ne!(body.as_ptr(), backing.as_ptr(), "a small body must not pin its source buffer");
        assert_eq!(headers.to_map(0), h, "packing changes no header, order or repetition");
        assert_eq!(targeted.to_map(0), t);
        let big = Bytes::from(vec![b'y'; COMPACT_BODY_MAX + 1]);
        let (_, _, body) = pack(&h, &t, big.clone());
        assert_eq!(body.as_ptr(), big.as_ptr(), "a large body is kept as it came");
    }

    #[test]
    fn initial_age_follows_4_2_3() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ex = Exchange {
            request_time: t0,
            response_time: t0 + Duration::from_secs(2),
            response_instant: Instant::now(),
        };
        let mut h = HeaderMap::new();
        // Date 10 s before the response arrived and no Age: apparent age wins.
        h.insert(header::DATE, httpdate::fmt_http_date(t0 - Duration::from_secs(8)).parse().unwrap());
        assert_eq!(initial_age(&h, &ex), Duration::from_secs(10));
        // Age 30 from an upstream cache plus 2 s of response delay.
        h.insert(header::AGE, "30".parse().unwrap());
        assert_eq!(initial_age(&h, &ex), Duration::from_secs(32));
        // A Date in the future gives no negative age.
        h.insert(header::DATE, httpdate::fmt_http_date(t0 + Duration::from_secs(100)).parse().unwrap());
        h.remove(header::AGE);
        assert_eq!(initial_age(&h, &ex), Duration::from_secs(2));
    }
}
