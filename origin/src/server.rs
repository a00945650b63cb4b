//! The accept loop: HTTP/1.1 and HTTP/2 (prior knowledge) connections served by the s3s
//! service, with graceful shutdown modelled on hyper-util's `server/graceful.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::S3Error;
use s3s::service::S3Service;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may run once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one request. Never fails: an error inside s3s becomes a 500 with an S3 error body
/// instead of a dropped connection.
async fn handle(
    service: S3Service,
    metrics: Arc<Metrics>,
    req: http::Request<Incoming>,
) -> Result<http::Response<s3s::Body>, Infallible> {
    if Metrics::wants(&req) {
        return Ok(metrics.answer(req.headers().get(http::header::AUTHORIZATION)));
    }
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let res = answer(service, req).await;
    if let Ok(r) = &res {
        metrics.record(&method, r.status().as_u16(), started.elapsed());
    }
    res
}

async fn answer(
    service: S3Service,
    mut req: http::Request<Incoming>,
) -> Result<http::Response<s3s::Body>, Infallible> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if let Err(e) = crate::access::check_presigned_expiry(req.uri().query(), now) {
        tracing::debug!(path = %req.uri().path(), error = %e, "presigned URL refused");
        return Ok(error_response(e));
    }
    crate::s3::conditional::take_etag_lists(&mut req);
    let started = std::time::Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    match service.call(req.map(s3s::Body::from)).await {
        Ok(mut resp) => {
            // s3s answers every HeadObject with 200 (it ignores `S3Response::status` there); a
            // HEAD that names a range (`Range` or `partNumber`) answers as its GET would: 206.
            if method == http::Method::HEAD
                && resp.status() == http::StatusCode::OK
                && resp.headers().contains_key(http::header::CONTENT_RANGE)
            {
                *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
            }
            tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed = ?started.elapsed(), "request");
            Ok(resp)
        }
        Err(e) => {
            tracing::error!(error = ?e, "request failed inside the S3 service");
            Ok(internal_error())
        }
    }
}

/// An S3 error refused before s3s saw the request, as s3s would render it.
fn error_response(e: S3Error) -> http::Response<s3s::Body> {
    e.to_http_response().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render an S3 error");
        internal_error()
    })
}

fn internal_error() -> http::Response<s3s::Body> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
                <Message>We encountered an internal error. Please try again.</Message></Error>";
    let mut resp = http::Response::new(s3s::Body::from(body.to_owned()));
    *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    resp
}

/// Serves `listener` until `shutdown` fires, then lets open requests finish (bounded).
pub async fn serve(
    listener: TcpListener,
    service: S3Service,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
        // and the client's delayed ACK add ~40 ms to every small response.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let (service, metrics) = (service.clone(), metrics.clone());
        let svc = hyper::service::service_fn(move |req| handle(service.clone(), metrics.clone(), req));
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("shutdown: gave up waiting for open connections"),
    }
}
