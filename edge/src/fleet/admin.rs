//! The admin API on its own listener (`docs/PROTOCOL.md`, "Edge admin API"): purge (JSON body
//! or Varnish-style `PURGE /path`), health, Prometheus metrics, stats. When a token is
//! configured every request must carry it as a bearer token, or gets 401 and changes nothing.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
pub use stratus_config::Secret;
use stratus_config::protocol::is_json;

use crate::body::{Body, full};
use crate::edge::Edge;
use crate::fleet::purge::PurgeRequest;

/// Largest purge body accepted.
const MAX_BODY: usize = 1 << 20;

/// The admin API's tokens: the admin token for everything, and the read-only one.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// Needed for purges (and accepted everywhere).
    pub admin: Option<Secret>,
    /// When set, needed (or the admin token) to read `/metrics`, `/healthz`, `/stats`, `/cache`.
    pub read: Option<Secret>,
}

/// What a request may do without a token: scraping and health are open unless a read-only
/// token is configured (the admin listener is meant to be private); the cache inspection
/// shows stored headers, so it needs the read-only or, lacking one, the admin token.
fn allowed(tokens: &Tokens, method: &Method, path: &str, auth: Option<&HeaderValue>) -> bool {
    let holds = |t: &Option<Secret>| t.as_ref().is_some_and(|t| t.verify_bearer(auth));
    if holds(&tokens.admin) {
        return true;
    }
    let read = *method == Method::GET || *method == Method::HEAD;
    match (read, path) {
        (true, "/metrics" | "/healthz" | "/stats") => tokens.read.is_none() || holds(&tokens.read),
        (true, "/cache") => match &tokens.read {
            Some(_) => holds(&tokens.read),
            None => tokens.admin.is_none(),
        },
        _ => tokens.admin.is_none(),
    }
}

/// Answers one admin request.
pub async fn handle(edge: Arc<Edge>, tokens: Tokens, req: Request<Body>) -> Response<Body> {
    // The one bearer check, shared with the control plane (scheme case-insensitive, constant
    // time).
    if !allowed(&tokens, req.method(), req.uri().path(), req.headers().get(header::AUTHORIZATION)) {
        let mut res = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return res;
    }
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::GET, "/metrics") => {
            let body = edge.metrics.render(&edge.snapshot());
            let mut res = text(StatusCode::OK, body);
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        (Method::GET, "/cache") => {
            let (status, body) = crate::fleet::inspect::answer(&edge, req.uri().query());
            json(status, &body)
        }
        (Method::GET, "/stats") => {
            let mut stats = serde_json::to_value(edge.stats()).unwrap_or_default();
            // The disk tier's counters, beside the memory tier's `cache_bytes`/`cache_entries`.
            if let (Some(obj), Some(disk)) = (stats.as_object_mut(), &edge.disk) {
                let mut d = serde_json::to_value(disk.stats()).unwrap_or_default();
                if let Some(d) = d.as_object_mut() {
                    d.insert("hits".into(), edge.metrics.disk_hits().into());
                }
                obj.insert("disk".into(), d);
            }
            json(StatusCode::OK, &stats)
        }
        (Method::POST, "/purge") => {
            // A browser on another site can send a cross-origin POST without asking first only
            // with a "simple" content type (text/plain, forms) or none: requiring JSON makes the
            // admin API answer only clients that meant to call it (CSRF).
            if !is_json(req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())) {
                return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "a purge body must be application/json\n");
            }
            let Some(bytes) = read_body(req.into_body()).await else {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "purge body too large or unreadable\n");
            };
            let purge: PurgeRequest = match serde_json::from_slice(&bytes) {
                Ok(p) => p,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid purge body: {e}\n")),
            };
            if purge.is_empty() {
                return text(StatusCode::BAD_REQUEST, "a purge needs at least one target\n");
            }
            purged(edge.purge(&purge))
        }
        (m, _) if m.as_str() == "PURGE" => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(crate::cache::key::purge_host);
            let soft = req.headers().get("soft-purge").is_some_and(|v| v == "1" || v == "true")
                || req
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|p| p == "soft" || p == "soft=1" || p == "soft=true"));
            let target = match req
                .uri()
                .query()
                .map(|q| q.split('&').filter(|p| !p.starts_with("soft")).collect::<Vec<_>>().join("&"))
            {
                Some(q) if !q.is_empty() => format!("{path}?{q}"),
                _ => path,
            };
            let file = match host {
                Some(h) => format!("http://{h}{target}"),
                None => target,
            };
            purged(edge.purge(&PurgeRequest { files: vec![file], soft, ..PurgeRequest::default() }))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The whole body, if it is readable and at most [`MAX_BODY`] long. A loop rather than
/// `Limited` and `collect`: those combinators over the boxed body's error trip rustc's check
/// that [`handle`]'s future is `Send` (higher-ranked lifetimes, rust-lang/rust#102211).
async fn read_body(mut body: Body) -> Option<Bytes> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if out.len() + data.len() > MAX_BODY {
                return None;
            }
            out.extend_from_slice(&data);
        }
    }
    Some(out.freeze())
}

fn purged(n: usize) -> Response<Body> {
    json(StatusCode::OK, &serde_json::json!({ "purged": n }))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(full(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
