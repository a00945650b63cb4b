//! A latency histogram with fixed buckets, recorded with two atomic adds and read at scrape
//! time. `metrics-exporter-prometheus` keeps every histogram sample in memory until an upkeep
//! task drains them into buckets (8 bytes a request, with a block allocated every few dozen
//! samples); the drain ran on the request thread every 500 ms and stalled the requests queued
//! behind it, and a stalled upkeep let memory grow with the request rate. Counting straight
//! into the buckets costs less per request and needs no upkeep at all (issue #23,
//! `docs/performance.md`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
mod tests {
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
