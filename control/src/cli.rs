//! `stratus purge`: the command-line client of the purge API.
//!
//! ```text
//! $ STRATUS_TOKEN=… stratus purge --control http://127.0.0.1:7070 --url http://cdn.example/a.png --wait
//! purge p-12 accepted (seq 12)
//! edge a  applied  2.1 ms
//! edge b  applied  2.4 ms
//! ```
//! Without `--wait` it prints the id once the purge is durably in the log, then each edge's
//! state as the control plane knows it right after (`GET /v1/purge/{id}`; usually `pending`
//! for a moment), and returns `false` — a non-zero exit — only if an edge is `failed` (down).
//! With `--wait` it waits (up to `--timeout`) for every live edge and returns `false` if any
//! edge has not applied it (pending, or down).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::body::PurgeRequest;
use crate::error::Error;

/// Arguments of `stratus purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Control-plane URL, e.g. http://127.0.0.1:7070; `STRATUS_CONTROL` when not given.
    #[arg(long)]
    pub control: Option<String>,
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
    let control = args
        .control
        .as_deref()
        .ok_or_else(|| Error::Client("no control plane: pass --control URL or set STRATUS_CONTROL".into()))?;
    let base = control.trim_end_matches('/');
    let wait = args.timeout.get();
    let url = if args.wait {
        format!("{base}/v1/purge?wait={}ms", wait.as_millis())
    } else {
        format!("{base}/v1/purge")
    };
    let json = serde_json::to_vec(&body).map_err(|e| Error::Client(e.to_string()))?;
    let limit = wait + Duration::from_secs(10);
    let answer = checked(call(http::Method::POST, &url, token.as_ref(), json, limit).await?)?;
    let id = answer["id"].as_str().unwrap_or("?");
    println!("purge {id} accepted (seq {})", answer["seq"]);
    if !args.wait {
        let url = format!("{base}/v1/purge/{id}");
        let status = checked(call(http::Method::GET, &url, token.as_ref(), Vec::new(), limit).await?)?;
        let states = print_edges(&status);
        let failed = states.iter().filter(|s| *s == "failed").count();
        if failed > 0 {
            println!("{failed} edge(s) failed: down since before the purge, or unable to apply it");
        }
        return Ok(failed == 0);
    }
    let all_applied = print_edges(&answer).iter().all(|s| s == "applied");
    if !all_applied {
        println!("not applied by every edge within {}", args.timeout);
    }
    Ok(all_applied)
}

/// Prints one line per edge of an answer's `edges` and returns their states.
fn print_edges(answer: &Value) -> Vec<String> {
    let mut states = Vec::new();
    for edge in answer["edges"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let id = edge["id"].as_str().unwrap_or("?");
        let state = edge["state"].as_str().unwrap_or("?");
        let mut line = format!("edge {id}  {state}");
        if let Some(ms) = edge["applied_ms"].as_f64() {
            line.push_str(&format!("  {ms:.1} ms"));
        }
        if let Some(error) = edge["error"].as_str() {
            line.push_str(&format!("  {error}"));
        }
        println!("{line}");
        states.push(state.to_owned());
    }
    states
}

/// Why `url` could not be reached, in words: hyper's own message ("client error (Connect)")
/// names no cause, so the chain of sources is searched for the operating system's.
fn unreachable(url: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let why = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "the connection was refused: nothing listens at that address (is `stratus control` running, and is the port right?)".to_owned()
                }
                std::io::ErrorKind::TimedOut => "the connection timed out (a firewall, or a wrong address)".to_owned(),
                std::io::ErrorKind::NotFound => "the host name does not resolve".to_owned(),
                _ => io.to_string(),
            };
            return format!("cannot reach the control plane at {url}: {why}");
        }
        source = e.source();
    }
    format!("cannot reach the control plane at {url}: {err}")
}

/// The JSON answer of a successful call, or the control plane's error as a client error.
fn checked((status, answer): (http::StatusCode, Value)) -> Result<Value, Error> {
    if !status.is_success() {
        let why = answer["error"].as_str().unwrap_or("unexpected answer");
        let field = answer["field"].as_str().map(|f| format!(" ({f})")).unwrap_or_default();
        let hint = match status {
            http::StatusCode::UNAUTHORIZED => {
                " — the token was refused: set STRATUS_TOKEN to the control plane's token"
            }
            _ => "",
        };
        return Err(Error::Client(format!("control plane answered {status}: {why}{field}{hint}")));
    }
    Ok(answer)
}

/// Sends a request (JSON `body` unless empty) and returns the status and the JSON answer
/// (`null` when it is not JSON).
async fn call(
    method: http::Method,
    url: &str,
    token: Option<&stratus_config::Secret>,
    body: Vec<u8>,
    limit: Duration,
) -> Result<(http::StatusCode, Value), Error> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder().method(method).uri(url);
    if !body.is_empty() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::Client(format!("bad control URL {url}: {e}")))?;
    let call = async {
        let response = client.request(request).await.map_err(|e| Error::Client(unreachable(url, &e)))?;
        let status = response.status();
        let bytes =
            response.into_body().collect().await.map_err(|e| Error::Client(e.to_string()))?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| Error::Client(format!("{url} did not answer in time")))?
}
