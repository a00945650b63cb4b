//! `stratus loadtest` against a real HTTP server in the test process: exact `-n` counts over
//! HTTP/1.1 and h2c, the JSON document against the text report, hit ratio from `Cache-Status`,
//! errors by kind with the exit status, a scenario whose purge step reaches the control API,
//! and HTTP/2 over TLS with ALPN.

use serde_json::Value;

use crate::support::load_target::LoadTarget;
use crate::support::{self, run_stratus, tempdir, write_file};

/// Runs `stratus loadtest ARGS --json` and parses the document.
fn json_run(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["loadtest", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = run_stratus(&all);
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\nstderr:\n{err}"));
    (code, doc)
}

/// The value after `label` on the text report line that starts with it.
fn line<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
}

#[test]
fn n_requests_are_exact_over_http1_h2c_and_rate_mode() {
    let server = LoadTarget::start();
    let url = format!("{}/k/1", server.url);
    let cases: [(&str, &[&str], u64); 3] = [
        ("http/1.1 closed loop", &["-c", "8", "-n", "1000"], 1000),
        ("h2c with streams", &["--http2", "-c", "2", "--streams", "4", "-n", "501"], 501),
        ("rate mode", &["-c", "3", "-n", "150", "--rate", "500"], 150),
    ];
    for (name, flags, n) in cases {
        let before = server.requests();
        let mut args = flags.to_vec();
        args.push(&url);
        let (code, doc) = json_run(&args);
        assert_eq!(code, 0, "{name}: {doc}");
        assert_eq!(server.requests() - before, n, "{name}: the server saw a different count");
        assert_eq!(doc["requests"], n, "{name}");
        assert_eq!(doc["responses"], n, "{name}");
        assert_eq!(doc["status"]["200"], n, "{name}");
        assert_eq!(doc["errors"]["total"], 0, "{name}");
        assert_eq!(doc["body_bytes"], n * 1024, "{name}");
    }
}

#[test]
fn json_fields_are_present_and_match_the_text_report() {
    let server = LoadTarget::start();
    let base = format!("{}/k", server.url);
    // One connection and a seed make both runs draw the same keys in the same order.
    let args = ["--base", &base, "--keys", "50", "--zipf", "1.0", "--seed", "7", "-c", "1", "-n", "400"];
    let hits_before = server.hits();
    let (code, doc) = json_run(&args);
    assert_eq!(code, 0);
    let json_hits = server.hits() - hits_before;

    for field in [
        "target",
        "targets",
        "distribution",
        "zipf",
        "seed",
        "method",
        "http",
        "connections",
        "streams",
        "mode",
        "timeout_s",
        "requests",
        "responses",
        "errors",
        "unsent",
        "duration_s",
        "rps",
        "bytes",
        "bytes_per_s",
        "body_bytes",
        "latency_ms",
        "service_time_ms",
        "status",
        "cache",
        "phases",
        "purges",
        "timeline",
        "ok",
    ] {
        assert!(doc.get(field).is_some(), "missing {field} in {doc}");
    }
    for field in ["min", "mean", "stdev", "p50", "p90", "p99", "p99_9", "max"] {
        assert!(doc["latency_ms"][field].as_f64().is_some(), "latency_ms.{field} in {doc}");
    }
    for field in ["total", "connect", "timeout", "reset", "protocol", "status_4xx", "status_5xx"] {
        assert_eq!(doc["errors"][field], 0, "errors.{field}");
    }
    let l = &doc["latency_ms"];
    let ordered = ["min", "p50", "p90", "p99", "p99_9", "max"].map(|f| l[f].as_f64().expect("number"));
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "percentiles out of order: {l}");
    let timeline = doc["timeline"].as_array().expect("timeline");
    let per_second: u64 = timeline.iter().map(|s| s["responses"].as_u64().expect("responses")).sum();
    assert_eq!(per_second, 400, "the timeline counts every response once: {timeline:?}");
    assert_eq!(doc["distribution"], "zipf");
    assert_eq!(doc["mode"], "closed");
    assert_eq!(doc["ok"], true);
    assert!(doc["bytes"].as_u64().expect("bytes") > 400 * 1024, "wire bytes include bodies and headers");

    // Hit ratio from Cache-Status: the server said `hit` exactly this often.
    assert_eq!(doc["cache"]["hits"], json_hits);
    assert_eq!(doc["cache"]["misses"], 400 - json_hits);
    let ratio = doc["cache"]["hit_ratio"].as_f64().expect("hit ratio");
    assert!((ratio - json_hits as f64 / 400.0).abs() < 1e-9);
    // Zipf over 50 keys: even keys (0, 2, …) take well over half the draws.
    assert!(ratio > 0.55, "{ratio}");

    let mut text_args = vec!["loadtest"];
    text_args.extend_from_slice(&args);
    let (code, text, err) = run_stratus(&text_args);
    assert_eq!(code, 0, "{err}");
    let requests = line(&text, "requests");
    assert!(requests.starts_with("400 in "), "{requests}");
    assert!(requests.contains("400 responses"), "{requests}");
    assert_eq!(line(&text, "errors"), "none");
    assert_eq!(line(&text, "status"), "200: 400");
    assert_eq!(
        line(&text, "cache"),
        format!(
            "hit ratio {:.2}% (hits {json_hits}, misses {}, no cache header 0)",
            ratio * 100.0,
            400 - json_hits
        )
    );
    assert!(line(&text, "latency").starts_with("min "), "{text}");
    assert!(line(&text, "target").contains("zipf s=1, seed 7"), "{text}");
}

#[test]
fn errors_are_counted_by_kind_and_set_the_exit_status() {
    let server = LoadTarget::start();
    // 4xx answers are errors in the report, but the run succeeded, as with wrk and oha.
    let missing = format!("{}/missing", server.url);
    let (code, doc) = json_run(&["-c", "2", "-n", "20", &missing]);
    assert_eq!(code, 0);
    assert_eq!(doc["errors"]["status_4xx"], 20);
    assert_eq!(doc["errors"]["total"], 20);
    assert_eq!(doc["status"]["404"], 20);
    let (code, doc) = json_run(&["-c", "2", "-n", "20", "--fail-on-errors", &missing]);
    assert_eq!(code, 1, "--fail-on-errors must fail a run with 404s");
    assert_eq!(doc["ok"], false);

    // A per-request timeout: the server holds /slow for 5 s.
    let slow = format!("{}/slow", server.url);
    let (code, doc) = json_run(&["-c", "1", "-n", "2", "--timeout", "200ms", &slow]);
    assert_eq!(code, 1, "no response at all is a failed run");
    assert_eq!(doc["errors"]["timeout"], 2);
    assert_eq!(doc["requests"], 2);

    // Nobody listens: every request is a connect error.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (code, doc) = json_run(&["-c", "1", "-n", "3", "--timeout", "1s", &format!("http://{closed}/")]);
    assert_eq!(code, 1);
    assert_eq!(doc["errors"]["connect"], 3);
    assert_eq!(doc["responses"], 0);
}

#[test]
fn scenario_phases_and_purge_step_reach_the_control_plane() {
    let server = LoadTarget::start();
    let dir = tempdir();
    let scenario = write_file(
        dir.path(),
        "scenario.toml",
        &format!(
            r#"[loadtest]
base = "{url}/k"
keys = 20
zipf = 1.0
seed = 3
connections = 2
control = "{url}"

[[loadtest.phases]]
name = "warm"
duration = "300ms"
warmup = true

[[loadtest.phases]]
name = "steady"
duration = "500ms"
rate = 100.0

[[loadtest.phases]]
name = "purged"
duration = "500ms"
rate = 100.0
ramp_to = 200.0
purge = {{ purge_everything = true, prefixes = ["cdn.example/img/"] }}
"#,
            url = server.url
        ),
    );
    let out = support::stratus()
        .args(["loadtest", "--json", "--scenario", scenario.to_str().expect("utf-8")])
        .env("STRATUS_TOKEN", "s3cret")
        .output()
        .expect("run stratus");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&text).expect("JSON report");

    let purges = server.purges();
    assert_eq!(purges.len(), 1, "{purges:?}");
    assert_eq!(purges[0].authorization.as_deref(), Some("Bearer s3cret"));
    let body: Value = serde_json::from_str(&purges[0].body).expect("purge body is JSON");
    assert_eq!(
        body,
        serde_json::json!({"prefixes": ["cdn.example/img/"], "purge_everything": true, "soft": false})
    );
    assert_eq!(doc["purges"][0]["status"], 202);
    assert_eq!(doc["purges"][0]["phase"], "purged");

    let phases = doc["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["warm", "steady", "purged"]);
    assert_eq!(phases[0]["warmup"], true);
    // Totals leave the warm-up out.
    let measured = phases[1]["requests"].as_u64().expect("n") + phases[2]["requests"].as_u64().expect("n");
    assert_eq!(doc["requests"], measured);
    assert!(phases[0]["requests"].as_u64().expect("n") > 0, "the warm-up ran");
    // The rate phases ran their schedules: 100/s for 0.5 s, then 100→200/s for 0.5 s (a slot
    // still queued when its phase ended counts as unsent, not as a request).
    let scheduled = |p: &Value| p["requests"].as_u64().expect("n") + p["unsent"].as_u64().expect("n");
    assert_eq!(scheduled(&phases[1]), 50);
    assert_eq!(scheduled(&phases[2]), 75);
    assert_eq!(phases[2]["rate"], serde_json::json!([100.0, 200.0]));
    assert_eq!(doc["mode"], "rate");

    // The timeline covers the whole run, warm-up included, second by second.
    let timeline = doc["timeline"].as_array().expect("timeline");
    let per_second: u64 = timeline.iter().map(|s| s["responses"].as_u64().expect("responses")).sum();
    let all: u64 = phases.iter().map(|p| p["responses"].as_u64().expect("responses")).sum();
    assert_eq!(per_second, all);
    assert!(timeline.iter().all(|s| s["hit_ratio"].as_f64().is_some()), "{timeline:?}");
}

#[test]
fn http2_over_tls_with_alpn_and_insecure_for_a_self_signed_certificate() {
    let server = LoadTarget::start_tls();
    let url = format!("{}/k/4", server.url);
    let (code, doc) = json_run(&["--http2", "-k", "-c", "2", "--streams", "3", "-n", "120", &url]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["http"], "2");
    assert_eq!(doc["responses"], 120);
    assert_eq!(server.requests(), 120);
    assert_eq!(server.h2_requests(), 120, "ALPN must have chosen h2");
    assert_eq!(doc["cache"]["hits"], 120);

    // HTTP/1.1 over the same TLS listener.
    let (code, doc) = json_run(&["-k", "-c", "2", "-n", "30", &url]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["http"], "1.1");
    assert_eq!(server.requests(), 150);
    assert_eq!(server.h2_requests(), 120);

    // Without --insecure the self-signed certificate is refused: every request fails to connect.
    let (code, doc) = json_run(&["--http2", "-c", "1", "-n", "2", &url]);
    assert_eq!(code, 1);
    assert_eq!(doc["errors"]["connect"], 2);
    assert_eq!(server.requests(), 150);
}

#[test]
fn url_file_method_headers_body_and_warmup() {
    let server = LoadTarget::start();
    let dir = tempdir();
    let file = write_file(
        dir.path(),
        "urls.txt",
        &format!("# two targets, requested in turn\n{0}/a\n\n{0}/b\n", server.url),
    );
    let (code, doc) = json_run(&[
        "--url-file",
        file.to_str().expect("utf-8"),
        "-m",
        "post",
        "-H",
        "X-Load: yes",
        "-b",
        "hello",
        "-c",
        "2",
        "-n",
        "40",
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["targets"], 2);
    assert_eq!(doc["method"], "POST");
    assert_eq!(server.seen("POST /a yes hello"), 20);
    assert_eq!(server.seen("POST /b yes hello"), 20);

    // A warm-up runs first on the same connections and stays out of the totals.
    let before = server.requests();
    let url = format!("{}/k/8", server.url);
    let (code, doc) = json_run(&["--warmup", "300ms", "-c", "2", "-n", "50", &url]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["requests"], 50);
    let warmup = doc["phases"][0]["requests"].as_u64().expect("warm-up requests");
    assert_eq!(doc["phases"][0]["warmup"], true);
    assert!(warmup > 0, "{doc}");
    assert_eq!(server.requests() - before, 50 + warmup);
}

#[test]
fn ctrl_c_ends_the_run_early_and_still_prints_the_report() {
    let server = LoadTarget::start();
    let url = format!("{}/k/6", server.url);
    let child = support::stratus()
        .args(["loadtest", "--json", "-c", "2", "-d", "60s", &url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn stratus loadtest");
    support::eventually("load reaching the server", std::time::Duration::from_secs(30), || {
        (server.requests() >= 100).then_some(())
    });
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -INT failed");
    let out = child.wait_with_output().expect("wait for stratus");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&text).expect("JSON report after Ctrl-C");
    assert_eq!(doc["interrupted"], true);
    let responses = doc["responses"].as_u64().expect("responses");
    assert!(responses >= 100, "{doc}");
    assert_eq!(responses, server.requests(), "every request sent was answered and counted");
    assert!(doc["duration_s"].as_f64().expect("duration") < 60.0, "{doc}");
}
