//! What clients ask for: request cache directives, `HEAD`, conditional requests, byte
//! ranges, and unsafe methods that pass through and invalidate.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use crate::support;
use crate::support::edge::edge;
use crate::support::http::{client, get, send};
use crate::support::origin::{Origin, Reply};
const MAX_AGE: (&str, &str) = ("cache-control", "max-age=300");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_directives() {
    let origin = Origin::start().await;
    for p in ["/req/no-cache", "/req/max-age", "/req/min-fresh", "/req/pragma"] {
        origin.fixed(p, Reply::ok("x", &[MAX_AGE]));
    }
    origin.fixed("/req/stale", Reply::ok("x", &[("cache-control", "max-age=60"), ("age", "100")]));
    let edge = edge(&origin, &[]);
    let base = edge.url("edge http");
    let cases: [(&str, (&str, &str)); 4] = [
        ("/req/no-cache", ("cache-control", "no-cache")),
        ("/req/max-age", ("cache-control", "max-age=0")),
        ("/req/min-fresh", ("cache-control", "min-fresh=1000")),
        ("/req/pragma", ("pragma", "no-cache")),
    ];
    for (path, header) in cases {
        get(&format!("{base}{path}"), &[]).await;
        let got = get(&format!("{base}{path}"), &[header]).await;
        assert!(got.cache().contains("fwd=request"), "{path}: {}", got.cache());
        assert_eq!(origin.hits(path), 2, "{path}");
        // Without the directive the (refreshed) entry is a hit again.
        assert!(get(&format!("{base}{path}"), &[]).await.cache().contains("hit"), "{path}");
    }
    let stale = format!("{base}/req/stale");
    get(&stale, &[]).await;
    let got = get(&stale, &[("cache-control", "max-stale=1000")]).await;
    assert!(got.cache().contains("hit") && got.cache().contains("max-stale"), "{}", got.cache());
    assert_eq!(origin.hits("/req/stale"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_if_cached_is_504_on_a_miss() {
    let origin = Origin::start().await;
    origin.fixed("/req/oic", Reply::ok("cached", &[MAX_AGE]));
    let edge = edge(&origin, &[]);
    let url = format!("{}/req/oic", edge.url("edge http"));
    let miss = get(&url, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(miss.status, 504);
    assert_eq!(origin.hits("/req/oic"), 0);
    get(&url, &[]).await;
    let hit = get(&url, &[("cache-control", "only-if-cached")]).await;
    assert_eq!((hit.status, hit.text().as_str()), (200, "cached"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn head_is_answered_from_the_cached_get() {
    let origin = Origin::start().await;
    origin.fixed("/req/head", Reply::ok("0123456789", &[MAX_AGE, ("content-type", "text/plain")]));
    let edge = edge(&origin, &[]);
    let url = format!("{}/req/head", edge.url("edge http"));
    // A HEAD miss fetches the object with GET and caches it.
    let head = send(client().head(&url)).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(origin.seen("/req/head")[0].method, "GET");
    let head = send(client().head(&url)).await;
    assert!(head.cache().contains("hit"), "{}", head.cache());
    assert_eq!(head.header("content-length"), "10");
    assert_eq!(get(&url, &[]).await.text(), "0123456789");
    assert_eq!(origin.hits("/req/head"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_conditionals_get_304_from_the_cache() {
    let origin = Origin::start().await;
    let lm = "Tue, 15 Nov 1994 12:45:26 GMT";
    origin.fixed("/req/cond", Reply::ok("body", &[MAX_AGE, ("etag", "\"c1\""), ("last-modified", lm)]));
    let edge = edge(&origin, &[]);
    let url = format!("{}/req/cond", edge.url("edge http"));
    // On a miss the conditional is answered from the fetched response, not forwarded.
    let miss = get(&url, &[("if-none-match", "\"c1\"")]).await;
    assert_eq!(miss.status, 304);
    assert!(!origin.seen("/req/cond")[0].headers.contains_key("if-none-match"));
    let hit = get(&url, &[("if-none-match", "W/\"c0\", \"c1\"")]).await;
    assert_eq!(hit.status, 304);
    assert_eq!(hit.header("etag"), "\"c1\"");
    assert!(hit.cache().contains("hit"));
    assert_eq!(get(&url, &[("if-modified-since", lm)]).await.status, 304);
    assert_eq!(get(&url, &[("if-none-match", "\"other\"")]).await.status, 200);
    assert_eq!(get(&url, &[("if-match", "\"other\"")]).await.status, 412);
    assert_eq!(origin.hits("/req/cond"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_from_the_cached_object() {
    let origin = Origin::start().await;
    origin.fixed(
        "/req/range",
        Reply::ok(
            &"0123456789abcdefghij".repeat(20),
            &[MAX_AGE, ("content-type", "text/plain"), ("etag", "\"g\"")],
        ),
    );
    let edge = edge(&origin, &[]);
    let url = format!("{}/req/range", edge.url("edge http"));
    // A range miss fetches the whole object once (without Range) and answers from it.
    let first = get(&url, &[("range", "bytes=0-3")]).await;
    assert_eq!(first.status, 206);
    assert_eq!(first.text(), "0123");
    assert_eq!(first.header("content-range"), "bytes 0-3/400");
    assert!(!origin.seen("/req/range")[0].headers.contains_key("range"));

    let tail = get(&url, &[("range", "bytes=-5")]).await;
    assert_eq!((tail.status, tail.text().as_str()), (206, "fghij"));
    assert!(tail.cache().contains("hit"));

    // Nearby ranges are coalesced into one part.
    let near = get(&url, &[("range", "bytes=10-11, 0-1")]).await;
    assert_eq!((near.status, near.text().as_str()), (206, "0123456789ab"));
    assert_eq!(near.header("content-range"), "bytes 0-11/400");

    let multi = get(&url, &[("range", "bytes=0-1, 210-211")]).await;
    assert_eq!(multi.status, 206);
    let ctype = multi.header("content-type");
    let boundary = ctype.strip_prefix("multipart/byteranges; boundary=").expect("multipart");
    let body = multi.text();
    assert!(body.contains(&format!(
        "--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/400\r\n\r\n01"
    )));
    assert!(body.contains("Content-Range: bytes 210-211/400\r\n\r\nab"));
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));
    assert_eq!(multi.header("content-length"), body.len().to_string());

    let bad = get(&url, &[("range", "bytes=500-600")]).await;
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), "bytes */400");

    // If-Range with a different validator: the whole object.
    let whole = get(&url, &[("range", "bytes=0-3"), ("if-range", "\"old\"")]).await;
    assert_eq!((whole.status, whole.text().len()), (200, 400));
    assert_eq!(origin.hits("/req/range"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsafe_methods_pass_through_and_invalidate() {
    let origin = Origin::start().await;
    for p in ["/req/item", "/req/item-loc", "/req/item-failed", "/req/list"] {
        origin.fixed(p, Reply::ok("cached", &[MAX_AGE]));
    }
    let edge = edge(&origin, &[]);
    let base = edge.url("edge http");
    for p in ["/req/item", "/req/list", "/req/item-failed", "/req/item-loc"] {
        get(&format!("{base}{p}"), &[]).await;
    }
    // POST reaches the origin with its body; the response carries a same-origin Location.
    origin.route("/req/item", |seen, _| {
        if seen.method == "POST" {
            let self_url = format!("http://{}/req/item-loc", seen.headers["host"].to_str().unwrap());
            Reply::status(201, "created", &[("location", "/req/list"), ("content-location", &self_url)])
        } else {
            Reply::ok("cached", &[MAX_AGE])
        }
    });
    let posted = send(client().post(format!("{base}/req/item")).body("payload")).await;
    assert_eq!(posted.status, 201);
    assert!(posted.cache().contains("fwd=method"), "{}", posted.cache());
    assert_eq!(origin.seen("/req/item").last().unwrap().method, "POST");
    assert!(get(&format!("{base}/req/item"), &[]).await.cache().contains("fwd=uri-miss"));
    assert!(
        get(&format!("{base}/req/list"), &[]).await.cache().contains("fwd=uri-miss"),
        "Location invalidated"
    );
    let loc = get(&format!("{base}/req/item-loc"), &[]).await;
    assert!(loc.cache().contains("fwd=uri-miss"), "Content-Location invalidated: {}", loc.cache());

    // An error response invalidates nothing.
    origin.route("/req/item-failed", |seen, _| {
        if seen.method == "DELETE" { Reply::status(500, "no", &[]) } else { Reply::ok("cached", &[MAX_AGE]) }
    });
    let deleted = send(client().delete(format!("{base}/req/item-failed"))).await;
    assert_eq!(deleted.status, 500);
    assert!(get(&format!("{base}/req/item-failed"), &[]).await.cache().contains("hit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_bodies_over_the_limit_get_413() {
    let origin = Origin::start().await;
    origin.fixed("/req/upload", Reply::ok("stored", &[]));
    let (edge, _dir) = support::edge::edge_with_config(
        &origin,
        "[edge.limits]\nmax_body_size = \"1KiB\"\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n",
    );
    let url = format!("{}/req/upload", edge.url("edge http"));
    let small = send(client().post(&url).body("x".repeat(100))).await;
    assert_eq!((small.status, small.text().as_str()), (200, "stored"));
    let declared = send(client().post(&url).body("x".repeat(4096))).await;
    assert_eq!(declared.status, 413);
    // Without a Content-Length the limit is found while streaming.
    let chunks = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 1024]))),
    );
    let streamed = send(client().post(&url).body(reqwest::Body::wrap_stream(chunks))).await;
    assert_eq!(streamed.status, 413);
}
