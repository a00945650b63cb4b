//! Following the control plane's event log: register, subscribe, apply in order, ack, heartbeat
//! (`docs/PROTOCOL.md`, "Edge ↔ control"). The edge keeps serving whatever happens here.
//!
//! One task holds the subscription: it registers, streams `GET /v1/edges/{id}/events` from the
//! last applied sequence (lines framed by `LinesCodec`, at most `protocol::MAX_LINE` long, read
//! as `stratus_config::protocol` types), applies each entry in order through [`FollowTarget`],
//! and acks the lines that arrived together once. A gap, a garbled
//! line, a silent stream (no line for three ping intervals) or any error ends the session; the
//! next one starts after a backoff of 100 ms doubling to 5 s, each wait drawn between half and
//! all of it so a fleet does not reconnect in lockstep, and resumes from the last applied
//! sequence, so nothing is skipped. A second task sends heartbeats every 5 s.
//!
//! The position lives in memory: an edge that restarts has an empty cache and starts after the
//! log's head. A purge this edge cannot parse (a newer control plane?) drops the whole cache,
//! because serving content that should have been purged is worse than a cold cache.
//!
//! `config` entries carry the fleet's sites. The register answer holds the newest one, which
//! the edge applies before subscribing when it is newer than what it runs — so a starting edge,
//! or one whose position was compacted away, still ends up on it; later ones arrive in the
//! stream. A configuration the edge cannot apply leaves the running one in place and is
//! reported as failed (`failed` in acks and heartbeats) until an ack or heartbeat carried it.

mod session;

use std::sync::Arc;
use std::time::Duration;

use crate::fleet::follow_target::{FollowTarget, Registration};

/// Registers with the control plane at `control`, then follows its log until `shutdown`,
/// reconnecting with backoff. Never returns an error: failures are logged and retried.
///
/// With several replicas the follower uses one at a time and moves to the next whenever a
/// session ends; every replica serves the same log, so it resumes after the last sequence it
/// applied wherever it lands. The backoff grows only once every replica was tried.
pub async fn run(
    control: stratus_config::ControlUrls,
    token: Option<stratus_config::Secret>,
    registration: Registration,
    target: std::sync::Arc<dyn FollowTarget>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let follower = Arc::new(session::Follower::new(&control, token, registration, target));
    let beats = tokio::spawn(session::heartbeats(follower.clone(), shutdown.clone()));
    let mut backoff = session::FIRST_BACKOFF;
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => break,
            outcome = follower.session() => outcome,
        };
        match outcome {
            Ok(()) => tracing::info!(control = %follower.base(), "subscription ended"),
            Err(e) if e.token_refused() => {
                // Not an outage: retrying with the same token will not help until someone fixes it.
                tracing::error!(
                    control = %follower.base(),
                    error = %e,
                    "the control plane refused this edge's token; set the same STRATUS_TOKEN (or [edge] token) as the control plane's; retrying"
                );
            }
            Err(e) => {
                tracing::warn!(control = %follower.base(), error = %e, "control plane unreachable; retrying");
            }
        }
        if follower.take_connected() {
            backoff = session::FIRST_BACKOFF;
        }
        let wrapped = follower.fail_over();
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(jittered(backoff)) => {}
        }
        if wrapped {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    beats.abort();
}

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A wait of between half and all of `backoff`, drawn at random ("equal jitter"): after a
/// control-plane restart a fleet's edges reconnect spread over the interval instead of all in
/// the same millisecond, and no edge waits longer than the backoff says.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_are_spread_over_the_backoff() {
        let waits: Vec<Duration> = (0..100).map(|_| jittered(MAX_BACKOFF)).collect();
        assert!(waits.iter().all(|w| (MAX_BACKOFF / 2..=MAX_BACKOFF).contains(w)), "{waits:?}");
        let spread = *waits.iter().max().expect("waits") - *waits.iter().min().expect("waits");
        assert!(spread > MAX_BACKOFF / 4, "100 edges would reconnect within {spread:?} of each other");
    }
}
