//! Which client connections are idle, and closing them: the idle timeouts and the shedding
//! of idle connections when the listener is at its connection cap.
//!
//! A connection is *busy* from the moment its service sees a request until the response body
//! has been sent (or dropped), and *idle* otherwise; HTTP/2 counts every open stream. hyper
//! closes an HTTP/1.1 connection whose head is slow once bytes arrive, but nothing closes one
//! that sends nothing at all (`preface.rs` waits for the first bytes to pick the protocol,
//! with no timer) or an HTTP/2 connection with no streams (PINGs keep it alive). So
//! each connection's task also waits on [`Conn::close_requested`], which resolves when:
//!
//! - it has been idle for `header_read_timeout` without having served a request (a silent
//!   connection, plain or TLS, HTTP/1.1 or h2c), or for `idle_timeout` after one;
//! - the listener is at its cap and a new connection waits: the accept loop picked it among
//!   the longest idle ([`Conns::shed`], nginx's way of reusing keep-alive connections under
//!   `worker_connections` pressure), or it turned idle while the new connection waits;
//! - the edge shuts down.
//!
//! The caller then asks for a graceful close (hyper for HTTP/1.1, `http2/` for HTTP/2): an
//! idle HTTP/1.1 connection closes at once, an HTTP/2 one gets a GOAWAY, and a response in
//! flight is never cut.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio_util::sync::CancellationToken;

use crate::body::{Body, BoxError};

/// How long a connection may stay idle.
#[derive(Clone, Copy, Debug)]
pub struct IdleLimits {
    /// Before its first request (`limits.header_read_timeout`).
    pub first_request: Duration,
    /// Between requests (`limits.idle_timeout`).
    pub between_requests: Duration,
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Conns {
    limits: IdleLimits,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// Accepted connections waiting for a slot under the cap.
    waiting: AtomicUsize,
}

#[derive(Debug)]
struct ConnState {
    /// Requests in flight (HTTP/2: open streams).
    busy: AtomicUsize,
    /// Requests seen so far.
    requests: AtomicU64,
    /// When `busy` last dropped to 0 (or the connection opened), in ns since [`Conns::epoch`].
    idle_since: AtomicU64,
    /// Cancelled when the accept loop sheds this connection.
    shed: CancellationToken,
    /// An HTTP/1.x connection: the wait for each request head is cut at the shorter limit.
    http1: AtomicBool,
}

impl Conns {
    /// No connections yet.
    pub fn new(limits: IdleLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Nanoseconds, not milliseconds: a connection that opened in the same millisecond as
    /// another turned idle must still sort after it.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Registers a new connection; it is idle until its first request.
    pub fn open(self: &Arc<Self>) -> Conn {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            busy: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(self.now_ns()),
            shed: CancellationToken::new(),
            http1: AtomicBool::new(false),
        });
        self.lock().insert(id, state.clone());
        Conn { conns: self.clone(), id, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new connection waits for a slot: closes the longest-idle connections, as many as
    /// nginx would (an eighth of the idle ones, at least 1 and at most 32), and makes every
    /// connection that turns idle while the returned guard lives close at once. Closing a few
    /// rather than one keeps a burst of new clients from paying for a scan each.
    pub fn shed(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut idle: Vec<(u64, Arc<ConnState>)> = self
            .lock()
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0 && !c.shed.is_cancelled())
            .map(|c| (c.idle_since.load(Ordering::Relaxed), c.clone()))
            .collect();
        let n = (idle.len() / 8).clamp(1, 32);
        idle.sort_unstable_by_key(|(since, _)| *since);
        for (_, c) in idle.iter().take(n) {
            c.shed.cancel();
        }
        if !idle.is_empty() {
            tracing::debug!(
                shed = n.min(idle.len()),
                idle = idle.len(),
                "at the connection cap; closing idle connections"
            );
        }
        Waiting(self.clone())
    }
}

/// An accepted connection is waiting for a slot; see [`Conns::shed`].
#[derive(Debug)]
pub struct Waiting(Arc<Conns>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open connection; unregisters itself when dropped.
#[derive(Debug)]
pub struct Conn {
    conns: Arc<Conns>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
    }
}

impl Conn {
    /// A request begins; the connection is busy until the returned guard is dropped (with the
    /// response body).
    pub fn busy(&self) -> Busy {
        // No wake-up here or when the request ends: the watcher of the connection checks the
        // counters when its deadline passes (two task wake-ups and a timer per request cost
        // about a tenth of a cached hit).
        self.state.requests.fetch_add(1, Ordering::Relaxed);
        self.state.busy.fetch_add(1, Ordering::Relaxed);
        Busy { conns: self.conns.clone(), state: self.state.clone() }
    }

    /// Whether any request has begun on the connection.
    pub fn served_any(&self) -> bool {
        self.state.requests.load(Ordering::Relaxed) > 0
    }

    /// The connection speaks HTTP/1.x: between requests it is closed after the shorter of the
    /// two limits, since the wait for a request head is also the header-read timeout (the
    /// slowloris defence; hyper's own timer is off, `server.rs`).
    pub fn http1(&self) {
        self.state.http1.store(true, Ordering::Relaxed);
    }

    /// Resolves when the connection should close (see the module docs): it has been idle for
    /// its limit, it was shed, or the edge shuts down. The counters are read when the watcher
    /// wakes, at the idle deadline or at most one step (the shorter limit) after it last
    /// looked, so an idle connection closes between one limit and one limit plus a step after
    /// it turned idle, and a first request's end is noticed under the shorter limit too.
    ///
    /// The connection's task selects this beside the connection, so it is polled every time
    /// the connection makes progress; [`Closing`] looks at the watch only when one of the
    /// watch's own wake-ups (its timer, shutdown, shedding) fired.
    pub fn close_requested<'a>(&'a self, shutdown: &'a CancellationToken) -> Closing<'a> {
        let gate = Arc::new(Gate { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Closing { watch: Box::pin(self.watch(shutdown)), waker: Waker::from(gate.clone()), gate, done: false }
    }

    async fn watch(&self, shutdown: &CancellationToken) {
        let (conns, state) = (&self.conns, &self.state);
        let step = conns.limits.first_request.min(conns.limits.between_requests);
        loop {
            let now = Instant::now();
            let limit = if state.requests.load(Ordering::Relaxed) == 0 {
                conns.limits.first_request
            } else if state.http1.load(Ordering::Relaxed) {
                step
            } else {
                conns.limits.between_requests
            };
            let wake = if state.busy.load(Ordering::Relaxed) == 0 {
                let at = conns.instant(state.idle_since.load(Ordering::Relaxed)) + limit;
                if at <= now {
                    return;
                }
                at.min(now + step)
            } else {
                now + step
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = state.shed.cancelled() => return,
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

impl Conn {
    /// Resolves once the connection has had no request in flight for `grace`: after a graceful
    /// close was asked for, a peer that does not finish it (an HTTP/2 client that never
    /// acknowledges the GOAWAY's PING) is dropped then.
    pub async fn idle_for(&self, grace: Duration) {
        let (conns, state) = (&self.conns, &self.state);
        loop {
            let wait = if state.busy.load(Ordering::Relaxed) == 0 {
                let idle = conns.instant(state.idle_since.load(Ordering::Relaxed)).elapsed();
                if idle >= grace {
                    return;
                }
                grace - idle
            } else {
                grace
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Resolves when the connection should close; see [`Conn::close_requested`].
///
/// Polling the watch itself costs two cancellation-token checks (each takes a lock) and a
/// timer poll, about 600 instructions, on every poll of the connection's task, that is on
/// every request (`docs/performance.md`, "The connection's own work"). Here a poll costs an
/// atomic swap and a waker comparison unless the watch was woken since it was last polled.
pub struct Closing<'a> {
    watch: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    gate: Arc<Gate>,
    /// Wakes `gate`; handed to the watch so that its wake-ups are recorded there.
    waker: Waker,
    /// The watch has resolved (and must not be polled again).
    done: bool,
}

/// Where the watch's wake-ups are recorded, and the connection's task to pass them on to.
struct Gate {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Future for Closing<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        // Register first: a wake-up after the swap below then reaches this task.
        self.gate.task.register(cx.waker());
        if !self.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        let polled = this.watch.as_mut().poll(&mut Context::from_waker(&this.waker));
        this.done = polled.is_ready();
        polled
    }
}

impl std::fmt::Debug for Closing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closing").field("woken", &self.gate.woken.load(Ordering::Relaxed)).finish()
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct Busy {
    conns: Arc<Conns>,
    state: Arc<ConnState>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.state.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.state.idle_since.store(self.conns.now_ns(), Ordering::Relaxed);
            // A new connection waits for a slot: this one turned idle, so it makes room.
            if self.conns.waiting.load(Ordering::Relaxed) > 0 {
                self.state.shed.cancel();
            }
        }
    }
}

/// A response body that keeps its connection busy until it is sent or dropped.
#[derive(Debug)]
pub struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl Tracked {
    /// `inner`, holding `busy` until it ends.
    pub fn new(inner: Body, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real time (tokio's test clock is not built in): a connection that should close is given
    /// seconds, one that should not is watched for a moment, which a correct edge passes
    /// however slow the machine.
    const CLOSES: Duration = Duration::from_secs(10);
    const STAYS: Duration = Duration::from_millis(200);

    fn conns(first_request: Duration, between_requests: Duration) -> Arc<Conns> {
        Conns::new(IdleLimits { first_request, between_requests })
    }

    async fn closes_within(conn: &Conn, limit: Duration) -> bool {
        tokio::time::timeout(limit, conn.close_requested(&CancellationToken::new())).await.is_ok()
    }

    #[tokio::test]
    async fn silent_connections_close_after_the_first_request_limit_served_ones_after_the_idle_limit() {
        let conns = conns(Duration::from_millis(100), Duration::from_secs(600));
        let silent = conns.open();
        assert!(closes_within(&silent, CLOSES).await);
        let served = conns.open();
        drop(served.busy());
        assert!(!closes_within(&served, STAYS).await, "idle_timeout applies after a request");

        let conns = self::conns(Duration::from_secs(600), Duration::from_millis(100));
        let c = conns.open();
        let busy = c.busy();
        assert!(!closes_within(&c, STAYS).await, "a request in flight keeps it open");
        drop(busy);
        assert!(closes_within(&c, CLOSES).await);
    }

    /// The connection's task polls the watch on every request; polls that its own wake-ups
    /// did not cause must not lose one that comes later (shutdown here).
    #[tokio::test]
    async fn a_shutdown_reaches_a_watch_polled_for_other_reasons() {
        let long = Duration::from_secs(600);
        let conns = conns(long, long);
        let c = conns.open();
        let shutdown = CancellationToken::new();
        let mut close = c.close_requested(&shutdown);
        for _ in 0..3 {
            let other = tokio::time::sleep(Duration::from_millis(10));
            tokio::select! {
                () = &mut close => panic!("closed without a reason"),
                () = other => {}
            }
            drop(c.busy());
        }
        shutdown.cancel();
        assert!(tokio::time::timeout(CLOSES, &mut close).await.is_ok(), "shutdown closes");
        assert!(tokio::time::timeout(CLOSES, &mut close).await.is_ok(), "and stays resolved");
    }

    /// On HTTP/1.x the wait for the next request head is the header-read timeout too.
    #[tokio::test]
    async fn http1_connections_wait_for_a_next_head_no_longer_than_the_header_timeout() {
        let conns = conns(Duration::from_millis(100), Duration::from_secs(600));
        let c = conns.open();
        c.http1();
        drop(c.busy());
        assert!(closes_within(&c, CLOSES).await);
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connections_are_shed_and_busy_ones_kept() {
        let long = Duration::from_secs(600);
        let conns = conns(long, long);
        let (old, new, working) = (conns.open(), conns.open(), conns.open());
        let request = working.busy();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(new.busy());
        let waiting = conns.shed();
        assert!(closes_within(&old, CLOSES).await, "the longest idle is shed");
        assert!(!closes_within(&new, STAYS).await, "one of two idle connections is enough");
        assert!(!closes_within(&working, STAYS).await, "a busy connection is never shed");
        drop(request);
        assert!(closes_within(&working, CLOSES).await, "turning idle while someone waits: closes");
        drop(waiting);
        let fresh = conns.open();
        drop(fresh.busy());
        assert!(!closes_within(&fresh, STAYS).await, "nobody waits any more");
    }
}
