//! Prometheus metrics. Each edge owns its recorder (nothing global, so several edges can live
//! in one process); handles are registered once at start, so recording on the request path is
//! an atomic add. Labels come from [`CacheStatus::label`] and [`ProxyError::kind`] only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::error::{Error, ProxyError};
use crate::fleet::follow_target::EdgeStats;
use crate::proxy::status::CacheStatus;

const LATENCY: &str = "stratus_edge_request_duration_seconds";
/// Latency buckets: from a sub-millisecond hit to a slow origin.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The edge's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: Vec<(&'static str, Counter)>,
    errors: Vec<(&'static str, Counter)>,
    bytes_served: Counter,
    origin_requests: Counter,
    origin_errors: Counter,
    coalesced: Counter,
    latency: Histogram,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    evictions: Counter,
    total: AtomicU64,
    hits: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static META: Metadata<'static> = Metadata::new("stratus_edge", metrics::Level::INFO, Some("stratus_edge"));

impl Metrics {
    /// Builds the recorder and registers every series.
    pub fn new() -> Result<Self, Error> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), &LATENCY_BUCKETS)
            .map_err(|e| Error::Metrics(e.to_string()))?
            .build_recorder();
        let handle = recorder.handle();
        let counter = |name: &'static str, labels: Vec<Label>, help: &'static str| {
            recorder.describe_counter(name.into(), None, help.into());
            recorder.register_counter(&Key::from_parts(name, labels), &META)
        };
        let requests = CacheStatus::LABELS
            .iter()
            .map(|l| {
                (
                    *l,
                    counter(
                        "stratus_edge_requests_total",
                        vec![Label::new("cache", *l)],
                        "client requests by cache outcome",
                    ),
                )
            })
            .collect();
        let errors = ProxyError::KINDS
            .iter()
            .map(|k| {
                (
                    *k,
                    counter(
                        "stratus_edge_errors_total",
                        vec![Label::new("kind", *k)],
                        "requests that failed, by kind",
                    ),
                )
            })
            .collect();
        let bytes_served =
            counter("stratus_edge_served_bytes_total", vec![], "response body bytes sent to clients");
        let origin_requests =
            counter("stratus_edge_origin_requests_total", vec![], "requests sent to origins");
        let origin_errors =
            counter("stratus_edge_origin_errors_total", vec![], "origin requests that failed");
        let coalesced = counter(
            "stratus_edge_coalesced_waiters_total",
            vec![],
            "requests that waited on another request's origin fetch",
        );
        let evictions = counter("stratus_edge_cache_evictions_total", vec![], "entries evicted for room");
        recorder.describe_histogram(
            LATENCY.into(),
            Some(metrics::Unit::Seconds),
            "time to the response head".into(),
        );
        let latency = recorder.register_histogram(&Key::from_name(LATENCY), &META);
        recorder.describe_gauge("stratus_edge_cache_bytes".into(), None, "bytes held in the cache".into());
        let cache_bytes = recorder.register_gauge(&Key::from_name("stratus_edge_cache_bytes"), &META);
        recorder.describe_gauge(
            "stratus_edge_cache_entries".into(),
            None,
            "entries held in the cache".into(),
        );
        let cache_entries = recorder.register_gauge(&Key::from_name("stratus_edge_cache_entries"), &META);
        Ok(Self {
            recorder,
            handle,
            requests,
            errors,
            bytes_served,
            origin_requests,
            origin_errors,
            coalesced,
            latency,
            cache_bytes,
            cache_entries,
            evictions,
            total: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        })
    }

    /// Records one finished client request (its head was sent after `elapsed`).
    pub fn request(&self, status: &CacheStatus, elapsed: Duration) {
        let label = status.label();
        if let Some((_, c)) = self.requests.iter().find(|(l, _)| *l == label) {
            c.increment(1);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        if status.is_hit() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(elapsed.as_secs_f64());
    }

    /// Records a failed request.
    pub fn error(&self, err: &ProxyError) {
        let kind = err.kind();
        if let Some((_, c)) = self.errors.iter().find(|(k, _)| *k == kind) {
            c.increment(1);
        }
    }

    /// Records body bytes sent to a client.
    pub fn served(&self, bytes: u64) {
        self.bytes_served.increment(bytes);
    }

    /// Records a request sent to an origin.
    pub fn origin_request(&self) {
        self.origin_requests.increment(1);
    }

    /// Records an origin request that failed.
    pub fn origin_error(&self) {
        self.origin_errors.increment(1);
    }

    /// Records a request that joined another's origin fetch.
    pub fn coalesced(&self) {
        self.coalesced.increment(1);
    }

    /// Client requests and hits so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.total.load(Ordering::Relaxed), self.hits.load(Ordering::Relaxed))
    }

    /// Prometheus text, with the cache gauges updated from `stats` and `evictions`.
    pub fn render(&self, stats: &EdgeStats, evictions: u64) -> String {
        self.cache_bytes.set(stats.cache_bytes as f64);
        self.cache_entries.set(stats.cache_entries as f64);
        self.evictions.absolute(evictions);
        let _ = &self.recorder;
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; call periodically.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}
