//! Site configuration pushed through the control plane (issue #6, config entries): `PUT
//! /v1/config` reaches every following edge, which then serves the new sites; bad tokens and
//! invalid bodies change nothing; the configuration survives a SIGKILLed control plane and log
//! compaction, and an edge started later is given it; an edge that cannot apply one reports it
//! as failed and keeps serving its old sites. Real processes throughout: `stratus control`,
//! `stratus edge` from configuration files, and test origins.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::control::{Api, TOKEN, start_control};
use crate::support::http::get_on;
use crate::support::origin::{Origin, Reply};
use crate::support::{self, Proc, until};

/// An origin answering `/cfg/page` with `name`.
async fn origin(name: &str) -> Origin {
    let o = Origin::start().await;
    o.fixed("/cfg/page", Reply::ok(name, &[("cache-control", "max-age=60")]));
    o
}

/// The `[edge]` file of an edge `id` following `control`, serving `old.example` from `origin`.
fn edge_file(id: &str, control: &str, origin: &str) -> String {
    format!(
        "[edge]\nid = \"{id}\"\ncontrol = \"{control}\"\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\n\
         [edge.admin]\nlisten = \"127.0.0.1:0\"\n\
         [[edge.sites]]\nhosts = [\"old.example\"]\norigins = [\"{origin}\"]\n"
    )
}

/// Starts edge `id` from a file in `dir` (kept there for SIGHUP).
fn start_edge(dir: &Path, id: &str, control: &str, origin: &str) -> Proc {
    let path = support::write_file(dir, &format!("{id}.toml"), &edge_file(id, control, origin));
    let mut cmd = support::stratus();
    cmd.arg("edge").arg("--config").arg(path).env("STRATUS_TOKEN", TOKEN);
    Proc::start(cmd, &["edge http", "edge admin"])
}

/// `PUT /v1/config` with `token`; the status and JSON answer.
async fn put_config(api: &Api, query: &str, body: &Value, token: &str) -> (u16, Value) {
    let r = api.http.put(format!("{}/v1/config{query}", api.base)).bearer_auth(token).json(body).send().await;
    let r = r.expect("control plane answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Two sites: `old.example` as before, and `new.example` from `new`.
fn two_sites(old: &str, new: &str) -> Value {
    json!({"sites": [
        {"hosts": ["old.example"], "origins": [old]},
        {"hosts": ["new.example"], "origins": [new], "ttl": [{"prefix": "/", "max": "1h"}]},
    ]})
}

/// Waits until the edge at `addr` answers `host` with `body`.
async fn until_serves(addr: &str, host: &str, body: &str) {
    until(&format!("{addr} serves {host} with {body:?}"), Duration::from_secs(20), || async {
        let got = get_on(addr, host, "/cfg/page").await;
        (got.status == 200 && got.body == body).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_config_put_on_the_control_plane_reaches_every_edge() {
    let old = origin("old").await;
    let new = origin("new").await;
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let edges: Vec<Proc> =
        ["a", "b"].iter().map(|id| start_edge(dir.path(), id, &api.base, &old.url)).collect();
    api.until_following(2).await;
    for edge in &edges {
        assert_eq!(get_on(&edge.addr("edge http"), "new.example", "/cfg/page").await.status, 421);
    }

    let (status, answer) = put_config(&api, "?wait=10s", &two_sites(&old.url, &new.url), TOKEN).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["id"].as_str(), answer["complete"].as_bool()), (Some("c-1"), Some(true)), "{answer}");
    let states: Vec<&str> =
        answer["edges"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["applied", "applied"], "{answer}");
    for edge in &edges {
        until_serves(&edge.addr("edge http"), "new.example", "new").await;
        until_serves(&edge.addr("edge http"), "old.example", "old").await;
    }

    let (status, current) = api.get("/v1/config").await;
    assert_eq!(status, 200, "{current}");
    assert_eq!((current["id"].as_str(), current["seq"].as_u64()), (Some("c-1"), Some(1)));
    assert_eq!(current["sites"][1]["hosts"], json!(["new.example"]));
    assert_eq!(current["sites"][1]["ttl"][0]["max"], "1h");
    // Heartbeats say which configuration each edge runs.
    until("both edges report running c-1", Duration::from_secs(20), || async {
        let (_, list) = api.get("/v1/edges").await;
        list["edges"].as_array()?.iter().all(|e| e["config"] == 1).then_some(())
    })
    .await;

    // The control plane's sites win over a SIGHUP'd file: the file is read, its sites wait.
    let path = dir.path().join("a.toml");
    let file = edge_file("a", &api.base, &old.url).replace("old.example", "file.example");
    std::fs::write(&path, file).unwrap();
    edges[0].signal("HUP");
    support::eventually("the reload is logged", Duration::from_secs(20), || {
        edges[0].stderr().contains("sites pushed by the control plane stay in force").then_some(())
    });
    let addr = edges[0].addr("edge http");
    assert_eq!(get_on(&addr, "file.example", "/cfg/page").await.status, 421);
    assert_eq!(get_on(&addr, "new.example", "/cfg/page").await.body, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_or_an_invalid_configuration_changes_nothing() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let good = two_sites("http://127.0.0.1:9", "http://127.0.0.1:9");
    let (status, _) = put_config(&api, "", &good, "wrong-token").await;
    assert_eq!(status, 401);

    let site = |extra: Value| {
        let mut s = json!({"hosts": ["a.example"], "origins": ["http://127.0.0.1:9"]});
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s
    };
    let cases = [
        (json!({"sites": [site(json!({"ttl": [{"prefix": "static/"}]}))]}), "sites[0].ttl[0].prefix"),
        (json!({"sites": [site(json!({})), site(json!({}))]}), "sites[1].hosts"),
        (json!({"sites": [site(json!({"colour": "blue"}))]}), "sites[0].colour"),
        (json!({"sites": [site(json!({"origins": ["ftp://x"]}))]}), "sites[0].origins[0]"),
        (
            json!({"sites": [site(json!({"negative": [{"status": 200, "ttl": "1s"}]}))]}),
            "sites[0].negative[0].status",
        ),
        (json!({"sites": []}), "sites"),
        (json!({"hosts": ["a"]}), "hosts"),
    ];
    for (body, field) in cases {
        let (status, answer) = put_config(&api, "", &body, TOKEN).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some(field)), "{body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    }
    let (status, _) = api.get("/v1/config").await;
    assert_eq!(status, 404, "no configuration was stored");
    assert_eq!(api.head().await, 0, "nothing was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_config_survives_a_killed_control_plane_and_compaction_and_reaches_a_new_edge() {
    let old = origin("old").await;
    let new = origin("new").await;
    let dir = support::tempdir();
    let mut control = start_control(dir.path(), "retain_entries = 2");
    let api = Api::new(&control);
    let (status, answer) = put_config(&api, "", &two_sites(&old.url, &new.url), TOKEN).await;
    assert_eq!(status, 202, "{answer}");
    for _ in 0..3 {
        api.purge(json!({"tags": ["t"]})).await;
    }
    let (_, edges) = api.get("/v1/edges").await;
    assert_eq!(edges["floor"], 2, "the config entry is compacted away: {edges}");

    // SIGKILL, then the same data directory on the same port.
    control.kill();
    let port = api.base.rsplit(':').next().unwrap().to_owned();
    let file = dir.path().join("control.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&file, text).unwrap();
    let mut cmd = support::stratus();
    cmd.args(["control", "--config"]).arg(&file).env("STRATUS_TOKEN", TOKEN);
    let _control = Proc::start(cmd, &["control api"]);

    let (status, current) = api.get("/v1/config").await;
    assert_eq!((status, current["id"].as_str()), (200, Some("c-1")), "{current}");
    let edge = start_edge(dir.path(), "late", &api.base, &old.url);
    until_serves(&edge.addr("edge http"), "new.example", "new").await;
    assert_eq!(get_on(&edge.addr("edge http"), "old.example", "/cfg/page").await.body, "old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_that_cannot_apply_a_config_reports_it_failed_and_keeps_its_sites() {
    let old = origin("old").await;
    let new = origin("new").await;
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let edge = start_edge(dir.path(), "a", &api.base, &old.url);
    api.until_following(1).await;

    // Valid by the rules, but not buildable on this edge: an origin CA file and a certificate
    // whose files do not exist here.
    let unbuildable = json!({"sites": [{
        "hosts": ["new.example"], "origins": ["https://127.0.0.1:9"],
        "ca_file": "/nonexistent/stratus/ca.pem",
        "tls": {"cert": "/nonexistent/stratus/cert.pem", "key": "/nonexistent/stratus/key.pem"},
    }]});
    let (status, answer) = put_config(&api, "?wait=10s", &unbuildable, TOKEN).await;
    assert_eq!(status, 200, "{answer}");
    let a = &answer["edges"][0];
    assert_eq!((a["id"].as_str(), a["state"].as_str()), (Some("a"), Some("failed")), "{answer}");
    assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    // The edge logs the error before it reports the failure, but the test reads the edge's
    // stderr through a pipe and a thread, which may not have caught up yet.
    support::eventually(
        "the edge logs why it cannot apply the configuration",
        Duration::from_secs(10),
        || edge.stderr().contains("cannot apply the control plane's site configuration").then_some(()),
    );
    let addr = edge.addr("edge http");
    assert_eq!(get_on(&addr, "old.example", "/cfg/page").await.body, "old", "the old sites stay");
    assert_eq!(get_on(&addr, "new.example", "/cfg/page").await.status, 421);
    let (_, status_of) = api.get("/v1/config/c-1").await;
    assert_eq!(status_of["edges"][0]["state"], "failed", "{status_of}");

    // The next good configuration applies.
    let (status, answer) = put_config(&api, "?wait=10s", &two_sites(&old.url, &new.url), TOKEN).await;
    assert_eq!((status, answer["edges"][0]["state"].as_str()), (200, Some("applied")), "{answer}");
    until_serves(&addr, "new.example", "new").await;
}
