//! The report: one serializable document (`--json`, fields in docs/loadtest.md) and its text
//! rendering. Both are built from the same numbers, so they always agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::purge::PurgeResult;
use crate::stats::Stats;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1e3;
        Some(Self {
            min: ms(h.min()),
            mean: h.mean() / 1e3,
            stdev: h.stdev() / 1e3,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

/// Requests that failed, by kind.
#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    pub total: u64,
    pub connect: u64,
    pub timeout: u64,
    pub reset: u64,
    pub protocol: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
}

/// Cache outcome of the responses.
#[derive(Debug, Clone, Serialize)]
pub struct Cache {
    pub hits: u64,
    pub misses: u64,
    /// Responses with neither `Cache-Status` nor `X-Cache`.
    pub unknown: u64,
    /// `hits / (hits + misses)`; `null` when no response named a cache outcome.
    pub hit_ratio: Option<f64>,
}

/// The figures of a phase, or of the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Requests that finished: `responses` plus transport failures.
    pub requests: u64,
    /// Responses received, any status.
    pub responses: u64,
    pub errors: Errors,
    /// Scheduled requests (rate mode) never sent because time ran out: the target fell behind.
    pub unsent: u64,
    /// Measured wall time, seconds.
    pub duration_s: f64,
    /// Responses per second.
    pub rps: f64,
    /// Bytes read from the network (headers, bodies, TLS framing).
    pub bytes: u64,
    pub bytes_per_s: f64,
    /// Response body bytes.
    pub body_bytes: u64,
    /// Latency of responses: from the intended send time in rate mode.
    pub latency_ms: Option<Latency>,
    /// Rate mode only: latency from the actual send, what an uncorrected tool would report.
    pub service_time_ms: Option<Latency>,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    pub cache: Cache,
}

impl Summary {
    /// Summarizes `stats` over `duration_s` seconds with `bytes` read from the network.
    pub(crate) fn new(stats: &Stats, duration_s: f64, bytes: u64, rate_mode: bool) -> Self {
        let per_s = |n: u64| if duration_s > 0.0 { n as f64 / duration_s } else { 0.0 };
        let (s4, s5) = (stats.status_class(4), stats.status_class(5));
        let status = stats
            .status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code.to_string(), *n))
            .collect();
        let known = stats.hits + stats.misses;
        Self {
            requests: stats.responses() + stats.failures(),
            responses: stats.responses(),
            errors: Errors {
                total: stats.failures() + s4 + s5,
                connect: stats.connect,
                timeout: stats.timeout,
                reset: stats.reset,
                protocol: stats.protocol,
                status_4xx: s4,
                status_5xx: s5,
            },
            unsent: stats.unsent,
            duration_s,
            rps: per_s(stats.responses()),
            bytes,
            bytes_per_s: per_s(bytes),
            body_bytes: stats.body_bytes,
            latency_ms: Latency::of(&stats.latency),
            service_time_ms: if rate_mode { Latency::of(&stats.service) } else { None },
            status,
            cache: Cache {
                hits: stats.hits,
                misses: stats.misses,
                unknown: stats.unknown_cache,
                hit_ratio: (known > 0).then(|| stats.hits as f64 / known as f64),
            },
        }
    }
}

/// One second of the run (by completion time, warm-up included).
#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    /// Seconds since the start: this entry covers `[t, t+1)`.
    pub t: u64,
    pub responses: u64,
    /// Requests that failed without a response.
    pub failures: u64,
    /// `hits / (hits + misses)` of the responses in this second; `null` without cache headers.
    pub hit_ratio: Option<f64>,
    pub mean_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl SecondReport {
    pub(crate) fn new(t: u64, s: &crate::stats::Second) -> Self {
        let known = s.hits + s.misses;
        Self {
            t,
            responses: s.responses,
            failures: s.failures,
            hit_ratio: (known > 0).then(|| s.hits as f64 / known as f64),
            mean_ms: (s.responses > 0).then(|| s.latency_sum_us as f64 / s.responses as f64 / 1e3),
            max_ms: (s.responses > 0).then(|| s.latency_max_us as f64 / 1e3),
        }
    }
}

/// One phase in the report.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    /// Left out of the totals.
    pub warmup: bool,
    /// Target rate at the start and end of the phase; `null` for closed loop.
    pub rate: Option<[f64; 2]>,
    #[serde(flatten)]
    pub summary: Summary,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was requested, e.g. `http://127.0.0.1:8080/k/{0..9999}`.
    pub target: String,
    /// Number of distinct target URLs.
    pub targets: usize,
    /// `round-robin`, `uniform` or `zipf`.
    pub distribution: String,
    pub zipf: Option<f64>,
    pub seed: u64,
    pub method: String,
    /// `1.1` or `2`.
    pub http: String,
    pub connections: usize,
    /// Concurrent requests per connection (HTTP/2 streams; 1 for HTTP/1.1).
    pub streams: usize,
    /// `closed` (every connection sends as fast as answers come) or `rate`.
    pub mode: String,
    pub timeout_s: f64,
    /// Totals over the phases that are not warm-up.
    #[serde(flatten)]
    pub totals: Summary,
    pub phases: Vec<PhaseReport>,
    pub purges: Vec<PurgeResult>,
    /// Second by second: how a purge or a ramp plays out within a phase.
    pub timeline: Vec<SecondReport>,
    /// The run was cut short by Ctrl-C (SIGINT); the figures cover it until then.
    pub interrupted: bool,
    /// What the exit status says: the run completed with at least one response (and, with
    /// `--fail-on-errors`, without errors).
    pub ok: bool,
}

/// Milliseconds with three decimals.
fn ms(v: f64) -> String {
    format!("{v:.3}")
}

fn bytes_human(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

fn errors_line(e: &Errors) -> String {
    if e.total == 0 {
        return "none".into();
    }
    format!(
        "{} (connect {}, timeout {}, reset {}, protocol {}, 4xx {}, 5xx {})",
        e.total, e.connect, e.timeout, e.reset, e.protocol, e.status_4xx, e.status_5xx
    )
}

fn latency_line(l: Option<&Latency>) -> String {
    match l {
        None => "no responses".into(),
        Some(l) => format!(
            "min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {} ms (mean {}, stdev {})",
            ms(l.min),
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p99_9),
            ms(l.max),
            ms(l.mean),
            ms(l.stdev)
        ),
    }
}

fn cache_line(c: &Cache) -> String {
    match c.hit_ratio {
        None => format!("no Cache-Status or X-Cache in {} responses", c.unknown),
        Some(r) => format!(
            "hit ratio {:.2}% (hits {}, misses {}, no cache header {})",
            r * 100.0,
            c.hits,
            c.misses,
            c.unknown
        ),
    }
}

impl Report {
    /// The text report, one `label  value` line per figure.
    pub fn text(&self) -> String {
        let t = &self.totals;
        let mut out = String::new();
        let distribution = match self.zipf {
            Some(s) => format!("zipf s={s}, seed {}", self.seed),
            None if self.distribution == "uniform" => format!("uniform, seed {}", self.seed),
            None => self.distribution.clone(),
        };
        let streams = if self.streams > 1 { format!(" x {} streams", self.streams) } else { String::new() };
        let urls = if self.targets == 1 { "1 URL".to_owned() } else { format!("{} URLs", self.targets) };
        let _ = writeln!(out, "target      {} {} ({urls}, {distribution})", self.method, self.target);
        let _ = writeln!(
            out,
            "load        {} connections{streams}, HTTP/{}, {} mode, timeout {}s",
            self.connections, self.http, self.mode, self.timeout_s
        );
        let _ = writeln!(
            out,
            "requests    {} in {:.2}s: {} responses, {:.1} req/s, {}/s read",
            t.requests,
            t.duration_s,
            t.responses,
            t.rps,
            bytes_human(t.bytes_per_s)
        );
        if self.interrupted {
            let _ = writeln!(out, "interrupted by Ctrl-C: the figures cover the run until then");
        }
        let _ = writeln!(out, "errors      {}", errors_line(&t.errors));
        let _ = writeln!(out, "latency     {}", latency_line(t.latency_ms.as_ref()));
        if let Some(s) = &t.service_time_ms {
            let _ = writeln!(out, "service     {} (from actual send)", latency_line(Some(s)));
        }
        let status: Vec<String> = t.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            out,
            "status      {}",
            if status.is_empty() { "none".into() } else { status.join(", ") }
        );
        let _ = writeln!(out, "cache       {}", cache_line(&t.cache));
        if t.unsent > 0 {
            let _ = writeln!(
                out,
                "unsent      {} scheduled requests never sent: the target fell behind the rate",
                t.unsent
            );
        }
        if self.phases.len() > 1 {
            let _ = writeln!(out, "phases");
            let _ = writeln!(
                out,
                "  {:<16} {:>9} {:>10} {:>8} {:>10} {:>10} {:>8}",
                "name", "requests", "req/s", "hit%", "p50 ms", "p99 ms", "errors"
            );
            for p in &self.phases {
                let s = &p.summary;
                let hit = s.cache.hit_ratio.map_or("-".into(), |r| format!("{:.1}", r * 100.0));
                let (p50, p99) =
                    s.latency_ms.as_ref().map_or(("-".into(), "-".into()), |l| (ms(l.p50), ms(l.p99)));
                let name = if p.warmup { format!("{} (warm-up)", p.name) } else { p.name.clone() };
                let _ = writeln!(
                    out,
                    "  {name:<16} {:>9} {:>10.1} {hit:>8} {p50:>10} {p99:>10} {:>8}",
                    s.requests, s.rps, s.errors.total
                );
            }
        }
        for p in &self.purges {
            let outcome = match (&p.status, &p.error) {
                (Some(code), _) => format!("{code} {}", p.response.as_deref().unwrap_or("")),
                (None, Some(e)) => format!("failed: {e}"),
                (None, None) => "no answer".into(),
            };
            let _ = writeln!(
                out,
                "purge       at {:.2}s (phase {:?}): {} in {:.1} ms",
                p.at_s,
                p.phase,
                outcome.trim(),
                p.took_ms
            );
        }
        out
    }
}
