//! `stratus up`: the one command a newcomer runs. It starts, serves the demo page through both
//! edges, stops cleanly on SIGTERM, and refuses to start half a CDN when a port is taken. Its
//! control API, edge admin APIs and S3 origin need this run's token and keys, which it prints,
//! or takes from the environment.

use std::net::TcpListener;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

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

/// The value `stratus up` printed for `name` in its `export NAME=VALUE` line, if any.
fn printed(stdout: &str, name: &str) -> Option<String> {
    let line = stdout.lines().find_map(|l| l.trim_start().strip_prefix(&format!("export {name}=")))?;
    line.split_whitespace().next().map(str::to_owned)
}

/// Status of `GET url`, with `token` as a bearer token if given.
fn status(url: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::blocking::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().expect("GET").status().as_u16()
}

/// The control API and both edge admin APIs answer 401 without `token` (or with a wrong one)
/// and as they should with it (the cache inspection: 404, nothing stored); scraping the edges'
/// `/metrics` and `/healthz` needs no token (issue #20).
fn assert_guarded_by(base: u16, token: &str) {
    let urls = [
        (format!("http://127.0.0.1:{}/v1/edges", base + 1), 200),
        (format!("http://127.0.0.1:{}/cache?url=http://127.0.0.1/nothing", base + 4), 404),
        (format!("http://127.0.0.1:{}/cache?url=http://127.0.0.1/nothing", base + 5), 404),
    ];
    for (url, ok) in &urls {
        assert_eq!(status(url, None), 401, "{url} without a token");
        assert_eq!(status(url, Some("not-the-token")), 401, "{url} with a wrong token");
        assert_eq!(status(url, Some(token)), *ok, "{url} with the token");
    }
    for port in [base + 4, base + 5] {
        let url = format!("http://127.0.0.1:{port}/metrics");
        assert_eq!(status(&url, None), 200, "{url} without a token");
    }
}

/// A PUT with `access`/`secret` to the origin on `base`: the error text, or `None` if it worked.
fn s3_put(base: u16, access: &str, secret: &str, key: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{base}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let s3 = support::s3::client_with(&url, "demo", access, secret);
        s3.put(&Path::from(key), PutPayload::from_static(b"uploaded")).await.err().map(|e| e.to_string())
    })
}

/// Regression (issue 16.12): `stratus up` ran the control API and the edge admin APIs without
/// a token and the origin with fixed, published S3 keys (`stratus` / `stratus-dev-secret`).
#[test]
fn up_serves_the_demo_through_both_edges_and_stops_on_sigterm() {
    let base = free_port_base();
    let mut cmd = stratus();
    cmd.args(["up", "--port-base", &base.to_string()]);
    let mut up = Proc::start(cmd, &["origin s3", "control api", "edge http", "edge admin"]);
    support::eventually("the welcome banner", Duration::from_secs(20), || {
        up.stdout().contains("Ctrl-C stops everything").then_some(())
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

    // This run's secrets are printed, random, and required.
    let out = up.stdout();
    let token = printed(&out, "STRATUS_TOKEN").unwrap_or_else(|| panic!("no token printed: {out}"));
    let access = printed(&out, "AWS_ACCESS_KEY_ID").unwrap_or_else(|| panic!("no access key printed: {out}"));
    let secret = printed(&out, "AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| panic!("no secret printed: {out}"));
    assert_eq!((token.len(), access.len(), secret.len()), (32, 20, 32), "{out}");
    assert!([&token, &access, &secret].iter().all(|s| s.bytes().all(|b| b.is_ascii_hexdigit())), "{out}");
    assert_ne!(token, secret);
    assert!(!out.contains("stratus-dev-secret"), "{out}");
    assert_guarded_by(base, &token);
    let err = s3_put(base, "stratus", "stratus-dev-secret", "old-keys.txt").expect("the old fixed keys");
    assert!(err.contains("InvalidAccessKeyId"), "{err}");
    let err = s3_put(base, &access, "wrong-secret", "wrong.txt").expect("a wrong secret is refused");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert_eq!(s3_put(base, &access, &secret, "uploaded.txt"), None, "the printed keys work");
    let r = reqwest::blocking::get(format!("http://127.0.0.1:{}/uploaded.txt", base + 2)).expect("GET");
    assert_eq!(r.text().expect("body"), "uploaded", "the upload is served through the edge");

    up.signal("TERM");
    assert_eq!(up.wait_exit(Duration::from_secs(30)), Some(0), "stratus up did not exit 0 on SIGTERM");
}

/// `stratus up --cluster`: the two edges are one cache. Whichever edge owns a page, the other
/// edge's first request for it is answered from the owner's copy (a hit at some tier), so the
/// origin is asked once per page for the pair.
#[test]
fn up_cluster_makes_the_two_edges_one_cache() {
    let base = free_port_base();
    let mut cmd = stratus();
    cmd.args(["up", "--cluster", "--port-base", &base.to_string()]);
    let up = Proc::start(cmd, &["origin s3", "control api", "edge http", "edge admin"]);
    support::eventually("the welcome banner", Duration::from_secs(20), || {
        up.stdout().contains("Ctrl-C stops everything").then_some(())
    });
    assert!(up.stdout().contains("one cluster"), "{}", up.stdout());
    let cache_status = |port: u16, page: &str| {
        let res = reqwest::blocking::get(format!("http://127.0.0.1:{port}/{page}")).expect("GET demo page");
        assert_eq!(res.status(), 200);
        res.headers()["cache-status"].to_str().expect("ascii").to_owned()
    };
    for page in ["index.html", "style.css", "logo.svg"] {
        let first = cache_status(base + 2, page);
        assert!(!first.contains("hit"), "{page} on edge a: {first}");
        let second = cache_status(base + 3, page);
        assert!(second.contains("; hit"), "{page} on edge b comes from the owner's copy: {second}");
        // When edge a owns the page, edge b shows both tiers.
        if first.split(',').count() == 1 {
            assert!(
                second.starts_with("edge-a; hit") && second.contains(", edge-b; fwd=uri-miss"),
                "{second}"
            );
        }
    }
}

/// With `STRATUS_TOKEN`, `STRATUS_ACCESS_KEY` and `STRATUS_SECRET_KEY` set, `stratus up` uses
/// them and does not echo them.
#[test]
fn up_takes_its_token_and_keys_from_the_environment_without_printing_them() {
    let base = free_port_base();
    let (token, access, secret) =
        ("env-token-0123456789abcdef", "env-access-key", "env-secret-key-fedcba9876543210");
    let mut cmd = stratus();
    cmd.args(["up", "--port-base", &base.to_string()])
        .env("STRATUS_TOKEN", token)
        .env("STRATUS_ACCESS_KEY", access)
        .env("STRATUS_SECRET_KEY", secret);
    let up = Proc::start(cmd, &["origin s3", "control api", "edge http", "edge admin"]);
    support::eventually("the welcome banner", Duration::from_secs(20), || {
        up.stdout().contains("Ctrl-C stops everything").then_some(())
    });
    let out = up.stdout();
    assert!(!out.contains(token) && !out.contains(secret), "a secret from the environment was echoed: {out}");
    assert_eq!(printed(&out, "AWS_SECRET_ACCESS_KEY").as_deref(), Some("\"$STRATUS_SECRET_KEY\""), "{out}");
    assert_eq!(printed(&out, "STRATUS_TOKEN"), None, "{out}");
    assert_guarded_by(base, token);
    let err = s3_put(base, access, "wrong-secret", "wrong.txt").expect("a wrong secret is refused");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert_eq!(s3_put(base, access, secret, "env.txt"), None, "the environment's keys work");
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
