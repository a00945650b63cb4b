//! The way to origins: a pooled hyper-util client per site, the origin URL's path as a prefix,
//! `Host` per `origin_host`, per-site timeouts, and failover to the next origin when one cannot
//! be reached (only for requests that can be replayed).

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use stratus_config::edge::{OriginTimeouts, Site};

use crate::error::{Body, Error, ProxyError, empty};

#[derive(Debug)]
struct Origin {
    authority: Authority,
    /// The origin URL's path without a trailing slash, put before every request path.
    prefix: String,
    host: HeaderValue,
}

/// A request on its way to an origin; headers already cleaned and forwarded-for added.
#[derive(Debug)]
pub struct OriginRequest {
    /// Method.
    pub method: Method,
    /// Path and query as the client sent them.
    pub path_and_query: String,
    /// Headers to send (`Host` is set here).
    pub headers: HeaderMap,
    /// The client's `Host` value, used when the site keeps the client's host.
    pub client_host: Option<HeaderValue>,
}

/// The origins of one site and the client that reaches them.
#[derive(Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    origins: Vec<Origin>,
    origin_host: bool,
    /// Timeouts from the site's configuration.
    pub timeouts: OriginTimeouts,
}

impl Upstream {
    /// Builds the client for `site`; HTTPS origins are refused (issue #10).
    pub fn new(site: &Site) -> Result<Self, Error> {
        let mut origins = Vec::new();
        for url in &site.origins {
            if url.is_https() {
                return Err(Error::HttpsOrigin(url.to_string()));
            }
            let u = url.url();
            let host = u.host_str().unwrap_or_default();
            let hostport = match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            };
            let with_port = format!("{host}:{}", u.port_or_known_default().unwrap_or(80));
            let authority =
                with_port.parse::<Authority>().map_err(|_| Error::HttpsOrigin(url.to_string()))?;
            let host = HeaderValue::from_str(&hostport).map_err(|_| Error::HttpsOrigin(url.to_string()))?;
            origins.push(Origin { authority, prefix: u.path().trim_end_matches('/').to_owned(), host });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(site.timeouts.connect.get()));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Self { client, origins, origin_host: site.origin_host, timeouts: site.timeouts.clone() })
    }

    /// Sends `req` with `body`; a replayable request (`body` is `None`) fails over to the next
    /// origin when one cannot be reached. Waits at most the first-byte timeout for the head.
    pub async fn send(
        &self,
        req: &OriginRequest,
        body: Option<Body>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let mut body = body;
        let mut last = ProxyError::Internal("site without origins".to_owned());
        for origin in &self.origins {
            let replayable = body.is_none();
            let request = self.build(origin, req, body.take().unwrap_or_else(empty))?;
            let sent =
                tokio::time::timeout(self.timeouts.first_byte.get(), self.client.request(request)).await;
            let err = match sent {
                Ok(Ok(res)) => return Ok(res),
                Err(_) => ProxyError::Timeout("the response head"),
                Ok(Err(e)) if e.is_connect() => ProxyError::Connect(error_chain(&e)),
                Ok(Err(e)) if caused_by_body_limit(&e) => ProxyError::BodyTooLarge,
                Ok(Err(e)) => ProxyError::Upstream(error_chain(&e)),
            };
            tracing::warn!(origin = %origin.authority, error = %err, "origin request failed");
            if !(err.retry_safe() && replayable) {
                return Err(err);
            }
            last = err;
        }
        Err(last)
    }

    fn build(&self, origin: &Origin, req: &OriginRequest, body: Body) -> Result<Request<Body>, ProxyError> {
        let path = format!("{}{}", origin.prefix, req.path_and_query);
        let pq = path.parse::<PathAndQuery>().map_err(|_| ProxyError::BadRequest("invalid path"))?;
        let uri = Uri::builder()
            .scheme("http")
            .authority(origin.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
        let mut request = Request::new(body);
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = req.headers.clone();
        let host = match (&req.client_host, self.origin_host) {
            (Some(h), false) => h.clone(),
            _ => origin.host.clone(),
        };
        request.headers_mut().insert(header::HOST, host);
        Ok(request)
    }
}

/// Whether the request body hit its size limit while being sent (the client's fault).
fn caused_by_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error and its sources, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
