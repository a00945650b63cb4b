//! Helpers for the upstream end-to-end tests: a test certificate authority (rcgen), origins
//! that serve plain HTTP or HTTPS (tokio-rustls, ALPN chosen per origin), can be taken down
//! and brought back on the same address and record what they saw (HTTP version, SNI, Host);
//! a small DNS server over UDP whose records the test changes (answers built with
//! hickory-proto); and an edge started from an `[edge]` config snippet.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

use crate::util::{self, Proc};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM), for the edge's `ca_file`.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca");
        let pem = issuer.pem();
        Self { issuer, pem }
    }

    /// A TLS acceptor with a certificate for `names` signed by this CA, offering `alpn`.
    pub fn acceptor(&self, names: &[&str], alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A request a backend received.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub version: Version,
    /// The `Host` header, else the HTTP/2 `:authority`.
    pub host: String,
    /// The TLS server name the client asked for.
    pub sni: Option<String>,
}

#[derive(Default)]
struct State {
    hits: Mutex<Vec<Hit>>,
    unhealthy: AtomicBool,
}

/// A test origin. Answers `/healthz` with 200 (or 503 after `set_healthy(false)`), `/slow`
/// after 3 s, `/trickle` with half its body at once and the rest after 3 s, `/stale/…` with `max-age=1, stale-if-error=600`, everything else with
/// `no-store`; the body is always the backend's name.
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Backend {
    /// A plain HTTP backend on `bind` (e.g. `127.0.0.1:0`).
    pub async fn http(name: &'static str, bind: &str) -> Self {
        Self::start(name, bind, None).await
    }

    /// An HTTPS backend on `bind`.
    pub async fn https(name: &'static str, bind: &str, tls: tokio_rustls::TlsAcceptor) -> Self {
        Self::start(name, bind, Some(tls)).await
    }

    async fn start(name: &'static str, bind: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let b = Self { name, addr, tls, state: Arc::default(), tasks: Arc::default() };
        b.serve(listener);
        b
    }

    /// `http://` or `https://` with `host` and this backend's port.
    pub fn url(&self, host: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}:{}", self.addr.port())
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (state, tls, name, tasks) = (self.state.clone(), self.tls.clone(), self.name, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, tls) = (state.clone(), tls.clone());
                let conn = tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let svc = service(state, name, None);
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let sni = stream.get_ref().1.server_name().map(str::to_owned);
                            let svc = service(state, name, sni);
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
                tasks.lock().expect("lock").push(conn);
            }
        });
        self.tasks.lock().expect("lock").push(accept);
    }

    /// Closes the port and every open connection: connecting is refused from now on.
    pub fn take_down(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn bring_up(&self) {
        let listener = util_bind(self.addr).await;
        self.serve(listener);
    }

    /// Whether `/healthz` answers 200 (true) or 503.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.unhealthy.store(!healthy, Ordering::Relaxed);
    }

    /// The requests that reached `path` (health probes are left out unless asked for).
    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.state.hits.lock().expect("lock").iter().filter(|h| h.path == path).cloned().collect()
    }
}

/// Binds `addr` again; the port was just released, so retry briefly if it lingers.
async fn util_bind(addr: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr} again");
}

/// A backend's response body.
type Reply = BoxBody<Bytes, Infallible>;

fn service(
    state: Arc<State>,
    name: &'static str,
    sni: Option<String>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Reply>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Reply>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let (state, sni) = (state.clone(), sni.clone());
        async move { Ok::<_, Infallible>(answer(&state, name, sni, req).await) }
    })
}

async fn answer(state: &State, name: &str, sni: Option<String>, req: Request<Incoming>) -> Response<Reply> {
    let path = req.uri().path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let hit = Hit { method: req.method().to_string(), path: path.clone(), version: req.version(), host, sni };
    let _ = req.into_body().collect().await;
    state.hits.lock().expect("lock").push(hit);
    if path == "/trickle" {
        // The head and a first part at once, the rest after 3 s.
        let parts = futures_util::stream::unfold(0, |n| async move {
            match n {
                0 => Some((Ok(Frame::data(Bytes::from_static(b"first part "))), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Some((Ok(Frame::data(Bytes::from_static(b"second part"))), 2))
                }
                _ => None,
            }
        });
        let mut res = Response::new(StreamBody::new(parts).boxed());
        res.headers_mut().insert(http::header::CACHE_CONTROL, "no-store".parse().expect("cache-control"));
        return res;
    }
    let mut res = Response::new(Full::new(Bytes::from(name.to_owned())).boxed());
    let cc = if path == "/healthz" {
        if state.unhealthy.load(Ordering::Relaxed) {
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        "no-store"
    } else if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        "no-store"
    } else if path.starts_with("/stale/") {
        "max-age=1, stale-if-error=600"
    } else if path.starts_with("/cached/") {
        "max-age=600"
    } else {
        "no-store"
    };
    res.headers_mut().insert(http::header::CACHE_CONTROL, cc.parse().expect("cache-control"));
    res
}

/// A DNS server on 127.0.0.1 (UDP) with A records the test sets; every answer has a TTL of
/// one second. Names without records get NXDOMAIN (no SOA, so nobody caches the denial).
pub struct DnsServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    pub async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns address");
        let records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>> = Arc::default();
        let r = records.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let reply = dns_answer(&query, &r.lock().expect("lock"));
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Self { addr, records, task }
    }

    /// Points `name` at `ips` (empty: the name does not exist).
    pub fn set(&self, name: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().expect("ipv4")).collect::<Vec<_>>();
        let mut records = self.records.lock().expect("lock");
        if ips.is_empty() {
            records.remove(name);
        } else {
            records.insert(name.to_owned(), ips);
        }
    }

    /// Stops answering: queries go unanswered from now on.
    pub fn stop(&self) {
        self.task.abort();
    }
}

fn dns_answer(query: &Message, records: &HashMap<String, Vec<Ipv4Addr>>) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    for q in &query.queries {
        reply.add_query(q.clone());
        let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        match records.get(&name) {
            None => reply.metadata.response_code = ResponseCode::NXDomain,
            Some(ips) if q.query_type() == RecordType::A => {
                for ip in ips {
                    reply.add_answer(Record::from_rdata(q.name().clone(), 1, RData::A(A(*ip))));
                }
            }
            // The name exists, but has no records of this type (AAAA): an empty answer.
            Some(_) => {}
        }
    }
    reply
}

/// A `stratus edge` from `[edge]` settings `toml` (sites, dns, ...); one listener on port 0
/// and an admin listener are added here.
pub fn edge(toml: &str) -> (Proc, tempfile::TempDir) {
    edge_with_env(toml, &[])
}

/// [`edge`] with extra environment variables.
pub fn edge_with_env(toml: &str, env: &[(&str, &str)]) -> (Proc, tempfile::TempDir) {
    let dir = util::tempdir();
    let path = rewrite(&dir, toml);
    let mut cmd = util::stratus();
    cmd.arg("edge").arg("--config").arg(&path);
    cmd.envs(env.iter().copied());
    (Proc::start(cmd, &["edge http", "edge admin"]), dir)
}

/// Writes the edge's config file in `dir` with `toml` as its `[edge]` settings (for a reload).
pub fn rewrite(dir: &tempfile::TempDir, toml: &str) -> std::path::PathBuf {
    let text = format!(
        "[edge]\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\n[edge.admin]\nlisten = \"127.0.0.1:0\"\n{toml}"
    );
    util::write_file(dir.path(), "edge.toml", &text)
}

/// Writes `pem` to a file in `dir` and returns its path as TOML-ready text.
pub fn pem_file(dir: &tempfile::TempDir, name: &str, pem: &str) -> String {
    util::write_file(dir.path(), name, pem).display().to_string()
}

/// Terminates TLS on a fresh loopback port and forwards the plaintext to `target`; returns
/// the port's address.
pub async fn tls_terminator(acceptor: tokio_rustls::TlsAcceptor, target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind terminator");
    let addr = listener.local_addr().expect("terminator address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}
