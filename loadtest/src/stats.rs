//! Per-worker results: counters and HDR histograms that each worker owns alone (no locks on the
//! hot path) and that are merged once the run is over.

use hdrhistogram::Histogram;
use http::HeaderMap;

/// Why a request produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// TCP connect, TLS handshake or HTTP/2 handshake failed.
    Connect,
    /// No complete response within the per-request timeout.
    Timeout,
    /// The connection was closed or reset before the response was complete.
    Reset,
    /// Anything else: a malformed response, an HTTP/2 protocol error.
    Protocol,
}

/// What a response says about the cache that served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheResult {
    Hit,
    Miss,
    /// Neither `Cache-Status` nor `X-Cache`.
    Unknown,
}

/// Classifies a response by `Cache-Status` (RFC 9211), else by `X-Cache`.
///
/// A response is a hit when any cache listed in `Cache-Status` has the `hit` parameter — the
/// request did not reach the origin (origin offload, counting a shield tier's hits). `X-Cache`
/// (Varnish, Squid, CloudFront, Fastly) is a hit when any of its comma-separated values starts
/// with `HIT`.
pub(crate) fn classify(headers: &HeaderMap) -> CacheResult {
    let mut seen = false;
    for value in headers.get_all("cache-status") {
        seen = true;
        let Ok(text) = value.to_str() else { continue };
        for member in text.split(',') {
            if member.split(';').skip(1).any(|p| p.trim().eq_ignore_ascii_case("hit")) {
                return CacheResult::Hit;
            }
        }
    }
    if seen {
        return CacheResult::Miss;
    }
    for value in headers.get_all("x-cache") {
        seen = true;
        let Ok(text) = value.to_str() else { continue };
        if text.split(',').any(|v| v.trim().get(..3).is_some_and(|p| p.eq_ignore_ascii_case("hit"))) {
            return CacheResult::Hit;
        }
    }
    if seen { CacheResult::Miss } else { CacheResult::Unknown }
}

/// Latency histogram in microseconds; grows as larger values arrive.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is a valid precision")
}

/// The results of one worker in one phase, or of many merged.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    /// Latency: from the intended send time in rate mode, else from the actual send.
    pub latency: Histogram<u64>,
    /// In rate mode, latency from the actual send (what an uncorrected tool would show).
    pub service: Histogram<u64>,
    /// Count of responses per status code (index = code).
    pub status: Vec<u64>,
    pub connect: u64,
    pub timeout: u64,
    pub reset: u64,
    pub protocol: u64,
    pub hits: u64,
    pub misses: u64,
    pub unknown_cache: u64,
    pub body_bytes: u64,
    /// Scheduled (rate mode) requests never sent because the phase ended first.
    pub unsent: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            latency: histogram(),
            service: histogram(),
            status: vec![0; 600],
            connect: 0,
            timeout: 0,
            reset: 0,
            protocol: 0,
            hits: 0,
            misses: 0,
            unknown_cache: 0,
            body_bytes: 0,
            unsent: 0,
        }
    }
}

impl Stats {
    /// Records a response; latencies in microseconds, `service_us` only in rate mode (in a
    /// closed loop it equals the latency, and a second histogram write costs cache misses).
    pub fn response(
        &mut self,
        status: u16,
        cache: CacheResult,
        body: u64,
        latency_us: u64,
        service_us: Option<u64>,
    ) {
        // Auto-resizing histograms only refuse values above i64::MAX / 2 µs.
        let _ = self.latency.record(latency_us.max(1));
        if let Some(service) = service_us {
            let _ = self.service.record(service.max(1));
        }
        if let Some(slot) = self.status.get_mut(usize::from(status)) {
            *slot += 1;
        }
        match cache {
            CacheResult::Hit => self.hits += 1,
            CacheResult::Miss => self.misses += 1,
            CacheResult::Unknown => self.unknown_cache += 1,
        }
        self.body_bytes += body;
    }

    /// Records a request that got no response.
    pub fn failure(&mut self, kind: Failure) {
        match kind {
            Failure::Connect => self.connect += 1,
            Failure::Timeout => self.timeout += 1,
            Failure::Reset => self.reset += 1,
            Failure::Protocol => self.protocol += 1,
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Both histograms auto-resize, so adding cannot fail for range reasons.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.reset += other.reset;
        self.protocol += other.protocol;
        self.hits += other.hits;
        self.misses += other.misses;
        self.unknown_cache += other.unknown_cache;
        self.body_bytes += other.body_bytes;
        self.unsent += other.unsent;
    }

    /// Responses received (any status).
    pub fn responses(&self) -> u64 {
        self.latency.len()
    }

    /// Requests that got no response.
    pub fn failures(&self) -> u64 {
        self.connect + self.timeout + self.reset + self.protocol
    }

    /// Responses whose status is in `class`xx.
    pub fn status_class(&self, class: usize) -> u64 {
        self.status.iter().skip(class * 100).take(100).sum()
    }
}

/// What happened during one second of the run (by completion time), for the timeline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Second {
    pub responses: u64,
    pub failures: u64,
    pub hits: u64,
    pub misses: u64,
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
}

impl Second {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Second) {
        self.responses += other.responses;
        self.failures += other.failures;
        self.hits += other.hits;
        self.misses += other.misses;
        self.latency_sum_us += other.latency_sum_us;
        self.latency_max_us = self.latency_max_us.max(other.latency_max_us);
    }
}

/// Per-second counters of one worker, indexed by whole seconds since the start.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seconds(pub Vec<Second>);

impl Seconds {
    /// The slot for `second`, growing the list as the run goes on.
    pub fn at(&mut self, second: usize) -> &mut Second {
        if second >= self.0.len() {
            self.0.resize(second + 1, Second::default());
        }
        &mut self.0[second]
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Seconds) {
        for (i, s) in other.0.iter().enumerate() {
            self.at(i).merge(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(headers: &[(&'static str, &str)], expected: CacheResult) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, v.parse().expect("header value"));
        }
        assert_eq!(classify(&map), expected, "{headers:?}");
    }

    #[test]
    fn cache_status_and_x_cache() {
        check(&[("cache-status", "stratus; hit; ttl=30")], CacheResult::Hit);
        check(&[("cache-status", "stratus; fwd=miss; stored")], CacheResult::Miss);
        check(&[("cache-status", "shield; hit, stratus; fwd=miss")], CacheResult::Hit);
        check(&[("cache-status", "shield; fwd=miss"), ("cache-status", "edge;HIT")], CacheResult::Hit);
        check(&[("cache-status", "hit-cache; fwd=uri-miss")], CacheResult::Miss);
        check(&[("x-cache", "HIT from squid")], CacheResult::Hit);
        check(&[("x-cache", "MISS, HIT")], CacheResult::Hit);
        check(&[("x-cache", "Miss from cloudfront")], CacheResult::Miss);
        // Cache-Status wins when both are present.
        check(&[("cache-status", "stratus; fwd=miss"), ("x-cache", "HIT")], CacheResult::Miss);
        check(&[("server", "nginx")], CacheResult::Unknown);
    }

    #[test]
    fn merging_adds_everything() {
        let mut a = Stats::default();
        a.response(200, CacheResult::Hit, 10, 100, Some(90));
        a.failure(Failure::Timeout);
        let mut b = Stats::default();
        b.response(404, CacheResult::Miss, 5, 300, None);
        b.failure(Failure::Connect);
        a.merge(&b);
        assert_eq!((a.responses(), a.failures(), a.hits, a.misses, a.body_bytes), (2, 2, 1, 1, 15));
        assert_eq!((a.status_class(2), a.status_class(4)), (1, 1));
        assert_eq!(a.latency.max(), b.latency.max());
    }
}
