//! The constant-rate (and linear-ramp) send schedule, as in wrk2.
//!
//! A phase of length `T` whose rate goes linearly from `r0` to `r1` has scheduled
//! `N(t) = r0·t + (r1 − r0)·t²/(2T)` requests by time `t`; request `k` (0-based) is intended to
//! leave at `N⁻¹(k)`. The requests are dealt round-robin to the workers — worker `w` of `W` sends
//! `k = w, w + W, w + 2W, …` — so the schedule is global, exact and needs no shared state.
//! Latency is measured from the intended time: a request that leaves late because the server
//! stalled carries the wait it would have had in an open system (coordinated omission).

use std::time::Duration;

/// The rate curve of one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Schedule {
    /// Rate at the start, requests per second.
    pub from: f64,
    /// Rate at the end, requests per second.
    pub to: f64,
    /// Length of the phase; `None` for a phase bounded by a request count.
    pub length: Option<Duration>,
}

impl Schedule {
    /// A constant rate.
    pub fn constant(rate: f64, length: Option<Duration>) -> Self {
        Self { from: rate, to: rate, length }
    }

    /// Offset from the phase start at which request `k` is intended to leave.
    pub fn offset(&self, k: u64) -> Duration {
        let k = k as f64;
        let accel = match self.length {
            Some(len) if len.as_secs_f64() > 0.0 => (self.to - self.from) / len.as_secs_f64(),
            _ => 0.0,
        };
        // Solves from·t + accel·t²/2 = k in the form that stays exact when accel is 0.
        let root = (self.from * self.from + 2.0 * accel * k).max(0.0).sqrt();
        let t = 2.0 * k / (self.from + root);
        Duration::from_secs_f64(t.max(0.0))
    }

    /// How many requests the phase schedules in all: those intended before its end.
    pub fn total(&self) -> Option<u64> {
        let len = self.length?.as_secs_f64();
        let n = self.from * len + (self.to - self.from) * len / 2.0;
        Some(n.ceil().max(0.0) as u64)
    }
}

/// How many of `total` requests, dealt round-robin to `workers`, fall to `worker`.
pub(crate) fn share(total: u64, workers: u64, worker: u64) -> u64 {
    if worker >= total { 0 } else { (total - 1 - worker) / workers + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_offsets() {
        let s = Schedule::constant(200.0, Some(Duration::from_secs(3)));
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(200), Duration::from_secs(1));
        assert_eq!(s.total(), Some(600));
    }

    #[test]
    fn ramp_reaches_its_count_at_the_end() {
        let s = Schedule { from: 100.0, to: 300.0, length: Some(Duration::from_secs(10)) };
        // 100·10 + 200·10/2 = 2000 requests; the last one leaves just before the end.
        assert_eq!(s.total(), Some(2000));
        let end = s.offset(2000).as_secs_f64();
        assert!((end - 10.0).abs() < 1e-9, "{end}");
        // Halfway in time the rate is 200/s and 100·5 + 100·5/2 = 750 were scheduled.
        assert!((s.offset(750).as_secs_f64() - 5.0).abs() < 1e-9);
        let down = Schedule { from: 300.0, to: 100.0, length: Some(Duration::from_secs(10)) };
        assert!((down.offset(2000).as_secs_f64() - 10.0).abs() < 1e-6);
    }

    #[test]
    fn shares_add_up() {
        for (total, workers) in [(10, 3), (2, 5), (0, 4), (600, 2)] {
            let sum: u64 = (0..workers).map(|w| share(total, workers, w)).sum();
            assert_eq!(sum, total, "{total} over {workers}");
        }
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
    }
}
