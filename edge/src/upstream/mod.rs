//! The way to origins (the fetch phase's transport).
//!
//! Each site has an [`Upstream`]: its origins in configured order, each with its own pooled
//! client ([`connect`]: DNS via [`dns`], TCP, TLS, HTTP/1.1 or HTTP/2 by ALPN), a cap on
//! requests in flight (`pool.max_connections`; hyper-util's pool has none) and its health
//! (`health.rs`). A request goes to the first healthy origin; when none is healthy every origin
//! is tried in order anyway, since a guess beats a certain error.
//!
//! **Retries** follow one rule: a request is sent again, to the next origin, only when it is
//! idempotent and has no body (GET and HEAD fills), and only when the failure left the
//! request unsent — DNS, connect or TLS failures and a full connection cap. A timeout or a
//! broken response is never retried (the origin may have acted on it), nor is a POST.
//!
//! **Timeouts** (`[sites.timeouts]`): `connect` bounds DNS + TCP + TLS (and the wait for a
//! connection slot), `first_byte` the wait for the response head after that, `total` the
//! whole exchange including the body ([`OriginBody`] enforces it on every response).
//!
//! **Host**: `origin_host = true` (default) sends the origin's `host[:port]`; false sends the
//! client's `Host`. Either way the connection, TLS SNI and certificate check use the origin's
//! name. The `Host` value is also the request URI's authority, so HTTP/2 sends it as
//! `:authority`. Peers and parents always get the host of the cache key.
//!
//! **Tiers** (`cluster.rs`): a fill asks the key's owner in the PoP first (unless the request
//! came from a peer), then the site's parents ranked for the key, then the origins. A peer or
//! parent that fails in any way — no connection, a timeout, its own 5xx — is skipped for the
//! next one within the same request (a fill is a GET without a body, safe to send again), and
//! counts against its health.

mod body;
mod chain;
mod cluster;
pub(crate) mod connect;
pub(crate) mod dns;
mod health;
mod origin;
mod sign;
mod upload;

use std::future::Future;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Response, Uri};
use stratus_config::EdgeConfig;
use stratus_config::edge::{Dns as DnsConfig, OriginTimeouts, Site, peer_id};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use body::OriginBody;
pub use chain::error_chain;
pub use cluster::{Cluster, FROM_PEER, STRATUS_HOP};
pub use dns::Dns;
pub use upload::{Upload, UploadWatch};

use crate::body::{Body, empty};
use crate::error::{Error, Fault, ProxyError};
use chain::classify;
use cluster::{FROM_CHILD, Ranked, edge_error, rank};
pub use origin::Tier;
use origin::{Origin, Settings, spawn_probe};

/// What every site's upstream shares: the DNS resolver (one cache), the edge's shutdown and
/// the credentials sites with `origin_auth` sign with.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The resolver of origin host names.
    pub dns: Dns,
    /// Cancelled when the edge shuts down; stops health probes.
    pub shutdown: CancellationToken,
    /// The peers of this edge's PoP (`[edge.cluster]`), shared by every site.
    pub cluster: Option<Arc<Cluster>>,
    /// This edge's member of `CDN-Loop` (RFC 8586), sent with every request upstream.
    pub cdn_loop: HeaderValue,
    /// Access key id and secret key for `origin_auth` (`STRATUS_ORIGIN_ACCESS_KEY`, ...).
    pub origin_credentials: Option<(stratus_config::Secret, stratus_config::Secret)>,
}

impl Outbound {
    /// The resolver per `[edge.dns]`, and `shutdown` for the probes of every site built with it.
    pub fn new(dns: &DnsConfig, shutdown: CancellationToken) -> Self {
        Self {
            dns: Dns::new(dns),
            shutdown,
            cluster: None,
            cdn_loop: HeaderValue::from_static("stratus"),
            origin_credentials: None,
        }
    }

    /// The same, with the origin credentials sites with `origin_auth` sign with.
    pub fn with_origin_credentials(
        mut self,
        access_key: Option<&stratus_config::Secret>,
        secret_key: Option<&stratus_config::Secret>,
    ) -> Self {
        self.origin_credentials = access_key.cloned().zip(secret_key.cloned());
        self
    }

    /// What `config`'s sites share, the cluster of peers included; `cdn_loop` is this edge's
    /// `CDN-Loop` member. Must run inside a Tokio runtime (peer health probes).
    pub fn for_edge(
        config: &EdgeConfig,
        cdn_loop: HeaderValue,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        let mut out = Self::new(&config.dns, shutdown);
        out.cdn_loop = cdn_loop;
        if let Some(cfg) = &config.cluster {
            let listeners: Vec<_> = config.listeners.iter().map(|l| l.listen).collect();
            out.cluster = Some(Arc::new(Cluster::new(cfg, &listeners, &out.dns, &out.shutdown)?));
        }
        Ok(out)
    }
}

/// Which tier answered a request, in its response's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Answered {
    /// The tier.
    pub tier: Tier,
    /// Whether this edge may keep a copy (`cluster.keep_copies` for answers from peers).
    pub keep: bool,
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
    /// For fills: the cache key, which picks the owner among peers and parents. Requests
    /// without one (pass-through) go straight to the origins.
    pub fill_key: Option<Arc<str>>,
    /// The request came from a peer: it must not be sent to another peer.
    pub from_peer: bool,
    /// Where the origin's 1xx responses go (HTTP/1.1 origins; hyper's h2 client drops them).
    /// Bounded: when it is full, further ones are dropped.
    pub interim: Option<tokio::sync::mpsc::Sender<Response<()>>>,
}

/// The origins of one site and the clients that reach them.
#[derive(Debug)]
pub struct Upstream {
    origins: Vec<Arc<Origin>>,
    /// Upper-tier edges (`parents`), ranked per key.
    parents: Vec<Ranked>,
    cluster: Option<Arc<Cluster>>,
    cdn_loop: HeaderValue,
    origin_host: bool,
    /// Timeouts from the site's configuration.
    pub timeouts: OriginTimeouts,
    /// Stops this site's probe tasks when the upstream is dropped (e.g. replaced by a
    /// reload); a child of the edge's shutdown token.
    stop: CancellationToken,
    /// The probe tasks.
    probes: Vec<JoinHandle<()>>,
    /// Signs GET and HEAD requests (`origin_auth`).
    signer: Option<sign::Signer>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Cancelling ends a probe at its next wait; aborting also ends one stuck elsewhere.
        self.stop.cancel();
        for probe in &self.probes {
            probe.abort();
        }
    }
}

impl Upstream {
    /// Builds the clients of `site`'s origins and starts their health probes (if configured).
    /// Must run inside a Tokio runtime.
    pub fn new(site: &Site, outbound: &Outbound) -> Result<Self, Error> {
        let tls = Arc::new(connect::tls_config(site.ca_roots, site.ca_file.as_deref())?);
        let signer = match (&site.origin_auth, &outbound.origin_credentials) {
            (None, _) => None,
            (Some(auth), Some((access, secret))) => {
                Some(sign::Signer::new(auth, access.expose(), secret.expose()))
            }
            (Some(_), None) => {
                return Err(Error::Origin {
                    origin: "origin_auth".to_owned(),
                    reason:
                        "needs STRATUS_ORIGIN_ACCESS_KEY and STRATUS_ORIGIN_SECRET_KEY (or origin_access_key \
                             and origin_secret_key in [edge])"
                            .to_owned(),
                });
            }
        };
        let stop = outbound.shutdown.child_token();
        let (mut origins, mut parents, mut probes) = (Vec::new(), Vec::new(), Vec::new());
        let settings = |tier| Settings {
            tier,
            timeouts: &site.timeouts,
            pool: &site.pool,
            health: &site.health,
            tls: &tls,
            dns: &outbound.dns,
        };
        for url in &site.origins {
            let origin = Arc::new(Origin::new(url, settings(Tier::Origin))?);
            probes.extend(spawn_probe(&origin, &site.health, stop.clone()));
            origins.push(origin);
        }
        for url in &site.parents {
            let id =
                peer_id(url).map_err(|reason| Error::Origin { origin: format!("parent {url}"), reason })?;
            let parent = Arc::new(Origin::new(url, settings(Tier::Parent))?);
            probes.extend(spawn_probe(&parent, &site.health, stop.clone()));
            parents.push(Ranked::new(parent, id));
        }
        Ok(Self {
            origins,
            parents,
            cluster: outbound.cluster.clone(),
            cdn_loop: outbound.cdn_loop.clone(),
            origin_host: site.origin_host,
            timeouts: site.timeouts.clone(),
            stop,
            probes,
            signer,
        })
    }

    /// Sends `req` with `body` (see the module docs for which failures are retried on the
    /// next origin). The response body holds the origin's connection slot until it ends.
    pub async fn send(
        &self,
        req: &OriginRequest,
        body: Option<Body>,
    ) -> Result<Response<OriginBody>, ProxyError> {
        self.send_watched(req, body, None).await
    }

    /// [`Upstream::send`] with a client's body: a failure that `upload` shows to be the
    /// client's (see `upload.rs`) is answered as such and never counts against the origin.
    pub async fn send_upload(
        &self,
        req: &OriginRequest,
        body: Upload,
        upload: &UploadWatch,
    ) -> Result<Response<OriginBody>, ProxyError> {
        use http_body_util::BodyExt;
        self.send_watched(req, Some(body.boxed_unsync()), Some(upload)).await
    }

    async fn send_watched(
        &self,
        req: &OriginRequest,
        body: Option<Body>,
        upload: Option<&UploadWatch>,
    ) -> Result<Response<OriginBody>, ProxyError> {
        // The retry rule: nothing with a body (it cannot be replayed), nothing non-idempotent.
        let replayable = body.is_none() && req.method.is_idempotent();
        let mut body = body;
        let started = tokio::time::Instant::now();
        let deadline = started + self.timeouts.total.get();
        let mut last = ProxyError::Internal("site without origins".to_owned());
        for origin in self.candidates(req) {
            let body = body.take().unwrap_or_else(empty);
            let err = match self.attempt(&origin, req, body, deadline, upload).await {
                Ok(res) if origin.tier != Tier::Origin && edge_error(&res) => {
                    origin.health.failure(&origin.name, &origin.health_cfg);
                    ProxyError::Upstream(format!("answered {} from the edge itself", res.status()))
                }
                Ok(mut res) => {
                    let keep =
                        origin.tier != Tier::Peer || self.cluster.as_ref().is_none_or(|c| c.keep_copies);
                    res.extensions_mut().insert(Answered { tier: origin.tier, keep });
                    return Ok(res);
                }
                Err(e) => e,
            };
            if err.fault() != Fault::Upstream {
                // The client's doing (or ours): not the origin's failure, and never retried.
                return Err(err);
            }
            // A peer or parent that fails is skipped, whatever the failure: the next tier can
            // still answer, and a fill is safe to send again.
            let retry = replayable && (origin.tier != Tier::Origin || err.retry_safe());
            tracing::warn!(origin = %origin.name, tier = ?origin.tier, error = %err, retry, "upstream request failed");
            if !retry {
                return Err(err);
            }
            last = err;
        }
        Err(last)
    }

    /// Each origin's configured URL and whether it takes requests now (metrics).
    pub fn health(&self) -> impl Iterator<Item = (&str, bool)> {
        self.origins.iter().map(|o| (o.name.as_str(), o.health.is_up()))
    }

    /// Servers in the order to try: for a fill, the key's live owners among the peers
    /// (unless a peer sent it) and its live parents by rank; then healthy origins in configured
    /// order, then the others.
    fn candidates(&self, req: &OriginRequest) -> Vec<Arc<Origin>> {
        let mut out = Vec::new();
        if let Some(key) = &req.fill_key {
            if !req.from_peer
                && let Some(cluster) = &self.cluster
            {
                out.extend(cluster.owners(key));
            }
            out.extend(rank(&self.parents, key).into_iter().cloned());
        }
        let up: Vec<bool> = self.origins.iter().map(|o| o.health.is_up()).collect();
        let (healthy, down): (Vec<_>, Vec<_>) = self.origins.iter().zip(up).partition(|(_, up)| *up);
        out.extend(healthy.into_iter().chain(down).map(|(o, _)| o.clone()));
        out
    }

    async fn attempt(
        &self,
        origin: &Origin,
        req: &OriginRequest,
        body: Body,
        deadline: tokio::time::Instant,
        upload: Option<&UploadWatch>,
    ) -> Result<Response<OriginBody>, ProxyError> {
        let connect = origin.timeouts.connect.get();
        let slot = tokio::time::timeout(connect, origin.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                ProxyError::Connect(format!("no free connection within {connect:?} (pool.max_connections)"))
            })?
            .map_err(|_| ProxyError::Internal("connection slots closed".to_owned()))?;
        let mut request = self.build(origin, req, body)?;
        // Only origins are signed: a peer or parent has the same site and signs its own.
        if let Some(signer) = &self.signer
            && origin.tier == Tier::Origin
        {
            signer.sign(&mut request, std::time::SystemTime::now())?;
        }
        let err = match self.head(origin, origin.client.request(request), deadline, upload).await {
            Ok(Ok(res)) => match checked(res) {
                Ok(res) => {
                    origin.health.success(&origin.name);
                    let total = origin.timeouts.total.get();
                    return Ok(res.map(|b| OriginBody::new(b, slot, deadline, total)));
                }
                Err(e) => e,
            },
            Err(_) => ProxyError::Timeout("the response head"),
            Ok(Err(e)) => classify(&e),
        };
        // A client's body that failed, or that the origin was still waiting for when it timed
        // out, is the client's fault.
        if let Some(fault) = upload.and_then(|u| u.fault(matches!(err, ProxyError::Timeout(_)))) {
            tracing::debug!(origin = %origin.name, ?fault, error = %err, "request body failed on the client's side");
            return Err(fault.error());
        }
        if err.fault() == Fault::Upstream {
            origin.health.failure(&origin.name, &origin.health_cfg);
        }
        Err(err)
    }

    /// Waits for the response head: `first_byte` after the request went out — counted from the
    /// end of the client's body when there is one, since an origin answers a request once it
    /// has it (a client that stops sending is cut by its own stall limit) — and never past
    /// `deadline`. `Err` when the time is up.
    async fn head<F: Future>(
        &self,
        origin: &Origin,
        request: F,
        deadline: tokio::time::Instant,
        upload: Option<&UploadWatch>,
    ) -> Result<F::Output, tokio::time::error::Elapsed> {
        let first_byte = origin.timeouts.first_byte.get();
        let mut request = std::pin::pin!(request);
        let mut head_by = deadline.min(tokio::time::Instant::now() + first_byte);
        loop {
            let elapsed = match tokio::time::timeout_at(head_by, request.as_mut()).await {
                Ok(res) => return Ok(res),
                Err(elapsed) => elapsed,
            };
            let next = match upload {
                Some(u) if u.uploading() => tokio::time::Instant::now() + first_byte,
                Some(u) => match u.finished_at() {
                    Some(at) => at + first_byte,
                    None => return Err(elapsed),
                },
                None => return Err(elapsed),
            };
            let next = deadline.min(next);
            if next <= head_by {
                return Err(elapsed);
            }
            head_by = next;
        }
    }

    fn build(&self, origin: &Origin, req: &OriginRequest, body: Body) -> Result<Request<Body>, ProxyError> {
        let path = format!("{}{}", origin.prefix, req.path_and_query);
        let pq = path.parse::<PathAndQuery>().map_err(|_| ProxyError::BadRequest("invalid path"))?;
        // Peers and parents are edges: they route and key by the client's host.
        let client_host = !self.origin_host || origin.tier != Tier::Origin;
        let (host, authority) = match (&req.client_host, client_host) {
            (Some(h), true) => match Authority::try_from(h.as_bytes()) {
                Ok(a) => (h.clone(), a),
                Err(_) => (h.clone(), origin.authority.clone()),
            },
            _ => (origin.host.clone(), origin.authority.clone()),
        };
        let uri = Uri::builder()
            .scheme(origin.scheme.clone())
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
        let mut request = Request::new(body);
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = req.headers.clone();
        request.headers_mut().insert(header::HOST, host);
        request.headers_mut().append(CDN_LOOP, self.cdn_loop.clone());
        match origin.tier {
            Tier::Peer => request.headers_mut().insert(STRATUS_HOP, cluster::FROM_PEER),
            Tier::Parent => request.headers_mut().insert(STRATUS_HOP, FROM_CHILD),
            Tier::Origin => None,
        };
        if let Some(tx) = &req.interim {
            let tx = tx.clone();
            hyper::ext::on_informational(&mut request, move |res| {
                let mut head = Response::new(());
                *head.status_mut() = res.status();
                *head.headers_mut() = res.headers().clone();
                let _ = tx.try_send(head);
            });
        }
        Ok(request)
    }
}

/// `CDN-Loop` (RFC 8586): the CDNs, and here the edges, a request has passed through.
pub const CDN_LOOP: http::HeaderName = http::HeaderName::from_static("cdn-loop");

/// Refuses response heads the edge cannot relay faithfully and fixes framing it can.
///
/// - A `101 Switching Protocols` the edge never asked for (it forwards no `Upgrade`), and
///   statuses outside 100–599 (hyper accepts any three digits), are origin errors (502).
/// - With both `Transfer-Encoding` and `Content-Length` (RFC 9112 §6.3), hyper frames the body by
///   `Transfer-Encoding`; the `Content-Length` is removed before anything is forwarded or stored,
///   so clients never get a length that does not describe the body.
fn checked<B>(mut res: Response<B>) -> Result<Response<B>, ProxyError> {
    let code = res.status().as_u16();
    if code == 101 {
        return Err(ProxyError::Upstream("unsolicited 101 switching protocols".to_owned()));
    }
    if !(100..=599).contains(&code) {
        return Err(ProxyError::Upstream(format!("invalid status {code}")));
    }
    if res.headers().contains_key(header::TRANSFER_ENCODING) {
        res.headers_mut().remove(header::CONTENT_LENGTH);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A site whose one origin answers probes (any request) with 200, probed every 10 ms.
    async fn probed_site() -> (Site, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let probes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = probes.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        async { Ok::<_, std::convert::Infallible>(Response::new(empty())) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        });
        let mut site = Site::catch_all(url.parse().unwrap());
        site.health.path = Some("/healthz".into());
        site.health.interval = "10ms".parse().unwrap();
        (site, probes)
    }

    /// Polls until the origin has seen two probes.
    async fn probing(probes: &std::sync::atomic::AtomicUsize) {
        let seen = async {
            while probes.load(std::sync::atomic::Ordering::Relaxed) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), seen).await.expect("probes arrive");
    }

    #[tokio::test]
    async fn probes_stop_when_the_upstream_is_dropped_or_the_edge_shuts_down() {
        let (site, probes) = probed_site().await;
        let shutdown = CancellationToken::new();
        let outbound = Outbound::new(&DnsConfig::default(), shutdown.clone());

        // Dropped, as when a reload replaces the router.
        let mut up = Upstream::new(&site, &outbound).unwrap();
        probing(&probes).await;
        let tasks = std::mem::take(&mut up.probes);
        assert_eq!(tasks.len(), 1);
        drop(up);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t).await.expect("probe ended").unwrap();
        }

        // The edge shuts down while the upstream is still in use.
        probes.store(0, std::sync::atomic::Ordering::Relaxed);
        let mut up = Upstream::new(&site, &outbound).unwrap();
        probing(&probes).await;
        shutdown.cancel();
        for t in std::mem::take(&mut up.probes) {
            tokio::time::timeout(Duration::from_secs(5), t).await.expect("probe ended").unwrap();
        }
    }

    #[test]
    fn find_looks_inside_io_errors() {
        use super::chain::find;
        use super::dns::DnsError;
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert!(find::<rustls::Error>(&wrapped).is_some());
        let dns = DnsError { name: "a.test".into(), reason: "no record".into() };
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(dns);
        let io = std::io::Error::other(boxed);
        assert_eq!(find::<DnsError>(&io).map(|d| d.name.as_str()), Some("a.test"));
        assert!(find::<DnsError>(&std::io::Error::other("plain")).is_none());
    }
}
