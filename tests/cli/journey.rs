//! The user journey end to end, every part a separate `stratus` process over loopback: upload
//! with a real S3 client → edge A miss then hit → edge B miss then hit → a new version put to
//! the origin is served by both edges without a manual purge → purge by tag with `stratus purge`
//! → metrics and the edge registry reflect it → `stratus loadtest` through an edge with Zipf keys
//! reports a high hit ratio.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};

use crate::support::{Proc, eventually, stratus, tempdir};

const TOKEN: &str = "journey-token";
const ACCESS: &str = "journey-access";
const SECRET: &str = "journey-secret-key";

/// The whole CDN: origin, control plane and two edges, each its own process.
struct Cdn {
    origin: Proc,
    control: Proc,
    edges: [Proc; 2],
    _data: tempfile::TempDir,
}

fn with_secrets(mut cmd: Command) -> Command {
    cmd.env("STRATUS_TOKEN", TOKEN).env("STRATUS_ACCESS_KEY", ACCESS).env("STRATUS_SECRET_KEY", SECRET);
    cmd
}

impl Cdn {
    fn start() -> Cdn {
        let data = tempdir();
        let dir = |name: &str| data.path().join(name).to_str().expect("utf-8 path").to_owned();
        let mut cmd = with_secrets(stratus());
        cmd.args(["control", "--listen", "127.0.0.1:0", "--data", &dir("control")]);
        let control = Proc::start(cmd, &["control api"]);
        let notify = format!("{}/v1/events/origin", control.url("control api"));
        let mut cmd = with_secrets(stratus());
        cmd.args(["origin", "--listen", "127.0.0.1:0", "--data", &dir("origin"), "--public", "demo"]);
        cmd.args(["--notify", &notify]);
        let origin = Proc::start(cmd, &["origin s3"]);
        let bucket_url = format!("{}/demo", origin.url("origin s3"));
        let edge = |id: &str| {
            let mut cmd = with_secrets(stratus());
            cmd.args(["edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--id", id]);
            cmd.args(["--origin", &bucket_url, "--control", &control.url("control api")]);
            Proc::start(cmd, &["edge http", "edge admin"])
        };
        let edges = [edge("edge-a"), edge("edge-b")];
        // Both edges registered and subscribed before the journey starts.
        eventually("both edges registered", Duration::from_secs(10), || {
            let list = get_json(&format!("{}/v1/edges", control.url("control api")));
            let live = list["edges"].as_array()?.iter().filter(|e| e["live"] == true).count();
            (live == 2).then_some(())
        });
        Cdn { origin, control, edges, _data: data }
    }

    fn s3(&self) -> Arc<AmazonS3> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.origin.url("origin s3"))
                .with_allow_http(true)
                .with_bucket_name("demo")
                .with_region("us-east-1")
                .with_access_key_id(ACCESS)
                .with_secret_access_key(SECRET)
                .build()
                .expect("S3 client"),
        )
    }

    /// The control plane's last log sequence number.
    fn head(&self) -> u64 {
        get_json(&format!("{}/v1/edges", self.control.url("control api")))["head"].as_u64().expect("head")
    }

    /// Waits until the log grew past `before` and both edges applied all of it. An upload
    /// becomes a purge entry through the origin's event; waiting for it keeps a late event
    /// from purging what the test caches next.
    fn settle(&self, before: u64) {
        let url = format!("{}/v1/edges", self.control.url("control api"));
        eventually("the upload's event applied by both edges", Duration::from_secs(10), || {
            let list = get_json(&url);
            let head = list["head"].as_u64()?;
            let applied = list["edges"].as_array()?.iter().all(|e| e["applied"].as_u64() == Some(head));
            (head > before && applied).then_some(())
        });
    }

    fn edge_url(&self, i: usize, path: &str) -> String {
        format!("{}{path}", self.edges[i].url("edge http"))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Uploads `body` as `key` with a Cache-Control and surrogate keys, as an operator would.
fn upload(rt: &tokio::runtime::Runtime, s3: &AmazonS3, key: &str, body: &str, tags: &str) {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::CacheControl, "public, max-age=300".into());
    attributes.insert(Attribute::ContentType, "text/html".into());
    attributes.insert(Attribute::Metadata("surrogate-key".into()), tags.to_owned().into());
    let opts = PutOptions { attributes, ..PutOptions::default() };
    rt.block_on(s3.put_opts(&ObjectPath::from(key), PutPayload::from(body.to_owned()), opts))
        .unwrap_or_else(|e| panic!("upload {key}: {e}"));
}

struct Fetched {
    status: u16,
    cache_status: String,
    body: String,
    tags_visible: bool,
}

fn fetch(url: &str) -> Fetched {
    let resp = reqwest::blocking::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let cache_status = header("cache-status").unwrap_or_default();
    let tags_visible = header("x-amz-meta-surrogate-key").is_some() || header("surrogate-key").is_some();
    let status = resp.status().as_u16();
    Fetched { status, cache_status, body: resp.text().expect("body"), tags_visible }
}

fn is_hit(f: &Fetched) -> bool {
    f.cache_status.split(';').any(|p| p.trim() == "hit")
}

fn is_miss(f: &Fetched) -> bool {
    f.cache_status.contains("fwd=")
}

fn get_json(url: &str) -> serde_json::Value {
    let client = reqwest::blocking::Client::new();
    let resp = client.get(url).bearer_auth(TOKEN).send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().expect("JSON")
}

fn get_text(url: &str) -> String {
    let client = reqwest::blocking::Client::new();
    let resp = client.get(url).bearer_auth(TOKEN).send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.text().expect("text")
}

/// Sums the samples of a Prometheus counter whose labels contain `label` (all when empty).
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn upload_cache_update_purge_observe_and_load() {
    let cdn = Cdn::start();
    let rt = runtime();
    let s3 = cdn.s3();
    let path = "/journey/page.html";
    upload(&rt, &s3, "journey/page.html", "version one", "journey pages");
    cdn.settle(0);

    // Edge A: a miss that stores, then a hit; tags never reach clients.
    let first = fetch(&cdn.edge_url(0, path));
    assert_eq!((first.status, first.body.as_str()), (200, "version one"));
    assert!(is_miss(&first) && first.cache_status.contains("stored"), "{}", first.cache_status);
    assert!(!first.tags_visible, "surrogate keys leaked to the client");
    let second = fetch(&cdn.edge_url(0, path));
    assert!(is_hit(&second), "second request through edge A: {}", second.cache_status);
    assert_eq!(second.body, "version one");

    // Edge B has its own cache: a miss, then a hit.
    assert!(is_miss(&fetch(&cdn.edge_url(1, path))));
    let b = fetch(&cdn.edge_url(1, path));
    assert!(is_hit(&b) && b.body == "version one", "edge B: {} {}", b.cache_status, b.body);

    // A new version put to the origin reaches both edges with no manual purge: the origin's
    // event becomes a purge in the control plane's log, which both edges follow.
    upload(&rt, &s3, "journey/page.html", "version two", "journey pages");
    for i in 0..2 {
        eventually(&format!("edge {i} serves version two"), Duration::from_secs(10), || {
            (fetch(&cdn.edge_url(i, path)).body == "version two").then_some(())
        });
        assert!(is_hit(&fetch(&cdn.edge_url(i, path))), "edge {i} caches the new version again");
    }

    // Purge by tag through the CLI: both edges apply it, and the next request is a miss on
    // each, while an object without the tag still hits.
    let before = cdn.head();
    upload(&rt, &s3, "journey/other.html", "untagged", "elsewhere");
    cdn.settle(before);
    for i in 0..2 {
        fetch(&cdn.edge_url(i, "/journey/other.html"));
        assert!(is_hit(&fetch(&cdn.edge_url(i, "/journey/other.html"))));
    }
    let control = cdn.control.url("control api");
    let out = with_secrets(stratus())
        .args(["purge", "--control", &control, "--tag", "pages", "--wait"])
        .output()
        .expect("stratus purge");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stratus purge failed: {printed}{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("edge-a") && printed.contains("edge-b"), "per-edge result missing:\n{printed}");
    for i in 0..2 {
        let after = fetch(&cdn.edge_url(i, path));
        assert!(is_miss(&after), "edge {i} still hits a purged tag: {}", after.cache_status);
        assert_eq!(after.body, "version two");
        assert!(is_hit(&fetch(&cdn.edge_url(i, "/journey/other.html"))), "edge {i} lost an untagged object");
    }

    // Metrics and the registry reflect what happened.
    let metrics = get_text(&format!("{}/metrics", cdn.edges[0].url("edge admin")));
    assert!(metric(&metrics, "stratus_edge_requests_total", "") >= 6.0, "request count:\n{metrics}");
    assert!(metric(&metrics, "stratus_edge_requests_total", "hit") >= 3.0, "hit count:\n{metrics}");
    assert!(metric(&metrics, "stratus_edge_origin_requests_total", "") >= 3.0, "origin requests:\n{metrics}");
    let registry = eventually("heartbeats carry request counts", Duration::from_secs(15), || {
        let list = get_json(&format!("{control}/v1/edges"));
        let edges = list["edges"].as_array()?.clone();
        let head = list["head"].as_u64()?;
        let caught_up = edges.iter().all(|e| e["applied"].as_u64() == Some(head) && e["lag"] == 0);
        let counted = edges.iter().all(|e| e["requests"].as_u64().is_some_and(|n| n >= 5));
        (edges.len() == 2 && head >= 2 && caught_up && counted).then_some(edges)
    });
    for e in &registry {
        assert!(e["hit_ratio"].as_f64().is_some_and(|r| r > 0.0 && r < 1.0), "hit ratio of {e}");
        assert!(e["cache_bytes"].as_u64().is_some_and(|b| b > 0), "cache bytes of {e}");
    }

    // Load through edge A over a Zipf key set: after the first fetch of each key, hits.
    // (A late upload event may purge a key once more: a few extra misses among thousands.)
    for k in 0..50 {
        upload(&rt, &s3, &format!("journey/keys/{k}"), &format!("key {k}"), "keys");
    }
    let base = cdn.edge_url(0, "/journey/keys");
    let out = stratus()
        .args(["loadtest", "--base", &base, "--keys", "50", "--zipf", "1.0", "--seed", "7"])
        .args(["-c", "4", "-d", "3s", "--json"])
        .output()
        .expect("stratus loadtest");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("loadtest JSON: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
    let requests = report["requests"].as_u64().expect("requests");
    let hit_ratio = report["cache"]["hit_ratio"].as_f64().expect("cache.hit_ratio");
    assert!(requests >= 100, "too few requests for a hit ratio: {report}");
    assert!(hit_ratio > 0.9, "hit ratio {hit_ratio} through edge A: {report}");
}
