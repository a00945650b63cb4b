//! The load tester's target: the [`Origin`] scripted for `stratus loadtest`, run on its own
//! runtime (the loadtest tests are blocking). It answers `/k/N` with 1 KiB and a `Cache-Status`
//! that says `hit` for even keys, stalls every request for a while once when asked, answers
//! `/slow…` after 5 s and `/missing…` with 404, counts requests tagged `x-load` by method, path,
//! tag and body, and records purge requests posted to `/v1/purge` as a control plane would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::origin::{Origin, Reply, Seen};
use crate::support::tls::self_signed_acceptor;

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

/// The target; it stops when dropped.
pub struct LoadTarget {
    origin: Origin,
    state: Arc<State>,
    /// `http://127.0.0.1:PORT` (or `https://`).
    pub url: String,
}

impl LoadTarget {
    /// Starts the target on a free port (HTTP/1.1 and h2c).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts an HTTPS target with a fresh self-signed certificate for 127.0.0.1, offering
    /// `h2` and `http/1.1` by ALPN.
    pub fn start_tls() -> Self {
        Self::start_with(Some(self_signed_acceptor(&["127.0.0.1", "localhost"], &[b"h2", b"http/1.1"])))
    }

    fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let origin = Origin::start_background(tls);
        // Load runs send hundreds of thousands of requests: count them, keep none.
        origin.record(false);
        let state = Arc::new(State::default());
        let st = state.clone();
        origin.fallback(move |seen, _| answer(&st, seen));
        let url = origin.url.clone();
        Self { origin, state, url }
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

fn answer(state: &State, req: &Seen) -> Reply {
    let path = req.path.split('?').next().unwrap_or("").to_owned();
    if path == "/v1/purge" {
        let authorization = req.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = String::from_utf8_lossy(&req.body).into_owned();
        state.purges.lock().expect("lock").push(Purge { authorization, body });
        return Reply::status(202, "{\"id\":\"p-1\"}", &[]).sized();
    }
    if let Some(tag) = req.headers.get("x-load").and_then(|v| v.to_str().ok()) {
        let key = format!("{} {path} {tag} {}", req.method, String::from_utf8_lossy(&req.body));
        *state.seen.lock().expect("lock").entry(key).or_default() += 1;
        state.requests.fetch_add(1, Ordering::SeqCst);
        return Reply::ok("ok", &[]).sized();
    }
    if req.version == http::Version::HTTP_2 {
        state.h2_requests.fetch_add(1, Ordering::SeqCst);
    }
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if n == state.stall_at.load(Ordering::SeqCst) {
        let pause = *state.stall.lock().expect("lock");
        *state.stall_until.lock().expect("lock") = Some(Instant::now() + pause);
    }
    let until = *state.stall_until.lock().expect("lock");
    let mut delay = until.map_or(Duration::ZERO, |u| u.saturating_duration_since(Instant::now()));
    if path.starts_with("/slow") {
        delay += Duration::from_secs(5);
    }
    let status = if path.starts_with("/missing") { 404 } else { 200 };
    let mut headers = Vec::new();
    if let Some(key) = path.strip_prefix("/k/").and_then(|k| k.parse::<u64>().ok()) {
        if key % 2 == 0 {
            state.hits.fetch_add(1, Ordering::SeqCst);
            headers.push(("cache-status", "test; hit; ttl=60"));
        } else {
            headers.push(("cache-status", "test; fwd=miss; stored"));
        }
    }
    let body = "x".repeat(1024);
    Reply::status(status, &body, &headers).delayed(delay).sized()
}
