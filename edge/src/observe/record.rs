//! One request as the access log sees it.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version, header};

/// Everything one access-log line says about a request.
#[derive(Debug)]
pub struct Record {
    /// When the request arrived.
    pub time: SystemTime,
    /// The peer's address.
    pub client: Option<SocketAddr>,
    /// Request method.
    pub method: Method,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The `Host` field (or HTTP/2 `:authority`).
    pub host: Option<HeaderValue>,
    /// Request target: path and query.
    pub uri: Uri,
    /// HTTP version.
    pub version: Version,
    /// Response status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// From the request's arrival to its last body byte handed to the connection.
    pub duration: Duration,
    /// The cache outcome label (`hit`, `miss`, ...).
    pub cache: &'static str,
    /// The response's `Cache-Status` field.
    pub cache_status: Option<HeaderValue>,
    /// The cache tier that answered, when the cache did.
    pub tier: Option<&'static str>,
    /// The origin's status, when the origin was asked.
    pub origin_status: Option<u16>,
    /// How long the origin took to answer with a response head, when it was asked.
    pub origin_time: Option<Duration>,
    /// `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// `Referer`.
    pub referer: Option<HeaderValue>,
}

impl Record {
    /// The parts of a request the log needs, taken before the pipeline consumes it (cheap:
    /// header values and the URI share their bytes with the request).
    pub fn begin<B>(req: &http::Request<B>, client: Option<SocketAddr>, tls: bool) -> Self {
        let headers = req.headers();
        let host = headers
            .get(header::HOST)
            .cloned()
            .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        Self {
            time: SystemTime::now(),
            client,
            method: req.method().clone(),
            tls,
            host,
            uri: req.uri().clone(),
            version: req.version(),
            status: 0,
            bytes: 0,
            duration: Duration::ZERO,
            cache: "",
            cache_status: None,
            tier: None,
            origin_status: None,
            origin_time: None,
            user_agent: headers.get(header::USER_AGENT).cloned(),
            referer: headers.get(header::REFERER).cloned(),
        }
    }
}
