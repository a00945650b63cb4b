//! Storability, freshness and revalidation (RFC 9111, RFC 9213, RFC 5861) as a client of the
//! edge sees them. Responses are made stale at once with an `Age` header from the origin, so
//! no test waits for time to pass.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::support::edge::{edge, edge_with_config};
use crate::support::http::get;
use crate::support::origin::{Origin, Part, Reply};
use crate::support::{self, until};

/// Path, origin status, origin headers, origin requests after two GETs.
type Case<'a> = (&'a str, u16, Vec<(&'a str, &'a str)>, usize);

/// GETs `path` twice and returns how many requests reached the origin.
async fn twice(origin: &Origin, edge: &support::Proc, path: &str, headers: &[(&str, &str)]) -> usize {
    let url = format!("{}{path}", edge.url("edge http"));
    get(&url, headers).await;
    get(&url, headers).await;
    origin.hits(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storability_rules() {
    let origin = Origin::start().await;
    let long_ago = "Tue, 15 Nov 1994 12:45:26 GMT".to_owned();
    let cases: Vec<Case<'_>> = vec![
        ("/fresh/explicit", 200, vec![("cache-control", "max-age=60")], 1),
        ("/fresh/s-maxage-zero", 200, vec![("cache-control", "max-age=60, s-maxage=0")], 2),
        ("/fresh/no-store", 200, vec![("cache-control", "no-store, max-age=60")], 2),
        ("/fresh/private", 200, vec![("cache-control", "private, max-age=60")], 2),
        ("/fresh/error-explicit", 500, vec![("cache-control", "max-age=60")], 1),
        ("/fresh/error-plain", 500, vec![], 2),
        ("/fresh/heuristic-200", 200, vec![("last-modified", &long_ago)], 1),
        ("/fresh/heuristic-404", 404, vec![("last-modified", &long_ago)], 1),
        ("/fresh/not-heuristic-302", 302, vec![("last-modified", &long_ago), ("location", "/x")], 2),
        ("/fresh/nothing", 200, vec![], 2),
        ("/fresh/duplicate", 200, vec![("cache-control", "max-age=60, max-age=30")], 2),
        ("/fresh/bad-value", 200, vec![("cache-control", "max-age=soon")], 2),
        ("/fresh/expires-zero", 200, vec![("expires", "0")], 2),
        ("/fresh/set-cookie", 200, vec![("cache-control", "max-age=60"), ("set-cookie", "a=1")], 2),
        ("/fresh/vary-star", 200, vec![("cache-control", "max-age=60"), ("vary", "*")], 2),
        // RFC 9213: the field targeted at CDNs wins over Cache-Control, both ways.
        (
            "/fresh/cdn-over-cc",
            200,
            vec![("cache-control", "no-store"), ("cdn-cache-control", "max-age=60")],
            1,
        ),
        (
            "/fresh/cdn-no-store",
            200,
            vec![("cache-control", "max-age=60"), ("cdn-cache-control", "no-store")],
            2,
        ),
        ("/fresh/surrogate", 200, vec![("cache-control", "private"), ("surrogate-control", "max-age=60")], 1),
    ];
    for (path, status, headers, _) in &cases {
        origin.fixed(path, Reply::status(*status, "x", headers));
    }
    let edge = edge(&origin, &[]);
    for (path, _, _, want) in &cases {
        assert_eq!(twice(&origin, &edge, path, &[]).await, *want, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authorization_needs_explicit_permission_and_set_cookie_survives_hits() {
    let origin = Origin::start().await;
    origin.fixed("/fresh/auth", Reply::ok("x", &[("cache-control", "max-age=60")]));
    origin.fixed("/fresh/auth-public", Reply::ok("x", &[("cache-control", "public, max-age=60")]));
    let mut cookies = Reply::ok("x", &[("cache-control", "s-maxage=60")]);
    cookies.headers.push(("set-cookie".into(), "a=1".into()));
    cookies.headers.push(("set-cookie".into(), "b=2".into()));
    origin.fixed("/fresh/cookies", cookies);
    let edge = edge(&origin, &[]);
    let auth = [("authorization", "Bearer user")];
    assert_eq!(twice(&origin, &edge, "/fresh/auth", &auth).await, 2);
    assert_eq!(twice(&origin, &edge, "/fresh/auth-public", &auth).await, 1);
    let url = format!("{}/fresh/cookies", edge.url("edge http"));
    get(&url, &[]).await;
    let hit = get(&url, &[]).await;
    assert!(hit.cache().contains("hit"), "{}", hit.cache());
    let cookies: Vec<_> =
        hit.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(cookies, ["a=1", "b=2"], "repeated fields kept apart on hits");
    // The Date of a hit is the origin's, in IMF-fixdate form.
    assert!(hit.header("date").ends_with(" GMT"), "{}", hit.header("date"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revalidation_with_validators_and_304_updates_headers() {
    let origin = Origin::start().await;
    origin.route("/fresh/reval", |seen, _| {
        let validated = seen.headers.get("if-none-match").is_some_and(|v| v == "\"r1\"");
        let ims = seen.headers.contains_key("if-modified-since");
        if validated && ims {
            Reply::status(
                304,
                "",
                &[("cache-control", "max-age=300"), ("etag", "\"r1\""), ("x-version", "2")],
            )
        } else {
            Reply::ok(
                "original",
                &[
                    ("cache-control", "max-age=60"),
                    ("age", "100"),
                    ("etag", "\"r1\""),
                    ("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT"),
                    ("x-version", "1"),
                ],
            )
        }
    });
    origin.route("/fresh/replace", |_, n| {
        Reply::ok(
            &format!("version {n}"),
            &[("cache-control", "max-age=60"), ("age", "100"), ("etag", "\"e\"")],
        )
    });
    let edge = edge(&origin, &[]);
    let url = format!("{}/fresh/reval", edge.url("edge http"));
    let first = get(&url, &[]).await;
    assert_eq!(first.header("x-version"), "1");
    let second = get(&url, &[]).await;
    assert_eq!(second.text(), "original");
    assert_eq!(second.header("x-version"), "2", "the 304's fields replace the stored ones");
    assert!(
        second.cache().contains("fwd=stale") && second.cache().contains("fwd-status=304"),
        "{}",
        second.cache()
    );
    let third = get(&url, &[]).await;
    assert!(third.cache().contains("hit"), "{}", third.cache());
    assert_eq!(third.header("x-version"), "2");
    assert_eq!(origin.hits("/fresh/reval"), 2);

    // A 200 to the conditional request replaces the entry.
    let url = format!("{}/fresh/replace", edge.url("edge http"));
    assert_eq!(get(&url, &[]).await.text(), "version 1");
    let got = get(&url, &[]).await;
    assert_eq!(got.text(), "version 2");
    assert!(got.cache().contains("fwd=stale") && got.cache().contains("fwd-status=200"), "{}", got.cache());
    assert_eq!(origin.seen("/fresh/replace")[1].headers.get("if-none-match").unwrap(), "\"e\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_cache_responses_are_revalidated_every_time() {
    let origin = Origin::start().await;
    origin.route("/fresh/no-cache", |seen, _| {
        if seen.headers.contains_key("if-none-match") {
            Reply::status(304, "", &[("cache-control", "no-cache"), ("etag", "\"n\"")])
        } else {
            Reply::ok("body", &[("cache-control", "no-cache"), ("etag", "\"n\"")])
        }
    });
    let edge = edge(&origin, &[]);
    let url = format!("{}/fresh/no-cache", edge.url("edge http"));
    for _ in 0..3 {
        assert_eq!(get(&url, &[]).await.text(), "body");
    }
    let seen = origin.seen("/fresh/no-cache");
    assert_eq!(seen.len(), 3);
    assert!(seen[1..].iter().all(|s| s.headers.contains_key("if-none-match")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_while_revalidate_serves_stale_and_revalidates_once() {
    let origin = Origin::start().await;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    origin.route("/fresh/swr", move |_, n| {
        if n == 1 {
            Reply::ok("old", &[("cache-control", "max-age=60, stale-while-revalidate=600"), ("age", "100")])
        } else {
            Reply::ok("", &[("cache-control", "max-age=600")])
                .parts(vec![Part::Gate(g.clone()), Part::Data(Bytes::from_static(b"new"))])
        }
    });
    let edge = edge(&origin, &[]);
    let url = format!("{}/fresh/swr", edge.url("edge http"));
    get(&url, &[]).await;
    for _ in 0..10 {
        let got = get(&url, &[]).await;
        assert_eq!(got.text(), "old");
        assert!(got.cache().contains("stale-while-revalidate"), "{}", got.cache());
    }
    assert_eq!(origin.hits("/fresh/swr"), 2, "one background revalidation for ten stale hits");
    gate.add_permits(1);
    until("the revalidated body is served", Duration::from_secs(10), || async {
        let got = get(&url, &[]).await;
        (got.text() == "new").then_some(())
    })
    .await;
    assert_eq!(origin.hits("/fresh/swr"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_if_error_covers_errors_resets_and_timeouts() {
    let origin = Origin::start().await;
    let stale = ("cache-control", "max-age=60, stale-if-error=600");
    for path in ["/fresh/sie-503", "/fresh/sie-reset", "/fresh/sie-slow", "/fresh/no-sie"] {
        let cc = if path == "/fresh/no-sie" { ("cache-control", "max-age=60") } else { stale };
        origin.route(path, move |_, n| match (n, path) {
            (1, _) => Reply::ok("stale copy", &[cc, ("age", "100")]),
            (_, "/fresh/sie-reset") => Reply::ok("", &[]).parts(vec![Part::Reset]),
            (_, "/fresh/sie-slow") => Reply::ok("late", &[]).delayed(Duration::from_secs(5)),
            _ => Reply::status(503, "origin down", &[]),
        });
    }
    let (edge, _dir) = edge_with_config(
        &origin,
        "[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n[edge.sites.timeouts]\nfirst_byte = \"500ms\"\n",
    );
    for path in ["/fresh/sie-503", "/fresh/sie-reset", "/fresh/sie-slow"] {
        let url = format!("{}{path}", edge.url("edge http"));
        get(&url, &[]).await;
        let got = get(&url, &[]).await;
        assert_eq!(got.status, 200, "{path}");
        assert_eq!(got.text(), "stale copy", "{path}");
        assert!(got.cache().contains("detail=stale-if-error"), "{path}: {}", got.cache());
    }
    let url = format!("{}/fresh/no-sie", edge.url("edge http"));
    get(&url, &[]).await;
    let got = get(&url, &[]).await;
    assert_eq!(got.status, 503);
    assert_eq!(got.text(), "origin down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn must_and_proxy_revalidate_refuse_max_stale() {
    let origin = Origin::start().await;
    origin.fixed(
        "/fresh/must",
        Reply::ok("m", &[("cache-control", "max-age=60, must-revalidate"), ("age", "100")]),
    );
    origin.fixed("/fresh/may", Reply::ok("m", &[("cache-control", "max-age=60"), ("age", "100")]));
    origin.fixed(
        "/fresh/proxy",
        Reply::ok("m", &[("cache-control", "max-age=60, proxy-revalidate"), ("age", "100")]),
    );
    let edge = edge(&origin, &[]);
    let stale_ok = [("cache-control", "max-stale=1000")];
    assert_eq!(twice(&origin, &edge, "/fresh/must", &stale_ok).await, 2);
    assert_eq!(twice(&origin, &edge, "/fresh/may", &stale_ok).await, 1);
    assert_eq!(twice(&origin, &edge, "/fresh/proxy", &stale_ok).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_if_error_covers_an_unreachable_origin() {
    let origin = Origin::start().await;
    origin.fixed(
        "/fresh/sie-gone",
        Reply::ok("stale copy", &[("cache-control", "max-age=60, stale-if-error=600"), ("age", "100")]),
    );
    let forwarder = support::net::Forwarder::start(&origin.url).await;
    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &forwarder.url]);
    let edge = support::Proc::start(cmd, &["edge http"]);
    let url = format!("{}/fresh/sie-gone", edge.url("edge http"));
    assert_eq!(get(&url, &[]).await.text(), "stale copy");
    forwarder.take_down();
    let got = get(&url, &[]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "stale copy"));
    assert!(got.cache().contains("detail=stale-if-error"), "{}", got.cache());
    assert_eq!(origin.hits("/fresh/sie-gone"), 1);
}
