//! The fetch and store phases: what the detached task behind a [`Fill`] does. It asks the
//! origin, decides whether the response may be shared and stored, streams the body into the
//! fill (and so to every waiter) and stores it only when it arrived complete.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::cache::coalesce::{self, Fill, FillHead, Room, StreamHead};
use crate::cache::directives::SURROGATE_CONTROL;
use crate::cache::disk::tier::{Disk, LargeFill};
use crate::cache::entry::{Entry, Exchange, StoredHead, initial_age};
use crate::cache::freshness;
use crate::cache::heads::CACHE_STATUS;
use crate::cache::key::{CacheKey, vary_names};
use crate::cache::slice::Answer;
use crate::edge::Edge;
use crate::error::ProxyError;
use crate::proxy::headers::{TIER_TAGS, add_edge_fields, strip_hop_by_hop, take_tags};
use crate::proxy::route::SiteState;
use crate::upstream::{Answered, OriginBody, OriginRequest, error_chain};

/// What the fill is for.
#[derive(Debug)]
pub enum Mode {
    /// Fetch the object.
    Fetch,
    /// Revalidate this stored entry (conditional request; a 304 refreshes it).
    Revalidate(Arc<Entry>),
    /// Fetch the object, whose origin answer is already here: a slice request (`Range`) the
    /// origin answered whole (`proxy/slice.rs`). When someone else took it, fetch as usual.
    Answered(Answer),
}

/// How a fill shares its response and whether it may store it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// In the inflight map: later requests join it, and a response that may not be shared
    /// marks the key hit-for-miss so the next requests do not queue behind a fetch again.
    Coalesced,
    /// Alone (credentials, unlike variants, a fill that kept failing to start): nobody joins;
    /// the response is stored if it may be.
    Alone,
    /// Alone for a key marked hit-for-miss: stored if it may be now, else the mark is renewed.
    HitForMiss,
    /// The request said `no-store`: never stored.
    NoStore,
}

impl Sharing {
    fn registered(self) -> bool {
        self == Self::Coalesced
    }

    fn marks_hit_for_miss(self) -> bool {
        matches!(self, Self::Coalesced | Self::HitForMiss)
    }

    fn may_store(self) -> bool {
        self != Self::NoStore
    }
}

/// Everything the detached task needs.
#[derive(Debug)]
pub struct Job {
    /// The edge.
    pub edge: Arc<Edge>,
    /// The site.
    pub site: Arc<SiteState>,
    /// The object's key.
    pub key: CacheKey,
    /// The key the fill is registered under (or would be) — where hit-for-miss goes.
    pub slot: Arc<str>,
    /// How the fill shares and stores its response.
    pub sharing: Sharing,
    /// The request carried `Authorization`.
    pub authorization: bool,
    /// The origin request.
    pub request: OriginRequest,
    /// Fetch or revalidate.
    pub mode: Mode,
    /// Where a non-shareable response goes (the leader), if anyone waits for it.
    pub pass: Option<oneshot::Sender<Response<OriginBody>>>,
}

/// Starts the fill's task; it runs to the end whatever happens to the clients.
pub fn spawn(job: Job, fill: Arc<Fill>) {
    tokio::spawn(async move {
        let guard = Done {
            edge: job.edge.clone(),
            slot: job.slot.clone(),
            registered: job.sharing.registered(),
            fill,
        };
        run(job, &guard.fill).await;
    });
}

/// Ends a fill when its task ends, even by a panic: waiters are released and the key leaves
/// the inflight map, so one bad fetch cannot wedge a key.
struct Done {
    edge: Arc<Edge>,
    slot: Arc<str>,
    registered: bool,
    fill: Arc<Fill>,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.fill.abandon();
        if self.registered {
            self.edge.inflight.remove(&self.slot, &self.fill);
        }
    }
}

async fn run(job: Job, fill: &Fill) {
    let edge = &job.edge;
    let answered = match &job.mode {
        Mode::Answered(a) => a.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(),
        _ => None,
    };
    let (res, request_time) = match answered {
        Some(pair) => pair,
        None => {
            edge.metrics.origin_request();
            let request_time = SystemTime::now();
            let sent = std::time::Instant::now();
            match job.site.upstream.send(&job.request, None).await {
                Ok(r) => {
                    edge.metrics.origin_duration(sent.elapsed());
                    (r, request_time)
                }
                Err(e) => {
                    edge.metrics.origin_error();
                    fill.publish_head(FillHead::Failed(e.clone()));
                    fill.finish(Err(e), false);
                    return;
                }
            }
        }
    };
    let ex = Exchange::now(request_time);
    // Only owners store when `cluster.keep_copies` is off.
    let answered = res.extensions().get::<Answered>().copied();
    let keep = answered.is_none_or(|a| a.keep);
    let (mut parts, body) = res.into_parts();
    // The upper tier's `Cache-Status` describes that exchange: it goes with the answers this
    // fill gives, never into the store.
    let upstream_status = upstream_cache_status(&mut parts.headers);
    let revalidating = matches!(job.mode, Mode::Revalidate(_));
    if let (Mode::Revalidate(old), StatusCode::NOT_MODIFIED) = (&job.mode, parts.status) {
        let entry = Arc::new(refresh(edge, &job.site, old, &parts.headers, &ex, job.authorization));
        let vary = vary_names(&entry.headers().to_map(0)).unwrap_or_default();
        edge.store.insert(&entry, &vary, &fill.request_headers);
        tracing::debug!(key = %job.key.primary(), "revalidated");
        fill.publish_head(FillHead::Entry(entry));
        fill.finish(Ok(()), true);
        return;
    }

    let status = parts.status;
    let mut head = prepare(
        edge,
        &job.site,
        &job.key,
        status,
        std::mem::take(&mut parts.headers),
        &ex,
        job.authorization,
    );
    // A compressible response varies on the (normalised) Accept-Encoding; its body is stored
    // compressed for the fill's encoding (`policy/compress.rs`).
    let encoding = job.site.policy.for_store(status, &mut head.headers, &fill.request_headers);
    let vary = vary_names(&head.headers);
    let content_length = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let too_large = content_length.is_some_and(|n| n > edge.max_object);
    // A 5xx answering a revalidation never replaces the stale entry: stale-if-error may still
    // need it, and the next request revalidates again.
    let storable = job.sharing.may_store()
        && head.policy.storable.is_ok()
        && vary.is_some()
        && !too_large
        && !(revalidating && status.is_server_error());
    // Errors answering a revalidation are shared (waiters with stale-if-error serve stale,
    // the others get the error) instead of sending every waiter to a failing origin.
    let shareable = storable || (revalidating && status.is_server_error() && !too_large);

    if !shareable {
        if job.sharing.marks_hit_for_miss() {
            edge.store.mark_hit_for_miss(job.slot.clone());
        }
        tracing::debug!(key = %job.key.primary(), reason = ?head.policy.storable.err(), too_large, "not stored");
        parts.headers = head.headers;
        if let Some(v) = upstream_status {
            parts.headers.insert(CACHE_STATUS, v);
        }
        if let Some(tx) = job.pass {
            let _ = tx.send(Response::from_parts(parts, body));
        }
        let reason = if too_large {
            "too-large"
        } else if !job.sharing.may_store() {
            "request-no-store"
        } else if vary.is_none() {
            "vary-star"
        } else {
            head.policy.storable.err().map_or("not-storable", |r| r.detail())
        };
        fill.publish_head(FillHead::Pass(reason));
        fill.finish(Ok(()), false);
        return;
    }

    let initial = initial_age(&head.headers, &ex);
    let ttl = storable.then(|| head.policy.lifetime.as_secs() as i64 - initial.as_secs() as i64);
    let mut edge_fields = HeaderMap::new();
    add_edge_fields(
        &mut edge_fields,
        head.targeted.iter().map(|(n, v)| (n.clone(), v.clone())),
        head.tags.iter().map(String::as_str),
        Some(&TIER_TAGS),
    );
    fill.publish_head(FillHead::Stream(Arc::new(StreamHead {
        status,
        headers: head.headers.clone(),
        vary: vary.clone().unwrap_or_default(),
        storing: storable && keep,
        length: content_length,
        ttl,
        initial_age: initial,
        arrived: ex.response_instant,
        upstream_status,
        edge_fields,
    })));

    // A large body goes to disk only, written as it arrives (`Disk::begin_large`): not a
    // compressed copy made for storage, and not a variant (its `Vary` marker is the writer
    // thread's to write), which stay on the memory path.
    let mut large = match &edge.disk {
        Some(disk) if storable && keep && encoding.is_none() && vary.as_deref() == Some(&[]) => {
            let empty = Entry::new(head.clone(), Bytes::new(), job.key.clone(), &ex);
            Some(ToDisk {
                disk: disk.clone(),
                above: Disk::streams_above(edge.store.capacity()),
                entry: Arc::new(empty),
                write: None,
                began: false,
                stored: None,
                failed: false,
            })
        }
        _ => None,
    };
    // The last chunk of a body stored in memory as it came waits until it is stored (not one
    // compressed for storage first: compressing would delay the end of every response).
    let mut last = None;
    let hold = (storable && keep && encoding.is_none()).then_some(&mut last);
    let end = stream_body(edge, &job, fill, body, content_length, request_time, &mut large, hold).await;
    let mut stored = false;
    if let (Ok(Some(size)), Some(l)) = (&end, large.filter(|l| l.write.is_some() || l.stored.is_some())) {
        stored = match (l.stored, l.write) {
            (Some(stored), _) => stored,
            (None, Some(w)) => w.finish().await,
            (None, None) => false,
        };
        if stored {
            // Stored on disk only: an older copy in memory must not answer in its place.
            edge.store.remove(&job.slot);
        }
        tracing::debug!(key = %job.key.primary(), size, stored, "large object streamed to disk");
        fill.finish(Ok(()), stored);
        return;
    }
    match &end {
        Ok(Some(size)) if storable && keep && *size <= edge.max_object => {
            if let Some(mut body) = fill.whole_and(last.clone()) {
                if let Some(enc) = encoding
                    && let Some(packed) = job.site.policy.store_body(enc, &body, &mut head.headers).await
                {
                    body = packed;
                }
                let entry = Entry::new(head, body, job.key.clone(), &ex);
                edge.store.insert(
                    &Arc::new(entry),
                    vary.as_deref().unwrap_or_default(),
                    &fill.request_headers,
                );
                stored = true;
                tracing::debug!(key = %job.key.primary(), size, tier = ?answered.map(|a| a.tier), "stored");
            }
        }
        Ok(Some(_)) => {}
        Ok(None) => {
            tracing::debug!(key = %job.key.primary(), "nobody reads the body any more; origin fetch stopped");
        }
        Err(e) => {
            edge.metrics.origin_error();
            tracing::warn!(key = %job.key.primary(), error = %e, "origin body failed; not stored");
        }
    }
    let end = match end {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ProxyError::Internal("origin fetch stopped: nobody reads".into())),
        Err(e) => Err(e),
    };
    if let Some(chunk) = last {
        fill.push(chunk);
    }
    fill.finish(end, stored);
}

/// Reads the body into the fill; returns its size when it arrived complete, `None` when it
/// outgrew the store and nobody reads it any more.
///
/// Up to `max_object_size` every chunk is kept (the body may be stored). Past it the body only
/// streams: the fill leaves the inflight map (nobody new joins), chunks every reader has read
/// are released, and the origin is read only while the slowest reader is within
/// [`coalesce::WINDOW`] (readers that stay far behind are cut off, see [`coalesce::PATIENCE`]).
/// So memory per fill stays near `max_object_size` + the window whatever the body's size.
// The fill's parts and what the body turns into (a file, a held-back last chunk), all borrowed
// from `run`, which acts on them once the body ended.
#[allow(clippy::too_many_arguments)]
async fn stream_body(
    edge: &Edge,
    job: &Job,
    fill: &Fill,
    mut body: OriginBody,
    content_length: Option<u64>,
    request_time: SystemTime,
    large: &mut Option<ToDisk>,
    mut last: Option<&mut Option<Bytes>>,
) -> Result<Option<u64>, ProxyError> {
    let deadline = body_deadline(&job.site, request_time);
    let mut size: u64 = 0;
    let mut overflowed = false;
    while let Some(data) = next_data(edge, &mut body, deadline).await? {
        size += data.len() as u64;
        if let Some(l) = large.as_mut()
            && let Some(w) = l.write.as_mut()
        {
            if w.push(data.clone()).await {
                l.complete_if_last(size, content_length).await;
            } else {
                // The tier gave up on the file (an I/O error, or no room): the body still
                // streams to its readers, and is not stored.
                l.fail();
            }
        }
        match last.as_deref_mut() {
            // The last chunk of a body of known length waits until the response is stored
            // (`run`): a client that has every byte it was promised and asks again must find
            // it stored, not the fill.
            Some(held) if content_length == Some(size) && stays_in_memory(large.as_ref(), size) => {
                *held = Some(data);
            }
            _ => fill.push(data),
        }
        let mut streaming_to_disk = None;
        if let Some(l) = large.as_mut() {
            if size > edge.max_object {
                l.fail();
            } else {
                if !l.began && !l.failed && content_length.unwrap_or(size) > l.above {
                    l.begin(job, fill, content_length).await;
                }
                if l.began {
                    streaming_to_disk = Some(l.write.is_some() || l.stored.is_some());
                }
            }
        }
        if let Some(writing) = streaming_to_disk {
            // Past the share of memory a body may take: read the origin as fast as the
            // slowest reader takes it or, while the file is written and nobody reads any
            // more, as fast as the disk does.
            if !wait_for_room(fill, deadline, writing).await? {
                return Ok(None);
            }
        } else if size > edge.max_object {
            if !overflowed {
                // Too big to store after all (no Content-Length told us): the current waiters
                // finish from this fill, but nobody new joins it; later requests go straight
                // to the origin. Only then may chunks be released: every reader joined under
                // the map lock, so each one is registered from the first chunk.
                overflowed = true;
                if job.sharing.registered() {
                    edge.store.mark_hit_for_miss(job.slot.clone());
                    edge.inflight.remove(&job.slot, fill);
                }
                fill.stream_only();
            }
            if !wait_for_room(fill, deadline, false).await? {
                return Ok(None);
            }
        }
    }
    // hyper reports a body shorter than Content-Length as an error; this catches the rest.
    if content_length.is_some_and(|n| n != size) {
        return Err(ProxyError::Upstream("body length does not match Content-Length".into()));
    }
    Ok(Some(size))
}

/// When an origin's body must have arrived whole: the site's `timeouts.total`, counted from
/// the request to the origin.
pub fn body_deadline(site: &SiteState, request_time: SystemTime) -> tokio::time::Instant {
    let spent = SystemTime::now().duration_since(request_time).unwrap_or_default();
    tokio::time::Instant::now() + site.upstream.timeouts.total.get().saturating_sub(spent)
}

/// The next data of an origin's body, counted as fetched (trailers are skipped); `None` at
/// its end. A body that fails or is not in by `deadline` is an error.
pub async fn next_data(
    edge: &Edge,
    body: &mut OriginBody,
    deadline: tokio::time::Instant,
) -> Result<Option<Bytes>, ProxyError> {
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ProxyError::Timeout("the response body")),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(ProxyError::Upstream(error_chain(&e))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    edge.metrics.fetched(data.len() as u64);
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Waits until the fill may read more of the origin's body (see [`coalesce::WINDOW`]); false
/// when nobody reads any more, unless `unread` (the body goes to disk whoever reads it).
async fn wait_for_room(
    fill: &Fill,
    deadline: tokio::time::Instant,
    unread: bool,
) -> Result<bool, ProxyError> {
    loop {
        match fill.room(std::time::Instant::now()) {
            Room::Yes => return Ok(true),
            Room::Nobody => return Ok(unread),
            Room::No => {}
        }
        // Wake up now and then even if no reader moves, to cut off stalled ones.
        let check = deadline.min(tokio::time::Instant::now() + coalesce::PATIENCE / 4);
        if tokio::time::timeout_at(check, fill.moved()).await.is_err()
            && tokio::time::Instant::now() >= deadline
        {
            return Err(ProxyError::Timeout("the response body"));
        }
    }
}

/// Whether a body of known length `len` takes the memory path, never a file (which must get
/// every chunk, the last one included).
fn stays_in_memory(large: Option<&ToDisk>, len: u64) -> bool {
    large.is_none_or(|l| !l.began && (l.failed || len <= l.above))
}

/// A fill whose body may go to disk only, written as it arrives, once it is larger than
/// `above` (a share of the memory tier; see `Disk::streams_above`).
struct ToDisk {
    disk: Arc<Disk>,
    above: u64,
    /// The object with an empty body: what the file's head is written from.
    entry: Arc<Entry>,
    /// The file being written, once begun.
    write: Option<LargeFill>,
    /// Whether the file was begun (the fill then keeps only what readers have yet to read).
    began: bool,
    /// Set once the file was completed (on the body's last byte, when its length is known).
    stored: Option<bool>,
    /// The disk tier could not take it: it takes the memory path (if it fits there), or is
    /// not stored.
    failed: bool,
}

impl ToDisk {
    /// Starts the file with what the fill holds so far. From then on the fill keeps only what
    /// some reader has yet to read: a request that comes later cannot follow it from the first
    /// byte, so it waits until the file is in and is served from it (`Role::Wait`), and the
    /// origin is still asked once.
    async fn begin(&mut self, job: &Job, fill: &Fill, length: Option<u64>) {
        let Some(mut w) = self.disk.begin_large(&job.slot, self.entry.clone(), length) else {
            self.failed = true;
            return;
        };
        // What arrived so far, chunk by chunk: not copied into one piece first.
        let prefix = fill.chunks().unwrap_or_default();
        let size = prefix.iter().map(|c| c.len() as u64).sum();
        for chunk in prefix {
            if !w.push(chunk).await {
                self.failed = true;
                return;
            }
        }
        self.write = Some(w);
        self.began = true;
        self.complete_if_last(size, length).await;
        fill.stream_only();
    }

    /// Completes the file when `size` bytes are the whole body (`length`, when known), before
    /// the fill hands the last chunk to its readers: a client that has all the bytes it was
    /// promised and asks again finds the object on disk.
    async fn complete_if_last(&mut self, size: u64, length: Option<u64>) {
        if length == Some(size)
            && let Some(w) = self.write.take()
        {
            self.stored = Some(w.finish().await);
        }
    }

    /// Abandons the file (none is left).
    fn fail(&mut self) {
        self.write = None;
        self.failed = true;
    }
}

/// Takes the `Cache-Status` members of the upstream caches out of `headers`, as one value.
fn upstream_cache_status(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let values: Vec<HeaderValue> = headers.get_all(CACHE_STATUS).iter().cloned().collect();
    headers.remove(CACHE_STATUS);
    match values.len() {
        0 => None,
        1 => values.into_iter().next(),
        _ => {
            let joined: Vec<&str> = values.iter().filter_map(|v| v.to_str().ok()).collect();
            HeaderValue::from_str(&joined.join(", ")).ok()
        }
    }
}

/// Cleans an origin response head for storage and clients and computes its policy.
pub fn prepare(
    edge: &Edge,
    site: &SiteState,
    key: &CacheKey,
    status: StatusCode,
    mut headers: HeaderMap,
    ex: &Exchange,
    authorization: bool,
) -> StoredHead {
    strip_hop_by_hop(&mut headers);
    let tags = take_tags(&mut headers, &edge.tag_headers);
    if !headers.contains_key(header::DATE) {
        // RFC 9110 §6.6.1: a cache that stores or forwards a response without Date adds one.
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(ex.response_time)) {
            headers.insert(header::DATE, v);
        }
    }
    let policy = freshness::policy(status, &headers, authorization, ex.response_time, site.rules(key.path()));
    // Surrogate-Control is ours alone: kept with the entry (a 304 recomputes freshness from
    // it) but not sent on. CDN-Cache-Control stays with the client-facing fields (see
    // `headers::strip_targeted`).
    let mut targeted = HeaderMap::new();
    for v in headers.get_all(&SURROGATE_CONTROL) {
        targeted.append(SURROGATE_CONTROL.clone(), v.clone());
    }
    headers.remove(&SURROGATE_CONTROL);
    StoredHead { status, headers, targeted, tags, policy }
}

/// Applies a 304 to a stored entry (RFC 9111 §4.3.4): its fields replace the stored ones,
/// except those describing the body, and freshness is computed anew.
fn refresh(
    edge: &Edge,
    site: &SiteState,
    old: &Entry,
    update: &HeaderMap,
    ex: &Exchange,
    authorization: bool,
) -> Entry {
    let mut merged = old.headers().to_map(old.targeted().len());
    for (name, value) in old.targeted().iter() {
        merged.append(name, value);
    }
    // The old Date and Age describe the old exchange.
    merged.remove(header::DATE);
    merged.remove(header::AGE);
    let mut update = update.clone();
    strip_hop_by_hop(&mut update);
    update.remove(CACHE_STATUS);
    for name in
        [header::CONTENT_LENGTH, header::CONTENT_ENCODING, header::CONTENT_RANGE, header::CONTENT_TYPE]
    {
        update.remove(name);
    }
    let tags_sent = edge.tag_headers.iter().any(|n| update.contains_key(n));
    let mut names: Vec<header::HeaderName> = update.keys().cloned().collect();
    names.dedup();
    for name in names {
        merged.remove(&name);
        for v in update.get_all(&name) {
            merged.append(name.clone(), v.clone());
        }
    }
    let mut head = prepare(edge, site, &old.key, old.status, merged, ex, authorization);
    if !tags_sent {
        head.tags = old.tags().map(String::from).collect();
    }
    let refreshed = Entry::new(head, old.body(), old.key.clone(), ex);
    // A large object on disk keeps its file (it is not written again: see `Disk::spill`).
    match old.file() {
        Some(file) => refreshed.with_file(file.clone()),
        None => refreshed,
    }
}
