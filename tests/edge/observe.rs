//! Operating an edge (issue #20): the access log (every field, JSON and combined, reopened on
//! SIGUSR1), metrics scraped without the purge token, the read-only token, the cache
//! inspection of a URL with two `Vary` variants, the load balancers' health path, and the
//! opt-in `Stratus-Debug` header.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::edge::edge;
use crate::support::http::{client, get, metric, promtool_check};
use crate::support::origin::{Origin, Reply};
use crate::support::{self, eventually, until};

const WAIT: Duration = Duration::from_secs(10);

/// The JSON lines of an access-log file, once it has at least `n`.
fn lines(path: &Path, n: usize) -> Vec<Value> {
    eventually(&format!("{n} access-log lines in {}", path.display()), WAIT, || {
        let text = std::fs::read_to_string(path).ok()?;
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (lines.len() >= n).then_some(lines)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_field_of_a_json_access_log_line() {
    let origin = Origin::start().await;
    origin.fixed("/obs/a?x=1&y=2", Reply::ok("0123456789", &[("cache-control", "max-age=300")]));
    let dir = support::tempdir();
    let log = dir.path().join("access.log");
    let edge = edge(&origin, &["--id", "edge-obs", "--access-log", log.to_str().unwrap()]);
    let url = format!("{}/obs/a?x=1&y=2", edge.url("edge http"));
    let headers = [("user-agent", "obs-test/1.0"), ("referer", "http://ref.example/page")];
    let miss = get(&url, &headers).await;
    let hit = get(&url, &headers).await;
    assert!(hit.hit(), "{}", hit.cache());

    let lines = lines(&log, 2);
    // Lines from different threads may be written out of order (within a batch): take each by
    // its outcome.
    let by =
        |outcome: &str| lines.iter().find(|l| l["cache"] == outcome).unwrap_or_else(|| panic!("{lines:?}"));
    let (first, second) = (by("miss"), by("hit"));
    // time: RFC 3339, UTC, today.
    let time = first["time"].as_str().unwrap();
    assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    assert_eq!(first["edge"], "edge-obs");
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["scheme"], "http");
    assert_eq!(first["host"], edge.addr("edge http"));
    assert_eq!(first["path"], "/obs/a?x=1&y=2");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes"], 10);
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(first["cache"], "miss");
    assert_eq!(first["cache_status"], miss.cache());
    assert_eq!(first["tier"], Value::Null);
    assert_eq!(first["origin_status"], 200);
    assert!(first["origin_ms"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(first["user_agent"], "obs-test/1.0");
    assert_eq!(first["referer"], "http://ref.example/page");
    // The hit: from the memory tier, the origin not asked.
    assert_eq!(second["cache"], "hit");
    assert_eq!(second["cache_status"], hit.cache());
    assert_eq!(second["tier"], "memory");
    assert_eq!(second["origin_status"], Value::Null);
    assert_eq!(second["origin_ms"], Value::Null);
    assert_eq!(second["bytes"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn combined_format_on_stdout() {
    let origin = Origin::start().await;
    origin.fixed("/obs/c?q=1", Reply::ok("abc", &[("cache-control", "max-age=300")]));
    let edge = edge(&origin, &["--access-log", "-", "--access-log-format", "combined"]);
    let url = format!("{}/obs/c?q=1", edge.url("edge http"));
    get(&url, &[("user-agent", "agent \"quoted\""), ("referer", "http://r.example/")]).await;
    let line = eventually("a combined line on stdout", WAIT, || {
        edge.stdout().lines().find(|l| l.contains("/obs/c?q=1")).map(str::to_owned)
    });
    // 127.0.0.1 - - [06/Dec/2026:02:21:20 +0000] "GET /obs/c?q=1 HTTP/1.1" 200 3 "ref" "agent"
    let (start, rest) = line.split_once(" [").unwrap();
    assert_eq!(start, "127.0.0.1 - -");
    let (time, rest) = rest.split_once("] ").unwrap();
    assert!(time.ends_with(" +0000") && time.len() == 26, "{time}");
    assert_eq!(rest, "\"GET /obs/c?q=1 HTTP/1.1\" 200 3 \"http://r.example/\" \"agent \\x22quoted\\x22\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr1_reopens_the_access_log() {
    let origin = Origin::start().await;
    origin.fallback(|_, _| Reply::ok("x", &[]));
    let dir = support::tempdir();
    let log = dir.path().join("access.log");
    let edge = edge(&origin, &["--access-log", log.to_str().unwrap()]);
    let base = edge.url("edge http");
    get(&format!("{base}/obs/before"), &[]).await;
    lines(&log, 1);
    // What logrotate does: move the file away, then signal.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    edge.signal("USR1");
    let mut n = 0;
    until("a line in the reopened file", WAIT, || {
        n += 1;
        let (url, log) = (format!("{base}/obs/after/{n}"), log.clone());
        async move {
            get(&url, &[]).await;
            std::fs::read_to_string(&log).ok().filter(|t| t.contains("/obs/after/"))
        }
    })
    .await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/obs/before"), "{old}");
    // The edge is still serving after the signal.
    assert_eq!(get(&format!("{base}/obs/alive"), &[]).await.status, 200);
}

/// Lines wait in memory for about a millisecond before they are written; an edge that stops
/// (SIGTERM) writes them first, as nginx flushes its log buffers on exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_edge_writes_the_last_lines() {
    let origin = Origin::start().await;
    origin.fallback(|_, _| Reply::ok("x", &[]));
    let dir = support::tempdir();
    let log = dir.path().join("access.log");
    let mut edge = edge(&origin, &["--access-log", log.to_str().unwrap()]);
    let base = edge.url("edge http");
    for n in 0..50 {
        assert_eq!(get(&format!("{base}/obs/last/{n}"), &[]).await.status, 200);
    }
    edge.signal("TERM");
    assert_eq!(edge.wait_exit(WAIT), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for n in 0..50 {
        let path = format!("/obs/last/{n}");
        assert!(logged.iter().any(|l| l["path"] == path.as_str()), "{path} missing from {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_log_off_writes_nothing() {
    let origin = Origin::start().await;
    origin.fallback(|_, _| Reply::ok("x", &[]));
    let edge = edge(&origin, &["--access-log", "off"]);
    get(&format!("{}/obs/quiet", edge.url("edge http")), &[]).await;
    // The health path answers before any site, uncached.
    let health = get(&format!("{}/.well-known/stratus/health", edge.url("edge http")), &[]).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(health.header("cache-control"), "no-store");
    assert_eq!(origin.requests().len(), 1, "the health path never reaches the origin");
    let admin = edge.url("edge admin");
    let m = client().get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("stratus_edge_access_log_dropped_total 0"), "{m}");
    assert!(!edge.stdout().contains("/obs/quiet"), "{}", edge.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_scraped_without_the_purge_token() {
    let origin = Origin::start().await;
    origin.fixed("/obs/m", Reply::ok("0123456789", &[("cache-control", "max-age=300")]));
    origin.fixed("/obs/404", Reply::status(404, "no", &[]));
    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &origin.url, "--admin", "127.0.0.1:0"]);
    cmd.args(["--access-log", "off"]);
    cmd.env("STRATUS_TOKEN", "purge-token");
    let edge = support::Proc::start(cmd, &["edge http", "edge admin"]);
    let base = edge.url("edge http");
    get(&format!("{base}/obs/m"), &[]).await;
    get(&format!("{base}/obs/m"), &[]).await;
    get(&format!("{base}/obs/404"), &[]).await;
    let admin = edge.url("edge admin");
    let c = client();
    let res = c.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let m = res.text().await.unwrap();
    assert_eq!(metric(&m, "stratus_edge_responses_total{code=\"200\",site=\"*\"}"), 2.0);
    assert_eq!(metric(&m, "stratus_edge_responses_total{code=\"404\",site=\"*\"}"), 1.0);
    assert_eq!(metric(&m, "stratus_edge_responses_total{code=\"5xx\",site=\"*\"}"), 0.0);
    assert_eq!(metric(&m, "stratus_edge_origin_duration_seconds_count"), 2.0);
    assert_eq!(metric(&m, "stratus_edge_origin_fetched_bytes_total"), 12.0);
    assert!(metric(&m, "stratus_edge_cache_bytes{tier=\"memory\"}") > 10.0);
    assert!(metric(&m, "stratus_edge_cache_entries{tier=\"memory\"}") >= 1.0);
    let up = format!("stratus_edge_origin_up{{site=\"*\",origin=\"{}\"}}", origin.url);
    assert_eq!(metric(&m, &up), 1.0);
    assert!(m.contains("stratus_build_info{version=\""), "{m}");
    assert!(metric(&m, "process_resident_memory_bytes") > 1e6);
    assert!(metric(&m, "process_open_fds") > 3.0);
    metric(&m, "process_cpu_seconds_total");
    promtool_check(&m);
    assert_eq!(c.get(format!("{admin}/healthz")).send().await.unwrap().status(), 200);
    // The purge still needs the token.
    let purge = c.post(format!("{admin}/purge")).json(&json!({"purge_everything": true}));
    assert_eq!(purge.send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_token_guards_scraping_but_cannot_purge() {
    let origin = Origin::start().await;
    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &origin.url, "--admin", "127.0.0.1:0"]);
    cmd.args(["--access-log", "off"]);
    cmd.env("STRATUS_TOKEN", "purge-token").env("STRATUS_METRICS_TOKEN", "read-token");
    let edge = support::Proc::start(cmd, &["edge http", "edge admin"]);
    let admin = edge.url("edge admin");
    let c = client();
    let status = |path: &str, token: Option<&str>| {
        let mut req = c.get(format!("{admin}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/metrics", None).await, 401);
    assert_eq!(status("/metrics", Some("read-token")).await, 200);
    assert_eq!(status("/metrics", Some("purge-token")).await, 200);
    assert_eq!(status("/cache?url=http://a.example/x", Some("read-token")).await, 404);
    let purge =
        c.post(format!("{admin}/purge")).bearer_auth("read-token").json(&json!({"purge_everything": true}));
    assert_eq!(purge.send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inspecting_a_url_with_two_vary_variants() {
    let origin = Origin::start().await;
    origin.route("/obs/v", |seen, _| {
        let lang = seen.headers.get("accept-language").map_or("none", |v| v.to_str().unwrap());
        Reply::ok(
            &format!("lang={lang}"),
            &[("cache-control", "max-age=300"), ("vary", "Accept-Language"), ("surrogate-key", "obs-tag")],
        )
    });
    let edge = edge(&origin, &["--access-log", "off"]);
    let url = format!("{}/obs/v", edge.url("edge http"));
    get(&url, &[("host", "shop.example"), ("accept-language", "en")]).await;
    get(&url, &[("host", "shop.example"), ("accept-language", "fr")]).await;
    let en = get(&url, &[("host", "shop.example"), ("accept-language", "en")]).await;
    assert!(en.hit());

    let admin = edge.url("edge admin");
    let res =
        client().get(format!("{admin}/cache?url=http%3A%2F%2Fshop.example%2Fobs%2Fv")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["stored"], true, "{v}");
    assert_eq!(v["vary"], json!(["accept-language"]), "{v}");
    let variants = v["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2, "{v}");
    let by_lang = |lang: &str| {
        variants
            .iter()
            .find(|x| x["selected_by"]["accept-language"] == lang)
            .unwrap_or_else(|| panic!("no {lang} in {v}"))
    };
    let (en, fr) = (by_lang("en"), by_lang("fr"));
    assert_eq!(en["hits"], 1, "{en}");
    assert_eq!(fr["hits"], 0, "{fr}");
    for x in [en, fr] {
        assert_eq!(x["status"], 200);
        assert_eq!(x["tier"], "memory");
        assert_eq!(x["tags"], json!(["obs-tag"]));
        assert_eq!(x["body_bytes"], 7);
        assert!(x["size"].as_u64().unwrap() > 7);
        assert!(x["age"].as_u64().unwrap() <= 300);
        let ttl = x["ttl"].as_i64().unwrap();
        assert!((200..=300).contains(&ttl), "{x}");
        let headers = x["headers"].as_array().unwrap();
        assert!(headers.iter().any(|h| h[0] == "cache-control" && h[1] == "max-age=300"), "{x}");
        assert!(headers.iter().any(|h| h[0] == "vary"), "{x}");
    }
    // A URL nothing is stored for.
    let none = client().get(format!("{admin}/cache?url=http://shop.example/obs/none")).send().await.unwrap();
    assert_eq!(none.status(), 404);
    let bad = client().get(format!("{admin}/cache?url=notaurl")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_says_when_its_token_is_refused_or_nothing_listens() {
    let origin = Origin::start().await;
    let dir = support::tempdir();
    let control = crate::support::control::start_control(dir.path(), "");
    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &origin.url, "--access-log", "off"]);
    cmd.args(["--control", &control.url("control api")]).env("STRATUS_TOKEN", "not-the-token");
    let edge = support::Proc::start(cmd, &["edge http"]);
    eventually("the refused token in the edge's log", WAIT, || {
        edge.stderr().contains("refused this edge's token").then_some(())
    });
    assert!(!edge.stderr().contains("control plane unreachable"), "{}", edge.stderr());

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cmd = support::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &origin.url, "--access-log", "off"]);
    cmd.args(["--control", &format!("http://{closed}")]);
    let edge = support::Proc::start(cmd, &["edge http"]);
    eventually("the refused connection in words", WAIT, || {
        edge.stderr().contains("connection refused: nothing listens").then_some(())
    });
}

/// The `Stratus-Debug` fields of a response, by name (values as sent, quotes included).
fn debug_fields(got: &support::http::Got) -> std::collections::HashMap<String, String> {
    let v = got.header("stratus-debug");
    assert!(!v.is_empty(), "no Stratus-Debug in {:?}", got.headers);
    v.split("; ")
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{kv:?} in {v:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debug_header_only_on_the_site_that_asks_for_it() {
    let origin = Origin::start().await;
    origin.route("/obs/debug", |_, _| {
        Reply::ok(
            "dbg",
            &[("cache-control", "max-age=300"), ("vary", "X-Probe"), ("surrogate-key", "dbg-tag")],
        )
    });
    let (edge, _dir) = crate::support::edge::edge_with_config(
        &origin,
        "[[edge.sites]]\nhosts = [\"debug.example\"]\norigins = [\"ORIGIN\"]\ndebug_header = true\n\
         [[edge.sites]]\nhosts = [\"plain.example\"]\norigins = [\"ORIGIN\"]\n",
    );
    let url = format!("{}/obs/debug", edge.url("edge http"));
    let ask = |host: &'static str| {
        let url = url.clone();
        async move { get(&url, &[("host", host), ("x-probe", "a\"b")]).await }
    };

    let miss = ask("debug.example").await;
    assert!(!miss.hit(), "{}", miss.cache());
    let f = debug_fields(&miss);
    assert_eq!(f["key"], "\"debug.example/obs/debug\"", "{f:?}");
    // The variant key holds the client's header value: its quote is escaped, the key's
    // separator bytes are percent-encoded.
    assert_eq!(f["variant"], "\"debug.example/obs/debug%1F%1Fx-probe:a\\\"b\"", "{f:?}");
    assert_eq!(f["tier"], "origin", "{f:?}");
    assert_eq!(f["origin-status"], "200", "{f:?}");
    assert!(f["origin-time"].parse::<u64>().is_ok(), "{f:?}");

    let hit = ask("debug.example").await;
    assert!(hit.hit(), "{}", hit.cache());
    let f = debug_fields(&hit);
    assert_eq!(f["tier"], "memory", "{f:?}");
    assert_eq!(f["hits"], "1", "{f:?}");
    assert_eq!(f["tags"], "\"dbg-tag\"", "{f:?}");
    assert!(f["age"].parse::<u64>().unwrap() <= 300, "{f:?}");
    assert!((200..=300).contains(&f["ttl"].parse::<i64>().unwrap()), "{f:?}");
    assert!(!f.contains_key("origin-status"), "a hit did not ask the origin: {f:?}");

    // The other site, miss then hit: never the field.
    for _ in 0..2 {
        let plain = ask("plain.example").await;
        assert_eq!(plain.status, 200);
        assert!(plain.headers.get("stratus-debug").is_none(), "{:?}", plain.headers);
    }
    assert!(ask("plain.example").await.hit());
}
