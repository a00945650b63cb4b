//! Request bodies on their way to an origin, watched so that their failures are blamed on the
//! client that sent them.
//!
//! A pass-through request streams the client's body to the origin. When that body breaks —
//! malformed chunked framing, a client that disconnects mid-upload, one that stops sending —
//! the origin exchange fails too, and without a witness it looks like the origin's failure: a
//! 502/504 and a strike against the origin's passive health, so a few bad uploads would take a
//! healthy origin out of rotation. [`Upload`] wraps the body and records what went wrong on the
//! client's side in an [`UploadWatch`] that `Upstream` consults before it blames the origin.
//!
//! A body that makes no progress for `stall` (the edge's `header_read_timeout`, the limit a
//! client already has for each request head) while the origin waits for it ends with
//! [`ClientFault::Stalled`] (408). The origin's `first_byte` timeout counts from the end of the
//! body (a slow but steady upload is not the origin's failure), and an origin timeout that
//! fires while the edge still waits for the client's next bytes is the client's fault too: the
//! origin cannot answer a request it has not received.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::body::{Body, BoxError};
use crate::error::ProxyError;

/// What went wrong with a request body on the client's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    /// Framing that does not parse (a bad chunk size, ...).
    Malformed,
    /// The client closed or reset the connection before the body ended.
    Gone,
    /// No body bytes for the stall limit while the origin waited for them.
    Stalled,
    /// Over `limits.max_body_size`.
    TooLarge,
}

impl ClientFault {
    /// The error the client is answered with (if it is still there to read it).
    pub fn error(self) -> ProxyError {
        match self {
            Self::Malformed => ProxyError::BadRequest("malformed request body"),
            Self::Gone => ProxyError::ClientGone,
            Self::Stalled => ProxyError::RequestTimeout,
            Self::TooLarge => ProxyError::BodyTooLarge,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Malformed => 1,
            Self::Gone => 2,
            Self::Stalled => 3,
            Self::TooLarge => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Malformed),
            2 => Some(Self::Gone),
            3 => Some(Self::Stalled),
            4 => Some(Self::TooLarge),
            _ => None,
        }
    }

    /// Which fault a body error is: the size limit, a connection that went away, or else
    /// framing that does not parse.
    fn of(e: &(dyn StdError + 'static)) -> Self {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if err.is::<http_body_util::LengthLimitError>() {
                return Self::TooLarge;
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
                if matches!(io.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe) {
                    return Self::Gone;
                }
            }
            // An HTTP/2 client that cancels its stream or loses its connection.
            if let Some(h2) = err.downcast_ref::<h2::Error>()
                && (h2.is_io() || h2.is_go_away() || h2.reason() == Some(h2::Reason::CANCEL))
            {
                return Self::Gone;
            }
            if let Some(hyper) = err.downcast_ref::<hyper::Error>()
                && (hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed())
            {
                return Self::Gone;
            }
            cur = err.source();
        }
        Self::Malformed
    }
}

/// The error an [`Upload`] ends with; the origin client carries it in its own error.
#[derive(Debug, thiserror::Error)]
#[error("request body from the client failed: {0:?}")]
pub struct ClientBodyError(pub ClientFault);

#[derive(Debug, Default)]
struct State {
    /// A [`ClientFault`] code, 0 while none.
    fault: AtomicU8,
    /// The edge is waiting for the client's next bytes.
    waiting: AtomicBool,
    /// The body ended.
    done: AtomicBool,
    /// When it ended.
    finished_at: OnceLock<tokio::time::Instant>,
}

/// What an [`Upload`] saw, for the code that decides whom a failed exchange is blamed on.
#[derive(Clone, Debug)]
pub struct UploadWatch(Arc<State>);

impl UploadWatch {
    /// The body is still on its way, and made progress within the stall limit (else it has
    /// failed): the origin cannot be expected to answer yet.
    pub fn uploading(&self) -> bool {
        !self.0.done.load(Ordering::Acquire) && self.0.fault.load(Ordering::Acquire) == 0
    }

    /// When the whole body had been read from the client.
    pub fn finished_at(&self) -> Option<tokio::time::Instant> {
        self.0.finished_at.get().copied()
    }

    /// The client's fault in a failed exchange, if it was one: the body failed, or the origin
    /// timed out (`timed_out`) while the edge still waited for the client's bytes.
    pub fn fault(&self, timed_out: bool) -> Option<ClientFault> {
        if let Some(f) = ClientFault::from_code(self.0.fault.load(Ordering::Acquire)) {
            return Some(f);
        }
        let waiting = self.0.waiting.load(Ordering::Acquire) && !self.0.done.load(Ordering::Acquire);
        (timed_out && waiting).then_some(ClientFault::Stalled)
    }
}

/// A client's request body with its faults recorded (see the module docs).
pub struct Upload {
    inner: Body,
    state: Arc<State>,
    stall: Duration,
    /// Armed while the edge waits for the client.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("state", &self.state).field("stall", &self.stall).finish()
    }
}

impl Upload {
    /// Watches `inner`, which may pause for at most `stall` while the origin waits for it.
    pub fn new(inner: Body, stall: Duration) -> (Self, UploadWatch) {
        let state = Arc::new(State::default());
        (Self { inner, state: state.clone(), stall, timer: None }, UploadWatch(state))
    }

    fn finish(&mut self) {
        let _ = self.state.finished_at.set(tokio::time::Instant::now());
        self.state.done.store(true, Ordering::Release);
        self.state.waiting.store(false, Ordering::Release);
        self.timer = None;
    }

    fn fail(&mut self, fault: ClientFault) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // The first fault is the one that counts.
        let _ = self.state.fault.compare_exchange(0, fault.code(), Ordering::AcqRel, Ordering::Acquire);
        self.state.waiting.store(false, Ordering::Release);
        self.timer = None;
        Poll::Ready(Some(Err(Box::new(ClientBodyError(fault)))))
    }
}

impl HttpBody for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.state.waiting.store(false, Ordering::Release);
                this.timer = None;
                // hyper stops polling a body that says it ended (a full Content-Length).
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let fault = ClientFault::of(&*e);
                this.fail(fault)
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.state.waiting.store(true, Ordering::Release);
                let stall = this.stall;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                if timer.as_mut().poll(cx).is_ready() {
                    return this.fail(ClientFault::Stalled);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// A body that yields `items` and then stays pending forever.
    fn body(items: Vec<Result<Bytes, BoxError>>) -> Body {
        let stream = futures_util::stream::iter(items.into_iter().map(|r| r.map(Frame::data)))
            .chain(futures_util::stream::pending());
        http_body_util::StreamBody::new(stream).boxed_unsync()
    }

    use futures_util::StreamExt;

    async fn drain(upload: Upload) -> Option<ClientFault> {
        let mut upload = upload;
        loop {
            match upload.frame().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return e.downcast_ref::<ClientBodyError>().map(|c| c.0),
                None => return None,
            }
        }
    }

    #[tokio::test]
    async fn body_failures_are_the_clients_faults() {
        let reset: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let bad: BoxError = Box::new(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk"));
        let limit =
            http_body_util::Limited::new(crate::body::full("too long"), 1).collect().await.unwrap_err();
        // An HTTP/2 client that cancels its stream is gone; one whose stream h2 reset for a
        // protocol error (DATA not adding up to its Content-Length) sent a malformed body.
        let cancel: BoxError = Box::new(h2::Error::from(h2::Reason::CANCEL));
        let protocol: BoxError = Box::new(h2::Error::from(h2::Reason::PROTOCOL_ERROR));
        let cases: [(Result<Bytes, BoxError>, ClientFault); 5] = [
            (Err(reset), ClientFault::Gone),
            (Err(bad), ClientFault::Malformed),
            (Err(limit), ClientFault::TooLarge),
            (Err(cancel), ClientFault::Gone),
            (Err(protocol), ClientFault::Malformed),
        ];
        for (item, want) in cases {
            let (upload, watch) =
                Upload::new(body(vec![Ok(Bytes::from_static(b"x")), item]), Duration::from_secs(60));
            assert_eq!(drain(upload).await, Some(want));
            assert_eq!(watch.fault(false), Some(want));
        }
    }

    #[tokio::test]
    async fn a_body_that_stops_is_stalled_and_an_origin_timeout_meanwhile_is_the_clients() {
        let (mut upload, watch) =
            Upload::new(body(vec![Ok(Bytes::from_static(b"x"))]), Duration::from_secs(600));
        assert!(upload.frame().await.is_some());
        let next = tokio::time::timeout(Duration::from_millis(50), upload.frame()).await;
        assert!(next.is_err(), "still waiting for the client");
        assert_eq!(watch.fault(false), None, "nothing failed yet");
        assert_eq!(watch.fault(true), Some(ClientFault::Stalled), "the origin timed out waiting for us");

        let (upload, watch) =
            Upload::new(body(vec![Ok(Bytes::from_static(b"x"))]), Duration::from_millis(50));
        assert_eq!(drain(upload).await, Some(ClientFault::Stalled));
        assert_eq!(watch.fault(false), Some(ClientFault::Stalled));
    }

    #[tokio::test]
    async fn a_complete_body_leaves_timeouts_to_the_origin() {
        let full = crate::body::full("all of it");
        let (mut upload, watch) = Upload::new(full, Duration::from_secs(60));
        assert!(watch.uploading());
        // One frame: hyper stops there, since the body says it ended.
        assert!(upload.frame().await.is_some());
        assert!(!watch.uploading() && watch.finished_at().is_some());
        assert_eq!(watch.fault(true), None);
    }
}
