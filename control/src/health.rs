//! `GET /healthz`: `200 ok` while the control plane can do its job, `503` with the reason while
//! it cannot — today, while writes to the log fail (disk full, I/O errors), since then every
//! purge is refused. It is served without the token and for any `Host`, for load balancers.

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::Shared;

/// `GET /healthz`.
pub(crate) async fn healthz(AxState(state): AxState<Shared>) -> Response {
    match state.log.failure() {
        None => "ok".into_response(),
        Some(failure) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the log cannot be written since {}: {}", failure.since, failure.error),
        )
        .into_response(),
    }
}
