//! Opening connections: TCP (no Nagle), optional TLS with ALPN (rustls, aws-lc-rs), then a raw
//! hyper HTTP/1.1 or HTTP/2 handshake. No pool: each worker owns its connection, so a run with
//! `-c 32` holds exactly 32 connections.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use crate::error::Error;
use crate::targets::Origin;

/// The request body type every connection sends.
pub(crate) type Body = Full<Bytes>;
type Io = TokioIo<Counted<Either<TcpStream, TlsStream<TcpStream>>>>;

/// The sending half of a connection.
#[derive(Debug)]
pub(crate) enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// The half that does the I/O; it must be polled for requests to make progress.
// One per connection, moved once into its task and polled in place there: boxing the larger
// HTTP/1.1 variant would only add a pointer chase to the hot path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Driver {
    H1(http1::Connection<Io, Body>),
    H2(http2::Connection<Io, Body, TokioExecutor>),
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::H1(_) => "Driver::H1",
            Self::H2(_) => "Driver::H2",
        })
    }
}

impl Driver {
    /// Runs the connection until it closes.
    pub async fn run(self) {
        // The outcome reaches the workers through their requests; nothing to add here.
        let _ = match self {
            Self::H1(conn) => conn.await,
            Self::H2(conn) => conn.await,
        };
    }
}

/// Opens connections to one origin.
#[derive(Clone)]
pub(crate) struct Connector {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    http2: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("addr", &self.addr).field("http2", &self.http2).finish()
    }
}

impl Connector {
    /// Resolves the origin once (no DNS on the hot path) and prepares TLS.
    pub async fn new(origin: &Origin, http2: bool, insecure: bool) -> Result<Self, Error> {
        let addr = tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| Error::Resolve(origin.host.clone(), e))?
            .next()
            .ok_or_else(|| Error::Resolve(origin.host.clone(), io::Error::other("no address")))?;
        let tls = if origin.tls {
            let name = ServerName::try_from(origin.host.clone())
                .map_err(|e| Error::Invalid(format!("invalid TLS server name {:?}: {e}", origin.host)))?;
            Some((TlsConnector::from(Arc::new(tls_config(http2, insecure)?)), name))
        } else {
            None
        };
        Ok(Self { addr, tls, http2 })
    }

    /// Opens one connection; `read` counts the bytes received on it.
    pub async fn connect(&self, read: Arc<AtomicU64>) -> io::Result<(Sender, Driver)> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let stream = match &self.tls {
            None => Either::Left(tcp),
            Some((connector, name)) => Either::Right(connector.connect(name.clone(), tcp).await?),
        };
        let io = TokioIo::new(Counted { inner: stream, read });
        if self.http2 {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(8 << 20)
                .handshake(io)
                .await
                .map_err(io::Error::other)?;
            Ok((Sender::H2(send), Driver::H2(conn)))
        } else {
            let (send, conn) = http1::handshake(io).await.map_err(io::Error::other)?;
            Ok((Sender::H1(send), Driver::H1(conn)))
        }
    }
}

fn tls_config(http2: bool, insecure: bool) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!("no system root certificates found; use --insecure for test certificates");
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![if http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    Ok(config)
}

/// Accepts any certificate (`--insecure`) but still checks handshake signatures, so the
/// connection is encrypted like a verified one and costs the same CPU.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A stream that counts the bytes read from it (wire bytes, like wrk's transfer figure).
#[derive(Debug)]
pub(crate) struct Counted<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            // One connection's counter, written by its own task only: an uncontended add.
            self.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
