//! Acceptance of issue #6 with real processes: `stratus control`, two `stratus edge` processes
//! following it, and an origin in front of which they cache (the test origin's `cacheable`
//! preset, which counts what it is asked; `tests/control/origin.rs` uses the real `stratus origin`).
//! What users notice is checked: whether a request is a cache hit (`Cache-Status`, RFC 9211) and
//! what the origin was asked.

use std::time::Duration;

use serde_json::json;

use crate::support::control::{Api, TOKEN, start_control, start_edge};
use crate::support::http::get_on;
use crate::support::origin::Origin;
use crate::support::{self, Proc, until};

/// The control plane, two edges `a` and `b` following it, and the origin behind them.
struct Fleet {
    origin: Origin,
    control: Proc,
    edges: Vec<Proc>,
    api: Api,
    dir: tempfile::TempDir,
}

impl Fleet {
    async fn start() -> Self {
        let origin = Origin::cacheable().await;
        let dir = support::tempdir();
        let control = start_control(dir.path(), "");
        let api = Api::new(&control);
        let edges = ["a", "b"].iter().map(|id| start_edge(&origin.url, &api.base, id)).collect();
        let fleet = Self { origin, control, edges, api, dir };
        fleet.until_following().await;
        fleet
    }

    /// Waits until both edges hold a subscription.
    async fn until_following(&self) {
        self.api.until_following(2).await;
    }

    /// Starts the control plane again on the same port and data directory (the edges know
    /// only that address), with `extra` lines added to its configuration.
    fn restart_control(&mut self, extra: &str) {
        self.control.kill();
        let port = self.api.base.rsplit(':').next().expect("port").to_owned();
        let file = self.dir.path().join("control.toml");
        let text = std::fs::read_to_string(&file).expect("config");
        let text = text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")) + extra + "\n";
        std::fs::write(&file, text).expect("config");
        let mut cmd = support::stratus();
        cmd.args(["control", "--config"]).arg(&file).env("STRATUS_TOKEN", TOKEN);
        self.control = Proc::start(cmd, &["control api"]);
    }

    fn addr(&self, edge: usize) -> String {
        self.edges[edge].addr("edge http")
    }

    /// GETs on both edges; returns whether each was a hit.
    async fn hits(&self, host: &str, path: &str) -> [bool; 2] {
        let a = get_on(&self.addr(0), host, path).await;
        let b = get_on(&self.addr(1), host, path).await;
        for got in [&a, &b] {
            assert_eq!(got.status, 200, "{host}{path}: {got:?}");
            assert_eq!(got.body, format!("{path} v1"));
        }
        [a.hit(), b.hit()]
    }

    /// Fetches each object on both edges until it is cached there.
    async fn warm(&self, objects: &[(&str, &str)]) {
        for (host, path) in objects {
            self.hits(host, path).await;
            assert_eq!(self.hits(host, path).await, [true, true], "{host}{path} is cached on both edges");
        }
    }

    /// Purges with `?wait` and checks both edges applied it.
    async fn purge(&self, body: serde_json::Value) {
        let (status, answer) = self.api.post("/v1/purge?wait=5s", body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["complete"], true, "{answer}");
        let applied: Vec<&str> = answer["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .filter(|e| e["state"] == "applied")
            .map(|e| e["id"].as_str().expect("id"))
            .collect();
        assert_eq!(applied, ["a", "b"], "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_purge_kind_removes_exactly_its_targets_on_both_edges() {
    let fleet = Fleet::start().await;
    let objects = [
        ("cdn.example", "/f/1"),
        ("cdn.example", "/f/2"),
        ("cdn.example", "/p/1"),
        ("cdn.example", "/p/2"),
        ("cdn.example", "/q/1"),
        ("cdn.example", "/blog/1"),
        ("other.example", "/p/1"),
        ("other.example", "/o/1"),
    ];
    fleet.warm(&objects).await;
    let still_cached = async |fleet: &Fleet, keep: &[(&str, &str)]| {
        for (host, path) in keep {
            assert_eq!(
                fleet.hits(host, path).await,
                [true, true],
                "{host}{path} is still cached on both edges"
            );
        }
    };

    fleet.purge(json!({"files": ["http://cdn.example/f/1"]})).await;
    assert_eq!(fleet.hits("cdn.example", "/f/1").await, [false, false], "the purged URL misses on both");
    still_cached(&fleet, &[("cdn.example", "/f/2"), ("other.example", "/p/1")]).await;

    fleet.purge(json!({"prefixes": ["cdn.example/p/"]})).await;
    assert_eq!(fleet.hits("cdn.example", "/p/1").await, [false, false]);
    assert_eq!(fleet.hits("cdn.example", "/p/2").await, [false, false]);
    still_cached(&fleet, &[("cdn.example", "/q/1"), ("other.example", "/p/1"), ("cdn.example", "/f/2")])
        .await;

    fleet.purge(json!({"tags": ["blog"]})).await;
    assert_eq!(fleet.hits("cdn.example", "/blog/1").await, [false, false]);
    still_cached(&fleet, &[("cdn.example", "/q/1"), ("cdn.example", "/f/2")]).await;

    fleet.purge(json!({"hosts": ["other.example"]})).await;
    assert_eq!(fleet.hits("other.example", "/p/1").await, [false, false]);
    assert_eq!(fleet.hits("other.example", "/o/1").await, [false, false]);
    still_cached(&fleet, &[("cdn.example", "/q/1"), ("cdn.example", "/p/1")]).await;

    fleet.purge(json!({"purge_everything": true})).await;
    for (host, path) in objects {
        assert_eq!(fleet.hits(host, path).await, [false, false], "{host}{path} after purge_everything");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_makes_the_next_request_revalidate_with_a_304() {
    let fleet = Fleet::start().await;
    fleet.warm(&[("cdn.example", "/s/1"), ("cdn.example", "/s/2")]).await;
    assert_eq!(fleet.origin.full("/s/1"), 2, "one fill per edge");
    fleet.purge(json!({"files": ["http://cdn.example/s/1"], "soft": true})).await;

    // Both edges ask the origin again, conditionally; its 304 refreshes the entry.
    let hits = fleet.hits("cdn.example", "/s/1").await;
    assert_eq!(hits, [false, false], "the first request after a soft purge goes to the origin");
    assert_eq!(fleet.origin.not_modified("/s/1"), 2, "each edge revalidated with a 304");
    assert_eq!(fleet.origin.full("/s/1"), 2, "no full refetch");
    assert_eq!(fleet.hits("cdn.example", "/s/1").await, [true, true], "fresh again after the 304");
    assert_eq!(fleet.hits("cdn.example", "/s/2").await, [true, true], "the other object was untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_edge_shows_pending_and_applies_the_purge_after_sigcont() {
    let fleet = Fleet::start().await;
    fleet.warm(&[("cdn.example", "/z/1")]).await;
    fleet.edges[1].signal("STOP");
    let (status, answer) =
        fleet.api.post("/v1/purge?wait=1s", json!({"files": ["http://cdn.example/z/1"]})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["complete"], false);
    let id = answer["id"].as_str().expect("id").to_owned();
    assert_eq!(
        fleet.api.edge_state(&id, "b").await.as_deref(),
        Some("pending"),
        "GET /v1/purge/{id} while stopped"
    );
    fleet.edges[1].signal("CONT");
    let states: Vec<(&str, &str)> = answer["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (e["id"].as_str().expect("id"), e["state"].as_str().expect("state")))
        .collect();
    assert_eq!(states, [("a", "applied"), ("b", "pending")]);

    // Resumed, `b` reads the entry waiting in its stream and applies it; the heartbeat interval
    // (5 s) is longer than this wait, and `b`'s cache shows it applied.
    until("b applied the purge", Duration::from_secs(4), || async {
        (fleet.api.edge_state(&id, "b").await.as_deref() == Some("applied")).then_some(())
    })
    .await;
    let got = get_on(&fleet.addr(1), "cdn.example", "/z/1").await;
    assert!(!got.hit(), "b refetches the purged object: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_control_plane_restarts_with_its_log_and_edges_resume() {
    let mut fleet = Fleet::start().await;
    fleet.warm(&[("cdn.example", "/k/1"), ("cdn.example", "/k/2")]).await;
    fleet.purge(json!({"files": ["http://cdn.example/nothing"]})).await;

    fleet.control.kill();
    // The edges keep serving from their caches while the control plane is down.
    assert_eq!(fleet.hits("cdn.example", "/k/1").await, [true, true]);

    fleet.restart_control("");
    assert_eq!(fleet.api.head().await, 1, "the log survived SIGKILL");
    fleet.until_following().await;

    // Both edges resumed after entry 1: nothing was replayed or reset (their caches are intact)
    // and the next purge is applied by both.
    let (_, list) = fleet.api.get("/v1/edges").await;
    for edge in list["edges"].as_array().expect("edges") {
        assert_eq!(edge["applied"], 1, "{edge}");
    }
    assert_eq!(fleet.hits("cdn.example", "/k/2").await, [true, true], "no reset dropped the caches");
    fleet.purge(json!({"files": ["http://cdn.example/k/1"]})).await;
    assert_eq!(fleet.hits("cdn.example", "/k/1").await, [false, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_purges_nothing_on_any_edge() {
    let fleet = Fleet::start().await;
    fleet.warm(&[("cdn.example", "/t/1")]).await;
    let mut api = fleet.api.clone();
    api.token = "not-the-token".into();
    let (status, _) = api.post("/v1/purge?wait=1s", json!({"purge_everything": true})).await;
    assert_eq!(status, 401);
    assert_eq!(fleet.api.head().await, 0);
    assert_eq!(fleet.hits("cdn.example", "/t/1").await, [true, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prewarm_makes_the_next_request_a_hit_on_both_edges() {
    let fleet = Fleet::start().await;
    let (status, answer) = fleet
        .api
        .post("/v1/prewarm", json!({"files": ["http://cdn.example/w/1", "http://cdn.example/w/2"]}))
        .await;
    assert_eq!(status, 202, "{answer}");
    until("both edges fetched both objects", Duration::from_secs(10), || async {
        (fleet.origin.full("/w/1") == 2 && fleet.origin.full("/w/2") == 2).then_some(())
    })
    .await;
    // An edge stores an object once its body has arrived, a moment after the origin counted
    // the request: wait until each edge's cache inspection shows both stored.
    until("both edges stored both objects", Duration::from_secs(10), || async {
        for edge in &fleet.edges {
            for path in ["/w/1", "/w/2"] {
                let url = format!("{}/cache?url=http%3A%2F%2Fcdn.example{path}", edge.url("edge admin"));
                let res = fleet.api.http.get(url).bearer_auth(TOKEN).send().await.ok()?;
                let v: serde_json::Value = res.json().await.ok()?;
                if v["stored"] != true {
                    return None;
                }
            }
        }
        Some(())
    })
    .await;
    assert_eq!(fleet.hits("cdn.example", "/w/1").await, [true, true]);
    assert_eq!(fleet.hits("cdn.example", "/w/2").await, [true, true]);
    assert_eq!(fleet.origin.full("/w/1"), 2, "served from the prewarmed copies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_shows_both_edges_with_their_heartbeat_stats() {
    let fleet = Fleet::start().await;
    fleet.warm(&[("cdn.example", "/r/1")]).await;
    let edges = until("heartbeats report the traffic", Duration::from_secs(15), || async {
        let (_, list) = fleet.api.get("/v1/edges").await;
        let edges = list["edges"].as_array()?.clone();
        edges
            .iter()
            .all(|e| e["requests"].as_u64() >= Some(2) && e["hits"].as_u64() >= Some(1))
            .then_some(edges)
    })
    .await;
    for (edge, proc) in edges.iter().zip(&fleet.edges) {
        assert_eq!(edge["url"], proc.url("edge http").as_str(), "{edge}");
        assert_eq!(edge["live"], true);
        assert_eq!(edge["lag"], 0);
        assert!(edge["cache_bytes"].as_u64() > Some(0), "{edge}");
        assert!(edge["version"].as_str().is_some_and(|v| !v.is_empty()), "{edge}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_behind_the_compacted_log_drops_its_whole_cache() {
    let mut fleet = Fleet::start().await;
    fleet.warm(&[("cdn.example", "/c/1")]).await;
    // `b` sleeps through a restart of the control plane that now keeps only 2 entries, and
    // through 3 purges of other objects.
    fleet.edges[1].signal("STOP");
    fleet.restart_control("retain_entries = 2");
    until("edge a follows the restarted control plane", Duration::from_secs(10), || async {
        let (_, list) = fleet.api.get("/v1/edges").await;
        list["edges"]
            .as_array()?
            .iter()
            .any(|e| e["id"] == "a" && e["subscriptions"].as_u64() > Some(0))
            .then_some(())
    })
    .await;
    for i in 0..3 {
        let (status, answer) = fleet
            .api
            .post("/v1/purge?wait=5s", json!({ "files": [format!("http://cdn.example/other/{i}")] }))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, list) = fleet.api.get("/v1/edges").await;
    assert_eq!((list["head"].as_u64(), list["floor"].as_u64()), (Some(3), Some(1)), "{list}");
    fleet.edges[1].signal("CONT");

    // `b` resumes after entry 0, which is compacted away: it is reset, drops everything, and
    // then follows from entry 2.
    until("b caught up", Duration::from_secs(10), || async {
        let (_, list) = fleet.api.get("/v1/edges").await;
        list["edges"].as_array()?.iter().any(|e| e["id"] == "b" && e["applied"] == 3).then_some(())
    })
    .await;
    let a = get_on(&fleet.addr(0), "cdn.example", "/c/1").await;
    let b = get_on(&fleet.addr(1), "cdn.example", "/c/1").await;
    assert!(a.hit(), "a applied every entry and kept its cache: {a:?}");
    assert!(!b.hit(), "b dropped its whole cache: {b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_started_before_its_control_plane_serves_and_joins_later() {
    let origin = Origin::cacheable().await;
    // A port nobody listens on yet: the control plane comes up there later.
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let control_url = format!("http://127.0.0.1:{port}");
    let edge = start_edge(&origin.url, &control_url, "early");
    let addr = edge.addr("edge http");
    assert!(!get_on(&addr, "cdn.example", "/e/1").await.hit());
    assert!(
        get_on(&addr, "cdn.example", "/e/1").await.hit(),
        "serves from its cache without a control plane"
    );

    let dir = support::tempdir();
    let file = support::write_file(
        dir.path(),
        "control.toml",
        &format!("[control]\nlisten = \"127.0.0.1:{port}\"\ndata = {:?}\n", dir.path().join("data")),
    );
    let mut cmd = support::stratus();
    cmd.args(["control", "--config"]).arg(file).env("STRATUS_TOKEN", TOKEN);
    let control = Proc::start(cmd, &["control api"]);
    let api = Api::new(&control);
    api.until_following(1).await;
    let (status, answer) = api.post("/v1/purge?wait=5s", json!({"files": ["http://cdn.example/e/1"]})).await;
    assert_eq!((status, answer["edges"][0]["state"].as_str()), (200, Some("applied")), "{answer}");
    assert!(!get_on(&addr, "cdn.example", "/e/1").await.hit(), "the purge reached the late-joined edge");
}
