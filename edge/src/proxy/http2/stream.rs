//! One HTTP/2 request: its head and [`RecvBody`] go to the handler, whose response is sent on
//! the stream as hyper's h2 server would send it (connection-specific fields removed, `Date`
//! and `Content-Length` added when missing, the body paced by the client's flow-control
//! windows, trailers as a trailing HEADERS frame). Meanwhile the request's
//! [`Interim`](crate::proxy::interim::Interim) can put 1xx heads on the stream.
//!
//! A client that resets the stream (RST_STREAM) while the handler works cancels the handler,
//! as with hyper; fills run in their own tasks and are not affected. A response body that
//! fails half-way resets the stream with `INTERNAL_ERROR`, so the client never takes a
//! truncated body for a complete one.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Body as _;

use crate::body::Body;
use crate::proxy::conns::Busy;
use crate::proxy::downstream::{Downstream, Transport};
use crate::proxy::http2::recv::RecvBody;
use crate::proxy::interim::{Interim, lock_reply};

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2); h2 refuses to send a head with any of them.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    HeaderName::from_static("keep-alive"),
];

/// Serves one request: runs `handler` with the request and its [`Downstream`] (`peer`,
/// `transport` and the stream's 1xx handle) and sends its response on the stream; `busy`
/// keeps the connection busy until the response has been sent or the stream is gone.
pub async fn serve<H, F>(
    req: Request<RecvStream>,
    reply: SendResponse<Bytes>,
    handler: H,
    peer: SocketAddr,
    transport: Transport,
    busy: Busy,
) where
    H: Fn(Request<Body>, Downstream) -> F,
    F: Future<Output = Response<Body>>,
{
    let reply = Arc::new(Mutex::new(reply));
    let (parts, recv) = req.into_parts();
    let from = Downstream { peer, transport, interim: Some(Interim::http2(reply.clone())) };
    let body = RecvBody::new(recv, &parts.headers).map_err(Into::into).boxed_unsync();
    let handling = handler(Request::from_parts(parts, body), from);
    tokio::pin!(handling);
    let res = poll_fn(|cx| {
        if let Poll::Ready(res) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(res));
        }
        // Reset by the client (or the connection failed): nobody waits for the answer.
        match lock_reply(&reply).poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    let Some(res) = res else {
        tracing::debug!(peer = %peer, "http2 stream reset by the client before its response");
        return;
    };
    let (mut head, body) = res.into_parts();
    strip_connection_specific(&mut head.headers);
    head.headers.entry(header::DATE).or_insert_with(now);
    let end = body.is_end_stream();
    if !end && let Some(n) = body.size_hint().exact() {
        head.headers.entry(header::CONTENT_LENGTH).or_insert_with(|| HeaderValue::from(n));
    }
    let sent = lock_reply(&reply).send_response(Response::from_parts(head, ()), end);
    match sent {
        Ok(tx) if !end => pipe(body, tx).await,
        Ok(_) => {}
        Err(e) => tracing::debug!(peer = %peer, error = %e, "http2 response head not sent"),
    }
    drop(busy);
}

/// Sends `body` on `tx`, one frame after another, waiting for the client's window before each
/// data frame. Like hyper (hyper#4003), a body frame is polled before capacity is asked for,
/// so a body that waits for its data never holds connection-level capacity that other
/// streams need; h2 buffers at most one frame beyond the window per stream.
async fn pipe(mut body: Body, mut tx: SendStream<Bytes>) {
    loop {
        let frame = poll_fn(|cx| {
            if tx.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let Some(frame) = frame else { return };
        match frame {
            None => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; resetting the http2 stream");
                tx.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let eos = body.is_end_stream();
                    if !data.is_empty() && !capacity(&mut tx).await {
                        return;
                    }
                    if tx.send_data(data, eos).is_err() || eos {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        tx.reserve_capacity(0);
                        let _ = tx.send_trailers(trailers);
                        return;
                    }
                }
            },
        }
    }
}

/// Waits until the stream may send at least one byte; `false` when it is gone.
async fn capacity(tx: &mut SendStream<Bytes>) -> bool {
    tx.reserve_capacity(1);
    poll_fn(|cx| {
        loop {
            if tx.capacity() > 0 {
                return Poll::Ready(true);
            }
            if tx.poll_reset(cx).is_ready() {
                return Poll::Ready(false);
            }
            match tx.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(false),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// Removes what HTTP/2 forbids in a head, including the fields a `Connection` header names.
fn strip_connection_specific(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        crate::proxy::headers::strip_hop_by_hop(h);
    }
    for name in CONNECTION_SPECIFIC {
        h.remove(name);
    }
}

thread_local! {
    /// The current second's `Date` value, formatted once per second per thread.
    static DATE: RefCell<(u64, HeaderValue)> = const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// `Date` for a response sent now (RFC 9110 §6.6.1), as hyper adds it on HTTP/1.1.
fn now() -> HeaderValue {
    let t = SystemTime::now();
    let second = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(t);
            *cached = (second, HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("")));
        }
        cached.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_specific_fields_and_the_ones_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "x-private, close"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("link", "</a.css>; rel=preload"),
        ] {
            h.append(k, v.parse().unwrap_or_else(|_| unreachable!()));
        }
        strip_connection_specific(&mut h);
        assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["link"]);
    }

    #[test]
    fn dates_are_http_dates() {
        let v = now();
        let parsed = httpdate::parse_http_date(v.to_str().unwrap_or_default());
        assert!(parsed.is_ok(), "{v:?}");
    }
}
