//! The control plane's `/metrics` (issue #20): scraped without the API token that can purge,
//! with the log's position and each edge's progress; a read-only token when configured.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;

use crate::support::control::{Api, follower, start_control};
use crate::support::http::{metric, promtool_check};
use crate::support::{self, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_metrics_need_no_purge_token() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let _a = follower(&api, "edge-m").await;
    api.purge(json!({"tags": ["m"]})).await;
    let url = format!("{}/metrics", api.base);
    let m = until("edge-m applied the purge", Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            // No Authorization header: the API token is set (start_control), yet scraping works.
            let res = reqwest::get(&url).await.unwrap();
            assert_eq!(res.status(), 200);
            let m = res.text().await.unwrap();
            m.contains("stratus_control_edge_applied_sequence{edge=\"edge-m\"} 1").then_some(m)
        }
    })
    .await;
    assert_eq!(metric(&m, "stratus_control_log_head_sequence"), 1.0);
    assert_eq!(metric(&m, "stratus_control_log_write_failing"), 0.0);
    assert_eq!(metric(&m, "stratus_control_edges{state=\"live\"}"), 1.0);
    assert_eq!(metric(&m, "stratus_control_edge_up{edge=\"edge-m\"}"), 1.0);
    assert_eq!(metric(&m, "stratus_control_edge_lag_entries{edge=\"edge-m\"}"), 0.0);
    // The purge's trip from the API call to edge-m's ack is in the propagation histogram.
    assert_eq!(metric(&m, "stratus_control_purge_propagation_seconds_count"), 1.0);
    assert_eq!(metric(&m, "stratus_control_purge_propagation_seconds_bucket{le=\"+Inf\"}"), 1.0);
    assert!(m.contains("stratus_build_info{version=\""), "{m}");
    assert!(metric(&m, "process_resident_memory_bytes") > 1e6);
    promtool_check(&m);
    // The API itself still needs the token.
    assert_eq!(reqwest::get(format!("{}/v1/edges", api.base)).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_metrics_with_a_read_only_token() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "metrics_token = \"scrape-me\"");
    let api = Api::new(&control);
    let c = reqwest::Client::new();
    let url = format!("{}/metrics", api.base);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(c.get(&url).bearer_auth("scrape-me").send().await.unwrap().status(), 200);
    assert_eq!(c.get(&url).bearer_auth(&api.token).send().await.unwrap().status(), 200);
    // The read-only token cannot purge.
    let purge = c
        .post(format!("{}/v1/purge", api.base))
        .bearer_auth("scrape-me")
        .json(&json!({"tags": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 401);
}
