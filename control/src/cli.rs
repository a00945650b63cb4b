//! `stratus purge`: the command-line client of the purge API.
//!
//! ```text
//! $ STRATUS_TOKEN=… stratus purge --control http://127.0.0.1:7070 --url http://cdn.example/a.png --wait
//! purge p-12 accepted (seq 12)
//! edge a  applied  2.1 ms
//! edge b  applied  2.4 ms
//! ```
//! Without `--wait` it prints the id once the purge is durably in the log. With `--wait` it
//! waits (up to `--timeout`) for every live edge and returns `false` — a non-zero exit — if any
//! edge has not applied it (pending, or down).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::Error;
use crate::body::PurgeRequest;

/// Arguments of `stratus purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Control-plane URL, e.g. http://127.0.0.1:7070.
    #[arg(long)]
    pub control: String,
    /// A URL to purge, e.g. http://cdn.example/img/a.png (repeatable).
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// A host/path prefix, e.g. cdn.example/img/ (repeatable).
    #[arg(long = "prefix", value_name = "PREFIX")]
    pub prefixes: Vec<String>,
    /// A cache tag / surrogate key (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Everything of a host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Everything on every edge.
    #[arg(long)]
    pub all: bool,
    /// Mark stale (revalidate on next request) instead of removing.
    #[arg(long)]
    pub soft: bool,
    /// Wait until every live edge applied the purge, and report each edge.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, e.g. 10s.
    #[arg(long, default_value = "10s")]
    pub timeout: stratus_config::Duration,
}

/// Sends the purge and prints the outcome per edge; `Ok(false)` when an edge did not apply it.
pub async fn purge(args: PurgeArgs, token: Option<stratus_config::Secret>) -> Result<bool, Error> {
    let body = PurgeRequest {
        files: args.urls,
        prefixes: args.prefixes,
        tags: args.tags,
        hosts: args.hosts,
        objects: Vec::new(),
        purge_everything: args.all,
        soft: args.soft,
    };
    if body.is_empty() {
        return Err(Error::Client("name something to purge: --url, --prefix, --tag, --host or --all".into()));
    }
    let base = args.control.trim_end_matches('/');
    let wait = args.timeout.get();
    let url = if args.wait {
        format!("{base}/v1/purge?wait={}ms", wait.as_millis())
    } else {
        format!("{base}/v1/purge")
    };
    let json = serde_json::to_vec(&body).map_err(|e| Error::Client(e.to_string()))?;
    let (status, answer) = post(&url, token.as_ref(), json, wait + Duration::from_secs(10)).await?;
    if !status.is_success() {
        let why = answer["error"].as_str().unwrap_or("unexpected answer");
        let field = answer["field"].as_str().map(|f| format!(" ({f})")).unwrap_or_default();
        return Err(Error::Client(format!("control plane answered {status}: {why}{field}")));
    }
    println!("purge {} accepted (seq {})", answer["id"].as_str().unwrap_or("?"), answer["seq"]);
    if !args.wait {
        return Ok(true);
    }
    let mut all_applied = true;
    for edge in answer["edges"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let id = edge["id"].as_str().unwrap_or("?");
        let state = edge["state"].as_str().unwrap_or("?");
        match edge["applied_ms"].as_f64() {
            Some(ms) => println!("edge {id}  {state}  {ms:.1} ms"),
            None => println!("edge {id}  {state}"),
        }
        all_applied &= state == "applied";
    }
    if !all_applied {
        println!("not applied by every edge within {}", args.timeout);
    }
    Ok(all_applied)
}

/// POSTs JSON and returns the status and the JSON answer (`null` when it is not JSON).
async fn post(
    url: &str,
    token: Option<&stratus_config::Secret>,
    body: Vec<u8>,
    limit: Duration,
) -> Result<(http::StatusCode, Value), Error> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::Client(format!("bad control URL {url}: {e}")))?;
    let call = async {
        let response =
            client.request(request).await.map_err(|e| Error::Client(format!("cannot reach {url}: {e}")))?;
        let status = response.status();
        let bytes =
            response.into_body().collect().await.map_err(|e| Error::Client(e.to_string()))?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| Error::Client(format!("{url} did not answer in time")))?
}
