//! Origin health: passive checks (consecutive failed requests take an origin down for
//! `fail_timeout`) and active checks (a probe task per origin `GET`s the site's health path
//! every `interval`; `unhealthy_threshold` failed probes in a row take it down,
//! `healthy_threshold` passed ones bring it back).
//!
//! An origin is used when both kinds agree it is up. Origins start up, so a fresh edge serves
//! at once. After `fail_timeout` a passively downed origin gets requests again; the first one
//! that fails takes it down again at once, the first one that succeeds clears the count.
//!
//! Probe tasks are owned by the site's upstream: they hold only a `Weak` reference to their
//! origin and a token that is cancelled when the upstream is dropped (a configuration reload
//! builds new upstreams) or when the edge shuts down.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use stratus_config::edge::Health;

/// Milliseconds are counted from here, so a deadline fits an atomic.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The health of one origin.
#[derive(Debug)]
pub(crate) struct OriginHealth {
    /// The verdict of active checks (true when there are none).
    probe_up: AtomicBool,
    /// Consecutive failed requests.
    fails: AtomicU32,
    /// Passively down until this many ms after [`EPOCH`]; 0 when up.
    down_until: AtomicU64,
}

impl Default for OriginHealth {
    fn default() -> Self {
        Self { probe_up: AtomicBool::new(true), fails: AtomicU32::new(0), down_until: AtomicU64::new(0) }
    }
}

impl OriginHealth {
    /// Whether requests should go to this origin now.
    pub(crate) fn is_up(&self) -> bool {
        self.probe_up.load(Ordering::Relaxed) && self.down_until.load(Ordering::Relaxed) <= now_ms()
    }

    /// A request got a response head from the origin.
    pub(crate) fn success(&self, origin: &str) {
        if self.fails.load(Ordering::Relaxed) != 0 {
            self.fails.store(0, Ordering::Relaxed);
        }
        if self.down_until.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(origin, "origin answers again");
        }
    }

    /// A request failed on the origin's side; may take it down.
    pub(crate) fn failure(&self, origin: &str, cfg: &Health) {
        if cfg.max_fails == 0 {
            return;
        }
        let n = self.fails.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n >= cfg.max_fails {
            let until =
                now_ms().saturating_add(u64::try_from(cfg.fail_timeout.get().as_millis()).unwrap_or(0));
            let was = self.down_until.swap(until, Ordering::Relaxed);
            if was <= now_ms() {
                tracing::warn!(origin, failures = n, cool_down = ?cfg.fail_timeout.get(), "origin marked down");
            }
        }
    }

    /// Records one probe result; returns the new verdict when it changed.
    pub(crate) fn probed(&self, passed: bool, streak: &mut (u32, u32), cfg: &Health) -> Option<bool> {
        let (passes, failures) = streak;
        if passed {
            *passes = passes.saturating_add(1);
            *failures = 0;
        } else {
            *failures = failures.saturating_add(1);
            *passes = 0;
        }
        let up = self.probe_up.load(Ordering::Relaxed);
        let verdict = if up && *failures >= cfg.unhealthy_threshold {
            false
        } else if !up && *passes >= cfg.healthy_threshold {
            true
        } else {
            return None;
        };
        self.probe_up.store(verdict, Ordering::Relaxed);
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use stratus_config::edge::Health;

    use super::*;

    #[test]
    fn probe_thresholds() {
        let cfg = Health { healthy_threshold: 2, unhealthy_threshold: 3, ..Health::default() };
        // (probe results, verdict changes seen)
        let cases: [(&[bool], &[Option<bool>]); 3] = [
            (&[false, false, false], &[None, None, Some(false)]),
            (&[false, false, true, false, false], &[None, None, None, None, None]),
            (
                &[false, false, false, true, false, true, true],
                &[None, None, Some(false), None, None, None, Some(true)],
            ),
        ];
        for (results, want) in cases {
            let h = OriginHealth::default();
            let mut streak = (0, 0);
            let got: Vec<_> = results.iter().map(|r| h.probed(*r, &mut streak, &cfg)).collect();
            assert_eq!(got, want, "{results:?}");
        }
    }

    #[test]
    fn passive_failures_take_an_origin_down_and_success_brings_it_back() {
        let cfg = Health {
            max_fails: 2,
            fail_timeout: stratus_config::edge::OriginTimeouts::default().total,
            ..Health::default()
        };
        let h = OriginHealth::default();
        h.failure("o", &cfg);
        assert!(h.is_up(), "one failure is not enough");
        h.failure("o", &cfg);
        assert!(!h.is_up(), "two consecutive failures take it down");
        h.success("o");
        assert!(h.is_up());
        let off = Health { max_fails: 0, ..cfg };
        for _ in 0..10 {
            h.failure("o", &off);
        }
        assert!(h.is_up(), "max_fails = 0 turns passive checks off");
    }
}
