//! The control plane at the protocol level: a real `stratus control` process, real HTTP
//! subscribers standing in for edges (docs/PROTOCOL.md, "Edge ↔ control").

use serde_json::{Value, json};

use crate::support;
use crate::support::control::{Api, Subscriber, TOKEN, follower, start_control, stratus_purge};
use crate::support::origin::{Origin, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_stream_in_order_and_acks_mark_edges_applied() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    assert_eq!(api.register("a").await, 0);
    let mut sub = Subscriber::open(&api, "a", 0).await;

    let first = api.purge(json!({"files": ["http://cdn.example/a.png"]})).await;
    let second = api.purge(json!({"prefixes": ["cdn.example/img/"], "soft": true})).await;
    let third = api.purge(json!({"tags": ["blog"], "hosts": ["cdn.example"]})).await;
    let entries = sub.entries(3).await;
    assert_eq!(entries.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(entries[0].1["id"], first.as_str());
    assert_eq!(entries[0].1["type"], "purge");
    assert_eq!(entries[0].1["files"], json!(["http://cdn.example/a.png"]));
    assert_eq!(entries[1].1["id"], second.as_str());
    assert_eq!(entries[1].1["soft"], true);
    assert_eq!(entries[2].1["tags"], json!(["blog"]));
    assert_eq!(entries[2].1["id"], third.as_str());

    assert_eq!(api.edge_state(&second, "a").await.as_deref(), Some("pending"));
    api.ack("a", 2).await;
    let (status, progress) = api.get(&format!("/v1/purge/{second}")).await;
    assert_eq!(status, 200);
    assert_eq!(progress["edges"][0]["state"], "applied", "{progress}");
    assert!(progress["edges"][0]["applied_ms"].as_f64().is_some(), "{progress}");
    assert_eq!(progress["complete"], true);
    assert!(progress["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{progress}");
    assert_eq!(api.edge_state(&third, "a").await.as_deref(), Some("pending"));

    let (status, edges) = api.get("/v1/edges").await;
    assert_eq!(status, 200);
    assert_eq!(edges["edges"][0]["applied"], 2);
    assert_eq!(edges["edges"][0]["lag"], 1);
    let (status, _) = api.get("/v1/purge/p-99").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_answers_once_every_live_edge_applied_or_names_the_laggard() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let _a = follower(&api, "a").await;
    let _b = follower(&api, "b").await;

    let (status, answer) = api.post("/v1/purge?wait=5s", json!({"files": ["/x"]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["complete"], true);
    let states: Vec<&str> =
        answer["edges"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["applied", "applied"]);

    // An edge that holds its subscription but never applies anything.
    let head = api.register("stuck").await;
    let _stuck = Subscriber::open(&api, "stuck", head).await;
    let (status, answer) = api.post("/v1/purge?wait=300ms", json!({"files": ["/y"]})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["complete"], false);
    let pending: Vec<&str> = answer["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "pending")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["stuck"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_behind_the_compacted_log_is_reset() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "retain_entries = 3");
    let api = Api::new(&control);
    api.register("late").await;
    for i in 0..5 {
        api.purge(json!({ "files": [format!("/f{i}")] })).await;
    }
    let mut sub = Subscriber::open(&api, "late", 1).await;
    assert_eq!(sub.next().await, json!({"type": "reset", "next": 3}));
    let seqs: Vec<u64> = sub.entries(3).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(seqs, [3, 4, 5]);

    // A position the log never reached (its data was lost) is reset too.
    let mut ahead = Subscriber::open(&api, "late", 50).await;
    assert_eq!(ahead.next().await, json!({"type": "reset", "next": 6}));
    // An up-to-date subscriber gets nothing old, only what comes next.
    let mut current = Subscriber::open(&api, "late", 5).await;
    api.purge(json!({"files": ["/new"]})).await;
    assert_eq!(current.entries(1).await[0].0, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keeps_every_acknowledged_entry() {
    let dir = support::tempdir();
    let mut control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(api.purge(json!({ "files": [format!("http://cdn.example/{i}")] })).await);
    }
    control.kill(); // SIGKILL: no chance to flush anything

    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    assert_eq!(api.head().await, 20);
    api.register("a").await;
    let mut sub = Subscriber::open(&api, "a", 0).await;
    let entries = sub.entries(20).await;
    for (i, (seq, op)) in entries.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(op["id"], ids[i].as_str());
        assert_eq!(op["files"][0], format!("http://cdn.example/{i}"));
    }
    let next = api.purge(json!({"files": ["/after-restart"]})).await;
    assert_eq!(sub.entries(1).await[0], (21, sub_op(&api, &next).await));
}

async fn sub_op(api: &Api, id: &str) -> Value {
    let (status, progress) = api.get(&format!("/v1/purge/{id}")).await;
    assert_eq!(status, 200);
    progress["op"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_missing_token_gets_401_and_changes_nothing() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let base = api.base.clone();
    let http = reqwest::Client::new();
    let purge = json!({"purge_everything": true});
    let calls = [
        http.post(format!("{base}/v1/purge")).json(&purge),
        http.post(format!("{base}/v1/purge")).bearer_auth("wrong").json(&purge),
        http.post(format!("{base}/v1/purge")).header("authorization", TOKEN).json(&purge),
        http.post(format!("{base}/v1/prewarm")).bearer_auth("wrong").json(&json!({"files": ["http://a/b"]})),
        http.post(format!("{base}/v1/events/origin"))
            .json(&json!({"events": [{"kind": "put", "bucket": "b", "key": "k"}]})),
        http.post(format!("{base}/v1/edges/register")).bearer_auth("wrong").json(&json!({"id": "evil"})),
        http.get(format!("{base}/v1/edges/evil/events?after=0")),
        http.get(format!("{base}/v1/edges")),
        http.get(format!("{base}/v1/purge/p-1")),
    ];
    for call in calls {
        let response = call.send().await.expect("answer");
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    // The scheme is case-insensitive (RFC 9110 §11.1), as on the edge admin API.
    let lower = http.get(format!("{base}/v1/edges")).header("authorization", format!("bearer {TOKEN}"));
    assert_eq!(lower.send().await.expect("answer").status(), 200);
    let (status, edges) = api.get("/v1/edges").await;
    assert_eq!(status, 200);
    assert_eq!(edges["head"], 0, "nothing was appended");
    assert_eq!(edges["edges"], json!([]), "nobody registered");
    // The dashboard shows no secrets and needs no token.
    let page = http.get(format!("{base}/")).send().await.expect("dashboard");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("Stratus control"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_400_naming_the_field() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let cases = [
        ("/v1/purge", json!({}), "body"),
        ("/v1/purge", json!({"soft": true}), "body"),
        ("/v1/purge", json!({"files": ["ftp://x/y"]}), "files[0]"),
        ("/v1/purge", json!({"files": ["/ok", ""]}), "files[1]"),
        ("/v1/purge", json!({"files": "http://a/b"}), "files"),
        ("/v1/purge", json!({"prefixes": ["https://cdn.example/img/"]}), "prefixes[0]"),
        ("/v1/purge", json!({"tags": ["two words"]}), "tags[0]"),
        ("/v1/purge", json!({"hosts": ["a/b"]}), "hosts[0]"),
        ("/v1/purge", json!({"purge_everything": "yes"}), "purge_everything"),
        ("/v1/purge", json!({"urls": ["/a"]}), "urls"),
        ("/v1/purge", json!({"files": vec!["/a"; 1001]}), "files"),
        ("/v1/purge?wait=soon", json!({"files": ["/a"]}), "wait"),
        ("/v1/prewarm", json!({"prefix": "img/"}), "bucket"),
        ("/v1/prewarm", json!({"bucket": "demo"}), "bucket"),
        ("/v1/events/origin", json!({"events": []}), "events"),
        ("/v1/events/origin", json!({"events": [{"kind": "put"}]}), "events[0]"),
        ("/v1/edges/register", json!({"id": "no spaces"}), "id"),
    ];
    for (path, body, field) in cases {
        let (status, answer) = api.post(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["field"], field, "{path} {body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    }
    let response = api
        .http
        .post(format!("{}/v1/purge", api.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await;
    assert_eq!(response.expect("answer").status(), 400);
    // Regression: a body without a type (a page's typeless Blob, no CORS preflight) was read
    // as JSON; only JSON is.
    let response = api
        .http
        .post(format!("{}/v1/purge", api.base))
        .bearer_auth(TOKEN)
        .body(r#"{"purge_everything": true}"#)
        .send()
        .await;
    assert_eq!(response.expect("answer").status(), 415);
    let huge = json!({ "files": [format!("/{}", "x".repeat(2 << 20))] });
    // Its own client: the server answers without reading the body and closes the connection.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/purge", api.base))
        .bearer_auth(TOKEN)
        .json(&huge)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 413);
    let answer: Value = response.json().await.expect("json error");
    assert_eq!(answer["field"], "body", "{answer}");
    let (status, answer) = api.get("/v1/edges/a/events?after=soon").await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("after")), "{answer}");
    assert_eq!(api.head().await, 0, "nothing invalid was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_fill_the_edge_registry() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    api.register("a").await;
    api.purge(json!({"hosts": ["cdn.example"]})).await;
    let beat =
        json!({"applied": 0, "requests": 1000, "hits": 930, "cache_bytes": 1048576, "cache_entries": 42});
    let (status, _) = api.post("/v1/edges/a/heartbeat", beat).await;
    assert_eq!(status, 200);
    let (_, edges) = api.get("/v1/edges").await;
    let a = &edges["edges"][0];
    assert_eq!(a["id"], "a");
    assert_eq!(a["version"], "test");
    assert_eq!(a["url"], "http://127.0.0.1:9");
    assert_eq!(a["live"], true);
    assert_eq!((a["requests"].as_u64(), a["hits"].as_u64()), (Some(1000), Some(930)));
    assert_eq!(a["hit_ratio"], 0.93);
    assert_eq!(a["cache_bytes"], 1048576);
    assert_eq!(a["lag"], 1);
    assert!(a["last_heartbeat"].is_string(), "{a}");
    let page = reqwest::get(format!("{}/", api.base)).await.expect("dashboard").text().await.expect("html");
    assert!(page.contains("<td>a</td>") && page.contains("93.0%"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_events_become_purges_of_their_objects() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let head = api.register("a").await;
    let mut sub = Subscriber::open(&api, "a", head).await;
    let events = json!({"events": [
        {"kind": "put", "bucket": "demo", "key": "a/b.css", "etag": "\"x\"", "size": 3, "at": "2026-11-25T09:00:00Z"},
        {"kind": "delete", "bucket": "demo", "key": "old.png"},
        {"kind": "copy", "bucket": "demo", "key": "a/b.css"},
    ]});
    let (status, answer) = api.post("/v1/events/origin", events).await;
    assert_eq!(status, 202, "{answer}");
    let (_, op) = sub.entries(1).await.remove(0);
    assert_eq!(op["type"], "purge");
    assert_eq!(op["soft"], false);
    assert_eq!(
        op["objects"],
        json!([{"bucket": "demo", "key": "a/b.css"}, {"bucket": "demo", "key": "old.png"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_command_reports_each_edge_and_fails_when_one_did_not_apply() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let _a = follower(&api, "a").await;
    let (code, out, err) =
        stratus_purge(&api.base, &["--url", "http://cdn.example/a", "--tag", "t", "--wait"], TOKEN).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("purge p-1 accepted"), "{out}");
    assert!(out.contains("edge a  applied"), "{out}");

    let head = api.register("stuck").await;
    let _stuck = Subscriber::open(&api, "stuck", head).await;
    let (code, out, err) =
        stratus_purge(&api.base, &["--all", "--soft", "--wait", "--timeout", "300ms"], TOKEN).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("edge stuck  pending"), "{out}");

    let (code, _, err) = stratus_purge(&api.base, &["--all"], "wrong").await;
    assert_eq!(code, Some(1));
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = stratus_purge(&api.base, &[], TOKEN).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("name something to purge"), "{err}");
    let (_, soft) = api.get("/v1/purge/p-2").await;
    assert_eq!(
        (soft["op"]["purge_everything"].as_bool(), soft["op"]["soft"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(api.head().await, 2, "the refused commands appended nothing");
}

/// A bucket listing server: two ListObjectsV2 pages; the test reads what it was asked.
async fn listing_origin() -> Origin {
    let origin = Origin::start().await;
    origin.fallback(|seen, _| {
        let body = if seen.path.contains("continuation-token=next%2F1") {
            "<ListBucketResult><IsTruncated>false</IsTruncated>\
             <Contents><Key>img/c.png</Key></Contents></ListBucketResult>"
        } else {
            "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>next/1</NextContinuationToken>\
             <Contents><Key>img/a.png</Key></Contents><Contents><Key>img/b &amp; c.png</Key></Contents>\
             </ListBucketResult>"
        };
        Reply::ok(body, &[]).sized()
    });
    origin
}

/// The requests `origin` answered, as `METHOD PATH?QUERY`.
fn asked(origin: &Origin) -> Vec<String> {
    let requests = origin.requests();
    requests
        .iter()
        .map(|r| {
            let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
            format!("{} {path}?{query}", r.method)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prewarm_of_a_bucket_prefix_lists_the_origin_and_logs_every_object() {
    let origin = listing_origin().await;
    let dir = support::tempdir();
    let control = start_control(dir.path(), &format!("origin = {:?}", origin.url));
    let api = Api::new(&control);
    let head = api.register("a").await;
    let mut sub = Subscriber::open(&api, "a", head).await;

    let (status, answer) = api.post("/v1/prewarm", json!({"bucket": "demo", "prefix": "img/"})).await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer["id"].as_str().is_some_and(|id| id.starts_with("w-")), "{answer}");
    let (_, op) = sub.entries(1).await.remove(0);
    assert_eq!(op["type"], "prewarm");
    assert_eq!(
        op["objects"],
        json!([
            {"bucket": "demo", "key": "img/a.png"},
            {"bucket": "demo", "key": "img/b & c.png"},
            {"bucket": "demo", "key": "img/c.png"},
        ])
    );
    let requests = asked(&origin);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[0].starts_with("GET /demo?list-type=2&prefix=img%2F"), "{requests:?}");

    let (status, answer) = api.post("/v1/prewarm", json!({"files": ["http://cdn.example/a.png"]})).await;
    assert_eq!(status, 202, "{answer}");
    let (_, op) = sub.entries(1).await.remove(0);
    assert_eq!(op["urls"], json!(["http://cdn.example/a.png"]));
    let (status, progress) = api.get(&format!("/v1/prewarm/{}", answer["id"].as_str().unwrap())).await;
    assert_eq!(status, 200, "{progress}");
    assert_eq!(progress["edges"][0]["state"], "pending");
}

/// `METHOD path` with `Host: host` (and a bearer token, if given) on a fresh connection, as raw
/// HTTP/1.1; returns the status and the body.
async fn raw_request(addr: &str, method: &str, path: &str, host: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to control");
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = if method == "POST" { r#"{"purge_everything":true}"# } else { "" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\n{auth}content-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// Starts `stratus control` without a token (and without `STRATUS_TOKEN`).
fn start_open_control(dir: &std::path::Path, extra: &str) -> support::Proc {
    let file = support::write_file(
        dir,
        "control.toml",
        &format!("[control]\nlisten = \"127.0.0.1:0\"\ndata = {:?}\n{extra}\n", dir.join("data")),
    );
    let mut cmd = support::stratus();
    cmd.args(["control", "--config"]).arg(file);
    support::Proc::start(cmd, &["control api"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_control_plane_answers_only_its_own_host_names() {
    // DNS rebinding: a web page on evil.example re-points its name at 127.0.0.1 and drives an
    // open control plane through the operator's browser. Its requests say `Host: evil.example`.
    let dir = support::tempdir();
    let control = start_open_control(dir.path(), "allowed_hosts = [\"control.internal\"]");
    let addr = control.addr("control api");
    let port = addr.rsplit(':').next().expect("port");
    for host in
        ["evil.example", &format!("evil.example:{port}"), "localhost.evil.example", "127.0.0.1.nip.io"]
    {
        for (method, path) in [("GET", "/v1/edges"), ("POST", "/v1/purge"), ("GET", "/")] {
            let (status, answer) = raw_request(&addr, method, path, host, None).await;
            assert_eq!(status, 421, "{method} {path} for {host}: {answer}");
            assert!(answer.contains("allowed_hosts"), "{answer}");
        }
    }
    for host in [addr.as_str(), &format!("localhost:{port}"), "[::1]", &format!("control.internal:{port}")] {
        let (status, answer) = raw_request(&addr, "GET", "/v1/edges", host, None).await;
        assert_eq!(status, 200, "{host}: {answer}");
    }
    let (status, _) = raw_request(&addr, "GET", "/healthz", "evil.example", None).await;
    assert_eq!(status, 200, "health checks answer for any host");
    let (status, answer) = raw_request(&addr, "GET", "/v1/edges", "127.0.0.1", None).await;
    assert_eq!(status, 200);
    assert!(answer.contains("\"head\":0"), "no purge from another host was appended: {answer}");

    // With a token the browser cannot authenticate, so any name works (edges behind DNS).
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let addr = control.addr("control api");
    let (status, answer) = raw_request(&addr, "GET", "/v1/edges", "control.example.com", Some(TOKEN)).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_no_private_targets_without_the_token() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let body = json!({"id": "edge-a", "version": "test", "url": "http://10.9.8.7:8080", "admin": null});
    let (status, _) = api.post("/v1/edges/register", body).await;
    assert_eq!(status, 200);
    api.purge(
        json!({"objects": [{"bucket": "payroll", "key": "2026/salaries.xlsx"}], "tags": ["secret-tag"]}),
    )
    .await;
    let (status, answer) =
        api.post("/v1/prewarm", json!({"files": ["http://intra.example/board-minutes.pdf"]})).await;
    assert_eq!(status, 202, "{answer}");
    let private = ["payroll", "salaries", "secret-tag", "intra.example", "board-minutes", "10.9.8.7"];

    let page = reqwest::get(format!("{}/", api.base)).await.expect("dashboard").text().await.expect("html");
    for word in private {
        assert!(!page.contains(word), "{word} shown without the token: {page}");
    }
    assert!(page.contains("p-1") && page.contains("tags: 1 · objects: 1"), "{page}");
    assert!(page.contains("w-2") && page.contains("urls: 1"), "{page}");
    assert!(page.contains("<td>edge-a</td>"), "fleet health stays visible: {page}");

    let wrong = api.http.get(format!("{}/", api.base)).bearer_auth("wrong").send().await.expect("dashboard");
    let wrong = wrong.text().await.expect("html");
    assert!(!wrong.contains("salaries"), "a wrong token sees no more: {wrong}");

    let page = api.http.get(format!("{}/", api.base)).bearer_auth(TOKEN).send().await.expect("dashboard");
    let page = page.text().await.expect("html");
    for word in private {
        assert!(page.contains(word), "{word} hidden from the token's holder: {page}");
    }
}

/// Sets the soft limit on the size of files process `pid` writes (`unlimited`, or bytes).
fn limit_file_size(pid: u32, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit --fsize={limit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_written_says_so_and_recovers_without_a_restart() {
    // The disk fills: a limit on the size of files the process may write (RLIMIT_FSIZE) makes
    // growing the log fail with EFBIG, as ENOSPC would, with no root and no tmpfs. The shell
    // ignores SIGXFSZ, which `exec` passes on, so the write fails instead of killing the process.
    let dir = support::tempdir();
    let file = support::write_file(
        dir.path(),
        "control.toml",
        &format!("[control]\nlisten = \"127.0.0.1:0\"\ndata = {:?}\n", dir.path().join("data")),
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "trap '' XFSZ; exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_stratus"),
        "control",
        "--config",
    ])
    .arg(&file)
    .env("STRATUS_TOKEN", TOKEN)
    .env("RUST_LOG", "info");
    let control = support::Proc::start(cmd, &["control api"]);
    let api = Api::new(&control);
    let head = api.register("a").await;
    let mut sub = Subscriber::open(&api, "a", head).await;
    api.purge(json!({"files": ["/before"]})).await;
    assert_eq!(sub.entries(1).await[0].0, 1);

    let log = dir.path().join("data").join("log.redb");
    let size = std::fs::metadata(&log).expect("log file").len();
    limit_file_size(control.pid(), &size.to_string());
    let big = |i: usize| json!({"files": (0..200).map(|j| format!("/{i}/{j}/{}", "x".repeat(4000))).collect::<Vec<_>>()});
    let mut refused = None;
    for i in 0..20 {
        let (status, answer) = api.post("/v1/purge", big(i)).await;
        if status != 202 {
            refused = Some((status, answer));
            break;
        }
    }
    let (status, answer) = refused.expect("a purge is refused once the log cannot grow");
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("retry")), "{answer}");
    let head = api.head().await;
    let health = reqwest::get(format!("{}/healthz", api.base)).await.expect("healthz");
    assert_eq!(health.status(), 503, "healthz while writes fail");
    let why = health.text().await.expect("reason");
    assert!(why.contains("cannot be written"), "{why}");
    let page = reqwest::get(format!("{}/", api.base)).await.expect("dashboard").text().await.expect("html");
    assert!(page.contains("The log cannot be written"), "{page}");
    let (status, answer) = api.post("/v1/purge", big(99)).await;
    assert_eq!(status, 503, "still refused while the disk is full: {answer}");

    // Space comes back: the next purge reopens the log, without a restart.
    limit_file_size(control.pid(), "unlimited");
    let id = api.purge(big(100)).await;
    assert_eq!(id, format!("p-{}", head + 1), "sequence numbers stay contiguous");
    let health = reqwest::get(format!("{}/healthz", api.base)).await.expect("healthz");
    assert_eq!(health.status(), 200);
    assert!(
        !reqwest::get(format!("{}/", api.base))
            .await
            .expect("page")
            .text()
            .await
            .expect("html")
            .contains("cannot be written")
    );
    // A subscriber sees every entry after the failure in order, the new one last.
    let mut fresh = Subscriber::open(&api, "a", 1).await;
    let seqs: Vec<u64> =
        fresh.entries(usize::try_from(head).expect("small")).await.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (2..=head + 1).collect::<Vec<_>>());
    drop(sub);
}
