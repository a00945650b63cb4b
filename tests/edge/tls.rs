//! TLS termination and HTTP/2 to clients, end to end: a real `stratus edge` with an HTTPS and a
//! plain listener, certificates from a CA made in the test (rcgen), and rustls clients that
//! trust only that CA. SNI picks each site's certificate, unknown names are refused with an
//! alert, ALPN chooses h2, certificate files replaced on disk reach new handshakes, plain
//! requests are redirected to HTTPS and HTTPS responses carry HSTS, and misses coalesce over
//! h2 as over HTTP/1.1.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::origin::{Origin, Part, Reply};
use crate::support::{self, Proc};

const H2: &[u8] = b"h2";
const H1: &[u8] = b"http/1.1";

/// A test CA that issues certificates into files in its own directory.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Stratus test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        Self { ca, dir: support::tempdir() }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Issues a certificate for `hosts` into `NAME.crt` and `NAME.key`, replacing each file in
    /// one rename as certificate tools do; returns the certificate's DER.
    fn issue(&self, name: &str, hosts: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        self.replace(&format!("{name}.key"), &key.serialize_pem());
        self.replace(&format!("{name}.crt"), &cert.pem());
        cert.der().to_vec()
    }

    fn replace(&self, file: &str, text: &str) {
        let tmp = self.path(&format!("{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(file)).unwrap();
    }

    /// TOML for a `[..tls]` or `default_certificate` table naming `NAME.crt` and `NAME.key`.
    fn files(&self, name: &str) -> String {
        format!(
            "{{ cert = {:?}, key = {:?} }}",
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key"))
        )
    }

    fn client_config(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection to `addr` naming `sni`, offering `alpn`; a fresh client configuration
    /// each time, so no session is resumed and the server always sends its certificate.
    async fn connect(&self, addr: &str, sni: &str, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        self.connect_with(addr, sni, alpn, rustls::DEFAULT_VERSIONS).await
    }

    /// [`Pki::connect`] offering only the TLS `versions` given.
    async fn connect_with(
        &self,
        addr: &str,
        sni: &str,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        TlsConnector::from(self.client_config(alpn, versions)).connect(name, tcp).await
    }
}

fn peer_cert(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The configuration of an edge with one HTTPS and one plain listener in front of `origin`;
/// `sites` is the TOML of its `[[edge.sites]]` (with `ORIGIN` replaced).
fn config(origin: &Origin, listener_extra: &str, sites: &str) -> String {
    format!(
        "[edge]\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\ntls = true\n{listener_extra}\n\
         [[edge.listeners]]\nlisten = \"127.0.0.1:0\"\n{}",
        sites.replace("ORIGIN", &origin.url)
    )
}

/// Starts an edge from [`config`]; its file is `edge.toml` in the returned directory.
fn edge(origin: &Origin, listener_extra: &str, sites: &str) -> (Proc, tempfile::TempDir) {
    let dir = support::tempdir();
    let path = support::write_file(dir.path(), "edge.toml", &config(origin, listener_extra, sites));
    let mut cmd = support::stratus();
    cmd.arg("edge").arg("--config").arg(&path);
    (Proc::start(cmd, &["edge https", "edge http"]), dir)
}

/// Two sites, `a.test` and `b.test`, each with its own certificate, `extra` added to `a.test`.
fn two_sites(pki: &Pki, extra: &str) -> String {
    format!(
        "[[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"ORIGIN\"]\ntls = {}\n{extra}\n\
         [[edge.sites]]\nhosts = [\"b.test\"]\norigins = [\"ORIGIN\"]\ntls = {}\n",
        pki.files("a"),
        pki.files("b")
    )
}

/// A response read whole.
struct Got {
    status: u16,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }
}

async fn read(res: http::Response<hyper::body::Incoming>) -> Got {
    let (status, version, headers) = (res.status().as_u16(), res.version(), res.headers().clone());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Got { status, version, headers, body }
}

/// An HTTP/2 connection over `io` (TLS after ALPN, or cleartext with prior knowledge).
async fn h2<I>(io: I) -> http2::SendRequest<Empty<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    send
}

/// An HTTP/1.1 connection over `io`.
async fn h1<I>(io: I) -> http1::SendRequest<Empty<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    send
}

/// GET `https://HOST/path` over an h2 connection.
async fn get2(send: &mut http2::SendRequest<Empty<Bytes>>, scheme: &str, host: &str, path: &str) -> Got {
    let req = Request::get(format!("{scheme}://{host}{path}")).body(Empty::new()).unwrap();
    read(send.send_request(req).await.unwrap()).await
}

/// `method path` with `Host: host` over an HTTP/1.1 connection.
async fn send1(send: &mut http1::SendRequest<Empty<Bytes>>, method: &str, host: &str, path: &str) -> Got {
    let req = Request::builder().method(method).uri(path).header("host", host).body(Empty::new()).unwrap();
    send.ready().await.unwrap();
    read(send.send_request(req).await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sites_on_one_port_each_get_their_own_certificate() {
    let origin = Origin::start().await;
    origin.fixed("/tls/who", Reply::ok("hello", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    let (a_der, b_der) = (pki.issue("a", &["a.test"]), pki.issue("b", &["b.test"]));
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));
    let addr = edge.addr("edge https");
    assert!(edge.url("edge https").starts_with("https://"), "{}", edge.url("edge https"));

    for (host, der) in [("a.test", &a_der), ("b.test", &b_der)] {
        let tls = pki.connect(&addr, host, &[H1]).await.unwrap();
        assert_eq!(&peer_cert(&tls), der, "{host} got another site's certificate");
        let got = send1(&mut h1(tls).await, "GET", host, "/tls/who").await;
        assert_eq!((got.status, &got.body[..]), (200, &b"hello"[..]), "{host}");
    }
    // TLS 1.3 by default, TLS 1.2 for a client that offers only that.
    let tls13 = pki.connect(&addr, "a.test", &[H1]).await.unwrap();
    assert_eq!(tls13.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    let tls12 = pki.connect_with(&addr, "b.test", &[H2], &[&rustls::version::TLS12]).await.unwrap();
    assert_eq!(tls12.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(peer_cert(&tls12), b_der);
    assert_eq!(get2(&mut h2(tls12).await, "https", "b.test", "/tls/who").await.body, "hello");
    // The origin learns the client came over HTTPS.
    let seen = origin.seen("/tls/who");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_server_name_without_default_is_refused_and_the_listener_keeps_serving() {
    let origin = Origin::start().await;
    origin.fixed("/tls/after", Reply::ok("still here", &[]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));
    let addr = edge.addr("edge https");

    for _ in 0..3 {
        let err = pki.connect(&addr, "unknown.test", &[H2, H1]).await.expect_err("handshake must fail");
        assert!(
            format!("{err:?}").contains("UnrecognisedName"),
            "expected an unrecognized_name alert: {err:?}"
        );
    }
    // Plain HTTP sent to the TLS port is refused as well, and the connection closed.
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the edge closes a connection that does not speak TLS");
    assert!(!answer.starts_with(b"HTTP/"), "no HTTP answer on a TLS port");

    let tls = pki.connect(&addr, "a.test", &[H1]).await.unwrap();
    let got = send1(&mut h1(tls).await, "GET", "a.test", "/tls/after").await;
    assert_eq!(got.body, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_server_name_gets_the_listener_default_certificate() {
    let origin = Origin::start().await;
    let pki = Pki::new();
    let a_der = pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let default_der = pki.issue("default", &["unknown.test"]);
    let listener = format!("default_certificate = {}", pki.files("default"));
    let (edge, _dir) = edge(&origin, &listener, &two_sites(&pki, ""));
    let addr = edge.addr("edge https");

    let tls = pki.connect(&addr, "unknown.test", &[H1]).await.unwrap();
    assert_eq!(peer_cert(&tls), default_der);
    // No site serves that host: the request itself is refused with 421, after the handshake.
    assert_eq!(send1(&mut h1(tls).await, "GET", "unknown.test", "/").await.status, 421);
    assert_eq!(peer_cert(&pki.connect(&addr, "a.test", &[H1]).await.unwrap()), a_der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alpn_negotiates_h2_and_hits_report_cache_status_hit() {
    let origin = Origin::start().await;
    origin.fixed("/tls/h2", Reply::ok("over h2", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));
    let addr = edge.addr("edge https");

    let tls = pki.connect(&addr, "a.test", &[H2, H1]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(H2));
    let mut send = h2(tls).await;
    let miss = get2(&mut send, "https", "a.test", "/tls/h2").await;
    assert_eq!((miss.version, miss.status), (Version::HTTP_2, 200));
    assert!(miss.header("cache-status").contains("fwd=uri-miss"), "{}", miss.header("cache-status"));
    let hit = get2(&mut send, "https", "a.test", "/tls/h2").await;
    assert_eq!(hit.body, "over h2");
    assert!(hit.header("cache-status").contains("; hit"), "{}", hit.header("cache-status"));

    // A client that offers only http/1.1 gets it, and the same cached object.
    let tls = pki.connect(&addr, "a.test", &[H1]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(H1));
    let h1_hit = send1(&mut h1(tls).await, "GET", "a.test", "/tls/h2").await;
    assert_eq!(h1_hit.version, Version::HTTP_11);
    assert!(h1_hit.header("cache-status").contains("; hit"), "{}", h1_hit.header("cache-status"));
    assert_eq!(origin.hits("/tls/h2"), 1);
}

/// RFC 9110 §15.2 over h2 after ALPN: the origin's `102` and `103 Early Hints` reach the
/// client on its stream before the final response, and the hit that follows gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_hints_reach_h2_clients_over_tls() {
    let origin = crate::conformance::early_hints_origin().await;
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    let dir = support::tempdir();
    let toml = format!(
        "[edge]\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\ntls = true\n\n\
         [[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"{}\"]\ntls = {}\n",
        origin.url,
        pki.files("a")
    );
    let path = support::write_file(dir.path(), "edge.toml", &toml);
    let mut cmd = support::stratus();
    cmd.arg("edge").arg("--config").arg(&path);
    let edge = Proc::start(cmd, &["edge https"]);
    let tls = pki.connect(&edge.addr("edge https"), "a.test", &[H2, H1]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(H2));
    let send = crate::http2::connect(tls).await;
    crate::http2::assert_early_hints_then_a_hit_without_them(&send, "https://a.test/hints-tls").await;
    assert_eq!(origin.heads().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2c_with_prior_knowledge_on_the_plain_listener_hits() {
    let origin = Origin::start().await;
    origin.fixed("/tls/h2c", Reply::ok("cleartext h2", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));

    let mut send = h2(TcpStream::connect(edge.addr("edge http")).await.unwrap()).await;
    let miss = get2(&mut send, "http", "a.test", "/tls/h2c").await;
    assert_eq!((miss.version, miss.status), (Version::HTTP_2, 200));
    let hit = get2(&mut send, "http", "a.test", "/tls/h2c").await;
    assert_eq!(hit.body, "cleartext h2");
    assert!(hit.header("cache-status").contains("; hit"), "{}", hit.header("cache-status"));
    assert_eq!(origin.hits("/tls/h2c"), 1);
    assert_eq!(origin.seen("/tls/h2c")[0].headers["x-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaced_certificate_files_reach_new_handshakes_and_a_broken_file_keeps_the_old_one() {
    let origin = Origin::start().await;
    origin.fixed("/tls/open", Reply::ok("open", &[]));
    let pki = Pki::new();
    let old = pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));
    let addr = edge.addr("edge https");
    let open = pki.connect(&addr, "a.test", &[H2]).await.unwrap();
    assert_eq!(peer_cert(&open), old);
    let mut open = h2(open).await;

    let new = pki.issue("a", &["a.test", "www.a.test"]);
    assert_ne!(new, old);
    support::eventually("new handshakes present the new certificate", Duration::from_secs(20), || {
        let rt = tokio::runtime::Handle::current();
        let got = tokio::task::block_in_place(|| rt.block_on(pki.connect(&addr, "a.test", &[H1])));
        (peer_cert(&got.unwrap()) == new).then_some(())
    });
    // The connection opened before the change keeps its session and keeps working.
    assert_eq!(get2(&mut open, "https", "a.test", "/tls/open").await.body, "open");

    pki.replace("a.crt", "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n");
    support::eventually("the broken file is reported", Duration::from_secs(20), || {
        edge.stderr().contains("certificate reload failed").then_some(())
    });
    assert_eq!(peer_cert(&pki.connect(&addr, "a.test", &[H1]).await.unwrap()), new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_requests_are_redirected_to_https_and_https_responses_carry_hsts() {
    let origin = Origin::start().await;
    origin.fixed("/tls/page?x=1", Reply::ok("secure", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let sites = two_sites(&pki, "https_redirect = true\nhsts = \"365d\"");
    let (edge, _dir) = edge(&origin, "", &sites);

    let mut plain = h1(TcpStream::connect(edge.addr("edge http")).await.unwrap()).await;
    let get = send1(&mut plain, "GET", "a.test:8080", "/tls/page?x=1").await;
    assert_eq!(get.status, 301);
    // The TLS listener's port was 0 in the configuration, so the location names none.
    assert_eq!(get.header("location"), "https://a.test/tls/page?x=1");
    assert!(get.header("cache-status").contains("detail=https-redirect"), "{}", get.header("cache-status"));
    assert_eq!(get.header("strict-transport-security"), "", "no HSTS over plain HTTP");
    let post = send1(&mut plain, "POST", "a.test", "/tls/form").await;
    assert_eq!((post.status, post.header("location").as_str()), (308, "https://a.test/tls/form"));
    assert_eq!(
        origin.hits("/tls/page?x=1") + origin.hits("/tls/form"),
        0,
        "redirects never reach the origin"
    );
    // b.test has neither: plain HTTP is served as is.
    let b = send1(&mut plain, "GET", "b.test", "/tls/page?x=1").await;
    assert_eq!((b.status, b.header("strict-transport-security").as_str()), (200, ""));

    let mut secure = h2(pki.connect(&edge.addr("edge https"), "a.test", &[H2]).await.unwrap()).await;
    for _ in 0..2 {
        // A miss, then a hit: both carry HSTS.
        let got = get2(&mut secure, "https", "a.test", "/tls/page?x=1").await;
        assert_eq!(got.body, "secure");
        assert_eq!(
            got.header("strict-transport-security"),
            "max-age=31536000",
            "{}",
            got.header("cache-status")
        );
    }
    // The edge's own error responses carry it too (504: only-if-cached and nothing stored).
    let req = Request::get("https://a.test/tls/nothing")
        .header("cache-control", "only-if-cached")
        .body(Empty::new())
        .unwrap();
    let err = read(secure.send_request(req).await.unwrap()).await;
    assert_eq!((err.status, err.header("strict-transport-security").as_str()), (504, "max-age=31536000"));
    let mut b_secure = h2(pki.connect(&edge.addr("edge https"), "b.test", &[H2]).await.unwrap()).await;
    let got = get2(&mut b_secure, "https", "b.test", "/tls/page?x=1").await;
    assert_eq!((got.status, got.header("strict-transport-security").as_str()), (200, ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_h2_streams_for_one_new_url_make_one_origin_request() {
    let origin = Origin::start().await;
    let chunk = Bytes::from(vec![b'x'; 32 << 10]);
    origin.fixed(
        "/tls/slow",
        Reply::ok("", &[("cache-control", "max-age=60")]).delayed(Duration::from_millis(300)).parts(vec![
            Part::Data(chunk.clone()),
            Part::Wait(Duration::from_millis(100)),
            Part::Data(chunk.clone()),
        ]),
    );
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));
    let send = h2(pki.connect(&edge.addr("edge https"), "a.test", &[H2]).await.unwrap()).await;

    let streams: Vec<_> = (0..50)
        .map(|_| {
            let mut send = send.clone();
            tokio::spawn(async move { get2(&mut send, "https", "a.test", "/tls/slow").await })
        })
        .collect();
    let mut collapsed = 0;
    for s in streams {
        let got = s.await.unwrap();
        assert_eq!((got.status, got.body.len()), (200, 64 << 10));
        assert!(got.body.iter().all(|b| *b == b'x'));
        collapsed += usize::from(got.header("cache-status").contains("collapsed"));
    }
    assert_eq!(origin.hits("/tls/slow"), 1, "one origin request for fifty streams");
    assert!(collapsed > 0, "some streams waited on the first one's fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_adds_a_site_with_its_certificate_and_keeps_open_connections() {
    let origin = Origin::start().await;
    origin.fixed("/tls/hup", Reply::ok("reloaded", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let c_der = pki.issue("c", &["c.test"]);
    let (edge, dir) = edge(&origin, "", &two_sites(&pki, ""));
    let addr = edge.addr("edge https");
    let mut open = h2(pki.connect(&addr, "a.test", &[H2]).await.unwrap()).await;
    assert_eq!(get2(&mut open, "https", "a.test", "/tls/hup").await.status, 200);
    assert!(pki.connect(&addr, "c.test", &[H1]).await.is_err(), "c.test is not served yet");

    let sites = format!(
        "{}[[edge.sites]]\nhosts = [\"c.test\"]\norigins = [\"ORIGIN\"]\ntls = {}\n",
        two_sites(&pki, ""),
        pki.files("c")
    );
    support::write_file(dir.path(), "edge.toml", &config(&origin, "", &sites));
    edge.signal("HUP");
    let tls =
        support::eventually("c.test's certificate is served after SIGHUP", Duration::from_secs(20), || {
            let rt = tokio::runtime::Handle::current();
            tokio::task::block_in_place(|| rt.block_on(pki.connect(&addr, "c.test", &[H1]))).ok()
        });
    assert_eq!(peer_cert(&tls), c_der);
    assert_eq!(send1(&mut h1(tls).await, "GET", "c.test", "/tls/hup").await.body, "reloaded");
    // The connection opened before the reload still serves, from the cache.
    let hit = get2(&mut open, "https", "a.test", "/tls/hup").await;
    assert!(hit.header("cache-status").contains("; hit"), "{}", hit.header("cache-status"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_tls_connection_and_an_idle_h2_connection_are_closed() {
    let origin = Origin::start().await;
    origin.fixed("/tls/idle", Reply::ok("idle", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let limits = "[edge.limits]\nheader_read_timeout = \"500ms\"\nidle_timeout = \"500ms\"\n";
    let (edge, _dir) = edge(&origin, "", &format!("{limits}{}", two_sites(&pki, "")));
    let addr = edge.addr("edge https");
    // Generous: the edge closes within a second; a hanging one fails after this.
    let deadline = Duration::from_secs(20);

    // A handshake, then nothing.
    let mut silent = pki.connect(&addr, "a.test", &[H1]).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(deadline, silent.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a silent TLS connection is still open after {deadline:?}");
    assert!(rest.is_empty(), "{rest:?}");

    // h2: one request, then no stream for idle_timeout (PINGs answered all along).
    let tls = pki.connect(&addr, "a.test", &[H2]).await.unwrap();
    let (mut send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    let conn = tokio::spawn(conn);
    assert_eq!(get2(&mut send, "https", "a.test", "/tls/idle").await.body, "idle");
    let closed = tokio::time::timeout(deadline, conn).await;
    assert!(closed.is_ok(), "an idle h2 connection is still open after {deadline:?}");
}

/// `GET path` with `Host: host` and `Connection: close` written straight onto `tls`; the whole
/// answer as text. The stream stays the caller's, to look at the session afterwards.
async fn get_close(tls: &mut TlsStream<TcpStream>, host: &str, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    String::from_utf8(answer).unwrap()
}

/// Resumption with a client that uses each ticket once (rustls, as RFC 8446 §C.4 asks): two
/// tickets after the full handshake, then on every resumed connection one fresh ticket and the
/// same cached answer, so the client goes on resuming.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn returning_clients_resume_with_tickets_and_get_one_fresh_ticket_each_time() {
    use rustls::HandshakeKind::{Full, Resumed};

    let origin = Origin::start().await;
    origin.fixed("/tls/resume", Reply::ok("resumed", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));
    let addr = edge.addr("edge https");
    // One client configuration for every connection: its session store carries the tickets.
    let client = TlsConnector::from(pki.client_config(&[H1], &[&rustls::version::TLS13]));

    for (round, kind, tickets) in
        [(1, Full, 2), (2, Resumed, 1), (3, Resumed, 1), (4, Resumed, 1), (5, Resumed, 1)]
    {
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let mut tls = client.connect(ServerName::try_from("a.test").unwrap(), tcp).await.unwrap();
        let answer = get_close(&mut tls, "a.test", "/tls/resume").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("resumed"), "round {round}: {answer}");
        let session = tls.get_ref().1;
        assert_eq!(session.handshake_kind(), Some(kind), "round {round}");
        assert_eq!(session.tls13_tickets_received(), tickets, "round {round}");
    }
    assert_eq!(origin.hits("/tls/resume"), 1);
}

/// OpenSSL's client (what `openssl s_time -reuse` in bench/run.py measures with) saves the
/// session of one connection and resumes it on the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openssl_s_client_resumes_a_saved_session() {
    let origin = Origin::start().await;
    origin.fixed("/tls/s_client", Reply::ok("from s_client", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));
    let addr = edge.addr("edge https");
    std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
    let session = pki.path("session.pem");

    let s_client = |sess: (&str, &std::path::Path)| {
        let mut cmd = tokio::process::Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &addr,
            "-servername",
            "a.test",
            "-verify_return_error",
            "-ign_eof",
        ])
        .arg("-CAfile")
        .arg(pki.path("ca.pem"))
        .arg(sess.0)
        .arg(sess.1)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        cmd
    };
    let run = |mut cmd: tokio::process::Command| async move {
        let mut child = cmd.spawn().expect("openssl runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"GET /tls/s_client HTTP/1.0\r\nHost: a.test\r\n\r\n").await.unwrap();
        // `-ign_eof`: s_client reads on until the edge closes after the HTTP/1.0 answer.
        drop(stdin);
        let out =
            tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("from s_client"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let first = run(s_client(("-sess_out", &session))).await;
    assert!(first.contains("New, TLSv1.3"), "{first}");
    for _ in 0..2 {
        let again = run(s_client(("-sess_in", &session))).await;
        assert!(again.contains("Reused, TLSv1.3"), "{again}");
    }
}

/// The edge's cipher order: AES-128-GCM for a client that prefers AES-256-GCM (as OpenSSL's
/// clients do), ChaCha20-Poly1305 for one that lists it first (no AES instructions), and any
/// suite the client offers alone still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_get_aes_128_unless_they_put_chacha20_first() {
    use rustls::CipherSuite as S;
    use rustls::crypto::aws_lc_rs::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };

    let origin = Origin::start().await;
    origin.fixed("/tls/suite", Reply::ok("suite", &[("cache-control", "max-age=60")]));
    let pki = Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let (edge, _dir) = edge(&origin, "", &two_sites(&pki, ""));
    let addr = edge.addr("edge https");

    let cases = [
        (
            vec![TLS13_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256, TLS13_CHACHA20_POLY1305_SHA256],
            S::TLS13_AES_128_GCM_SHA256,
        ),
        (
            vec![TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256],
            S::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        (vec![TLS13_AES_256_GCM_SHA384], S::TLS13_AES_256_GCM_SHA384),
    ];
    for (offered, expected) in cases {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.der().clone()).unwrap();
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.cipher_suites = offered.clone();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let name = ServerName::try_from("a.test").unwrap();
        let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let suites: Vec<_> = offered.iter().map(|s| s.suite()).collect();
        assert_eq!(
            tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
            Some(expected),
            "{suites:?}"
        );
        let answer = get_close(&mut tls, "a.test", "/tls/suite").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("suite"), "{answer}");
    }
}
