//! Acceptance of issue #19: the control plane on a three-node NATS JetStream cluster, two
//! control replicas serving the API at once, two real edges failing over between them. Nodes
//! and replicas are SIGKILLed while purges stream in; what users notice is checked — every
//! purge answered `202` reaches both edges in sequence order, either replica reports it, and
//! content purged at the end misses on both edges.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::control::{Api, TOKEN};
use crate::support::http::get_on;
use crate::support::nats::Cluster;
use crate::support::origin::Origin;
use crate::support::{self, Proc, until};

/// `stratus control` on the NATS cluster (no data directory: it is stateless).
fn start_replica(servers: &str) -> Proc {
    let mut cmd = support::stratus();
    cmd.args(["control", "--listen", "127.0.0.1:0", "--log", servers]).env("STRATUS_TOKEN", TOKEN);
    Proc::start(cmd, &["control api"])
}

/// `stratus edge` following the replicas `controls` (comma-separated, first one first), logging
/// every log entry it applies.
fn start_edge(origin: &str, controls: &str, id: &str) -> Proc {
    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin", origin])
        .args(["--control", controls, "--id", id])
        .env("STRATUS_TOKEN", TOKEN)
        .env("RUST_LOG", "info,stratus_edge::fleet::follow=debug");
    Proc::start(cmd, &["edge http", "edge admin"])
}

/// The sequence numbers an edge logged as applied, in the order it applied them.
fn applied_seqs(edge: &Proc) -> Vec<u64> {
    let plain = strip_ansi(&edge.stderr());
    plain
        .lines()
        .filter(|l| l.contains("log entry applied"))
        .filter_map(|l| {
            let rest = &l[l.find("seq=")? + 4..];
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// POSTs a purge to `api`; `Some((seq, id))` when it was answered `202`. A replica that is
/// gone, or a cluster electing a leader, may refuse: that purge was never promised.
async fn try_purge(api: &Api, body: Value) -> Option<(u64, String)> {
    let sent = api
        .http
        .post(format!("{}/v1/purge", api.base))
        .bearer_auth(&api.token)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    if sent.status() != 202 {
        return None;
    }
    let answer: Value = sent.json().await.ok()?;
    Some((answer["seq"].as_u64()?, answer["id"].as_str()?.to_owned()))
}

/// Whether `api` lists edges `a` and `b`, live, each with a subscription somewhere.
async fn both_following(api: &Api) -> bool {
    let (status, list) = api.get("/v1/edges").await;
    let Some(edges) = list["edges"].as_array() else { return false };
    status == 200
        && ["a", "b"].iter().all(|id| {
            edges.iter().any(|e| e["id"] == *id && e["live"] == true && e["subscriptions"].as_u64() > Some(0))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_survive_killing_a_nats_node_and_a_control_replica_mid_stream() {
    let mut nats = Cluster::start();
    let origin = Origin::cacheable().await;
    let mut replicas = [start_replica(&nats.urls()), start_replica(&nats.urls())];
    let apis = [Api::new(&replicas[0]), Api::new(&replicas[1])];
    // Edge `a` follows replica 0 first, `b` replica 1; each knows both.
    let edges = [
        start_edge(&origin.url, &format!("{},{}", apis[0].base, apis[1].base), "a"),
        start_edge(&origin.url, &format!("{},{}", apis[1].base, apis[0].base), "b"),
    ];
    for api in &apis {
        until("both edges follow, as every replica reports", Duration::from_secs(30), || async {
            both_following(api).await.then_some(())
        })
        .await;
    }
    // Content tagged `blog` cached on both edges.
    for edge in &edges {
        get_on(&edge.addr("edge http"), "cdn.example", "/blog/1").await;
        let got = get_on(&edge.addr("edge http"), "cdn.example", "/blog/1").await;
        assert!(got.hit(), "/blog/1 is cached on every edge before the purges: {got:?}");
    }

    // A stream of purges to both replicas, alternating; the node and the replica die mid-way.
    const PURGES: usize = 60;
    let sender = {
        let apis = apis.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..PURGES {
                let body = json!({"files": [format!("http://cdn.example/s/{i}")]});
                if let Some(done) = try_purge(&apis[i % 2], body).await {
                    accepted.push(done);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            accepted
        })
    };
    until("the first purges are accepted", Duration::from_secs(30), || async {
        (apis[1].head().await >= 10).then_some(())
    })
    .await;
    nats.nodes[0].kill();
    replicas[0].kill();
    let accepted = sender.await.expect("sender");
    let survivor = &apis[1];
    assert!(
        accepted.len() >= PURGES / 2,
        "every purge sent to the surviving replica is accepted (quorum of 2 of 3 nodes): {} of {PURGES}",
        accepted.len()
    );

    // A tag purged at the end, through the survivor, waits for both edges.
    let (status, answer) = survivor.post("/v1/purge?wait=20s", json!({"tags": ["blog"]})).await;
    assert_eq!((status, &answer["complete"]), (200, &json!(true)), "{answer}");
    let states: Vec<(&str, &str)> = answer["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (e["id"].as_str().unwrap_or(""), e["state"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(states, [("a", "applied"), ("b", "applied")], "{answer}");
    let last = answer["seq"].as_u64().expect("seq");

    // Every accepted purge shows as applied on both edges from the surviving replica.
    for (_, id) in &accepted {
        for edge in ["a", "b"] {
            until(&format!("{id} shows applied by {edge}"), Duration::from_secs(20), || async {
                (survivor.edge_state(id, edge).await.as_deref() == Some("applied")).then_some(())
            })
            .await;
        }
    }
    // Each edge applied the log in sequence order, without a gap, through every accepted purge
    // and the final tag purge.
    for edge in &edges {
        let seqs = applied_seqs(edge);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "applied in order without gaps: {seqs:?}");
        for (seq, id) in &accepted {
            assert!(seqs.contains(seq), "{id} (seq {seq}) was applied: {seqs:?}");
        }
        assert_eq!(seqs.last(), Some(&last), "the tag purge is the last entry applied");
        let got = get_on(&edge.addr("edge http"), "cdn.example", "/blog/1").await;
        assert!(!got.hit(), "the tag purged at the end misses: {got:?}");
    }
}
