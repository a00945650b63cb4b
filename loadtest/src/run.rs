//! The coordinator: opens the connections, starts the clock once they are ready, fires purge
//! steps, snapshots wire bytes at phase boundaries, shows progress on a terminal, and merges
//! the workers' results into the report when they are done.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stratus_config::Secret;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connect::Connector;
use crate::error::Error;
use crate::plan::{Length, Plan};
use crate::purge::{self, PurgeResult};
use crate::report::{PhaseReport, Report, SecondReport, Summary};
use crate::stats::{Seconds, Stats};
use crate::targets::Pick;
use crate::worker::{Progress, Shared, Worker, connection_task};

/// Runs the plan to the end and builds the report.
pub(crate) async fn execute(plan: Plan, token: Option<Secret>) -> Result<Report, Error> {
    let connector = Connector::new(&plan.targets.origin, plan.http2, plan.insecure).await?;
    let tickets = plan
        .phases
        .iter()
        .map(|p| AtomicU64::new(if let (Length::Count(n), None) = (p.length, p.rate) { n } else { 0 }))
        .collect();
    let shared = Arc::new(Shared { plan, connector, tickets, stop: AtomicBool::new(false) });
    let plan = &shared.plan;

    let (start_tx, start_rx) = watch::channel(None);
    let (ready_tx, mut ready_rx) = mpsc::channel(plan.connections);
    let mut tasks = JoinSet::new();
    let mut reads = Vec::with_capacity(plan.connections);
    let mut progress = Vec::with_capacity(plan.connections);
    for c in 0..plan.connections {
        let workers = (0..plan.streams)
            .map(|s| Worker::new(plan, c * plan.streams + s))
            .collect::<Result<Vec<_>, _>>()?;
        let read = Arc::new(AtomicU64::new(0));
        let prog = Arc::new(Progress::default());
        reads.push(read.clone());
        progress.push(prog.clone());
        tasks.spawn(connection_task(shared.clone(), workers, read, prog, ready_tx.clone(), start_rx.clone()));
    }
    drop(ready_tx);
    // Every connection has tried its first connect (or given up after the timeout).
    while ready_rx.recv().await.is_some() {}

    let read_total = move || reads.iter().map(|r| r.load(Ordering::Relaxed)).sum::<u64>();
    let t0 = Instant::now();
    let bytes_at_start = read_total();
    let _ = start_tx.send(Some(t0));
    let timeline = plan.timeline(t0);

    let mut purges = JoinSet::new();
    if let Some(control) = &plan.control {
        for (i, phase) in plan.phases.iter().enumerate() {
            let Some(step) = phase.purge.clone() else { continue };
            let (control, token, name) = (control.clone(), token.clone(), phase.name.clone());
            let (at, insecure, timeout) = (timeline[i].0, plan.insecure, plan.timeout);
            purges.spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                purge::issue(&control, token.as_ref(), &step, &name, t0, insecure, timeout).await
            });
        }
    }

    // Ctrl-C ends the run early, like oha: the report covers what was done until then.
    let interrupted = Arc::new(std::sync::OnceLock::new());
    let on_signal = {
        let (shared, interrupted) = (shared.clone(), interrupted.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = interrupted.set(Instant::now());
                tracing::info!("interrupted: finishing the requests in flight");
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let stop = CancellationToken::new();
    let names: Vec<String> = plan.phases.iter().map(|p| p.name.clone()).collect();
    let monitor = tokio::spawn(monitor(timeline.clone(), names, read_total, progress, stop.clone()));

    let mut workers = Vec::with_capacity(plan.workers());
    while let Some(done) = tasks.join_next().await {
        workers.extend(done.map_err(|e| Error::Internal(format!("a connection task failed: {e}")))?);
    }
    stop.cancel();
    on_signal.abort();
    let bytes_at = monitor.await.map_err(|e| Error::Internal(format!("the monitor failed: {e}")))?;
    let mut purge_results: Vec<PurgeResult> = purges.join_all().await;
    purge_results.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));

    let interrupted = interrupted.get().copied();
    Ok(build_report(plan, &workers, &timeline, interrupted, bytes_at_start, &bytes_at, purge_results))
}

/// Takes wire-byte snapshots at phase ends and draws the progress line; returns the snapshot
/// at each phase end (the last one taken when the run is over).
async fn monitor(
    timeline: Vec<(Instant, Option<Instant>)>,
    names: Vec<String>,
    read_total: impl Fn() -> u64,
    progress: Vec<Arc<Progress>>,
    stop: CancellationToken,
) -> Vec<u64> {
    let terminal = std::io::stderr().is_terminal();
    let mut snaps: Vec<Option<u64>> = vec![None; timeline.len()];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let t0 = timeline.first().map_or_else(Instant::now, |t| t.0);
    let (mut last_count, mut last_at) = (0u64, t0);
    loop {
        let next = snaps.iter().position(Option::is_none);
        let boundary = next.and_then(|i| timeline[i].1);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(boundary.unwrap_or(t0).into()), if boundary.is_some() => {
                if let Some(i) = next {
                    snaps[i] = Some(read_total());
                }
            }
            _ = tick.tick(), if terminal => {
                let now = Instant::now();
                let count: u64 = progress.iter().map(|p| p.responses.load(Ordering::Relaxed)).sum();
                let failed: u64 = progress.iter().map(|p| p.failures.load(Ordering::Relaxed)).sum();
                let phase = timeline.iter().rposition(|t| t.0 <= now).map_or("", |i| names[i].as_str());
                let dt = now.duration_since(last_at).as_secs_f64();
                let rate = if dt > 0.0 { (count - last_count) as f64 / dt } else { 0.0 };
                (last_count, last_at) = (count, now);
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{:>6.1}s  {phase}  {count} responses  {rate:.0} req/s  {failed} failed",
                    now.duration_since(t0).as_secs_f64()
                );
                let _ = err.flush();
            }
        }
    }
    if terminal {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
    let end = read_total();
    snaps.into_iter().map(|s| s.unwrap_or(end)).collect()
}

fn build_report(
    plan: &Plan,
    workers: &[Worker],
    timeline: &[(Instant, Option<Instant>)],
    interrupted: Option<Instant>,
    bytes_at_start: u64,
    bytes_at: &[u64],
    purges: Vec<PurgeResult>,
) -> Report {
    let mut totals = Stats::default();
    let (mut total_s, mut total_bytes) = (0.0, 0u64);
    let mut phases = Vec::with_capacity(plan.phases.len());
    for (i, phase) in plan.phases.iter().enumerate() {
        let mut stats = Stats::default();
        let mut last: Option<Instant> = None;
        for w in workers {
            stats.merge(&w.stats[i]);
            last = last.max(w.last[i]);
        }
        let (start, end) = timeline[i];
        // An interrupted phase ended at the interruption (phases after it never started).
        let end = match (end, interrupted) {
            (Some(end), Some(at)) => Some(end.min(at.max(start))),
            (end, _) => end,
        };
        // A timed phase lasts its length, or until its last answer if that came later.
        let until = match (end, last) {
            (Some(end), Some(last)) => end.max(last),
            (Some(end), None) => end,
            (None, Some(last)) => last,
            (None, None) => start,
        };
        let secs = until.saturating_duration_since(start).as_secs_f64();
        let before = if i == 0 { bytes_at_start } else { bytes_at[i - 1] };
        let bytes = bytes_at[i].saturating_sub(before);
        if !phase.warmup {
            totals.merge(&stats);
            total_s += secs;
            total_bytes += bytes;
        }
        phases.push(PhaseReport {
            name: phase.name.clone(),
            warmup: phase.warmup,
            rate: phase.rate.map(|r| [r.from, r.to]),
            summary: Summary::new(&stats, secs, bytes, phase.rate.is_some()),
        });
    }
    let mut seconds = Seconds::default();
    for w in workers {
        seconds.merge(&w.seconds);
    }
    let per_second = seconds.0.iter().enumerate().map(|(t, s)| SecondReport::new(t as u64, s)).collect();
    let rated = plan.phases.iter().filter(|p| !p.warmup && p.rate.is_some()).count();
    let measured = plan.phases.iter().filter(|p| !p.warmup).count();
    let mode = match rated {
        0 => "closed",
        n if n == measured => "rate",
        _ => "mixed",
    };
    let totals = Summary::new(&totals, total_s, total_bytes, rated > 0);
    let ok = totals.responses > 0 && !(plan.fail_on_errors && totals.errors.total > 0);
    let (distribution, zipf) = match plan.targets.pick {
        Pick::RoundRobin => ("round-robin", None),
        Pick::Uniform => ("uniform", None),
        Pick::Zipf(s) => ("zipf", Some(s)),
    };
    Report {
        target: plan.targets.label.clone(),
        targets: plan.targets.uris.len(),
        distribution: distribution.into(),
        zipf,
        seed: plan.seed,
        method: plan.method.to_string(),
        http: if plan.http2 { "2" } else { "1.1" }.into(),
        connections: plan.connections,
        streams: plan.streams,
        mode: mode.into(),
        timeout_s: plan.timeout.as_secs_f64(),
        totals,
        phases,
        purges,
        timeline: per_second,
        interrupted: interrupted.is_some(),
        ok,
    }
}
