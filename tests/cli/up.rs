//! `stratus up`: the one command a newcomer runs. It starts, serves the demo page through both
//! edges, stops cleanly on SIGTERM, and refuses to start half a CDN when a port is taken.

use std::net::TcpListener;
use std::time::Duration;

use crate::support::{self, Proc, run_stratus, stratus};

/// A base port whose six ports are free right now (`stratus up` uses fixed ports by design).
fn free_port_base() -> u16 {
    for _ in 0..200 {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
        let base = probe.local_addr().expect("local addr").port();
        drop(probe);
        if base < 60_000 && (0..6).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no six consecutive free ports found");
}

#[test]
fn up_serves_the_demo_through_both_edges_and_stops_on_sigterm() {
    let base = free_port_base();
    let mut cmd = stratus();
    cmd.args(["up", "--port-base", &base.to_string()]);
    let mut up = Proc::start(cmd, &["origin s3", "control api", "edge http", "edge admin"]);
    support::eventually("the welcome banner", Duration::from_secs(20), || {
        up.stdout().contains("Stratus is up").then_some(())
    });
    for port in [base + 2, base + 3] {
        let url = format!("http://127.0.0.1:{port}/index.html");
        let first = reqwest::blocking::get(&url).expect("GET demo page");
        assert_eq!(first.status(), 200, "{url}");
        let status = first.headers()["cache-status"].to_str().expect("ascii").to_owned();
        assert!(status.contains("fwd=uri-miss"), "{url}: {status}");
        assert!(first.text().expect("body").contains("Stratus is serving this page"));
        let second = reqwest::blocking::get(&url).expect("GET demo page again");
        let status = second.headers()["cache-status"].to_str().expect("ascii").to_owned();
        assert!(status.contains("; hit"), "{url} second request: {status}");
    }
    up.signal("TERM");
    assert_eq!(up.wait_exit(Duration::from_secs(30)), Some(0), "stratus up did not exit 0 on SIGTERM");
}

#[test]
fn up_names_the_port_that_is_taken_and_starts_nothing() {
    let base = free_port_base();
    let _taken = TcpListener::bind(("127.0.0.1", base + 2)).expect("occupy edge a's port");
    let (code, out, err) = run_stratus(&["up", "--port-base", &base.to_string()]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("port {} (edge a) is not free", base + 2)), "{err}");
    assert!(!out.contains("listening"), "something started anyway: {out}");
}
