//! Methods other than GET and HEAD: they pass through to the origin with their body (within
//! `limits.max_body_size`; a body the client breaks or stops sending is the client's fault, see
//! `upstream/upload.rs`), and unsafe ones that succeed invalidate what they name
//! (RFC 9111 §4.4): the target URI and same-origin `Location` / `Content-Location`.

use std::sync::Arc;

use http::header;
use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt;

use crate::body::{Body, BoxError};
use crate::cache::key;
use crate::cache::store::Target;
use crate::edge::Edge;
use crate::error::{Fault, ProxyError};
use crate::proxy::ctx::{Ctx, Purpose, Served, origin_request};
use crate::proxy::headers::{strip_hop_by_hop, strip_targeted, take_tags};
use crate::proxy::interim;
use crate::proxy::status::{CacheStatus, Fwd, Outcome};
use crate::upstream::{OriginRequest, Upload};

/// Methods other than GET and HEAD pass through; unsafe ones invalidate what they name.
pub(crate) async fn forward(edge: &Arc<Edge>, ctx: &Ctx, body: Body) -> Served {
    let limit = edge.limits.max_body_size.bytes();
    let declared = ctx
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::BodyTooLarge);
    }
    let body =
        http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed_unsync();
    // A client that stops sending gets as long between body bytes as for its request head.
    let (body, watch) = Upload::new(body, edge.limits.header_read_timeout.get());
    edge.metrics.origin_request();
    // The origin's 1xx (a `102 Processing` for a long upload, `103 Early Hints`) go on first.
    let (tx, rx) = interim::channel(ctx.interim.as_ref());
    let request = OriginRequest { interim: tx, ..origin_request(ctx, Purpose::Pass) };
    let sent = std::time::Instant::now();
    let exchange = ctx.site.upstream.send_upload(&request, body, &watch);
    let res = interim::relay(ctx.interim.as_ref(), rx, exchange).await.inspect_err(|e| {
        if e.fault() == Fault::Upstream {
            edge.metrics.origin_error();
        }
    })?;
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_targeted(&mut parts.headers);
    let _ = take_tags(&mut parts.headers, &edge.tag_headers);
    let safe = matches!(ctx.method, Method::OPTIONS | Method::TRACE);
    if !safe && !parts.status.is_client_error() && !parts.status.is_server_error() {
        invalidate(edge, ctx, &parts.headers);
    }
    let mut status = CacheStatus::new(Outcome::Forward(Fwd::Method));
    status.fwd_status = Some(parts.status.as_u16());
    status.origin_time = Some(sent.elapsed());
    edge.metrics.origin_duration(status.origin_time.unwrap_or_default());
    Ok((Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()), status))
}

/// RFC 9111 §4.4: invalidate the target URI and same-origin `Location` / `Content-Location`.
fn invalidate(edge: &Edge, ctx: &Ctx, res: &HeaderMap) {
    let mut n = edge.store.purge(
        &Target::Url {
            host: Some(ctx.key.host().to_owned()),
            path: ctx.key.path().to_owned(),
            query: ctx.key.query().map(str::to_owned),
        },
        false,
    );
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(v) = res.get(&name).and_then(|v| v.to_str().ok()) else { continue };
        let Ok(uri) = v.parse::<http::Uri>() else { continue };
        // Same origin: relative, our host, or the origin's own host (origins that are sent
        // their own Host name themselves in absolute Locations).
        let same_origin = match uri.host() {
            None => true,
            Some(h) => {
                h.eq_ignore_ascii_case(ctx.key.host())
                    || ctx
                        .site
                        .cfg
                        .origins
                        .iter()
                        .any(|o| o.url().host_str().is_some_and(|oh| oh.eq_ignore_ascii_case(h)))
            }
        };
        if same_origin && uri.path().starts_with('/') {
            let query = uri.query().and_then(|q| key::normalize_query(q, &ctx.site.cfg.key));
            n += edge.store.purge(
                &Target::Url { host: Some(ctx.key.host().to_owned()), path: uri.path().to_owned(), query },
                false,
            );
        }
    }
    if n > 0 {
        tracing::debug!(host = %ctx.key.host(), path = %ctx.key.path(), removed = n, "invalidated by unsafe method");
    }
}
