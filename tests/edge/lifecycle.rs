//! Lifecycle of a running `stratus edge` started from a configuration file: SIGHUP reloads the
//! file (new sites and TTL rules apply, the cache and open downloads survive, an invalid file
//! is refused and the old configuration keeps serving), and SIGTERM drains (in-flight
//! downloads finish, new connections are refused, the process exits 0).

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::support::http::{client, get};
use crate::support::origin::{Origin, Part, Reply};
use crate::support::{self, Proc, until};

/// Size of the large downloads.
const BIG: usize = 10 << 20;

/// The `[edge]` text of the file: listeners and admin on port 0, then `sites`.
fn edge_file(sites: &str) -> String {
    format!(
        "[edge]\n[[edge.listeners]]\nlisten = \"127.0.0.1:0\"\n[edge.admin]\nlisten = \"127.0.0.1:0\"\n{sites}"
    )
}

/// A `stratus edge --config FILE` from `text`; the file stays writable at the returned path.
fn start(text: &str) -> (Proc, tempfile::TempDir, std::path::PathBuf) {
    let dir = support::tempdir();
    let path = support::write_file(dir.path(), "edge.toml", text);
    let mut cmd = support::stratus();
    cmd.arg("edge").arg("--config").arg(&path);
    (Proc::start(cmd, &["edge http", "edge admin"]), dir, path)
}

fn site(host: &str, origin: &str) -> String {
    format!("[[edge.sites]]\nhosts = [\"{host}\"]\norigins = [\"{origin}\"]\n")
}

/// The 10 MiB body: a repeating pattern, so a lost or repeated chunk shows.
fn big_body() -> Bytes {
    Bytes::from((0..BIG).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Scripts `path` to send the first 64 KiB of the big body at once, then wait for `gate`, then
/// the rest in 1 MiB parts.
fn gated_download(origin: &Origin, path: &str, gate: &Arc<Semaphore>) {
    let body = big_body();
    let mut parts = vec![Part::Data(body.slice(..64 << 10)), Part::Gate(gate.clone())];
    let mut at = 64 << 10;
    while at < BIG {
        let end = (at + (1 << 20)).min(BIG);
        parts.push(Part::Data(body.slice(at..end)));
        at = end;
    }
    let len = BIG.to_string();
    origin.fixed(
        path,
        Reply::ok("", &[("cache-control", "max-age=60"), ("content-length", &len)]).parts(parts),
    );
}

/// Starts a download of `url` and returns it once its first bytes arrived.
async fn begin_download(url: &str, host: &str) -> (reqwest::Response, Vec<u8>) {
    let mut res = client().get(url).header("host", host).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut got = Vec::new();
    while got.len() < 64 << 10 {
        got.extend_from_slice(&res.chunk().await.unwrap().expect("the first part arrives"));
    }
    (res, got)
}

/// Reads the rest of a download.
async fn finish_download(mut res: reqwest::Response, mut got: Vec<u8>) -> Vec<u8> {
    while let Some(chunk) = res.chunk().await.expect("the download completes without an error") {
        got.extend_from_slice(&chunk);
    }
    got
}

/// The 1-based line of `text` that is `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines().position(|l| l == line).unwrap() + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_adds_a_site_without_dropping_the_cache_or_an_open_download() {
    let a = Origin::start().await;
    let b = Origin::start().await;
    a.fixed("/life/obj", Reply::ok("object", &[("cache-control", "max-age=3600")]));
    let gate = Arc::new(Semaphore::new(0));
    gated_download(&a, "/life/big", &gate);
    b.fixed("/life/new", Reply::ok("from b", &[("cache-control", "max-age=3600")]));
    let (edge, _dir, path) = start(&edge_file(&site("a.example", &a.url)));
    let base = edge.url("edge http");
    let a_host = [("host", "a.example")];

    assert!(!get(&format!("{base}/life/obj"), &a_host).await.cache().contains("hit"));
    assert!(get(&format!("{base}/life/obj"), &a_host).await.cache().contains("hit"));
    assert_eq!(get(&format!("{base}/life/new"), &[("host", "b.example")]).await.status, 421);
    let (download, first) = begin_download(&format!("{base}/life/big"), "a.example").await;

    std::fs::write(&path, edge_file(&format!("{}{}", site("a.example", &a.url), site("b.example", &b.url))))
        .unwrap();
    edge.signal("HUP");
    let new = until("the new site is served after SIGHUP", Duration::from_secs(20), || async {
        let got = get(&format!("{base}/life/new"), &[("host", "b.example")]).await;
        (got.status == 200).then_some(got)
    })
    .await;
    assert_eq!(new.text(), "from b");
    let cached = get(&format!("{base}/life/obj"), &a_host).await;
    assert!(cached.cache().contains("hit"), "the cache survives a reload: {}", cached.cache());
    assert_eq!(a.hits("/life/obj"), 1);

    gate.add_permits(1);
    let body = finish_download(download, first).await;
    assert_eq!(body.len(), BIG);
    assert!(body == big_body(), "the download started before the reload is intact");
    assert!(edge.stderr().contains("configuration reloaded"), "{}", edge.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_file_on_sighup_is_refused_and_the_old_configuration_serves() {
    let a = Origin::start().await;
    a.fixed("/life/keep", Reply::ok("kept", &[("cache-control", "no-store")]));
    let good = site("a.example", &a.url);
    let (edge, _dir, path) = start(&edge_file(&good));
    let url = format!("{}/life/keep", edge.url("edge http"));
    let a_host = [("host", "a.example")];

    // A TOML syntax error, then a rule broken: each is logged with file and line, and refused.
    let refusals = |stderr: &str| stderr.matches("reload refused").count();
    let syntax = format!("{}[[edge.sites\n", edge_file(&good));
    std::fs::write(&path, &syntax).unwrap();
    edge.signal("HUP");
    until("the syntax error is logged", Duration::from_secs(20), || async {
        (refusals(&edge.stderr()) == 1).then_some(())
    })
    .await;
    let file = path.display().to_string();
    let line = line_of(&syntax, "[[edge.sites");
    assert!(edge.stderr().contains(&format!("{file}:{line}: TOML syntax")), "{}", edge.stderr());
    assert_eq!(get(&url, &a_host).await.text(), "kept");

    let broken_rule = format!("{}[[edge.sites.ttl]]\nprefix = \"static/\"\n", site("b.example", &a.url));
    let rule = edge_file(&format!("{good}{broken_rule}"));
    std::fs::write(&path, &rule).unwrap();
    edge.signal("HUP");
    until("the broken rule is logged", Duration::from_secs(20), || async {
        (refusals(&edge.stderr()) == 2).then_some(())
    })
    .await;
    let line = line_of(&rule, "prefix = \"static/\"");
    let expected = format!("{file}:{line}: edge.sites[1].ttl[0].prefix: must start with /");
    assert!(edge.stderr().contains(&expected), "{expected}\n{}", edge.stderr());
    assert_eq!(get(&url, &a_host).await.text(), "kept");
    assert_eq!(get(&url, &[("host", "b.example")]).await.status, 421, "nothing of the bad file applied");

    // A setting that needs a restart is named, and the rest of the file applies.
    let mut with_limits = edge_file(&format!("{good}{}", site("b.example", &a.url)));
    with_limits.push_str("[edge.limits]\nmax_connections = 7\n");
    std::fs::write(&path, with_limits).unwrap();
    edge.signal("HUP");
    until("the valid file applies", Duration::from_secs(20), || async {
        (get(&url, &[("host", "b.example")]).await.status == 200).then_some(())
    })
    .await;
    let warning =
        edge.stderr().lines().find(|l| l.contains("takes effect only after a restart")).map(str::to_owned);
    assert!(warning.is_some_and(|w| w.contains("limits")), "{}", edge.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_ttl_rule_applies_to_new_fills_after_sighup() {
    let origin = Origin::start().await;
    origin.fixed("/ttl/before", Reply::ok("b", &[]));
    origin.fixed("/ttl/after", Reply::ok("a", &[]));
    let rule = |ttl: &str| format!("[[edge.sites.ttl]]\nprefix = \"/ttl/\"\ndefault = \"{ttl}\"\n");
    let (edge, _dir, path) = start(&edge_file(&format!("{}{}", site("*", &origin.url), rule("5m"))));
    let base = edge.url("edge http");
    let before = get(&format!("{base}/ttl/before"), &[]).await;
    assert!((299..=300).contains(&before.ttl()), "{}", before.cache());

    std::fs::write(&path, edge_file(&format!("{}{}", site("*", &origin.url), rule("1h")))).unwrap();
    edge.signal("HUP");
    until("the reload is done", Duration::from_secs(20), || async {
        edge.stderr().contains("configuration reloaded").then_some(())
    })
    .await;
    let after = get(&format!("{base}/ttl/after"), &[]).await;
    assert!((3599..=3600).contains(&after.ttl()), "a new fill takes the new rule: {}", after.cache());
    let old = get(&format!("{base}/ttl/before"), &[]).await;
    assert!(old.cache().contains("hit") && old.ttl() <= 300, "{}", old.cache());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_an_inflight_download_finish_and_refuses_new_connections() {
    let origin = Origin::start().await;
    let gate = Arc::new(Semaphore::new(0));
    gated_download(&origin, "/drain/big", &gate);
    let (mut edge, _dir, _path) = start(&edge_file(&site("*", &origin.url)));
    let addr = edge.addr("edge http");
    let (download, first) =
        begin_download(&format!("{}/drain/big", edge.url("edge http")), "x.example").await;

    edge.signal("TERM");
    until("the listener is closed", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(&addr).await.is_err().then_some(())
    })
    .await;
    gate.add_permits(1);
    let body = finish_download(download, first).await;
    assert_eq!(body.len(), BIG);
    assert!(body == big_body(), "the drained download is intact");
    let code = tokio::task::spawn_blocking(move || edge.wait_exit(Duration::from_secs(30))).await.unwrap();
    assert_eq!(code, Some(0), "a drained edge exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_longer_than_the_drain_timeout_is_cut_and_the_edge_still_exits() {
    let origin = Origin::start().await;
    let gate = Arc::new(Semaphore::new(0));
    gated_download(&origin, "/drain/stuck", &gate);
    let limits = "[edge.limits]\ndrain_timeout = \"300ms\"\n";
    let (mut edge, _dir, _path) = start(&edge_file(&format!("{limits}{}", site("*", &origin.url))));
    let (mut download, _) =
        begin_download(&format!("{}/drain/stuck", edge.url("edge http")), "x.example").await;

    edge.signal("TERM");
    let code = tokio::task::spawn_blocking(move || edge.wait_exit(Duration::from_secs(30))).await.unwrap();
    assert_eq!(code, Some(0), "the edge exits once the drain timeout passed");
    let mut rest = 0;
    let cut = loop {
        match download.chunk().await {
            Ok(Some(chunk)) => rest += chunk.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "a cut download must fail, not look complete (got {rest} more bytes)");
    gate.add_permits(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn responses_are_counted_per_site_across_a_reload() {
    let a = Origin::start().await;
    let b = Origin::start().await;
    a.fixed("/life/count", Reply::ok("a", &[("cache-control", "max-age=3600")]));
    b.fixed("/life/count", Reply::ok("b", &[("cache-control", "max-age=3600")]));
    let (edge, _dir, path) =
        start(&edge_file(&format!("{}{}", site("a.example", &a.url), site("b.example", &b.url))));
    let url = format!("{}/life/count", edge.url("edge http"));
    let scrape = || async {
        let admin = edge.url("edge admin");
        client().get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap()
    };
    let a_200 = "stratus_edge_responses_total{code=\"200\",site=\"a.example\"}";
    let b_200 = "stratus_edge_responses_total{code=\"200\",site=\"b.example\"}";
    let unknown_421 = "stratus_edge_responses_total{code=\"421\",site=\"\"}";

    // A miss and a hit for a, one for b, one for a host no site names.
    for host in ["a.example", "a.example", "b.example"] {
        assert_eq!(get(&url, &[("host", host)]).await.status, 200);
    }
    assert_eq!(get(&url, &[("host", "other.example")]).await.status, 421);
    let m = scrape().await;
    assert_eq!((support::http::metric(&m, a_200), support::http::metric(&m, b_200)), (2.0, 1.0), "{m}");
    assert_eq!(support::http::metric(&m, unknown_421), 1.0, "{m}");

    // Site a changes (a second host; its name stays its first host), b does not: both keep
    // counting in their own series, none restarts from zero or appears twice.
    let changed = format!("{}{}", site("a.example", &a.url), site("b.example", &b.url))
        .replace("hosts = [\"a.example\"]", "hosts = [\"a.example\", \"a2.example\"]");
    std::fs::write(&path, edge_file(&changed)).unwrap();
    edge.signal("HUP");
    until("the changed site is served after SIGHUP", Duration::from_secs(20), || async {
        (get(&url, &[("host", "a2.example")]).await.status == 200).then_some(())
    })
    .await;
    assert_eq!(get(&url, &[("host", "a.example")]).await.status, 200);
    assert_eq!(get(&url, &[("host", "b.example")]).await.status, 200);
    let m = scrape().await;
    assert_eq!((support::http::metric(&m, a_200), support::http::metric(&m, b_200)), (4.0, 2.0), "{m}");
    assert_eq!(m.matches(a_200).count(), 1, "{m}");
}
