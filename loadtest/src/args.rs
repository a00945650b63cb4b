//! Command-line flags of `stratus loadtest`, named after wrk's and oha's where they overlap.

use std::path::PathBuf;

use stratus_config::Duration;

/// Arguments of `stratus loadtest`.
///
/// Targets come from URLs, `--url-file`, `--base`/`--keys`, or a `--scenario` file; every
/// target must share one scheme, host and port (connections are opened to that one origin).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Exit status: 0 when the run completed and received at least one response \
(errors are reported, as wrk and oha do); 1 when nothing answered, on bad arguments, or with \
--fail-on-errors when any request failed or got a 4xx/5xx.")]
pub struct LoadtestArgs {
    /// Target URLs, requested round-robin (or by Zipf rank with --zipf).
    pub urls: Vec<String>,
    /// File with one target URL per line (blank lines and `#` comments ignored).
    #[arg(long, value_name = "FILE")]
    pub url_file: Option<PathBuf>,
    /// Base URL of a key space: requests go to BASE/0 … BASE/N-1.
    #[arg(long, value_name = "URL", requires = "keys")]
    pub base: Option<String>,
    /// Number of keys under --base.
    #[arg(long, value_name = "N", requires = "base")]
    pub keys: Option<u64>,
    /// Zipf exponent S for key popularity (key 0 most popular); uniform keys when unset.
    #[arg(long, value_name = "S")]
    pub zipf: Option<f64>,
    /// Seed for the key sampler: the same seed and connection count give the same keys.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Open connections (HTTP/1.1: one request in flight on each).
    #[arg(short = 'c', long, default_value_t = 32)]
    pub connections: usize,
    /// Concurrent streams per connection with --http2.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// How long to run (ignored with -n).
    #[arg(short = 'd', long, default_value = "10s")]
    pub duration: Duration,
    /// Send exactly N requests, then stop.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Constant request rate (requests per second); latency counts from each request's
    /// intended send time (coordinated-omission corrected, as wrk2). Closed loop when unset.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Warm-up before measuring: same load, left out of the totals.
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<Duration>,
    /// Speak HTTP/2: prior knowledge (h2c) for http://, ALPN h2 for https://.
    #[arg(long)]
    pub http2: bool,
    /// Skip TLS certificate verification (self-signed test certificates).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// Request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(short = 'b', long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body read from a file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Per-request timeout (connect, send, whole response).
    #[arg(long, default_value = "10s")]
    pub timeout: Duration,
    /// Print one JSON document instead of the text report (fields in docs/loadtest.md).
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when any request failed or got a 4xx/5xx answer (for CI gates).
    #[arg(long)]
    pub fail_on_errors: bool,
    /// Scenario file (TOML, its `[loadtest]` section): target, phases, purge steps.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["urls", "url_file", "base", "requests", "rate", "warmup"])]
    pub scenario: Option<PathBuf>,
}
