//! The admin API: purges by URL, prefix, tag, host and everything (hard and soft), Varnish
//! style `PURGE`, the bearer token, health, Prometheus metrics and stats.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::support;
use crate::support::edge::{edge, purge};
use crate::support::http::metric;
use crate::support::http::{client, get};
use crate::support::origin::{Origin, Reply};

const MAX_AGE: (&str, &str) = ("cache-control", "max-age=300");

/// GETs `path` on the edge with `Host: host` and returns the Cache-Status.
async fn fetch(edge: &support::Proc, host: &str, path: &str) -> String {
    get(&format!("{}{path}", edge.url("edge http")), &[("host", host)]).await.cache()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_by_url_prefix_tag_host_and_everything() {
    let origin = Origin::start().await;
    for p in
        ["/adm/u/a", "/adm/u/a?v=2", "/adm/p/1", "/adm/p/2", "/adm/other", "/adm/t/x", "/adm/t/y", "/adm/h"]
    {
        origin.fixed(
            p,
            Reply::ok(p, &[MAX_AGE, ("surrogate-key", "tag-x common"), ("vary", "accept-language")]),
        );
    }
    origin.fixed("/adm/t/y", Reply::ok("y", &[MAX_AGE, ("cache-tag", "tag-y,common")]));
    let edge = edge(&origin, &[]);
    let warm = || async {
        for p in ["/adm/u/a", "/adm/u/a?v=2", "/adm/p/1", "/adm/p/2", "/adm/other", "/adm/t/x", "/adm/t/y"] {
            fetch(&edge, "a.example", p).await;
        }
        fetch(&edge, "b.example", "/adm/h").await;
        // A second variant of one URL.
        get(
            &format!("{}/adm/u/a", edge.url("edge http")),
            &[("host", "a.example"), ("accept-language", "fr")],
        )
        .await;
    };
    warm().await;
    assert!(fetch(&edge, "a.example", "/adm/u/a").await.contains("hit"));

    // A URL matches every variant and every query.
    assert_eq!(purge(&edge, json!({"files": ["http://a.example/adm/u/a"]})).await, 3);
    assert!(fetch(&edge, "a.example", "/adm/u/a").await.contains("fwd=uri-miss"));
    assert!(fetch(&edge, "a.example", "/adm/p/1").await.contains("hit"));
    // Another host's object of the same path is untouched; hosts are matched without port.
    assert_eq!(purge(&edge, json!({"files": ["http://b.example:8080/adm/u/a"]})).await, 0);

    assert_eq!(purge(&edge, json!({"prefixes": ["a.example/adm/p/"]})).await, 2);
    assert!(fetch(&edge, "a.example", "/adm/p/2").await.contains("fwd=uri-miss"));
    assert!(fetch(&edge, "a.example", "/adm/other").await.contains("hit"));

    assert_eq!(purge(&edge, json!({"tags": ["tag-y"]})).await, 1);
    assert!(fetch(&edge, "a.example", "/adm/t/y").await.contains("fwd=uri-miss"));
    assert!(fetch(&edge, "a.example", "/adm/t/x").await.contains("hit"));

    assert_eq!(purge(&edge, json!({"hosts": ["b.example"]})).await, 1);
    assert!(fetch(&edge, "b.example", "/adm/h").await.contains("fwd=uri-miss"));
    assert!(fetch(&edge, "a.example", "/adm/other").await.contains("hit"));

    let before = origin.hits("/adm/other");
    assert!(purge(&edge, json!({"purge_everything": true})).await >= 5);
    assert!(fetch(&edge, "a.example", "/adm/other").await.contains("fwd=uri-miss"));
    assert_eq!(origin.hits("/adm/other"), before + 1);

    // An empty purge is refused.
    let res =
        client().post(format!("{}/purge", edge.url("edge admin"))).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 400);

    // Regression: a body a browser on another site can send without a preflight (text/plain,
    // a form, or no type at all) purged. Only JSON does; nothing is purged otherwise.
    origin.fixed("/adm/csrf", Reply::ok("x", &[MAX_AGE]));
    fetch(&edge, "a.example", "/adm/csrf").await;
    let body = r#"{"purge_everything": true}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = client().post(format!("{}/purge", edge.url("edge admin"))).body(body);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        assert_eq!(req.send().await.unwrap().status(), 415, "{content_type:?}");
    }
    assert!(fetch(&edge, "a.example", "/adm/csrf").await.contains("hit"), "a cross-site purge went through");
    let res = client()
        .post(format!("{}/purge", edge.url("edge admin")))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn varnish_style_purge_method() {
    let origin = Origin::start().await;
    origin.fixed("/adm/varnish", Reply::ok("v", &[MAX_AGE]));
    let edge = edge(&origin, &[]);
    fetch(&edge, "c.example", "/adm/varnish").await;
    assert!(fetch(&edge, "c.example", "/adm/varnish").await.contains("hit"));
    let res = client()
        .request(
            reqwest::Method::from_bytes(b"PURGE").unwrap(),
            format!("{}/adm/varnish", edge.url("edge admin")),
        )
        .header("host", "c.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["purged"], 1);
    assert!(fetch(&edge, "c.example", "/adm/varnish").await.contains("fwd=uri-miss"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soft_purge_revalidates_and_keeps_stale_if_error() {
    let origin = Origin::start().await;
    origin.route("/adm/soft", |seen, _| {
        if seen.headers.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
            Reply::status(304, "", &[MAX_AGE, ("etag", "\"v1\"")])
        } else {
            Reply::ok("soft body", &[MAX_AGE, ("etag", "\"v1\"")])
        }
    });
    origin.fixed("/adm/soft-sie", Reply::ok("kept", &[("cache-control", "max-age=300, stale-if-error=600")]));
    let edge = edge(&origin, &[]);
    let url = format!("{}/adm/soft", edge.url("edge http"));
    get(&url, &[]).await;
    assert_eq!(purge(&edge, json!({"files": ["/adm/soft"], "soft": true})).await, 1);
    let got = get(&url, &[]).await;
    assert_eq!(got.text(), "soft body");
    assert!(got.cache().contains("fwd=stale") && got.cache().contains("fwd-status=304"), "{}", got.cache());
    let seen = origin.seen("/adm/soft");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers.get("if-none-match").unwrap(), "\"v1\"");
    // The 304 refreshed the entry: fresh again.
    assert!(get(&url, &[]).await.cache().contains("hit"));

    let sie = format!("{}/adm/soft-sie", edge.url("edge http"));
    get(&sie, &[]).await;
    assert_eq!(purge(&edge, json!({"prefixes": ["/adm/soft-sie"], "soft": true})).await, 1);
    origin.fixed("/adm/soft-sie", Reply::status(503, "down", &[]));
    let got = get(&sie, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "kept");
    assert!(got.cache().contains("detail=stale-if-error"), "{}", got.cache());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_guards_the_admin_api() {
    let origin = Origin::start().await;
    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &origin.url, "--admin", "127.0.0.1:0"]);
    cmd.env("STRATUS_TOKEN", "s3cret");
    let edge = support::Proc::start(cmd, &["edge http", "edge admin"]);
    let admin = edge.url("edge admin");
    let c = client();
    for auth in [None, Some("Bearer wrong"), Some("s3cret"), Some("Basic s3cret"), Some("Bearer s3cre")] {
        let mut req = c.post(format!("{admin}/purge")).json(&json!({"purge_everything": true}));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{auth:?}");
    }
    // Scraping never needs the token that can purge (issue #20); see `observe.rs`.
    assert_eq!(c.get(format!("{admin}/metrics")).send().await.unwrap().status(), 200);
    let ok = c
        .post(format!("{admin}/purge"))
        .header("authorization", "Bearer s3cret")
        .json(&json!({"purge_everything": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The scheme is case-insensitive (RFC 9110 §11.1), as on the control plane.
    let lower =
        c.get(format!("{admin}/stats")).header("authorization", "bearer s3cret").send().await.unwrap();
    assert_eq!(lower.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_metrics_and_stats() {
    let origin = Origin::start().await;
    origin.fixed("/adm/m", Reply::ok("0123456789", &[MAX_AGE]));
    let edge = edge(&origin, &[]);
    let url = format!("{}/adm/m", edge.url("edge http"));
    get(&url, &[]).await;
    get(&url, &[]).await;
    let admin = edge.url("edge admin");
    let health = client().get(format!("{admin}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let metrics = client().get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |prefix: &str| metric(&metrics, prefix);
    assert_eq!(value("stratus_edge_requests_total{cache=\"hit\"}"), 1.0);
    assert_eq!(value("stratus_edge_requests_total{cache=\"miss\"}"), 1.0);
    assert_eq!(value("stratus_edge_origin_requests_total"), 1.0);
    assert!(value("stratus_edge_served_bytes_total") >= 20.0);
    assert!(value("stratus_edge_cache_bytes") > 10.0);
    assert!(value("stratus_edge_cache_entries") >= 1.0);
    value("stratus_edge_cache_evictions_total");
    value("stratus_edge_coalesced_waiters_total");
    value("stratus_edge_errors_total{kind=\"connect\"}");
    assert!(metrics.contains("stratus_edge_request_duration_seconds_bucket{le=\"0.005\"}"), "{metrics}");
    // Every request is in the latency histogram at once: no drain has to run first.
    assert_eq!(value("stratus_edge_request_duration_seconds_count"), 2.0);
    assert_eq!(value("stratus_edge_request_duration_seconds_bucket{le=\"+Inf\"}"), 2.0);
    assert_eq!(value("stratus_edge_origin_duration_seconds_count"), 1.0);

    let stats: serde_json::Value =
        client().get(format!("{admin}/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["hits"], 1);
    assert!(stats["cache_entries"].as_u64().unwrap() >= 1);
}
