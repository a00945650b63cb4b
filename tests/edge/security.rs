//! Hostile clients against the edge (issue "Hardening"): request smuggling towards the origin,
//! cross-host cache poisoning, and unkeyed inputs that would change what the origin answers.
//! Raw TCP where a well-behaved client could not send the request.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::support::edge::{edge, edge_with_config, purge};
use crate::support::http::{client, get};
use crate::support::origin::{Origin, Reply};
use crate::support::raw::{Raw, exchange_framed};

const MAX_AGE: (&str, &str) = ("cache-control", "max-age=300");

async fn raw(addr: String, bytes: Vec<u8>, n: usize, head_request: bool) -> Vec<Raw> {
    tokio::task::spawn_blocking(move || exchange_framed(&addr, &bytes, n, head_request)).await.unwrap()
}

/// Regression (critical): a GET or HEAD with a body was forwarded with its `Content-Length`
/// but without the body, so the pooled origin connection read the next request as that body
/// and answered a request of the attacker's choosing under another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_and_head_with_a_body_never_desync_the_origin_connection() {
    let origin = Origin::start().await;
    origin.fallback(|seen, _| Reply::ok(&format!("body of {}", seen.path), &[MAX_AGE]));
    let edge = edge(&origin, &[]);
    let addr = edge.addr("edge http");
    // The body is a whole request: were it read as a request by the origin, `/smuggle/evil`
    // would be answered in place of the next one.
    let evil = "GET /smuggle/evil HTTP/1.1\r\nHost: s.example\r\n\r\n";
    let cases = [
        ("GET", "/smuggle/a", format!("Content-Length: {}\r\n\r\n{evil}", evil.len())),
        (
            "GET",
            "/smuggle/b",
            format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{evil}\r\n0\r\n\r\n", evil.len()),
        ),
        ("HEAD", "/smuggle/c", format!("Content-Length: {}\r\n\r\n{evil}", evil.len())),
    ];
    for (method, path, rest) in cases {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: s.example\r\n{rest}");
        let got = raw(addr.clone(), request.into_bytes(), 1, method == "HEAD").await;
        assert_eq!(got[0].status, 200, "{method} {path}: {}", got[0].head);
        if method == "GET" {
            assert_eq!(String::from_utf8_lossy(&got[0].body), format!("body of {path}"), "{method} {path}");
        }
        // Whatever reached the origin was framed as sent: no body, so no framing header.
        let seen = origin.seen(path);
        assert_eq!(seen.len(), 1, "{method} {path}");
        assert_eq!(seen[0].header("content-length"), "", "{method} {path} forwarded a framing header");
        assert_eq!(seen[0].header("transfer-encoding"), "", "{method} {path}");
        assert!(seen[0].body.is_empty(), "{method} {path}");
        // The next request on the (pooled) origin connection is answered as itself.
        for n in 0..2 {
            let next = format!("{path}/next-{n}");
            let got = get(&format!("{}{next}", edge.url("edge http")), &[]).await;
            assert_eq!(got.status, 200, "after {method} {path}");
            assert_eq!(got.text(), format!("body of {next}"), "after {method} {path}");
        }
    }
    assert_eq!(origin.hits("/smuggle/evil"), 0, "the smuggled request reached the origin");
}

/// Regression: the cache key came from the absolute-form target (or `:authority`, or the
/// normalized `Host`) but the origin got the raw `Host`, so one host's answer could be stored
/// under another's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_and_origin_host_come_from_one_normalized_value() {
    let origin = Origin::start().await;
    origin.fallback(|seen, _| Reply::ok(&format!("for {}", seen.host), &[MAX_AGE]));
    let (edge, _dir) = edge_with_config(
        &origin,
        "[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\norigin_host = false\n",
    );
    let addr = edge.addr("edge http");

    let refused = [
        // Authority and Host disagree.
        "GET http://victim.example/p1 HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        // Two Host fields, equal or not.
        "GET /p1 HTTP/1.1\r\nHost: victim.example\r\nHost: evil.example\r\n\r\n",
        "GET /p1 HTTP/1.1\r\nHost: victim.example\r\nHost: victim.example\r\n\r\n",
        // Ports that are not ports.
        "GET /p1 HTTP/1.1\r\nHost: victim.example:1337x\r\n\r\n",
        "GET /p1 HTTP/1.1\r\nHost: victim.example:99999\r\n\r\n",
        // Userinfo.
        "GET http://evil@victim.example/p1 HTTP/1.1\r\nHost: victim.example\r\n\r\n",
    ];
    for request in refused {
        let got = raw(addr.clone(), request.as_bytes().to_vec(), 1, false).await;
        assert_eq!(got[0].status, 400, "{request:?}: {}", got[0].head);
    }
    assert!(origin.requests().is_empty(), "a refused request reached the origin");

    // Spellings of one host share one key, and the origin always gets the key's host.
    let spellings = [
        "GET /p2 HTTP/1.1\r\nHost: Victim.Example:1337\r\n\r\n",
        "GET /p2 HTTP/1.1\r\nHost: victim.example.\r\n\r\n",
        "GET http://victim.example/p2 HTTP/1.1\r\nHost: victim.example:8080\r\n\r\n",
    ];
    for request in spellings {
        let got = raw(addr.clone(), request.as_bytes().to_vec(), 1, false).await;
        assert_eq!(got[0].status, 200, "{request:?}");
        assert_eq!(String::from_utf8_lossy(&got[0].body), "for victim.example", "{request:?}");
    }
    let seen = origin.seen("/p2");
    assert_eq!(seen.len(), 1, "one key for every spelling");
    assert_eq!(seen[0].host, "victim.example");

    // Purges match under the same normalization: a trailing dot or a port names the host.
    for (i, host) in ["victim.example.", "VICTIM.example:443"].into_iter().enumerate() {
        assert_eq!(purge(&edge, json!({"files": [format!("http://{host}/p2")]})).await, 1, "{host}");
        let request = "GET /p2 HTTP/1.1\r\nHost: victim.example\r\n\r\n";
        raw(addr.clone(), request.as_bytes().to_vec(), 1, false).await;
        assert_eq!(origin.hits("/p2"), i + 2, "{host}");
    }
    assert_eq!(purge(&edge, json!({"hosts": ["Victim.Example."]})).await, 1);
}

/// Regression: `X-Forwarded-Host`, `Forwarded`, `X-Original-URL`, ... passed to the origin,
/// so an origin that reflects them (a redirect to `https://evil.example`) had that answer
/// cached for everyone. Parameters the key ignores reached the origin too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unkeyed_inputs_never_reach_the_origin_from_untrusted_clients() {
    let hostile = [
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "host=evil.example;proto=https"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-forwarded-scheme", "nothttps"),
        ("x-forwarded-proto", "nothttps"),
        ("x-forwarded-port", "1337"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-http-method-override", "DELETE"),
    ];
    let origin = Origin::start().await;
    origin.fallback(|_, _| Reply::ok("x", &[MAX_AGE]));
    let site = "[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n[edge.sites.key]\nignore_params = [\"utm_source\"]\n";
    let (edge, _dir) = edge_with_config(&origin, site);
    let mut req = client().get(format!("{}/fwd/a?x=1&utm_source=evil&y=2", edge.url("edge http")));
    for (name, value) in hostile {
        req = req.header(name, value);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/fwd/a?x=1&y=2", "an ignored parameter reached the origin");
    for (name, _) in &hostile[..7] {
        if *name != "x-forwarded-proto" {
            assert_eq!(seen[0].header(name), "", "{name} reached the origin");
        }
    }
    assert_eq!(seen[0].header("x-forwarded-proto"), "http", "the edge says how the request came");
    assert_eq!(seen[0].header("x-forwarded-for"), "127.0.0.1", "a client's own X-Forwarded-For was kept");
    assert_eq!(seen[0].header("x-http-method-override"), "");

    // A trusted proxy's forwarding fields pass, and the client address is appended.
    let origin = Origin::start().await;
    origin.fallback(|_, _| Reply::ok("x", &[MAX_AGE]));
    let (edge, _dir) = edge_with_config(&origin, &format!("trusted_proxies = [\"127.0.0.0/8\"]\n{site}"));
    let mut req = client().get(format!("{}/fwd/b", edge.url("edge http")));
    for (name, value) in &hostile[..8] {
        req = req.header(*name, *value);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let seen = origin.requests();
    assert_eq!(seen[0].header("x-forwarded-host"), "evil.example");
    assert_eq!(seen[0].header("forwarded"), "host=evil.example;proto=https");
    assert_eq!(seen[0].header("x-forwarded-proto"), "nothttps");
    assert_eq!(seen[0].header("x-forwarded-for"), "6.6.6.6, 127.0.0.1");
}
