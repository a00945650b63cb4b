//! Serving objects of sites with `slice = true` from slices (`cache/slice.rs`), the way nginx's
//! slice module and Traffic Server's slice plugin do: every slice is fetched from the origin
//! with its own `Range: bytes=i*size-(i+1)*size-1` request, stored as an entry of its own, and
//! a response is streamed slice by slice, so neither a client's range of a large object nor
//! the whole object is ever fetched or held at once.
//!
//! Steps for one GET or HEAD that found nothing under the object's primary key:
//! 1. The *anchor*: the slice holding the first byte asked for (slice 0 when the range needs
//!    the length first: a suffix range or a list), stored or fetched. Its `Content-Range`
//!    gives the object's length, its head the response head.
//! 2. The client's preconditions, `If-Range` and `Range` are answered against that head and
//!    length (a list of ranges is answered whole, 200).
//! 3. When the anchor came from the store and some needed slice is missing, the first missing
//!    one is fetched before answering: if its validator differs (RFC 9111 §3.4), the object
//!    changed, every stored slice of it is dropped and the plan is made again.
//! 4. The body: each needed slice from the store (same validator, fresh for this request) or
//!    fetched (coalesced per slice in `coalesce.rs`), cut to the range, in order. A slice that
//!    turns out to belong to another version ends the response early (and drops the slices):
//!    bytes of two versions are never served as one.
//!
//! An origin that ignores `Range` (`200`), sends no complete length, no strong validator, a
//! `Vary`, or an answer that may not be stored makes the request fall back to the ordinary
//! whole-object path (`pipeline.rs`), which then finds that object under the primary key.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;

use crate::body::{Body, BoxError, empty};
use crate::cache::directives::Directives;
use crate::cache::entry::{Entry, Exchange};
use crate::cache::key::{CacheKey, vary_names};
use crate::cache::reuse::{Reuse, reuse};
use crate::cache::slice::{self, Answer, ContentRange, Fetched, SliceResult};
use crate::cache::store::Target;
use crate::edge::Edge;
use crate::error::ProxyError;
use crate::proxy::ctx::{Ctx, Purpose, Served, origin_request};
use crate::proxy::fill::{body_deadline, next_data, prepare};
use crate::proxy::headers::{TIER_TAGS, add_edge_fields};
use crate::proxy::interim::{self, InterimTx};
use crate::proxy::range::{self, Ranges};
use crate::proxy::respond::{self, Precondition};
use crate::proxy::route::SiteState;
use crate::proxy::status::{CACHE_STATUS, CacheStatus, Fwd, Outcome};
use crate::upstream::{Answered, OriginRequest};

/// How many slices a request checks in the store before answering (4 GiB of 1 MiB slices); it
/// only decides `Cache-Status`, and bounds the work an origin's claimed length can cause.
const MAX_PLANNED: u64 = 4096;
/// How many slices of an object that changed are removed from the disk tier by name (64 GiB
/// of 1 MiB slices); it bounds the work an origin's claimed length can cause.
const MAX_DROPPED: u64 = 1 << 16;

/// Whether a request is served from slices: its site slices and nothing makes the answer
/// private to it (requests with credentials take the ordinary path, never shared).
pub(crate) fn applies(ctx: &Ctx) -> bool {
    ctx.site.cfg.slice && !ctx.headers.contains_key(header::AUTHORIZATION)
}

/// What one request needs to find and fetch slices, shared with the body stream and the
/// detached fetch tasks.
struct Slicer {
    edge: Arc<Edge>,
    site: Arc<SiteState>,
    key: CacheKey,
    /// The whole-object request a fill would send; each slice adds its `Range`.
    request: OriginRequest,
    cc: Directives,
    no_cache: bool,
    size: u64,
}

/// What the client gets of an object of known length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Serves `ctx` from slices; `Err` when the object cannot be sliced: the caller then takes the
/// ordinary path, with the origin's answer when it already has a whole one ([`Fetched::Whole`]).
pub(crate) async fn serve(
    edge: &Arc<Edge>,
    ctx: &Ctx,
    only_if_cached: bool,
) -> Result<Served, Option<Answer>> {
    let s = Arc::new(Slicer {
        edge: edge.clone(),
        site: ctx.site.clone(),
        key: ctx.key.clone(),
        request: origin_request(ctx, Purpose::Fill(None)),
        cc: ctx.cc.clone(),
        no_cache: ctx.no_cache,
        size: edge.slice_size,
    });
    let first = ctx.headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(slice::first_byte);
    let mut first = first.map_or(0, |a| a / s.size);
    // Slices of this response fetched from the origin, and whether any of them was stored.
    let mut fetched = 0u64;
    let mut stored = false;
    let mut checked = false;
    // Slices of the answer that are read from the disk tier (`detail=disk` on a hit).
    let mut on_disk: u64;
    let (anchor, head, total, want, missing, needed) = loop {
        let in_memory = s.stored(first, None);
        on_disk = u64::from(in_memory.is_none());
        let anchor = match in_memory {
            Some(e) => Some(e),
            None => s.find(first, None).await,
        };
        let (anchor, from_store) = match anchor {
            Some(e) => (e, true),
            None if only_if_cached => return Ok(Err(ProxyError::NotCached)),
            None => match fetch_anchor(&s, ctx, first).await {
                Ok(Fetched::Slice { entry, stored: kept, .. }) => {
                    on_disk = 0;
                    fetched += 1;
                    stored |= kept;
                    (entry, false)
                }
                // A range past the end (416) says nothing about the object: slice 0 does.
                Ok(Fetched::NotSliceable("unsatisfiable")) if first > 0 => {
                    first = 0;
                    continue;
                }
                Ok(Fetched::NotSliceable(why)) => {
                    tracing::debug!(key = %s.key.primary(), why, "not sliced");
                    return Err(None);
                }
                Ok(Fetched::Whole(answer)) => {
                    tracing::debug!(key = %s.key.primary(), "the origin answered a slice request whole");
                    return Err(Some(answer));
                }
                Err(e) => return Ok(Err(e)),
            },
        };
        let head = anchor.headers().to_map(6);
        let (Some(range), Some(validator)) = (ContentRange::of(&head), slice::validator(&head)) else {
            // Only 206s with both are stored as slices; anything else is not one of ours.
            return Ok(Err(ProxyError::Internal("a stored slice without Content-Range".into())));
        };
        let total = range.complete;
        let want = want(&ctx.headers, &head, total);
        let needed = match want {
            _ if ctx.head_only => first..=first,
            Want::Whole => 0..=(total - 1) / s.size,
            Want::Part(a, b) => a / s.size..=b / s.size,
            Want::Unsatisfiable => first..=first,
        };
        // Looked at ahead of the answer: at most `MAX_PLANNED` slices (an origin may claim any
        // length); the rest are found or fetched as the body gets to them.
        let count = (needed.end() - needed.start()).saturating_add(1).min(MAX_PLANNED);
        let mut missing: Vec<u64> = needed
            .take(MAX_PLANNED as usize)
            .filter(|&i| {
                if i == first || s.stored(i, Some(&validator)).is_some() {
                    return false;
                }
                let disk = s.on_disk(i);
                on_disk += u64::from(disk);
                !disk
            })
            .collect();
        if from_store && !missing.is_empty() {
            if only_if_cached {
                return Ok(Err(ProxyError::NotCached));
            }
            if !checked {
                // Check the stored version against the origin before answering with it.
                checked = true;
                let m = missing[0];
                match s.fetch(m).await {
                    Ok(Fetched::Slice { entry, stored: kept, .. }) => {
                        fetched += 1;
                        stored |= kept;
                        if slice::validator(&entry.headers().to_map(0)).as_deref() != Some(&validator) {
                            tracing::debug!(key = %s.key.primary(), "validator changed; stored slices dropped");
                            s.drop_all(total);
                            if kept {
                                s.edge.store.insert_at(&s.slice_key(m), &entry);
                            }
                            continue;
                        }
                        if kept {
                            missing.remove(0);
                        }
                    }
                    Ok(Fetched::NotSliceable(why)) => {
                        tracing::debug!(key = %s.key.primary(), why, "no longer sliced; stored slices dropped");
                        s.drop_all(total);
                        return Err(None);
                    }
                    Ok(Fetched::Whole(answer)) => {
                        tracing::debug!(key = %s.key.primary(), "no longer sliced; stored slices dropped");
                        s.drop_all(total);
                        return Err(Some(answer));
                    }
                    Err(e) => return Ok(Err(e)),
                }
            }
        }
        break (anchor, head, total, want, missing, count);
    };

    let now = Instant::now();
    let needed_fetches = fetched + missing.len() as u64;
    let mut status = CacheStatus::new(if needed_fetches == 0 {
        Outcome::Hit
    } else if needed > needed_fetches {
        // Some of the answer comes from stored slices, the rest from the origin.
        Outcome::Forward(Fwd::Partial)
    } else {
        Outcome::Forward(Fwd::UriMiss)
    });
    if needed_fetches > 0 {
        status.fwd_status = Some(206);
        status.stored = stored || (!missing.is_empty() && total <= edge.max_object);
    }
    status.ttl = Some(anchor.ttl(now));
    if status.is_hit() {
        anchor.hit();
        if on_disk > 0 {
            status.detail = Some("disk");
        }
    }
    Ok(Ok((respond(&s, ctx, anchor, head, total, want, first), status)))
}

/// Fetches the anchor slice; the origin's 1xx answers to it reach this client (when its
/// request is the one sent), as for a fill's leader.
async fn fetch_anchor(s: &Arc<Slicer>, ctx: &Ctx, first: u64) -> SliceResult {
    let (itx, irx) = interim::channel(ctx.interim.as_ref());
    interim::relay(ctx.interim.as_ref(), irx, s.fetch_with(first, itx)).await
}

/// Builds the answer once the plan is made.
fn respond(
    s: &Arc<Slicer>,
    ctx: &Ctx,
    anchor: Arc<Entry>,
    mut headers: HeaderMap,
    total: u64,
    want: Want,
    first: u64,
) -> Response<Body> {
    headers.remove(header::CONTENT_RANGE);
    headers.insert(header::AGE, HeaderValue::from(anchor.age(Instant::now()).as_secs()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if ctx.from_edge {
        add_edge_fields(&mut headers, anchor.targeted().iter(), anchor.tags(), Some(&TIER_TAGS));
    }
    match respond::precondition(&ctx.headers, StatusCode::OK, &headers) {
        Precondition::NotModified => return respond::not_modified(&headers),
        Precondition::Failed => return respond::precondition_failed(),
        Precondition::Proceed => {}
    }
    let (code, a, b) = match want {
        Want::Unsatisfiable => return range::unsatisfiable(total, headers),
        Want::Whole => (StatusCode::OK, 0, total - 1),
        Want::Part(a, b) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{total}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b)
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(b - a + 1));
    let body = if ctx.head_only { empty() } else { stream(s.clone(), anchor, first, a, b, &headers) };
    let mut res = Response::new(body);
    *res.status_mut() = code;
    *res.headers_mut() = headers;
    res
}

/// Bytes `a..=b` of the object, slice by slice: at most one slice is held at a time.
fn stream(s: Arc<Slicer>, anchor: Arc<Entry>, first: u64, a: u64, b: u64, head: &HeaderMap) -> Body {
    let validator = slice::validator(head).unwrap_or_default();
    let total = ContentRange::of(&anchor.headers().to_map(0)).map_or(b + 1, |r| r.complete);
    let size = s.size;
    let start = (s, Some((first, anchor)), a / size, validator);
    let pieces = futures_util::stream::try_unfold(start, move |(s, anchor, i, validator)| async move {
        if i > b / size {
            return Ok(None);
        }
        let bytes = match anchor {
            Some((at, e)) if at == i => e.body(),
            _ => s.slice_bytes(i, &validator, total).await?,
        };
        let (sa, _) = slice::bounds(i, size, total)
            .ok_or_else(|| ProxyError::Internal("slice out of bounds".into()))?;
        let from = (a.max(sa) - sa) as usize;
        let to = (b.min(sa + bytes.len() as u64 - 1) - sa) as usize;
        if bytes.len() as u64 != slice::bounds(i, size, total).map_or(0, |(x, y)| y - x + 1) || from > to {
            return Err(ProxyError::Internal("a stored slice has the wrong length".into()));
        }
        Ok(Some((bytes.slice(from..=to), (s, None, i + 1, validator))))
    });
    let frames = pieces.map_ok(Frame::data).map_err(|e| Box::new(e) as BoxError);
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

/// `Range` and `If-Range` against an object of `total` bytes with head `head`.
fn want(req: &HeaderMap, head: &HeaderMap, total: u64) -> Want {
    let Some(value) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Want::Whole };
    if !respond::if_range_holds(req, head) {
        return Want::Whole;
    }
    match range::parse(value, total) {
        Ranges::Parts(p) if p.len() == 1 => Want::Part(p[0].0, p[0].1),
        // A list of ranges is answered whole (RFC 9110 §14.2 lets a server ignore `Range`).
        Ranges::Parts(_) | Ranges::Full => Want::Whole,
        Ranges::Unsatisfiable => Want::Unsatisfiable,
    }
}

impl Slicer {
    fn slice_key(&self, index: u64) -> Arc<str> {
        slice::key(self.key.primary(), index)
    }

    /// Slice `index` when it is in memory, fresh enough for this request, and (when given)
    /// of the version `validator`.
    fn stored(&self, index: u64, validator: Option<&str>) -> Option<Arc<Entry>> {
        let e = self.edge.store.object(&self.slice_key(index), Instant::now())?;
        self.usable(&e, validator).then_some(e)
    }

    /// Whether `e` is fresh enough for this request and (when given) of the version
    /// `validator`.
    fn usable(&self, e: &Entry, validator: Option<&str>) -> bool {
        matches!(reuse(e, &self.cc, self.no_cache, Instant::now()), Reuse::Fresh)
            && validator.is_none_or(|v| slice::validator(&e.headers().to_map(0)).as_deref() == Some(v))
    }

    /// [`Slicer::stored`], else from the disk tier (promoted to memory when usable; a slice of
    /// another version is dropped from disk).
    async fn find(&self, index: u64, validator: Option<&str>) -> Option<Arc<Entry>> {
        if let Some(e) = self.stored(index, validator) {
            return Some(e);
        }
        let disk = self.edge.disk.as_ref()?;
        let key = self.slice_key(index);
        let e = disk.load_at(&self.key, &key).await?;
        if !self.usable(&e, validator) {
            if validator.is_some_and(|v| slice::validator(&e.headers().to_map(0)).as_deref() != Some(v)) {
                disk.remove(&key);
            }
            return None;
        }
        self.edge.store.promote(&key, &e, &[]);
        Some(e)
    }

    /// Whether slice `index` has a file in the disk tier (read, and checked, when the body gets
    /// to it; planning reads no file).
    fn on_disk(&self, index: u64) -> bool {
        self.edge.disk.as_ref().is_some_and(|d| d.contains(&self.slice_key(index)))
    }

    /// Removes every stored slice of the object of `total` bytes, from memory and disk
    /// (another version of it is at the origin). On disk at most [`MAX_DROPPED`] slices are
    /// removed by name; any left are of another version and dropped when read.
    fn drop_all(&self, total: u64) {
        let primary = self.key.primary();
        let host = self.key.host();
        let prefix = format!("{}{}", &primary[host.len()..], slice::MARK);
        self.edge.store.purge(&Target::Prefix { host: Some(host.to_owned()), prefix }, false);
        if let Some(disk) = &self.edge.disk {
            for i in 0..total.div_ceil(self.size).min(MAX_DROPPED) {
                disk.remove(&self.slice_key(i));
            }
        }
    }

    /// The body of slice `index` of the version `validator`, from the store or the origin.
    async fn slice_bytes(
        self: &Arc<Self>,
        index: u64,
        validator: &str,
        total: u64,
    ) -> Result<Bytes, ProxyError> {
        if let Some(e) = self.find(index, Some(validator)).await {
            return Ok(e.body());
        }
        match self.fetch(index).await? {
            Fetched::Slice { entry, range, .. }
                if range.complete == total
                    && slice::validator(&entry.headers().to_map(0)).as_deref() == Some(validator) =>
            {
                Ok(entry.body())
            }
            _ => {
                self.drop_all(total);
                tracing::warn!(key = %self.key.primary(), index, "object changed while served in slices; response cut short");
                Err(ProxyError::Upstream("the object changed while it was served in slices".into()))
            }
        }
    }

    /// Fetches slice `index`, joining a fetch of it already in flight, or finds it stored by a
    /// fetch that just ended.
    async fn fetch(self: &Arc<Self>, index: u64) -> SliceResult {
        self.fetch_with(index, None).await
    }

    /// [`Slicer::fetch`]; when this request starts the fetch, the origin's 1xx go to `interim`.
    async fn fetch_with(self: &Arc<Self>, index: u64, interim: Option<InterimTx>) -> SliceResult {
        let key = self.slice_key(index);
        let me = self.clone();
        let done = key.clone();
        let mut found = None;
        let flight = self.edge.slices.run(
            &key,
            || {
                found = self.edge.store.object(&key, Instant::now());
                found.is_some()
            },
            move || {
                tokio::spawn(async move {
                    let r = me.fetch_now(index, &done, interim).await;
                    me.edge.slices.done(&done);
                    r
                })
            },
        );
        match (flight, found) {
            (Some(flight), _) => flight.await,
            (None, Some(entry)) => match ContentRange::of(&entry.headers().to_map(0)) {
                Some(range) => Ok(Fetched::Slice { entry, range, stored: true }),
                None => Err(ProxyError::Internal("a stored slice without Content-Range".into())),
            },
            (None, None) => Err(ProxyError::Internal("slice neither stored nor fetched".into())),
        }
    }

    /// One `Range` request for slice `index`; stores the slice under `key` when it may.
    async fn fetch_now(&self, index: u64, key: &Arc<str>, interim: Option<InterimTx>) -> SliceResult {
        let edge = &self.edge;
        let first =
            index.checked_mul(self.size).ok_or(ProxyError::Internal("slice index overflow".into()))?;
        let last = first.saturating_add(self.size - 1);
        let mut req = OriginRequest {
            method: self.request.method.clone(),
            path_and_query: self.request.path_and_query.clone(),
            headers: self.request.headers.clone(),
            client_host: self.request.client_host.clone(),
            fill_key: self.request.fill_key.clone(),
            from_peer: self.request.from_peer,
            interim,
        };
        if let Ok(v) = HeaderValue::from_str(&format!("bytes={first}-{last}")) {
            req.headers.insert(header::RANGE, v);
        }
        edge.metrics.origin_request();
        let request_time = SystemTime::now();
        let sent = Instant::now();
        let res = match self.site.upstream.send(&req, None).await {
            Ok(r) => {
                edge.metrics.origin_duration(sent.elapsed());
                r
            }
            Err(e) => {
                edge.metrics.origin_error();
                return Err(e);
            }
        };
        let ex = Exchange::now(request_time);
        let keep = res.extensions().get::<Answered>().is_none_or(|a| a.keep);
        if res.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(Fetched::NotSliceable("unsatisfiable"));
        }
        if res.status() != StatusCode::PARTIAL_CONTENT {
            return Ok(Fetched::Whole(Arc::new(std::sync::Mutex::new(Some((res, request_time))))));
        }
        let (mut parts, mut body) = res.into_parts();
        let Some(range) = ContentRange::of(&parts.headers) else {
            return Ok(Fetched::NotSliceable("content-range"));
        };
        if range.first != first || range.last != last.min(range.complete - 1) {
            return Ok(Fetched::NotSliceable("content-range"));
        }
        parts.headers.remove(CACHE_STATUS);
        // Freshness is the representation's: computed as for its 200.
        let mut head = prepare(edge, &self.site, &self.key, StatusCode::OK, parts.headers, &ex, false);
        head.status = StatusCode::PARTIAL_CONTENT;
        if slice::validator(&head.headers).is_none() {
            return Ok(Fetched::NotSliceable("no-validator"));
        }
        if vary_names(&head.headers).is_none_or(|v| !v.is_empty()) {
            return Ok(Fetched::NotSliceable("vary"));
        }
        if head.policy.storable.is_err() {
            return Ok(Fetched::NotSliceable("not-storable"));
        }
        let want = range.last - range.first + 1;
        let deadline = body_deadline(&self.site, request_time);
        let mut buf = BytesMut::with_capacity(usize::try_from(want).unwrap_or(0));
        while let Some(data) = next_data(edge, &mut body, deadline).await? {
            if (buf.len() + data.len()) as u64 > want {
                return Err(ProxyError::Upstream("slice body longer than its Content-Range".into()));
            }
            buf.extend_from_slice(&data);
        }
        if buf.len() as u64 != want {
            return Err(ProxyError::Upstream("slice body shorter than its Content-Range".into()));
        }
        let store = keep && range.complete <= edge.max_object;
        let entry = Arc::new(Entry::new(head, buf.freeze(), self.key.clone(), &ex));
        if store {
            edge.store.insert_at(key, &entry);
            tracing::debug!(key = %key, index, "slice stored");
        }
        Ok(Fetched::Slice { entry, range, stored: store })
    }
}
