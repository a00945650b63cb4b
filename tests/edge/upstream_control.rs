//! The control-plane follower over HTTPS: `--control https://…` registers and subscribes
//! through a TLS terminator whose certificate comes from a CA given in `SSL_CERT_FILE`.

use crate::support;
use crate::support::control::{Api, TOKEN, start_control};
use crate::support::tls::{TestCa, pem_file, tls_terminator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_follows_a_control_plane_over_https() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let ca = TestCa::new("control ca");
    let plain: std::net::SocketAddr = control.addr("control api").parse().expect("control address");
    let tls = tls_terminator(ca.acceptor(&["localhost"], &[b"http/1.1"]), plain).await;
    let ca_file = pem_file(&dir, "ca.pem", &ca.pem);

    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", "http://127.0.0.1:9", "--id", "tls-edge"])
        .args(["--control", &format!("https://localhost:{}", tls.port())])
        .env("STRATUS_TOKEN", TOKEN)
        .env("SSL_CERT_FILE", &ca_file);
    let _edge = support::Proc::start(cmd, &["edge http"]);
    Api::new(&control).until_following(1).await;
}
