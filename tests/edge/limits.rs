//! Client limits from `[edge.limits]` as a client meets them over raw TCP: too many request
//! headers (431) and the connection cap (`max_connections`: the next connection waits in the
//! listen backlog until one closes, then is served). Head size (431) and header read timeouts
//! are in `tests/edge_sites.rs`, the body limit (413) in `tests/edge_requests.rs`.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::support;
use crate::support::edge::edge_with_config;
use crate::support::origin::{Origin, Part, Reply};

/// Reads one whole response from `tcp`; returns the status line.
fn read_response(tcp: &mut TcpStream) -> String {
    let res = support::raw::read_response(tcp, false);
    res.head.lines().next().unwrap_or("").to_owned()
}

fn request(tcp: &mut TcpStream, path: &str, extra_headers: usize) {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: x.example\r\n");
    for i in 0..extra_headers {
        head.push_str(&format!("X-Extra-{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn too_many_request_headers_get_431() {
    let origin = Origin::start().await;
    origin.fixed("/limits/headers", Reply::ok("ok", &[("cache-control", "no-store")]));
    let (edge, _dir) = edge_with_config(
        &origin,
        "[edge.limits]\nmax_headers = 20\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n",
    );
    let addr = edge.addr("edge http");
    let status = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(&addr).unwrap();
        request(&mut tcp, "/limits/headers", 10);
        let within = read_response(&mut tcp);
        let mut tcp = TcpStream::connect(&addr).unwrap();
        request(&mut tcp, "/limits/headers", 30);
        (within, read_response(&mut tcp))
    })
    .await
    .unwrap();
    assert!(status.0.starts_with("HTTP/1.1 200"), "{}", status.0);
    assert!(status.1.starts_with("HTTP/1.1 431"), "{}", status.1);
    assert_eq!(origin.hits("/limits/headers"), 1);
}

/// The default limit (100) is left to hyper rather than named to it (cheaper per request,
/// issue #23): it must still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_header_limit_is_one_hundred() {
    let origin = Origin::start().await;
    origin.fixed("/limits/default-headers", Reply::ok("ok", &[("cache-control", "no-store")]));
    let (edge, _dir) = edge_with_config(&origin, "[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n");
    let addr = edge.addr("edge http");
    let status = tokio::task::spawn_blocking(move || {
        // `Host` and 90 more are within the limit (leaving the origin room for the headers
        // the edge adds); `Host` and 100 more are one over it.
        let mut tcp = TcpStream::connect(&addr).unwrap();
        request(&mut tcp, "/limits/default-headers", 90);
        let at = read_response(&mut tcp);
        let mut tcp = TcpStream::connect(&addr).unwrap();
        request(&mut tcp, "/limits/default-headers", 100);
        (at, read_response(&mut tcp))
    })
    .await
    .unwrap();
    assert!(status.0.starts_with("HTTP/1.1 200"), "{}", status.0);
    assert!(status.1.starts_with("HTTP/1.1 431"), "{}", status.1);
    assert_eq!(origin.hits("/limits/default-headers"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_over_max_connections_waits_until_one_closes() {
    let origin = Origin::start().await;
    let gate = Arc::new(Semaphore::new(0));
    origin.fixed(
        "/limits/slow",
        Reply::ok("", &[]).parts(vec![Part::Gate(gate.clone()), Part::Data("slow".into())]),
    );
    origin.fixed("/limits/next", Reply::ok("next", &[("cache-control", "no-store")]));
    let (edge, _dir) = edge_with_config(
        &origin,
        "[edge.limits]\nmax_connections = 2\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n\
         [edge.sites.key]\nheaders = [\"x-conn\"]\n",
    );
    let addr = edge.addr("edge http");
    // Two connections take both slots with requests the origin holds open.
    let mut busy: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut tcp = TcpStream::connect(&addr).unwrap();
            // Distinct keys (`x-conn` is in the key), so the two requests are not coalesced.
            tcp.write_all(
                format!("GET /limits/slow HTTP/1.1\r\nHost: x.example\r\nX-Conn: {i}\r\n\r\n").as_bytes(),
            )
            .unwrap();
            tcp
        })
        .collect();
    support::eventually("both held requests reach the origin", Duration::from_secs(20), || {
        (origin.hits("/limits/slow") == 2).then_some(())
    });

    // The third connection is made (the kernel's backlog takes it) but not served.
    let mut third = TcpStream::connect(&addr).unwrap();
    request(&mut third, "/limits/next", 0);
    // A window for a wrongly served request to show up; a correct edge passes however slow.
    third.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the connection over the cap was served at once: {early:?}"
    );
    assert_eq!(origin.hits("/limits/next"), 0);

    // One held request finishes and its connection closes: the third is served.
    gate.add_permits(2);
    let first = busy.remove(0);
    drop(first);
    third.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let status = tokio::task::spawn_blocking(move || read_response(&mut third)).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(origin.hits("/limits/next"), 1);
}

/// With a small fixed send buffer (`limits.send_buffer`, issue #23) every large response leaves
/// in many partial writes: a 3 MiB object still arrives whole, byte for byte, as a miss and then
/// as hits, and the keep-alive connection carries each next response after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_send_buffer_delivers_large_hits_whole_on_keep_alive() {
    let origin = Origin::start().await;
    let body: Vec<u8> = (0..3u64 << 20).map(support::raw::pattern).collect();
    origin.fixed(
        "/limits/send-buffer",
        Reply::ok("", &[("cache-control", "max-age=60")])
            .parts(vec![Part::Data(bytes::Bytes::from(body.clone()))])
            .sized(),
    );
    let (edge, _dir) = edge_with_config(
        &origin,
        "[edge.limits]\nsend_buffer = \"8KiB\"\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n",
    );
    let addr = edge.addr("edge http");
    let requests = b"GET /limits/send-buffer HTTP/1.1\r\nHost: x.example\r\n\r\n".repeat(3);
    let got = tokio::task::spawn_blocking(move || support::raw::exchange_framed(&addr, &requests, 3, false))
        .await
        .unwrap();
    for (i, res) in got.iter().enumerate() {
        assert_eq!(res.status, 200, "response {i}: {}", res.head);
        assert_eq!(res.body.len(), body.len(), "response {i}");
        assert!(res.body == body, "response {i}: the body differs");
    }
    let cache_status = |i: usize| {
        got[i]
            .head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("cache-status:"))
            .unwrap_or("")
            .to_owned()
    };
    assert!(cache_status(2).contains("hit"), "{}", cache_status(2));
    assert_eq!(origin.hits("/limits/send-buffer"), 1);
}
