//! The request pipeline, one phase after another: route → key → lookup → fetch (coalesced,
//! see `coalesce.rs` / `fill.rs`) → respond → observe. Observe always runs, errors included,
//! and the service never fails: every error becomes a response in [`rescue`].
//!
//! The hit path is: one moka `get` (no lock held across an await), a header-map clone, and a
//! body that is a reference to the stored `Bytes`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming};
use tokio::sync::oneshot;

use crate::Edge;
use crate::coalesce::{Fill, FillHead, Role, StreamHead};
use crate::directives::{Directives, Seconds};
use crate::entry::Entry;
use crate::error::{Body, BoxError, ProxyError, empty, rescue};
use crate::fill::{self, Job, Mode};
use crate::headers::{add_forwarded, append_via, strip_hop_by_hop};
use crate::key::{self, CacheKey};
use crate::respond::{self, Precondition};
use crate::route::SiteState;
use crate::server::Transport;
use crate::status::{CacheStatus, Fwd, Outcome, StaleWhy};
use crate::store::Found;
use crate::upstream::{OriginBody, OriginRequest};

pub(crate) type Served = Result<(Response<Body>, CacheStatus), ProxyError>;

/// One request's context after routing and keying.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) site: Arc<SiteState>,
    pub(crate) key: CacheKey,
    pub(crate) method: Method,
    head_only: bool,
    pub(crate) headers: HeaderMap,
    cc: Directives,
    no_cache: bool,
    path_and_query: String,
    version: Version,
    client: Option<SocketAddr>,
    client_host: Option<HeaderValue>,
    /// The request arrived over TLS.
    tls: bool,
}

/// Serves one client request. Never fails.
pub async fn handle(edge: Arc<Edge>, req: Request<Body>, client: Option<SocketAddr>) -> Response<Body> {
    let started = Instant::now();
    // Cheap clones (shared bytes) kept for the access log.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let version = req.version();
    // Set once the site is known, for error responses as much as for the others.
    let mut hsts = None;
    let (mut res, status) = match serve(&edge, req, client, &mut hsts).await {
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
    if let Some(v) = hsts {
        res.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    observe(&edge, res, &status, started, version, &method, uri.path())
}

/// Adapts hyper's request body for [`handle`].
pub fn boxed(req: Request<Incoming>) -> Request<Body> {
    req.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
}

/// Observe: `Cache-Status`, `Via`, metrics, access log.
fn observe(
    edge: &Arc<Edge>,
    mut res: Response<Body>,
    status: &CacheStatus,
    started: Instant,
    version: Version,
    method: &Method,
    path: &str,
) -> Response<Body> {
    res.headers_mut().insert(header::HeaderName::from_static("cache-status"), status.header(&edge.name));
    append_via(res.headers_mut(), version);
    let elapsed = started.elapsed();
    edge.metrics.request(status, elapsed);
    // Access log at debug (enable with RUST_LOG=stratus_edge::access=debug): a line per
    // request on stderr costs more than the whole hit path.
    tracing::debug!(
        target: "stratus_edge::access",
        method = %method,
        path,
        status = res.status().as_u16(),
        cache = status.label(),
        micros = elapsed.as_micros() as u64,
    );
    // Bodies of known size (hits, errors) are counted at once; streams as their frames go out.
    if let Some(n) = res.body().size_hint().exact() {
        edge.metrics.served(n);
        return res;
    }
    let counter = edge.clone();
    res.map(move |body| {
        body.map_frame(move |f| {
            if let Some(d) = f.data_ref() {
                counter.metrics.served(d.len() as u64);
            }
            f
        })
        .boxed_unsync()
    })
}

async fn serve(
    edge: &Arc<Edge>,
    req: Request<Body>,
    client: Option<SocketAddr>,
    hsts: &mut Option<HeaderValue>,
) -> Served {
    // Route.
    let (parts, body) = req.into_parts();
    let host = key::request_host(&parts.uri, &parts.headers)
        .ok_or(ProxyError::BadRequest("missing or invalid host"))?;
    let site = edge.router().route(&host).ok_or_else(|| ProxyError::UnknownHost(host.clone()))?.clone();
    let tls = parts.extensions.get::<Transport>() == Some(&Transport::Tls);
    if !tls && site.cfg.https_redirect {
        return Ok((
            crate::https::redirect(&parts.method, &host, edge.https_port, &parts.uri),
            CacheStatus::new(Outcome::Redirect),
        ));
    }
    if tls {
        *hsts = site.cfg.hsts.map(crate::https::hsts);
    }
    // Key.
    let key = CacheKey::new(&host, &parts.uri, &site.cfg.key, &parts.headers);
    let cc = Directives::from_headers(&parts.headers, &header::CACHE_CONTROL).unwrap_or_default();
    let pragma = !parts.headers.contains_key(header::CACHE_CONTROL)
        && parts
            .headers
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
    let client_host = parts
        .headers
        .get(header::HOST)
        .cloned()
        .or_else(|| parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let ctx = Ctx {
        site,
        key,
        head_only: parts.method == Method::HEAD,
        method: parts.method,
        no_cache: cc.has("no-cache") || pragma,
        cc,
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts.headers,
        version: parts.version,
        client,
        client_host,
        tls,
    };
    if ctx.method == Method::GET || ctx.method == Method::HEAD {
        lookup(edge, &ctx).await
    } else {
        crate::passthrough::forward(edge, &ctx, body).await
    }
}

/// Lookup: hit, stale, or miss → fetch.
async fn lookup(edge: &Arc<Edge>, ctx: &Ctx) -> Served {
    let only_if_cached = ctx.cc.has("only-if-cached");
    if ctx.cc.has("no-store") {
        if only_if_cached {
            return Err(ProxyError::NotCached);
        }
        let slot = ctx.key.primary().clone();
        return fetch_alone(edge, ctx, slot, Fwd::Bypass, false, false).await;
    }
    for _ in 0..3 {
        let now = Instant::now();
        let (found, slot) = edge.store.lookup(&ctx.key, &ctx.headers, now);
        let fwd = match found {
            Found::Object(e) => return from_entry(edge, ctx, e, slot, now).await,
            Found::HitForMiss if only_if_cached => return Err(ProxyError::NotCached),
            Found::HitForMiss => return fetch_alone(edge, ctx, slot, Fwd::Bypass, true, true).await,
            _ if only_if_cached => return Err(ProxyError::NotCached),
            Found::UriMiss => Fwd::UriMiss,
            Found::VaryMiss => Fwd::VaryMiss,
        };
        // A response to a request with credentials is never handed to other waiters.
        if ctx.headers.contains_key(header::AUTHORIZATION) {
            return fetch_alone(edge, ctx, slot, fwd, true, false).await;
        }
        let role = edge.inflight.join(&slot, &ctx.headers, || edge.store.contains(&slot));
        match role {
            None => continue,
            Some(Role::Leader(fill)) => {
                let pass = start(edge, ctx, &fill, slot, Mode::Fetch, true);
                return follow(edge, ctx, &fill, Some(pass), CacheStatus::new(Outcome::Forward(fwd)), None)
                    .await;
            }
            Some(Role::Follower(fill)) => {
                edge.metrics.coalesced();
                let mut status = CacheStatus::new(Outcome::Forward(fwd));
                status.collapsed = true;
                return follow(edge, ctx, &fill, None, status, None).await;
            }
        }
    }
    let slot = ctx.key.primary().clone();
    fetch_alone(edge, ctx, slot, Fwd::UriMiss, true, false).await
}

/// A stored entry: fresh hit, stale hit, or revalidation.
async fn from_entry(edge: &Arc<Edge>, ctx: &Ctx, e: Arc<Entry>, slot: Arc<str>, now: Instant) -> Served {
    let age = e.age(now);
    let fresh = e.is_fresh(now);
    let remaining = e.lifetime().saturating_sub(age);
    let request_allows = !ctx.no_cache
        && match ctx.cc.seconds("max-age") {
            Seconds::Value(n) => age <= std::time::Duration::from_secs(n),
            Seconds::Invalid => false,
            Seconds::Absent => true,
        }
        && match ctx.cc.seconds("min-fresh") {
            Seconds::Value(n) => remaining.as_secs() >= n,
            _ => true,
        };
    if fresh && request_allows {
        let mut status = CacheStatus::new(Outcome::Hit);
        status.ttl = Some(e.ttl(now));
        return Ok((serve_entry(&e, ctx, now), status));
    }
    if !fresh && !ctx.no_cache && !e.is_invalidated() {
        let staleness = e.staleness(now);
        let may_stale = !e.must_revalidate() && !e.no_cache();
        if let Some(max_stale) = ctx.cc.max_stale().filter(|_| may_stale)
            && staleness.as_secs() <= max_stale
        {
            let mut status = CacheStatus::new(Outcome::StaleHit(StaleWhy::MaxStale));
            status.ttl = Some(e.ttl(now));
            return Ok((serve_entry(&e, ctx, now), status));
        }
        if may_stale && staleness < e.swr() {
            if let Some(fill) = edge.inflight.start_if_idle(&slot, &ctx.headers) {
                // Nobody waits for a background revalidation's response.
                drop(start(edge, ctx, &fill, slot, Mode::Revalidate(e.clone()), true));
            }
            let mut status = CacheStatus::new(Outcome::StaleHit(StaleWhy::WhileRevalidate));
            status.ttl = Some(e.ttl(now));
            return Ok((serve_entry(&e, ctx, now), status));
        }
    }
    if ctx.cc.has("only-if-cached") {
        return Err(ProxyError::NotCached);
    }
    let fwd = if fresh { Fwd::Request } else { Fwd::Stale };
    let mut status = CacheStatus::new(Outcome::Forward(fwd));
    match edge.inflight.join(&slot, &ctx.headers, || false) {
        Some(Role::Follower(fill)) => {
            edge.metrics.coalesced();
            status.collapsed = true;
            follow(edge, ctx, &fill, None, status, Some(e)).await
        }
        Some(Role::Leader(fill)) => {
            let pass = start(edge, ctx, &fill, slot, Mode::Revalidate(e.clone()), true);
            follow(edge, ctx, &fill, Some(pass), status, Some(e)).await
        }
        None => Err(ProxyError::Internal("join without a fill".into())),
    }
}

/// Fetch without coalescing (hit-for-miss, credentials, `no-store` requests, unlike variants).
async fn fetch_alone(
    edge: &Arc<Edge>,
    ctx: &Ctx,
    slot: Arc<str>,
    fwd: Fwd,
    may_store: bool,
    hfm: bool,
) -> Served {
    let fill = Fill::new(ctx.headers.clone());
    let mut job = job(edge, ctx, slot, Mode::Fetch, false);
    job.may_store = may_store;
    job.mark_hit_for_miss = hfm;
    let (tx, rx) = oneshot::channel();
    job.pass = Some(tx);
    fill::spawn(job, fill.clone());
    let mut status = CacheStatus::new(Outcome::Forward(fwd));
    if hfm {
        status.detail = Some("hit-for-miss");
    }
    follow(edge, ctx, &fill, Some(rx), status, None).await
}

fn job(edge: &Arc<Edge>, ctx: &Ctx, slot: Arc<str>, mode: Mode, registered: bool) -> Job {
    let revalidate = match &mode {
        Mode::Revalidate(e) => Some(e.as_ref()),
        Mode::Fetch => None,
    };
    Job {
        edge: edge.clone(),
        site: ctx.site.clone(),
        key: ctx.key.clone(),
        slot,
        registered,
        mark_hit_for_miss: registered,
        may_store: true,
        authorization: ctx.headers.contains_key(header::AUTHORIZATION),
        request: origin_request(ctx, revalidate, true),
        mode,
        pass: None,
    }
}

/// Starts a registered fill's task; returns where a non-shareable response will arrive.
fn start(
    edge: &Arc<Edge>,
    ctx: &Ctx,
    fill: &Arc<Fill>,
    slot: Arc<str>,
    mode: Mode,
    registered: bool,
) -> oneshot::Receiver<Response<OriginBody>> {
    let mut job = job(edge, ctx, slot, mode, registered);
    let (tx, rx) = oneshot::channel();
    job.pass = Some(tx);
    fill::spawn(job, fill.clone());
    rx
}

/// Waits on a fill and answers from it. `pass` is set for the leader; `stale` is the entry
/// being revalidated (for stale-if-error).
async fn follow(
    edge: &Arc<Edge>,
    ctx: &Ctx,
    fill: &Arc<Fill>,
    pass: Option<oneshot::Receiver<Response<OriginBody>>>,
    mut status: CacheStatus,
    stale: Option<Arc<Entry>>,
) -> Served {
    let leader = pass.is_some();
    let now = || Instant::now();
    let stale_if_error = |code: Option<u16>| -> Option<Served> {
        let e = stale.as_ref()?;
        let n = now();
        if e.sie().is_zero() || e.staleness(n) > e.sie() {
            return None;
        }
        let mut st = CacheStatus::new(Outcome::StaleIfError);
        st.fwd_status = code;
        st.ttl = Some(e.ttl(n));
        Some(Ok((serve_entry(e, ctx, n), st)))
    };
    match fill.head().await {
        FillHead::Failed(err) => stale_if_error(None).unwrap_or(Err(err)),
        FillHead::Entry(e) => {
            status.fwd_status = Some(304);
            status.stored = true;
            status.ttl = Some(e.ttl(now()));
            Ok((serve_entry(&e, ctx, now()), status))
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
                Ok((pass_response(res, ctx), status))
            }
            None => {
                Box::pin(fetch_alone(edge, ctx, ctx.key.primary().clone(), Fwd::Bypass, true, false)).await
            }
        },
        FillHead::Stream(head) => {
            if head.status.is_server_error()
                && let Some(served) = stale_if_error(Some(head.status.as_u16()))
            {
                return served;
            }
            if !leader && !same_variant(&head.vary, &fill.request_headers, &ctx.headers) {
                return Box::pin(fetch_alone(
                    edge,
                    ctx,
                    ctx.key.primary().clone(),
                    Fwd::VaryMiss,
                    true,
                    false,
                ))
                .await;
            }
            status.fwd_status = Some(head.status.as_u16());
            status.stored = head.storing;
            status.ttl = head.ttl;
            Ok((serve_stream(ctx, fill, &head).await?, status))
        }
    }
}

fn same_variant(vary: &[header::HeaderName], a: &HeaderMap, b: &HeaderMap) -> bool {
    vary.iter().all(|n| key::header_value(a, n.as_str()) == key::header_value(b, n.as_str()))
}

/// Respond from a stored entry.
fn serve_entry(e: &Entry, ctx: &Ctx, now: Instant) -> Response<Body> {
    // Room for Age, Cache-Status, Content-Length and Accept-Ranges.
    let mut headers = e.headers().to_map(4);
    headers.insert(header::AGE, HeaderValue::from(e.age(now).as_secs()));
    respond::complete(e.status, headers, &e.body(), &ctx.headers, ctx.head_only)
}

/// Respond from a fill whose body may still be arriving.
async fn serve_stream(ctx: &Ctx, fill: &Arc<Fill>, head: &StreamHead) -> Result<Response<Body>, ProxyError> {
    let mut headers = head.headers.clone();
    let age = head.initial_age + head.arrived.elapsed();
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    match respond::precondition(&ctx.headers, head.status, &headers) {
        Precondition::NotModified => return Ok(respond::not_modified(&headers)),
        Precondition::Failed => return Ok(respond::precondition_failed()),
        Precondition::Proceed => {}
    }
    if head.status == StatusCode::OK && respond::wants_range(&ctx.headers) {
        // A range of an object we are fetching whole: wait for it, then slice.
        let body = fill.complete_body().await?;
        return Ok(respond::complete(head.status, headers, &body, &ctx.headers, ctx.head_only));
    }
    let body = if ctx.head_only {
        empty()
    } else {
        let stream = fill.body().map(|r| r.map(Frame::data).map_err(|e| Box::new(e) as BoxError));
        http_body_util::StreamBody::new(stream).boxed_unsync()
    };
    let mut res = Response::new(body);
    *res.status_mut() = head.status;
    *res.headers_mut() = headers;
    Ok(res)
}

/// A non-shareable origin response, straight through.
fn pass_response(res: Response<OriginBody>, ctx: &Ctx) -> Response<Body> {
    let head_only = ctx.head_only;
    res.map(|b| if head_only { empty() } else { b.map_err(|e| Box::new(e) as BoxError).boxed_unsync() })
}

/// The request a fill (or a pass) sends to the origin.
pub(crate) fn origin_request(ctx: &Ctx, revalidate: Option<&Entry>, fill: bool) -> OriginRequest {
    let mut h = ctx.headers.clone();
    strip_hop_by_hop(&mut h);
    if fill {
        // The fill fetches the whole object for everyone; the client's own conditions and
        // ranges are answered by us from it.
        for name in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::IF_RANGE,
            header::RANGE,
            header::CACHE_CONTROL,
            header::PRAGMA,
        ] {
            h.remove(name);
        }
    }
    if let Some(e) = revalidate {
        if let Some(etag) = e.headers().get(&header::ETAG) {
            h.insert(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = e.headers().get(&header::LAST_MODIFIED) {
            h.insert(header::IF_MODIFIED_SINCE, lm);
        }
    }
    add_forwarded(&mut h, ctx.client.map(|a| a.ip()), if ctx.tls { "https" } else { "http" });
    append_via(&mut h, ctx.version);
    OriginRequest {
        method: if fill { Method::GET } else { ctx.method.clone() },
        path_and_query: ctx.path_and_query.clone(),
        headers: h,
        client_host: ctx.client_host.clone(),
    }
}
