//! A stored response: status, client-facing headers and the whole body as one `Bytes`, so a
//! hit hands out reference-counted slices and copies no body bytes. Its age follows RFC 9111
//! §4.2.3 exactly: the corrected initial age is fixed when the response arrives and resident
//! time is measured on the monotonic clock.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};

use crate::cache::disk::blocks::FileBody;
use crate::cache::fields::Fields;
use crate::cache::freshness::{Policy, date_header};
use crate::cache::key::CacheKey;

/// How long entries that can be revalidated (they carry `ETag` or `Last-Modified`) are kept
/// past their freshness and stale windows: a 304 is cheaper than a full fetch.
const REVALIDATION_KEEP: Duration = Duration::from_secs(600);
/// How long other entries are kept once stale, for clients that accept stale (`max-stale`).
const STALE_KEEP: Duration = Duration::from_secs(60);
/// Per-entry memory beyond the body, the header text and the key, for the weigher: the entry,
/// the cache map's slot and hash-table link, the purge-index slot, allocator slack and a share
/// of the map's list of evicted keys (its ghosts). Calibrated against the RSS growth per cached
/// object that `bench/run.py --only memory` measures (1,606 B for a 1 KiB body with seven
/// stored headers, 2026-12-06, after the store moved from moka to quick_cache: it was 1,832 B
/// and this constant 650), so that `--cache-size` bounds real memory, not an optimistic
/// estimate.
const ENTRY_OVERHEAD: usize = 450;

/// One cached response. It is laid out for size: a small object's headers and body share one
/// allocation, and freshness is kept in whole seconds, the resolution of `max-age` and `Age`.
#[derive(Debug)]
pub struct Entry {
    /// Header text, targeted-field text and tag lines (see [`Fields`]), then the body when it is
    /// small: `..headers_end`, `..targeted_end`, `..tags_end`, then the body.
    data: Bytes,
    /// A large body, kept as it came, or the file on disk that holds it; `None` when the
    /// body follows the text in `data`.
    large_body: Option<Box<LargeBody>>,
    /// Host, path and query the entry was stored under (for purges).
    pub key: CacheKey,
    /// When the response arrived, less the sub-second part of its initial age.
    stored_at: Moment,
    headers_end: u32,
    targeted_end: u32,
    tags_end: u32,
    /// Whole seconds of `corrected_initial_age` (§4.2.3); with `stored_at`, the exact age.
    initial_age: u32,
    /// Freshness lifetime, `stale-while-revalidate` and `stale-if-error`, in seconds.
    lifetime: u32,
    swr: u32,
    sie: u32,
    /// Response status.
    pub status: StatusCode,
    /// `NO_CACHE`, `MUST_REVALIDATE` and `INVALIDATED` (set by a soft purge) in the low three
    /// bits; the hits served from the entry above them (see [`Entry::hit`]). One word for
    /// both keeps the entry within 112 bytes.
    flags: AtomicU16,
}

const NO_CACHE: u16 = 1;
const MUST_REVALIDATE: u16 = 2;
const INVALIDATED: u16 = 4;
/// One hit in [`Entry::flags`].
const HIT: u16 = 8;
/// Hits are counted up to this (shown as a lower bound by the cache inspection).
pub const MAX_HITS: u16 = (u16::MAX - 7 * HIT) / HIT;

/// Where a large body is.
#[derive(Debug)]
enum LargeBody {
    /// In memory, as it came.
    Memory(Bytes),
    /// In its file in the disk tier, read block by block when served (`cache/disk/blocks.rs`).
    File(Arc<FileBody>),
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
    let age_value = age_value(headers).map_or(Duration::ZERO, Duration::from_secs);
    let date = date_header(headers, &header::DATE).unwrap_or(ex.response_time);
    let apparent_age = ex.response_time.duration_since(date).unwrap_or_default();
    let response_delay = ex.response_time.duration_since(ex.request_time).unwrap_or_default();
    apparent_age.max(age_value + response_delay)
}

/// The `Age` field's value (RFC 9111 §5.1). A list (`Age: 7200, 0`, or two `Age` fields) is
/// invalid, but the RFC asks a cache to use its first member rather than ignore it, since
/// discarding an age makes a response look fresher than it is. A first member that is not
/// delta-seconds makes the whole field unusable; values too large saturate at `u32::MAX`
/// seconds (§1.2.2).
pub fn age_value(headers: &HeaderMap) -> Option<u64> {
    let first = headers.get(header::AGE)?.to_str().ok()?.split(',').next()?.trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(first.parse::<u64>().unwrap_or(u64::MAX).min(u64::from(u32::MAX)))
}

/// A response head ready to be stored.
#[derive(Clone, Debug)]
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
    /// A new entry for a response that arrived in `exchange`.
    pub fn new(mut head: StoredHead, body: Bytes, key: CacheKey, exchange: &Exchange) -> Self {
        let initial = initial_age(&head.headers, exchange);
        // Every response from the entry states the length it sends.
        head.headers.remove(header::CONTENT_LENGTH);
        // The sub-second part of the initial age moves the arrival back, so whole seconds are
        // stored without rounding the age.
        let subsec = Duration::from_nanos(initial.subsec_nanos().into());
        let stored_at = Moment::of(exchange.response_instant).before(subsec);
        let packed = pack(&head, body);
        let p = &head.policy;
        let flags =
            if p.no_cache { NO_CACHE } else { 0 } | if p.must_revalidate { MUST_REVALIDATE } else { 0 };
        Self {
            data: packed.data,
            large_body: packed.large_body.map(|b| Box::new(LargeBody::Memory(b))),
            key,
            stored_at,
            headers_end: packed.ends[0],
            targeted_end: packed.ends[1],
            tags_end: packed.ends[2],
            initial_age: secs(initial),
            lifetime: secs(p.lifetime),
            swr: secs(p.swr),
            sie: secs(p.sie),
            status: head.status,
            flags: AtomicU16::new(flags),
        }
    }

    /// Headers as clients get them, minus `Age`, `Cache-Status` and `Content-Length` (added
    /// per response).
    pub fn headers(&self) -> Fields<'_> {
        Fields::new(&self.data, 0..self.headers_end as usize)
    }

    /// `Surrogate-Control` as received: hidden from clients, but needed
    /// to recompute freshness when a 304 refreshes the entry.
    pub fn targeted(&self) -> Fields<'_> {
        Fields::new(&self.data, self.headers_end as usize..self.targeted_end as usize)
    }

    /// Surrogate keys / cache tags.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        let text = self.data.get(self.targeted_end as usize..self.tags_end as usize).unwrap_or_default();
        std::str::from_utf8(text).unwrap_or_default().lines()
    }

    /// The complete body, when it is in memory; empty for a body in a file (see
    /// [`Entry::file`]).
    pub fn body(&self) -> Bytes {
        match self.large_body.as_deref() {
            Some(LargeBody::Memory(body)) => body.clone(),
            Some(LargeBody::File(_)) => Bytes::new(),
            None => self.data.slice(self.tags_end as usize..),
        }
    }

    /// The file holding the body of a large object read back from the disk tier.
    pub fn file(&self) -> Option<&Arc<FileBody>> {
        match self.large_body.as_deref() {
            Some(LargeBody::File(f)) => Some(f),
            _ => None,
        }
    }

    /// The body's length, wherever it is.
    pub fn body_len(&self) -> u64 {
        match self.large_body.as_deref() {
            Some(LargeBody::Memory(body)) => body.len() as u64,
            Some(LargeBody::File(f)) => f.len(),
            None => self.data.len().saturating_sub(self.tags_end as usize) as u64,
        }
    }

    /// This entry with its body in `file` (it was stored with an empty one).
    pub fn with_file(mut self, file: Arc<FileBody>) -> Self {
        self.large_body = Some(Box::new(LargeBody::File(file)));
        self
    }

    /// Freshness lifetime (§4.2.1), after site rules.
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.lifetime.into())
    }

    /// The `stale-while-revalidate` window.
    pub fn swr(&self) -> Duration {
        Duration::from_secs(self.swr.into())
    }

    /// The `stale-if-error` window.
    pub fn sie(&self) -> Duration {
        Duration::from_secs(self.sie.into())
    }

    /// Must be revalidated before every reuse (`no-cache`).
    pub fn no_cache(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & NO_CACHE != 0
    }

    /// Stale copies may not be served for `max-stale` or `stale-while-revalidate`.
    pub fn must_revalidate(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & MUST_REVALIDATE != 0
    }

    /// `current_age` at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        Duration::from_secs(self.initial_age.into()) + Moment::of(now).since(self.stored_at)
    }

    /// Remaining freshness in seconds; negative once stale (for `Cache-Status: ttl`).
    pub fn ttl(&self, now: Instant) -> i64 {
        self.ttl_at(self.age(now))
    }

    /// [`Entry::ttl`] when the entry's age is `age`.
    pub fn ttl_at(&self, age: Duration) -> i64 {
        (self.lifetime().as_secs_f64() - age.as_secs_f64()).floor() as i64
    }

    /// How long past its freshness the entry is at age `age` (zero when fresh).
    pub fn staleness_at(&self, age: Duration) -> Duration {
        age.saturating_sub(self.lifetime())
    }

    /// Fresh: within its lifetime and not soft-purged.
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.fresh_at(self.age(now))
    }

    /// [`Entry::is_fresh`] when the entry's age is `age`.
    pub fn fresh_at(&self, age: Duration) -> bool {
        !self.is_invalidated() && age < self.lifetime()
    }

    /// Whether a soft purge marked it stale.
    pub fn is_invalidated(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & INVALIDATED != 0
    }

    /// Marks it stale (soft purge).
    pub fn invalidate(&self) {
        self.flags.fetch_or(INVALIDATED, Ordering::Relaxed);
    }

    /// Counts one response served from this entry (for the cache inspection). Saturates at
    /// [`MAX_HITS`]: a few concurrent increments past the check stay below the word's top.
    pub fn hit(&self) {
        if self.flags.load(Ordering::Relaxed) / HIT < MAX_HITS {
            self.flags.fetch_add(HIT, Ordering::Relaxed);
        }
    }

    /// Responses served from this entry (up to [`MAX_HITS`]).
    pub fn hits(&self) -> u16 {
        self.flags.load(Ordering::Relaxed) / HIT
    }

    /// Whether a conditional request can revalidate it.
    pub fn has_validators(&self) -> bool {
        let h = self.headers();
        h.contains(&header::ETAG) || h.contains(&header::LAST_MODIFIED)
    }

    /// How long the store keeps it from now: freshness left, then the longest stale window.
    pub fn keep(&self) -> Duration {
        (self.lifetime() + self.stale_window()).saturating_sub(self.age(Instant::now()))
    }

    /// Whether the store should have let it go by `now`: past its freshness and the longest
    /// window in which a stale copy is still of use.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expired_at(self.age(now))
    }

    /// [`Entry::is_expired`] when the entry's age is `age`: a hit computes the age once, for
    /// the store's expiry check and then the freshness decision, `Age` and `Cache-Status`.
    pub fn expired_at(&self, age: Duration) -> bool {
        // Every lookup asks this: a fresh entry answers without scanning its headers.
        let stale_for = self.staleness_at(age);
        !stale_for.is_zero() && stale_for >= self.stale_window()
    }

    /// How long a stale copy is worth keeping: for `stale-while-revalidate`, `stale-if-error`,
    /// revalidation (with validators) or `max-stale`.
    fn stale_window(&self) -> Duration {
        let keep = if self.has_validators() { REVALIDATION_KEEP } else { STALE_KEEP };
        self.swr().max(self.sie()).max(keep)
    }

    /// Bytes this entry costs: body, header text, key and bookkeeping.
    pub fn weight(&self) -> usize {
        // A body in a file costs no memory (its file is the disk tier's to count).
        let large = match self.large_body.as_deref() {
            Some(LargeBody::Memory(b)) => b.len(),
            _ => 0,
        };
        self.data.len() + large + self.key.primary().len() + ENTRY_OVERHEAD
    }
}

/// An entry as the disk tier writes it (`cache/disk/file.rs`): everything but its key, with
/// the age it had when written instead of process-local clock readings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persisted {
    /// Header text, targeted-field text and tag lines.
    pub text: Bytes,
    /// Ends of the header text, the targeted text and the tag lines in `text`.
    pub ends: [u32; 3],
    /// The body.
    pub body: Bytes,
    /// Status code.
    pub status: u16,
    /// `NO_CACHE`, `MUST_REVALIDATE` and `INVALIDATED`.
    pub flags: u16,
    /// Freshness lifetime, `stale-while-revalidate` and `stale-if-error`, in seconds.
    pub lifetime: u32,
    pub swr: u32,
    pub sie: u32,
    /// `current_age` when it was written, in milliseconds.
    pub age_ms: u64,
}

impl Entry {
    /// What the disk tier stores of this entry at `now`.
    pub fn persist(&self, now: Instant) -> Persisted {
        let tags_end = self.tags_end as usize;
        Persisted {
            text: self.data.slice(..tags_end.min(self.data.len())),
            ends: [self.headers_end, self.targeted_end, self.tags_end],
            body: self.body(),
            status: self.status.as_u16(),
            flags: self.flags.load(Ordering::Relaxed) & (NO_CACHE | MUST_REVALIDATE | INVALIDATED),
            lifetime: self.lifetime,
            swr: self.swr,
            sie: self.sie,
            age_ms: u64::try_from(self.age(now).as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The entry `p` describes, `aged` old at `now`; `None` when its parts do not fit together
    /// (which a checksum that passed makes unlikely, but a reader never trusts a file).
    pub fn restore(p: Persisted, key: CacheKey, aged: Duration, now: Instant) -> Option<Self> {
        let [h, t, g] = p.ends;
        if !(h <= t && t <= g && g as usize == p.text.len()) {
            return None;
        }
        let status = StatusCode::from_u16(p.status).ok()?;
        let (data, large_body) = if p.body.len() <= COMPACT_BODY_MAX {
            let mut buf = BytesMut::with_capacity(p.text.len() + p.body.len());
            buf.extend_from_slice(&p.text);
            buf.extend_from_slice(&p.body);
            (buf.freeze(), None)
        } else {
            (p.text, Some(Box::new(LargeBody::Memory(p.body))))
        };
        let subsec = Duration::from_nanos(aged.subsec_nanos().into());
        Some(Self {
            data,
            large_body,
            key,
            stored_at: Moment::of(now).before(subsec),
            headers_end: h,
            targeted_end: t,
            tags_end: g,
            initial_age: secs(aged),
            lifetime: p.lifetime,
            swr: p.swr,
            sie: p.sie,
            status,
            flags: AtomicU16::new(p.flags & (NO_CACHE | MUST_REVALIDATE | INVALIDATED)),
        })
    }

    /// How long ago the response arrived (its age less the age it arrived with).
    pub fn resident(&self, now: Instant) -> Duration {
        Moment::of(now).since(self.stored_at)
    }
}

/// The origin of [`Moment`]s.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// A point on the monotonic clock in 8 bytes (an `Instant` takes 16): nanoseconds from the
/// first use of the clock, negative before it; ±292 years fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(i64);

impl Moment {
    /// `at` as a moment.
    pub fn of(at: Instant) -> Self {
        let epoch = *EPOCH;
        Self(match at.checked_duration_since(epoch) {
            Some(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
            None => -i64::try_from(epoch.duration_since(at).as_nanos()).unwrap_or(i64::MAX),
        })
    }

    /// `d` later.
    pub fn after(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
    }

    /// `d` earlier.
    fn before(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
    }

    /// Time from `earlier` to this moment (zero if `earlier` is later).
    fn since(self, earlier: Self) -> Duration {
        Duration::from_nanos(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

/// Whole seconds of `d`, saturated.
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Bodies up to this size are copied into the entry's own buffer when stored.
const COMPACT_BODY_MAX: usize = 256 << 10;

/// An entry's buffer.
struct Packed {
    data: Bytes,
    /// Ends of the header text, the targeted text and the tag lines.
    ends: [u32; 3],
    large_body: Option<Bytes>,
}

/// The fields, tags and body of a new entry, all in one buffer of their own (the body only
/// when it is small). hyper hands out body chunks and header values as slices of its
/// connection read buffer; storing such slices would pin the whole buffer for as long as the
/// entry lives, several KiB for a 1 KiB object. One copy per fill is cheap; hits share the
/// stored bytes without copying.
fn pack(head: &StoredHead, body: Bytes) -> Packed {
    let small = body.len() <= COMPACT_BODY_MAX;
    let headers = &head.headers;
    let tags: usize = head.tags.iter().map(|t| t.len() + 1).sum();
    let text = Fields::encoded_len(headers) + Fields::encoded_len(&head.targeted) + tags;
    let mut buf = BytesMut::with_capacity(text + if small { body.len() } else { 0 });
    let mut ends = [0; 3];
    Fields::encode(headers, &mut buf);
    ends[0] = buf.len();
    Fields::encode(&head.targeted, &mut buf);
    ends[1] = buf.len();
    for tag in &head.tags {
        buf.extend_from_slice(tag.as_bytes());
        buf.extend_from_slice(b"\n");
    }
    ends[2] = buf.len();
    if small {
        buf.extend_from_slice(&body);
    }
    Packed {
        data: buf.freeze(),
        ends: ends.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        large_body: (!small).then_some(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(
        headers: HeaderMap,
        targeted: HeaderMap,
        tags: &[&str],
        lifetime: u64,
        swr: u64,
        sie: u64,
    ) -> StoredHead {
        let policy = Policy {
            swr: Duration::from_secs(swr),
            sie: Duration::from_secs(sie),
            ..Policy::fresh_for(Duration::from_secs(lifetime))
        };
        let tags = tags.iter().map(ToString::to_string).collect();
        StoredHead { status: StatusCode::OK, headers, targeted, tags, policy }
    }

    #[test]
    fn age_value_table() {
        let cases: &[(&[&str], Option<u64>)] = &[
            (&["60"], Some(60)),
            (&[" 60 "], Some(60)),
            (&["7200, 0"], Some(7200)),
            (&["7200", "0"], Some(7200)),
            (&["0, 7200"], Some(0)),
            (&["abc, 60"], None),
            (&["-1"], None),
            (&["1.5"], None),
            (&[""], None),
            (&[], None),
            (&["99999999999999999999999"], Some(u64::from(u32::MAX))),
        ];
        for (values, want) in cases {
            let mut h = HeaderMap::new();
            for v in *values {
                h.append(header::AGE, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(age_value(&h), *want, "{values:?}");
        }
    }

    fn key() -> CacheKey {
        CacheKey::new(
            "h",
            &http::Uri::from_static("/p"),
            &stratus_config::edge::KeyRules::default(),
            &HeaderMap::new(),
        )
    }

    fn entry(lifetime: u64, swr: u64, sie: u64, etag: bool) -> Entry {
        let mut headers = HeaderMap::new();
        if etag {
            headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        }
        let head = head(headers, HeaderMap::new(), &[], lifetime, swr, sie);
        Entry::new(head, Bytes::from_static(b"body"), key(), &Exchange::now(SystemTime::now()))
    }

    /// The store drops an entry once it `is_expired`, `keep()` from now: freshness left, then
    /// the longest window in which a stale copy is still of use.
    #[test]
    fn entries_are_kept_for_freshness_plus_their_longest_stale_window() {
        let within = |e: Entry, want: u64| {
            let (got, want) = (e.keep(), Duration::from_secs(want));
            assert!(got <= want && got + Duration::from_secs(1) > want, "kept {got:?}, expected {want:?}");
            let now = Instant::now();
            assert!(!e.is_expired(now + want - Duration::from_secs(1)));
            assert!(e.is_expired(now + want));
        };
        // No validators: freshness plus a minute for max-stale, or a longer swr/sie window.
        within(entry(10, 0, 0, false), 10 + STALE_KEEP.as_secs());
        within(entry(10, 300, 0, false), 310);
        within(entry(10, 30, 3600, false), 3610);
        // Validators make a stale copy worth keeping for revalidation.
        within(entry(10, 0, 0, true), 10 + REVALIDATION_KEEP.as_secs());
        // Already stale: only the stale window is left.
        within(entry(0, 0, 120, false), 120);
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
        let ex = Exchange::now(SystemTime::now());
        let e = Entry::new(
            head(h.clone(), t.clone(), &["a", "b-c"], 60, 0, 0),
            backing.slice(0..1024),
            key(),
            &ex,
        );
        assert_eq!(e.body(), backing.slice(0..1024));
        assert_ne!(e.body().as_ptr(), backing.as_ptr(), "a small body must not pin its source buffer");
        assert_eq!(e.headers().to_map(0), h, "storing changes no header, order or repetition");
        assert_eq!(e.targeted().to_map(0), t);
        assert_eq!(e.tags().collect::<Vec<_>>(), ["a", "b-c"]);
        let big = Bytes::from(vec![b'y'; COMPACT_BODY_MAX + 1]);
        let e = Entry::new(head(h.clone(), t, &[], 60, 0, 0), big.clone(), key(), &ex);
        assert_eq!(e.body().as_ptr(), big.as_ptr(), "a large body is kept as it came");
        assert_eq!(e.headers().to_map(0), h);
        assert_eq!(e.tags().count(), 0);
    }

    /// Content-Length describes one response, and each response from the entry states its own.
    #[test]
    fn content_length_is_not_stored() {
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        h.append(header::ETAG, HeaderValue::from_static("\"v1\""));
        let e = Entry::new(
            head(h, HeaderMap::new(), &[], 60, 0, 0),
            Bytes::from_static(b"body"),
            key(),
            &Exchange::now(SystemTime::now()),
        );
        assert!(!e.headers().contains(&header::CONTENT_LENGTH));
        assert!(e.has_validators());
    }

    /// Seconds are stored, but the age stays exact: an initial age of 2.7 s is 3 s old 0.3 s
    /// after arrival, not 2.
    #[test]
    fn ages_keep_sub_second_initial_age() {
        let t0 = SystemTime::now();
        let arrived = Instant::now();
        let ex = Exchange {
            request_time: t0,
            response_time: t0 + Duration::from_millis(2700),
            response_instant: arrived,
        };
        let mut h = HeaderMap::new();
        h.insert(header::DATE, httpdate::fmt_http_date(t0 + Duration::from_secs(3)).parse().unwrap());
        let e = Entry::new(head(h, HeaderMap::new(), &[], 60, 0, 0), Bytes::new(), key(), &ex);
        let age = e.age(arrived + Duration::from_millis(300));
        assert!(age >= Duration::from_millis(2999) && age <= Duration::from_millis(3001), "{age:?}");
    }

    /// The entry struct is most of a small object's bookkeeping; keep it small.
    #[test]
    fn an_entry_is_compact() {
        assert!(std::mem::size_of::<Entry>() <= 112, "{}", std::mem::size_of::<Entry>());
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
