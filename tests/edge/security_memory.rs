//! Bounded memory for bodies without `Content-Length` (issue 16, item 4): a chunked or
//! close-delimited answer far larger than `max_object_size` streams through with the edge's
//! resident memory staying far below the body's size, whether one client reads it, two read
//! it together, one reads slowly, or one stops reading (that one is cut off; the other finishes).

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::support;
use crate::support::edge::edge_with_toml;
use crate::support::http::client;
use crate::support::raw::{Piece, RawOrigin, pattern};

const MIB: u64 = 1 << 20;

/// A field of `/proc/PID/status`, in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Reads a response body to its end or to an error, checking every byte against the pattern;
/// returns how many bytes came and whether the body ended cleanly.
async fn drain(mut res: reqwest::Response, pause_every: Option<u64>) -> (u64, bool) {
    // The pattern repeats every 251 bytes: compare slices of one period-aligned buffer.
    let period: Vec<u8> = (0..251 * 1024).map(pattern).collect();
    let mut at = 0u64;
    let mut next_pause = pause_every.unwrap_or(u64::MAX);
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => {
                let mut done = 0;
                while done < chunk.len() {
                    let start = ((at + done as u64) % 251) as usize;
                    let n = (period.len() - start).min(chunk.len() - done);
                    assert!(chunk[done..done + n] == period[start..start + n], "bytes differ near {at}");
                    done += n;
                }
                at += chunk.len() as u64;
                if at >= next_pause {
                    // A slow reader (this only slows the client down; nothing waits on it).
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    next_pause += pause_every.unwrap_or(u64::MAX);
                }
            }
            Ok(None) => return (at, true),
            Err(_) => return (at, false),
        }
    }
}

async fn coalesced_waiters(edge: &support::Proc) -> Option<f64> {
    let m =
        client().get(format!("{}/metrics", edge.url("edge admin"))).send().await.ok()?.text().await.ok()?;
    m.lines()
        .find(|l| l.starts_with("stratus_edge_coalesced_waiters_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_bodies_without_length_stream_through_in_bounded_memory() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = RawOrigin::start(move |head, _| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let len = if path.starts_with("/mem/pair") { 200 * MIB } else { 96 * MIB };
        let chunked = !path.starts_with("/mem/close");
        let framing = if chunked { "Transfer-Encoding: chunked" } else { "Connection: close" };
        let mut pieces = vec![Piece::Bytes(
            format!("HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n{framing}\r\n\r\n").into_bytes(),
        )];
        if path.starts_with("/mem/pair") || path.starts_with("/mem/stall") {
            // Held until both clients wait on the one fill.
            pieces.push(Piece::Gate(g.clone()));
        }
        pieces.push(Piece::Pattern { len, chunked });
        if !chunked {
            pieces.push(Piece::Close);
        }
        pieces
    })
    .await;
    let (edge, _dir) = edge_with_toml(&format!(
        "[edge.cache]\nsize = \"32MiB\"\nmax_object_size = \"4MiB\"\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n",
        origin.url
    ));
    let base = edge.url("edge http");
    let pid = edge.pid();
    // Warm up (allocator arenas, a connection pool), then take the baseline.
    let _ = client().get(format!("{base}/warm")).send().await.unwrap().bytes().await;
    let baseline = proc_kib(pid, "VmRSS:");

    // Two clients on one fill, then one slow client, then a close-delimited body.
    let joined_before = coalesced_waiters(&edge).await.unwrap_or(0.0);
    let a = client().get(format!("{base}/mem/pair")).send();
    let b = async {
        support::until("the second client joined the fill", Duration::from_secs(10), || async {
            coalesced_waiters(&edge).await.filter(|n| *n > joined_before).map(|_| ())
        })
        .await;
        gate.add_permits(1);
    };
    let (a, b, ()) = tokio::join!(
        a,
        async {
            // Sent once the first request reached the origin, so it joins that fill.
            support::until("the first request reached the origin", Duration::from_secs(10), || async {
                (!origin.heads().is_empty()).then_some(())
            })
            .await;
            client().get(format!("{base}/mem/pair")).send().await
        },
        b
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(!a.headers()["cache-status"].to_str().unwrap().contains("stored"));
    let (got_a, got_b) = tokio::join!(drain(a, None), drain(b, None));
    assert_eq!(got_a, (200 * MIB, true), "first client");
    assert_eq!(got_b, (200 * MIB, true), "second client");
    let peak = proc_kib(pid, "VmHWM:");
    eprintln!("edge RSS baseline {baseline} KiB, peak after 2 × 200 MiB chunked {peak} KiB");
    assert!(peak < baseline + 64 * 1024, "peak RSS {peak} KiB (baseline {baseline} KiB)");

    for (path, pause) in [("/mem/slow", Some(MIB / 4)), ("/mem/close", None)] {
        let res = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(drain(res, pause).await, (96 * MIB, true), "{path}");
    }
    let peak = proc_kib(pid, "VmHWM:");
    eprintln!("edge peak RSS after a slow reader and a close-delimited body: {peak} KiB");
    assert!(peak < baseline + 64 * 1024, "peak RSS {peak} KiB (baseline {baseline} KiB)");

    // One of two clients stops reading: it is cut off, the other gets everything.
    let joined_before = coalesced_waiters(&edge).await.unwrap_or(0.0);
    let reader = client().get(format!("{base}/mem/stall")).send().await.unwrap();
    let staller = client().get(format!("{base}/mem/stall")).send();
    let (staller, ()) = tokio::join!(staller, async {
        support::until("the staller joined the fill", Duration::from_secs(10), || async {
            coalesced_waiters(&edge).await.filter(|n| *n > joined_before).map(|_| ())
        })
        .await;
        gate.add_permits(1);
    });
    let staller = staller.unwrap();
    assert_eq!(drain(reader, None).await, (96 * MIB, true), "the reading client");
    let (got, clean) = drain(staller, None).await;
    assert!(!clean && got < 96 * MIB, "the stalled client was cut off ({got} bytes, clean: {clean})");
    let peak = proc_kib(pid, "VmHWM:");
    eprintln!("edge peak RSS after a stalled reader: {peak} KiB");
    assert!(peak < baseline + 64 * 1024, "peak RSS {peak} KiB (baseline {baseline} KiB)");
}
