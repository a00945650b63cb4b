//! HTTP caching conformance (issue #22), each item as a client of the edge sees it: 1xx
//! responses forwarded and never stored (HTTP/1.1 here, HTTP/2 in `http2.rs` and `tls.rs`), `CDN-Cache-Control` as a structured field, `Age`
//! lists, HTTP dates read leniently, the site's `stale_if_error`, and `Vary` on
//! `Accept-Language`/`Accept-Encoding` normalised. Responses are made stale at once with an `Age` from the origin, so no test
//! waits for time to pass.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use crate::support::edge::{edge, edge_with_config};
use crate::support::http::get;
use crate::support::origin::{Origin, Reply};
use crate::support::raw::{Piece, RawOrigin, read_head_blocking, read_response};
use crate::support::{self, stratus};

/// An edge in front of a raw origin (`--origin` flag), HTTP listener only.
fn edge_for(url: &str) -> support::Proc {
    let mut cmd = stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", url]);
    support::Proc::start(cmd, &["edge http"])
}

fn connect(addr: &str) -> std::net::TcpStream {
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp
}

/// An origin that answers every request `102 Processing`, then `201 Created` ("created").
pub(crate) async fn processing_origin() -> RawOrigin {
    RawOrigin::start(|_, _| {
        vec![
            Piece::Bytes(b"HTTP/1.1 102 Processing\r\n\r\n".to_vec()),
            Piece::Bytes(b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated".to_vec()),
        ]
    })
    .await
}

/// The origin answers the first request with `102`, `103` (with `Link`s) and then the 200;
/// later requests with a plain 200.
pub(crate) async fn early_hints_origin() -> RawOrigin {
    RawOrigin::start(|_, n| {
        let mut out = Vec::new();
        if n == 1 {
            out.push(Piece::Bytes(b"HTTP/1.1 102 Processing\r\n\r\n".to_vec()));
            out.push(Piece::Bytes(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nLink: </app.js>; rel=preload; as=script\r\n\r\n"
                    .to_vec(),
            ));
        }
        let body = format!("final {n}");
        out.push(Piece::Bytes(
            format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nLink: </style.css>; rel=preload\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        ));
        out
    })
    .await
}

/// RFC 9110 §15.2: the origin's 102 and 103 reach an HTTP/1.1 client before the final
/// response, on the same connection, which stays usable; the stored response carries none
/// of them, so a hit sends no 1xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interim_responses_reach_http11_clients_first_and_are_not_stored() {
    let origin = early_hints_origin().await;
    let edge = edge_for(&origin.url);
    let addr = edge.addr("edge http");
    tokio::task::spawn_blocking(move || {
        let mut tcp = connect(&addr);
        tcp.write_all(b"GET /hints HTTP/1.1\r\nHost: a.test\r\n\r\n").unwrap();
        let first = read_head_blocking(&mut tcp);
        assert!(first.starts_with("HTTP/1.1 102 "), "{first}");
        let second = read_head_blocking(&mut tcp);
        assert!(second.starts_with("HTTP/1.1 103 "), "{second}");
        let links: Vec<&str> =
            second.lines().filter(|l| l.to_ascii_lowercase().starts_with("link:")).collect();
        assert_eq!(links.len(), 2, "{second}");
        assert!(links[0].contains("</style.css>") && links[1].contains("</app.js>"), "{second}");
        let final_response = read_response(&mut tcp, false);
        assert_eq!(final_response.status, 200, "{}", final_response.head);
        assert_eq!(final_response.body, b"final 1");
        // Same connection, in sync: a hit, with no interim response before it.
        tcp.write_all(b"GET /hints HTTP/1.1\r\nHost: a.test\r\n\r\n").unwrap();
        let hit = read_response(&mut tcp, false);
        assert_eq!(hit.status, 200, "{}", hit.head);
        assert_eq!(hit.body, b"final 1");
        assert!(hit.head.to_ascii_lowercase().contains("cache-status: stratus; hit"), "{}", hit.head);
    })
    .await
    .unwrap();
    assert_eq!(origin.heads().len(), 1);
}

/// A pass-through request (POST) gets the origin's `102 Processing` before its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interim_responses_reach_pass_through_requests() {
    let origin = processing_origin().await;
    let edge = edge_for(&origin.url);
    let addr = edge.addr("edge http");
    tokio::task::spawn_blocking(move || {
        let mut tcp = connect(&addr);
        tcp.write_all(b"POST /jobs HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n").unwrap();
        let interim = read_head_blocking(&mut tcp);
        assert!(interim.starts_with("HTTP/1.1 102 "), "{interim}");
        let created = read_response(&mut tcp, false);
        assert_eq!((created.status, created.body.as_slice()), (201, &b"created"[..]), "{}", created.head);
    })
    .await
    .unwrap();
}

/// RFC 9110 §15.2 forbids 1xx to HTTP/1.0 clients: they get the final response only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http10_clients_get_no_interim_responses() {
    let origin = early_hints_origin().await;
    let edge = edge_for(&origin.url);
    let addr = edge.addr("edge http");
    tokio::task::spawn_blocking(move || {
        let mut tcp = connect(&addr);
        tcp.write_all(b"GET /hints10 HTTP/1.0\r\nHost: a.test\r\n\r\n").unwrap();
        let response = read_response(&mut tcp, false);
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.body, b"final 1");
    })
    .await
    .unwrap();
}

/// RFC 9213 §2.1: CDN-Cache-Control is a structured dictionary. One that does not parse is
/// ignored whole (Cache-Control applies), a member of the wrong type is not used, and a valid
/// one wins over Cache-Control. It is forwarded as received (RFC 9213 §3), hits included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cdn_cache_control_is_a_structured_field() {
    let origin = Origin::start().await;
    let cases: &[(&str, &str, usize)] = &[
        // path, CDN-Cache-Control (next to Cache-Control: no-store), origin hits after two GETs
        ("/cdn/valid", "max-age=10000", 1),
        ("/cdn/unknown-type", "max-age=10000, &&&&&", 2),
        ("/cdn/wrong-type", "max-age=\"10000\"", 2),
        ("/cdn/uppercase-key", "MaX-aGe=10000", 2),
        ("/cdn/decimal", "max-age=1.5", 2),
        ("/cdn/extension", "foo, max-age=10000", 1),
    ];
    for (path, value, _) in cases {
        origin.fixed(path, Reply::ok("x", &[("cache-control", "no-store"), ("cdn-cache-control", value)]));
    }
    let edge = edge(&origin, &[]);
    for (path, value, want) in cases {
        let url = format!("{}{path}", edge.url("edge http"));
        for _ in 0..2 {
            assert_eq!(get(&url, &[]).await.header("cdn-cache-control"), *value);
        }
        assert_eq!(origin.hits(path), *want, "CDN-Cache-Control: {value}");
    }
}

/// RFC 9111 §5.1: `Age: 7200, 0` is used as 7200 (the first member), not ignored, so a
/// response with `max-age=3600` arrives stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn age_lists_use_their_first_member() {
    let origin = Origin::start().await;
    origin.fixed("/age/list", Reply::ok("x", &[("cache-control", "max-age=3600"), ("age", "7200, 0")]));
    origin.fixed("/age/plain", Reply::ok("x", &[("cache-control", "max-age=3600"), ("age", "0, 7200")]));
    let edge = edge(&origin, &[]);
    let base = edge.url("edge http");
    let first = get(&format!("{base}/age/list"), &[]).await;
    assert!(first.header("age").parse::<u64>().unwrap() >= 7200, "age {}", first.header("age"));
    let second = get(&format!("{base}/age/list"), &[]).await;
    assert!(!second.hit(), "{}", second.cache());
    assert_eq!(origin.hits("/age/list"), 2);
    get(&format!("{base}/age/plain"), &[]).await;
    assert!(get(&format!("{base}/age/plain"), &[]).await.hit());
    assert_eq!(origin.hits("/age/plain"), 1);
}

/// RFC 9111 §4.2: a cache reads HTTP dates case-insensitively, and a weekday that does not fit
/// the date changes nothing; another zone than GMT is still no date (already expired).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expires_dates_are_read_leniently() {
    let origin = Origin::start().await;
    let cases: &[(&str, &str, usize)] = &[
        ("/dates/upper-weekday", "THU, 18 Aug 2050 02:01:18 GMT", 1),
        ("/dates/upper-month", "Thu, 18 AUG 2050 02:01:18 GMT", 1),
        ("/dates/mixed-zone", "Thu, 18 Aug 2050 02:01:18 gMT", 1),
        ("/dates/asctime-wrong-weekday", "Thu Aug  8 02:01:18 2050", 1),
        ("/dates/utc", "Thu, 18 Aug 2050 02:01:18 UTC", 2),
    ];
    for (path, expires, _) in cases {
        origin.fixed(path, Reply::ok("x", &[("expires", expires)]));
    }
    let edge = edge(&origin, &[]);
    for (path, expires, want) in cases {
        let url = format!("{}{path}", edge.url("edge http"));
        get(&url, &[]).await;
        get(&url, &[]).await;
        assert_eq!(origin.hits(path), *want, "Expires: {expires}");
    }
}

const STALE_SITE: &str = r#"
[[edge.sites]]
hosts = ["*"]
origins = ["ORIGIN"]
stale_if_error = "60s"
"#;

/// The site's `stale_if_error` serves a stored response when the origin answers 5xx or is
/// unreachable, without `stale-if-error` in the response, within its bound; the origin's
/// `must-revalidate` still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn site_stale_if_error_covers_5xx_and_unreachable_origins() {
    let origin = Origin::start().await;
    // Already 20 s stale when it arrives (Age 30, max-age 10): within the 60 s bound.
    let fresh_then_failing = |headers: &'static [(&'static str, &'static str)]| {
        move |_: &support::origin::Seen, n: usize| {
            if n == 1 { Reply::ok("stored copy", headers) } else { Reply::status(503, "origin broke", &[]) }
        }
    };
    origin.route("/stale/5xx", fresh_then_failing(&[("cache-control", "max-age=10"), ("age", "30")]));
    origin.route("/stale/down", fresh_then_failing(&[("cache-control", "max-age=10"), ("age", "30")]));
    // 90 s stale: beyond the bound.
    origin.route("/stale/too-old", fresh_then_failing(&[("cache-control", "max-age=10"), ("age", "100")]));
    origin.route(
        "/stale/must-revalidate",
        fresh_then_failing(&[("cache-control", "max-age=10, must-revalidate"), ("age", "30")]),
    );
    let (edge, _dir) = edge_with_config(&origin, STALE_SITE);
    let base = edge.url("edge http");
    for path in ["/stale/5xx", "/stale/too-old", "/stale/must-revalidate"] {
        assert_eq!(get(&format!("{base}{path}"), &[]).await.text(), "stored copy");
    }
    let served = get(&format!("{base}/stale/5xx"), &[]).await;
    assert_eq!((served.status, served.text().as_str()), (200, "stored copy"));
    assert!(
        served.cache().contains("fwd=stale") && served.cache().contains("fwd-status=503"),
        "{}",
        served.cache()
    );
    assert_eq!(origin.hits("/stale/5xx"), 2);
    let too_old = get(&format!("{base}/stale/too-old"), &[]).await;
    assert_eq!(too_old.status, 503, "{}", too_old.cache());
    let strict = get(&format!("{base}/stale/must-revalidate"), &[]).await;
    assert_eq!(strict.status, 503, "{}", strict.cache());

    // Unreachable: the copy stored before the origin went down is served.
    assert_eq!(get(&format!("{base}/stale/down"), &[]).await.text(), "stored copy");
    origin.take_down();
    let served = get(&format!("{base}/stale/down"), &[]).await;
    assert_eq!((served.status, served.text().as_str()), (200, "stored copy"), "{}", served.cache());
    assert!(served.cache().contains("fwd=stale"), "{}", served.cache());
}

/// Without the site option, the same failure reaches the client (the default stays RFC 9111).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_stale_if_error_origin_errors_reach_the_client() {
    let origin = Origin::start().await;
    origin.route("/stale/off", |_, n| {
        if n == 1 {
            Reply::ok("stored copy", &[("cache-control", "max-age=10"), ("age", "30")])
        } else {
            Reply::status(503, "origin broke", &[])
        }
    });
    let edge = edge(&origin, &[]);
    let url = format!("{}/stale/off", edge.url("edge http"));
    get(&url, &[]).await;
    assert_eq!(get(&url, &[]).await.status, 503);
}

/// `Accept-Language` and `Accept-Encoding` values that mean the same (order, case,
/// whitespace, q-value spelling) share a variant; different ones do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vary_normalises_accept_language_and_accept_encoding() {
    let origin = Origin::start().await;
    origin.route("/vary/lang-norm", |seen, _| {
        let lang = seen.headers.get("accept-language").map_or("none", |v| v.to_str().unwrap());
        Reply::ok(&format!("for {lang}"), &[("cache-control", "max-age=300"), ("vary", "Accept-Language")])
    });
    origin.fixed(
        "/vary/enc-norm",
        Reply::ok("encoded", &[("cache-control", "max-age=300"), ("vary", "accept-encoding")]),
    );
    let edge = edge(&origin, &[]);
    let base = edge.url("edge http");
    let lang = format!("{base}/vary/lang-norm");
    assert_eq!(get(&lang, &[("accept-language", "en-US,fr;q=0.5")]).await.text(), "for en-US,fr;q=0.5");
    for same in ["fr;q=0.50, EN-us", "en-us ,  fr;q=0.5", "en-US;q=1.0, fr;q=0.500"] {
        let got = get(&lang, &[("accept-language", same)]).await;
        assert!(got.hit(), "{same}: {}", got.cache());
        assert_eq!(got.text(), "for en-US,fr;q=0.5");
    }
    let other = get(&lang, &[("accept-language", "fr, en-US;q=0.5")]).await;
    assert_eq!(other.text(), "for fr, en-US;q=0.5");
    assert_eq!(origin.hits("/vary/lang-norm"), 2);

    let enc = format!("{base}/vary/enc-norm");
    get(&enc, &[("accept-encoding", "gzip, br")]).await;
    for same in ["br, gzip", "BR,GZIP", "gzip;q=1, br"] {
        assert!(get(&enc, &[("accept-encoding", same)]).await.hit(), "{same}");
    }
    assert!(!get(&enc, &[("accept-encoding", "gzip")]).await.hit());
    assert_eq!(origin.hits("/vary/enc-norm"), 2);
}
