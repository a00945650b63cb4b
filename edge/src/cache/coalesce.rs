//! Miss coalescing: the one home of "one origin fetch per key, every waiter streams from it".
//!
//! A [`Fill`] is the shared state of one origin fetch: the response head once it is known and
//! the body chunks as they arrive. The fetch itself runs in a detached task (see `fill.rs`)
//! that owns the `watch::Sender`, so it outlives any client: a leader that disconnects does not
//! restart or cancel anything. Each waiter holds a [`Reader`], its place in the chunk list, so
//! each streams at its own pace and gets the first byte as soon as the origin sends it; chunks
//! are `Bytes`, shared, never copied per waiter.
//!
//! Life cycle:
//! 1. A request that misses calls [`Inflight::join`]. Under the map lock it re-checks the
//!    cache (closing the race with a fill that just stored), then either joins the running
//!    fill (follower) or registers a new one (leader) and starts its task; either way it gets
//!    a [`Reader`] registered from the first chunk.
//! 2. The task publishes a [`FillHead`]: `Stream` (shareable; followers stream it), `Entry`
//!    (a revalidation refreshed the stored entry), `Pass` (not shareable: the leader alone gets
//!    the origin's response, followers fetch on their own and a hit-for-miss marker makes
//!    later requests skip the queue), or `Failed`.
//! 3. The task stores the entry (if it may) *before* it publishes the end and leaves the map,
//!    so any request that does not find the fill finds the entry. The last chunk of a body
//!    of known length is held back until then too (`fill.rs`): a client that got every byte
//!    it was promised can ask again before the end is published, and must find the entry
//!    (or, for a large object, its file on disk).
//! 4. A body that ends early publishes an error end: nothing is stored and every waiter's
//!    response is aborted (its connection or stream reset), never presented as complete.
//!
//! Memory: a body that may be stored is kept whole (at most `max_object_size`). One that
//! outgrows it (no `Content-Length` told us) leaves the map first — so no reader can join
//! after that — and is then only streamed: chunks every reader has read are released, the
//! origin is read while the slowest reader is within [`WINDOW`], and a reader that stays far
//! behind the others for [`PATIENCE`] is cut off. A body of any size costs at most about
//! `max_object_size` + [`WINDOW`]. A large object written to the disk tier as it streams
//! (`fill.rs`) is only streamed in the same way but stays in the map: a request that comes
//! later waits for it to end and is served from disk ([`Role::Wait`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use tokio::sync::{Notify, watch};

use crate::cache::entry::Entry;
use crate::cache::slice::SliceResult;
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
    /// Whether the response is meant to be stored (if it arrives whole and, without a
    /// `Content-Length`, turns out small enough).
    pub storing: bool,
    /// `Content-Length`, when the origin sent one.
    pub length: Option<u64>,
    /// Freshness lifetime in seconds, for `Cache-Status: ttl`.
    pub ttl: Option<i64>,
    /// `corrected_initial_age` and arrival, for `Age`.
    pub initial_age: Duration,
    /// When the head arrived.
    pub arrived: Instant,
    /// The upstream tier's `Cache-Status` (kept out of the stored headers), which our member
    /// is appended to on the answers this fill gives.
    pub upstream_status: Option<HeaderValue>,
    /// What only edges get (targeted cache-control fields, tags), for requests from another
    /// tier.
    pub edge_fields: HeaderMap,
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

/// Once a body has outgrown `max_object_size` (so it will not be stored), the fill holds at
/// most about this much beyond what its slowest reader has read: the origin is read no faster
/// than that reader.
pub const WINDOW: u64 = 4 << 20;

/// A reader more than half a [`WINDOW`] behind the fastest one for this long, while the fill
/// waits for room, is cut off (its response is aborted) so one stalled client cannot hold the
/// others back, nor the buffer grow.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Where one reader is.
#[derive(Debug)]
struct Position {
    /// The next chunk it reads (a chunk number, counted from the first chunk of the body).
    chunk: usize,
    /// Bytes it has read.
    bytes: u64,
    /// Since when it has been far behind the fastest reader, while the fill waited for room.
    behind_since: Option<Instant>,
}

/// The shared state of one fill.
#[derive(Debug, Default)]
pub struct FillState {
    /// Set once.
    pub head: Option<FillHead>,
    /// Body chunks not yet released; `chunks[0]` is chunk number `first`.
    chunks: VecDeque<Bytes>,
    first: usize,
    /// Bytes in `chunks`.
    held: u64,
    /// Set once the body will not be stored: chunks every reader has read are released.
    streaming_only: bool,
    /// Where each reader is, by id; a reader missing here was cut off.
    readers: HashMap<u64, Position>,
    next_reader: u64,
    /// Set once at the end: `Ok` when the body was complete.
    pub end: Option<Result<(), ProxyError>>,
    /// Set with `end`: whether the response was stored.
    stored: bool,
}

impl FillState {
    /// Drops the chunks every reader has read (only once the body streams only).
    fn release(&mut self) -> bool {
        if !self.streaming_only {
            return false;
        }
        let upto = self.readers.values().map(|p| p.chunk).min().unwrap_or(self.first + self.chunks.len());
        let mut released = false;
        while self.first < upto {
            let Some(c) = self.chunks.pop_front() else { break };
            self.held -= c.len() as u64;
            self.first += 1;
            released = true;
        }
        released
    }
}

/// Whether the fill may read more of the origin's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Yes: the slowest reader is within the window.
    Yes,
    /// Not yet.
    No,
    /// Nobody reads any more: stop.
    Nobody,
}

/// One origin fetch that requests can wait on.
#[derive(Debug)]
pub struct Fill {
    state: watch::Sender<FillState>,
    /// Signalled when a reader moves on or leaves (the fill may have room again).
    moved: Notify,
    /// Headers of the request that started it (to check `Vary` for followers).
    pub request_headers: HeaderMap,
}

impl Fill {
    /// A fill started by a request with `request_headers`.
    pub fn new(request_headers: HeaderMap) -> Arc<Self> {
        Arc::new(Self {
            state: watch::Sender::new(FillState::default()),
            moved: Notify::new(),
            request_headers,
        })
    }

    /// A reader of the body from its first byte. Readers must be made before the body can
    /// outgrow the store (when joining or starting the fill); one made after chunks were
    /// released is cut off at once.
    pub fn reader(self: &Arc<Self>) -> Reader {
        let mut id = 0;
        self.state.send_if_modified(|s| {
            id = s.next_reader;
            s.next_reader += 1;
            if s.first == 0 {
                s.readers.insert(id, Position { chunk: 0, bytes: 0, behind_since: None });
            }
            false
        });
        Reader { fill: self.clone(), rx: self.state.subscribe(), id }
    }

    /// Publishes the head.
    pub fn publish_head(&self, head: FillHead) {
        self.state.send_modify(|s| s.head = Some(head));
    }

    /// Appends a body chunk.
    pub fn push(&self, chunk: Bytes) {
        self.state.send_modify(|s| {
            s.held += chunk.len() as u64;
            s.chunks.push_back(chunk);
        });
    }

    /// The body will not be stored: from now on only what some reader has yet to read is kept.
    pub fn stream_only(&self) {
        self.state.send_if_modified(|s| {
            s.streaming_only = true;
            s.release();
            false
        });
    }

    /// Whether the fill may read more (see [`WINDOW`]); cuts off readers that stayed far
    /// behind for [`PATIENCE`].
    pub fn room(&self, now: Instant) -> Room {
        let mut room = Room::No;
        self.state.send_if_modified(|s| {
            let Some(fastest) = s.readers.values().map(|p| p.bytes).max() else {
                room = Room::Nobody;
                return false;
            };
            let mut cut = false;
            s.readers.retain(|_, p| {
                if fastest - p.bytes <= WINDOW / 2 {
                    p.behind_since = None;
                    return true;
                }
                let since = *p.behind_since.get_or_insert(now);
                let keep = now.duration_since(since) < PATIENCE;
                cut |= !keep;
                keep
            });
            s.release();
            room = if s.held <= WINDOW { Room::Yes } else { Room::No };
            // Readers that were cut off learn it from the next change.
            cut
        });
        room
    }

    /// Waits until a reader moves on or leaves.
    pub async fn moved(&self) {
        self.moved.notified().await;
    }

    /// Publishes the end of the body, and whether the response was stored.
    pub fn finish(&self, end: Result<(), ProxyError>, stored: bool) {
        self.state.send_modify(|s| {
            s.end = Some(end);
            s.stored = stored;
        });
    }

    /// Waits until the fill ended; whether its response was stored.
    pub async fn ended(&self) -> bool {
        let mut rx = self.state.subscribe();
        rx.wait_for(|s| s.end.is_some()).await.is_ok_and(|s| s.stored)
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

    /// The body's chunks so far (shared, not copied), unless part of it was released.
    pub fn chunks(&self) -> Option<Vec<Bytes>> {
        let s = self.state.borrow();
        (s.first == 0).then(|| s.chunks.iter().cloned().collect())
    }

    /// The whole body followed by `tail` (a last chunk not pushed yet), unless part of it was
    /// released.
    pub fn whole_and(&self, tail: Option<Bytes>) -> Option<Bytes> {
        let s = self.state.borrow();
        if s.first != 0 {
            return None;
        }
        match (s.chunks.as_slices(), tail) {
            ((all, []), None) => Some(concat(all)),
            (_, tail) => Some(concat(&s.chunks.iter().cloned().chain(tail).collect::<Vec<_>>())),
        }
    }

    /// `Some(stored)` once the fill ended.
    pub fn stored(&self) -> Option<bool> {
        let s = self.state.borrow();
        s.end.as_ref().map(|_| s.stored)
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
}

/// What [`Reader::collect`] found.
#[derive(Debug)]
pub enum Collected {
    /// The whole body, and whether it was stored.
    Whole(Bytes, bool),
    /// The body is longer than the limit: what was read so far, and the reader for the rest.
    Longer(Vec<Bytes>, Reader),
}

/// One waiter's place in a fill's body. Dropping it lets the fill release what it held back.
#[derive(Debug)]
pub struct Reader {
    fill: Arc<Fill>,
    rx: watch::Receiver<FillState>,
    id: u64,
}

impl Reader {
    /// The fill read from.
    pub fn fill(&self) -> &Arc<Fill> {
        &self.fill
    }

    /// The next chunk; an error when the body was cut short or this reader was cut off;
    /// `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, ProxyError>> {
        loop {
            let step = {
                let s = self.rx.borrow_and_update();
                match s.readers.get(&self.id) {
                    None => Some(Err(ProxyError::Internal("reader fell too far behind the origin".into()))),
                    Some(p) => match p.chunk.checked_sub(s.first).map(|i| s.chunks.get(i)) {
                        None => {
                            Some(Err(ProxyError::Internal("reader fell too far behind the origin".into())))
                        }
                        Some(Some(c)) => Some(Ok(c.clone())),
                        Some(None) => match &s.end {
                            Some(Ok(())) => return None,
                            Some(Err(e)) => Some(Err(e.clone())),
                            None => None,
                        },
                    },
                }
            };
            match step {
                Some(Ok(chunk)) => {
                    let id = self.id;
                    let mut released = false;
                    self.fill.state.send_if_modified(|s| {
                        if let Some(p) = s.readers.get_mut(&id) {
                            p.chunk += 1;
                            p.bytes += chunk.len() as u64;
                        }
                        released = s.release();
                        false
                    });
                    if released {
                        self.fill.moved.notify_one();
                    }
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => {
                    self.leave();
                    return Some(Err(e));
                }
                None => {
                    if self.rx.changed().await.is_err() {
                        return Some(Err(ProxyError::Internal("fill ended without an end".into())));
                    }
                }
            }
        }
    }

    /// The body as a stream of chunks, ending with an error if it was cut short.
    pub fn into_body(self) -> impl Stream<Item = Result<Bytes, ProxyError>> + Send + 'static {
        futures_util::stream::unfold((self, false), |(mut reader, done)| async move {
            if done {
                return None;
            }
            match reader.next().await? {
                Ok(c) => Some((Ok(c), (reader, false))),
                Err(e) => Some((Err(e), (reader, true))),
            }
        })
    }

    /// Reads the body to its end if it is at most `limit` bytes.
    pub async fn collect(mut self, limit: u64) -> Result<Collected, ProxyError> {
        let mut chunks = Vec::new();
        let mut size = 0u64;
        while size <= limit {
            match self.next().await {
                None => {
                    let stored = self.fill.stored().unwrap_or(false);
                    return Ok(Collected::Whole(concat(&chunks), stored));
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(c)) => {
                    size += c.len() as u64;
                    chunks.push(c);
                }
            }
        }
        Ok(Collected::Longer(chunks, self))
    }

    fn leave(&self) {
        let id = self.id;
        self.fill.state.send_if_modified(|s| {
            s.readers.remove(&id);
            s.release();
            false
        });
        self.fill.moved.notify_one();
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.leave();
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

/// Whether this request waits on a fill it started or on someone else's; either way it holds
/// a [`Reader`] made under the map lock, before the body can outgrow the store. Or, for a fill
/// that can no longer be followed from its first byte, that it waits for the fill to end.
#[derive(Debug)]
pub enum Role {
    /// Started the fill (and must start its task).
    Leader(Reader),
    /// Joined a running fill.
    Follower(Reader),
    /// The fill writes a large object to disk as it streams and keeps only what its readers
    /// have yet to read: wait until it ends ([`Fill::ended`]), then look again, as nginx's
    /// `proxy_cache_lock` makes requests wait for the response being cached.
    Wait(Arc<Fill>),
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
            if f.state.borrow().streaming_only {
                return Some(Role::Wait(f.clone()));
            }
            return Some(Role::Follower(f.reader()));
        }
        if cached() {
            return None;
        }
        let fill = Fill::new(request_headers.clone());
        fills.insert(key.clone(), fill.clone());
        Some(Role::Leader(fill.reader()))
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

/// A slice fetch every request for that slice waits on (`proxy/slice.rs`).
type SliceFlight = futures_util::future::Shared<futures_util::future::BoxFuture<'static, SliceResult>>;

/// Slice fetches in flight, by slice key: one origin `Range` request per slice however many
/// clients want it. A slice is at most `cache.slice_size`, so unlike a [`Fill`] it is simply
/// fetched whole and then handed to every waiter. The fetch runs in a detached task that
/// outlives any client and removes itself from the map when it is done (after storing).
#[derive(Default)]
pub struct SliceFlights {
    flights: Mutex<HashMap<Arc<str>, SliceFlight>>,
}

impl std::fmt::Debug for SliceFlights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.flights.lock().map_or(0, |m| m.len());
        f.debug_struct("SliceFlights").field("in_flight", &n).finish()
    }
}

impl SliceFlights {
    /// The fetch of `key` to wait for, started with `start` when none runs — unless `stored`,
    /// asked under the map lock, finds the slice (then `None`). A fetch stores its slice before
    /// it leaves the map, so a request never misses both and fetches a slice twice. `start` is
    /// spawned under the lock, so it cannot finish (and remove itself) before it is in.
    pub fn run(
        &self,
        key: &Arc<str>,
        stored: impl FnOnce() -> bool,
        start: impl FnOnce() -> tokio::task::JoinHandle<SliceResult>,
    ) -> Option<SliceFlight> {
        use futures_util::FutureExt;
        let mut flights = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = flights.get(key) {
            return Some(f.clone());
        }
        if stored() {
            return None;
        }
        let task = start();
        let flight = async move {
            task.await.unwrap_or_else(|e| Err(ProxyError::Internal(format!("slice fetch ended: {e}"))))
        }
        .boxed()
        .shared();
        flights.insert(key.clone(), flight.clone());
        Some(flight)
    }

    /// Called by the fetch task when it is done.
    pub fn done(&self, key: &str) {
        self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn held(fill: &Fill) -> u64 {
        fill.state.borrow().held
    }

    #[tokio::test]
    async fn waiters_stream_before_the_end_and_see_truncation() {
        let fill = Fill::new(HeaderMap::new());
        let (a, b) = (fill.reader(), fill.reader());
        let mut a = Box::pin(a.into_body());
        fill.push(Bytes::from_static(b"one"));
        assert_eq!(a.next().await.unwrap().unwrap(), "one");
        // A waiter that starts reading late starts from the first chunk.
        let mut b = Box::pin(b.into_body());
        fill.push(Bytes::from_static(b"two"));
        assert_eq!(b.next().await.unwrap().unwrap(), "one");
        assert_eq!(b.next().await.unwrap().unwrap(), "two");
        fill.finish(Err(ProxyError::Upstream("reset".into())), false);
        assert_eq!(a.next().await.unwrap().unwrap(), "two");
        assert!(a.next().await.unwrap().is_err());
        assert!(a.next().await.is_none());
        assert!(fill.reader().collect(100).await.is_err());
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
        assert!(fill.reader().collect(100).await.is_err());
    }

    #[tokio::test]
    async fn collect_gives_the_whole_body_or_what_it_read_of_a_longer_one() {
        let fill = Fill::new(HeaderMap::new());
        let (short, long) = (fill.reader(), fill.reader());
        fill.push(Bytes::from_static(b"0123"));
        fill.push(Bytes::from_static(b"4567"));
        fill.finish(Ok(()), true);
        assert!(matches!(short.collect(8).await, Ok(Collected::Whole(b, true)) if b == "01234567"));
        let Ok(Collected::Longer(read, mut rest)) = long.collect(3).await else { panic!("not longer") };
        assert_eq!(read, [Bytes::from_static(b"0123")]);
        assert_eq!(rest.next().await.unwrap().unwrap(), "4567");
        assert!(rest.next().await.is_none());
    }

    #[tokio::test]
    async fn once_streaming_only_a_fill_keeps_just_what_some_reader_has_not_read() {
        let fill = Fill::new(HeaderMap::new());
        let (mut fast, mut slow) = (fill.reader(), fill.reader());
        for _ in 0..4 {
            fill.push(Bytes::from(vec![0u8; 100]));
        }
        // While the body may still be stored, everything is kept.
        for _ in 0..4 {
            fast.next().await.unwrap().unwrap();
        }
        slow.next().await.unwrap().unwrap();
        assert_eq!(held(&fill), 400);
        fill.stream_only();
        assert_eq!(held(&fill), 300, "the chunk both have read is released");
        assert!(fill.chunks().is_none());
        // A reader made now would miss the start: it is cut off at once.
        assert!(fill.reader().next().await.unwrap().is_err());
        drop(slow);
        assert_eq!(held(&fill), 0, "the slow reader left; the fast one has read everything");
        assert_eq!(fill.room(Instant::now()), Room::Yes);
        drop(fast);
        assert_eq!(fill.room(Instant::now()), Room::Nobody);
    }

    #[tokio::test]
    async fn a_reader_that_stays_far_behind_is_cut_off() {
        let fill = Fill::new(HeaderMap::new());
        let (mut fast, mut slow) = (fill.reader(), fill.reader());
        fill.stream_only();
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        for _ in 0..(WINDOW >> 20) + 2 {
            fill.push(chunk.clone());
            fast.next().await.unwrap().unwrap();
        }
        let t0 = Instant::now();
        assert_eq!(fill.room(t0), Room::No, "the slow reader holds the window");
        assert_eq!(fill.room(t0 + PATIENCE / 2), Room::No, "and is given time");
        // Then it is cut off and what it held back goes.
        assert_eq!(fill.room(t0 + PATIENCE), Room::Yes);
        assert_eq!(held(&fill), 0);
        assert!(slow.next().await.unwrap().is_err());
        // A reader alone is never cut off: the fill waits for it.
        let fill = Fill::new(HeaderMap::new());
        let _alone = fill.reader();
        fill.stream_only();
        for _ in 0..(WINDOW >> 20) + 2 {
            fill.push(chunk.clone());
        }
        assert_eq!(fill.room(t0), Room::No);
        assert_eq!(fill.room(t0 + PATIENCE * 10), Room::No);
    }

    #[test]
    fn second_request_joins() {
        let inflight = Inflight::default();
        let key: Arc<str> = Arc::from("k");
        assert!(matches!(inflight.join(&key, &HeaderMap::new(), || false), Some(Role::Leader(_))));
        let Some(Role::Follower(r)) = inflight.join(&key, &HeaderMap::new(), || false) else {
            panic!("not joined")
        };
        inflight.remove(&key, r.fill());
        assert!(inflight.is_empty());
        assert!(inflight.join(&key, &HeaderMap::new(), || true).is_none());
    }
}
