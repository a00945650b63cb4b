//! The delivery task: posts ready events in batches, oldest first, retrying with backoff
//! (100 ms doubling to 5 s) until the receiver answers 2xx, and only then removes them from the
//! outbox. On shutdown it stops; what it had not delivered is posted after the next start.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use super::event::{Batch, Event};
use super::queue::Shared;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const POST_TIMEOUT: Duration = Duration::from_secs(10);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Delivers events from `shared` to `url` until `shutdown`.
pub async fn run(shared: Arc<Shared>, url: String, token: Option<String>, shutdown: CancellationToken) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut backoff = BACKOFF_START;
    loop {
        if let Some(pending) = shared.needs_reload() {
            match shared.outbox.load(shared.capacity(), &pending).await {
                Ok((events, more)) => {
                    if !events.is_empty() {
                        tracing::info!(events = events.len(), more, "delivering events from the outbox");
                    }
                    shared.reload(events, more);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot read the event outbox");
                    if pause(&mut backoff, &shutdown).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let batch = shared.take_batch();
        if batch.is_empty() {
            tokio::select! {
                () = shared.ready.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        let (seqs, events): (Vec<u64>, Vec<Event>) = batch.into_iter().unzip();
        let body = match serde_json::to_vec(&Batch { events: &events }) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode events; dropped");
                shared.outbox.remove(&seqs).await;
                continue;
            }
        };
        backoff = BACKOFF_START;
        loop {
            match post(&client, &url, token.as_deref(), body.clone()).await {
                Ok(()) => {
                    tracing::debug!(events = events.len(), "events delivered");
                    shared.outbox.remove(&seqs).await;
                    break;
                }
                Err(why) => {
                    tracing::warn!(url = %url, error = %why, retry_in = ?backoff, "event delivery failed");
                }
            }
            if pause(&mut backoff, &shutdown).await {
                tracing::warn!(
                    events = events.len(),
                    "shutting down with undelivered events; they stay in the outbox"
                );
                return;
            }
        }
    }
}

/// Sleeps for `backoff` and doubles it; returns whether shutdown came first.
async fn pause(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    let stop = tokio::select! {
        () = tokio::time::sleep(*backoff) => false,
        () = shutdown.cancelled() => true,
    };
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    stop
}

async fn post(client: &HttpClient, url: &str, token: Option<&str>, body: Bytes) -> Result<(), String> {
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
