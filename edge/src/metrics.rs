//! Prometheus metrics. Each edge owns its recorder (nothing global, so several edges can live
//! in one process); handles are registered once at start, so recording on the request path is
//! an atomic add. Labels come from [`CacheStatus::label`] and [`ProxyError::kind`] only.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::error::{Error, ProxyError};
use crate::fleet::follow_target::EdgeStats;
use crate::proxy::route::SiteState;
use crate::proxy::status::CacheStatus;
use stratus_config::observe::Histogram;

/// A label value with `\\`, `"` and newlines escaped, as the text format requires.
/// The disk tier's series read at scrape time: hits by tier and the disk's own counters.
fn disk_series(out: &mut String, d: &crate::cache::disk::tier::DiskStats, hits: u64, disk_hits: u64) {
    let _ = writeln!(
        out,
        "# HELP stratus_edge_cache_hits_total hits by the tier that served them\n\
         # TYPE stratus_edge_cache_hits_total counter\n\
         stratus_edge_cache_hits_total{{tier=\"memory\"}} {}\n\
         stratus_edge_cache_hits_total{{tier=\"disk\"}} {disk_hits}",
        hits.saturating_sub(disk_hits)
    );
    for (name, help, v) in [
        ("stratus_edge_disk_evictions_total", "objects evicted from the disk tier for room", d.evictions),
        ("stratus_edge_disk_writes_total", "objects written to the disk tier", d.writes),
        ("stratus_edge_disk_misses_total", "disk tier lookups that found nothing usable", d.misses),
        (
            "stratus_edge_disk_errors_total",
            "disk tier I/O errors (each makes the tier memory-only for a while)",
            d.errors,
        ),
        ("stratus_edge_disk_corrupt_total", "object files dropped for a bad checksum or layout", d.corrupt),
        (
            "stratus_edge_disk_dropped_total",
            "objects not written: queue full, too big or writes paused",
            d.dropped,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
}

fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
    } else {
        v.into()
    }
}

const LATENCY: &str = "stratus_edge_request_duration_seconds";
const ORIGIN_LATENCY: &str = "stratus_edge_origin_duration_seconds";
const RESPONSES: &str = "stratus_edge_responses_total";
/// Status codes counted on their own; any other is counted by its class (`4xx`), so the
/// label set stays bounded whatever origins send.
const CODES: [u16; 27] = [
    200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 410, 412, 413, 416, 421,
    429, 431, 500, 502, 503, 504,
];
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
/// Latency buckets: from a sub-millisecond hit to a slow origin.
static LATENCY_BUCKETS: [f64; 14] =
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
    /// Hits served from the disk tier.
    disk_hits: AtomicU64,
    /// The disk tier's gauges (bytes, entries), when it has one.
    disk: Option<(Gauge, Gauge)>,
    /// Mirrors of served bytes and 5xx responses for heartbeats.
    served: AtomicU64,
    server_errors: AtomicU64,
    origin_latency: Histogram,
    fetched: Counter,
    /// Responses by site (config names only) and code: one counter per code label.
    responses: RwLock<HashMap<String, Arc<[Counter]>>>,
}

/// What `/metrics` shows besides the recorder's series, gathered by the admin API.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Cache counters.
    pub stats: EdgeStats,
    /// Entries evicted so far.
    pub evictions: u64,
    /// `(site, origin, up)` for every origin.
    pub origins: Vec<(String, String, bool)>,
    /// `(applied, head)` sequence numbers, when following a control plane.
    pub control: Option<(u64, u64)>,
    /// Access-log lines dropped because the writer was behind.
    pub access_log_dropped: u64,
    /// The disk tier's counters, when it has one.
    pub disk: Option<crate::cache::disk::tier::DiskStats>,
}

/// The label of a status code: itself when counted alone, else its class.
fn code_slot(code: u16) -> usize {
    CODES
        .iter()
        .position(|c| *c == code)
        .unwrap_or_else(|| CODES.len() + usize::from(code / 100).saturating_sub(1).min(CLASSES.len() - 1))
}

fn code_label(slot: usize) -> String {
    CODES.get(slot).map_or_else(|| CLASSES[slot - CODES.len()].to_owned(), u16::to_string)
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static META: Metadata<'static> = Metadata::new("stratus_edge", metrics::Level::INFO, Some("stratus_edge"));

impl Metrics {
    /// Builds the recorder and registers every series; `disk` adds the disk tier's series.
    pub fn new(disk: bool) -> Result<Self, Error> {
        let recorder = PrometheusBuilder::new().build_recorder();
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
        let latency = Histogram::new(&LATENCY_BUCKETS);
        let origin_latency = Histogram::new(&LATENCY_BUCKETS);
        let fetched = counter(
            "stratus_edge_origin_fetched_bytes_total",
            vec![],
            "response body bytes read from origins",
        );
        recorder.describe_counter(
            RESPONSES.into(),
            None,
            "responses sent to clients by status code and site".into(),
        );
        let tier = || vec![Label::new("tier", "memory")];
        recorder.describe_gauge(
            "stratus_edge_cache_bytes".into(),
            None,
            "bytes held in the cache, by tier".into(),
        );
        let cache_bytes =
            recorder.register_gauge(&Key::from_parts("stratus_edge_cache_bytes", tier()), &META);
        recorder.describe_gauge(
            "stratus_edge_cache_entries".into(),
            None,
            "entries held in the cache, by tier".into(),
        );
        let cache_entries =
            recorder.register_gauge(&Key::from_parts("stratus_edge_cache_entries", tier()), &META);
        let disk = disk.then(|| {
            let tier = || vec![Label::new("tier", "disk")];
            (
                recorder.register_gauge(&Key::from_parts("stratus_edge_cache_bytes", tier()), &META),
                recorder.register_gauge(&Key::from_parts("stratus_edge_cache_entries", tier()), &META),
            )
        });
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
            disk_hits: AtomicU64::new(0),
            disk,
            served: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            origin_latency,
            fetched,
            responses: RwLock::new(HashMap::new()),
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
            if status.detail == Some("disk") {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency.record(elapsed);
    }

    /// The response counters of `site` (a configured site's name; `""` when no site matched
    /// the host), registered on first use.
    fn site_counters(&self, site: &str) -> Arc<[Counter]> {
        if let Ok(map) = self.responses.read()
            && let Some(counters) = map.get(site)
        {
            return counters.clone();
        }
        // First response of this site: register its counters (sites come from configuration,
        // so this happens once per site).
        let counters: Arc<[Counter]> = (0..CODES.len() + CLASSES.len())
            .map(|i| {
                let labels = vec![Label::new("code", code_label(i)), Label::new("site", site.to_owned())];
                self.recorder.register_counter(&Key::from_parts(RESPONSES, labels), &META)
            })
            .collect();
        match self.responses.write() {
            Ok(mut map) => map.entry(site.to_owned()).or_insert(counters).clone(),
            Err(_) => counters,
        }
    }

    /// Records a response sent when no site matched the host.
    pub fn response(&self, code: u16) {
        self.count(code, &self.site_counters(""));
    }

    /// Records a response sent for `site`. The site keeps its counters, so after its first
    /// response this takes no lock and hashes no name.
    pub fn response_of(&self, code: u16, site: &SiteState) {
        self.count(code, site.responses.get_or_init(|| self.site_counters(&site.name)));
    }

    fn count(&self, code: u16, counters: &[Counter]) {
        if code >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = counters.get(code_slot(code)) {
            c.increment(1);
        }
    }

    /// Records how long an origin took to send a response head.
    pub fn origin_duration(&self, d: Duration) {
        self.origin_latency.record(d);
    }

    /// Records response body bytes read from an origin.
    pub fn fetched(&self, bytes: u64) {
        self.fetched.increment(bytes);
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
        self.served.fetch_add(bytes, Ordering::Relaxed);
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

    /// Body bytes served and 5xx responses so far (heartbeats).
    pub fn traffic(&self) -> (u64, u64) {
        (self.served.load(Ordering::Relaxed), self.server_errors.load(Ordering::Relaxed))
    }

    /// Hits served from the disk tier so far.
    pub fn disk_hits(&self) -> u64 {
        self.disk_hits.load(Ordering::Relaxed)
    }

    /// Client requests and hits so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.total.load(Ordering::Relaxed), self.hits.load(Ordering::Relaxed))
    }

    /// Prometheus text: the recorder's series (cache gauges updated from `snap`), then the
    /// series read at scrape time: origin health, control-plane progress, access-log drops,
    /// build info and the process.
    pub fn render(&self, snap: &Snapshot) -> String {
        self.cache_bytes.set(snap.stats.cache_bytes as f64);
        self.cache_entries.set(snap.stats.cache_entries as f64);
        self.evictions.absolute(snap.evictions);
        if let (Some((bytes, entries)), Some(d)) = (&self.disk, &snap.disk) {
            bytes.set(d.bytes as f64);
            entries.set(d.entries as f64);
        }
        let mut out = self.handle.render();
        self.latency.render(&mut out, LATENCY, "time to the response head");
        self.origin_latency.render(
            &mut out,
            ORIGIN_LATENCY,
            "time from sending a request to an origin to its response head",
        );
        if let Some(d) = &snap.disk {
            disk_series(&mut out, d, self.counts().1, self.disk_hits());
        }
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "stratus_edge_origin_up",
            "gauge",
            "whether the origin takes requests (1) or is marked down (0)",
        );
        for (site, origin, up) in &snap.origins {
            let _ = writeln!(
                out,
                "stratus_edge_origin_up{{site=\"{}\",origin=\"{}\"}} {}",
                escape(site),
                escape(origin),
                u8::from(*up)
            );
        }
        if let Some((applied, head)) = snap.control {
            family(
                &mut out,
                "stratus_edge_control_applied_sequence",
                "gauge",
                "last control-plane log entry applied",
            );
            let _ = writeln!(out, "stratus_edge_control_applied_sequence {applied}");
            family(
                &mut out,
                "stratus_edge_control_head_sequence",
                "gauge",
                "last log entry the control plane announced",
            );
            let _ = writeln!(out, "stratus_edge_control_head_sequence {head}");
            family(
                &mut out,
                "stratus_edge_purge_lag_entries",
                "gauge",
                "log entries (purges, prewarms, configurations) announced but not yet applied",
            );
            let _ = writeln!(out, "stratus_edge_purge_lag_entries {}", head.saturating_sub(applied));
        }
        family(
            &mut out,
            "stratus_edge_access_log_dropped_total",
            "counter",
            "access-log lines dropped because the writer was behind",
        );
        let _ = writeln!(out, "stratus_edge_access_log_dropped_total {}", snap.access_log_dropped);
        stratus_config::observe::render_process_metrics(&mut out, "edge");
        out
    }
}
