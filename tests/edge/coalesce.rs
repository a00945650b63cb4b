//! Miss coalescing and streaming: one origin request per key however many clients ask, every
//! waiter streams the body as it arrives, truncated bodies are never stored or presented as
//! complete, and responses that cannot be shared send waiters to the origin on their own.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::support::edge::edge;
use crate::support::http::{client, get};
use crate::support::origin::{Origin, Part, Reply};
use crate::support::{self, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Origin::start().await;
    let body: String = "0123456789abcdef".repeat(4096); // 64 KiB
    origin.fixed(
        "/coalesce/big.bin",
        Reply::ok(&body, &[("cache-control", "max-age=300")]).delayed(Duration::from_millis(500)),
    );
    let edge = edge(&origin, &[]);
    let url = format!("{}/coalesce/big.bin", edge.url("edge http"));
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let res = c.get(&url).send().await.unwrap();
            let status = res.status().as_u16();
            let cache = res.headers().get("cache-status").unwrap().to_str().unwrap().to_owned();
            (status, cache, res.bytes().await.unwrap())
        }));
    }
    let mut shared = 0;
    for t in tasks {
        let (status, cache, got) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(got.len(), body.len());
        assert!(got == body.as_bytes(), "a body differs");
        if cache.contains("collapsed") || cache.contains("hit") {
            shared += 1;
        }
    }
    assert_eq!(origin.hits("/coalesce/big.bin"), 1, "exactly one origin request");
    assert_eq!(shared, 199, "all but the leader waited on the fill or hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_get_the_first_byte_before_the_body_ends() {
    let origin = Origin::start().await;
    let gate = Arc::new(Semaphore::new(0));
    origin.fixed(
        "/coalesce/stream",
        Reply::ok("", &[("cache-control", "max-age=300")]).parts(vec![
            Part::Data(Bytes::from_static(b"first-")),
            Part::Gate(gate.clone()),
            Part::Data(Bytes::from_static(b"rest")),
        ]),
    );
    let edge = edge(&origin, &[]);
    let url = format!("{}/coalesce/stream", edge.url("edge http"));
    let c = client();
    let mut responses = Vec::new();
    for _ in 0..3 {
        let mut res = c.get(&url).send().await.unwrap();
        // The origin is still holding the rest of the body, yet every client reads the start.
        let chunk = res.chunk().await.unwrap().unwrap();
        assert_eq!(&chunk[..], b"first-");
        responses.push(res);
    }
    assert_eq!(origin.hits("/coalesce/stream"), 1);
    gate.add_permits(1);
    for mut res in responses {
        let mut rest = Vec::new();
        while let Some(c) = res.chunk().await.unwrap() {
            rest.extend_from_slice(&c);
        }
        assert_eq!(rest, b"rest");
    }
    let hit = get(&url, &[]).await;
    assert_eq!(hit.text(), "first-rest");
    assert!(hit.cache().contains("hit"), "{}", hit.cache());
    assert_eq!(origin.hits("/coalesce/stream"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origin_reset_mid_body_is_not_stored_and_not_presented_complete() {
    let origin = Origin::start().await;
    let edge = edge(&origin, &[]);
    for (path, length) in [("/coalesce/reset-cl", true), ("/coalesce/reset-chunked", false)] {
        let gate = Arc::new(Semaphore::new(0));
        let g = gate.clone();
        origin.route(path, move |_, n| {
            let mut headers = vec![("cache-control", "max-age=300")];
            if length {
                headers.push(("content-length", "20"));
            }
            if n == 1 {
                Reply::ok("", &headers).parts(vec![
                    Part::Data(Bytes::from_static(b"0123456789")),
                    Part::Gate(g.clone()),
                    Part::Reset,
                ])
            } else {
                Reply::ok("01234567890123456789", &headers)
            }
        });
        let url = format!("{}{path}", edge.url("edge http"));
        let mut res = client().get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        // A second client waits on the same fill. The counter is cumulative over the loop, so
        // the follower has joined once it exceeds its value from before.
        let joined_before = coalesced_waiters(&edge).await.unwrap_or(0.0);
        let follower = {
            let url = url.clone();
            tokio::spawn(async move { client().get(&url).send().await.unwrap().bytes().await })
        };
        assert_eq!(&res.chunk().await.unwrap().unwrap()[..], b"0123456789");
        until("the follower joined", Duration::from_secs(10), || async {
            coalesced_waiters(&edge).await.filter(|n| *n > joined_before)
        })
        .await;
        gate.add_permits(1);
        let rest = loop {
            match res.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert!(rest.is_err(), "{path}: a truncated body was presented as complete");
        assert!(follower.await.unwrap().is_err(), "{path}: the follower got a complete body");
        // Nothing was stored: the next request goes to the origin and gets the whole body.
        let next = get(&url, &[]).await;
        assert_eq!(next.text(), "01234567890123456789");
        assert!(next.cache().contains("fwd=uri-miss"), "{path}: {}", next.cache());
        assert_eq!(origin.hits(path), 2, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fill_outlives_a_leader_that_goes_away() {
    let origin = Origin::start().await;
    let gate = Arc::new(Semaphore::new(0));
    origin.fixed(
        "/coalesce/leader-gone",
        Reply::ok("", &[("cache-control", "max-age=300")])
            .parts(vec![Part::Gate(gate.clone()), Part::Data(Bytes::from_static(b"survived"))]),
    );
    let edge = edge(&origin, &[]);
    let url = format!("{}/coalesce/leader-gone", edge.url("edge http"));
    let leader = {
        let url = url.clone();
        tokio::spawn(async move { client().get(&url).send().await.map(|r| r.status()) })
    };
    until("origin saw the leader", Duration::from_secs(10), || async {
        (origin.hits("/coalesce/leader-gone") == 1).then_some(())
    })
    .await;
    leader.abort();
    let follower = {
        let url = url.clone();
        tokio::spawn(async move { get(&url, &[]).await })
    };
    gate.add_permits(1);
    let got = follower.await.unwrap();
    assert_eq!(got.text(), "survived");
    assert_eq!(origin.hits("/coalesce/leader-gone"), 1);
    assert!(get(&url, &[]).await.cache().contains("hit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unshareable_responses_send_waiters_to_the_origin_and_later_requests_run_in_parallel() {
    let origin = Origin::start().await;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    origin.route("/coalesce/private", move |_, n| {
        let body = format!("for request {n}");
        Reply::ok(&body, &[("cache-control", "private, max-age=300")])
            .parts(vec![Part::Gate(g.clone()), Part::Data(Bytes::from(body.clone()))])
    });
    let edge = edge(&origin, &[]);
    let url = format!("{}/coalesce/private", edge.url("edge http"));

    // First wave: one fill, whose answer turns out private; the waiters then ask on their own.
    let wave = |n: usize| {
        (0..n)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { get(&url, &[]).await })
            })
            .collect::<Vec<_>>()
    };
    let first = wave(4);
    until("the leader reached the origin", Duration::from_secs(10), || async {
        (origin.hits("/coalesce/private") >= 1).then_some(())
    })
    .await;
    gate.add_permits(100);
    let mut bodies = Vec::new();
    for t in first {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200);
        bodies.push(got.text());
    }
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 4, "each client got its own private response: {bodies:?}");
    assert_eq!(origin.hits("/coalesce/private"), 4);

    // Later requests are hit-for-miss: all of them must be at the origin at the same time
    // before it answers any, which only works if nothing serializes them.
    let gate2 = Arc::new(Semaphore::new(0));
    let g2 = gate2.clone();
    origin.route("/coalesce/private", move |_, n| {
        Reply::ok("", &[("cache-control", "private")])
            .parts(vec![Part::Gate(g2.clone()), Part::Data(Bytes::from(format!("later {n}")))])
    });
    let second = wave(4);
    until("four requests in flight at the origin", Duration::from_secs(10), || async {
        (origin.hits("/coalesce/private") == 8).then_some(())
    })
    .await;
    gate2.add_permits(4);
    for t in second {
        let got = t.await.unwrap();
        assert!(got.text().starts_with("later"));
        assert!(
            got.cache().contains("fwd=bypass") && got.cache().contains("hit-for-miss"),
            "{}",
            got.cache()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_over_the_max_size_stream_through_uncached() {
    let origin = Origin::start().await;
    let big = "x".repeat(300 * 1024);
    let length = big.len().to_string();
    origin.fixed(
        "/coalesce/huge",
        Reply::ok(&big, &[("cache-control", "max-age=300"), ("content-length", &length)]),
    );
    // Without a length the edge learns the size while streaming; it still does not store it.
    origin.fixed("/coalesce/huge-chunked", Reply::ok(&big, &[("cache-control", "max-age=300")]));
    let dir = support::tempdir();
    let cfg = support::write_file(
        dir.path(),
        "edge.toml",
        &format!(
            "[edge]\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\n[edge.cache]\nsize = \"4MiB\"\nmax_object_size = \"256KiB\"\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n",
            origin.url
        ),
    );
    let mut cmd = support::stratus();
    cmd.arg("edge").arg("--config").arg(&cfg);
    let edge = support::Proc::start(cmd, &["edge http"]);
    let url = format!("{}/coalesce/huge", edge.url("edge http"));
    for n in 1..=2 {
        let got = get(&url, &[]).await;
        assert_eq!(got.body.len(), big.len());
        assert!(!got.cache().contains("stored"), "{}", got.cache());
        let why = if n == 1 { "detail=too-large" } else { "detail=hit-for-miss" };
        assert!(got.cache().contains(why), "{}", got.cache());
        assert_eq!(origin.hits("/coalesce/huge"), n);
        let got = get(&format!("{url}-chunked"), &[]).await;
        assert_eq!(got.body.len(), big.len());
        assert_eq!(origin.hits("/coalesce/huge-chunked"), n);
        if n == 2 {
            assert!(got.cache().contains("hit-for-miss"), "{}", got.cache());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_origin_body_past_the_total_timeout_is_aborted_and_not_stored() {
    let origin = Origin::start().await;
    origin.route("/coalesce/stalls", |_, n| {
        if n == 1 {
            // Half the body, then the origin stalls well past the edge's total timeout.
            Reply::ok("", &[("cache-control", "max-age=300"), ("content-length", "8")])
                .parts(vec![Part::Data(Bytes::from_static(b"half")), Part::Wait(Duration::from_secs(30))])
        } else {
            Reply::ok("complete", &[("cache-control", "max-age=300")])
        }
    });
    let (edge, _dir) = support::edge::edge_with_config(
        &origin,
        "[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n[edge.sites.timeouts]\ntotal = \"1s\"\n",
    );
    let url = format!("{}/coalesce/stalls", edge.url("edge http"));
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.is_err(), "a timed-out body was presented as complete");
    let next = get(&url, &[]).await;
    assert_eq!(next.text(), "complete");
    assert!(next.cache().contains("fwd=uri-miss"), "{}", next.cache());
    assert_eq!(origin.hits("/coalesce/stalls"), 2);
}

/// The edge's `stratus_edge_coalesced_waiters_total`, when it has one yet.
async fn coalesced_waiters(edge: &support::Proc) -> Option<f64> {
    let m =
        client().get(format!("{}/metrics", edge.url("edge admin"))).send().await.ok()?.text().await.ok()?;
    m.lines()
        .find(|l| l.starts_with("stratus_edge_coalesced_waiters_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}
