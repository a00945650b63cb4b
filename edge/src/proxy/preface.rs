//! Which protocol a client speaks: HTTP/2 clients open with a fixed preface (RFC 9113 §3.4),
//! sent as the first bytes of a cleartext connection (h2c by prior knowledge) and of a TLS one
//! that negotiated `h2` by ALPN alike; anything else is HTTP/1.x. The bytes read to decide are
//! handed back to the protocol's server through [`Rewind`].
//!
//! As hyper-util's auto builder did before, the decision reads at most the preface's 24 bytes
//! and stops at the first byte that differs, so an HTTP/1.1 request is recognised from its
//! first byte and never waits for more.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Reads the first bytes of `io`: the protocol, and `io` with those bytes put back. A
/// connection closed before it sent a whole preface is HTTP/1.x (hyper closes it quietly).
pub async fn sniff<I: AsyncRead + Unpin>(mut io: I) -> io::Result<(Protocol, Rewind<I>)> {
    let mut buf = [0u8; PREFACE.len()];
    let mut n = 0;
    while n < buf.len() {
        let read = io.read(&mut buf[n..]).await?;
        if read == 0 {
            break;
        }
        n += read;
        if buf[..n] != PREFACE[..n] {
            break;
        }
    }
    let protocol = if n == PREFACE.len() && buf == *PREFACE { Protocol::Http2 } else { Protocol::Http1 };
    Ok((protocol, Rewind { prefix: Bytes::copy_from_slice(&buf[..n]), inner: io }))
}

/// A transport whose first bytes, already read, are read again.
#[derive(Debug)]
pub struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Sends `chunks` one write at a time; returns the protocol and everything read back.
    async fn check(chunks: Vec<Vec<u8>>) -> (Protocol, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for c in chunks {
                client.write_all(&c).await.unwrap_or_else(|e| panic!("{e}"));
                tokio::task::yield_now().await;
            }
        });
        let (protocol, mut io) = sniff(server).await.unwrap_or_else(|e| panic!("{e}"));
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap_or_else(|e| panic!("{e}"));
        writer.await.unwrap_or_else(|e| panic!("{e}"));
        (protocol, all)
    }

    fn run(chunks: Vec<Vec<u8>>) -> (Protocol, Vec<u8>) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(check(chunks))
    }

    #[test]
    fn the_preface_in_any_pieces_is_http2_and_every_byte_is_read_back() {
        let mut h2 = PREFACE.to_vec();
        h2.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        let (p, got) = run(vec![h2[..3].to_vec(), h2[3..20].to_vec(), h2[20..].to_vec()]);
        assert_eq!((p, got), (Protocol::Http2, h2));
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        assert_eq!(run(vec![get.clone()]), (Protocol::Http1, get));
        // A truncated preface, then the connection closes: HTTP/1.x, the bytes kept.
        assert_eq!(run(vec![b"PRI * HTTP/2".to_vec()]), (Protocol::Http1, b"PRI * HTTP/2".to_vec()));
        assert_eq!(run(vec![]), (Protocol::Http1, Vec::new()));
    }

    proptest! {
        /// Whatever a client sends, in whatever pieces, nothing is lost or reordered, and only
        /// the exact preface makes HTTP/2.
        #[test]
        fn nothing_is_lost_and_only_the_preface_is_http2(
            bytes in prop::collection::vec(any::<u8>(), 0..80),
            cuts in prop::collection::vec(1usize..30, 0..6),
            preface in any::<bool>(),
        ) {
            let mut all = if preface { PREFACE.to_vec() } else { Vec::new() };
            all.extend_from_slice(&bytes);
            let mut chunks = Vec::new();
            let mut rest = all.as_slice();
            for c in cuts {
                let c = c.min(rest.len());
                chunks.push(rest[..c].to_vec());
                rest = &rest[c..];
            }
            chunks.push(rest.to_vec());
            let (p, got) = run(chunks);
            let expected = if all.starts_with(PREFACE) { Protocol::Http2 } else { Protocol::Http1 };
            prop_assert_eq!(p, expected);
            prop_assert_eq!(got, all);
        }
    }
}
