//! Object events posted to the control plane (docs/PROTOCOL.md, "Origin → control").
//!
//! Writers call [`Notifier::send`], which only appends to a bounded in-memory queue and never
//! waits: when the queue is full the oldest event is dropped (and counted in a warning). One
//! background task posts batches of up to [`BATCH`] events and retries failures with backoff
//! (100 ms doubling to 5 s) until the receiver answers 2xx or the origin shuts down. Events are
//! not persisted: a restart loses what was queued; the control plane's purges are idempotent,
//! so a late or duplicated event does no harm, and a lost one only leaves a stale cache entry
//! until it expires.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Events held while the receiver is unreachable.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Events per POST.
pub const BATCH: usize = 100;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Put,
    Copy,
    CompleteMultipart,
    Delete,
}

/// One object event, as posted.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub kind: Kind,
    pub bucket: String,
    pub key: String,
    /// Quoted, as in the `ETag` header; absent for deletes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// RFC 3339 UTC.
    pub at: String,
}

#[derive(Debug, Default)]
struct Queue {
    events: Mutex<VecDeque<Event>>,
    ready: Notify,
}

/// The writers' side: cheap to clone, never blocks.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    queue: Option<Arc<Queue>>,
}

impl Notifier {
    /// A notifier that drops every event (no receiver configured).
    pub fn disabled() -> Self {
        Self { queue: None }
    }

    /// Starts the delivery task posting to `url` with an optional bearer `token`.
    pub fn start(url: String, token: Option<String>, shutdown: CancellationToken) -> Self {
        let queue = Arc::new(Queue::default());
        tokio::spawn(deliver(queue.clone(), url, token, shutdown));
        Self { queue: Some(queue) }
    }

    /// Queues an event for `bucket`/`key`.
    pub fn send(&self, kind: Kind, bucket: &str, key: &str, etag: Option<&str>, size: Option<u64>) {
        let Some(queue) = &self.queue else { return };
        let event = Event {
            kind,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag.map(|e| format!("\"{e}\"")),
            size,
            at: rfc3339(SystemTime::now()),
        };
        let mut events = queue.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if events.len() >= QUEUE_CAPACITY {
            events.pop_front();
            tracing::warn!(capacity = QUEUE_CAPACITY, "event queue full; dropped the oldest event");
        }
        events.push_back(event);
        drop(events);
        queue.ready.notify_one();
    }
}

fn rfc3339(t: SystemTime) -> String {
    let ts = s3s::dto::Timestamp::from(t);
    let mut out = Vec::new();
    match ts.format(s3s::dto::TimestampFormat::DateTime, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => String::new(),
    }
}

#[derive(Serialize)]
struct Body<'a> {
    events: &'a [Event],
}

async fn deliver(queue: Arc<Queue>, url: String, token: Option<String>, shutdown: CancellationToken) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let batch: Vec<Event> = {
            let mut events = queue.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = events.len().min(BATCH);
            events.drain(..n).collect()
        };
        if batch.is_empty() {
            tokio::select! {
                () = queue.ready.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        let body = match serde_json::to_vec(&Body { events: &batch }) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode events; dropped");
                continue;
            }
        };
        let mut backoff = BACKOFF_START;
        loop {
            match post(&client, &url, token.as_deref(), body.clone()).await {
                Ok(()) => {
                    tracing::debug!(events = batch.len(), "events delivered");
                    break;
                }
                Err(why) => {
                    tracing::warn!(url = %url, error = %why, retry_in = ?backoff, "event delivery failed");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => {
                    tracing::warn!(events = batch.len(), "shutting down with undelivered events");
                    return;
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    token: Option<&str>,
    body: Bytes,
) -> Result<(), String> {
    let mut req = http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(POST_TIMEOUT, client.request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("status {}", resp.status())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_oldest_events() {
        let queue = Arc::new(Queue::default());
        let notifier = Notifier { queue: Some(queue.clone()) };
        for i in 0..QUEUE_CAPACITY + 5 {
            notifier.send(Kind::Put, "b", &format!("k{i}"), Some("e"), Some(1));
        }
        let events = queue.events.lock().expect("lock");
        assert_eq!(events.len(), QUEUE_CAPACITY);
        assert_eq!(events.front().map(|e| e.key.as_str()), Some("k5"));
        assert_eq!(events.back().map(|e| e.etag.as_deref()), Some(Some("\"e\"")));
    }

    #[test]
    fn events_serialize_as_the_protocol_says() {
        let e = Event {
            kind: Kind::CompleteMultipart,
            bucket: "demo".into(),
            key: "a/b.css".into(),
            etag: Some("\"x-2\"".into()),
            size: Some(3),
            at: rfc3339(SystemTime::UNIX_EPOCH),
        };
        let json = serde_json::to_value(Body { events: &[e] }).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"events": [{"kind": "complete_multipart", "bucket": "demo", "key": "a/b.css",
                "etag": "\"x-2\"", "size": 3, "at": "1970-01-01T00:00:00.000Z"}]})
        );
    }
}
