//! Accepting connections: HTTP/1.1 and HTTP/2 on one port via hyper-util's auto builder (h2c
//! by prior knowledge on plain listeners, h2 or http/1.1 by ALPN after a TLS handshake), the
//! client limits hyper can enforce, a connection cap, idle timeouts (`conns.rs`), and graceful
//! shutdown (stop accepting, let in-flight responses finish within the drain timeout).
//!
//! Every request carries a [`Transport`] extension saying whether it arrived over TLS.
//!
//! HTTP/2 limits, chosen like nginx's and Cloudflare's defaults: 128 concurrent streams per
//! connection (nginx `http2_max_concurrent_streams`); receive windows of 1 MiB per stream and
//! 2 MiB per connection (they only bound request bodies, responses follow the client's
//! windows); 16 KiB frames (the protocol default, which clients expect); at most 20 streams
//! reset before the handler saw them and 1024 resets caused by errors, so a rapid-reset flood
//! (CVE-2023-44487) closes the connection instead of burning CPU; a PING every idle timeout
//! and 20 s for its answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use stratus_config::edge::Limits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{Body, BoxError};
use crate::proxy::conns::{Conn, Conns, IdleLimits, Tracked};
use crate::proxy::interim::InterimIo;
use crate::proxy::tls::Acceptor;

/// hyper's HTTP/1 header-count limit when none is set (`DEFAULT_MAX_HEADERS` in hyper 1).
const HYPER_MAX_HEADERS: usize = 100;

/// A connection builder with the client limits applied: the request head size (larger → 431
/// from hyper), the header count, the time to send a head (slowloris).
pub fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    let head = usize::try_from(limits.max_header_size.bytes()).unwrap_or(usize::MAX).max(8192);
    let mut h1 = b.http1();
    h1.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout.get()).max_buf_size(head);
    // hyper's own limit is 100 headers. Naming a limit, even that one, makes hyper fill a
    // 100-slot array on every request (`SmallVec::from_elem`, about 3 % of a hit's
    // instructions, `docs/performance.md`); the default path uses an inline array.
    if limits.max_headers != HYPER_MAX_HEADERS {
        h1.max_headers(limits.max_headers);
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(2 << 20)
        .max_frame_size(16 << 10)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(Some(limits.idle_timeout.get()))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// How a request reached us; an extension on every request [`serve`] hands to its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Cleartext HTTP/1.1 or h2c.
    Plain,
    /// HTTP/1.1 or h2 inside TLS.
    Tls,
}

/// What [`serve`] enforces on a listener's connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Open connections; more wait until an idle one is shed or a busy one closes.
    pub max_connections: usize,
    /// Idle timeouts.
    pub idle: IdleLimits,
    /// On shutdown, how long responses in flight may take to finish.
    pub drain: Duration,
}

impl ConnLimits {
    /// The limits of client listeners, from `[edge.limits]`.
    pub fn clients(limits: &Limits) -> Self {
        Self {
            max_connections: limits.max_connections,
            idle: IdleLimits {
                first_request: limits.header_read_timeout.get(),
                between_requests: limits.idle_timeout.get(),
            },
            drain: limits.drain_timeout.get(),
        }
    }
}

/// Serves `listener` with `handler` until `shutdown`, then drains for at most `limits.drain`.
/// With `tls`, each connection starts with a TLS handshake (in its own task, so a slow
/// handshake never holds up the accept loop). At the connection cap an accepted connection
/// waits for a slot while idle connections are shed for it (see `conns.rs`).
pub async fn serve<H, F>(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    handler: H,
    tls: Option<Arc<Acceptor>>,
    limits: ConnLimits,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let tasks = TaskTracker::new();
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let conns = Conns::new(limits.idle);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: idle connections make room. Until one does, this connection
                // waits here and the next ones in the kernel's listen backlog.
                let _waiting = conns.shed();
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (h, builder, tls, conns, stop) =
            (handler.clone(), builder.clone(), tls.clone(), conns.clone(), shutdown.clone());
        tasks.spawn(async move {
            let result = match tls {
                None => {
                    let conn = conns.open();
                    connection(stream, &builder, h, peer, Transport::Plain, &conn, &stop).await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let conn = conns.open();
                        connection(tls, &builder, h, peer, Transport::Tls, &conn, &stop).await
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer, error = %e, "tls handshake failed");
                        Ok(())
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(limits.drain, tasks.wait()).await.is_err() {
        tracing::warn!(drain = ?limits.drain, "drain timeout; closing remaining connections");
    }
}

/// Serves one connection (plain or TLS) until it closes; asks it to close gracefully when it
/// idles out, is shed, or the edge shuts down. HTTP/1.1 requests carry an
/// [`Interim`](crate::proxy::interim::Interim) handle
/// for forwarding 1xx responses (`interim.rs`).
async fn connection<I, H, F>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    handler: H,
    peer: SocketAddr,
    transport: Transport,
    conn: &Conn,
    shutdown: &CancellationToken,
) -> Result<(), BoxError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let (io, interim) = InterimIo::new(io);
    let io = TokioIo::new(io);
    let service = hyper::service::service_fn(|mut req: Request<Incoming>| {
        let busy = conn.busy();
        req.extensions_mut().insert(transport);
        // RFC 9110 §15.2: no 1xx to HTTP/1.0 clients; HTTP/2 cannot take them this way.
        if req.version() == http::Version::HTTP_11 {
            req.extensions_mut().insert(interim.clone());
        }
        let fut = handler(req, peer);
        async move { Ok::<_, Infallible>(fut.await.map(|b| Tracked::new(b, busy))) }
    });
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    tokio::select! {
        done = served.as_mut() => return done,
        () = conn.close_requested(shutdown) => {}
    }
    served.as_mut().graceful_shutdown();
    tokio::select! {
        done = served.as_mut() => done,
        () = conn.idle_for(CLOSE_GRACE) => Ok(()),
    }
}

/// How long a peer with nothing in flight gets to finish a graceful close (an HTTP/2 GOAWAY
/// waits for the answer to a PING) before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
