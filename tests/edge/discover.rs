//! Peers discovered from the control plane: edges that register with the same `pop` label and
//! `--discover-peers` become one cache, without listing each other; an edge of another PoP is
//! not a peer.

use std::time::Duration;

use crate::cluster::{free_port, members};
use crate::support::control::{Api, TOKEN, start_control};
use crate::support::http::{Got, get};
use crate::support::origin::Origin;
use crate::support::{Proc, process, until};

/// Edge `id` of PoP `pop` in front of `origin`, following `control`, its peers discovered.
fn discovering_edge(origin: &Origin, control: &str, id: &str, pop: &str) -> Proc {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = process::stratus();
    cmd.args(["edge", "--listen", &listen, "--origin", &origin.url, "--admin", "127.0.0.1:0"])
        .args(["--id", id, "--control", control, "--pop", pop, "--discover-peers"])
        .args(["--self", &format!("http://{listen}")])
        .env("STRATUS_TOKEN", TOKEN);
    Proc::start(cmd, &["edge http", "edge admin"])
}

/// The number of cluster members (this edge included) the edge last logged it discovered.
fn discovered(edge: &Proc) -> Option<usize> {
    let stderr = edge.stderr();
    let line = stderr.lines().rfind(|l| l.contains("cluster peers discovered"))?;
    let n = line.split("peers=").nth(1)?.split_whitespace().next()?;
    n.parse().ok()
}

async fn fetch(edge: &Proc, path: &str) -> Got {
    get(&format!("{}{path}", edge.url("edge http")), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_of_one_pop_discover_each_other_and_fetch_each_object_once() {
    let dir = process::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let base = control.url("control api");
    let origin = Origin::cacheable().await;
    // Another PoP's edge follows the same control plane first: it must never become a peer.
    let other = discovering_edge(&origin, &base, "ams-0", "ams1");
    let edges: Vec<Proc> =
        (0..3).map(|i| discovering_edge(&origin, &base, &format!("fra-{i}"), "fra1")).collect();

    // The registry shows each edge's PoP and the URL its peers reach it at.
    until("four live edges with their pop", Duration::from_secs(20), || async {
        let (_, list) = api.get("/v1/edges").await;
        let rows = list["edges"].as_array()?.clone();
        let ok = rows.len() == 4
            && rows.iter().all(|e| {
                e["live"] == true
                    && e["peer_url"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:"))
            });
        let fra = rows.iter().filter(|e| e["pop"] == "fra1").count();
        (ok && fra == 3).then_some(())
    })
    .await;
    // Every fra1 edge takes the other two as peers (at its next heartbeat at the latest).
    until("every fra1 edge knows three members", Duration::from_secs(20), || async {
        edges.iter().all(|e| discovered(e) == Some(3)).then_some(())
    })
    .await;

    let n = 24;
    let mut owners = Vec::new();
    for i in 0..n {
        let path = format!("/found/{i}");
        let mut via_peer = 0;
        for (e, edge) in edges.iter().enumerate() {
            let got = fetch(edge, &path).await;
            assert_eq!((got.status, got.text()), (200, format!("{path} v1")), "fra-{e}");
            let m = members(&got);
            assert_eq!(m.last().map(|(name, _)| name.clone()), Some(format!("fra-{e}")), "{}", got.cache());
            assert!(m.len() <= 2, "at most two tiers: {}", got.cache());
            if m.len() == 2 {
                via_peer += 1;
                owners.push(m[0].0.clone());
            }
        }
        assert_eq!(via_peer, 2, "{path}: the two non-owners answer through the owner");
    }
    let total: usize = (0..n).map(|i| origin.hits(&format!("/found/{i}"))).sum();
    assert_eq!(total, n, "N objects on every edge of the PoP → N origin requests");
    assert!(owners.iter().all(|o| o.starts_with("fra-")), "owners are of the PoP: {owners:?}");
    for e in 0..3 {
        assert!(owners.contains(&format!("fra-{e}")), "every edge owns some keys: {owners:?}");
    }

    // The ams1 edge is nobody's peer and has none: it fetches every object itself.
    for i in 0..n {
        let got = fetch(&other, &format!("/found/{i}")).await;
        assert_eq!(got.status, 200);
        assert_eq!(members(&got).len(), 1, "{}", got.cache());
    }
    assert_eq!((0..n).map(|i| origin.hits(&format!("/found/{i}"))).sum::<usize>(), 2 * n);
    assert_eq!(discovered(&other), None, "the ams1 edge found no peer");
}

#[test]
fn discovering_peers_needs_a_pop_and_a_control_plane() {
    let (code, _, stderr) = process::run_stratus(&[
        "edge",
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "http://127.0.0.1:9",
        "--self",
        "http://127.0.0.1:8080",
        "--discover-peers",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("cluster.discover") && stderr.contains("pop"), "{stderr}");
    let (code, _, stderr) = process::run_stratus(&[
        "edge",
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "http://127.0.0.1:9",
        "--pop",
        "fra 1",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("pop"), "{stderr}");
}
