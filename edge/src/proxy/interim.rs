//! Forwarding 1xx informational responses (`102 Processing`, `103 Early Hints`) to clients,
//! which a proxy must do (RFC 9110 §15.2) and hyper's server cannot: a hyper service answers
//! with exactly one response.
//!
//! HTTP/2 connections are served with the `h2` crate directly (`proxy/h2/`), whose
//! `SendResponse::send_informational` queues a 1xx HEADERS frame on the request's stream; h2
//! keeps a stream's frames in order, so it always precedes the final response. Such a request
//! carries an [`Interim`] holding its stream's [`H2Reply`].
//!
//! HTTP/1.1 connections stay on hyper, so for them the edge writes the heads itself, below
//! hyper, without ever splitting one of hyper's messages. Every client connection's transport is wrapped in [`InterimIo`]; each HTTP/1.1
//! request carries an [`Interim`] handle (a request extension) through which the pipeline
//! queues an interim head and waits until it is on the wire. The queued bytes go out only
//! inside the wrapper's `poll_flush`, which hyper calls solely when its own write buffer is
//! empty (so none of its messages is half-written), and the pipeline returns the final
//! response only after its interim heads went out (so they always precede it). While a
//! request is being handled, hyper's HTTP/1 dispatcher has nothing of its own left to write
//! for it and polls the handler and then flushes in every turn of its loop, so a queued head
//! leaves at the next turn.
//!
//! Not for HTTP/1.0 clients (RFC 9110 §15.2 forbids it): their requests get no handle.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// At most this many interim responses are forwarded per request; an origin that sends more
/// only costs itself (hyper reads and drops them).
pub const MAX_PER_REQUEST: usize = 16;
/// An interim head larger than this is not forwarded (the final response still is).
const MAX_HEAD: usize = 16 << 10;

/// What the connection and its requests share.
#[derive(Debug, Default)]
struct Shared {
    /// Set while `state.queue` holds bytes: the hot path checks only this.
    queued: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Interim heads not yet written, in order.
    queue: BytesMut,
    /// The first of them is partly written: it must be finished before anything else.
    started: bool,
    /// Heads queued and heads written so far (a sender waits until its number is written).
    queued: u64,
    written: u64,
    /// The connection failed or is gone: nothing more will be written.
    broken: bool,
    /// The request waiting for its heads to go out.
    waiter: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail(&self) {
        let mut s = self.lock();
        s.broken = true;
        s.queue.clear();
        self.queued.store(false, Ordering::Release);
        if let Some(w) = s.waiter.take() {
            w.wake();
        }
    }
}

/// A client connection's transport, able to put interim heads between hyper's messages.
#[derive(Debug)]
pub struct InterimIo<I> {
    inner: I,
    shared: Arc<Shared>,
}

impl<I> InterimIo<I> {
    /// Wraps `inner`; the [`Interim`] handle is for that connection's HTTP/1.1 requests.
    pub fn new(inner: I) -> (Self, Interim) {
        let shared = Arc::new(Shared::default());
        (Self { inner, shared: shared.clone() }, Interim(Sink::Http1(shared)))
    }
}

impl<I> Drop for InterimIo<I> {
    fn drop(&mut self) {
        self.shared.fail();
    }
}

impl<I: AsyncWrite + Unpin> InterimIo<I> {
    /// Writes the queued heads (with `started_only`, only if one is already partly written)
    /// and wakes the request waiting for them.
    fn drain(&mut self, cx: &mut Context<'_>, started_only: bool) -> Poll<io::Result<()>> {
        if !self.shared.queued.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut s = self.shared.lock();
        if started_only && !s.started {
            return Poll::Ready(Ok(()));
        }
        while !s.queue.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &s.queue) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    let _ = s.queue.split_to(n);
                    s.started = !s.queue.is_empty();
                }
                Poll::Ready(result) => {
                    drop(s);
                    self.shared.fail();
                    let e = result.err().unwrap_or_else(|| io::ErrorKind::WriteZero.into());
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        s.written = s.queued;
        self.shared.queued.store(false, Ordering::Release);
        if let Some(w) = s.waiter.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for InterimIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for InterimIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // hyper's own bytes pass straight through; queued heads wait for the next flush, when
        // hyper's message is complete. A head already partly on the wire is finished first:
        // it started when hyper's buffer was empty, so these bytes begin a later message.
        ready!(self.drain(cx, true))?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx, true))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx, false))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.fail();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The response side of one HTTP/2 stream, shared by the task that sends its final response
/// (`proxy/h2/`) and the request's [`Interim`].
pub type H2Reply = Arc<Mutex<h2::server::SendResponse<Bytes>>>;

/// Locks an [`H2Reply`]; nobody holds it across an await.
pub fn lock_reply(reply: &H2Reply) -> MutexGuard<'_, h2::server::SendResponse<Bytes>> {
    // h2 keeps its own state consistent; a panicking holder leaves nothing half-done here.
    reply.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends interim heads to one client request, ahead of its final response: on its HTTP/1.1
/// connection or its HTTP/2 stream.
#[derive(Clone, Debug)]
pub struct Interim(Sink);

#[derive(Clone, Debug)]
enum Sink {
    Http1(Arc<Shared>),
    Http2(H2Reply),
}

impl Interim {
    /// The handle of an HTTP/2 request, whose stream's response side is `reply`.
    pub fn http2(reply: H2Reply) -> Self {
        Self(Sink::Http2(reply))
    }

    /// Writes `status` (a 1xx other than 100 and 101) with `headers` to the client and waits
    /// until it is on the wire (HTTP/2: queued on its stream, ahead of anything sent on it
    /// later). `false` when it was not sent: not interim, too large, or the connection or
    /// stream is gone. Must be awaited to the end before the final response is returned.
    pub async fn send(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if !forwardable(status) {
            return false;
        }
        match &self.0 {
            Sink::Http1(shared) => send_http1(shared, status, headers).await,
            Sink::Http2(reply) => {
                let Some(head) = h2_head(status, headers) else { return false };
                lock_reply(reply).send_informational(head).is_ok()
            }
        }
    }
}

/// Queues an HTTP/1.1 interim head and waits until [`InterimIo`] has written it.
async fn send_http1(shared: &Shared, status: StatusCode, headers: &HeaderMap) -> bool {
    let Some(head) = encode(status, headers) else { return false };
    let mine = {
        let mut s = shared.lock();
        if s.broken {
            return false;
        }
        s.queue.extend_from_slice(&head);
        s.queued += 1;
        shared.queued.store(true, Ordering::Release);
        s.queued
    };
    std::future::poll_fn(|cx| {
        let mut s = shared.lock();
        if s.written >= mine {
            Poll::Ready(true)
        } else if s.broken {
            Poll::Ready(false)
        } else {
            s.waiter = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await
}

/// The origin's 1xx responses on their way from the origin request to the client.
pub type InterimTx = mpsc::Sender<Response<()>>;
/// The receiving end of [`InterimTx`].
pub type InterimRx = mpsc::Receiver<Response<()>>;

/// A channel for the origin's 1xx responses when the client can take them (`client` is set
/// for HTTP/1.1 and HTTP/2 requests): the sender goes into the origin request, the receiver to [`relay`].
/// Small and bounded: when it is full, the origin's further 1xx are dropped.
pub fn channel(client: Option<&Interim>) -> (Option<InterimTx>, Option<InterimRx>) {
    if client.is_none() {
        return (None, None);
    }
    let (tx, rx) = mpsc::channel(4);
    (Some(tx), Some(rx))
}

/// Runs `exchange` (waiting for an origin's final response) while forwarding the 1xx that
/// arrive on `rx` to `client`, each on the wire before `exchange`'s result is returned. At
/// most [`MAX_PER_REQUEST`] are forwarded.
pub async fn relay<T>(
    client: Option<&Interim>,
    rx: Option<InterimRx>,
    exchange: impl Future<Output = T>,
) -> T {
    let (Some(client), Some(mut rx)) = (client, rx) else { return exchange.await };
    tokio::pin!(exchange);
    let mut forwarded = 0;
    loop {
        tokio::select! {
            // 1xx that arrived before the final response go out before it.
            biased;
            Some(info) = rx.recv(), if forwarded < MAX_PER_REQUEST => {
                forwarded += 1;
                client.send(info.status(), info.headers()).await;
            }
            done = &mut exchange => {
                // The origin connection's task queues each 1xx before it hands over the final
                // response, so one that is still queued here came first: it goes first. (The
                // select can see the channel empty, then find the exchange done, when both
                // arrived in one read on another thread.)
                while forwarded < MAX_PER_REQUEST
                    && let Ok(info) = rx.try_recv()
                {
                    forwarded += 1;
                    client.send(info.status(), info.headers()).await;
                }
                return done;
            }
        }
    }
}

/// 1xx that a proxy forwards: not `100 Continue` (the edge answers `Expect` itself, hyper
/// sends it when the body is read) nor `101` (the edge forwards no `Upgrade`).
pub fn forwardable(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::CONTINUE && status != StatusCode::SWITCHING_PROTOCOLS
}

/// The fields of an interim head that go to the client: not the hop-by-hop ones (they
/// describe the origin's connection) nor `Content-Length`.
fn forwarded_fields(headers: &HeaderMap) -> impl Iterator<Item = (&http::HeaderName, &http::HeaderValue)> {
    headers.iter().filter(|(name, _)| {
        !crate::proxy::headers::is_hop_by_hop(name.as_str()) && *name != http::header::CONTENT_LENGTH
    })
}

/// An interim head for an HTTP/2 stream; `None` when its fields would be larger than
/// [`MAX_HEAD`] (counted as HPACK does, 32 bytes per field on top of name and value).
fn h2_head(status: StatusCode, headers: &HeaderMap) -> Option<Response<()>> {
    let mut head = Response::new(());
    *head.status_mut() = status;
    let mut size = 0;
    for (name, value) in forwarded_fields(headers) {
        size += name.as_str().len() + value.len() + 32;
        if size > MAX_HEAD {
            return None;
        }
        head.headers_mut().append(name, value.clone());
    }
    Some(head)
}

/// The HTTP/1.1 text of an interim head; `None` when it would be larger than [`MAX_HEAD`].
fn encode(status: StatusCode, headers: &HeaderMap) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(64);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("Informational").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in forwarded_fields(headers) {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
        if out.len() > MAX_HEAD {
            return None;
        }
    }
    out.put_slice(b"\r\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn heads_are_encoded_without_hop_by_hop_fields() {
        let mut h = HeaderMap::new();
        h.append("link", "</a.css>; rel=preload".parse().unwrap());
        h.append("link", "</b.js>; rel=preload".parse().unwrap());
        h.append("connection", "close".parse().unwrap());
        let text = encode(StatusCode::from_u16(103).unwrap(), &h).unwrap();
        assert_eq!(
            &text[..],
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nlink: </b.js>; rel=preload\r\n\r\n"
        );
        assert!(!forwardable(StatusCode::CONTINUE));
        assert!(!forwardable(StatusCode::SWITCHING_PROTOCOLS));
        assert!(!forwardable(StatusCode::OK));
        assert!(forwardable(StatusCode::PROCESSING));
        let mut big = HeaderMap::new();
        big.insert("x", "a".repeat(MAX_HEAD).parse().unwrap());
        assert!(encode(StatusCode::PROCESSING, &big).is_none());
    }

    /// Queued heads leave only at a flush, after the bytes written before it, and the sender
    /// learns when they are out.
    #[tokio::test]
    async fn heads_leave_at_the_next_flush_in_order() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut io, interim) = InterimIo::new(server);
        io.write_all(b"previous response tail|").await.unwrap();
        let sent = tokio::spawn(async move { interim.send(StatusCode::PROCESSING, &HeaderMap::new()).await });
        // The head is queued, not written: nothing goes out before a flush.
        tokio::time::timeout(std::time::Duration::from_millis(50), async {
            while !io.shared.queued.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        io.flush().await.unwrap();
        assert!(sent.await.unwrap());
        io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        drop(io);
        let mut got = Vec::new();
        let mut client = client;
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "previous response tail|HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\n"
        );
    }

    /// A head that the socket takes only in part is finished before any later bytes of
    /// hyper's (a `100 Continue`, the final response), never interleaved with them.
    #[tokio::test]
    async fn a_partly_written_head_is_finished_first() {
        let (mut client, server) = tokio::io::duplex(8);
        let (mut io, interim) = InterimIo::new(server);
        let sent = tokio::spawn(async move { interim.send(StatusCode::PROCESSING, &HeaderMap::new()).await });
        while !io.shared.queued.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        // The flush fills the 8-byte pipe and stops partway.
        let flushed = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_flush(cx))).await;
        assert!(flushed.is_pending());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        assert!(sent.await.unwrap());
        drop(io);
        assert_eq!(
            String::from_utf8(reader.await.unwrap()).unwrap(),
            "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
        );
    }

    /// The origin's task can queue a 1xx and complete the final response between two polls of
    /// `relay` (both in one read, on another thread): the 1xx still goes out, and first.
    #[tokio::test]
    async fn a_1xx_queued_as_the_exchange_completes_is_still_forwarded() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut io, interim) = InterimIo::new(server);
        let (tx, rx) = channel(Some(&interim));
        let tx = tx.unwrap();
        // Completes on its first poll, after the relay found the channel empty, having queued
        // a 102 just before.
        let exchange = std::future::poll_fn(move |_| {
            let mut head = Response::new(());
            *head.status_mut() = StatusCode::PROCESSING;
            tx.try_send(head).unwrap();
            Poll::Ready("final")
        });
        // The connection flushes as hyper's dispatcher would, until the relay returns.
        let flushing = async {
            loop {
                io.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        };
        let relayed = tokio::select! {
            done = relay(Some(&interim), rx, exchange) => done,
            () = flushing => unreachable!(),
        };
        assert_eq!(relayed, "final");
        drop(io);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), "HTTP/1.1 102 Processing\r\n\r\n");
    }

    #[tokio::test]
    async fn a_gone_connection_fails_the_sender() {
        let (_client, server) = tokio::io::duplex(64);
        let (io, interim) = InterimIo::new(server);
        drop(io);
        assert!(!interim.send(StatusCode::from_u16(103).unwrap(), &HeaderMap::new()).await);
    }
}
