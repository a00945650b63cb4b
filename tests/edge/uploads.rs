//! Request bodies the client breaks — malformed chunked framing, an upload that stops half-way,
//! a client that disconnects mid-upload — are the client's fault: 400 or 408 (no answer for a
//! client that is gone), never a 502/504, and never a strike against a healthy origin's passive
//! health checks, which with `max_fails = 1` would otherwise move the site to its second origin.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::edge::edge_with_toml;
use crate::support::http::{client, get_on};
use crate::support::origin::Origin;

/// Generous: the edge answers within seconds; a hanging one fails after this.
const DEADLINE: Duration = Duration::from_secs(30);

/// Two sites in front of origins `a` then `b`, where one failure takes an origin down for
/// 10 minutes: `*` waits 10 s for the origin's head (the client's 1 s stall limit fires first),
/// `quick.test` only 300 ms (the origin's timeout fires while the edge waits for the client).
fn config(a: &Origin, b: &Origin) -> String {
    let site = |host: &str, first_byte: &str| {
        format!(
            "[[edge.sites]]\nhosts = [\"{host}\"]\norigins = [\"{}\", \"{}\"]\n\
             timeouts = {{ connect = \"1s\", first_byte = \"{first_byte}\", total = \"30s\" }}\n\
             [edge.sites.health]\nmax_fails = 1\nfail_timeout = \"600s\"\n",
            a.url_for("127.0.0.1"),
            b.url_for("127.0.0.1"),
        )
    };
    format!(
        "[edge.limits]\nheader_read_timeout = \"1s\"\n{}{}",
        site("*", "10s"),
        site("quick.test", "300ms")
    )
}

/// Sends `bytes` on a new connection and returns the status line of the answer, or `None`
/// when the edge closes the connection without one.
fn exchange(addr: &str, bytes: &[u8]) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(bytes).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("no answer within {DEADLINE:?}: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    Some(text.lines().next().unwrap_or("").to_owned())
}

/// Sends the head and part of a body, then closes the connection.
fn disconnect_mid_upload(addr: &str, host: &str) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let head = format!("PUT /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\n\r\npart of it");
    tcp.write_all(head.as_bytes()).unwrap();
    // Long enough for the edge to start the origin request with the body still open.
    std::thread::sleep(Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_uploads_are_the_clients_fault_and_leave_the_origin_in_rotation() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", "127.0.0.1:0").await;
    let (edge, _dir) = edge_with_toml(&config(&a, &b));
    let addr = edge.addr("edge http");

    let statuses = tokio::task::spawn_blocking(move || {
        let mut statuses = Vec::new();
        for host in ["x.example", "quick.test"] {
            for _ in 0..3 {
                let chunked = format!(
                    "POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n\
                     5\r\nhello\r\nzz-not-a-size\r\n"
                );
                statuses.push(("malformed chunked", host, exchange(&addr, chunked.as_bytes())));
                let short =
                    format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\nonly ten b");
                statuses.push(("stalled upload", host, exchange(&addr, short.as_bytes())));
                let stalled_chunked = format!(
                    "PUT /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                );
                statuses.push(("stalled chunked upload", host, exchange(&addr, stalled_chunked.as_bytes())));
                disconnect_mid_upload(&addr, host);
            }
        }
        statuses
    })
    .await
    .unwrap();

    let wrong: Vec<String> = statuses
        .iter()
        .filter_map(|(what, host, status)| {
            let want = if what.starts_with("malformed") { "HTTP/1.1 400" } else { "HTTP/1.1 408" };
            let status = status.as_deref().unwrap_or("no answer");
            (!status.starts_with(want)).then(|| format!("{what} on {host}: {status}, want {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");

    // Origin `a` is still the one that serves both sites.
    for host in ["x.example", "quick.test"] {
        let got = get_on(&edge.addr("edge http"), host, "/after").await;
        assert_eq!((got.status, got.text()), (200, "a".to_owned()), "{host}");
    }
    assert!(b.requests().is_empty(), "nothing failed over to the second origin");
    let stderr = edge.stderr();
    assert!(!stderr.contains("origin marked down"), "{stderr}");
    let metrics = client().get(format!("{}/metrics", edge.url("edge admin"))).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let origin_errors = metrics
        .lines()
        .find(|l| l.starts_with("stratus_edge_origin_errors_total"))
        .unwrap_or_default()
        .to_owned();
    assert!(origin_errors.ends_with(" 0"), "client faults counted as origin errors: {origin_errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_upload_longer_than_first_byte_is_answered() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", "127.0.0.1:0").await;
    let (edge, _dir) = edge_with_toml(&config(&a, &b));
    let addr = edge.addr("edge http");
    // `quick.test` waits 300 ms for the origin's head; the body takes about a second, a byte
    // every 100 ms (well within the 1 s stall limit).
    let answer = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(&addr).unwrap();
        tcp.write_all(b"POST /upload HTTP/1.1\r\nHost: quick.test\r\nContent-Length: 10\r\n\r\n").unwrap();
        for byte in b"0123456789" {
            std::thread::sleep(Duration::from_millis(100));
            tcp.write_all(&[*byte]).unwrap();
        }
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"a") {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(a.seen("/upload")[0].body, "0123456789");
}
