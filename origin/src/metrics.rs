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
use stratus_config::observe::{DURATION_BUCKETS, Histogram};

const METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "POST", "DELETE", "other"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The origin's counters.
#[derive(Debug)]
pub struct Metrics {
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    duration: Histogram,
    token: Option<Secret>,
}

impl Metrics {
    /// Counters at zero; `token` (read-only) guards `/metrics` when set.
    pub fn new(token: Option<Secret>) -> Self {
        Self { requests: Default::default(), duration: Histogram::new(&DURATION_BUCKETS), token }
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
        self.duration.record(took);
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
        self.duration.render(
            &mut out,
            "stratus_origin_request_duration_seconds",
            "time from a request's arrival to its response head",
        );
        stratus_config::observe::render_process_metrics(&mut out, "origin");
        out
    }
}
