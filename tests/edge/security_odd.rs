//! Clean answers for odd cases (issue 16, item 8), with raw sockets on both sides: CONNECT is
//! answered by the edge; an unsolicited `101` and statuses outside 100–599 from an origin are
//! 502 and never stored; `Content-Length` with `Transfer-Encoding` is framed by the latter
//! (RFC 9112 §6.3) and relayed with one consistent framing; a revalidation whose new body is cut
//! short serves the stale copy (stale-if-error) or a clean 502 and stores nothing.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use crate::support::edge::edge;
use crate::support::http::get;
use crate::support::origin::{Origin, Reply};
use crate::support::raw::{Piece, RawOrigin, exchange};

/// The one response the edge sends back to `request`.
async fn raw(addr: &str, request: &str) -> String {
    String::from_utf8_lossy(&exchange(addr, request.as_bytes()).await).into_owned()
}

fn bytes(s: &str) -> Vec<Piece> {
    vec![Piece::Bytes(s.as_bytes().to_vec())]
}

/// The head of a raw response, lowercased, and its body.
fn split(response: &str) -> (String, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_gets_405_from_the_edge_and_reaches_no_origin() {
    let origin = Origin::start().await;
    origin.fallback(|_, _| Reply::ok("tunnel", &[]));
    let edge = edge(&origin, &[]);
    let target = origin.addr.to_string();
    let addr = edge.addr("edge http");
    for request in [
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"),
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let got = raw(&addr, &request).await;
        let (head, _) = split(&got);
        assert!(head.starts_with("http/1.1 405"), "{request:?} → {got:?}");
        assert!(head.contains("\r\nallow: get, head"), "{got:?}");
    }
    // Over HTTP/2 (h2c with prior knowledge), a CONNECT is a stream like any other.
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req =
        http::Request::connect(target.as_str()).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.status(), 405);
    assert!(res.headers().get("allow").is_some());
    assert!(origin.requests().is_empty(), "a CONNECT reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_101_or_a_status_outside_100_to_599_is_a_502_and_not_stored() {
    let origin = RawOrigin::start(|head, _| {
        let path = head.split_whitespace().nth(1).unwrap_or("");
        let status = match path {
            "/odd/101" => {
                return bytes(
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x01\x05hello",
                );
            }
            "/odd/600" => "600 Beyond",
            "/odd/999" => "999 Odd",
            "/odd/099" => "099 Low",
            // Informational answers before the final one are skipped, as they should be.
            "/odd/103" => {
                return bytes(
                    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
                );
            }
            _ => "200 OK",
        };
        bytes(&format!(
            "HTTP/1.1 {status}\r\nCache-Control: max-age=300\r\nContent-Length: 2\r\n\r\nhi"
        ))
    })
    .await;
    let edge = crate::support::edge::edge_with_config(
        &Origin::start().await,
        &format!("[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n", origin.url),
    )
    .0;
    let base = edge.url("edge http");
    for path in ["/odd/101", "/odd/600", "/odd/999", "/odd/099"] {
        for _ in 0..2 {
            let got = get(&format!("{base}{path}"), &[]).await;
            assert_eq!(got.status, 502, "{path}: {}", got.cache());
            assert!(!got.cache().contains("stored"), "{path}: {}", got.cache());
        }
        let asked = origin.heads().iter().filter(|h| h.contains(&format!("GET {path} "))).count();
        assert_eq!(asked, 2, "{path}: not stored, so asked twice");
    }
    // Passed-through methods get the same treatment.
    let post =
        crate::support::http::send(crate::support::http::client().post(format!("{base}/odd/999")).body("x"))
            .await;
    assert_eq!(post.status, 502);
    // The edge itself is fine, and ordinary answers from the same origin are served.
    assert_eq!(get(&format!("{base}/odd/ok"), &[]).await.text(), "hi");
    let early = get(&format!("{base}/odd/103"), &[]).await;
    assert_eq!((early.status, early.text().as_str()), (200, "hi"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_status_says_stored_only_when_the_response_was_stored() {
    let origin = RawOrigin::start(|head, _| {
        let path = head.split_whitespace().nth(1).unwrap_or("");
        let (len, chunked) = match path {
            "/stored/big-chunked" => (1 << 20, true),
            "/stored/small-chunked" => (1000, true),
            _ => (1000, false),
        };
        let framing =
            if chunked { "Transfer-Encoding: chunked".to_owned() } else { format!("Content-Length: {len}") };
        vec![
            Piece::Bytes(
                format!("HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n{framing}\r\n\r\n").into_bytes(),
            ),
            Piece::Pattern { len, chunked },
        ]
    })
    .await;
    let edge = crate::support::edge::edge_with_config(
        &Origin::start().await,
        &format!(
            "[edge.cache]\nsize = \"4MiB\"\nmax_object_size = \"256KiB\"\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n",
            origin.url
        ),
    )
    .0;
    let base = edge.url("edge http");
    // Chunked and too big: learnt while streaming; never claimed, never a hit.
    for _ in 0..2 {
        let got = get(&format!("{base}/stored/big-chunked"), &[]).await;
        assert_eq!(got.body.len(), 1 << 20);
        assert!(!got.cache().contains("stored") && !got.hit(), "{}", got.cache());
    }
    // A length that fits: claimed at once, and true.
    let got = get(&format!("{base}/stored/sized"), &[]).await;
    assert!(got.cache().contains("; stored"), "{}", got.cache());
    assert!(get(&format!("{base}/stored/sized"), &[]).await.hit());
    // Chunked and small, asked for a range: the answer waits for the whole body, so it knows.
    let got = get(&format!("{base}/stored/small-chunked"), &[("range", "bytes=0-9")]).await;
    assert_eq!(got.status, 206);
    assert!(got.cache().contains("; stored"), "{}", got.cache());
    assert!(get(&format!("{base}/stored/small-chunked"), &[]).await.hit());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_framed_by_transfer_encoding() {
    let origin = RawOrigin::start(|head, _| {
        let path = head.split_whitespace().nth(1).unwrap_or("");
        // A Content-Length smaller, then larger, than the chunked body.
        let cl = if path.ends_with("short") { 5 } else { 50 };
        bytes(&format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: {cl}\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n"
        ))
    })
    .await;
    let edge = crate::support::edge::edge_with_config(
        &Origin::start().await,
        &format!("[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n", origin.url),
    )
    .0;
    let addr = edge.addr("edge http");
    for path in ["/te/short", "/te/long"] {
        for n in 1..=2 {
            let got =
                raw(&addr, &format!("GET {path} HTTP/1.1\r\nHost: x.example\r\nConnection: close\r\n\r\n"))
                    .await;
            let (head, body) = split(&got);
            assert!(head.starts_with("http/1.1 200"), "{path} #{n}: {got:?}");
            let chunked = head.contains("\r\ntransfer-encoding: chunked");
            let length = head.lines().find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned));
            // One framing, and it describes the body that follows.
            match (chunked, length) {
                (true, None) => {
                    assert_eq!(body.to_ascii_lowercase(), "b\r\nhello world\r\n0\r\n\r\n", "{path} #{n}");
                }
                (false, Some(len)) => {
                    assert_eq!(len, "11", "{path} #{n}: {got:?}");
                    assert_eq!(body, "hello world", "{path} #{n}");
                }
                other => panic!("{path} #{n}: mismatched framing {other:?}: {got:?}"),
            }
            if n == 2 {
                assert!(head.contains("; hit"), "{path}: the whole body was stored: {got:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_revalidation_serves_stale_or_a_clean_502_and_stores_nothing() {
    // First answer: stale on arrival (Age past max-age), with a validator. Every later answer
    // (the revalidations) announces 20 bytes, sends 10 and closes.
    let origin = RawOrigin::start(|head, _| {
        let sie = head.contains("GET /reval/sie ");
        let revalidation = head.to_ascii_lowercase().contains("if-none-match");
        if !revalidation {
            let cc = if sie { "max-age=1, stale-if-error=600" } else { "max-age=1" };
            return bytes(&format!(
                "HTTP/1.1 200 OK\r\nCache-Control: {cc}\r\nAge: 30\r\nETag: \"v1\"\r\nContent-Length: 9\r\n\r\nold-value"
            ));
        }
        vec![
            Piece::Bytes(
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nETag: \"v2\"\r\nContent-Length: 20\r\n\r\n0123456789"
                    .to_vec(),
            ),
            Piece::Close,
        ]
    })
    .await;
    let edge = crate::support::edge::edge_with_config(
        &Origin::start().await,
        &format!("[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n", origin.url),
    )
    .0;
    let base = edge.url("edge http");
    for (path, sie) in [("/reval/sie", true), ("/reval/plain", false)] {
        let first = get(&format!("{base}{path}"), &[]).await;
        assert_eq!(first.text(), "old-value", "{path}");
        for _ in 0..2 {
            let res = crate::support::http::client().get(format!("{base}{path}")).send().await.unwrap();
            let status = res.status().as_u16();
            let cache =
                res.headers().get("cache-status").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            let body = res.bytes().await;
            if sie {
                assert_eq!(status, 200, "{path}: {cache}");
                assert_eq!(&body.unwrap()[..], b"old-value", "{path}: {cache}");
                assert!(cache.contains("stale-if-error"), "{path}: {cache}");
            } else {
                assert_eq!(status, 502, "{path}: {cache}");
                assert!(body.is_ok(), "{path}: the 502 is complete");
            }
            assert!(!cache.contains("stored"), "{path}: {cache}");
        }
        // Nothing replaced the stale entry: each request revalidated again.
        let asked = origin.heads().iter().filter(|h| h.contains(&format!("GET {path} "))).count();
        assert_eq!(asked, 3, "{path}");
    }
}
