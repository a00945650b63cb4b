//! The control plane: start `stratus control`, call its API, and a real HTTP subscriber
//! speaking the edge side of the protocol (docs/PROTOCOL.md) so the server can be tested — and
//! loaded with 100 followers by the purge-latency bench — without edges.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::poll::until;
use crate::support::process::{self, Proc};

/// The token every test control plane uses.
pub const TOKEN: &str = "test-token-7f3a";

/// Runs `stratus purge --control BASE ARGS...` with `token` in `STRATUS_TOKEN`; returns its
/// exit code, stdout and stderr.
pub async fn stratus_purge(base: &str, args: &[&str], token: &str) -> (Option<i32>, String, String) {
    let mut cmd = process::stratus();
    cmd.args(["purge", "--control", base]).args(args).env("STRATUS_TOKEN", token);
    tokio::task::spawn_blocking(move || {
        let out = cmd.output().expect("run stratus purge");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("purge command")
}

/// Starts `stratus control` on a free port with `dir` as its data directory and `extra` lines
/// added to its `[control]` section.
pub fn start_control(dir: &Path, extra: &str) -> Proc {
    let file = process::write_file(
        dir,
        "control.toml",
        &format!("[control]\nlisten = \"127.0.0.1:0\"\ndata = {:?}\n{extra}\n", dir.join("data")),
    );
    let mut cmd = process::stratus();
    cmd.args(["control", "--config"]).arg(file).env("STRATUS_TOKEN", TOKEN);
    Proc::start(cmd, &["control api"])
}

/// A client of the control API with the right token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(control: &Proc) -> Self {
        Self::at(&control.url("control api"))
    }

    pub fn at(base: &str) -> Self {
        Self { base: base.to_owned(), token: TOKEN.to_owned(), http: reqwest::Client::new() }
    }

    /// POSTs JSON, returns the status and the JSON answer (`null` if none).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await;
        let r = r.expect("control plane answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GETs JSON.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await;
        let r = r.expect("control plane answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts a purge that must be accepted and returns its id.
    pub async fn purge(&self, body: Value) -> String {
        let (status, answer) = self.post("/v1/purge", body).await;
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().expect("purge id").to_owned()
    }

    /// The log's head sequence number.
    pub async fn head(&self) -> u64 {
        let (status, answer) = self.get("/v1/edges").await;
        assert_eq!(status, 200, "{answer}");
        answer["head"].as_u64().expect("head")
    }

    /// Registers edge `id`; returns the head.
    pub async fn register(&self, id: &str) -> u64 {
        let body = json!({"id": id, "version": "test", "url": "http://127.0.0.1:9", "admin": null});
        let (status, answer) = self.post("/v1/edges/register", body).await;
        assert_eq!(status, 200, "{answer}");
        answer["head"].as_u64().expect("head")
    }

    /// Acks everything up to `seq` for edge `id`.
    pub async fn ack(&self, id: &str, seq: u64) {
        let (status, answer) = self.post(&format!("/v1/edges/{id}/ack"), json!({ "seq": seq })).await;
        assert_eq!(status, 204, "{answer}");
    }

    /// Waits until `n` edges hold a subscription.
    pub async fn until_following(&self, n: usize) {
        until(&format!("{n} edges follow the control plane"), Duration::from_secs(20), || async {
            let (_, list) = self.get("/v1/edges").await;
            let following =
                list["edges"].as_array()?.iter().filter(|e| e["subscriptions"].as_u64() > Some(0)).count();
            (following == n).then_some(())
        })
        .await;
    }

    /// The state of edge `edge` for entry `id` (`applied`, `pending`, `failed`), if listed.
    pub async fn edge_state(&self, id: &str, edge: &str) -> Option<String> {
        let (_, status) = self.get(&format!("/v1/purge/{id}")).await;
        status["edges"]
            .as_array()?
            .iter()
            .find(|e| e["id"] == edge)
            .map(|e| e["state"].as_str().unwrap_or("").to_owned())
    }
}

/// A subscription opened over real HTTP; every stream line arrives on `lines` as JSON.
pub struct Subscriber {
    pub id: String,
    pub lines: mpsc::UnboundedReceiver<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Opens `GET /v1/edges/{id}/events?after=AFTER` (the edge must have registered).
    pub async fn open(api: &Api, id: &str, after: u64) -> Self {
        let url = format!("{}/v1/edges/{id}/events?after={after}", api.base);
        let response = api.http.get(url).bearer_auth(&api.token).send().await.expect("subscribe");
        assert_eq!(response.status(), 200, "subscription refused");
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        let (tx, lines) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buf = Vec::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.extend_from_slice(&chunk);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let value: Value = serde_json::from_slice(&line).expect("stream lines are JSON");
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        Self { id: id.to_owned(), lines, task }
    }

    /// The next line that is not a ping.
    pub async fn next(&mut self) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.recv())
                .await
                .expect("a line within 10 s")
                .expect("stream open");
            if line["type"] != "ping" {
                return line;
            }
        }
    }

    /// The next `n` entries' sequence numbers and ops.
    pub async fn entries(&mut self, n: usize) -> Vec<(u64, Value)> {
        let mut out = Vec::new();
        while out.len() < n {
            let line = self.next().await;
            assert_eq!(line["type"], "entry", "{line}");
            out.push((line["seq"].as_u64().expect("seq"), line["op"].clone()));
        }
        out
    }

    /// Turns this subscriber into a follower that acks every entry as it arrives, as an edge
    /// would, until dropped.
    pub fn ack_everything(mut self, api: &Api) -> Follower {
        let api = api.clone();
        let id = self.id.clone();
        let task = tokio::spawn(async move {
            while let Some(line) = self.lines.recv().await {
                let seq = match line["type"].as_str() {
                    Some("entry") => line["seq"].as_u64(),
                    Some("reset") => line["next"].as_u64().map(|n| n - 1),
                    _ => None,
                };
                if let Some(seq) = seq {
                    api.ack(&id, seq).await;
                }
            }
        });
        Follower { task }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A simulated edge acking everything it is sent.
pub struct Follower {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers `id`, subscribes from the head and acks everything: a well-behaved edge.
pub async fn follower(api: &Api, id: &str) -> Follower {
    let head = api.register(id).await;
    Subscriber::open(api, id, head).await.ack_everything(api)
}

/// Starts `stratus edge` in front of `origin`, following `control` as `id`.
pub fn start_edge(origin: &str, control: &str, id: &str) -> Proc {
    let mut cmd = process::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin", origin])
        .args(["--control", control, "--id", id])
        .env("STRATUS_TOKEN", TOKEN);
    Proc::start(cmd, &["edge http", "edge admin"])
}
