//! `GET /metrics` of the origin, in Prometheus text: requests by method and status class, a
//! request duration histogram (to the response head), then build info and the process.
//! Counted with plain atomics in fixed arrays, so the label sets are bounded by construction.
//!
//! The path would otherwise list a bucket named `metrics` (path style), so it answers only a
//! `GET /metrics` without a query string and without an S3 signature (a bearer token is fine);
//! a signed request, or an anonymous one with a query (`?list-type=2`, as every S3 client
//! sends), still reaches S3.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, header};
use stratus_config::Secret;

const METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "POST", "DELETE", "other"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The origin's counters.
#[derive(Debug)]
pub struct Metrics {
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum of durations in microseconds.
    sum_micros: AtomicU64,
    token: Option<Secret>,
}

impl Metrics {
    /// Counters at zero; `token` (read-only) guards `/metrics` when set.
    pub fn new(token: Option<Secret>) -> Self {
        Self {
            requests: Default::default(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            token,
        }
    }

    /// Whether `req` asks for the metrics rather than for S3.
    pub fn wants<B>(req: &http::Request<B>) -> bool {
        req.method() == Method::GET
            && req.uri().path() == "/metrics"
            && req.uri().query().is_none()
            && req
                .headers()
                .get(header::AUTHORIZATION)
                .is_none_or(|v| v.as_bytes().get(..7).is_some_and(|s| s.eq_ignore_ascii_case(b"bearer ")))
    }

    /// The answer to a `/metrics` request carrying `auth` (its `Authorization` field).
    pub fn answer(&self, auth: Option<&http::HeaderValue>) -> http::Response<s3s::Body> {
        if let Some(expected) = &self.token
            && !expected.verify_bearer(auth)
        {
            let mut res = http::Response::new(s3s::Body::from("unauthorized\n".to_owned()));
            *res.status_mut() = http::StatusCode::UNAUTHORIZED;
            return res;
        }
        let mut res = http::Response::new(s3s::Body::from(self.render()));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        res
    }

    /// Records one answered request.
    pub fn record(&self, method: &Method, status: u16, took: Duration) {
        let m = METHODS.iter().position(|m| *m == method.as_str()).unwrap_or(METHODS.len() - 1);
        let c = usize::from(status / 100).clamp(1, CLASSES.len()) - 1;
        self.requests[m][c].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP stratus_origin_requests_total S3 requests answered, by method and status class"
        );
        let _ = writeln!(out, "# TYPE stratus_origin_requests_total counter");
        for (m, method) in METHODS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.requests[m][c].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "stratus_origin_requests_total{{method=\"{method}\",code=\"{class}\"}} {n}"
                );
            }
        }
        let name = "stratus_origin_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} time from a request's arrival to its response head");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {}", self.buckets[i].load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        stratus_config::observe::render_process_metrics(&mut out, "origin");
        out
    }
}
