//! What servers tell operators: the edge's access log settings (`[edge] access_log`,
//! `access_log_format`), and the Prometheus text every server shares (`process_*` series and
//! `stratus_build_info`), so the edge, the control plane and the origin render them alike.

use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the access log goes: `"-"` (stdout, the default), `"off"`, or a file path that is
/// appended to and reopened on SIGUSR1 (for logrotate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// No access log.
    Off,
    /// One line per request on stdout.
    #[default]
    Stdout,
    /// One line per request appended to this file.
    File(PathBuf),
}

impl FromStr for AccessLogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("empty; use \"off\", \"-\" (stdout) or a file path".to_owned()),
            "off" => Ok(Self::Off),
            "-" => Ok(Self::Stdout),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for AccessLogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Stdout => f.write_str("-"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Serialize for AccessLogTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AccessLogTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The access log's line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line (the fields are listed in `docs/edge.md`).
    #[default]
    Json,
    /// The Apache/nginx "combined" format, for tools that already read it.
    Combined,
}

impl FromStr for AccessLogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "combined" => Ok(Self::Combined),
            other => Err(format!("unknown access log format {other:?} (json or combined)")),
        }
    }
}

/// Appends `stratus_build_info` and the `process_*` series of the Prometheus conventions
/// (resident memory, CPU seconds, open descriptors, start time) for this process, read from
/// `/proc`. Where `/proc` is missing only the build info is written.
pub fn render_process_metrics(out: &mut String, component: &str) {
    let _ = writeln!(out, "# HELP stratus_build_info Stratus version of this process (always 1).");
    let _ = writeln!(out, "# TYPE stratus_build_info gauge");
    let _ = writeln!(
        out,
        "stratus_build_info{{version=\"{}\",component=\"{component}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let Some(p) = ProcStat::read() else { return };
    let mut series = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    series("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", p.cpu);
    series("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.rss);
    series("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p.vsize);
    series(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start,
    );
    if let Some(fds) = p.fds {
        series("process_open_fds", "gauge", "Number of open file descriptors.", fds);
    }
    if let Some(max) = p.max_fds {
        series("process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
    }
}

/// The few numbers of `/proc/self/stat` and friends that Prometheus clients export.
struct ProcStat {
    cpu: f64,
    rss: f64,
    vsize: f64,
    start: f64,
    fds: Option<f64>,
    max_fds: Option<f64>,
}

impl ProcStat {
    fn read() -> Option<Self> {
        // Linux reports times in clock ticks; USER_HZ is 100 on every architecture Linux
        // exposes to user space through /proc (the kernel converts), and pages are 4 KiB on
        // the x86_64 and aarch64 machines Stratus runs on.
        const TICKS: f64 = 100.0;
        const PAGE: f64 = 4096.0;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        // `rest` starts at field 3 (state): utime is field 14 → index 11.
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        let (utime, stime, starttime, vsize, rss) = (num(11)?, num(12)?, num(19)?, num(20)?, num(21)?);
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok())
        })?;
        let fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64);
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_ascii_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
        Some(Self {
            cpu: (utime + stime) / TICKS,
            rss: rss * PAGE,
            vsize,
            start: boot + starttime / TICKS,
            fds,
            max_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("off".parse(), Ok(AccessLogTarget::Off));
        assert_eq!("-".parse(), Ok(AccessLogTarget::Stdout));
        assert_eq!("/var/log/a.log".parse(), Ok(AccessLogTarget::File("/var/log/a.log".into())));
        assert!("".parse::<AccessLogTarget>().is_err());
        assert_eq!("combined".parse(), Ok(AccessLogFormat::Combined));
        assert!("clf".parse::<AccessLogFormat>().is_err());
    }

    #[test]
    fn process_metrics_are_prometheus_text() {
        let mut out = String::new();
        render_process_metrics(&mut out, "test");
        assert!(out.contains("stratus_build_info{version=\""), "{out}");
        if cfg!(target_os = "linux") {
            for name in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds "]
            {
                assert!(out.contains(name), "{name} missing:\n{out}");
            }
        }
    }
}

/// Bucket bounds, in seconds, of the durations the control plane and the origin count.
pub static DURATION_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

// A latency histogram with fixed buckets, recorded with two atomic adds and read at scrape
// time, shared by the edge, the control plane and the origin. `metrics-exporter-prometheus`
// keeps every histogram sample in memory until an upkeep task drains them into buckets; the
// drain ran on the edge's request thread and stalled the requests queued behind it. Counting
// straight into the buckets costs less per request and needs no upkeep (issue #23,
// `docs/performance.md`).

/// Observations counted in buckets by upper bound (seconds), as Prometheus' `le`.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, then the `+Inf` bucket; not cumulative (summed when rendered).
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds, ascending.
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.is_sorted(), "bucket bounds ascend");
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // The first bound at or above the value: Prometheus buckets count `value <= le`.
        let slot = self.bounds.partition_point(|b| *b < secs);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Appends the family in Prometheus text format: `_bucket` lines (cumulative), `_sum` in
    /// seconds and `_count`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut total = 0;
        for (i, count) in self.counts.iter().enumerate() {
            total += count.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {total}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
                }
            }
        }
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    fn rendered(h: &Histogram) -> Vec<String> {
        let mut out = String::new();
        h.render(&mut out, "t", "help");
        out.lines().map(str::to_owned).collect()
    }

    #[test]
    fn buckets_are_cumulative_and_count_values_at_their_bound() {
        static BOUNDS: [f64; 3] = [0.001, 0.01, 1.0];
        let h = Histogram::new(&BOUNDS);
        for ms in [0, 1, 5, 10, 999, 5000] {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(
            rendered(&h),
            [
                "# HELP t help",
                "# TYPE t histogram",
                "t_bucket{le=\"0.001\"} 2",
                "t_bucket{le=\"0.01\"} 4",
                "t_bucket{le=\"1\"} 5",
                "t_bucket{le=\"+Inf\"} 6",
                "t_sum 6.015",
                "t_count 6",
            ]
        );
    }

    #[test]
    fn an_empty_histogram_renders_zeros() {
        static BOUNDS: [f64; 1] = [0.5];
        let lines = rendered(&Histogram::new(&BOUNDS));
        assert_eq!(lines[2..], ["t_bucket{le=\"0.5\"} 0", "t_bucket{le=\"+Inf\"} 0", "t_sum 0", "t_count 0"]);
    }
}
