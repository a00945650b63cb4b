//! The HTTP API: routes, bearer-token check, and the purge, prewarm and status handlers.
//!
//! Every `/v1` route needs the token when one is configured; the dashboard at `/` shows no
//! secrets and is open. Errors are JSON `{"error": "...", "field": "..."}` with 400 for bad
//! input (the field named), 401 for a wrong or missing token, 404 for unknown ids and 500 for
//! failures of our own (details only in the log).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::body::{self, Invalid, OriginEvents, PrewarmBody, PurgeRequest};
use crate::registry::EdgeProgress;
use crate::{Error, State, dashboard, fleet, subscribe};

/// Longest `?wait=` honoured; longer requests are shortened to it.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub(crate) type Shared = Arc<State>;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, field: None, message: message.into() }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        Self { status: StatusCode::BAD_REQUEST, field: Some(e.field), message: e.message }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = Value::String(field);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The whole API.
pub(crate) fn router(state: Shared) -> axum::Router {
    let v1 = axum::Router::new()
        .route("/purge", post(purge))
        .route("/purge/{id}", get(status))
        .route("/prewarm", post(prewarm))
        .route("/prewarm/{id}", get(status))
        .route("/config", put(fleet::put).get(fleet::get))
        .route("/config/{id}", get(status))
        .route("/events/origin", post(origin_events))
        .route("/edges", get(edges))
        .route("/edges/register", post(subscribe::register))
        .route("/edges/{id}/events", get(subscribe::events))
        .route("/edges/{id}/ack", post(subscribe::ack))
        .route("/edges/{id}/heartbeat", post(subscribe::heartbeat))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    axum::Router::new()
        .route("/", get(dashboard::page))
        .route("/healthz", get(|| async { "ok" }))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .with_state(state)
}

/// Compares in constant time so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(AxState(state): AxState<Shared>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same(g.as_bytes(), token.expose().as_bytes())) {
            tracing::warn!(path = %request.uri().path(), "rejected request without a valid token");
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
        }
    }
    next.run(request).await
}

/// The request body, or a JSON error (413 beyond [`body::MAX_BODY_BYTES`]) instead of axum's
/// plain-text rejection.
pub(crate) fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| ApiError {
        status: r.status(),
        field: Some("body".into()),
        message: r.body_text().to_lowercase(),
    })
}

/// Requires a JSON content type when one is given (browsers' form posts are not JSON).
fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(ct) if !ct.starts_with("application/json") => {
            Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json"))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WaitQuery {
    wait: Option<String>,
}

fn wait_limit(q: &WaitQuery) -> Result<Option<Duration>, ApiError> {
    let Some(text) = q.wait.as_deref() else { return Ok(None) };
    let d: stratus_config::Duration = text.parse().map_err(|e: String| Invalid::new("wait", e))?;
    Ok(Some(d.get().min(MAX_WAIT)))
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

/// Appends an operation `{"type": kind, "id": "PREFIX-SEQ", ...fields}`, times it from
/// `created`, and answers `202 {id}` (or, with `wait`, once every live edge applied it).
pub(crate) async fn append(
    state: &State,
    kind: &'static str,
    fields: &impl Serialize,
    created: Instant,
    wait: Option<Duration>,
) -> Result<Response, ApiError> {
    let mut op = serde_json::to_value(fields).map_err(Error::from)?;
    let prefix = match kind {
        "prewarm" => "w",
        "config" => "c",
        _ => "p",
    };
    let registry = state.registry.clone();
    let build = move |seq| {
        let map = op.as_object_mut().expect("entry fields serialise to a JSON object");
        map.insert("type".into(), Value::String(kind.into()));
        map.insert("id".into(), Value::String(format!("{prefix}-{seq}")));
        op.to_string()
    };
    let committed = move |seq| registry.track(seq, created);
    let seq = if kind == "config" {
        state.log.append_config(build, committed).await?
    } else {
        state.log.append(build, committed).await?
    };
    let id = format!("{prefix}-{seq}");
    tracing::info!(%id, seq, kind, "appended");
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

/// What the log-appending endpoints share: the JSON body parsed, when the request arrived (for
/// per-edge timings) and how long `?wait` may take.
pub(crate) fn posted<T: serde::de::DeserializeOwned>(
    q: &WaitQuery,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(T, Instant, Option<Duration>), ApiError> {
    let bytes = read_body(body)?;
    let created = Instant::now();
    let wait = wait_limit(q)?;
    check_json(headers)?;
    Ok((body::parse(&bytes)?, created, wait))
}

async fn purge(
    AxState(state): AxState<Shared>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (purge, created, wait): (PurgeRequest, _, _) = posted(&q, &headers, body)?;
    body::validate_purge(&purge)?;
    append(&state, "purge", &purge, created, wait).await
}

async fn prewarm(
    AxState(state): AxState<Shared>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, created, wait): (PrewarmBody, _, _) = posted(&q, &headers, body)?;
    request.validate()?;
    let mut objects = request.objects;
    if let Some(bucket) = &request.bucket {
        let listed = state.origin.list(bucket, request.prefix.as_deref().unwrap_or("")).await?;
        objects.extend(listed);
    }
    if request.files.is_empty() && objects.is_empty() {
        return Err(Invalid::new("prefix", "no objects under this prefix").into());
    }
    let op = json!({ "urls": request.files, "objects": objects });
    append(&state, "prewarm", &op, created, wait).await
}

async fn origin_events(
    AxState(state): AxState<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = crate::api::read_body(body)?;
    let created = Instant::now();
    let events: OriginEvents = body::parse(&bytes)?;
    if events.events.is_empty() {
        return Err(Invalid::new("events", "must not be empty").into());
    }
    // Every kind of change makes cached copies wrong, so each becomes a hard purge of the
    // object on every site in front of its bucket.
    let mut objects: Vec<body::ObjectRef> = events
        .events
        .into_iter()
        .map(|e| {
            tracing::debug!(kind = %e.kind, bucket = %e.bucket, key = %e.key, "origin event");
            body::ObjectRef { bucket: e.bucket, key: e.key }
        })
        .collect();
    objects.sort();
    objects.dedup();
    let purge = PurgeRequest { objects, ..PurgeRequest::default() };
    body::validate_purge(&purge)?;
    append(&state, "purge", &purge, created, None).await
}

/// `GET /v1/purge/{id}`, `GET /v1/prewarm/{id}` and `GET /v1/config/{id}`.
async fn status(AxState(state): AxState<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no entry {id}"));
    let seq: u64 = id
        .strip_prefix("p-")
        .or_else(|| id.strip_prefix("w-"))
        .or_else(|| id.strip_prefix("c-"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_found)?;
    if seq == 0 || seq > state.log.head() {
        return Err(not_found());
    }
    let op: Option<Value> = state.log.get(seq).and_then(|text| serde_json::from_str(&text).ok());
    if let Some(op) = &op
        && op.get("id").and_then(Value::as_str) != Some(id.as_str())
    {
        return Err(not_found());
    }
    let edges = state.registry.progress(seq);
    let complete = edges.iter().all(|e| e.state != "pending");
    let mut body = json!({ "id": id, "seq": seq, "complete": complete, "edges": edges });
    if let Some(at) = state.registry.created_at(seq) {
        body["created_at"] = Value::String(at);
    }
    match op {
        Some(op) => body["op"] = op,
        None => body["compacted"] = Value::Bool(true),
    }
    Ok(Json(body).into_response())
}

async fn edges(AxState(state): AxState<Shared>) -> Json<Value> {
    let head = state.log.head();
    Json(json!({ "head": head, "floor": state.log.floor(), "edges": state.registry.edges(head) }))
}
