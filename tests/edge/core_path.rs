//! The edge's core path against a real origin: miss → store → hit with `Age` and
//! `Cache-Status`, header hygiene both ways, `Via` and `X-Forwarded-*`.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use crate::support;
use crate::support::edge::edge;
use crate::support::http::get;
use crate::support::origin::{Origin, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn miss_then_hit_with_age_and_cache_status() {
    let origin = Origin::start().await;
    origin.fixed(
        "/core/a.css",
        Reply::ok(
            "body { color: red }",
            &[("cache-control", "max-age=60"), ("content-type", "text/css"), ("age", "5")],
        )
        // With its length known the first answer can say `stored` (a chunked body cannot
        // know it will fit when its head goes out; see `coalesce_*` tests).
        .sized(),
    );
    let edge = edge(&origin, &[]);
    let url = format!("{}/core/a.css", edge.url("edge http"));

    let first = get(&url, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "body { color: red }");
    assert!(first.cache().contains("fwd=uri-miss"), "{}", first.cache());
    assert!(first.cache().contains("fwd-status=200"), "{}", first.cache());
    assert!(first.cache().contains("stored"), "{}", first.cache());
    assert!(first.headers.contains_key("date"));

    let second = get(&url, &[]).await;
    assert_eq!(second.text(), "body { color: red }");
    assert!(second.cache().contains("; hit"), "{}", second.cache());
    assert!(second.cache().contains("ttl="), "{}", second.cache());
    // The origin's Age (5) is carried over and grows (RFC 9111 §4.2.3).
    let age: u64 = second.header("age").parse().expect("numeric Age");
    assert!(age >= 5, "age {age}");
    assert_eq!(second.header("content-type"), "text/css");
    assert_eq!(second.header("date"), first.header("date"), "Date is the origin's, kept");
    assert_eq!(origin.hits("/core/a.css"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn headers_are_cleaned_both_ways() {
    let origin = Origin::start().await;
    origin.fixed(
        "/core/hygiene",
        Reply::ok(
            "x",
            &[
                ("cache-control", "max-age=60"),
                ("connection", "x-origin-secret"),
                ("x-origin-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("surrogate-key", "one two"),
                ("cache-tag", "three"),
                ("cdn-cache-control", "max-age=30"),
                ("surrogate-control", "max-age=20"),
                ("x-kept", "yes"),
            ],
        ),
    );
    let edge = edge(&origin, &[]);
    let url = format!("{}/core/hygiene", edge.url("edge http"));
    // A miss, then hits: the first built from the entry, the later ones from the ready head
    // the thread keeps for an entry hit again (`cache/heads.rs`), whose `Cache-Status` and
    // `Via` are empty placeholders until the response is finished.
    for i in 0..5 {
        let got = get(
            &url,
            &[("connection", "x-client-secret"), ("x-client-secret", "1"), ("x-forwarded-for", "10.9.8.7")],
        )
        .await;
        let once = if i == 0 {
            &["via", "cache-status"][..]
        } else {
            &["via", "cache-status", "age", "content-length"]
        };
        for one in once {
            let values: Vec<_> = got.headers.get_all(*one).iter().collect();
            assert!(values.len() == 1 && !values[0].is_empty(), "{one}: {values:?}");
        }
        for gone in ["x-origin-secret", "keep-alive", "surrogate-key", "cache-tag", "surrogate-control"] {
            assert!(!got.headers.contains_key(gone), "{gone} reached the client");
        }
        // CDN-Cache-Control targets every CDN cache on the path, so it goes on (RFC 9213 §3).
        assert_eq!(got.header("cdn-cache-control"), "max-age=30");
        assert_eq!(got.header("x-kept"), "yes");
        assert!(got.header("via").contains("stratus"), "via: {}", got.header("via"));
        // CDN-Cache-Control (30) wins over Surrogate-Control and Cache-Control.
        assert!(got.cache().contains("ttl=") && !got.cache().contains("ttl=6"), "{}", got.cache());
    }
    let seen = origin.seen("/core/hygiene");
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert!(!h.contains_key("x-client-secret"), "connection-named field forwarded");
    // The client is no trusted proxy: its own X-Forwarded-For is replaced, not appended to
    // (docs/security.md, "Unkeyed inputs").
    assert_eq!(h.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    assert!(h.get("via").unwrap().to_str().unwrap().contains("stratus"));
    // origin_host defaults to true: the origin sees its own host.
    assert_eq!(h.get("host").unwrap().to_str().unwrap(), origin.url.trim_start_matches("http://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origin_url_path_is_a_prefix() {
    let origin = Origin::start().await;
    origin.fixed("/bucket/core/p.txt", Reply::ok("prefixed", &[("cache-control", "max-age=60")]));
    let mut cmd = support::stratus();
    let origin_url = format!("{}/bucket", origin.url);
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &origin_url]);
    let edge = support::Proc::start(cmd, &["edge http"]);
    let got = get(&format!("{}/core/p.txt", edge.url("edge http")), &[]).await;
    assert_eq!(got.text(), "prefixed");
    assert_eq!(origin.hits("/bucket/core/p.txt"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_origin_is_a_502_with_cache_status() {
    // A port nothing listens on: bind, note, drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &format!("http://127.0.0.1:{port}")]);
    let edge = support::Proc::start(cmd, &["edge http"]);
    let got = get(&format!("{}/core/down", edge.url("edge http")), &[]).await;
    assert_eq!(got.status, 502);
    assert!(got.headers.contains_key("cache-status"));
    assert!(!got.text().contains("127.0.0.1"), "internal detail leaked: {}", got.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_prior_knowledge_shares_the_cache_with_http1() {
    let origin = Origin::start().await;
    origin.fixed("/core/h2", Reply::ok("both", &[("cache-control", "max-age=60")]));
    let edge = edge(&origin, &[]);
    let url = format!("{}/core/h2", edge.url("edge http"));
    let first = get(&url, &[]).await;
    assert!(first.cache().contains("fwd=uri-miss"));
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    let res = h2.get(&url).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let cache = res.headers().get("cache-status").unwrap().to_str().unwrap().to_owned();
    assert_eq!(res.text().await.unwrap(), "both");
    assert!(cache.contains("hit"), "{cache}");
    assert_eq!(origin.hits("/core/h2"), 1);
}

#[test]
fn tls_listener_with_an_unusable_certificate_fails_naming_the_file() {
    let dir = support::tempdir();
    let cert = support::write_file(dir.path(), "c.pem", "");
    let key = support::write_file(dir.path(), "k.pem", "");
    let cfg = format!(
        "[edge]\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\ntls = true\n[edge.listeners.default_certificate]\ncert = {cert:?}\nkey = {key:?}\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"http://127.0.0.1:9\"]\n"
    );
    let path = support::write_file(dir.path(), "edge.toml", &cfg);
    let (code, _out, err) = support::run_stratus(&["edge", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("c.pem") && err.contains("no CERTIFICATE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_in_flight_responses_finish() {
    let origin = Origin::start().await;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    origin.fixed(
        "/core/slow",
        Reply::ok("", &[("cache-control", "max-age=60")]).parts(vec![
            support::origin::Part::Gate(gate.clone()),
            support::origin::Part::Data(bytes::Bytes::from_static(b"finished")),
        ]),
    );
    let mut edge = edge(&origin, &[]);
    let url = format!("{}/core/slow", edge.url("edge http"));
    let pending = tokio::spawn(async move { get(&url, &[]).await });
    support::until("the request reached the origin", std::time::Duration::from_secs(10), || async {
        (origin.hits("/core/slow") == 1).then_some(())
    })
    .await;
    edge.signal("TERM");
    gate.add_permits(1);
    assert_eq!(pending.await.unwrap().text(), "finished");
    assert_eq!(edge.wait_exit(std::time::Duration::from_secs(20)), Some(0));
}
