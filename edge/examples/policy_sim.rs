//! Hit ratios of eviction policies on synthetic request traces, at equal object counts: the
//! memory tier's `quick_cache` (CLOCK-Pro with ghosts) in its shipped settings and in the
//! settings that suit a static Zipf workload best, a W-TinyLFU cache (a window, a segmented
//! LRU main space and a count-min sketch deciding admission) with the usual short sketch
//! memory and with a long one, and a perfect frequency cache (the most popular keys, known in
//! advance) where the trace has a fixed popularity.
//!
//! It answers one question of issue #23 (`docs/performance.md`, "Hit ratio at equal memory"):
//! whether a policy tuned to the bench's static Zipf(1.0) trace pays for it on traces whose
//! popularity moves or that carry one-hit wonders, as a CDN's do.
//!
//! `cargo run --release -p stratus-edge --example policy_sim` (a few seconds).

use std::collections::HashMap;

use quick_cache::unsync::Cache;
use quick_cache::{DefaultHashBuilder, OptionsBuilder, UnitWeighter};

/// Keys of the Zipf(1.0) popularity, as in `bench/run.py`'s Zipf row.
const KEYS: usize = 100_000;
/// Requests per trace; the first third warms the cache and is not counted.
const REQUESTS: usize = 3_000_000;

/// xorshift64: a fixed, seedable stream of uniform numbers in [0, 1).
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The n-th harmonic number.
fn harmonic(n: usize) -> f64 {
    (1..=n).map(|i| 1.0 / i as f64).sum()
}

/// Zipf(1.0) ranks over [`KEYS`], each rank scrambled into a key so that no structure of the
/// policy's hashing lines up with popularity.
fn zipf(seed: u64) -> Vec<u32> {
    let total = harmonic(KEYS);
    let mut sum = 0.0;
    let cdf: Vec<f64> = (1..=KEYS)
        .map(|i| {
            sum += 1.0 / i as f64;
            sum / total
        })
        .collect();
    let mut u = Uniform(seed);
    (0..REQUESTS)
        .map(|_| {
            let draw = u.next();
            let rank = cdf.partition_point(|&c| c < draw).min(KEYS - 1);
            u32::try_from(rank).unwrap_or(u32::MAX).wrapping_mul(2_654_435_761) & 0x3fff_ffff
        })
        .collect()
}

/// `base` with a new set of popular keys every `every` requests (the same popularity,
/// moved to other keys), and `one_hit` of the requests going to keys never asked for again.
fn moving(base: &[u32], every: usize, one_hit: f64, seed: u64) -> Vec<u32> {
    let mut u = Uniform(seed);
    let mut unique = 1u32 << 31;
    base.iter()
        .enumerate()
        .map(|(i, &key)| {
            if u.next() < one_hit {
                unique += 1;
                return unique;
            }
            let epoch = u32::try_from(i / every).unwrap_or(u32::MAX);
            key ^ (epoch.wrapping_mul(0x9E37_79B1) & 0x3fff_ffff)
        })
        .collect()
}

/// The share of the counted requests that hit, given `lookup` (true on a hit; a miss stores).
fn ratio(trace: &[u32], mut lookup: impl FnMut(u32) -> bool) -> f64 {
    let warm = trace.len() / 3;
    let hits = trace.iter().enumerate().filter(|&(i, &k)| lookup(k) && i >= warm).count();
    hits as f64 / (trace.len() - warm) as f64
}

fn quick(trace: &[u32], objects: usize, hot: f64, ghosts: f64) -> f64 {
    let options = OptionsBuilder::new()
        .estimated_items_capacity(objects)
        .weight_capacity(objects as u64)
        .hot_allocation(hot)
        .ghost_allocation(ghosts)
        .build()
        .expect("every option is set");
    let mut cache: Cache<u32, (), UnitWeighter, DefaultHashBuilder> =
        Cache::with_options(options, UnitWeighter, DefaultHashBuilder::default(), Default::default());
    ratio(trace, |k| {
        let hit = cache.get(&k).is_some();
        if !hit {
            cache.insert(k, ());
        }
        hit
    })
}

/// A count-min sketch of four rows with saturating 8-bit counters, halved every `period`
/// additions: how often each key was asked for lately.
struct Sketch {
    rows: [Vec<u8>; 4],
    mask: usize,
    added: usize,
    period: usize,
}

impl Sketch {
    fn new(objects: usize, period: usize) -> Self {
        let width = (objects * 4).next_power_of_two();
        Self { rows: std::array::from_fn(|_| vec![0; width]), mask: width - 1, added: 0, period }
    }

    fn slot(&self, key: u32, row: usize) -> usize {
        let mut x = u64::from(key).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ (row as u64 + 1));
        x ^= x >> 31;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 29;
        usize::try_from(x).unwrap_or(usize::MAX) & self.mask
    }

    fn add(&mut self, key: u32) {
        for row in 0..4 {
            let i = self.slot(key, row);
            self.rows[row][i] = self.rows[row][i].saturating_add(1);
        }
        self.added += 1;
        if self.added >= self.period {
            self.added /= 2;
            for counter in self.rows.iter_mut().flatten() {
                *counter /= 2;
            }
        }
    }

    fn estimate(&self, key: u32) -> u8 {
        (0..4).map(|row| self.rows[row][self.slot(key, row)]).min().unwrap_or(0)
    }
}

/// The three LRU lists of a W-TinyLFU cache over one slab of nodes; each list is circular,
/// `head` its most recently used node.
struct Lists {
    prev: Vec<usize>,
    next: Vec<usize>,
    list: Vec<usize>,
    key: Vec<u32>,
    head: [Option<usize>; 3],
    len: [usize; 3],
    free: Vec<usize>,
}

const WINDOW: usize = 0;
const PROBATION: usize = 1;
const PROTECTED: usize = 2;

impl Lists {
    fn new(objects: usize) -> Self {
        let n = objects + 1;
        Self {
            prev: vec![0; n],
            next: vec![0; n],
            list: vec![0; n],
            key: vec![0; n],
            head: [None; 3],
            len: [0; 3],
            free: (0..n).collect(),
        }
    }

    fn push(&mut self, list: usize, node: usize) {
        self.list[node] = list;
        match self.head[list] {
            None => (self.prev[node], self.next[node]) = (node, node),
            Some(head) => {
                let tail = self.prev[head];
                (self.next[tail], self.prev[node], self.next[node], self.prev[head]) =
                    (node, tail, head, node);
            }
        }
        self.head[list] = Some(node);
        self.len[list] += 1;
    }

    fn unlink(&mut self, node: usize) {
        let list = self.list[node];
        if self.next[node] == node {
            self.head[list] = None;
        } else {
            let (p, n) = (self.prev[node], self.next[node]);
            (self.next[p], self.prev[n]) = (n, p);
            if self.head[list] == Some(node) {
                self.head[list] = Some(n);
            }
        }
        self.len[list] -= 1;
    }

    fn least_recent(&self, list: usize) -> Option<usize> {
        self.head[list].map(|h| self.prev[h])
    }
}

/// W-TinyLFU: 1 % window, 80 % of the main space protected, a newcomer leaving the window
/// admitted only if the sketch has seen it more often than the probation list's victim; the
/// sketch halves every `period` requests.
fn tiny_lfu(trace: &[u32], objects: usize, period: usize) -> f64 {
    let window = (objects / 100).max(1);
    let main = objects - window;
    let protected = main * 8 / 10;
    let mut sketch = Sketch::new(objects, period);
    let mut lists = Lists::new(objects + 1);
    let mut nodes: HashMap<u32, usize> = HashMap::new();
    ratio(trace, |k| {
        sketch.add(k);
        if let Some(&node) = nodes.get(&k) {
            let list = lists.list[node];
            lists.unlink(node);
            if list == PROBATION {
                lists.push(PROTECTED, node);
                if lists.len[PROTECTED] > protected
                    && let Some(demoted) = lists.least_recent(PROTECTED)
                {
                    lists.unlink(demoted);
                    lists.push(PROBATION, demoted);
                }
            } else {
                lists.push(list, node);
            }
            return true;
        }
        let Some(node) = lists.free.pop() else { return false };
        lists.key[node] = k;
        nodes.insert(k, node);
        lists.push(WINDOW, node);
        if lists.len[WINDOW] <= window {
            return false;
        }
        let Some(candidate) = lists.least_recent(WINDOW) else { return false };
        lists.unlink(candidate);
        if lists.len[PROBATION] + lists.len[PROTECTED] < main {
            lists.push(PROBATION, candidate);
            return false;
        }
        let victim = lists.least_recent(PROBATION).or_else(|| lists.least_recent(PROTECTED));
        let loser = match victim {
            Some(v) if sketch.estimate(lists.key[candidate]) > sketch.estimate(lists.key[v]) => {
                lists.unlink(v);
                lists.push(PROBATION, candidate);
                v
            }
            _ => candidate,
        };
        nodes.remove(&lists.key[loser]);
        lists.free.push(loser);
        false
    })
}

fn main() {
    let base = zipf(0x0123_4567);
    let traces = [
        ("static Zipf(1.0)", base.clone()),
        ("popular keys move every 300k requests", moving(&base, 300_000, 0.0, 7)),
        ("30 % one-hit wonders", moving(&base, usize::MAX, 0.3, 7)),
        ("both", moving(&base, 300_000, 0.3, 7)),
    ];
    println!(
        "| trace | objects | quick_cache 0.97 hot, 0.5 ghosts (shipped) | 0.99 hot, 0.15 ghosts | W-TinyLFU, sketch halved every 10 × objects | every 100 × | perfect |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, trace) in &traces {
        for objects in [9_100, 11_000, 30_000] {
            let perfect = if name.starts_with("static") {
                format!("{:.3}", harmonic(objects) / harmonic(KEYS))
            } else {
                "–".to_owned()
            };
            println!(
                "| {name} | {objects} | {:.3} | {:.3} | {:.3} | {:.3} | {perfect} |",
                quick(trace, objects, 0.97, 0.5),
                quick(trace, objects, 0.99, 0.15),
                tiny_lfu(trace, objects, 10 * objects),
                tiny_lfu(trace, objects, 100 * objects),
            );
        }
    }
}
