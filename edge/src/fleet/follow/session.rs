//! One subscription session and the heartbeat loop of the follower.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use stratus_config::fleet::FleetConfig;
use stratus_config::protocol::{
    Ack, EdgeList, Failure, Heartbeat, MAX_LINE, Op, Readable, Register, Registered, StreamLine,
};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use crate::fleet::follow_target::{FollowTarget, Registration};

/// First wait before reconnecting.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Interval of heartbeats.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A stream silent this long (three missed pings) is dead.
const SILENCE: Duration = Duration::from_secs(15);
/// Limit of a request that is not the stream (register, ack, heartbeat).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most lines applied before one ack: lines that arrived together are acked together.
const BATCH: usize = 512;
/// Most bytes of a `GET /v1/edges` answer read for peer discovery (some thousands of edges).
const MAX_EDGE_LIST: usize = 16 << 20;
/// Most unreported failures kept; older ones are dropped (the log says what they were).
const MAX_FAILURES: usize = 16;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("{what} answered {status}")]
    Status { what: &'static str, status: http::StatusCode },
    #[error("stream silent for {0:?}")]
    Silent(Duration),
    #[error("bad stream line: {0}")]
    BadLine(String),
    #[error("bad {what} answer: {error}")]
    BadAnswer { what: &'static str, error: String },
    #[error("entry {got} arrived after {applied}: the stream skipped entries")]
    Gap { got: u64, applied: u64 },
}

impl SessionError {
    /// Whether the control plane answered that this edge's token is wrong (401 or 403).
    pub(super) fn token_refused(&self) -> bool {
        matches!(self, Self::Status { status, .. }
            if *status == http::StatusCode::UNAUTHORIZED || *status == http::StatusCode::FORBIDDEN)
    }

    /// A failed request, with the operating system's reason in words where there is one
    /// (hyper's own message, "client error (Connect)", names no cause).
    fn request(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut source = Some(err);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return Self::Request(match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        "connection refused: nothing listens at the control plane's address".to_owned()
                    }
                    _ => io.to_string(),
                });
            }
            source = e.source();
        }
        Self::Request(err.to_string())
    }
}

/// What the follower knows between sessions.
pub(super) struct Follower {
    /// The control plane replicas, without trailing slashes; `current` indexes the one in use.
    bases: Vec<String>,
    current: AtomicUsize,
    token: Option<stratus_config::Secret>,
    registration: Registration,
    target: Arc<dyn FollowTarget>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The last applied sequence number, valid once `positioned`.
    applied: AtomicU64,
    positioned: AtomicBool,
    /// Set when a session got its subscription; the backoff restarts after such a session.
    connected: AtomicBool,
    /// The newest `config` entry tried (applied or failed), so a failing one is not retried
    /// on every reconnect.
    configured: AtomicU64,
    /// Entries that could not be applied, `{"seq", "error"}`, until an ack or heartbeat
    /// carried them to the control plane.
    failures: Mutex<VecDeque<Failure>>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("base", &self.base())
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

/// A connector for `http://` and `https://` control planes that sends small requests (acks)
/// at once instead of waiting on Nagle. HTTPS is verified against the webpki roots and the
/// system's store (where an operator installs a private CA).
fn connector() -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
    HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http)
}

impl Follower {
    pub(super) fn new(
        control: &stratus_config::ControlUrls,
        token: Option<stratus_config::Secret>,
        registration: Registration,
        target: Arc<dyn FollowTarget>,
    ) -> Self {
        Self {
            bases: control.0.iter().map(|url| url.as_str().trim_end_matches('/').to_owned()).collect(),
            current: AtomicUsize::new(0),
            token,
            registration,
            target,
            client: Client::builder(TokioExecutor::new()).build(connector()),
            applied: AtomicU64::new(0),
            positioned: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            configured: AtomicU64::new(0),
            failures: Mutex::default(),
        }
    }

    /// The replica in use.
    pub(super) fn base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Moves to the next replica (after a session with this one ended); returns whether that
    /// wrapped around to the first, i.e. every replica was tried since the last wrap.
    pub(super) fn fail_over(&self) -> bool {
        if self.bases.len() < 2 {
            return true;
        }
        let next = (self.current.load(Ordering::Relaxed) + 1) % self.bases.len();
        self.current.store(next, Ordering::Relaxed);
        tracing::info!(control = %self.base(), "failing over to the next control plane replica");
        next == 0
    }

    /// Whether the last session got as far as a subscription (and forgets it).
    pub(super) fn take_connected(&self) -> bool {
        self.connected.swap(false, Ordering::Relaxed)
    }

    fn request(
        &self,
        method: http::Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<http::Request<Full<Bytes>>, SessionError> {
        let mut request = http::Request::builder().method(method).uri(format!("{}{path}", self.base()));
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let body = match json {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(json)
            }
            None => Bytes::new(),
        };
        request.body(Full::new(body)).map_err(|e| SessionError::Request(e.to_string()))
    }

    /// POSTs `body` as JSON and returns the answer's body.
    async fn call(
        &self,
        what: &'static str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Bytes, SessionError> {
        let json = serde_json::to_vec(body).map_err(|e| SessionError::Request(e.to_string()))?;
        let request = self.request(http::Method::POST, path, Some(json))?;
        let call = async {
            let response = self.client.request(request).await.map_err(|e| SessionError::request(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(SessionError::Status { what, status });
            }
            let bytes =
                response.into_body().collect().await.map_err(|e| SessionError::Request(e.to_string()))?;
            Ok(bytes.to_bytes())
        };
        tokio::time::timeout(CALL_TIMEOUT, call).await.map_err(|_| SessionError::Silent(CALL_TIMEOUT))?
    }

    fn id_path(&self, tail: &str) -> String {
        let id =
            percent_encoding::utf8_percent_encode(&self.registration.id, percent_encoding::NON_ALPHANUMERIC);
        format!("/v1/edges/{id}/{tail}")
    }

    /// Registers, subscribes from the last applied sequence and applies what arrives until the
    /// stream ends or fails.
    pub(super) async fn session(&self) -> Result<(), SessionError> {
        let reg = &self.registration;
        let register = Register {
            id: reg.id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            url: reg.url.clone(),
            admin: reg.admin.clone(),
            pop: reg.pop.clone(),
            peer_url: reg.peer_url.clone(),
        };
        let answer = self.call("register", "/v1/edges/register", &register).await?;
        let Registered { head, config } = serde_json::from_slice(&answer)
            .map_err(|e| SessionError::BadAnswer { what: "register", error: e.to_string() })?;
        // The control plane's configuration in force: newer than ours means we started, or were
        // away while it changed (the entry itself may be compacted away).
        if let Some(config) = config
            && config.seq > self.target.fleet_seq()
            && config.seq > self.configured.load(Ordering::Relaxed)
        {
            self.configure(config.seq, &config.config);
        }
        // Peers at once rather than at the next heartbeat; a failure waits for that one.
        if self.registration.discover
            && let Err(e) = self.discover().await
        {
            tracing::warn!(error = %e, "peer discovery failed");
        }
        // A fresh edge has an empty cache: nothing before the head concerns it. An edge that
        // kept its cache on disk resumes where it stopped, and applies what it missed.
        if !self.positioned.swap(true, Ordering::Relaxed) {
            let start = match self.target.resume_from() {
                Some(seq) if seq <= head => seq,
                // A position past the head belongs to another log: start over.
                Some(seq) => {
                    tracing::warn!(
                        seq,
                        head,
                        "kept position is past the log's head; dropping the whole cache"
                    );
                    self.target.clear();
                    head
                }
                None => head,
            };
            self.applied.store(start, Ordering::Relaxed);
            self.target.persist_applied(start);
        }
        self.target.progress(self.applied.load(Ordering::Relaxed), head);
        let after = self.applied.load(Ordering::Relaxed);
        if after >= head {
            self.target.caught_up();
        }
        let request =
            self.request(http::Method::GET, &format!("{}?after={after}", self.id_path("events")), None)?;
        let response = tokio::time::timeout(CALL_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| SessionError::Silent(CALL_TIMEOUT))?
            .map_err(|e| SessionError::request(&e))?;
        if !response.status().is_success() {
            return Err(SessionError::Status { what: "subscribe", status: response.status() });
        }
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!(control = %self.base(), after, head, "following the control plane");
        // NDJSON framed by `LinesCodec`, which stops buffering at `MAX_LINE` (the control plane
        // never writes longer lines). Lines that arrived together are applied, then acked once.
        let body = response.into_body().into_data_stream().map_err(std::io::Error::other);
        let codec = LinesCodec::new_with_max_length(MAX_LINE);
        let mut lines = FramedRead::new(StreamReader::new(body), codec).ready_chunks(BATCH);
        loop {
            let chunk = tokio::time::timeout(SILENCE, lines.next())
                .await
                .map_err(|_| SessionError::Silent(SILENCE))?;
            let Some(chunk) = chunk else { return Ok(()) };
            let before = self.applied.load(Ordering::Relaxed);
            for line in chunk {
                let line = line.map_err(|e| match e {
                    LinesCodecError::MaxLineLengthExceeded => {
                        SessionError::BadLine(format!("a line longer than {MAX_LINE} bytes"))
                    }
                    LinesCodecError::Io(e) => SessionError::Request(e.to_string()),
                })?;
                if !line.trim().is_empty() {
                    self.handle(&line)?;
                }
            }
            let applied = self.applied.load(Ordering::Relaxed);
            if applied != before {
                self.target.persist_applied(applied);
            }
            if applied >= head {
                self.target.caught_up();
            }
            if applied != before {
                // A lost ack is harmless: the next ack or heartbeat carries a higher position
                // and the failures not yet reported.
                let failed = self.failures();
                let ack = Ack { seq: applied, failed: failed.clone() };
                match self.call("ack", &self.id_path("ack"), &ack).await {
                    Ok(_) => self.reported(&failed),
                    Err(e) => tracing::warn!(error = %e, seq = applied, "ack failed"),
                }
            }
        }
    }

    /// Applies one stream line.
    fn handle(&self, line: &str) -> Result<(), SessionError> {
        let bad = |why: &str| {
            let shown: String = line.chars().take(200).collect();
            SessionError::BadLine(format!("{why}: {shown}"))
        };
        match StreamLine::read(line).map_err(|e| bad(&e.to_string()))? {
            StreamLine::Entry { seq, op } => {
                let applied = self.applied.load(Ordering::Relaxed);
                if seq <= applied {
                    return Ok(()); // already applied (a replay after reconnecting)
                }
                if seq != applied + 1 {
                    return Err(SessionError::Gap { got: seq, applied });
                }
                match op {
                    Op::Config { config, .. } => {
                        if seq > self.configured.load(Ordering::Relaxed) {
                            self.configure(seq, &config);
                        }
                    }
                    op => apply(self.target.as_ref(), seq, op),
                }
                self.applied.store(seq, Ordering::Relaxed);
                tracing::debug!(seq, "log entry applied");
                self.target.progress(seq, seq);
            }
            StreamLine::Reset { next: 0 } => return Err(bad("reset to 0")),
            StreamLine::Reset { next } => {
                tracing::warn!(next, "log compacted past this edge's position; dropping the whole cache");
                self.target.clear();
                self.applied.store(next - 1, Ordering::Relaxed);
            }
            StreamLine::Ping { head } => self.target.progress(self.applied.load(Ordering::Relaxed), head),
        }
        Ok(())
    }

    async fn heartbeat(&self) -> Result<(), SessionError> {
        let failed = self.failures();
        let beat = Heartbeat {
            applied: self.applied.load(Ordering::Relaxed),
            config: self.target.fleet_seq(),
            stats: self.target.stats(),
            failed: failed.clone(),
        };
        self.call("heartbeat", &self.id_path("heartbeat"), &beat).await?;
        self.reported(&failed);
        if self.registration.discover {
            self.discover().await?;
        }
        Ok(())
    }

    /// Takes as cluster peers the live edges the control plane lists with this edge's `pop`.
    async fn discover(&self) -> Result<(), SessionError> {
        let Some(pop) = &self.registration.pop else { return Ok(()) };
        let request = self.request(http::Method::GET, "/v1/edges", None)?;
        let call = async {
            let response = self.client.request(request).await.map_err(|e| SessionError::request(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(SessionError::Status { what: "edges", status });
            }
            let body = http_body_util::Limited::new(response.into_body(), MAX_EDGE_LIST);
            body.collect().await.map(|b| b.to_bytes()).map_err(|e| SessionError::Request(e.to_string()))
        };
        let bytes = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| SessionError::Silent(CALL_TIMEOUT))??;
        let list: EdgeList = serde_json::from_slice(&bytes)
            .map_err(|e| SessionError::BadAnswer { what: "edges", error: e.to_string() })?;
        let urls: Vec<String> = list
            .edges
            .into_iter()
            .filter(|e| e.live && e.pop.as_ref() == Some(pop))
            .filter_map(|e| e.peer_url)
            .collect();
        self.target.set_peers(&urls);
        Ok(())
    }

    /// Applies `config` entry `seq`. Fields this edge does not know make it unreadable, and it
    /// fails rather than apply half of what was meant. A failure is remembered to be reported.
    fn configure(&self, seq: u64, config: &Readable<FleetConfig>) {
        self.configured.fetch_max(seq, Ordering::Relaxed);
        let applied = config
            .as_result()
            .map_err(|e| format!("cannot read the configuration: {e}"))
            .and_then(|config| self.target.configure(seq, config));
        if let Err(error) = applied {
            tracing::error!(seq, %error, "cannot apply the control plane's site configuration; the running one stays");
            let mut failures = self.lock_failures();
            if failures.len() == MAX_FAILURES {
                failures.pop_front();
            }
            failures.push_back(Failure { seq, error });
        }
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, VecDeque<Failure>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The failures not yet reported.
    fn failures(&self) -> Vec<Failure> {
        self.lock_failures().iter().cloned().collect()
    }

    /// Forgets failures the control plane has now been told about.
    fn reported(&self, sent: &[Failure]) {
        if !sent.is_empty() {
            self.lock_failures().retain(|f| !sent.contains(f));
        }
    }
}

/// Applies one log operation. Errors are logged, never fatal: the entry counts as applied.
pub(super) fn apply(target: &dyn FollowTarget, seq: u64, op: Op) {
    match op {
        Op::Purge { purge: Readable::Read(purge), .. } => {
            // The edge logs each purge it applies, whoever sent it.
            target.purge(&purge);
        }
        Op::Purge { purge: Readable::Unreadable { error, .. }, .. } => {
            tracing::error!(seq, %error, "cannot read a purge; dropping the whole cache instead");
            target.clear();
        }
        Op::Prewarm { urls, objects, .. } => {
            tracing::info!(seq, urls = urls.len(), objects = objects.len(), "prewarm queued");
            // Acked once queued: fetches take as long as the origin needs.
            tokio::spawn(target.prewarm(urls, objects));
        }
        // `config` entries are the follower's own (`Follower::configure`).
        Op::Config { .. } => {}
        Op::Unknown => tracing::debug!(seq, "log entry of a type this edge does not know"),
    }
}

/// Sends a heartbeat every 5 s once the follower knows its position.
pub(super) async fn heartbeats(follower: Arc<Follower>, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if follower.positioned.load(Ordering::Relaxed)
            && let Err(e) = follower.heartbeat().await
        {
            tracing::debug!(error = %e, "heartbeat failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;

    use stratus_config::purge::{ObjectRef, PurgeRequest};

    use super::*;
    use crate::fleet::follow_target::EdgeStats;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl FollowTarget for Recorder {
        fn purge(&self, purge: &PurgeRequest) -> usize {
            self.0.lock().unwrap().push(format!("purge {:?} soft={}", purge.files, purge.soft));
            1
        }
        fn clear(&self) {
            self.0.lock().unwrap().push("clear".into());
        }
        fn prewarm(&self, urls: Vec<String>, _: Vec<ObjectRef>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            self.0.lock().unwrap().push(format!("prewarm {urls:?}"));
            Box::pin(async {})
        }
        fn stats(&self) -> EdgeStats {
            EdgeStats::default()
        }
        fn configure(&self, seq: u64, config: &FleetConfig) -> Result<(), String> {
            let hosts: Vec<&String> = config.sites.iter().flat_map(|s| &s.hosts).collect();
            if hosts.iter().any(|h| *h == "bad") {
                return Err("cannot build".into());
            }
            self.0.lock().unwrap().push(format!("config {seq} {hosts:?}"));
            Ok(())
        }
        fn fleet_seq(&self) -> u64 {
            0
        }
    }

    /// Edge `a`, as a test registers it.
    fn registration() -> Registration {
        Registration {
            id: "a".into(),
            url: "http://127.0.0.1:1".into(),
            admin: None,
            pop: None,
            peer_url: None,
            discover: false,
        }
    }

    fn follower(target: Arc<Recorder>, applied: u64) -> Follower {
        let reg = registration();
        let f = Follower::new(&"http://127.0.0.1:1".parse().unwrap(), None, reg, target);
        assert_eq!(f.base(), "http://127.0.0.1:1");
        f.applied.store(applied, Ordering::Relaxed);
        f
    }

    #[tokio::test]
    async fn lines_apply_in_order_and_gaps_are_refused() {
        let target = Arc::new(Recorder::default());
        let f = follower(target.clone(), 4);
        let lines = [
            r#"{"type":"ping","head":9}"#,
            r#"{"type":"entry","seq":4,"op":{"type":"purge","id":"p-4","files":["/old"]}}"#,
            r#"{"type":"entry","seq":5,"op":{"type":"purge","id":"p-5","files":["/a"],"soft":true}}"#,
            r#"{"type":"entry","seq":6,"op":{"type":"prewarm","id":"w-6","urls":["http://h/x"],"objects":[]}}"#,
            r#"{"type":"entry","seq":7,"op":{"type":"config","id":"c-7","sites":[{"hosts":["a"],"origins":["http://o:1"]}]}}"#,
            r#"{"type":"entry","seq":8,"op":{"type":"purge","id":"p-8","files":["/b"],"new_field":1}}"#,
        ];
        for line in lines {
            f.handle(line).expect(line);
        }
        assert_eq!(f.applied.load(Ordering::Relaxed), 8);
        let gap = f.handle(r#"{"type":"entry","seq":10,"op":{"type":"purge","id":"p-10","files":["/x"]}}"#);
        assert!(matches!(gap, Err(SessionError::Gap { got: 10, applied: 8 })), "{gap:?}");
        f.handle(r#"{"type":"reset","next":40}"#).expect("reset");
        assert_eq!(f.applied.load(Ordering::Relaxed), 39);
        assert!(f.handle("not json").is_err());
        assert!(f.handle(r#"{"type":"reset","next":0}"#).is_err());
        assert!(f.handle(r#"{"type":"gossip"}"#).is_err());
        assert_eq!(
            *target.0.lock().unwrap(),
            vec![
                "purge [\"/a\"] soft=true".to_owned(),
                "prewarm [\"http://h/x\"]".to_owned(),
                "config 7 [\"a\"]".to_owned(),
                "clear".to_owned(),
                "clear".to_owned(),
            ]
        );
    }

    #[tokio::test]
    async fn configurations_that_cannot_apply_are_reported_until_an_ack_carries_them() {
        let target = Arc::new(Recorder::default());
        let f = follower(target.clone(), 0);
        let config = |seq: u64, host: &str| {
            format!(
                r#"{{"type":"entry","seq":{seq},"op":{{"type":"config","id":"c-{seq}","sites":[{{"hosts":["{host}"],"origins":["http://o:1"]}}]}}}}"#
            )
        };
        f.handle(&config(1, "bad")).expect("a failing config is consumed");
        f.handle(r#"{"type":"entry","seq":2,"op":{"type":"config","id":"c-2","sites":[],"colour":1}}"#)
            .expect("an unreadable config is consumed");
        f.handle(&config(3, "good")).expect("config");
        assert_eq!(f.applied.load(Ordering::Relaxed), 3);
        let failed = f.failures();
        assert_eq!(failed.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(failed[0].error, "cannot build");
        assert!(failed[1].error.contains("unknown field `colour`"), "{failed:?}");
        // A replayed entry the follower already tried is not applied again.
        f.applied.store(0, Ordering::Relaxed);
        f.handle(&config(1, "again")).expect("replay");
        f.reported(&failed[..1]);
        assert_eq!(f.failures().len(), 1);
        assert_eq!(*target.0.lock().unwrap(), vec!["config 3 [\"good\"]".to_owned()]);
    }

    /// A control plane of one answer per connection: the register answer, then a stream whose
    /// body is `stream` (close-delimited).
    async fn scripted_control(stream: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut stream = Some(stream);
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&request).to_string();
                let answer = if head.starts_with("POST /v1/edges/register") {
                    let body = r#"{"head":0}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes()
                } else if head.starts_with("GET /v1/edges/a/events?after=0") {
                    let mut answer = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
                    answer.extend(stream.take().unwrap_or_default());
                    answer
                } else {
                    b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_vec()
                };
                let _ = conn.write_all(&answer).await;
                let _ = conn.shutdown().await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_line_over_the_protocol_limit_ends_the_session_after_the_lines_before_it() {
        let mut stream =
            br#"{"type":"entry","seq":1,"op":{"type":"purge","id":"p-1","files":["/a"]}}"#.to_vec();
        stream.push(b'\n');
        stream.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        stream.extend(b"\n");
        let base = scripted_control(stream).await;
        let target = Arc::new(Recorder::default());
        let reg = registration();
        let f = Follower::new(&base.parse().unwrap(), None, reg, target.clone());
        let ended = f.session().await;
        assert!(
            matches!(&ended, Err(SessionError::BadLine(why)) if why.contains("longer than")),
            "{ended:?}"
        );
        assert_eq!(f.applied.load(Ordering::Relaxed), 1);
        assert_eq!(*target.0.lock().unwrap(), vec!["purge [\"/a\"] soft=false".to_owned()]);
    }
}
