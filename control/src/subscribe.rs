//! The edge side of the API: register, the streaming subscription, acks and heartbeats
//! (docs/PROTOCOL.md, "Edge ↔ control").
//!
//! A subscription is an NDJSON response that stays open. It is pushed, not polled: the stream
//! waits on the log's head and writes new entries the moment they are committed, batching
//! whatever accumulated into one chunk. The stream is pulled by hyper as the socket drains, so
//! a stalled edge (SIGSTOP) holds no more than the socket buffers; it resumes where it was.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use stratus_config::protocol::{Ack, Heartbeat, HeartbeatAnswer, Register, Registered, StreamLine};
use tokio::sync::watch;

use crate::error::{ApiError, Invalid};
use crate::extract::JsonBody;
use crate::fleet;
use crate::log::Read;
use crate::registry::EdgeView;
use crate::state::Shared;

/// Interval of `ping` lines on an idle subscription.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Most entries written in one chunk.
const BATCH: usize = 512;

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new("id", "must be 1-128 characters of A-Z a-z 0-9 - _ . :").into())
    }
}

/// `POST /v1/edges/register` → `{"head": N}`, plus `"config": {"seq", "id", "sites"}` when the
/// control plane holds a site configuration: a starting edge applies it before subscribing.
pub(crate) async fn register(
    AxState(state): AxState<Shared>,
    JsonBody(r): JsonBody<Register>,
) -> Result<Json<Registered>, ApiError> {
    check_id(&r.id)?;
    if let Some(pop) = &r.pop {
        stratus_config::edge::check_pop(pop).map_err(|why| Invalid::new("pop", why))?;
    }
    if let Some(url) = &r.peer_url
        && url.len() > 2048
    {
        return Err(Invalid::new("peer_url", "longer than 2048 bytes").into());
    }
    let head = state.log.head();
    tracing::info!(edge = %r.id, url = %r.url, version = %r.version, head, "edge registered");
    state.registry.register(r, head);
    Ok(Json(Registered { head, config: fleet::current(&state) }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct After {
    after: Option<String>,
}

/// `GET /v1/edges/{id}/events?after=SEQ`: the NDJSON stream.
pub(crate) async fn events(
    AxState(state): AxState<Shared>,
    Path(id): Path<String>,
    Query(q): Query<After>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let after: u64 = match q.after.as_deref() {
        None => 0,
        Some(text) => text.parse().map_err(|_| Invalid::new("after", "must be a sequence number"))?,
    };
    state.registry.subscribed(&id, after, state.log.head());
    tracing::info!(edge = %id, after, head = state.log.head(), "subscription opened");
    let head = state.log.subscribe();
    let ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let sub = Subscription { state, edge: id, cursor: after, head, ping };
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let chunk = sub.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), sub))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson"), (header::CACHE_CONTROL, "no-store")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One open subscription: where it is in the log and what wakes it.
#[derive(Debug)]
struct Subscription {
    state: Shared,
    edge: String,
    /// The last sequence number written to this stream.
    cursor: u64,
    head: watch::Receiver<u64>,
    ping: tokio::time::Interval,
}

impl Subscription {
    /// The next chunk of lines, or `None` when the server shuts down.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            self.head.mark_unchanged();
            match self.state.log.read_after(self.cursor, BATCH) {
                Read::Reset { next } => {
                    tracing::info!(edge = %self.edge, after = self.cursor, next, "subscriber reset");
                    self.cursor = next - 1;
                    return line(&StreamLine::<&RawValue>::Reset { next }).map(Bytes::from);
                }
                Read::Entries(entries) => {
                    let mut out = String::new();
                    for (seq, op) in entries {
                        // The operation goes out as the log stored it, written by `Op`'s
                        // serialiser when it was appended.
                        let op = match serde_json::from_str::<&RawValue>(&op) {
                            Ok(op) => op,
                            Err(e) => {
                                tracing::error!(seq, error = %e, "a stored log entry is not JSON; ending the stream");
                                return None;
                            }
                        };
                        out.push_str(&line(&StreamLine::Entry { seq, op })?);
                        self.cursor = seq;
                    }
                    return Some(Bytes::from(out));
                }
                Read::UpToDate => {}
            }
            tokio::select! {
                () = self.state.shutdown.cancelled() => return None,
                changed = self.head.changed() => changed.ok()?,
                _ = self.ping.tick() => {
                    return line(&StreamLine::<&RawValue>::Ping { head: self.state.log.head() }).map(Bytes::from);
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        tracing::info!(edge = %self.edge, cursor = self.cursor, "subscription closed");
        self.state.registry.unsubscribed(&self.edge);
    }
}

/// One stream line, or `None` (ending the stream) if it cannot be written.
fn line(line: &StreamLine<&RawValue>) -> Option<String> {
    match line.to_line() {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::error!(error = %e, "cannot write a stream line; ending the stream");
            None
        }
    }
}

/// `POST /v1/edges/{id}/ack {"seq": N, "failed": [...]}`.
pub(crate) async fn ack(
    AxState(state): AxState<Shared>,
    Path(id): Path<String>,
    JsonBody(ack): JsonBody<Ack>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    state.registry.failed(&id, &ack.failed);
    state.registry.ack(&id, ack.seq, state.log.head());
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/edges/{id}/heartbeat` with the edge's stats.
pub(crate) async fn heartbeat(
    AxState(state): AxState<Shared>,
    Path(id): Path<String>,
    JsonBody(beat): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    check_id(&id)?;
    state.registry.failed(&id, &beat.failed);
    state.registry.heartbeat(&id, &beat, state.log.head());
    Ok(Json(HeartbeatAnswer { head: state.log.head() }))
}

/// What `GET /v1/edges` answers.
#[derive(Debug, Serialize)]
struct Edges {
    head: u64,
    floor: u64,
    edges: Vec<EdgeView>,
}

/// `GET /v1/edges`: every edge seen since the start, and the log's bounds.
pub(crate) async fn list(AxState(state): AxState<Shared>) -> Json<impl Serialize> {
    let head = state.log.head();
    Json(Edges { head, floor: state.log.floor(), edges: state.registry.edges(head) })
}
