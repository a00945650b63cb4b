//! An HTTP/2 request body as an [`http_body::Body`]: the stream's DATA frames, then its
//! trailers. Flow-control capacity is given back as the handler takes each chunk, so a client
//! can have at most the stream's receive window (1 MiB) in flight that nobody has read yet,
//! and a handler that reads slowly slows the client down instead of buffering for it.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::RecvStream;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};

/// The body of one HTTP/2 request.
#[derive(Debug)]
pub struct RecvBody {
    recv: RecvStream,
    /// What is left of the `Content-Length` the client declared (h2 resets the stream when
    /// the DATA frames do not add up to it), for the size hint.
    remaining: Option<u64>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Trailers,
    Done,
}

impl RecvBody {
    /// The body arriving on `recv`, for a request with `headers`.
    pub fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        // One value that parses; anything else is no hint (h2 itself refuses a malformed one).
        let mut values = headers.get_all(CONTENT_LENGTH).iter();
        let remaining = match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok().and_then(|s| s.parse().ok()),
            _ => None,
        };
        let state = if recv.is_end_stream() { State::Done } else { State::Data };
        Self { recv, remaining, state }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if self.state == State::Data {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Taken by the handler: the client may send this much more. An error here
                    // means the stream is gone, which the next poll reports.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    let taken = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    self.remaining = self.remaining.map(|n| n.saturating_sub(taken));
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    self.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                None => self.state = State::Trailers,
            }
        }
        if self.state == State::Trailers {
            let trailers = ready!(self.recv.poll_trailers(cx));
            self.state = State::Done;
            return Poll::Ready(match trailers {
                Ok(Some(t)) => Some(Ok(Frame::trailers(t))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            });
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done || self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match (self.is_end_stream(), self.remaining) {
            (true, _) => SizeHint::with_exact(0),
            (false, Some(n)) => SizeHint::with_exact(n),
            (false, None) => SizeHint::default(),
        }
    }
}
