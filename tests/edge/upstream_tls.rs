//! HTTPS origins: certificates checked against the site's CA file, HTTP/2 when the origin
//! offers it by ALPN, the origin's name as SNI whichever `Host` is forwarded, timeouts.

use crate::support;
use crate::support::edge::{edge_with_toml, edge_with_toml_env};
use crate::support::http::{client, send};
use crate::support::origin::Origin;
use crate::support::tls::{TestCa, pem_file};
/// A GET to the edge with `Host: host`.
async fn get(edge: &support::Proc, host: &str, path: &str) -> support::http::Got {
    send(client().get(format!("{}{path}", edge.url("edge http"))).header("host", host)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_origin_with_the_right_ca_serves_and_a_wrong_ca_is_a_502() {
    let ca = TestCa::new("stratus test ca");
    let other = TestCa::new("somebody else");
    let backend =
        Origin::backend_tls("secure", "127.0.0.1:0", ca.acceptor(&["localhost"], &[b"h2", b"http/1.1"]))
            .await;
    let dir = support::tempdir();
    let good = pem_file(&dir, "ca.pem", &ca.pem);
    let bad = pem_file(&dir, "other.pem", &other.pem);
    let (edge, _cfg) = edge_with_toml(&format!(
        r#"
[[edge.sites]]
hosts = ["good.example"]
origins = ["{url}"]
ca_file = "{good}"

[[edge.sites]]
hosts = ["bad.example"]
origins = ["{url}"]
ca_roots = "none"
ca_file = "{bad}"

[[edge.sites]]
hosts = ["public.example"]
origins = ["{url}"]
"#,
        url = backend.url_for("localhost")
    ));

    let got = get(&edge, "good.example", "/cached/a.css").await;
    assert_eq!((got.status, got.text().as_str()), (200, "secure"), "{}", got.cache());
    let hits = backend.seen("/cached/a.css");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].sni.as_deref(), Some("localhost"), "SNI is the origin's name");
    assert_eq!(hits[0].version, http::Version::HTTP_2, "the origin offered h2 by ALPN");
    let again = get(&edge, "good.example", "/cached/a.css").await;
    assert!(again.cache().contains("hit"), "cached over HTTPS too: {}", again.cache());
    assert_eq!(backend.hits("/cached/a.css"), 1);

    for host in ["bad.example", "public.example"] {
        let got = get(&edge, host, "/cached/b.css").await;
        assert_eq!(got.status, 502, "{host}: a certificate from an untrusted CA is refused");
        assert!(got.cache().contains("detail=tls"), "{host}: {}", got.cache());
    }
    assert!(backend.hits("/cached/b.css") == 0, "no request went over an unverified connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_only_when_the_origin_offers_it_and_sni_stays_the_origins_name() {
    let ca = TestCa::new("stratus test ca");
    let h1 = Origin::backend_tls("h1", "127.0.0.1:0", ca.acceptor(&["localhost"], &[b"http/1.1"])).await;
    let h2 =
        Origin::backend_tls("h2", "127.0.0.1:0", ca.acceptor(&["localhost"], &[b"h2", b"http/1.1"])).await;
    let dir = support::tempdir();
    let ca_file = pem_file(&dir, "ca.pem", &ca.pem);
    let (edge, _cfg) = edge_with_toml(&format!(
        r#"
[[edge.sites]]
hosts = ["one.example"]
origins = ["{h1}"]
ca_file = "{ca_file}"
origin_host = false

[[edge.sites]]
hosts = ["two.example"]
origins = ["{h2}"]
ca_file = "{ca_file}"
origin_host = false

[[edge.sites]]
hosts = ["own.example"]
origins = ["{h2}"]
ca_file = "{ca_file}"
"#,
        h1 = h1.url_for("localhost"),
        h2 = h2.url_for("localhost"),
    ));

    for (host, backend, version) in
        [("one.example", &h1, http::Version::HTTP_11), ("two.example", &h2, http::Version::HTTP_2)]
    {
        let got = get(&edge, host, "/page").await;
        assert_eq!(got.status, 200, "{host}: {}", got.cache());
        let hit = backend.seen("/page").pop().expect("the origin was asked");
        assert_eq!(hit.version, version, "{host}");
        assert_eq!(hit.host, host, "origin_host = false forwards the client's Host");
        assert_eq!(hit.sni.as_deref(), Some("localhost"), "{host}: SNI stays the origin's name");
    }
    let got = get(&edge, "own.example", "/own").await;
    assert_eq!(got.status, 200);
    let hit = h2.seen("/own").pop().expect("the origin was asked");
    assert_eq!(hit.host, format!("localhost:{}", h2.addr.port()), "origin_host sends the origin's host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_origin_first_byte_timeout_is_a_504() {
    let ca = TestCa::new("stratus test ca");
    let backend =
        Origin::backend_tls("slow", "127.0.0.1:0", ca.acceptor(&["localhost"], &[b"h2", b"http/1.1"])).await;
    let dir = support::tempdir();
    let ca_file = pem_file(&dir, "ca.pem", &ca.pem);
    let (edge, _cfg) = edge_with_toml(&format!(
        r#"
[[edge.sites]]
hosts = ["*"]
origins = ["{url}"]
ca_file = "{ca_file}"
timeouts = {{ connect = "2s", first_byte = "300ms", total = "10s" }}
"#,
        url = backend.url_for("localhost")
    ));
    // The origin answers after 3 s; a 504 means the edge gave up first.
    let got = get(&edge, "x.example", "/slow").await;
    assert_eq!(got.status, 504, "{}", got.cache());
    assert!(got.cache().contains("detail=timeout"), "{}", got.cache());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_roots_include_a_ca_named_by_ssl_cert_file() {
    let ca = TestCa::new("stratus test ca");
    let backend =
        Origin::backend_tls("sys", "127.0.0.1:0", ca.acceptor(&["localhost"], &[b"h2", b"http/1.1"])).await;
    let dir = support::tempdir();
    let ca_file = pem_file(&dir, "ca.pem", &ca.pem);
    let (edge, _cfg) = edge_with_toml_env(
        &format!(
            r#"
[[edge.sites]]
hosts = ["*"]
origins = ["{url}"]
ca_roots = "system"
"#,
            url = backend.url_for("localhost")
        ),
        &[("SSL_CERT_FILE", &ca_file)],
    );
    let got = get(&edge, "x.example", "/page").await;
    assert_eq!((got.status, got.text().as_str()), (200, "sys"), "{}", got.cache());
}

#[test]
fn an_unreadable_ca_file_stops_the_edge_with_a_clear_error() {
    let dir = support::tempdir();
    let missing = dir.path().join("nope.pem").display().to_string();
    let cfg = support::write_file(
        dir.path(),
        "edge.toml",
        &format!(
            "[edge]\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\n[[edge.sites]]\nhosts = [\"*\"]\n\
             origins = [\"https://localhost:9\"]\nca_file = \"{missing}\"\n"
        ),
    );
    let (code, _out, err) = support::run_stratus(&["edge", "--config", &cfg.display().to_string()]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(&format!("ca_file {missing}: cannot read the CA file")), "{err}");
}
