//! The task behind the dashboard's charts: notes every edge's heartbeat counters in the
//! `history` at a fixed interval.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::state::State;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Samples the registry every `history::SAMPLE` until `shutdown`.
pub(crate) async fn sample(state: Arc<State>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(crate::history::SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut edges: Vec<(String, crate::history::Counters)> = state
            .registry
            .edges(state.log.head())
            .into_iter()
            .map(|e| {
                let c = crate::history::Counters {
                    requests: e.requests,
                    hits: e.hits,
                    served_bytes: e.served_bytes,
                    server_errors: e.server_errors,
                };
                (e.id, c)
            })
            .collect();
        edges.sort_by(|a, b| a.0.cmp(&b.0));
        let fleet =
            edges.iter().fold(crate::history::Counters::default(), |f, (_, c)| crate::history::Counters {
                requests: f.requests + c.requests,
                hits: f.hits + c.hits,
                served_bytes: f.served_bytes + c.served_bytes,
                server_errors: f.server_errors + c.server_errors,
            });
        edges.truncate(crate::history::MAX_EDGES);
        state.history.push(crate::history::Sample { at: now(), edges, fleet });
    }
}
