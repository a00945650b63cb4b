//! The one scriptable origin: a real HTTP server (HTTP/1.1 and h2c, or HTTPS with ALPN) inside
//! the test process. Each test scripts its answers per path (status, headers, body in parts,
//! delays, gates, resets) or for every path at once; the origin records every request (method,
//! path, headers, body, HTTP version, Host, TLS server name) and can be taken down and brought
//! back on the same address.
//!
//! Presets script it for one kind of test: [`Origin::backend`] (the upstream tests' named
//! backend with `/healthz`, `/slow`, `/trickle`, …), [`Origin::cacheable`] (every path a
//! cacheable object), and [`crate::support::load_target`] (the load tester's target).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

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
    /// Send the body with its length known up front (`Content-Length` in HTTP/1.1) instead of
    /// streaming it in parts (chunked); only for bodies made of data parts alone.
    pub sized: bool,
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
            sized: false,
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

    /// The same reply with its length announced up front.
    pub fn sized(mut self) -> Self {
        self.sized = true;
        self
    }
}

/// How [`Reply::ranged`] treats `Range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSupport {
    /// One `bytes=` range → `206` with `Content-Range: bytes a-b/N` (416 when unsatisfiable);
    /// lists of ranges and anything else → `200` with the whole body.
    Honour,
    /// Like `Honour`, but the complete length is not told: `Content-Range: bytes a-b/*`.
    UnknownLength,
    /// `Range` is ignored: always `200` with the whole body.
    Ignore,
}

impl Reply {
    /// Answers `seen` from `body` the way an origin with byte ranges does (`support` says
    /// how); `headers` go with every answer. The answer announces its length.
    pub fn ranged(seen: &Seen, body: &Bytes, headers: &[(&str, &str)], support: RangeSupport) -> Self {
        let whole = || Self::ok("", headers).parts(vec![Part::Data(body.clone())]).sized();
        let Some(value) = seen.headers.get("range").and_then(|v| v.to_str().ok()) else { return whole() };
        if support == RangeSupport::Ignore {
            return whole();
        }
        let len = body.len() as u64;
        let Some(spec) = value.trim().strip_prefix("bytes=").filter(|s| !s.contains(',')) else {
            return whole();
        };
        let Some((a, b)) = spec.split_once('-') else { return whole() };
        let (first, last) = match (a.trim().parse::<u64>().ok(), b.trim().parse::<u64>().ok()) {
            (Some(a), Some(b)) if a <= b => (a, b.min(len.saturating_sub(1))),
            (Some(a), None) if b.trim().is_empty() => (a, len.saturating_sub(1)),
            (None, Some(n)) if a.trim().is_empty() && n > 0 => (len.saturating_sub(n), len.saturating_sub(1)),
            _ => return whole(),
        };
        if first >= len {
            let mut reply = Self::status(416, "", headers).sized();
            reply.headers.push(("content-range".into(), format!("bytes */{len}")));
            return reply;
        }
        let total = if support == RangeSupport::UnknownLength { "*".to_owned() } else { len.to_string() };
        let mut reply = Self::status(206, "", headers)
            .parts(vec![Part::Data(body.slice(first as usize..=last as usize))])
            .sized();
        reply.headers.push(("content-range".into(), format!("bytes {first}-{last}/{total}")));
        reply
    }
}

/// A request the origin received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: Version,
    /// The `Host` header, else the HTTP/2 `:authority`.
    pub host: String,
    /// The TLS server name the client asked for.
    pub sni: Option<String>,
}

impl Seen {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// Answers the n-th request (from 1) to a path.
type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

struct State {
    routes: Mutex<HashMap<String, Handler>>,
    /// Answers paths without a route of their own.
    fallback: Mutex<Option<Handler>>,
    /// Every request, in order (unless `record` is off).
    seen: Mutex<Vec<Seen>>,
    /// Requests per path (path and query).
    counts: Mutex<HashMap<String, usize>>,
    record: AtomicBool,
    /// What the `backend` preset's `/healthz` answers.
    healthy: AtomicBool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            routes: Mutex::default(),
            fallback: Mutex::default(),
            seen: Mutex::default(),
            counts: Mutex::default(),
            record: AtomicBool::new(true),
            healthy: AtomicBool::new(true),
        }
    }
}

/// The test origin. It runs on the runtime it was started on (or its own, see
/// [`Origin::start_background`]) and stops with it.
pub struct Origin {
    /// `http://127.0.0.1:PORT` (or `https://`).
    pub url: String,
    pub addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    runtime: tokio::runtime::Handle,
    /// The origin's own runtime when it was started outside one.
    own_runtime: Option<tokio::runtime::Runtime>,
}

impl Origin {
    /// Starts an origin on 127.0.0.1 (port chosen by the system) on the current runtime.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0", None).await
    }

    /// Starts an origin on `bind` (e.g. `127.0.0.2:0`), serving HTTPS when `tls` is given.
    pub async fn start_on(bind: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind origin");
        Self::serving(listener, tls, tokio::runtime::Handle::current(), None)
    }

    /// Starts an origin on its own one-thread runtime, for tests that are not async.
    pub fn start_background(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("origin runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind origin");
        let handle = runtime.handle().clone();
        Self::serving(listener, tls, handle, Some(runtime))
    }

    fn serving(
        listener: tokio::net::TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        runtime: tokio::runtime::Handle,
        own_runtime: Option<tokio::runtime::Runtime>,
    ) -> Self {
        let addr = listener.local_addr().expect("origin address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let origin = Self {
            url: format!("{scheme}://{addr}"),
            addr,
            tls,
            state: Arc::default(),
            tasks: Arc::default(),
            runtime,
            own_runtime,
        };
        origin.serve(listener);
        origin
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (state, tls, tasks) = (self.state.clone(), self.tls.clone(), self.tasks.clone());
        let accept = self.runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (state, tls) = (state.clone(), tls.clone());
                let conn = tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let svc = service(state, None);
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let sni = stream.get_ref().1.server_name().map(str::to_owned);
                            let svc = service(state, sni);
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
                tasks.lock().expect("lock").push(conn);
            }
        });
        self.tasks.lock().expect("lock").push(accept);
    }

    /// `http://` or `https://` with `host` and this origin's port.
    pub fn url_for(&self, host: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}:{}", self.addr.port())
    }

    /// Scripts `path` (path and query): `f(request, n)` answers the n-th request (from 1).
    pub fn route(&self, path: &str, f: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) {
        self.state.routes.lock().expect("lock").insert(path.to_owned(), Arc::new(f));
    }

    /// Scripts `path` to always give `reply`.
    pub fn fixed(&self, path: &str, reply: Reply) {
        self.route(path, move |_, _| reply.clone());
    }

    /// Scripts every path without a route of its own (by default they get a 404):
    /// `f(request, n)` answers the n-th request to that path.
    pub fn fallback(&self, f: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) {
        *self.state.fallback.lock().expect("lock") = Some(Arc::new(f));
    }

    /// Whether to keep every request for [`Origin::seen`] (on by default; a load test turns it
    /// off). Counts are kept either way.
    pub fn record(&self, on: bool) {
        self.state.record.store(on, Ordering::SeqCst);
    }

    /// How many requests reached `path` (path and query).
    pub fn hits(&self, path: &str) -> usize {
        self.state.counts.lock().expect("lock").get(path).copied().unwrap_or(0)
    }

    /// The requests that reached `path`.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").iter().filter(|s| s.path == path).cloned().collect()
    }

    /// Every request, in the order they arrived.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Closes the port and every open connection: connecting is refused from now on.
    pub fn take_down(&self) {
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().expect("lock").drain(..).collect();
        for t in &tasks {
            t.abort();
        }
        // Aborting only schedules the cancellation: wait (boundedly) until every connection is
        // really closed, so that a request sent next meets a closed port, not a half-closed
        // pooled connection.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !tasks.iter().all(JoinHandle::is_finished) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Listens again on the same address.
    pub async fn bring_up(&self) {
        let listener = rebind(self.addr).await;
        self.serve(listener);
    }

    /// What `/healthz` of the [`Origin::backend`] preset answers: 200 (true) or 503.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::Relaxed);
    }

    /// An origin named `name` on `bind` scripted as the upstream tests' backend: `/healthz`
    /// answers 200 (or 503 after `set_healthy(false)`), `/slow` after 3 s, `/trickle` with half
    /// its body at once and the rest after 3 s, `/stale/…` with `max-age=1, stale-if-error=600`,
    /// `/cached/…` with `max-age=600`, everything else with `no-store`; the body is the name.
    pub async fn backend(name: &'static str, bind: &str) -> Self {
        Self::backend_on(name, bind, None).await
    }

    /// [`Origin::backend`] over HTTPS.
    pub async fn backend_tls(name: &'static str, bind: &str, tls: tokio_rustls::TlsAcceptor) -> Self {
        Self::backend_on(name, bind, Some(tls)).await
    }

    async fn backend_on(name: &'static str, bind: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let origin = Self::start_on(bind, tls).await;
        let state = origin.state.clone();
        origin.fallback(move |seen, _| {
            let path = seen.path.as_str();
            if path == "/trickle" {
                let first = Part::Data(Bytes::from_static(b"first part "));
                let rest = Part::Data(Bytes::from_static(b"second part"));
                return Reply::ok("", &[("cache-control", "no-store")]).parts(vec![
                    first,
                    Part::Wait(Duration::from_secs(3)),
                    rest,
                ]);
            }
            let (status, delay, cc) = if path == "/healthz" {
                let status = if state.healthy.load(Ordering::Relaxed) { 200 } else { 503 };
                (status, Duration::ZERO, "no-store")
            } else if path == "/slow" {
                (200, Duration::from_secs(3), "no-store")
            } else if path.starts_with("/stale/") {
                (200, Duration::ZERO, "max-age=1, stale-if-error=600")
            } else if path.starts_with("/cached/") {
                (200, Duration::ZERO, "max-age=600")
            } else {
                (200, Duration::ZERO, "no-store")
            };
            Reply::status(status, name, &[("cache-control", cc)]).delayed(delay).sized()
        });
        origin
    }

    /// An origin where every path is a cacheable object: `PATH v1` with the ETag `"v1"`,
    /// `max-age=3600` and the tag `blog` under `/blog/`; a matching `If-None-Match` gets a 304.
    /// [`Origin::not_modified`] and [`Origin::full`] count the two kinds of answers.
    pub async fn cacheable() -> Self {
        let origin = Self::start().await;
        origin.fallback(|seen, _| {
            let path = seen.path.split('?').next().unwrap_or("");
            let mut headers =
                vec![("etag", "\"v1\""), ("cache-control", "max-age=3600"), ("content-type", "text/plain")];
            if path.starts_with("/blog/") {
                headers.push(("surrogate-key", "blog"));
            }
            if is_not_modified(seen) {
                Reply::status(304, "", &headers).sized()
            } else {
                Reply::ok(&format!("{path} v1"), &headers).sized()
            }
        });
        origin
    }

    /// How many requests to `path` (without query) the [`Origin::cacheable`] preset answered
    /// with a 304.
    pub fn not_modified(&self, path: &str) -> usize {
        self.requests().iter().filter(|s| s.path == path && is_not_modified(s)).count()
    }

    /// How many requests to `path` the [`Origin::cacheable`] preset answered in full.
    pub fn full(&self, path: &str) -> usize {
        self.requests().iter().filter(|s| s.path == path && !is_not_modified(s)).count()
    }
}

/// Whether the [`Origin::cacheable`] preset answers `seen` with a 304.
fn is_not_modified(seen: &Seen) -> bool {
    seen.headers.get("if-none-match").is_some_and(|v| v == "\"v1\"")
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Dropping an own runtime in place would block on the accept loop; let it go instead.
        if let Some(runtime) = self.own_runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds `addr` again; the port was just released, so retry briefly if it lingers.
async fn rebind(addr: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr} again");
}

type Body = BoxBody<Bytes, std::io::Error>;

fn service(
    state: Arc<State>,
    sni: Option<String>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let (state, sni) = (state.clone(), sni.clone());
        async move { Ok::<_, Infallible>(answer(&state, sni, req).await) }
    })
}

async fn answer(st: &State, sni: Option<String>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let (method, version, headers) = (req.method().to_string(), req.version(), req.headers().clone());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let seen = Seen { method, path: path.clone(), headers, body, version, host, sni };
    let n = {
        let mut counts = st.counts.lock().expect("lock");
        let n = counts.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    if st.record.load(Ordering::SeqCst) {
        st.seen.lock().expect("lock").push(seen.clone());
    }
    let handler = st.routes.lock().expect("lock").get(&path).cloned();
    let handler = handler.or_else(|| st.fallback.lock().expect("lock").clone());
    let reply = match handler {
        Some(h) => h(&seen, n),
        None => Reply::status(404, "no such route\n", &[]),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut res = if reply.sized {
        let mut whole = Vec::new();
        for part in &reply.parts {
            let Part::Data(b) = part else { panic!("a sized reply has data parts only") };
            whole.extend_from_slice(b);
        }
        Response::new(Full::new(Bytes::from(whole)).map_err(|never| match never {}).boxed())
    } else {
        let stream = futures_util::stream::unfold(reply.parts.clone().into_iter(), |mut it| async move {
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
        Response::new(StreamBody::new(stream).boxed())
    };
    *res.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    for (k, v) in &reply.headers {
        res.headers_mut().append(
            http::header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    res
}
