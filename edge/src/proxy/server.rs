//! Accepting connections: HTTP/1.1 and HTTP/2 on one port (h2c by prior knowledge on plain
//! listeners, h2 or http/1.1 by ALPN after a TLS handshake; `preface.rs` tells them apart),
//! HTTP/1.1 served by hyper and HTTP/2 by the `h2` crate (`http2/`, because hyper's h2 server
//! cannot send 1xx responses), the client limits, a connection cap, idle timeouts
//! (`conns.rs`), and graceful shutdown (stop accepting, let in-flight responses finish within
//! the drain timeout).
//!
//! The handler gets every request with its [`Downstream`]: the peer, whether it arrived over
//! TLS, and its 1xx handle.
//!
//! HTTP/2 limits, chosen like nginx's and Cloudflare's defaults: 128 concurrent streams per
//! connection (nginx `http2_max_concurrent_streams`); receive windows of 1 MiB per stream and
//! 2 MiB per connection (they only bound request bodies, responses follow the client's
//! windows); 16 KiB frames (the protocol default, which clients expect); at most 20 streams
//! reset before the handler saw them and 1024 resets caused by errors, so a rapid-reset flood
//! (CVE-2023-44487) closes the connection instead of burning CPU; a PING every idle timeout
//! and 20 s for its answer; a stream with 400 KiB of response data queued for the socket
//! takes no more from its body until some is written (hyper's default, kept).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use stratus_config::edge::Limits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{Body, BoxError};
use crate::proxy::conns::{Closing, Conn, Conns, IdleLimits, Tracked};
use crate::proxy::downstream::{Downstream, Transport};
use crate::proxy::http2;
use crate::proxy::interim::InterimIo;
use crate::proxy::preface::{self, Protocol};
use crate::proxy::tls::Acceptor;

/// hyper's HTTP/1 header-count limit when none is set (`DEFAULT_MAX_HEADERS` in hyper 1).
const HYPER_MAX_HEADERS: usize = 100;

/// How a listener's connections are served, per protocol.
#[derive(Clone, Debug)]
pub struct Protocols {
    http1: http1::Builder,
    http2: http2::Settings,
}

/// The protocols with the client limits applied: the request head size (larger → 431 from
/// hyper on HTTP/1.1; on HTTP/2 the header list size h2 announces and enforces), the header
/// count, the time to send a head (slowloris), and the HTTP/2 limits of the module docs.
pub fn builder(limits: &Limits) -> Protocols {
    let head = usize::try_from(limits.max_header_size.bytes()).unwrap_or(usize::MAX).max(8192);
    let mut h1 = http1::Builder::new();
    // No header-read timer in hyper: hyper 1 boxes a new timer and puts it in tokio's wheel for
    // every keep-alive request (about 600 instructions and an allocation a hit,
    // `docs/performance.md`). The connection's watch (`conns.rs`) cuts an HTTP/1.1 head that is
    // not complete within `header_read_timeout` of the connection's start or its last response
    // instead. `None` explicitly: hyper's default would be 30 s.
    h1.header_read_timeout(None).max_buf_size(head);
    // hyper's own limit is 100 headers. Naming a limit, even that one, makes hyper fill a
    // 100-slot array on every request (`SmallVec::from_elem`, about 3 % of a hit's
    // instructions, `docs/performance.md`); the default path uses an inline array.
    if limits.max_headers != HYPER_MAX_HEADERS {
        h1.max_headers(limits.max_headers);
    }
    let mut h2 = h2::server::Builder::new();
    h2.max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(2 << 20)
        .max_frame_size(16 << 10)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(1024))
        .max_send_buffer_size(400 << 10);
    Protocols {
        http1: h1,
        http2: http2::Settings {
            builder: h2,
            keep_alive_interval: Some(limits.idle_timeout.get()),
            keep_alive_timeout: Duration::from_secs(20),
        },
    }
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
    /// `SO_SNDBUF` of each connection; `None` leaves it to the kernel's autotuning.
    pub send_buffer: Option<usize>,
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
            send_buffer: limits.send_buffer.map(|b| usize::try_from(b.bytes()).unwrap_or(usize::MAX)),
        }
    }
}

/// Serves `listener` with `handler` until `shutdown`, then drains for at most `limits.drain`.
/// With `tls`, each connection starts with a TLS handshake (in its own task, so a slow
/// handshake never holds up the accept loop). At the connection cap an accepted connection
/// waits for a slot while idle connections are shed for it (see `conns.rs`).
pub async fn serve<H, F>(
    listener: TcpListener,
    builder: Protocols,
    handler: H,
    tls: Option<Arc<Acceptor>>,
    limits: ConnLimits,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Body>, Downstream) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let tasks = TaskTracker::new();
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let conns = Conns::new(limits.idle);
    tune(&listener, limits.send_buffer);
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
        let (h, builder, tls, conns, stop) =
            (handler.clone(), builder.clone(), tls.clone(), conns.clone(), shutdown.clone());
        // Boxed: the connection's state machine (TLS, hyper or h2) is about 10 KB, and tokio
        // moves a task's future by value several times between spawn and completion; a box
        // moves once (docs/performance.md, TLS).
        tasks.spawn(Box::pin(async move {
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
        }));
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(limits.drain, tasks.wait()).await.is_err() {
        tracing::warn!(drain = ?limits.drain, "drain timeout; closing remaining connections");
    }
}

/// Socket options of the listener's connections: no Nagle delay (a response's last segment
/// goes out at once), and the send buffer when configured (`docs/performance.md`, "Large
/// objects"). Set once on the listening socket, whose options Linux copies into every
/// connection it accepts, rather than with one `setsockopt` per connection (`docs/performance.md`,
/// TLS); the test below checks that accepted connections have them.
fn tune(listener: &TcpListener, send_buffer: Option<usize>) {
    let socket = socket2::SockRef::from(listener);
    if let Err(e) = socket.set_tcp_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on the listener");
    }
    if let Some(size) = send_buffer
        && let Err(e) = socket.set_send_buffer_size(size)
    {
        tracing::warn!(error = %e, size, "cannot set the send buffer");
    }
}

/// Serves one connection (plain or TLS) until it closes; asks it to close gracefully when it
/// idles out, is shed, or the edge shuts down. Its first bytes choose the protocol.
async fn connection<I, H, F>(
    io: I,
    protocols: &Protocols,
    handler: H,
    peer: SocketAddr,
    transport: Transport,
    conn: &Conn,
    shutdown: &CancellationToken,
) -> Result<(), BoxError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Body>, Downstream) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // One watch for the whole connection: a client that sends nothing is closed like any
    // idle connection.
    let mut close = conn.close_requested(shutdown);
    let (protocol, io) = tokio::select! {
        sniffed = preface::sniff(io) => sniffed?,
        () = &mut close => return Ok(()),
    };
    match protocol {
        Protocol::Http2 => {
            http2::serve(io, &protocols.http2, handler, peer, transport, conn, &mut close, CLOSE_GRACE).await
        }
        Protocol::Http1 => {
            serve_http1(io, &protocols.http1, handler, peer, transport, conn, &mut close).await
        }
    }
}

/// Serves an HTTP/1.x connection with hyper. HTTP/1.1 requests carry an
/// [`Interim`](crate::proxy::interim::Interim) handle for forwarding 1xx responses
/// (`interim.rs`).
async fn serve_http1<I, H, F>(
    io: I,
    builder: &http1::Builder,
    handler: H,
    peer: SocketAddr,
    transport: Transport,
    conn: &Conn,
    close: &mut Closing<'_>,
) -> Result<(), BoxError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Body>, Downstream) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    conn.http1();
    let (io, interim) = InterimIo::new(io);
    let io = TokioIo::new(io);
    let service = hyper::service::service_fn(|req: Request<Incoming>| {
        let busy = conn.busy();
        // RFC 9110 §15.2: no 1xx to HTTP/1.0 clients.
        let interim = (req.version() == http::Version::HTTP_11).then(|| interim.clone());
        let from = Downstream { peer, transport, interim };
        let fut = handler(req.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()), from);
        async move { Ok::<_, Infallible>(fut.await.map(|b| Tracked::new(b, busy))) }
    });
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    tokio::select! {
        done = served.as_mut() => return done.map_err(Into::into),
        () = close => {}
    }
    // No request yet: nothing to finish. hyper's graceful close would wait for a first head
    // that is still arriving (a slowloris), so the connection is dropped at once.
    if !conn.served_any() {
        return Ok(());
    }
    served.as_mut().graceful_shutdown();
    tokio::select! {
        done = served.as_mut() => done.map_err(Into::into),
        () = conn.idle_for(CLOSE_GRACE) => Ok(()),
    }
}

/// How long a peer with nothing in flight gets to finish a graceful close (an HTTP/2 GOAWAY
/// waits for the answer to a PING) before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    /// The options set on the listener reach the sockets it accepts: Linux reports twice the
    /// size asked for (it counts its own bookkeeping), so the buffer is at least the configured
    /// size and far below the autotuned maximum.
    #[tokio::test]
    async fn the_listeners_socket_options_reach_accepted_connections() {
        for send_buffer in [Some(64 << 10), None] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tune(&listener, send_buffer);
            let addr = listener.local_addr().expect("address");
            let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (accepted, _) = listener.accept().await.expect("accept");
            assert!(accepted.nodelay().expect("TCP_NODELAY"), "send buffer {send_buffer:?}");
            let size = socket2::SockRef::from(&accepted).send_buffer_size().expect("SO_SNDBUF");
            if send_buffer.is_some() {
                assert!((64 << 10..=256 << 10).contains(&size), "SO_SNDBUF {size}");
            }
        }
    }
}
