//! The body of an origin response as the rest of the edge reads it: hyper's body, plus the
//! origin's connection slot (held until the body ends or is dropped, so the per-origin cap
//! counts responses still streaming) and the site's `total` deadline, which applies to every
//! response — cached fills, pass-through and HTTPS alike.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

/// Why an origin body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum OriginBodyError {
    /// The origin broke the body (reset, short body, protocol error).
    #[error("origin body failed: {0}")]
    Origin(#[from] hyper::Error),
    /// The site's `total` timeout passed before the body ended.
    #[error("origin response exceeded the total timeout of {0:?}")]
    Timeout(Duration),
}

/// An origin response body (see the module docs).
#[derive(Debug)]
pub struct OriginBody {
    inner: Incoming,
    slot: Option<OwnedSemaphorePermit>,
    deadline: Pin<Box<Sleep>>,
    total: Duration,
    done: bool,
}

impl OriginBody {
    pub(crate) fn new(
        inner: Incoming,
        slot: OwnedSemaphorePermit,
        deadline: tokio::time::Instant,
        total: Duration,
    ) -> Self {
        Self {
            inner,
            slot: Some(slot),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            total,
            done: false,
        }
    }

    fn end(&mut self) {
        self.done = true;
        self.slot = None;
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = OriginBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.end();
            return Poll::Ready(Some(Err(OriginBodyError::Timeout(this.total))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.end();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.end();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.slot = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
