//! The store's capacity: weighed in bytes, evicting to stay within `--cache-size`, and
//! reporting it in metrics.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use crate::support::edge::edge;
use crate::support::http::{client, get};
use crate::support::origin::{Origin, Reply};
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cache_stays_within_its_size_and_counts_evictions() {
    let origin = Origin::start().await;
    let body = "z".repeat(64 * 1024);
    for i in 0..48 {
        origin.fixed(&format!("/store/obj{i}"), Reply::ok(&body, &[("cache-control", "max-age=300")]));
    }
    let edge = edge(&origin, &["--cache-size", "1MiB"]);
    let base = edge.url("edge http");
    for round in 0..2 {
        for i in 0..48 {
            let got = get(&format!("{base}/store/obj{i}"), &[]).await;
            assert_eq!(got.body.len(), body.len(), "round {round} object {i}");
        }
    }
    let text = client()
        .get(format!("{}/metrics", edge.url("edge admin")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bytes = metric(&text, "stratus_edge_cache_bytes");
    assert!(bytes <= 1024.0 * 1024.0, "cache holds {bytes} bytes");
    assert!(bytes > 0.0);
    assert!(metric(&text, "stratus_edge_cache_evictions_total") > 0.0);
}
