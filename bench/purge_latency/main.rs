//! Purge latency: from the API call to "applied on every edge", p50/p99.
//!
//! ```sh
//! cargo bench -p stratus --bench purge_latency            # release build
//! PURGES=500 cargo bench -p stratus --bench purge_latency
//! LOG=nats cargo bench -p stratus --bench purge_latency     # only the NATS JetStream log
//! ```
//!
//! Every set-up runs once per log backend (`LOG=embedded`, `LOG=nats`, default both): the
//! embedded redb log, and a JetStream stream with three replicas on a three-node `nats-server`
//! cluster on 127.0.0.1 (`tests/support/nats.rs`; `nats-server` must be on `PATH`).
//!
//! Each purge is `POST /v1/purge?wait=5s`, timed by the client: the answer comes once every
//! live edge acked the entry, i.e. applied it to its cache (edges ack after applying). Purges
//! are sent one after another so each measures an idle system, not a queue. Three set-ups; the first
//! two share one control plane, the third gets its own:
//!
//! 1. **no subscribers**: only the durable commit of the entry (an fsync before the answer).
//! 2. **100 simulated subscribers**: real HTTP subscriptions that ack each entry as it arrives
//!    (`tests/support/control.rs`), so the number is the control plane's fan-out cost.
//! 3. **2 real edges**: `stratus edge` processes in front of the test origin, following the
//!    control plane; skipped (and said so) when the edge cannot start.
//!
//! It runs on the end-to-end tests' harness (`tests/support`).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::control::{Api, TOKEN, follower, start_control};
use support::origin::Origin;

fn main() {
    let purges: usize = std::env::var("PURGES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let which = std::env::var("LOG").unwrap_or_default();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        if which.is_empty() || which == "embedded" {
            simulated("embedded", "", 100, purges).await;
            real_edges("embedded", "", purges).await;
        }
        if which.is_empty() || which == "nats" {
            // A fresh cluster per set-up: the edge registry lives in the cluster, and the 100
            // simulated subscribers must not count as edges to wait for in the next set-up.
            let log = |c: &support::nats::Cluster| format!("log = {:?}\nlog_replicas = 3", c.urls());
            let cluster = support::nats::Cluster::start();
            simulated("nats R=3", &log(&cluster), 100, purges).await;
            drop(cluster);
            let cluster = support::nats::Cluster::start();
            real_edges("nats R=3", &log(&cluster), purges).await;
        }
    });
}

/// CPU time (user + system) the process `pid` has used so far, from `/proc` (Linux).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// Sends `n` purges one by one with `?wait` and prints the latency percentiles, and the CPU
/// time the control plane (`control_pid`) spent per purge.
async fn measure(api: &Api, control_pid: u32, label: &str, edges: usize, n: usize) {
    // Warm the connection and the code paths first.
    for _ in 0..5 {
        api.post("/v1/purge?wait=5s", json!({"files": ["/warmup"]})).await;
    }
    let mut samples = Vec::with_capacity(n);
    let mut incomplete = 0;
    let cpu_before = cpu_time(control_pid);
    for i in 0..n {
        let started = Instant::now();
        let (status, answer) =
            api.post("/v1/purge?wait=5s", json!({ "files": [format!("/bench/{i}")] })).await;
        let took = started.elapsed();
        let applied =
            answer["edges"].as_array().map_or(0, |e| e.iter().filter(|e| e["state"] == "applied").count());
        if status != 200 || applied != edges {
            incomplete += 1;
            continue;
        }
        samples.push(took);
    }
    let cpu = cpu_time(control_pid).zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
        samples.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{label}: {} purges, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, incomplete {incomplete}, \
         control cpu {:.2} ms/purge",
        samples.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
        cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e3 / n.max(1) as f64),
    );
}

async fn simulated(backend: &str, extra: &str, subscribers: usize, n: usize) {
    let dir = support::tempdir();
    let control = start_control(dir.path(), extra);
    let api = Api::new(&control);
    measure(&api, control.pid(), &format!("{backend}: no subscribers (durable commit only)"), 0, n).await;
    let mut followers = Vec::new();
    for i in 0..subscribers {
        followers.push(follower(&api, &format!("sim-{i}")).await);
    }
    let label = format!("{backend}: {subscribers} simulated subscribers");
    measure(&api, control.pid(), &label, subscribers, n).await;
    drop(followers);
}

async fn real_edges(backend: &str, extra: &str, n: usize) {
    let dir = support::tempdir();
    let control = start_control(dir.path(), extra);
    let api = Api::new(&control);
    // Every path is a small cacheable object.
    let origin = Origin::cacheable().await;
    let mut edges = Vec::new();
    for id in ["a", "b"] {
        let mut cmd = support::stratus();
        cmd.args(["edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin", &origin.url])
            .args(["--control", &api.base, "--id", id])
            .env("STRATUS_TOKEN", TOKEN);
        match start_edge(cmd) {
            Some(edge) => edges.push(edge),
            None => {
                println!("2 real edges: skipped, `stratus edge` does not start in this build");
                return;
            }
        }
    }
    api.until_following(2).await;
    measure(&api, control.pid(), &format!("{backend}: 2 real edges"), 2, n).await;
}

/// Starts an edge, or `None` when the binary cannot run one (the edge is not built yet).
fn start_edge(cmd: Command) -> Option<support::Proc> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || support::Proc::start(cmd, &["edge http"])))
        .ok()
}
