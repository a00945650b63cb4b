//! Several origins per site: failover to the next one, recovery when the first comes back,
//! active health checks (probes) and passive ones (consecutive failures), and the retry rule
//! (only idempotent requests without a body, only when no connection could be made).

use std::time::Duration;

use crate::support::edge::{edge_with_toml, rewrite};
use crate::support::http::{client, send};
use crate::support::origin::Origin;
use crate::support::{self, until};

/// A GET through the edge; returns (status, body).
async fn get(edge: &support::Proc, path: &str) -> (u16, String) {
    let got = send(client().get(format!("{}{path}", edge.url("edge http")))).await;
    (got.status, got.text())
}

fn two_origins(a: &Origin, b: &Origin, health: &str) -> String {
    format!(
        r#"
[[edge.sites]]
hosts = ["*"]
origins = ["{a}", "{b}"]
timeouts = {{ connect = "1s", first_byte = "500ms", total = "10s" }}
[edge.sites.health]
{health}
"#,
        a = a.url_for("127.0.0.1"),
        b = b.url_for("127.0.0.1"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_origin_down_second_serves_and_the_first_is_used_again_when_it_comes_back() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", "127.0.0.1:0").await;
    // Active checks only, so that recovery is the probes' doing.
    let (edge, _cfg) = edge_with_toml(&two_origins(
        &a,
        &b,
        r#"path = "/healthz"
interval = "100ms"
timeout = "500ms"
healthy_threshold = 2
unhealthy_threshold = 2
max_fails = 0"#,
    ));
    assert_eq!(get(&edge, "/page").await, (200, "a".to_owned()), "the first origin serves while healthy");

    a.take_down();
    // At once: the connect failure is retried on the next origin.
    assert_eq!(get(&edge, "/page").await, (200, "b".to_owned()));

    // The operator's log says when the probes take it down and bring it back.
    until("the probes mark the first origin down", Duration::from_secs(10), || async {
        edge.stderr().contains("origin failed its health checks").then_some(())
    })
    .await;
    assert_eq!(get(&edge, "/page").await, (200, "b".to_owned()));

    a.bring_up().await;
    until("the first origin is used again", Duration::from_secs(10), || async {
        (get(&edge, "/page").await == (200, "a".to_owned())).then_some(())
    })
    .await;
    assert!(edge.stderr().contains("origin passes its health checks again"), "{}", edge.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_move_traffic_off_an_unhealthy_origin_and_back() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", "127.0.0.1:0").await;
    let (edge, _cfg) = edge_with_toml(&two_origins(
        &a,
        &b,
        r#"path = "/healthz"
interval = "100ms"
healthy_threshold = 2
unhealthy_threshold = 2"#,
    ));
    assert_eq!(get(&edge, "/p").await.1, "a");
    // The origin still answers requests, but its health check fails.
    a.set_healthy(false);
    until("traffic moves to the second origin", Duration::from_secs(10), || async {
        (get(&edge, "/p").await.1 == "b").then_some(())
    })
    .await;
    let before = a.hits("/p");
    for _ in 0..5 {
        assert_eq!(get(&edge, "/p").await.1, "b", "an unhealthy origin gets no requests");
    }
    assert_eq!(a.hits("/p"), before);
    a.set_healthy(true);
    until("traffic returns to the first origin", Duration::from_secs(10), || async {
        (get(&edge, "/p").await.1 == "a").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_mark_an_origin_down_for_its_cool_down() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", "127.0.0.1:0").await;
    let (edge, _cfg) = edge_with_toml(&two_origins(&a, &b, "max_fails = 2\nfail_timeout = \"1h\""));
    assert_eq!(get(&edge, "/q").await.1, "a");
    a.take_down();
    for _ in 0..2 {
        assert_eq!(get(&edge, "/q").await, (200, "b".to_owned()), "failed over");
    }
    // Two consecutive failures: the first origin is down for an hour, even once it is back.
    a.bring_up().await;
    for _ in 0..5 {
        assert_eq!(get(&edge, "/q").await.1, "b", "a downed origin is skipped during its cool-down");
    }
    assert_eq!(a.hits("/q"), 1, "only the request before it went down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_but_a_post_or_a_timeout_is_not() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", "127.0.0.1:0").await;
    // Passive checks off, so the first origin stays first and every request meets it.
    let (edge, _cfg) = edge_with_toml(&two_origins(&a, &b, "max_fails = 0"));

    // A timeout is not retried: the origin may have acted on the request.
    assert_eq!(get(&edge, "/slow").await.0, 504);
    assert!(b.hits("/slow") == 0, "a timed-out request is not sent again");

    a.take_down();
    let post = send(client().post(format!("{}/form", edge.url("edge http"))).body("x=1")).await;
    assert_eq!(post.status, 502, "a POST is not replayed on the next origin");
    assert!(post.cache().contains("detail=connect"), "{}", post.cache());
    assert!(b.hits("/form") == 0);

    assert_eq!(get(&edge, "/form").await, (200, "b".to_owned()), "a GET is retried on the next origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_cap_sends_requests_to_the_next_origin() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", "127.0.0.1:0").await;
    let (edge, _cfg) = edge_with_toml(&format!(
        r#"
[[edge.sites]]
hosts = ["*"]
origins = ["{a}", "{b}"]
timeouts = {{ connect = "300ms", first_byte = "10s", total = "10s" }}
pool = {{ max_connections = 1 }}
"#,
        a = a.url_for("127.0.0.1"),
        b = b.url_for("127.0.0.1"),
    ));
    // Holds the first origin's only connection for 3 s.
    let url = format!("{}/slow", edge.url("edge http"));
    let slow = tokio::spawn(async move { send(client().get(url)).await });
    until("the slow request reached the first origin", Duration::from_secs(10), || async {
        (a.hits("/slow") > 0).then_some(())
    })
    .await;
    assert_eq!(
        get(&edge, "/other").await,
        (200, "b".to_owned()),
        "no free connection: the next origin serves"
    );
    assert_eq!(slow.await.expect("slow request").text(), "a");
    assert_eq!(get(&edge, "/other").await, (200, "a".to_owned()), "the connection is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_timeout_cuts_a_pass_through_body() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let (edge, _cfg) = edge_with_toml(&format!(
        r#"
[[edge.sites]]
hosts = ["*"]
origins = ["{a}"]
timeouts = {{ connect = "1s", first_byte = "1s", total = "1s" }}
"#,
        a = a.url_for("127.0.0.1"),
    ));
    // The origin sends its head at once and the end of its body after 3 s.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let res = client()
            .request(method.clone(), format!("{}/trickle", edge.url("edge http")))
            .send()
            .await
            .expect("response head");
        assert_eq!(res.status(), 200, "{method}");
        assert!(res.bytes().await.is_err(), "{method}: the body is cut at the total timeout, not completed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_stops_the_probes_of_the_origins_it_replaces() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", "127.0.0.1:0").await;
    let site = |origin: &Origin| {
        format!(
            "[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n[edge.sites.health]\npath = \"/healthz\"\ninterval = \"50ms\"\n",
            origin.url_for("127.0.0.1")
        )
    };
    let (edge, dir) = edge_with_toml(&site(&a));
    until("the first origin is probed", Duration::from_secs(10), || async {
        (a.hits("/healthz") >= 2).then_some(())
    })
    .await;

    rewrite(&dir, &site(&b));
    edge.signal("HUP");
    until("the new origin serves", Duration::from_secs(10), || async {
        (get(&edge, "/r").await.1 == "b").then_some(())
    })
    .await;
    // The new origin's probes are the clock: while it is probed ten more times, the old one
    // is not probed at all (one probe may have been under way at the swap).
    let old = a.hits("/healthz");
    let now = b.hits("/healthz");
    until("the new origin is probed", Duration::from_secs(10), || async {
        (b.hits("/healthz") >= now + 10).then_some(())
    })
    .await;
    assert!(a.hits("/healthz") <= old + 1, "the replaced origin's probes stopped");
}
