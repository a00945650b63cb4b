//! Edge policy: what a site asks of a request before the cache is consulted, and of every
//! response on its way out. Per site, built once with its `SiteState`.
//!
//! The request side runs right after routing, before the key is built, in this order (cheap
//! and unauthenticated checks first, so a token guesser is rate limited too):
//!
//! 1. `access` — `allow`/`deny` address lists → 403 (`detail=ip-denied`);
//! 2. `rate` — GCRA per client (address, optionally a header) → 429 with `Retry-After`;
//! 3. `token` — Akamai EdgeAuth tokens → 403 (`detail=token-missing`, `token-invalid`,
//!    `token-expired`, ...); a query token is removed from the request, so it never becomes
//!    part of the cache key nor reaches the origin.
//!
//! The client address is the one `proxy/headers.rs::client_address` derives (the peer, or
//! `X-Forwarded-For` from `trusted_proxies`). With compression on, the request's
//! `Accept-Encoding` is normalised to the one encoding it will get (`compress`).
//!
//! On the way out, `compress` compresses eligible identity responses as they stream (stored
//! ones were compressed once, in the fill: [`Policy::for_store`]), then `rules` applies the
//! site's `[[headers]]` rules to every response, the edge's own errors included.

mod access;
pub(crate) mod compress;
mod rate;
mod rules;
mod token;

use std::net::IpAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use stratus_config::edge::Site;

use crate::body::Body;
use crate::error::ProxyError;
pub(crate) use compress::Encoding;

/// A site's compiled policy.
#[derive(Debug)]
pub(crate) struct Policy {
    access: access::Access,
    rate: Option<rate::Limiter>,
    token: Option<token::Verifier>,
    rules: rules::Rules,
    compress: compress::Compressor,
}

impl Policy {
    /// Compiles `site`'s policy sections (already validated with the configuration).
    pub(crate) fn new(site: &Site) -> Self {
        Self {
            access: access::Access::new(&site.allow, &site.deny),
            rate: site.rate_limit.as_ref().map(rate::Limiter::new),
            token: site.token_auth.as_ref().map(token::Verifier::new),
            rules: rules::Rules::new(&site.headers),
            compress: compress::Compressor::new(&site.compression),
        }
    }

    /// Whether the site checks or rewrites requests ([`Policy::admit`]).
    pub(crate) fn checks_requests(&self) -> bool {
        !self.access.is_empty() || self.rate.is_some() || self.token.is_some() || self.compress.enabled()
    }

    /// Whether the site rewrites responses ([`Policy::respond`]).
    pub(crate) fn rewrites_responses(&self) -> bool {
        !self.rules.is_empty() || self.compress.enabled()
    }

    /// Admits a request from `client` or refuses it; may rewrite it (a query token is
    /// removed, `Accept-Encoding` normalised). Returns the encoding the response will have
    /// if it is compressible.
    pub(crate) fn admit(&self, parts: &mut Parts, client: Option<IpAddr>) -> Result<Encoding, ProxyError> {
        if !self.access.allows(client) {
            return Err(ProxyError::Forbidden("ip-denied"));
        }
        if let Some(limiter) = &self.rate {
            limiter.check(client, &parts.headers)?;
        }
        if let Some(verifier) = &self.token {
            verifier.check(parts, client, std::time::SystemTime::now())?;
        }
        if self.compress.enabled() {
            return Ok(self.compress.normalize(&mut parts.headers));
        }
        Ok(Encoding::Identity)
    }

    /// The response side: compression (for `encoding`), then the header rules for `path`.
    pub(crate) fn respond(
        &self,
        res: Response<Body>,
        path: &str,
        encoding: Encoding,
        head_only: bool,
    ) -> Response<Body> {
        let mut res =
            if self.compress.enabled() { self.compress.respond(res, encoding, head_only) } else { res };
        self.rules.apply(path, res.headers_mut());
        res
    }

    /// The store side, for a fill about to store a response: marks a compressible one
    /// `Vary: Accept-Encoding` and says which encoding to store its body in (the fill's
    /// request's, already normalised).
    pub(crate) fn for_store(
        &self,
        status: StatusCode,
        headers: &mut HeaderMap,
        request: &HeaderMap,
    ) -> Option<Encoding> {
        self.compress.for_store(status, headers, request)
    }

    /// Compresses a whole body to store, fixing `headers` to describe it; `None` when it is
    /// too small or too large to compress (it is stored as it came).
    pub(crate) async fn store_body(
        &self,
        encoding: Encoding,
        body: &Bytes,
        headers: &mut HeaderMap,
    ) -> Option<Bytes> {
        if !self.compress.fits(body.len()) {
            return None;
        }
        match compress::compress_stored(encoding, body, headers).await {
            Ok(packed) => Some(packed),
            Err(e) => {
                tracing::warn!(error = %e, "compression failed; stored uncompressed");
                None
            }
        }
    }
}
