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
use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use stratus_config::fleet::FleetConfig;
use stratus_config::protocol::{ConfigInForce, EdgeProgress, Op};

use crate::error::{ApiError, Invalid};
use crate::extract::JsonBody;
use crate::ops::{self, WaitQuery};
use crate::state::{Shared, State};

/// `PUT /v1/config {"sites": [...]}` → `202 {"id": "c-N", "seq": N}` once durable; `?wait=`
/// as for purges.
pub(crate) async fn put(
    AxState(state): AxState<Shared>,
    Query(q): Query<WaitQuery>,
    JsonBody(fleet): JsonBody<FleetConfig>,
) -> Result<Response, ApiError> {
    let created = Instant::now();
    let wait = q.limit()?;
    fleet.validate().map_err(|e| Invalid::new(e.path, e.message))?;
    ops::append(&state, move |seq| Op::config(seq, fleet.clone()), created, wait).await
}

/// What `GET /v1/config` answers.
#[derive(Debug, Serialize)]
struct ConfigStatus {
    #[serde(flatten)]
    current: ConfigInForce,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    complete: bool,
    edges: Vec<EdgeProgress>,
}

/// `GET /v1/config` → the configuration in force: `{"id", "seq", "sites", "complete", "edges"}`,
/// or 404 when none was ever pushed (edges run their own files' sites).
pub(crate) async fn get(AxState(state): AxState<Shared>) -> Result<Response, ApiError> {
    let Some(current) = current(&state) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no site configuration has been pushed"));
    };
    let edges = state.registry.progress(current.seq);
    let answer = ConfigStatus {
        created_at: state.registry.created_at(current.seq),
        complete: ops::complete(&edges),
        edges,
        current,
    };
    Ok(Json(answer).into_response())
}

/// The configuration in force, for register answers and `GET`.
pub(crate) fn current(state: &State) -> Option<ConfigInForce> {
    let (seq, text) = state.log.config()?;
    match serde_json::from_str::<Op>(&text) {
        Ok(Op::Config { id, config }) => Some(ConfigInForce { seq, id, config }),
        Ok(other) => {
            tracing::error!(seq, kind = ?other.kind(), "the stored configuration is another operation");
            None
        }
        Err(e) => {
            tracing::error!(seq, error = %e, "the stored configuration is not JSON");
            None
        }
    }
}
