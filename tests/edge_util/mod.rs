//! Helpers for the edge end-to-end tests: a real HTTP origin inside the test process whose
//! answers each test scripts per path (status, headers, body in parts, delays, gates, resets)
//! and which counts and records every request; and a started `stratus edge`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Semaphore;

use crate::util::{self, Proc};

/// One piece of a scripted response body.
#[derive(Clone)]
pub enum Part {
    /// Send these bytes.
    Data(Bytes),
    /// Wait this long (only to make an origin slow, never to synchronise a test).
    Wait(Duration),
    /// Wait until the test adds a permit to this semaphore.
    Gate(Arc<Semaphore>),
    /// Abort the body here: the connection is closed before the response is complete.
    Reset,
}

/// A scripted response.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Delay before the response head.
    pub delay: Duration,
    pub parts: Vec<Part>,
}

impl Reply {
    /// `200` with `body` and the given headers.
    pub fn ok(body: &str, headers: &[(&str, &str)]) -> Self {
        Self::status(200, body, headers)
    }

    /// `status` with `body` and the given headers.
    pub fn status(status: u16, body: &str, headers: &[(&str, &str)]) -> Self {
        Self {
            status,
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            delay: Duration::ZERO,
            parts: vec![Part::Data(Bytes::copy_from_slice(body.as_bytes()))],
        }
    }

    /// The same reply after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The same reply with its body given in parts.
    pub fn parts(mut self, parts: Vec<Part>) -> Self {
        self.parts = parts;
        self
    }
}

/// A request the origin received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
}

type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Handler>>,
    seen: Mutex<Vec<Seen>>,
}

/// The test origin.
pub struct Origin {
    pub url: String,
    state: Arc<State>,
}

impl Origin {
    /// Starts an origin on 127.0.0.1 (port chosen by the system) on the current runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let url = format!("http://{}", listener.local_addr().expect("origin address"));
        let state = Arc::new(State::default());
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(answer(&st, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { url, state }
    }

    /// Scripts `path` (path and query): `f(request, n)` answers the n-th request (from 1).
    pub fn route(&self, path: &str, f: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) {
        self.state.routes.lock().unwrap().insert(path.to_owned(), Arc::new(f));
    }

    /// Scripts `path` to always give `reply`.
    pub fn fixed(&self, path: &str, reply: Reply) {
        self.route(path, move |_, _| reply.clone());
    }

    /// How many requests reached `path` (path and query).
    pub fn hits(&self, path: &str) -> usize {
        self.state.seen.lock().unwrap().iter().filter(|s| s.path == path).count()
    }

    /// The requests that reached `path`.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.state.seen.lock().unwrap().iter().filter(|s| s.path == path).cloned().collect()
    }
}

async fn answer(
    st: &State,
    req: Request<Incoming>,
) -> Response<http_body_util::combinators::BoxBody<Bytes, std::io::Error>> {
    let path = req.uri().path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
    let seen = Seen { method: req.method().to_string(), path: path.clone(), headers: req.headers().clone() };
    let _ = req.into_body().collect().await;
    let n = {
        let mut all = st.seen.lock().unwrap();
        all.push(seen.clone());
        all.iter().filter(|s| s.path == path).count()
    };
    let handler = st.routes.lock().unwrap().get(&path).cloned();
    let reply = match handler {
        Some(h) => h(&seen, n),
        None => Reply::status(404, "no such route\n", &[]),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let parts = reply.parts.clone();
    let stream = futures_util::stream::unfold(parts.into_iter(), |mut it| async move {
        loop {
            match it.next()? {
                Part::Data(b) => return Some((Ok(Frame::data(b)), it)),
                Part::Wait(d) => tokio::time::sleep(d).await,
                Part::Gate(s) => {
                    let _ = s.acquire().await.map(|p| p.forget());
                }
                Part::Reset => return Some((Err(std::io::Error::other("scripted reset")), it)),
            }
        }
    });
    let mut res = Response::new(StreamBody::new(stream).boxed());
    *res.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    for (k, v) in &reply.headers {
        res.headers_mut().append(
            http::header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    res
}

/// A `stratus edge` in front of `origin` with an admin listener; `extra` args appended.
pub fn edge(origin: &Origin, extra: &[&str]) -> Proc {
    let mut cmd = util::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &origin.url, "--admin", "127.0.0.1:0"]);
    cmd.args(extra);
    Proc::start(cmd, &["edge http", "edge admin"])
}

/// A `stratus edge` from a config file whose `[edge]` section is `toml` (with `ORIGIN`
/// replaced by the origin's URL); listeners and admin on port 0 are added here.
pub fn edge_with_config(origin: &Origin, toml: &str) -> (Proc, tempfile::TempDir) {
    let dir = util::tempdir();
    let text = format!(
        "[edge]\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\n[edge.admin]\nlisten = \"127.0.0.1:0\"\n{}",
        toml.replace("ORIGIN", &origin.url)
    );
    let path = util::write_file(dir.path(), "edge.toml", &text);
    let mut cmd = util::stratus();
    cmd.arg("edge").arg("--config").arg(&path);
    (Proc::start(cmd, &["edge http", "edge admin"]), dir)
}

/// An HTTP client that talks to the edge directly.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

/// A response's status, headers and whole body.
pub struct Got {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Got {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }

    /// The `Cache-Status` value.
    pub fn cache(&self) -> String {
        self.header("cache-status")
    }

    /// The `ttl` parameter of `Cache-Status` (panics when there is none).
    pub fn ttl(&self) -> i64 {
        let cache = self.cache();
        let ttl = cache.split("ttl=").nth(1).and_then(|s| s.split(';').next());
        ttl.and_then(|t| t.trim().parse().ok()).unwrap_or_else(|| panic!("no ttl in {cache:?}"))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(req: reqwest::RequestBuilder) -> Got {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.expect("body");
    Got { status, headers, body }
}

/// GET `url` with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req).await
}

/// Polls (async) until `check` returns `Some`, or panics after `limit`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs a purge body to the admin API and returns `purged`.
pub async fn purge(edge: &Proc, body: serde_json::Value) -> u64 {
    let res =
        client().post(format!("{}/purge", edge.url("edge admin"))).json(&body).send().await.expect("purge");
    assert_eq!(res.status(), 200, "purge status");
    let v: serde_json::Value = res.json().await.expect("purge json");
    v["purged"].as_u64().expect("purged count")
}

/// A TCP forwarder in front of an origin that can be taken down: its port then refuses
/// connections, as an unreachable origin does.
pub struct Forwarder {
    pub url: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Forwarder {
    /// Forwards a fresh loopback port to `target` (`http://host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind forwarder");
        let url = format!("http://{}", listener.local_addr().expect("forwarder address"));
        let target = target.trim_start_matches("http://").to_owned();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                t.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { url, tasks }
    }

    /// Closes the port and every forwarded connection.
    pub fn take_down(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}
