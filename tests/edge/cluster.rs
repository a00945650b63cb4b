//! A PoP is one cache: three real edges clustered by rendezvous hashing in front of a counting
//! origin fetch each object from the origin once, show both tiers in `Cache-Status`, carry
//! `Age` and tags across the hop, keep answering when a peer dies and give its keys back when
//! it returns; tiers configured in a circle are cut by `CDN-Loop`.

use std::time::Duration;

use crate::support::edge::purge;
use crate::support::http::{Got, get};
use crate::support::origin::{Origin, Reply};
use crate::support::{Proc, process, until};

/// A loopback port that was free a moment ago (peers must know each other's URLs before they
/// start, so their ports are picked first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The `Cache-Status` members, closest to the origin first, as (cache name, parameters).
pub fn members(got: &Got) -> Vec<(String, String)> {
    got.cache()
        .split(',')
        .map(|m| {
            let (name, params) = m.trim().split_once(';').unwrap_or((m.trim(), ""));
            (name.trim().to_owned(), params.trim().to_owned())
        })
        .collect()
}

/// Edge `i` of a cluster listening on `ports`, in front of `origin`, named `edge-i`.
fn peer(origin: &Origin, ports: &[u16], i: usize) -> Proc {
    let mut cmd = process::stratus();
    let listen = format!("127.0.0.1:{}", ports[i]);
    cmd.args(["edge", "--listen", &listen, "--origin", &origin.url, "--admin", "127.0.0.1:0"]);
    cmd.args(["--id", &format!("edge-{i}")]);
    for p in ports {
        cmd.args(["--peer", &format!("http://127.0.0.1:{p}")]);
    }
    Proc::start(cmd, &["edge http", "edge admin"])
}

fn cluster(origin: &Origin) -> (Vec<u16>, Vec<Proc>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let edges = (0..3).map(|i| peer(origin, &ports, i)).collect();
    (ports, edges)
}

async fn fetch(edge: &Proc, path: &str) -> Got {
    get(&format!("{}{path}", edge.url("edge http")), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clustered_edges_fetch_each_object_from_the_origin_once() {
    let origin = Origin::cacheable().await;
    let (_ports, edges) = cluster(&origin);
    let n = 30;
    let mut owners = Vec::new();
    for i in 0..n {
        let path = format!("/one/{i}");
        let mut owner: Option<String> = None;
        for (e, edge) in edges.iter().enumerate() {
            let got = fetch(edge, &path).await;
            assert_eq!((got.status, got.text()), (200, format!("{path} v1")), "edge-{e}");
            let m = members(&got);
            let me = format!("edge-{e}");
            assert_eq!(m.last().map(|(name, _)| name.as_str()), Some(me.as_str()), "{}", got.cache());
            // Either this edge owns the key (one member), or the owner's member comes first.
            let this_owner = if m.len() == 1 { me.clone() } else { m[0].0.clone() };
            assert!(m.len() <= 2, "at most two tiers: {}", got.cache());
            if m.len() == 2 {
                assert!(m[1].1.starts_with("fwd=uri-miss; fwd-status=200; stored"), "{}", got.cache());
            }
            assert_eq!(owner.get_or_insert(this_owner.clone()), &this_owner, "one owner per key");
        }
        owners.push(owner.expect("owner"));
    }
    let total: usize = (0..n).map(|i| origin.hits(&format!("/one/{i}"))).sum();
    assert_eq!(total, n, "N objects on every edge → N origin requests");
    for e in 0..3 {
        let owned = owners.iter().filter(|o| **o == format!("edge-{e}")).count();
        assert!(owned > 0, "every edge owns some keys: {owners:?}");
    }

    // Copies are kept: a second round is all hits on every edge, with one member.
    for edge in &edges {
        for i in 0..n {
            let got = fetch(edge, &format!("/one/{i}")).await;
            assert!(got.hit() && members(&got).len() == 1, "{}", got.cache());
        }
    }
    assert_eq!((0..n).map(|i| origin.hits(&format!("/one/{i}"))).sum::<usize>(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_and_tags_cross_the_peer_hop() {
    let origin = Origin::cacheable().await;
    origin.fixed("/aged", Reply::ok("aged", &[("cache-control", "max-age=3600"), ("age", "100")]).sized());
    let (_ports, edges) = cluster(&origin);

    // A request to every edge: two of them got the object from the owner.
    let mut via_peer = Vec::new();
    for (e, edge) in edges.iter().enumerate() {
        let got = fetch(edge, "/aged").await;
        assert_eq!(got.status, 200);
        let age: u64 = got.header("age").parse().expect("age");
        assert!(age >= 100, "the origin's Age counts at every tier: {age}");
        assert!(got.ttl() <= 3500, "freshness left is the lifetime minus the age: {}", got.cache());
        let blog = fetch(edge, "/blog/post").await;
        assert_eq!(blog.status, 200);
        assert_eq!(blog.header("surrogate-key"), "", "tags stay between the edges");
        if members(&blog).len() == 2 {
            via_peer.push(e);
        }
    }
    assert_eq!(via_peer.len(), 2, "two edges are not the owner");
    assert_eq!(origin.hits("/aged") + origin.hits("/blog/post"), 2);

    // The copy a non-owner keeps carries the owner's tags, so a purge by tag reaches it.
    let e = via_peer[0];
    assert_eq!(purge(&edges[e], serde_json::json!({"tags": ["blog"]})).await, 1, "the copy is tagged");
    let got = fetch(&edges[e], "/blog/post").await;
    assert!(!got.hit(), "purged: {}", got.cache());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_fails_no_request_and_gets_its_keys_back_when_it_returns() {
    let origin = Origin::cacheable().await;
    let (ports, mut edges) = cluster(&origin);
    edges[2].kill();

    // Every request is answered, and each object is still fetched once: the live edges agree
    // on the next owner of the dead one's keys.
    let n = 20;
    for i in 0..n {
        for (e, edge) in edges.iter().take(2).enumerate() {
            let got = fetch(edge, &format!("/dead/{i}")).await;
            assert_eq!(got.status, 200, "edge-{e}: {}", got.cache());
            assert!(!got.cache().contains("edge-2"), "{}", got.cache());
        }
    }
    assert_eq!((0..n).map(|i| origin.hits(&format!("/dead/{i}"))).sum::<usize>(), n);

    // Restarted (an empty cache, same URL): after its cool-down it owns keys again.
    edges[2] = peer(&origin, &ports, 2);
    let mut k = 0;
    until("edge-2 owns keys again", Duration::from_secs(20), || {
        k += 1;
        let path = format!("/back/{k}");
        let edge = &edges[0];
        async move {
            let got = fetch(edge, &path).await;
            assert_eq!(got.status, 200, "{}", got.cache());
            (members(&got)[0].0 == "edge-2").then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_a_peer_goes_to_the_origin_never_to_another_peer() {
    let origin = Origin::cacheable().await;
    let (_ports, edges) = cluster(&origin);
    // Whoever owns these keys, a request marked as coming from a peer is fetched by the
    // edge it reached, so each edge asks the origin itself.
    for (e, edge) in edges.iter().enumerate() {
        let got = get(&format!("{}/from-peer", edge.url("edge http")), &[("stratus-hop", "peer")]).await;
        assert_eq!(got.status, 200);
        assert_eq!(members(&got).len(), 1, "edge-{e}: {}", got.cache());
    }
    assert_eq!(origin.hits("/from-peer"), 3);
    let seen = origin.seen("/from-peer");
    assert!(seen.iter().all(|s| s.header("stratus-hop").is_empty()), "the hop marker stays between edges");
    assert!(
        seen.iter().all(|s| s.header("cdn-loop").starts_with("stratus; edge=edge-")),
        "RFC 8586 CDN-Loop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_configured_in_a_circle_are_cut_by_cdn_loop() {
    let origin = Origin::cacheable().await;
    let ports = [free_port(), free_port()];
    let dir = process::tempdir();
    // Edge a's parent is b and b's parent is a.
    let start = |me: usize| {
        let other = ports[1 - me];
        let toml = format!(
            "[edge]\nid = \"edge-{me}\"\nlisteners = [{{ listen = \"127.0.0.1:{}\" }}]\nadmin = {{ listen = \"127.0.0.1:0\" }}\n\
             [[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\nparents = [\"http://127.0.0.1:{other}\"]\n",
            ports[me], origin.url
        );
        let path = process::write_file(dir.path(), &format!("edge-{me}.toml"), &toml);
        let mut cmd = process::stratus();
        cmd.arg("edge").arg("--config").arg(path);
        Proc::start(cmd, &["edge http", "edge admin"])
    };
    let (a, _b) = (start(0), start(1));
    let got = fetch(&a, "/circle").await;
    // a → b → a: a refuses its own request (508); b takes it as its parent failing and asks
    // the origin; a gets b's answer.
    assert_eq!(got.status, 200, "{}", got.cache());
    let names: Vec<String> = members(&got).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["edge-1", "edge-0"], "{}", got.cache());
    assert_eq!(origin.hits("/circle"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keep_copies_only_the_owner_stores() {
    let origin = Origin::cacheable().await;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let dir = process::tempdir();
    let peers: Vec<String> = ports.iter().map(|p| format!("\"http://127.0.0.1:{p}\"")).collect();
    let edges: Vec<Proc> = (0..3)
        .map(|i| {
            let toml = format!(
                "[edge]\nid = \"edge-{i}\"\nlisteners = [{{ listen = \"127.0.0.1:{}\" }}]\nadmin = {{ listen = \"127.0.0.1:0\" }}\n\
                 [[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n\
                 [edge.cluster]\npeers = [{}]\nkeep_copies = false\n",
                ports[i],
                origin.url,
                peers.join(", ")
            );
            let path = process::write_file(dir.path(), &format!("edge-{i}.toml"), &toml);
            let mut cmd = process::stratus();
            cmd.arg("edge").arg("--config").arg(path);
            Proc::start(cmd, &["edge http", "edge admin"])
        })
        .collect();
    for round in 0..2 {
        let mut hops = 0;
        for edge in &edges {
            let got = fetch(edge, "/owned").await;
            assert_eq!(got.status, 200);
            let m = members(&got);
            if m.len() == 2 {
                hops += 1;
                // A non-owner asks the owner every time and stores nothing itself.
                assert!(!m[1].1.contains("stored") && !got.hit(), "round {round}: {}", got.cache());
                if round == 1 {
                    assert!(m[0].1.starts_with("hit"), "the owner's copy: {}", got.cache());
                }
            }
        }
        assert_eq!(hops, 2, "round {round}: both non-owners went to the owner");
    }
    assert_eq!(origin.hits("/owned"), 1);
}
