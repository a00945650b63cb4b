//! `GET /metrics`: the control plane in Prometheus text — the log's head and floor, whether
//! writes fail, the fleet (live and down edges) and each edge's position, lag and counters
//! from its last heartbeat, how long purges take to reach edges, then build info and the process. Edge ids are labels: their
//! number is the fleet's size, which the operator controls.
//!
//! Open like `/healthz` unless a read-only `metrics_token` is configured; the API token is
//! accepted too, so the token that can purge is never needed to scrape.

use std::fmt::Write as _;

use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::Shared;

/// `GET /metrics`.
pub(crate) async fn metrics(AxState(state): AxState<Shared>, headers: HeaderMap) -> Response {
    let auth = headers.get(header::AUTHORIZATION);
    let holds = |t: &Option<stratus_config::Secret>| t.as_ref().is_some_and(|t| t.verify_bearer(auth));
    if state.metrics_token.is_some() && !holds(&state.metrics_token) && !holds(&state.token) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "unauthorized\n")
            .into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&state)).into_response()
}

fn render(state: &Shared) -> String {
    let head = state.log.head();
    let edges = state.registry.edges(head);
    let mut out = String::with_capacity(4096);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut out, "stratus_control_log_head_sequence", "gauge", "sequence number of the last log entry");
    let _ = writeln!(out, "stratus_control_log_head_sequence {head}");
    family(
        &mut out,
        "stratus_control_log_floor_sequence",
        "gauge",
        "entries up to this one are compacted away",
    );
    let _ = writeln!(out, "stratus_control_log_floor_sequence {}", state.log.floor());
    family(
        &mut out,
        "stratus_control_log_write_failing",
        "gauge",
        "1 while writes to the log fail (purges are refused)",
    );
    let _ = writeln!(out, "stratus_control_log_write_failing {}", u8::from(state.log.failure().is_some()));
    family(&mut out, "stratus_control_edges", "gauge", "known edges by liveness");
    let live = edges.iter().filter(|e| e.live).count();
    let _ = writeln!(out, "stratus_control_edges{{state=\"live\"}} {live}");
    let _ = writeln!(out, "stratus_control_edges{{state=\"down\"}} {}", edges.len() - live);
    let per_edge: [PerEdge; 7] = [
        ("stratus_control_edge_up", "gauge", "1 when the edge was heard from within edge_timeout", |e| {
            f64::from(u8::from(e.live))
        }),
        ("stratus_control_edge_applied_sequence", "gauge", "last log entry the edge applied", |e| {
            e.applied as f64
        }),
        ("stratus_control_edge_lag_entries", "gauge", "log entries the edge has not applied yet", |e| {
            e.lag as f64
        }),
        (
            "stratus_control_edge_last_seen_seconds",
            "gauge",
            "seconds since the edge was last heard from",
            |e| e.last_seen_ms as f64 / 1000.0,
        ),
        (
            "stratus_control_edge_requests_total",
            "counter",
            "client requests the edge served (last heartbeat)",
            |e| e.requests as f64,
        ),
        ("stratus_control_edge_hits_total", "counter", "cache hits of the edge (last heartbeat)", |e| {
            e.hits as f64
        }),
        ("stratus_control_edge_cache_bytes", "gauge", "bytes in the edge's cache (last heartbeat)", |e| {
            e.cache_bytes as f64
        }),
    ];
    for (name, kind, help, value) in per_edge {
        family(&mut out, name, kind, help);
        for e in &edges {
            let _ = writeln!(out, "{name}{{edge=\"{}\"}} {}", label(&e.id), value(e));
        }
    }
    state.registry.propagation().render(
        &mut out,
        "stratus_control_purge_propagation_seconds",
        "from a purge's API call to an edge's ack of it (the acks this replica took)",
    );
    stratus_config::observe::render_process_metrics(&mut out, "control");
    out
}

/// A per-edge family: name, type, help, and how to read its value.
type PerEdge = (&'static str, &'static str, &'static str, fn(&crate::registry::EdgeView) -> f64);

/// A label value escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
