//! The dashboard's memory: every [`SAMPLE`] the control plane notes each edge's counters from
//! its last heartbeat, and keeps the last hour. Rates (requests, bytes, errors per second) and
//! the hit ratio of each interval are differences between neighbouring samples, per edge and
//! summed for the fleet. Bounded: [`KEEP`] samples of at most [`MAX_EDGES`] edges. The
//! sampling task is in `sampler.rs`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// How often the counters are sampled.
pub(crate) const SAMPLE: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
const KEEP: usize = 720;
/// Edges kept per sample; a larger fleet shows its first edges by id (the fleet line counts all).
pub(crate) const MAX_EDGES: usize = 64;

/// Counters of one edge at one sample.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counters {
    pub requests: u64,
    pub hits: u64,
    pub served_bytes: u64,
    pub server_errors: u64,
}

/// One sample: seconds since the epoch, then each edge's counters.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub at: u64,
    pub edges: Vec<(String, Counters)>,
    /// The whole fleet's counters (every edge, also beyond [`MAX_EDGES`]).
    pub fleet: Counters,
}

/// The last hour of samples.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

/// One interval's values of a series.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Point {
    pub at: u64,
    pub request_rate: f64,
    pub hit_ratio: Option<f64>,
    pub bandwidth: f64,
    pub error_rate: Option<f64>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond an hour.
    pub(crate) fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        samples.push_back(sample);
        while samples.len() > KEEP {
            samples.pop_front();
        }
    }

    /// Points per edge (ids in order) and for the fleet (id `""`).
    pub(crate) fn series(&self) -> Vec<(String, Vec<Point>)> {
        let samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ids: Vec<String> =
            samples.iter().flat_map(|s| s.edges.iter().map(|(id, _)| id.clone())).collect();
        ids.sort();
        ids.dedup();
        let mut out: Vec<(String, Vec<Point>)> = vec![(String::new(), Vec::new())];
        out.extend(ids.into_iter().map(|id| (id, Vec::new())));
        for pair in samples.iter().collect::<Vec<_>>().windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let secs = b.at.saturating_sub(a.at).max(1) as f64;
            out[0].1.push(point(b.at, &a.fleet, &b.fleet, secs));
            for (id, points) in out.iter_mut().skip(1) {
                let find = |s: &Sample| s.edges.iter().find(|(i, _)| i == id).map(|(_, c)| c.clone());
                if let (Some(x), Some(y)) = (find(a), find(b)) {
                    points.push(point(b.at, &x, &y, secs));
                }
            }
        }
        out
    }
}

/// The values of the interval from `a` to `b`; a counter that went down (the edge restarted)
/// counts from zero.
fn point(at: u64, a: &Counters, b: &Counters, secs: f64) -> Point {
    let d = |x: u64, y: u64| if y >= x { y - x } else { y };
    let requests = d(a.requests, b.requests);
    let hits = d(a.hits, b.hits).min(requests);
    let errors = d(a.server_errors, b.server_errors).min(requests);
    Point {
        at,
        request_rate: requests as f64 / secs,
        hit_ratio: (requests > 0).then(|| hits as f64 / requests as f64),
        bandwidth: d(a.served_bytes, b.served_bytes) as f64 / secs,
        error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
    }
}
