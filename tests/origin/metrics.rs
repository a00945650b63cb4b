//! The origin's `/metrics` (issue #20): requests by method and status class and a duration
//! histogram, without credentials; S3 requests for a bucket named `metrics` still reach S3.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::support::http::{metric, promtool_check};
use crate::support::s3::{client, private, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_metrics_count_requests() {
    let origin = start(&[private("metrics"), private("data")]);
    let store = client(&origin.url, "data");
    store.put(&Path::from("a.txt"), PutPayload::from_static(b"hello")).await.unwrap();
    store.get(&Path::from("a.txt")).await.unwrap().bytes().await.unwrap();
    assert!(store.get(&Path::from("missing.txt")).await.is_err());
    // A bucket named `metrics` is still S3 for signed requests.
    let bucket = client(&origin.url, "metrics");
    bucket.put(&Path::from("m.txt"), PutPayload::from_static(b"m")).await.unwrap();

    let res = reqwest::get(format!("{}/metrics", origin.url)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let m = res.text().await.unwrap();
    assert_eq!(metric(&m, "stratus_origin_requests_total{method=\"PUT\",code=\"2xx\"}"), 2.0);
    assert_eq!(metric(&m, "stratus_origin_requests_total{method=\"GET\",code=\"2xx\"}"), 1.0);
    assert_eq!(metric(&m, "stratus_origin_requests_total{method=\"GET\",code=\"4xx\"}"), 1.0);
    assert_eq!(metric(&m, "stratus_origin_request_duration_seconds_count"), 4.0);
    assert_eq!(metric(&m, "stratus_origin_request_duration_seconds_bucket{le=\"+Inf\"}"), 4.0);
    assert!(m.contains("stratus_build_info{version=\""), "{m}");
    assert!(metric(&m, "process_open_fds") > 3.0);
    promtool_check(&m);
}
