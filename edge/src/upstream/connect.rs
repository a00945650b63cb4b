//! Connections to one origin: DNS (the edge's shared resolver), TCP, and TLS with rustls for
//! `https://` origins, under one connect timeout; and the pooled hyper-util client over them.
//!
//! Each origin gets its own client whose connector always dials that origin, whatever the
//! request URI says. That lets the request URI carry the `Host` the origin should see (the
//! client's, with `origin_host = false`), which HTTP/2 sends as `:authority`, while TCP, the
//! pool and TLS's SNI and certificate check stay with the origin's own name.
//!
//! TLS: TLS 1.2 and 1.3 with the aws-lc-rs provider (the one provider in the build), ALPN
//! `h2` and `http/1.1` — an origin that picks `h2` gets HTTP/2, the others HTTP/1.1.
//! Certificates are verified against the site's `ca_roots` (the compiled-in webpki roots by
//! default, or the system's store) plus its `ca_file`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use stratus_config::edge::{CaRoots, OriginPool};
use tokio::net::TcpStream;

use super::dns::Dns;
use crate::body::{Body, BoxError};
use crate::error::Error;

/// The pooled client of one origin.
pub(crate) type OriginClient = Client<OriginConnector, Body>;

/// The connect step took longer than the site's connect timeout (DNS, TCP and TLS together).
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
pub struct ConnectTimeout(pub Duration);

/// Dials one origin (`target`) for every request, within `timeout`.
#[derive(Clone, Debug)]
pub(crate) struct OriginConnector {
    https: HttpsConnector<HttpConnector<Dns>>,
    target: Uri,
    timeout: Duration,
}

impl tower_service::Service<Uri> for OriginConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, _request_uri: Uri) -> Self::Future {
        let connecting = self.https.call(self.target.clone());
        let limit = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(done) => done,
                Err(_) => Err(Box::new(ConnectTimeout(limit)) as BoxError),
            }
        })
    }
}

/// The rustls configuration for HTTPS upstreams trusted per `ca_roots` and `ca_file`.
pub(crate) fn tls_config(
    ca_roots: CaRoots,
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, Error> {
    let bad = |origin: String, reason: String| Error::Origin { origin, reason };
    let mut roots = RootCertStore::empty();
    match ca_roots {
        CaRoots::Webpki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        CaRoots::System => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "cannot read a system CA certificate");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system CA certificates loaded");
        }
        CaRoots::None => {}
    }
    if let Some(path) = ca_file {
        let name = || format!("ca_file {}", path.display());
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| bad(name(), format!("cannot read the CA file: {e}")))?;
        if certs.is_empty() {
            return Err(bad(name(), "the CA file holds no PEM certificate".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(name(), format!("invalid CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("tls".to_owned(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The pooled client of the server at `target` (`scheme://host:port`).
pub(crate) fn client(
    connect: Duration,
    pool: &OriginPool,
    target: Uri,
    tls: &Arc<rustls::ClientConfig>,
    dns: &Dns,
) -> OriginClient {
    let mut http = HttpConnector::new_with_resolver(dns.clone());
    // Split across the name's addresses by hyper-util, so a dead address leaves time for
    // the next one.
    http.set_connect_timeout(Some(connect));
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(rustls::ClientConfig::clone(tls))
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let connector = OriginConnector { https, target, timeout: connect };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool.idle_timeout.get())
        .pool_max_idle_per_host(pool.max_idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // HTTP/2 origins: grow the flow-control window with the measured bandwidth, so a
        // large object is not throttled to 64 KiB per round trip.
        .http2_adaptive_window(true)
        .build(connector)
}
