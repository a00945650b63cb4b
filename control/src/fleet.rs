//! The fleet's site configuration: `PUT /v1/config` appends a `config` entry with the sites in
//! the schema of `[[edge.sites]]` (validated with the file's rules), `GET /v1/config` shows the
//! one in force and which edges run it, and registering edges are handed it
//! (`docs/PROTOCOL.md`, "Log operations").
//!
//! The newest configuration is kept apart from the log's retention ([`crate::log::Log::config`]),
//! so it survives compaction and restarts: an edge that starts, or comes back after its
//! position was compacted away, still ends up on it.

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use stratus_config::fleet::FleetConfig;

use crate::State;
use crate::api::{self, ApiError, Shared, WaitQuery};
use crate::body::Invalid;

/// `PUT /v1/config {"sites": [...]}` → `202 {"id": "c-N", "seq": N}` once durable; `?wait=`
/// as for purges.
pub(crate) async fn put(
    AxState(state): AxState<Shared>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (fleet, created, wait): (FleetConfig, Instant, _) = api::posted(&q, &headers, body)?;
    fleet.validate().map_err(|e| Invalid::new(e.path, e.message))?;
    api::append(&state, "config", &fleet, created, wait).await
}

/// `GET /v1/config` → the configuration in force: `{"id", "seq", "sites", "complete", "edges"}`,
/// or 404 when none was ever pushed (edges run their own files' sites).
pub(crate) async fn get(AxState(state): AxState<Shared>) -> Result<Response, ApiError> {
    let Some(current) = current(&state) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no site configuration has been pushed"));
    };
    let seq = current["seq"].as_u64().unwrap_or_default();
    let mut body = current;
    let edges = state.registry.progress(seq);
    body["complete"] = Value::Bool(edges.iter().all(|e| e.state != "pending"));
    body["edges"] = serde_json::to_value(edges).unwrap_or_default();
    if let Some(at) = state.registry.created_at(seq) {
        body["created_at"] = Value::String(at);
    }
    Ok(Json(body).into_response())
}

/// The configuration in force as `{"seq", "id", "sites"}`, for register answers and `GET`.
pub(crate) fn current(state: &State) -> Option<Value> {
    let (seq, op) = state.log.config()?;
    let mut value: Value = match serde_json::from_str(&op) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(seq, error = %e, "the stored configuration is not JSON");
            return None;
        }
    };
    let map = value.as_object_mut()?;
    map.remove("type");
    map.insert("seq".into(), Value::from(seq));
    Some(value)
}
