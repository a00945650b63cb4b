//! Purge steps of a scenario: `POST {control}/v1/purge` with the Cloudflare-shaped body of
//! docs/PROTOCOL.md and the bearer token, issued when a phase starts, beside the load.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use stratus_config::purge::PurgeRequest;
use stratus_config::{HttpUrl, Secret};

use crate::connect::{Connector, Sender};
use crate::targets::origin_of;

/// What a purge step did, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeResult {
    /// The phase it opened.
    pub phase: String,
    /// Seconds from the start of the run.
    pub at_s: f64,
    /// The control plane's status code, when it answered.
    pub status: Option<u16>,
    /// The control plane's answer (e.g. `{"id": "p-…"}`), truncated.
    pub response: Option<String>,
    /// Why the request failed, when it did.
    pub error: Option<String>,
    /// How long the request took, in milliseconds.
    pub took_ms: f64,
}

/// The JSON body sent for `step`: the control API's purge body as it is.
pub(crate) fn body(step: &PurgeRequest) -> String {
    serde_json::to_string(step).unwrap_or_default()
}

/// Issues `step` now and reports how it went; never fails the run.
pub(crate) async fn issue(
    control: &HttpUrl,
    token: Option<&Secret>,
    step: &PurgeRequest,
    phase: &str,
    t0: Instant,
    insecure: bool,
    timeout: Duration,
) -> PurgeResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, send(control, token, step, insecure)).await;
    let (status, response, error) = match outcome {
        Ok(Ok((status, text))) => (Some(status), Some(text), None),
        Ok(Err(e)) => (None, None, Some(e)),
        Err(_) => (None, None, Some(format!("no answer within {timeout:?}"))),
    };
    if let Some(e) = &error {
        tracing::warn!(phase, error = %e, "purge step failed");
    }
    PurgeResult {
        phase: phase.to_owned(),
        at_s: started.duration_since(t0).as_secs_f64(),
        status,
        response,
        error,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

async fn send(
    control: &HttpUrl,
    token: Option<&Secret>,
    step: &PurgeRequest,
    insecure: bool,
) -> Result<(u16, String), String> {
    let base = control.as_str().trim_end_matches('/');
    let origin = origin_of(base).map_err(|e| e.to_string())?;
    let connector = Connector::new(&origin, false, insecure).await.map_err(|e| e.to_string())?;
    let (sender, driver) =
        connector.connect(Arc::new(AtomicU64::new(0))).await.map_err(|e| format!("cannot connect: {e}"))?;
    let Sender::H1(mut sender) = sender else { return Err("unexpected HTTP/2 connection".into()) };
    tokio::spawn(driver.run());
    let path = format!("{}/v1/purge", control.url().path().trim_end_matches('/'));
    let mut req = http::Request::post(path)
        .header(HOST, origin.authority.as_str())
        .header(CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let req = req.body(Full::new(Bytes::from(body(step)))).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let mut text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if text.len() > 200 {
        let cut = (0..=200).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(cut);
    }
    Ok((status, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_control_apis_purge_body() {
        let step = PurgeRequest { purge_everything: true, ..PurgeRequest::default() };
        assert_eq!(body(&step), r#"{"purge_everything":true,"soft":false}"#);
        let step = PurgeRequest {
            files: vec!["http://cdn.example/a".into()],
            tags: vec!["blog".into()],
            soft: true,
            ..PurgeRequest::default()
        };
        assert_eq!(
            body(&step),
            r#"{"files":["http://cdn.example/a"],"tags":["blog"],"purge_everything":false,"soft":true}"#
        );
    }
}
