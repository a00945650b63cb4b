//! Serving HTTP/2 connections (h2c by prior knowledge, h2 after ALPN) with the `h2` crate
//! directly rather than through hyper, because hyper's h2 server cannot send 1xx responses
//! (hyperium/hyper#4114) and a proxy must forward them (RFC 9110 §15.2). HTTP/1.1 stays on
//! hyper (`server.rs`).
//!
//! What hyper did for us is done here with the same settings (`server.rs` has the numbers):
//! the h2 [`Builder`] limits (concurrent streams, header list size, windows, frame size,
//! rapid-reset protection, send buffer), a keep-alive PING every interval whose answer must
//! come within the timeout, one task per stream (`stream.rs`), and a graceful close (GOAWAY,
//! streams in flight finish) when `conns.rs` or shutdown asks for it.
//!
//! ```text
//! handshake ─► accept ─► stream task: RecvBody ─► handler ─► 1xx (Interim) … final head ─► body
//!     ▲           │
//!     └ close ◄───┴─ close_requested ─► GOAWAY ─► streams finish (or CLOSE_GRACE idle) ─► end
//! ```

mod recv;
mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::server::Builder;
use h2::{Ping, PingPong};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::{Body, BoxError};
use crate::proxy::conns::{Closing, Conn};
use crate::proxy::downstream::{Downstream, Transport};

/// How HTTP/2 connections are served.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The h2 connection settings and limits.
    pub builder: Builder,
    /// A PING goes out this often; `None`: never.
    pub keep_alive_interval: Option<Duration>,
    /// A PING not answered within this closes the connection.
    pub keep_alive_timeout: Duration,
}

/// Serves one HTTP/2 connection until it closes; closes it gracefully once `close` resolves
/// (idle, shed, shutdown), giving a peer with nothing in flight `grace` to finish the close.
/// The handler gets every request with its [`Downstream`] (`peer`, `transport`, its 1xx
/// handle).
#[allow(clippy::too_many_arguments)]
pub async fn serve<I, H, F>(
    io: I,
    settings: &Settings,
    handler: H,
    peer: SocketAddr,
    transport: Transport,
    conn: &Conn,
    close: &mut Closing<'_>,
    grace: Duration,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Body>, Downstream) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut h2 = tokio::select! {
        done = settings.builder.handshake::<_, Bytes>(io) => done?,
        () = &mut *close => return Ok(()),
    };
    let alive = keep_alive(h2.ping_pong(), settings.keep_alive_interval, settings.keep_alive_timeout);
    tokio::pin!(alive);
    let accept = |(req, reply): (Request<h2::RecvStream>, h2::server::SendResponse<Bytes>)| {
        tokio::spawn(stream::serve(req, reply, handler.clone(), peer, transport, conn.busy()));
    };
    loop {
        tokio::select! {
            next = h2.accept() => match next {
                Some(Ok(pair)) => accept(pair),
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            () = &mut *close => break,
            () = &mut alive => return Err("http2 keep-alive ping not answered".into()),
        }
    }
    // GOAWAY (after a PING round trip, so no stream the client opened meanwhile is refused);
    // the streams already open finish, and the connection ends when the last one has.
    h2.graceful_shutdown();
    let idle = conn.idle_for(grace);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            next = h2.accept() => match next {
                Some(Ok(pair)) => accept(pair),
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            () = &mut idle => return Ok(()),
            () = &mut alive => return Err("http2 keep-alive ping not answered".into()),
        }
    }
}

/// Resolves when the peer has not answered a PING within `timeout`; sends one every
/// `interval`. Never resolves without an interval, or once the connection is gone (the accept
/// loop reports that).
async fn keep_alive(ping: Option<PingPong>, interval: Option<Duration>, timeout: Duration) {
    let (Some(mut ping), Some(interval)) = (ping, interval) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping.ping(Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}
