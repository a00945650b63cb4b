//! The request pipeline, one phase after another: route → key → lookup → fetch (coalesced,
//! see `coalesce.rs` / `fill.rs`) → respond → observe. Observe always runs, errors included,
//! and the service never fails: every error becomes a response in [`rescue`].
//!
//! The hit path is: one cache-map `get` (no lock held across an await), a header-map clone, and a
//! body that is a reference to the stored `Bytes`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame};
use tokio::sync::oneshot;

use crate::body::{Body, BoxError, empty};
use crate::cache::coalesce::{Collected, Fill, FillHead, Reader, Role};
use crate::cache::disk::tier::{Disk, Loaded};
use crate::cache::entry::Entry;
use crate::cache::heads;
use crate::cache::key;
use crate::cache::reuse::{Reuse, reuse_aged};
use crate::cache::store::Found;
use crate::edge::Edge;
use crate::error::{ProxyError, rescue};
use crate::observe::{Answer, Pending, Record};
use crate::policy::Encoding;
use crate::proxy::ctx::{Ctx, Present, Purpose, Served, origin_request};
use crate::proxy::downstream::Downstream;
use crate::proxy::fill::{self, Job, Mode, Sharing};
use crate::proxy::headers::{TIER_TAGS, add_edge_fields, append_via, client_address, looped};
use crate::proxy::interim::{self, InterimRx, InterimTx};
use crate::proxy::numbers::number;
use crate::proxy::range::{self, Stored};
use crate::proxy::respond::{self, Precondition};
use crate::proxy::route::SiteState;
use crate::proxy::status::{CACHE_STATUS, CacheStatus, Fwd, Outcome, StaleWhy, chained};
use crate::upstream::{OriginBody, OriginRequest};

/// A routed site whose policy rewrites responses, and what it needs to.
struct Rewrite {
    site: Arc<SiteState>,
    uri: http::Uri,
    encoding: Encoding,
    head_only: bool,
}

/// Serves one request, from a client connection (`from`) or made by the edge itself (`None`:
/// prewarming and purge targets). Never fails.
pub async fn handle(edge: Arc<Edge>, req: Request<Body>, from: Option<Downstream>) -> Response<Body> {
    let started = Instant::now();
    let tls = Downstream::tls(from.as_ref());
    let client = from.as_ref().map(|d| d.peer);
    if !edge.health_path.is_empty() && req.uri().path() == edge.health_path {
        return crate::proxy::respond::health();
    }
    let record = edge.access_log.begin(&req, client, tls);
    let version = req.version();
    // Set once the site is known, for error responses as much as for the others.
    let mut routed = Routed::default();
    let (mut res, status) = match serve(&edge, req, from, &mut routed).await {
        Ok(pair) => pair,
        Err(e) => {
            edge.metrics.error(&e);
            let outcome =
                if matches!(e, ProxyError::NotCached) { Outcome::Unsatisfied } else { Outcome::Error };
            let mut status = CacheStatus::new(outcome);
            status.detail = e.detail();
            (rescue(&e), status)
        }
    };
    if let Some(v) = routed.hsts {
        res.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    if let Some((key, headers)) = &routed.debug {
        let v = crate::proxy::debug::value(&edge.store, key, headers, &status, res.headers());
        res.headers_mut().insert(crate::proxy::debug::STRATUS_DEBUG, v);
    } else {
        // Not even another tier's (or an origin's) field reaches a site without the option.
        res.headers_mut().remove(crate::proxy::debug::STRATUS_DEBUG);
    }
    if let Some(r) = routed.rewrite {
        res = r.site.policy.respond(res, r.uri.path(), r.encoding, r.head_only);
    }
    observe(&edge, res, &status, started, version, routed.site.as_deref(), record)
}

/// What serving a request learned that later phases need, set once the site is known (error
/// responses get them too): the site's name for metrics, its HSTS value, and what its policy
/// needs to rewrite the response, and what the debug header needs.
#[derive(Default)]
struct Routed {
    hsts: Option<HeaderValue>,
    site: Option<Arc<SiteState>>,
    rewrite: Option<Rewrite>,
    /// The cache key and request headers, on sites with `debug_header`.
    debug: Option<(key::CacheKey, HeaderMap)>,
}

/// Observe: `Cache-Status`, `Via`, metrics, access log.
fn observe(
    edge: &Arc<Edge>,
    mut res: Response<Body>,
    status: &CacheStatus,
    started: Instant,
    version: Version,
    site: Option<&SiteState>,
    record: Option<Record>,
) -> Response<Body> {
    // A response from another tier keeps its members; ours goes last.
    let cache_status = chained(res.headers().get(CACHE_STATUS), status.header(&edge.name));
    let elapsed = started.elapsed();
    let code = res.status().as_u16();
    edge.metrics.request(status, elapsed);
    match site {
        Some(site) => edge.metrics.response_of(code, site),
        None => edge.metrics.response(code),
    }
    let answer = |bytes, cache_status| Answer {
        status: code,
        bytes,
        duration: elapsed,
        cache: status.label(),
        cache_status: Some(cache_status),
        tier: status.tier(),
        origin_status: status.fwd_status,
        origin_time: status.origin_time,
    };
    // Bodies of known size (hits, errors) are counted and logged at once; streams as their
    // frames go out, and logged when the body ends.
    let exact = res.body().size_hint().exact();
    let mut pending = match (record, exact) {
        (Some(r), Some(n)) => {
            edge.access_log.send(&r, &answer(n, &cache_status));
            None
        }
        (Some(r), None) => Some(Pending::new(r, &answer(0, &cache_status), started, edge.access_log.clone())),
        (None, _) => None,
    };
    res.headers_mut().insert(CACHE_STATUS, cache_status);
    append_via(res.headers_mut(), version);
    if let Some(n) = exact {
        edge.metrics.served(n);
        return res;
    }
    let counter = edge.clone();
    res.map(move |body| {
        body.map_frame(move |f| {
            if let Some(d) = f.data_ref() {
                counter.metrics.served(d.len() as u64);
                if let Some(p) = &mut pending {
                    p.sent(d.len() as u64);
                }
            }
            f
        })
        .boxed_unsync()
    })
}

async fn serve(
    edge: &Arc<Edge>,
    req: Request<Body>,
    from: Option<Downstream>,
    routed: &mut Routed,
) -> Served {
    // A reverse proxy opens no tunnels: CONNECT is answered here, never forwarded.
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    let present = Present::of(req.headers());
    // Tiers configured in a circle: refuse rather than forward forever.
    if present.cdn_loop && looped(req.headers(), &edge.instance) {
        return Err(ProxyError::LoopDetected);
    }
    // Route. The host stays borrowed from the request's bytes (`HostFields`), copied only
    // when it has upper-case letters.
    let (mut parts, body) = req.into_parts();
    let fields = key::HostFields::of(&parts.uri, &parts.headers);
    let host = fields.host().map_err(ProxyError::BadRequest)?;
    let site = match edge.router().route(&host) {
        Some(site) => site.clone(),
        None => return Err(ProxyError::UnknownHost(host.into_owned())),
    };
    routed.site = Some(site.clone());
    let tls = Downstream::tls(from.as_ref());
    let client = from.as_ref().map(|d| d.peer);
    if !tls && site.cfg.https_redirect {
        return Ok((
            crate::proxy::https::redirect(&parts.method, &host, edge.https_port, &parts.uri),
            CacheStatus::new(Outcome::Redirect),
        ));
    }
    if tls {
        routed.hsts = site.cfg.hsts.map(crate::proxy::https::hsts);
    }
    let trusted = client.is_some_and(|c| edge.trusted_proxies.iter().any(|r| r.contains(c.ip())));
    if site.policy.rewrites_responses() {
        let head_only = parts.method == Method::HEAD;
        routed.rewrite = Some(Rewrite {
            site: site.clone(),
            uri: parts.uri.clone(),
            encoding: Encoding::Identity,
            head_only,
        });
    }
    if site.policy.checks_requests() {
        let from = client_address(client.map(|c| c.ip()), &parts.headers, &edge.trusted_proxies);
        let encoding = site.policy.admit(&mut parts, from)?;
        if let Some(r) = routed.rewrite.as_mut() {
            r.encoding = encoding;
        }
    }
    let key = key::CacheKey::new(&host, &parts.uri, &site.cfg.key, &parts.headers);
    // Not kept in the request's future across the lookup.
    drop(host);
    drop(fields);
    let ctx = Ctx::new(site, key, parts, present, from, trusted);
    if ctx.site.cfg.debug_header {
        routed.debug = Some((ctx.key.clone(), ctx.headers.clone()));
    }
    if ctx.method == Method::GET || ctx.method == Method::HEAD {
        lookup(edge, &ctx).await
    } else {
        Box::pin(crate::proxy::passthrough::forward(edge, &ctx, body)).await
    }
}

/// Lookup: hit, stale, or miss → fetch.
///
/// Every path that goes to an origin is boxed (`Box::pin`): an async function's future is as
/// large as its largest state, and the fill, coalescing and pass states made the whole
/// request's future several kilobytes, which hyper moved (copied) on every request, hits
/// included: a quarter of a hit's instructions were that `memcpy` (`docs/performance.md`).
/// Boxed, a miss pays one allocation and a hit copies only the small states it uses. The
/// disk tier's reads and the slice path are boxed for the same reason: a memory hit never
/// enters them.
async fn lookup(edge: &Arc<Edge>, ctx: &Ctx) -> Served {
    let only_if_cached = ctx.cc.has("only-if-cached");
    if ctx.cc.has("no-store") {
        if only_if_cached {
            return Err(ProxyError::NotCached);
        }
        return Box::pin(fetch_alone(edge, ctx, ctx.key.primary().clone(), Fwd::Bypass, Sharing::NoStore))
            .await;
    }
    for _ in 0..3 {
        let now = Instant::now();
        let (found, slot) = edge.store.lookup(&ctx.key, &ctx.headers, now);
        // Memory → disk → origin. An object read back is promoted to memory; a variant is
        // looked for under the key memory's `Vary` marker gives, or under the disk's marker.
        let loaded = match (&found, &edge.disk) {
            (Found::UriMiss, Some(disk)) => Box::pin(disk.lookup(&ctx.key, &ctx.headers)).await,
            (Found::VaryMiss, Some(disk)) => Box::pin(disk.load_at(&ctx.key, &slot))
                .await
                .map(|entry| Loaded { slot: slot.clone(), entry, vary: Vec::new() }),
            _ => None,
        };
        if let Some(Loaded { slot, entry: e, vary }) = loaded {
            edge.store.promote(&slot, &e, &vary);
            let age = e.age(Instant::now());
            let served = from_entry(edge, ctx, e, slot, age).await;
            return served.map(|(res, mut status)| {
                if matches!(status.outcome, Outcome::Hit | Outcome::StaleHit(_)) {
                    status.detail = status.detail.or(Some("disk"));
                }
                (res, status)
            });
        }
        // How a miss fetches: as usual, or with the answer a slice request already got.
        let mut mode = Mode::Fetch;
        let fwd = match found {
            Found::Object(e, age) => return from_entry(edge, ctx, e, slot, age).await,
            // Nothing under the object's key: a sliced site looks for its slices.
            Found::UriMiss if crate::proxy::slice::applies(ctx) => {
                match Box::pin(crate::proxy::slice::serve(edge, ctx, only_if_cached)).await {
                    Ok(served) => return served,
                    Err(_) if only_if_cached => return Err(ProxyError::NotCached),
                    Err(answer) => mode = answer.map_or(Mode::Fetch, Mode::Answered),
                }
                Fwd::UriMiss
            }
            _ if only_if_cached => return Err(ProxyError::NotCached),
            Found::HitForMiss => {
                return Box::pin(fetch_alone(edge, ctx, slot, Fwd::Bypass, Sharing::HitForMiss)).await;
            }
            Found::UriMiss => Fwd::UriMiss,
            Found::VaryMiss => Fwd::VaryMiss,
        };
        // A response to a request with credentials is never handed to other waiters.
        if ctx.headers.contains_key(header::AUTHORIZATION) {
            return Box::pin(fetch_alone(edge, ctx, slot, fwd, Sharing::Alone)).await;
        }
        // `None`: the fill we would have joined just stored its object; look again.
        if let Some(role) = edge.inflight.join(&slot, &ctx.headers, || edge.store.contains(&slot)) {
            return Box::pin(coalesce(edge, ctx, role, slot, mode, fwd, None)).await;
        }
    }
    Box::pin(fetch_alone(edge, ctx, ctx.key.primary().clone(), Fwd::UriMiss, Sharing::Alone)).await
}

/// A stored entry, `age` old: fresh hit, stale hit, or revalidation (see [`reuse`]). One age
/// for the store's expiry check, the decision, `Age` and `Cache-Status`.
async fn from_entry(edge: &Arc<Edge>, ctx: &Ctx, e: Arc<Entry>, slot: Arc<str>, age: Duration) -> Served {
    let fwd = match reuse_aged(&e, &ctx.cc, ctx.no_cache, age) {
        Reuse::Fresh => return Ok(hit(&e, ctx, age, Outcome::Hit)),
        Reuse::Stale(why) => {
            if why == StaleWhy::WhileRevalidate
                && let Some(fill) = edge.inflight.start_if_idle(&slot, &ctx.headers)
            {
                // Nobody waits for a background revalidation's response.
                drop(start(edge, ctx, &fill, slot, Mode::Revalidate(e.clone()), None));
            }
            return Ok(hit(&e, ctx, age, Outcome::StaleHit(why)));
        }
        Reuse::Revalidate(fwd) => fwd,
    };
    if ctx.cc.has("only-if-cached") {
        return Err(ProxyError::NotCached);
    }
    let role = edge
        .inflight
        .join(&slot, &ctx.headers, || false)
        .ok_or_else(|| ProxyError::Internal("join without a fill".into()))?;
    Box::pin(coalesce(edge, ctx, role, slot, Mode::Revalidate(e.clone()), fwd, Some(e))).await
}

/// An answer from a stored entry of age `age`, with its `Cache-Status`.
fn hit(e: &Arc<Entry>, ctx: &Ctx, age: Duration, outcome: Outcome) -> (Response<Body>, CacheStatus) {
    e.hit();
    let mut status = CacheStatus::new(outcome);
    status.ttl = Some(e.ttl_at(age));
    (serve_entry(e, ctx, age), status)
}

/// Leads a coalesced fill (starting it) or follows one another request leads.
async fn coalesce(
    edge: &Arc<Edge>,
    ctx: &Ctx,
    role: Role,
    slot: Arc<str>,
    mode: Mode,
    fwd: Fwd,
    stale: Option<Arc<Entry>>,
) -> Served {
    let mut status = CacheStatus::new(Outcome::Forward(fwd));
    match role {
        Role::Leader(reader) => {
            let (itx, irx) = interim::channel(ctx.interim.as_ref());
            let pass = start(edge, ctx, reader.fill(), slot, mode, itx);
            follow(edge, ctx, reader, Some(pass), irx, status, stale).await
        }
        Role::Follower(reader) => {
            edge.metrics.coalesced();
            status.collapsed = true;
            follow(edge, ctx, reader, None, None, status, stale).await
        }
        // A large object on its way to disk: served from there once it is in, else fetched
        // alone (the fill failed or could not store it).
        Role::Wait(fill) => {
            edge.metrics.coalesced();
            if fill.ended().await {
                Box::pin(lookup(edge, ctx)).await
            } else {
                Box::pin(fetch_alone(edge, ctx, slot, fwd, Sharing::Alone)).await
            }
        }
    }
}

/// Fetch without coalescing (hit-for-miss, credentials, `no-store` requests, unlike variants).
async fn fetch_alone(edge: &Arc<Edge>, ctx: &Ctx, slot: Arc<str>, fwd: Fwd, sharing: Sharing) -> Served {
    let fill = Fill::new(ctx.headers.clone());
    let reader = fill.reader();
    let (tx, rx) = oneshot::channel();
    let (itx, irx) = interim::channel(ctx.interim.as_ref());
    fill::spawn(job(edge, ctx, slot, Mode::Fetch, sharing, tx, itx), fill);
    let mut status = CacheStatus::new(Outcome::Forward(fwd));
    if sharing == Sharing::HitForMiss {
        status.detail = Some("hit-for-miss");
    }
    follow(edge, ctx, reader, Some(rx), irx, status, None).await
}

fn job(
    edge: &Arc<Edge>,
    ctx: &Ctx,
    slot: Arc<str>,
    mode: Mode,
    sharing: Sharing,
    pass: oneshot::Sender<Response<OriginBody>>,
    interim: Option<InterimTx>,
) -> Job {
    let revalidate = match &mode {
        Mode::Revalidate(e) => Some(e.as_ref()),
        Mode::Fetch | Mode::Answered(_) => None,
    };
    Job {
        edge: edge.clone(),
        site: ctx.site.clone(),
        key: ctx.key.clone(),
        slot,
        sharing,
        authorization: ctx.headers.contains_key(header::AUTHORIZATION),
        request: OriginRequest { interim, ..origin_request(ctx, Purpose::Fill(revalidate)) },
        mode,
        pass: Some(pass),
    }
}

/// Starts a registered fill's task; returns where a non-shareable response will arrive.
fn start(
    edge: &Arc<Edge>,
    ctx: &Ctx,
    fill: &Arc<Fill>,
    slot: Arc<str>,
    mode: Mode,
    interim: Option<InterimTx>,
) -> oneshot::Receiver<Response<OriginBody>> {
    let (tx, rx) = oneshot::channel();
    fill::spawn(job(edge, ctx, slot, mode, Sharing::Coalesced, tx, interim), fill.clone());
    rx
}

/// Waits for a fill's head; meanwhile the origin's 1xx responses (`rx`: the leader's only,
/// they answer the request it sent) go to the client, before the final response, and are
/// never stored.
async fn wait_head(fill: &Fill, ctx: &Ctx, rx: Option<InterimRx>) -> FillHead {
    interim::relay(ctx.interim.as_ref(), rx, fill.head()).await
}

/// Waits on a fill and answers from it. `pass` is set for the leader; `stale` is the entry
/// being revalidated (for stale-if-error).
async fn follow(
    edge: &Arc<Edge>,
    ctx: &Ctx,
    reader: Reader,
    pass: Option<oneshot::Receiver<Response<OriginBody>>>,
    interim: Option<InterimRx>,
    mut status: CacheStatus,
    stale: Option<Arc<Entry>>,
) -> Served {
    let leader = pass.is_some();
    let fill = reader.fill().clone();
    let asked = Instant::now();
    let stale_if_error = |code: Option<u16>| -> Option<Served> {
        let e = stale.as_ref()?;
        let age = e.age(Instant::now());
        if e.sie().is_zero() || e.staleness_at(age) > e.sie() {
            return None;
        }
        let mut st = CacheStatus::new(Outcome::StaleIfError);
        st.fwd_status = code;
        st.ttl = Some(e.ttl_at(age));
        Some(Ok((serve_entry(e, ctx, age), st)))
    };
    let head = wait_head(&fill, ctx, interim).await;
    status.origin_time = Some(asked.elapsed());
    match head {
        FillHead::Failed(err) => stale_if_error(None).unwrap_or(Err(err)),
        FillHead::Entry(e) => {
            status.fwd_status = Some(304);
            status.stored = true;
            let age = e.age(Instant::now());
            status.ttl = Some(e.ttl_at(age));
            Ok((serve_entry(&e, ctx, age), status))
        }
        FillHead::Pass(reason) => match pass {
            Some(rx) => {
                let res = rx.await.map_err(|_| ProxyError::Internal("pass response lost".into()))?;
                status.fwd_status = Some(res.status().as_u16());
                status.detail = status.detail.or(Some(reason));
                if status.fwd_status.is_some_and(|c| c >= 500)
                    && let Some(served) = stale_if_error(status.fwd_status)
                {
                    return served;
                }
                Ok((pass_response(edge, res, ctx), status))
            }
            None => {
                drop(reader);
                Box::pin(fetch_alone(edge, ctx, ctx.key.primary().clone(), Fwd::Bypass, Sharing::Alone)).await
            }
        },
        FillHead::Stream(head) => {
            if head.status.is_server_error()
                && let Some(served) = stale_if_error(Some(head.status.as_u16()))
            {
                return served;
            }
            if !leader && !same_variant(&head.vary, &fill.request_headers, &ctx.headers) {
                // Leave this fill first: a reader that never reads would hold its body back.
                drop(reader);
                return Box::pin(fetch_alone(
                    edge,
                    ctx,
                    ctx.key.primary().clone(),
                    Fwd::VaryMiss,
                    Sharing::Alone,
                ))
                .await;
            }
            status.fwd_status = Some(head.status.as_u16());
            status.ttl = head.ttl;
            let mut headers = head.headers.clone();
            if let Some(upstream) = &head.upstream_status {
                headers.insert(CACHE_STATUS, upstream.clone());
            }
            if ctx.from_edge {
                headers.extend(head.edge_fields.clone());
            }
            let age = head.initial_age + head.arrived.elapsed();
            headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
            match respond::precondition(&ctx.headers, head.status, &headers) {
                Precondition::NotModified => return Ok((respond::not_modified(&headers), status)),
                Precondition::Failed => return Ok((respond::precondition_failed(), status)),
                Precondition::Proceed => {}
            }
            // A range is cut from the whole body; a revalidation's new body is only served
            // whole, so that one cut short still leaves the stale copy (stale-if-error) or a
            // clean error to answer with. Either waits for at most `max_object_size` bytes:
            // a longer body is not stored and streams whole (200).
            let (mut prefix, mut reader) = (Vec::new(), reader);
            let ranged = head.status == StatusCode::OK && respond::wants_range(&ctx.headers);
            if stale.is_some() || ranged {
                // With a disk tier, bodies larger than a share of memory stream to disk: they
                // are not gathered here either (`max_object_size` may be GiBs).
                let limit = match &edge.disk {
                    Some(_) => edge.max_object.min(Disk::streams_above(edge.store.capacity())),
                    None => edge.max_object,
                };
                match reader.collect(limit).await {
                    Ok(Collected::Whole(body, stored)) => {
                        status.stored = stored;
                        let res = respond::complete(
                            head.status,
                            headers,
                            Stored::Memory(&body),
                            &ctx.headers,
                            ctx.head_only,
                        );
                        return Ok((res, status));
                    }
                    Ok(Collected::Longer(read, rest)) => (prefix, reader) = (read, rest),
                    Err(e) => return stale_if_error(None).unwrap_or(Err(e)),
                }
                // A range of a long body whose length is known is cut from the stream.
                if ranged
                    && stale.is_none()
                    && let Some(len) = head.length
                    && let Some(r) = single_range(ctx, &headers, len)
                {
                    let whole =
                        (!ctx.head_only).then(|| Box::pin(stream_of(prefix, reader)) as range::ByteStream);
                    return Ok((partial(headers, r, len, whole), status));
                }
            }
            // `stored` only when it is sure: the length is known to fit (a body then cut short
            // aborts this response too), or the body has already arrived and was stored.
            status.stored = prefix.is_empty()
                && head.storing
                && (head.length.is_some() || reader.fill().stored() == Some(true));
            Ok((serve_stream(ctx, head.status, headers, prefix, reader), status))
        }
    }
}

fn same_variant(vary: &[header::HeaderName], a: &HeaderMap, b: &HeaderMap) -> bool {
    vary.iter().all(|n| key::header_value(a, n.as_str()) == key::header_value(b, n.as_str()))
}

/// Respond from a stored entry of age `age`.
fn serve_entry(e: &Arc<Entry>, ctx: &Ctx, age: Duration) -> Response<Body> {
    let mut headers = heads::headers(e);
    headers.insert(header::AGE, number(age.as_secs()));
    if ctx.from_edge {
        add_edge_fields(&mut headers, e.targeted().iter(), e.tags(), Some(&TIER_TAGS));
    }
    match e.file() {
        Some(file) => respond::complete(e.status, headers, Stored::File(file), &ctx.headers, ctx.head_only),
        None => respond::complete(e.status, headers, Stored::Memory(&e.body()), &ctx.headers, ctx.head_only),
    }
}

/// A fill's body: `prefix` (already read), then the rest as it comes.
fn stream_of(
    prefix: Vec<Bytes>,
    reader: Reader,
) -> impl futures_util::Stream<Item = Result<Bytes, ProxyError>> + Send + 'static {
    futures_util::stream::iter(prefix.into_iter().map(Ok)).chain(reader.into_body())
}

/// The one satisfiable range `ctx` asks of a body of `len` bytes that `headers` describe;
/// `None` when `Range` does not apply, is unsatisfiable or names several parts.
fn single_range(ctx: &Ctx, headers: &HeaderMap, len: u64) -> Option<(u64, u64)> {
    let value = ctx.headers.get(header::RANGE)?.to_str().ok()?;
    if !respond::if_range_holds(&ctx.headers, headers) {
        return None;
    }
    match range::parse(value, len) {
        range::Ranges::Parts(parts) if parts.len() == 1 => parts.first().copied(),
        _ => None,
    }
}

/// A 206 of bytes `a..=b` of a body of `len` bytes, cut from the whole body's stream.
fn partial(
    mut headers: HeaderMap,
    (a, b): (u64, u64),
    len: u64,
    whole: Option<range::ByteStream>,
) -> Response<Body> {
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(b - a + 1));
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    let mut res = Response::new(whole.map_or_else(empty, |w| range::cut(w, a, b)));
    *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    *res.headers_mut() = headers;
    res
}

/// Respond from a fill whose body may still be arriving: `prefix` (already read), then the
/// rest as it comes.
fn serve_stream(
    ctx: &Ctx,
    status: StatusCode,
    headers: HeaderMap,
    prefix: Vec<Bytes>,
    reader: Reader,
) -> Response<Body> {
    let body = if ctx.head_only {
        empty()
    } else {
        let stream = futures_util::stream::iter(prefix.into_iter().map(Ok))
            .chain(reader.into_body())
            .map(|r| r.map(Frame::data).map_err(|e| Box::new(e) as BoxError));
        http_body_util::StreamBody::new(stream).boxed_unsync()
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// A non-shareable origin response, straight through (its body counted as fetched).
fn pass_response(edge: &Arc<Edge>, res: Response<OriginBody>, ctx: &Ctx) -> Response<Body> {
    if ctx.head_only {
        return res.map(|_| empty());
    }
    let edge = edge.clone();
    res.map(move |b| {
        b.map_frame(move |f| {
            if let Some(d) = f.data_ref() {
                edge.metrics.fetched(d.len() as u64);
            }
            f
        })
        .map_err(|e| Box::new(e) as BoxError)
        .boxed_unsync()
    })
}
