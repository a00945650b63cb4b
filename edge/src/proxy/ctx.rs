//! One request's context after routing and keying, and the request it becomes towards the
//! origin.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Response, Version};
use stratus_config::edge::ClientCacheControl;

use crate::body::Body;
use crate::cache::directives::Directives;
use crate::cache::entry::Entry;
use crate::cache::key::{CacheKey, upstream_query};
use crate::error::ProxyError;
use crate::proxy::downstream::Downstream;
use crate::proxy::headers::{append_via, set_forwarding, strip_hop_by_hop, strip_method_override};
use crate::proxy::interim::Interim;
use crate::proxy::route::SiteState;
use crate::proxy::status::CacheStatus;
use crate::upstream::{CDN_LOOP, FROM_PEER, OriginRequest, STRATUS_HOP};

pub(crate) type Served = Result<(Response<Body>, CacheStatus), ProxyError>;

/// One request's context after routing and keying.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) site: Arc<SiteState>,
    pub(crate) key: CacheKey,
    pub(crate) method: Method,
    pub(crate) head_only: bool,
    pub(crate) headers: HeaderMap,
    pub(crate) cc: Directives,
    pub(crate) no_cache: bool,
    /// The request target as the client sent it; what goes upstream is derived from it only
    /// when the origin is asked (hits never pay for it).
    pub(crate) uri: http::Uri,
    pub(crate) version: Version,
    pub(crate) client: Option<SocketAddr>,
    /// The request arrived over TLS.
    pub(crate) tls: bool,
    /// The client is a trusted proxy: its forwarding fields reach the origin.
    pub(crate) trusted: bool,
    /// The request came from another Stratus edge (`Stratus-Hop`: a peer or a child tier),
    /// which gets the fields only edges use (tags, `Surrogate-Control`) with the response.
    pub(crate) from_edge: bool,
    /// The request came from a peer of this PoP: it goes to parents or origins, never to
    /// another peer.
    pub(crate) from_peer: bool,
    /// Where the origin's 1xx responses go (HTTP/1.1 and HTTP/2 clients).
    pub(crate) interim: Option<Interim>,
}

impl Ctx {
    /// The context of a routed request and its `key`; `present` says which of the fields it
    /// reads the request has.
    pub(crate) fn new(
        site: Arc<SiteState>,
        key: CacheKey,
        parts: Parts,
        present: Present,
        from: Option<Downstream>,
        trusted: bool,
    ) -> Self {
        // A site that does not let clients decide what reaches the origin reads no request
        // directives at all (`client_cache_control = "ignore"`, `docs/edge.md`).
        let (cc, no_cache) = if site.cfg.client_cache_control == ClientCacheControl::Ignore
            || !(present.cache_control || present.pragma)
        {
            (Directives::default(), false)
        } else {
            let cc = Directives::from_headers(&parts.headers, &header::CACHE_CONTROL).unwrap_or_default();
            let pragma = !present.cache_control
                && parts
                    .headers
                    .get_all(header::PRAGMA)
                    .iter()
                    .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
            let no_cache = cc.has("no-cache") || pragma;
            (cc, no_cache)
        };
        let hop = if present.hop { parts.headers.get(STRATUS_HOP) } else { None };
        let (from_edge, from_peer) = (hop.is_some(), hop == Some(&FROM_PEER));
        let tls = Downstream::tls(from.as_ref());
        let (client, interim) = from.map_or((None, None), |d| (Some(d.peer), d.interim));
        Self {
            from_edge,
            from_peer,
            interim,
            site,
            key,
            head_only: parts.method == Method::HEAD,
            method: parts.method,
            no_cache,
            cc,
            uri: parts.uri,
            headers: parts.headers,
            version: parts.version,
            client,
            tls,
            trusted,
        }
    }
}

/// Which of the fields the pipeline reads before the lookup a request carries, from one walk
/// over its names: a request has a few fields, and each lookup by name hashes the name and
/// probes the map, mostly for fields that are not there.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Present {
    pub(crate) cache_control: bool,
    pub(crate) pragma: bool,
    /// `Stratus-Hop`.
    pub(crate) hop: bool,
    /// `CDN-Loop`.
    pub(crate) cdn_loop: bool,
}

impl Present {
    /// The fields of `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut p = Self::default();
        for name in headers.keys() {
            if name == header::CACHE_CONTROL {
                p.cache_control = true;
            } else if name == header::PRAGMA {
                p.pragma = true;
            } else if name == STRATUS_HOP {
                p.hop = true;
            } else if name == CDN_LOOP {
                p.cdn_loop = true;
            }
        }
        p
    }
}

/// What a request to the origin is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose<'a> {
    /// A fill: the whole object for every waiter (a GET without the client's conditions and
    /// ranges), conditional on the validators of the entry it revalidates, if any.
    Fill(Option<&'a Entry>),
    /// The client's own request, passed through (methods other than GET and HEAD).
    Pass,
}

/// The request a fill (or a pass) sends to the origin.
pub(crate) fn origin_request(ctx: &Ctx, purpose: Purpose<'_>) -> OriginRequest {
    let (fill, revalidate) = match purpose {
        Purpose::Fill(entry) => (true, entry),
        Purpose::Pass => (false, None),
    };
    let mut h = ctx.headers.clone();
    strip_hop_by_hop(&mut h);
    // Ours, set again by the upstream for the tier it sends to; never for origins.
    h.remove(STRATUS_HOP);
    if ctx.method == Method::GET || ctx.method == Method::HEAD {
        // Their body is not forwarded, so neither is its framing: a `Content-Length` without
        // the bytes it announces would make the origin read the next request on the pooled
        // connection as this one's body (request smuggling). `Transfer-Encoding` went with
        // the hop-by-hop fields.
        h.remove(header::CONTENT_LENGTH);
        strip_method_override(&mut h);
    }
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
    set_forwarding(&mut h, ctx.client.map(|a| a.ip()), if ctx.tls { "https" } else { "http" }, ctx.trusted);
    append_via(&mut h, ctx.version);
    OriginRequest {
        method: if fill { Method::GET } else { ctx.method.clone() },
        path_and_query: upstream_target(ctx),
        headers: h,
        // The origin gets the host the key holds, never the client's spelling of it.
        client_host: {
            let host = ctx.key.host();
            HeaderValue::from_str(&if host.contains(':') { format!("[{host}]") } else { host.to_owned() })
                .ok()
        },
        fill_key: fill.then(|| ctx.key.primary().clone()),
        from_peer: ctx.from_peer,
        interim: None,
    }
}

/// The path and query sent upstream.
fn upstream_target(ctx: &Ctx) -> String {
    let uri = &ctx.uri;
    if ctx.method == Method::GET || ctx.method == Method::HEAD {
        // What is fetched is what is keyed: parameters the key ignores do not reach the
        // origin either, so they cannot change the stored answer.
        match uri.query().and_then(|q| upstream_query(q, &ctx.site.cfg.key)) {
            Some(q) => format!("{}?{q}", uri.path()),
            None => uri.path().to_owned(),
        }
    } else {
        uri.path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned())
    }
}
