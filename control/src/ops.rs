//! The handlers that append to the log — purge, prewarm, origin events — the shared
//! [`append`], and the status of an entry (`GET /v1/purge/{id}` and its siblings).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use stratus_config::protocol::{EdgeProgress, EdgeState, MAX_LINE, Op, OpKind, StreamLine};

use crate::body::{self, ObjectRef, OriginEvents, PrewarmBody, PurgeRequest};
use crate::error::{ApiError, Error, Invalid};
use crate::extract::JsonBody;
use crate::state::{Shared, State};

/// Longest `?wait=` honoured; longer requests are shortened to it.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The query of the log-appending endpoints.
#[derive(Debug, Deserialize)]
pub(crate) struct WaitQuery {
    wait: Option<String>,
}

impl WaitQuery {
    /// How long `?wait` may take, if asked.
    pub(crate) fn limit(&self) -> Result<Option<Duration>, Invalid> {
        let Some(text) = self.wait.as_deref() else { return Ok(None) };
        let d: stratus_config::Duration = text.parse().map_err(|e: String| Invalid::new("wait", e))?;
        Ok(Some(d.get().min(MAX_WAIT)))
    }
}

/// What an entry's API call answers.
#[derive(Debug, Serialize)]
struct Accepted {
    id: String,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    edges: Option<Vec<EdgeProgress>>,
}

/// Appends the operation `op(seq)` returns, times it from `created`, and answers `202 {id}`
/// (or, with `wait`, once every live edge applied it). An operation whose stream line would
/// exceed the protocol's [`MAX_LINE`] is refused with 400, since no edge could read it.
pub(crate) async fn append(
    state: &State,
    op: impl Fn(u64) -> Op + Send + Sync + 'static,
    created: Instant,
    wait: Option<Duration>,
) -> Result<Response, ApiError> {
    // The longest id the entry can get, so the check holds whatever its sequence number.
    let probe = op(u64::MAX);
    let kind = probe.kind().expect("the control plane writes only operations it knows");
    let longest = StreamLine::Entry { seq: u64::MAX, op: probe }.to_line().map_err(Error::from)?;
    if longest.len() > MAX_LINE {
        let message = format!(
            "the log entry would be {} bytes, over the protocol's {MAX_LINE}-byte line limit; send less per request",
            longest.len()
        );
        return Err(Invalid::new("body", message).into());
    }
    drop(longest);
    let registry = state.registry.clone();
    let build = move |seq| serde_json::to_string(&op(seq)).expect("an operation serialises as its probe did");
    let committed = move |seq| registry.track(seq, created);
    let seq = state.log.append(build, committed, matches!(kind, OpKind::Config), created).await?;
    let id = kind.id(seq);
    tracing::info!(%id, seq, "appended");
    let Some(limit) = wait else {
        return Ok(
            (StatusCode::ACCEPTED, Json(Accepted { id, seq, complete: None, edges: None })).into_response()
        );
    };
    let complete = state.registry.wait(seq, limit).await;
    let edges = state.registry.progress(seq);
    let status = if complete { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(Accepted { id, seq, complete: Some(complete), edges: Some(edges) })).into_response())
}

/// `POST /v1/purge`.
pub(crate) async fn purge(
    AxState(state): AxState<Shared>,
    Query(q): Query<WaitQuery>,
    JsonBody(purge): JsonBody<PurgeRequest>,
) -> Result<Response, ApiError> {
    let created = Instant::now();
    let wait = q.limit()?;
    body::validate_purge(&purge)?;
    append(&state, move |seq| Op::purge(seq, purge.clone()), created, wait).await
}

/// `POST /v1/prewarm`.
pub(crate) async fn prewarm(
    AxState(state): AxState<Shared>,
    Query(q): Query<WaitQuery>,
    JsonBody(request): JsonBody<PrewarmBody>,
) -> Result<Response, ApiError> {
    let created = Instant::now();
    let wait = q.limit()?;
    request.validate()?;
    let mut objects = request.objects;
    if let Some(bucket) = &request.bucket {
        let listed = state.origin.list(bucket, request.prefix.as_deref().unwrap_or("")).await?;
        objects.extend(listed);
    }
    if request.files.is_empty() && objects.is_empty() {
        return Err(Invalid::new("prefix", "no objects under this prefix").into());
    }
    let urls = request.files;
    append(&state, move |seq| Op::prewarm(seq, urls.clone(), objects.clone()), created, wait).await
}

/// `POST /v1/events/origin`.
pub(crate) async fn origin_events(
    AxState(state): AxState<Shared>,
    JsonBody(events): JsonBody<OriginEvents>,
) -> Result<Response, ApiError> {
    let created = Instant::now();
    if events.events.is_empty() {
        return Err(Invalid::new("events", "must not be empty").into());
    }
    // Every kind of change makes cached copies wrong, so each becomes a hard purge of the
    // object on every site in front of its bucket.
    let mut objects: Vec<ObjectRef> = events
        .events
        .into_iter()
        .map(|e| {
            tracing::debug!(kind = %e.kind, bucket = %e.bucket, key = %e.key, "origin event");
            ObjectRef { bucket: e.bucket, key: e.key }
        })
        .collect();
    objects.sort();
    objects.dedup();
    let purge = PurgeRequest { objects, ..PurgeRequest::default() };
    body::validate_purge(&purge)?;
    append(&state, move |seq| Op::purge(seq, purge.clone()), created, None).await
}

/// What `GET /v1/purge/{id}` answers.
#[derive(Debug, Serialize)]
struct EntryStatus {
    id: String,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    complete: bool,
    edges: Vec<EdgeProgress>,
    /// The operation, while the log still holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<Op>,
    /// Set when the operation was compacted away (its per-edge state is still known).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    compacted: bool,
}

/// Whether every edge listed is past `pending`.
pub(crate) fn complete(edges: &[EdgeProgress]) -> bool {
    edges.iter().all(|e| e.state != EdgeState::Pending)
}

/// `GET /v1/purge/{id}`, `GET /v1/prewarm/{id}` and `GET /v1/config/{id}`.
pub(crate) async fn status(
    AxState(state): AxState<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no entry {id}"));
    let (_, seq) = OpKind::parse_id(&id).ok_or_else(not_found)?;
    if seq == 0 || seq > state.log.head() {
        return Err(not_found());
    }
    let op: Option<Op> = state.log.get(seq).and_then(|text| serde_json::from_str(&text).ok());
    if op.as_ref().is_some_and(|op| op.id() != Some(id.as_str())) {
        return Err(not_found());
    }
    let edges = state.registry.progress(seq);
    let answer = EntryStatus {
        created_at: state.registry.created_at(seq),
        complete: complete(&edges),
        edges,
        compacted: op.is_none(),
        op,
        id,
        seq,
    };
    Ok(Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::response::IntoResponse;
    use stratus_config::purge::ObjectRef;

    use super::*;
    use crate::backend::Backend;
    use crate::log::Log;
    use crate::origin::Origin;
    use crate::registry::Registry;

    #[tokio::test]
    async fn an_entry_no_edge_could_read_is_refused_and_not_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State {
            log: Backend::Embedded(Log::open(dir.path(), 10).expect("log")),
            registry: Arc::new(Registry::new(Duration::from_secs(15))),
            token: None,
            metrics_token: None,
            allowed_hosts: Vec::new(),
            origin: Origin::new(None),
            history: crate::history::History::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        };
        // A prewarm of 10 000 listed objects whose 1024-byte keys are control characters, each
        // written as a six-byte escape: some 60 MiB on one line.
        let key: String = std::iter::repeat_n('\u{1}', 1024).collect();
        let objects: Vec<ObjectRef> =
            (0..10_000).map(|i| ObjectRef { bucket: format!("b{i}"), key: key.clone() }).collect();
        let refused =
            append(&state, move |seq| Op::prewarm(seq, Vec::new(), objects.clone()), Instant::now(), None)
                .await
                .expect_err("over MAX_LINE");
        assert_eq!(refused.into_response().status(), StatusCode::BAD_REQUEST);
        assert_eq!(state.log.head(), 0);
        let small = append(
            &state,
            |seq| Op::prewarm(seq, vec!["http://a/b".into()], Vec::new()),
            Instant::now(),
            None,
        )
        .await
        .expect("a small entry");
        assert_eq!(small.status(), StatusCode::ACCEPTED);
        assert_eq!(state.log.head(), 1);
    }
}
