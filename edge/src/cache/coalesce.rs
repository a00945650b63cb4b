//! Miss coalescing: the one home of "one origin fetch per key, every waiter streams from it".
//!
//! A [`Fill`] is the shared state of one origin fetch: the response head once it is known and
//! the body chunks as they arrive. The fetch itself runs in a detached task (see `fill.rs`)
//! that owns the `watch::Sender`, so it outlives any client: a leader that disconnects does not
//! restart or cancel anything. Waiters hold a receiver and a cursor into the chunk list, so each
//! streams at its own pace and gets the first byte as soon as the origin sends it; chunks are
//! `Bytes`, shared, never copied per waiter.
//!
//! Life cycle:
//! 1. A request that misses calls [`Inflight::join`]. Under the map lock it re-checks the
//!    cache (closing the race with a fill that just stored), then either joins the running
//!    fill (follower) or registers a new one (leader) and starts its task.
//! 2. The task publishes a [`FillHead`]: `Stream` (shareable; followers stream it), `Entry`
//!    (a revalidation refreshed the stored entry), `Pass` (not shareable: the leader alone gets
//!    the origin's response, followers fetch on their own and a hit-for-miss marker makes
//!    later requests skip the queue), or `Failed`.
//! 3. The task stores the entry (if it may) *before* it publishes the end and leaves the map,
//!    so any request that does not find the fill finds the entry.
//! 4. A body that ends early publishes an error end: nothing is stored and every waiter's
//!    response is aborted (its connection or stream reset), never presented as complete.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http::header::HeaderName;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::cache::entry::Entry;
use crate::error::ProxyError;

/// The head of a shareable response.
#[derive(Debug)]
pub struct StreamHead {
    /// Status from the origin.
    pub status: StatusCode,
    /// Client-facing headers (cleaned, tags and targeted fields removed, `Age` not yet set).
    pub headers: HeaderMap,
    /// `Vary` header names, for followers whose request might select another variant.
    pub vary: Vec<HeaderName>,
    /// Whether the response is being stored.
    pub storing: bool,
    /// Freshness lifetime in seconds, for `Cache-Status: ttl`.
    pub ttl: Option<i64>,
    /// `corrected_initial_age` and arrival, for `Age`.
    pub initial_age: Duration,
    /// When the head arrived.
    pub arrived: Instant,
}

/// What a fill knows once the origin answered (or failed to).
#[derive(Clone, Debug)]
pub enum FillHead {
    /// A shareable response whose body streams through [`FillState::chunks`].
    Stream(Arc<StreamHead>),
    /// A revalidation confirmed (304) the stored entry; this is the refreshed entry.
    Entry(Arc<Entry>),
    /// Not shareable (for the reason given); the leader got it directly, followers must fetch
    /// on their own.
    Pass(&'static str),
    /// No response.
    Failed(ProxyError),
}

/// The shared state of one fill.
#[derive(Debug, Default)]
pub struct FillState {
    /// Set once.
    pub head: Option<FillHead>,
    /// Body chunks so far.
    pub chunks: Vec<Bytes>,
    /// Set once at the end: `Ok` when the body was complete.
    pub end: Option<Result<(), ProxyError>>,
}

/// One origin fetch that requests can wait on.
#[derive(Debug)]
pub struct Fill {
    state: watch::Sender<FillState>,
    /// Headers of the request that started it (to check `Vary` for followers).
    pub request_headers: HeaderMap,
}

impl Fill {
    /// A fill started by a request with `request_headers`.
    pub fn new(request_headers: HeaderMap) -> Arc<Self> {
        Arc::new(Self { state: watch::Sender::new(FillState::default()), request_headers })
    }

    /// Publishes the head.
    pub fn publish_head(&self, head: FillHead) {
        self.state.send_modify(|s| s.head = Some(head));
    }

    /// Appends a body chunk.
    pub fn push(&self, chunk: Bytes) {
        self.state.send_modify(|s| s.chunks.push(chunk));
    }

    /// Publishes the end of the body.
    pub fn finish(&self, end: Result<(), ProxyError>) {
        self.state.send_modify(|s| s.end = Some(end));
    }

    /// Ends the fill as failed unless it already ended: whatever happens to the task, no
    /// waiter waits forever.
    pub fn abandon(&self) {
        self.state.send_if_modified(|s| {
            let mut changed = false;
            if s.head.is_none() {
                s.head = Some(FillHead::Failed(ProxyError::Internal("origin fetch abandoned".into())));
                changed = true;
            }
            if s.end.is_none() {
                s.end = Some(Err(ProxyError::Internal("origin fetch abandoned".into())));
                changed = true;
            }
            changed
        });
    }

    /// The chunks so far (cheap clones).
    pub fn chunks(&self) -> Vec<Bytes> {
        self.state.borrow().chunks.clone()
    }

    /// Waits for the head.
    pub async fn head(&self) -> FillHead {
        let mut rx = self.state.subscribe();
        loop {
            if let Some(h) = rx.borrow_and_update().head.clone() {
                return h;
            }
            if rx.changed().await.is_err() {
                return FillHead::Failed(ProxyError::Internal("fill ended without a head".into()));
            }
        }
    }

    /// Waits for the end of the body; returns the whole body when it was complete.
    pub async fn complete_body(&self) -> Result<Bytes, ProxyError> {
        let mut rx = self.state.subscribe();
        loop {
            {
                let s = rx.borrow_and_update();
                match &s.end {
                    Some(Ok(())) => return Ok(concat(&s.chunks)),
                    Some(Err(e)) => return Err(e.clone()),
                    None => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(ProxyError::Internal("fill ended without an end".into()));
            }
        }
    }

    /// The body as a stream of chunks, from the first, ending with an error if the origin's
    /// body was cut short.
    pub fn body(self: &Arc<Self>) -> impl Stream<Item = Result<Bytes, ProxyError>> + Send + 'static {
        let rx = self.state.subscribe();
        futures_util::stream::unfold((rx, 0usize, false), |(mut rx, next, done)| async move {
            if done {
                return None;
            }
            loop {
                let step = {
                    let s = rx.borrow_and_update();
                    if let Some(c) = s.chunks.get(next) {
                        Some(Ok(c.clone()))
                    } else {
                        match &s.end {
                            Some(Ok(())) => return None,
                            Some(Err(e)) => Some(Err(e.clone())),
                            None => None,
                        }
                    }
                };
                match step {
                    Some(Ok(c)) => return Some((Ok(c), (rx, next + 1, false))),
                    Some(Err(e)) => return Some((Err(e), (rx, next, true))),
                    None => {
                        if rx.changed().await.is_err() {
                            let e = ProxyError::Internal("fill ended without an end".into());
                            return Some((Err(e), (rx, next, true)));
                        }
                    }
                }
            }
        })
    }
}

/// Joins chunks into one `Bytes` (no copy for a single chunk).
pub fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut buf = bytes::BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for c in many {
                buf.extend_from_slice(c);
            }
            buf.freeze()
        }
    }
}

/// Whether this request waits on a fill it started or on someone else's.
#[derive(Debug)]
pub enum Role {
    /// Started the fill (and must start its task).
    Leader(Arc<Fill>),
    /// Joined a running fill.
    Follower(Arc<Fill>),
}

/// The fills in flight, by cache key.
#[derive(Debug, Default)]
pub struct Inflight {
    fills: Mutex<HashMap<Arc<str>, Arc<Fill>>>,
}

impl Inflight {
    /// Joins the fill for `key`, or registers a new one. `cached` re-checks the store under
    /// the lock; when it finds something, `None` tells the caller to look up again.
    pub fn join(
        &self,
        key: &Arc<str>,
        request_headers: &HeaderMap,
        cached: impl FnOnce() -> bool,
    ) -> Option<Role> {
        let mut fills = self.fills.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = fills.get(key) {
            return Some(Role::Follower(f.clone()));
        }
        if cached() {
            return None;
        }
        let fill = Fill::new(request_headers.clone());
        fills.insert(key.clone(), fill.clone());
        Some(Role::Leader(fill))
    }

    /// Registers a fill for `key` unless one runs already (background revalidation).
    pub fn start_if_idle(&self, key: &Arc<str>, request_headers: &HeaderMap) -> Option<Arc<Fill>> {
        let mut fills = self.fills.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if fills.contains_key(key) {
            return None;
        }
        let fill = Fill::new(request_headers.clone());
        fills.insert(key.clone(), fill.clone());
        Some(fill)
    }

    /// Removes `fill` from the map (if it is still the one registered for `key`).
    pub fn remove(&self, key: &str, fill: &Fill) {
        let mut fills = self.fills.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if fills.get(key).is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), fill)) {
            fills.remove(key);
        }
    }

    /// Fills in flight.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.fills.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether no fill is in flight.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn waiters_stream_before_the_end_and_see_truncation() {
        let fill = Fill::new(HeaderMap::new());
        let mut a = Box::pin(fill.body());
        fill.push(Bytes::from_static(b"one"));
        assert_eq!(a.next().await.unwrap().unwrap(), "one");
        // A late joiner starts from the first chunk.
        let mut b = Box::pin(fill.body());
        fill.push(Bytes::from_static(b"two"));
        assert_eq!(b.next().await.unwrap().unwrap(), "one");
        assert_eq!(b.next().await.unwrap().unwrap(), "two");
        fill.finish(Err(ProxyError::Upstream("reset".into())));
        assert_eq!(a.next().await.unwrap().unwrap(), "two");
        assert!(a.next().await.unwrap().is_err());
        assert!(a.next().await.is_none());
        assert!(fill.complete_body().await.is_err());
    }

    #[tokio::test]
    async fn an_abandoned_fill_releases_its_waiters() {
        let fill = Fill::new(HeaderMap::new());
        let waiter = {
            let fill = fill.clone();
            tokio::spawn(async move { fill.head().await })
        };
        fill.abandon();
        assert!(matches!(waiter.await.expect("waiter"), FillHead::Failed(_)));
        assert!(fill.complete_body().await.is_err());
    }

    #[test]
    fn second_request_joins() {
        let inflight = Inflight::default();
        let key: Arc<str> = Arc::from("k");
        assert!(matches!(inflight.join(&key, &HeaderMap::new(), || false), Some(Role::Leader(_))));
        let Some(Role::Follower(f)) = inflight.join(&key, &HeaderMap::new(), || false) else {
            panic!("not joined")
        };
        inflight.remove(&key, &f);
        assert!(inflight.is_empty());
        assert!(inflight.join(&key, &HeaderMap::new(), || true).is_none());
    }
}
