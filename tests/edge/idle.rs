//! Idle client connections, over raw TCP: a connection that sends nothing (HTTP/1.1, or h2c
//! after its preface) is closed after `header_read_timeout`, one idle between requests after
//! `idle_timeout`, and at the connection cap idle keep-alive connections make room for a new
//! client instead of leaving it hanging. TLS listeners are covered in `tls.rs`.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::edge::edge_with_config;
use crate::support::origin::{Origin, Reply};

/// Generous: the edge under test closes within a second; a hanging one fails after this.
const DEADLINE: Duration = Duration::from_secs(20);

/// Reads until the edge closes the connection (EOF or reset); returns what was read, or
/// panics when the connection is still open after [`DEADLINE`].
fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the connection is still open after {DEADLINE:?}: {e}"),
        }
    }
}

/// Sends `GET path` and reads one `Content-Length` response; returns its status line.
fn get(tcp: &mut TcpStream, path: &str) -> String {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x.example\r\n\r\n").as_bytes()).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).unwrap(), 1, "connection closed before the head ended");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        // A miss streams; read through the last chunk.
        let mut body = Vec::new();
        while !body.ends_with(b"0\r\n\r\n") {
            assert_eq!(tcp.read(&mut byte).unwrap(), 1, "connection closed before the body ended");
            body.push(byte[0]);
        }
    } else {
        let mut body = vec![0u8; len];
        tcp.read_exact(&mut body).unwrap();
    }
    head.lines().next().unwrap_or("").to_owned()
}

fn config(limits: &str) -> String {
    format!("[edge.limits]\n{limits}\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let origin = Origin::start().await;
    let (edge, _dir) = edge_with_config(&origin, &config("header_read_timeout = \"300ms\""));
    let addr = edge.addr("edge http");
    // Nothing at all, a partial h2 preface (hyper-util waits for 24 bytes to pick the
    // protocol), a partial HTTP/1.1 head.
    let inputs: [&[u8]; 3] = [b"", b"PRI * HTTP/2.0\r\n", b"GET / HTTP/1.1\r\nHost: x.example\r\n"];
    let got = tokio::task::spawn_blocking(move || {
        inputs
            .iter()
            .map(|input| {
                let mut tcp = TcpStream::connect(&addr).unwrap();
                tcp.write_all(input).unwrap();
                read_until_closed(&mut tcp)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (input, answer) in inputs.iter().zip(got) {
        let (input, answer) = (String::from_utf8_lossy(input), String::from_utf8_lossy(&answer));
        assert!(!answer.starts_with("HTTP/1.1 2"), "{input:?} was answered: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_connection_without_streams_is_closed_after_the_header_timeout() {
    let origin = Origin::start().await;
    let (edge, _dir) = edge_with_config(&origin, &config("header_read_timeout = \"300ms\""));
    let addr = edge.addr("edge http");
    let got = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(&addr).unwrap();
        // The client preface and an empty SETTINGS frame, then silence.
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
        read_until_closed(&mut tcp)
    })
    .await
    .unwrap();
    // SETTINGS (type 4) first; a GOAWAY (type 7, with the PING a graceful close sends and
    // this client never answers) before the close.
    let frame_types = frames(&got);
    assert_eq!(frame_types.first(), Some(&4), "server SETTINGS first: {frame_types:?}");
    assert!(frame_types.contains(&7), "a GOAWAY: {frame_types:?}");
}

/// The types of the HTTP/2 frames in `bytes`.
fn frames(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_idle_between_requests_is_closed() {
    let origin = Origin::start().await;
    origin.fixed("/idle/keep-alive", Reply::ok("ok", &[("cache-control", "max-age=60")]));
    let (edge, _dir) =
        edge_with_config(&origin, &config("header_read_timeout = \"60s\"\nidle_timeout = \"300ms\""));
    let addr = edge.addr("edge http");
    let (status, rest) = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(&addr).unwrap();
        let status = get(&mut tcp, "/idle/keep-alive");
        (status, read_until_closed(&mut tcp))
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_idle_connections_make_room_for_a_new_client() {
    let origin = Origin::start().await;
    origin.fixed("/idle/cap", Reply::ok("ok", &[("cache-control", "max-age=60")]));
    // Timeouts far beyond the deadline: only shedding can serve the third client in time.
    let (edge, _dir) = edge_with_config(
        &origin,
        &config("max_connections = 2\nheader_read_timeout = \"600s\"\nidle_timeout = \"600s\""),
    );
    let addr = edge.addr("edge http");
    let (first, third, closed) = tokio::task::spawn_blocking(move || {
        // One keep-alive connection idle after a request, one that never sent anything.
        let mut keep_alive = TcpStream::connect(&addr).unwrap();
        let first = get(&mut keep_alive, "/idle/cap");
        let silent = TcpStream::connect(&addr).unwrap();
        // Let the edge accept the silent one before the third arrives.
        std::thread::sleep(Duration::from_millis(200));

        let mut new = TcpStream::connect(&addr).unwrap();
        let third = get(&mut new, "/idle/cap");
        // The longest idle one (the keep-alive connection) was closed to make room.
        let closed = read_until_closed(&mut keep_alive);
        drop(silent);
        (first, third, closed)
    })
    .await
    .unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(third.starts_with("HTTP/1.1 200"), "{third}");
    assert!(closed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_a_large_cached_object_gets_all_of_it_past_the_idle_timeout() {
    let origin = Origin::start().await;
    let len = 32 << 20;
    origin.fixed("/idle/large", Reply::ok(&"x".repeat(len), &[("cache-control", "max-age=600")]).sized());
    let (edge, _dir) = edge_with_config(&origin, &config("idle_timeout = \"300ms\""));
    let url = format!("{}/idle/large", edge.url("edge http"));
    let stored = crate::support::http::send(crate::support::http::client().get(&url)).await;
    assert_eq!(stored.body.len(), len);

    // The idle timeout must not cut a response still being read: ~1.7 MB/s, about 19 s,
    // far past `idle_timeout` (kernel buffers hold a few MB of it).
    let addr = edge.addr("edge http");
    let read = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(&addr).unwrap();
        tcp.write_all(b"GET /idle/large HTTP/1.1\r\nHost: x.example\r\n\r\n").unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
            if total > len {
                // Head and body (the head is well under 1 KiB).
                return total;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    })
    .await
    .unwrap();
    assert!(read > len, "the response was cut after {read} of {len} body bytes (and the head)");
}
