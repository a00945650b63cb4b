//! Stratus loadtest: a load generator as fast as wrk, as honest as wrk2, built for caches.
//!
//! `stratus loadtest` opens `-c` raw hyper connections (HTTP/1.1 keep-alive, or HTTP/2 with h2c
//! prior knowledge or TLS/ALPN) to one origin and drives them either in a **closed loop** (each
//! connection sends its next request as soon as the previous answer is in) or at a **constant
//! rate** (`--rate`), where every request has an intended send time and latency is measured
//! from it, so a server stall shows up in the percentiles instead of silently slowing the
//! generator down (coordinated omission, as wrk2 corrects it).
//!
//! ```text
//! stratus loadtest -c 64 -d 30s http://127.0.0.1:8080/img/logo.png
//! stratus loadtest --base http://127.0.0.1:8080/k --keys 100000 --zipf 1.0 --rate 5000 -d 1m
//! stratus loadtest --scenario config/examples/loadtest.toml --json
//! ```
//!
//! Design choices, where the issue left room (user-facing details in `docs/loadtest.md`):
//! - **Never the bottleneck.** One task per connection polls the connection and its worker
//!   together; requests are precomputed (`Uri`s built once, bodies are refcounted `Bytes`);
//!   each worker owns its histograms and counters, merged once at the end; per request the
//!   only atomics are relaxed adds on counters its own connection owns (progress, wire bytes)
//!   and, for closed-loop `-n`, one shared ticket counter. Timeouts use one watchdog timer per
//!   worker rather than a timer per request.
//! - **Exact counts.** `-n N` sends exactly N requests: closed loop takes tickets from one
//!   counter; rate mode deals request `k` to worker `k mod W` of a fixed schedule.
//! - **Warm-up** runs the same load first (connections stay open) and is left out of totals.
//! - **Hit ratio** counts a response as a hit when any `Cache-Status` member carries `hit`
//!   (else when `X-Cache` starts with `HIT`); responses without either are not in the ratio.
//! - **Ctrl-C** ends the run early and still prints the report, as oha does.
//! - **Exit status** follows wrk and oha: errors are reported, not fatal; the run fails only
//!   when nothing answered, or with `--fail-on-errors` when any request failed.

mod args;
mod connect;
mod error;
mod plan;
mod purge;
mod report;
mod run;
mod schedule;
mod stats;
mod targets;
mod worker;

pub use args::LoadtestArgs;
pub use error::Error;
pub use purge::PurgeResult;
pub use report::{Cache, Errors, Latency, PhaseReport, Report, SecondReport, Summary};
use stratus_config::Secret;

/// Runs the load test and prints its report on stdout (text, or JSON with `--json`).
///
/// `token` is the control plane's bearer token for a scenario's purge steps. Returns
/// `Ok(false)` when the run should exit non-zero: no response arrived at all, or
/// `--fail-on-errors` was given and some request failed.
pub async fn run(args: LoadtestArgs, token: Option<Secret>) -> Result<bool, Error> {
    let plan = plan::Plan::from_args(&args)?;
    let json = plan.json;
    let report = run::execute(plan, token).await?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", report.text());
    }
    Ok(report.ok)
}
