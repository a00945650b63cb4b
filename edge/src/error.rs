//! Errors of the edge, and the one place where a failure becomes a response.
//!
//! [`Error`] is what `run` returns (startup failures). [`ProxyError`] is a failure while
//! serving one request; it says who is at fault — upstream, downstream or us — and
//! [`rescue`] alone turns it into a response: upstream → 502/504, downstream → 400/408/413/421,
//! internal → 500. Clients never see internal detail, and the service stays infallible, so no
//! failure drops a connection without an answer.

use http::{Response, StatusCode, header};

use crate::body::{Body, full};

/// Errors that stop the edge from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key file could not be used.
    #[error("certificate file {}: {reason}", path.display())]
    Certificate {
        /// The file at fault.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The access log could not be opened.
    #[error("{0}")]
    AccessLog(String),
    /// The TLS configuration could not be built.
    #[error("cannot set up tls: {0}")]
    Tls(String),
    /// A site's origins cannot be set up (bad URL, unreadable CA file).
    #[error("{origin}: {reason}")]
    Origin {
        /// What: `origin URL` or `ca_file PATH`.
        origin: String,
        /// Why.
        reason: String,
    },
    /// A site configuration breaks a rule (a reload or a pushed configuration).
    #[error("invalid site configuration: {0}")]
    InvalidSites(stratus_config::Invalid),
    /// The metrics registry could not be built.
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
    /// The disk tier's directory cannot be used.
    #[error("cache directory {}: {source}", path.display())]
    CacheDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Who caused a request to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The origin (unreachable, slow, broken).
    Upstream,
    /// The client (malformed or refused request).
    Downstream,
    /// The edge itself.
    Internal,
}

/// A failure while serving one request.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProxyError {
    /// The origin could not be reached.
    #[error("cannot connect to the origin: {0}")]
    Connect(String),
    /// The origin's host name could not be resolved.
    #[error("cannot resolve the origin: {0}")]
    Dns(String),
    /// The TLS handshake with the origin failed (certificate not trusted, wrong name, ...).
    #[error("tls handshake with the origin failed: {0}")]
    Tls(String),
    /// The origin did not answer in time.
    #[error("origin timed out waiting for {0}")]
    Timeout(&'static str),
    /// The origin broke the exchange (reset, malformed response).
    #[error("origin failed: {0}")]
    Upstream(String),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request body is over the limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// The client stopped sending its request body.
    #[error("request body not received in time")]
    RequestTimeout,
    /// The client went away before its request body ended.
    #[error("client closed the connection during the request body")]
    ClientGone,
    /// The method is not one a reverse proxy serves (`CONNECT`: the edge is no tunnel).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No site serves the request's host.
    #[error("no site for host {0:?}")]
    UnknownHost(String),
    /// `only-if-cached` and nothing usable is stored.
    #[error("not cached (only-if-cached)")]
    NotCached,
    /// The request passed through this edge before (`CDN-Loop`): tiers configured in a circle.
    #[error("loop detected: the request passed through this edge before")]
    LoopDetected,
    /// The site's policy refuses the request (address lists, tokens); the reason is the
    /// `Cache-Status` detail, e.g. `token-expired`.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The client is over the site's rate limit.
    #[error("too many requests")]
    RateLimited(Limited),
    /// A bug or an impossible state on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a 429 tells the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// Seconds until a request would be admitted again (`Retry-After`), at least 1.
    pub retry_after: u64,
    /// Requests allowed at once (`RateLimit-Limit`: the burst).
    pub limit: u32,
    /// Seconds in which a client's whole burst refills.
    pub window: u64,
}

impl ProxyError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Connect(_) | Self::Dns(_) | Self::Tls(_) | Self::Timeout(_) | Self::Upstream(_) => {
                Fault::Upstream
            }
            // `only-if-cached` asked nothing of the origin: the client's own constraint.
            Self::BadRequest(_)
            | Self::BodyTooLarge
            | Self::RequestTimeout
            | Self::ClientGone
            | Self::MethodNotAllowed
            | Self::UnknownHost(_)
            | Self::NotCached
            | Self::LoopDetected => Fault::Downstream,
            Self::Forbidden(_) | Self::RateLimited(_) => Fault::Downstream,
            Self::Internal(_) => Fault::Internal,
        }
    }

    /// Whether retrying the request elsewhere is safe: no connection was made, so nothing of
    /// the request reached the origin.
    pub fn retry_safe(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Dns(_) | Self::Tls(_))
    }

    /// The `Cache-Status` detail of an error response: which step towards the origin failed.
    pub fn detail(&self) -> Option<&'static str> {
        match self {
            Self::Connect(_) => Some("connect"),
            Self::Dns(_) => Some("dns"),
            Self::Tls(_) => Some("tls"),
            Self::Timeout(_) => Some("timeout"),
            Self::Upstream(_) => Some("origin-error"),
            Self::Forbidden(reason) => Some(reason),
            Self::RateLimited(_) => Some("rate-limited"),
            _ => None,
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout(_) | Self::NotCached => StatusCode::GATEWAY_TIMEOUT,
            Self::Connect(_) | Self::Dns(_) | Self::Tls(_) | Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            // Nobody reads the answer to a client that is gone; 400 keeps the log honest.
            Self::BadRequest(_) | Self::ClientGone => StatusCode::BAD_REQUEST,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::LoopDetected => StatusCode::LOOP_DETECTED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The metrics label of the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Dns(_) => "dns",
            Self::Tls(_) => "tls",
            Self::Timeout(_) => "timeout",
            Self::Upstream(_) => "upstream",
            Self::BadRequest(_) => "bad_request",
            Self::BodyTooLarge => "body_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::ClientGone => "client_gone",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnknownHost(_) => "unknown_host",
            Self::NotCached => "not_cached",
            Self::LoopDetected => "loop",
            Self::Forbidden(_) => "forbidden",
            Self::RateLimited(_) => "rate_limited",
            Self::Internal(_) => "internal",
        }
    }

    /// All labels [`ProxyError::kind`] can return.
    pub const KINDS: [&'static str; 16] = [
        "connect",
        "dns",
        "tls",
        "timeout",
        "upstream",
        "bad_request",
        "body_too_large",
        "request_timeout",
        "client_gone",
        "method_not_allowed",
        "unknown_host",
        "not_cached",
        "loop",
        "forbidden",
        "rate_limited",
        "internal",
    ];
}

/// The one map from a failure to the response the client sees.
pub fn rescue(err: &ProxyError) -> Response<Body> {
    let status = err.status();
    let text = match err.fault() {
        // Say what the client did wrong, or which side failed; never our internals.
        Fault::Downstream => format!("{err}\n"),
        Fault::Upstream => format!("{}\n", status.canonical_reason().unwrap_or("origin error")),
        Fault::Internal => "internal error\n".to_owned(),
    };
    match err.fault() {
        Fault::Internal => tracing::error!(error = %err, "internal error"),
        Fault::Upstream => tracing::warn!(error = %err, "origin error"),
        Fault::Downstream => tracing::debug!(error = %err, "bad request"),
    }
    let mut res = Response::new(full(text));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    res.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    if matches!(err, ProxyError::MethodNotAllowed) {
        // RFC 9110 §15.5.6: a 405 lists the methods the target does support.
        res.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static(ALLOW));
    }
    if let ProxyError::RateLimited(l) = err {
        // RFC 9110 §10.2.3, and the RateLimit fields of draft-ietf-httpapi-ratelimit-headers
        // as most implementations send them.
        let h = res.headers_mut();
        h.insert(header::RETRY_AFTER, http::HeaderValue::from(l.retry_after));
        h.insert("ratelimit-limit", http::HeaderValue::from(l.limit));
        h.insert("ratelimit-remaining", http::HeaderValue::from_static("0"));
        h.insert("ratelimit-reset", http::HeaderValue::from(l.retry_after));
        if let Ok(v) = http::HeaderValue::from_str(&format!("{};w={}", l.limit, l.window)) {
            h.insert("ratelimit-policy", v);
        }
    }
    res
}

/// The methods the edge serves: GET and HEAD from the cache, the others passed to the origin.
const ALLOW: &str = "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_map_to_statuses() {
        let cases = [
            (ProxyError::Connect("refused".into()), 502, Fault::Upstream),
            (ProxyError::Dns("nxdomain".into()), 502, Fault::Upstream),
            (ProxyError::Tls("unknown issuer".into()), 502, Fault::Upstream),
            (ProxyError::Timeout("first byte"), 504, Fault::Upstream),
            (ProxyError::Upstream("reset".into()), 502, Fault::Upstream),
            (ProxyError::BadRequest("no host"), 400, Fault::Downstream),
            (ProxyError::BodyTooLarge, 413, Fault::Downstream),
            (ProxyError::RequestTimeout, 408, Fault::Downstream),
            (ProxyError::ClientGone, 400, Fault::Downstream),
            (ProxyError::MethodNotAllowed, 405, Fault::Downstream),
            (ProxyError::UnknownHost("x".into()), 421, Fault::Downstream),
            (ProxyError::NotCached, 504, Fault::Downstream),
            (ProxyError::LoopDetected, 508, Fault::Downstream),
            (ProxyError::Forbidden("token-expired"), 403, Fault::Downstream),
            (
                ProxyError::RateLimited(Limited { retry_after: 2, limit: 5, window: 1 }),
                429,
                Fault::Downstream,
            ),
            (ProxyError::Internal("bug".into()), 500, Fault::Internal),
        ];
        for (err, status, fault) in cases {
            assert_eq!((err.status().as_u16(), err.fault()), (status, fault), "{err}");
            assert_eq!(rescue(&err).status().as_u16(), status);
        }
    }
}
