//! Accepting connections: HTTP/1.1 and HTTP/2 on one port via hyper-util's auto builder (h2c
//! by prior knowledge on plain listeners, h2 or http/1.1 by ALPN after a TLS handshake), the
//! client limits hyper can enforce, a connection cap, and graceful shutdown (stop accepting,
//! let in-flight responses finish within the drain timeout).
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
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use stratus_config::edge::Limits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::body::{Body, BoxError};
use crate::proxy::tls::Acceptor;

/// A connection builder with the client limits applied: the request head size (larger → 431
/// from hyper), the header count, the time to send a head (slowloris).
pub fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    let head = usize::try_from(limits.max_header_size.bytes()).unwrap_or(usize::MAX).max(8192);
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.get())
        .max_buf_size(head)
        .max_headers(limits.max_headers);
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

/// Serves `listener` with `handler` until `shutdown`, then drains for at most `drain`. With
/// `tls`, each connection starts with a TLS handshake (in its own task, so a slow handshake
/// never holds up the accept loop).
pub async fn serve<H, F>(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    handler: H,
    tls: Option<Arc<Acceptor>>,
    max_connections: usize,
    shutdown: CancellationToken,
    drain: Duration,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
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
        let _ = stream.set_nodelay(true);
        let (h, builder, watcher, tls) = (handler.clone(), builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let result = match tls {
                None => connection(TokioIo::new(stream), &builder, h, peer, Transport::Plain, watcher).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        connection(TokioIo::new(tls), &builder, h, peer, Transport::Tls, watcher).await
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
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => tracing::warn!(?drain, "drain timeout; closing remaining connections"),
    }
}

/// Serves one connection (plain or TLS) until it closes or graceful shutdown ends it.
async fn connection<I, H, F>(
    io: TokioIo<I>,
    builder: &auto::Builder<TokioExecutor>,
    handler: H,
    peer: SocketAddr,
    transport: Transport,
    watcher: Watcher,
) -> Result<(), BoxError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(transport);
        let fut = handler(req, peer);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    watcher.watch(builder.serve_connection(io, service).into_owned()).await
}
