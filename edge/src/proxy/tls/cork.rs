//! Sending a TLS 1.3 connection's session tickets with its first response instead of alone.
//!
//! rustls writes its NewSessionTicket messages the moment it has read the client's Finished,
//! and tokio-rustls flushes them before it hands the connection over: one more `writev`, and
//! on loopback one more segment for both ends to process, per handshake, in front of the
//! response that follows a moment later (`docs/performance.md`, TLS). [`Cork`] sits between
//! rustls and the socket and holds exactly those bytes: it reads the version from our
//! ServerHello as it is written (TLS 1.2 passes untouched: there the client waits for what
//! the server writes after its Finished), and once the client has answered our complete
//! first flight, what rustls writes is post-handshake data and is held, the handshake's final
//! flush included. [`Cork::release`] (called when the handshake is done) lets the held bytes
//! go out in the same `writev` as the next write (the HTTP/1.1 response, or the HTTP/2
//! SETTINGS), or at the next flush or shutdown. A connection dropped before any of those loses
//! its tickets, which only means its client does a full handshake next time; likewise the alert
//! rustls writes when the client's Finished does not verify is dropped with the connection.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::hello::{self, ServerHello};

/// The most bytes held: two tickets are about 400. Past it, held bytes go out at once.
const HOLD_MAX: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing of ours written yet (or only a HelloRetryRequest).
    Hello,
    /// Our TLS 1.3 first flight is being written; `complete` once rustls had nothing left.
    Flight { complete: bool },
    /// The client answered our flight: writes are held, flushes have nothing to do.
    Hold,
    /// The handshake is done: held bytes go out first.
    Release,
    /// Everything passes through.
    Open,
}

/// A transport that holds the TLS 1.3 post-handshake messages until there is more to send.
#[derive(Debug)]
pub struct Cork<S> {
    inner: S,
    state: State,
    held: Vec<u8>,
}

impl<S> Cork<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, state: State::Hello, held: Vec::new() }
    }

    /// The handshake finished: whatever was held goes out with the next write or flush.
    pub fn release(&mut self) {
        self.state = if self.held.is_empty() { State::Open } else { State::Release };
    }
}

impl<S: AsyncWrite + Unpin> Cork<S> {
    /// Writes the held bytes, then `bufs` in the same call where they fit; `Ok(n)` counts only
    /// bytes of `bufs`. Returns `Pending` only after the inner transport did.
    fn poll_release(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        while !self.held.is_empty() {
            let mut all = Vec::with_capacity(bufs.len() + 1);
            all.push(IoSlice::new(&self.held));
            all.extend(bufs.iter().map(|b| IoSlice::new(b)));
            let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &all))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_held = n.min(self.held.len());
            self.held.drain(..from_held);
            if self.held.is_empty() {
                self.held = Vec::new();
                self.state = State::Open;
                if n > from_held {
                    return Poll::Ready(Ok(n - from_held));
                }
            }
        }
        self.state = State::Open;
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Cork<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if self.state == (State::Flight { complete: true }) && buf.filled().len() > before {
            self.state = State::Hold;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cork<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        match this.state {
            State::Open => return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            State::Hello => {
                this.state = match bufs.first().map(|b| hello::server_hello(b)) {
                    Some(ServerHello::Tls13) => State::Flight { complete: false },
                    Some(ServerHello::Retry) => State::Hello,
                    _ => State::Open,
                };
            }
            State::Flight { .. } => {}
            State::Hold if this.held.len() + len <= HOLD_MAX => {
                for b in bufs {
                    this.held.extend_from_slice(b);
                }
                return Poll::Ready(Ok(len));
            }
            State::Hold | State::Release => {
                this.state = State::Release;
                return this.poll_release(cx, bufs);
            }
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if let State::Flight { complete } = &mut this.state {
            *complete = n == len;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            // rustls' bytes are with us, and the client is not waiting for them.
            State::Hold => return Poll::Ready(Ok(())),
            State::Release => {
                ready!(this.poll_release(cx, &[]))?;
            }
            _ => {}
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Writes what is held and flushes, but leaves the FIN to the close that follows: rustls
    /// has just written its close_notify, and the connection task drops the stream as soon as
    /// hyper's or h2's connection ends with this shutdown, so `close(2)` sends the same FIN a
    /// moment later, without the `shutdown(2)` call every connection paid for it
    /// (`docs/performance.md`, TLS). A connection never lingers half-closed after a shutdown:
    /// no reader of ours waits for the peer's FIN, and unread data from the peer turns the
    /// close into a reset either way.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.state, State::Hold | State::Release) {
            ready!(this.poll_release(cx, &[]))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    /// A ServerHello record choosing TLS 1.3 (supported_versions 0x0304), 1.2 (none), or a
    /// HelloRetryRequest (its fixed random).
    fn server_hello(version13: bool, retry: bool) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend(if retry { hello::RETRY_RANDOM } else { [5u8; 32] });
        body.extend([0, 0x13, 0x01, 0]);
        let exts: Vec<u8> = if version13 { vec![0, 43, 0, 2, 3, 4] } else { vec![0, 11, 0, 2, 1, 0] };
        body.extend(u16::try_from(exts.len()).unwrap().to_be_bytes());
        body.extend(exts);
        let mut msg = vec![2];
        msg.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        msg.extend(body);
        let mut rec = vec![22, 3, 3];
        rec.extend(u16::try_from(msg.len()).unwrap().to_be_bytes());
        rec.extend(msg);
        rec
    }

    async fn pending_bytes(peer: &mut DuplexStream) -> Vec<u8> {
        let mut got = vec![0; 8192];
        match tokio::time::timeout(std::time::Duration::from_millis(50), peer.read(&mut got)).await {
            Ok(n) => got[..n.unwrap()].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    #[tokio::test]
    async fn tls13_tickets_go_out_with_the_first_response() {
        let (ours, mut peer) = duplex(1 << 16);
        let mut cork = Cork::new(ours);
        let sh = server_hello(true, false);
        cork.write_all(&sh).await.unwrap();
        cork.flush().await.unwrap();
        assert_eq!(pending_bytes(&mut peer).await, sh);
        // The client's Finished arrives; rustls answers with tickets and flushes.
        peer.write_all(b"finished").await.unwrap();
        let mut got = [0; 8];
        cork.read_exact(&mut got).await.unwrap();
        cork.write_all(b"tickets").await.unwrap();
        cork.flush().await.unwrap();
        assert_eq!(pending_bytes(&mut peer).await, b"");
        cork.release();
        cork.write_all(b"+response").await.unwrap();
        cork.flush().await.unwrap();
        assert_eq!(pending_bytes(&mut peer).await, b"tickets+response");
        cork.write_all(b"next").await.unwrap();
        assert_eq!(pending_bytes(&mut peer).await, b"next");
    }

    #[tokio::test]
    async fn held_bytes_go_out_at_flush_or_shutdown_without_a_write() {
        for shutdown in [false, true] {
            let (ours, mut peer) = duplex(1 << 16);
            let mut cork = Cork::new(ours);
            cork.write_all(&server_hello(true, false)).await.unwrap();
            pending_bytes(&mut peer).await;
            peer.write_all(b"f").await.unwrap();
            cork.read_exact(&mut [0]).await.unwrap();
            cork.write_all(b"tickets").await.unwrap();
            cork.release();
            if shutdown {
                cork.shutdown().await.unwrap();
            } else {
                cork.flush().await.unwrap();
            }
            assert_eq!(pending_bytes(&mut peer).await, b"tickets");
        }
    }

    /// Shutdown writes what rustls gave it (the close_notify) but leaves the FIN to the drop
    /// that follows it on every connection: the peer reads everything, then end of stream.
    #[tokio::test]
    async fn shutdown_sends_everything_and_the_drop_ends_the_stream() {
        let (ours, mut peer) = duplex(1 << 16);
        let mut cork = Cork::new(ours);
        cork.release();
        cork.write_all(b"response").await.unwrap();
        cork.write_all(b"+close_notify").await.unwrap();
        cork.shutdown().await.unwrap();
        assert_eq!(pending_bytes(&mut peer).await, b"response+close_notify");
        drop(cork);
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"");
    }

    #[tokio::test]
    async fn tls12_and_other_first_writes_pass_untouched() {
        for first in [server_hello(false, false), vec![21, 3, 3, 0, 2, 2, 40]] {
            let (ours, mut peer) = duplex(1 << 16);
            let mut cork = Cork::new(ours);
            cork.write_all(&first).await.unwrap();
            pending_bytes(&mut peer).await;
            peer.write_all(b"client finished").await.unwrap();
            cork.read_exact(&mut [0; 15]).await.unwrap();
            // TLS 1.2: the server's tickets, ChangeCipherSpec and Finished, which the client waits for.
            cork.write_all(b"server finished").await.unwrap();
            assert_eq!(pending_bytes(&mut peer).await, b"server finished");
        }
    }

    #[tokio::test]
    async fn a_retry_request_waits_for_the_real_server_hello() {
        let (ours, mut peer) = duplex(1 << 16);
        let mut cork = Cork::new(ours);
        cork.write_all(&server_hello(true, true)).await.unwrap();
        pending_bytes(&mut peer).await;
        // The second ClientHello arrives: not yet the answer to our flight.
        peer.write_all(b"hello again").await.unwrap();
        cork.read_exact(&mut [0; 11]).await.unwrap();
        let sh = server_hello(true, false);
        cork.write_all(&sh).await.unwrap();
        assert_eq!(pending_bytes(&mut peer).await, sh);
        peer.write_all(b"f").await.unwrap();
        cork.read_exact(&mut [0]).await.unwrap();
        cork.write_all(b"tickets").await.unwrap();
        assert_eq!(pending_bytes(&mut peer).await, b"");
    }

    #[tokio::test]
    async fn more_than_the_hold_limit_goes_out_at_once() {
        let (ours, mut peer) = duplex(1 << 16);
        let mut cork = Cork::new(ours);
        cork.write_all(&server_hello(true, false)).await.unwrap();
        pending_bytes(&mut peer).await;
        peer.write_all(b"f").await.unwrap();
        cork.read_exact(&mut [0]).await.unwrap();
        cork.write_all(b"small").await.unwrap();
        let big = vec![7u8; HOLD_MAX];
        cork.write_all(&big).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 5 + HOLD_MAX {
            let more = pending_bytes(&mut peer).await;
            assert!(!more.is_empty(), "only {} bytes arrived", got.len());
            got.extend(more);
        }
        assert_eq!(&got[..5], b"small");
        assert_eq!(&got[5..], &big[..]);
    }
}
