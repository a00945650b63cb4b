//! A real HTTP server for the loadtest tests, run inside the test process: HTTP/1.1 and h2c
//! (auto-detected), or HTTPS with ALPN, counting every request, answering `/k/N` with 1 KiB and a `Cache-Status`
//! that says `hit` for even keys, stalling every request for a while once when asked, and
//! recording purge requests posted to `/v1/purge`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A purge request as the control plane would have received it.
#[derive(Debug, Clone)]
pub struct Purge {
    pub authorization: Option<String>,
    pub body: String,
}

#[derive(Debug, Default)]
struct State {
    /// Requests other than purges.
    requests: AtomicU64,
    /// Of those, requests that came over HTTP/2.
    h2_requests: AtomicU64,
    /// Responses sent with `Cache-Status: …; hit`.
    hits: AtomicU64,
    /// Stall every request for `stall` when the request count reaches this (0: never).
    stall_at: AtomicU64,
    stall: Mutex<Duration>,
    /// Requests arriving before this wait until it.
    stall_until: Mutex<Option<Instant>>,
    purges: Mutex<Vec<Purge>>,
    /// Requests by `METHOD path x-load body`, to check what the generator sent.
    seen: Mutex<std::collections::HashMap<String, u64>>,
}

/// The server; it stops when dropped.
pub struct TestServer {
    runtime: tokio::runtime::Runtime,
    state: Arc<State>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl TestServer {
    /// Starts the server on a free port.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts an HTTPS server with a fresh self-signed certificate for 127.0.0.1, offering
    /// `h2` and `http/1.1` by ALPN.
    pub fn start_tls() -> Self {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("self-signed certificate");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
            )
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test server runtime");
        let state = Arc::new(State::default());
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind test server");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().expect("local addr"));
        let accept_state = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let state = accept_state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { runtime, state, url }
    }

    /// Makes every request stall for `pause` once the `at`-th request arrives.
    pub fn stall_once(&self, at: u64, pause: Duration) {
        *self.state.stall.lock().expect("lock") = pause;
        self.state.stall_at.store(at, Ordering::SeqCst);
    }

    /// Requests served (purges not counted).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many requests came as `METHOD path x-load body` (`x-load` header, body as text).
    pub fn seen(&self, what: &str) -> u64 {
        self.state.seen.lock().expect("lock").get(what).copied().unwrap_or(0)
    }

    /// Requests that came over HTTP/2.
    pub fn h2_requests(&self) -> u64 {
        self.state.h2_requests.load(Ordering::SeqCst)
    }

    /// Responses that said `hit`.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Purge requests received.
    pub fn purges(&self) -> Vec<Purge> {
        self.state.purges.lock().expect("lock").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Dropping the runtime in place would block on the accept loop; move it out instead.
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
        );
        runtime.shutdown_background();
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/v1/purge" {
        let authorization =
            req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body = String::from_utf8_lossy(&body).into_owned();
        state.purges.lock().expect("lock").push(Purge { authorization, body });
        let resp = Response::builder().status(202).body(Full::new(Bytes::from_static(b"{\"id\":\"p-1\"}")));
        return Ok(resp.expect("response"));
    }
    if let Some(tag) = req.headers().get("x-load").and_then(|v| v.to_str().ok()).map(str::to_owned) {
        let method = req.method().clone();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let key = format!("{method} {path} {tag} {}", String::from_utf8_lossy(&body));
        *state.seen.lock().expect("lock").entry(key).or_default() += 1;
        state.requests.fetch_add(1, Ordering::SeqCst);
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    if req.version() == http::Version::HTTP_2 {
        state.h2_requests.fetch_add(1, Ordering::SeqCst);
    }
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if n == state.stall_at.load(Ordering::SeqCst) {
        let pause = *state.stall.lock().expect("lock");
        *state.stall_until.lock().expect("lock") = Some(Instant::now() + pause);
    }
    let until = *state.stall_until.lock().expect("lock");
    if let Some(until) = until
        && until > Instant::now()
    {
        tokio::time::sleep_until(until.into()).await;
    }
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let mut resp = Response::builder();
    if path.starts_with("/missing") {
        resp = resp.status(404);
    }
    if let Some(key) = path.strip_prefix("/k/").and_then(|k| k.parse::<u64>().ok()) {
        if key % 2 == 0 {
            state.hits.fetch_add(1, Ordering::SeqCst);
            resp = resp.header("cache-status", "test; hit; ttl=60");
        } else {
            resp = resp.header("cache-status", "test; fwd=miss; stored");
        }
    }
    Ok(resp.body(Full::new(Bytes::from(vec![b'x'; 1024]))).expect("response"))
}
