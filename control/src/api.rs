//! The router: which handler answers which route, and the checks in front of them.
//!
//! Every `/v1` route needs the token when one is configured. The dashboard at `/` is open and
//! shows nothing private without the token (`dashboard`). Without a token, every route but
//! `/healthz` also checks the `Host` against DNS rebinding ([`allowed_host`]). Errors are JSON
//! (`crate::error::ApiError`).

use axum::extract::{DefaultBodyLimit, Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::body::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::state::Shared;
use crate::{dashboard, fleet, health, metrics, ops, subscribe};

/// The whole API.
pub(crate) fn router(state: Shared) -> axum::Router {
    let v1 = axum::Router::new()
        .route("/purge", post(ops::purge))
        .route("/purge/{id}", get(ops::status))
        .route("/prewarm", post(ops::prewarm))
        .route("/prewarm/{id}", get(ops::status))
        .route("/config", put(fleet::put).get(fleet::get))
        .route("/config/{id}", get(ops::status))
        .route("/events/origin", post(ops::origin_events))
        .route("/edges", get(subscribe::list))
        .route("/edges/register", post(subscribe::register))
        .route("/edges/{id}/events", get(subscribe::events))
        .route("/edges/{id}/ack", post(subscribe::ack))
        .route("/edges/{id}/heartbeat", post(subscribe::heartbeat))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    let checked = axum::Router::new()
        .route("/", get(dashboard::page))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), check_host));
    axum::Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics))
        .merge(checked)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn authorize(AxState(state): AxState<Shared>, request: Request, next: Next) -> Response {
    if !state.authorized(request.headers()) {
        tracing::warn!(path = %request.uri().path(), "rejected request without a valid token");
        return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    }
    next.run(request).await
}

/// Refuses requests for other hosts with 421 while no token protects the API: a web page the
/// operator visits could otherwise point its own DNS name at 127.0.0.1 (DNS rebinding) and use
/// the open API with the browser as its proxy. Such a request names the attacker's host.
async fn check_host(AxState(state): AxState<Shared>, request: Request, next: Next) -> Response {
    if state.token.is_none() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        if let Some(host) = host
            && !allowed_host(host, &state.allowed_hosts)
        {
            tracing::warn!(host, path = %request.uri().path(), "refused a request for another host");
            let message = format!(
                "host {host:?} is not served; without a token only IP addresses, localhost and \
                 control.allowed_hosts are"
            );
            return ApiError::new(StatusCode::MISDIRECTED_REQUEST, message).into_response();
        }
    }
    next.run(request).await
}

/// Whether a `Host` value (with or without port) names this control plane when no token is
/// configured: an IP address, `localhost`, or a name in `allowed` (case-insensitive, a
/// trailing dot ignored).
fn allowed_host(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => {
            return rest.split_once(']').is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.strip_suffix('.').unwrap_or(a).eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_allowed_without_a_token() {
        let allowed = vec!["control.internal".to_owned()];
        for (host, ok) in [
            ("127.0.0.1", true),
            ("127.0.0.1:7070", true),
            ("10.0.0.5:80", true),
            ("[::1]:7070", true),
            ("[::1]", true),
            ("localhost:7070", true),
            ("LOCALHOST", true),
            ("localhost.", true),
            ("control.internal:7070", true),
            ("Control.Internal.", true),
            ("evil.example", false),
            ("evil.example:7070", false),
            ("localhost.evil.example", false),
            ("127.0.0.1.evil.example", false),
            ("[evil]:80", false),
            ("control.internal.evil", false),
            ("", false),
        ] {
            assert_eq!(allowed_host(host, &allowed), ok, "{host}");
        }
    }
}
