//! A real edge in front of a public bucket: the first request is a miss forwarded to the
//! origin, the second a hit served from the edge's cache with the bucket's default
//! Cache-Control — even once the origin is gone. An object's own Cache-Control wins.

use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use crate::support::s3::{client, public, start};
use crate::support::{Proc, stratus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_misses_then_hits_with_the_buckets_cache_control() {
    let mut origin = start(&[public("site", Some("public, max-age=300"))]);
    let s3 = client(&origin.url, "site");
    let put =
        s3.put(&Path::from("index.html"), PutPayload::from_static(b"<h1>home</h1>")).await.expect("put");
    let mut attrs = Attributes::new();
    attrs.insert(Attribute::CacheControl, "no-store".into());
    s3.put_opts(
        &Path::from("live.json"),
        PutPayload::from_static(b"{}"),
        PutOptions { attributes: attrs, ..Default::default() },
    )
    .await
    .expect("put");

    let mut cmd = stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--origin", &format!("{}/site", origin.url)]);
    let edge = Proc::start(cmd, &["edge http"]);
    let url = |path: &str| format!("{}{path}", edge.url("edge http"));
    let http = reqwest::Client::new();
    let status = |r: &reqwest::Response| {
        r.headers().get("cache-status").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };

    let first = http.get(url("/index.html")).send().await.expect("first get");
    assert_eq!(first.status(), 200);
    let cs = status(&first);
    assert!(cs.contains("fwd=") && cs.contains("stored"), "first request is a stored miss: {cs}");
    assert_eq!(first.headers()["cache-control"], "public, max-age=300", "the bucket's default");
    assert_eq!(first.headers()["etag"].to_str().ok(), put.e_tag.as_deref());
    assert_eq!(first.text().await.expect("body"), "<h1>home</h1>");

    let second = http.get(url("/index.html")).send().await.expect("second get");
    assert_eq!(second.status(), 200);
    let cs = status(&second);
    assert!(cs.contains("; hit"), "second request is a hit: {cs}");
    assert_eq!(second.headers()["cache-control"], "public, max-age=300");
    assert_eq!(second.text().await.expect("body"), "<h1>home</h1>");

    // An object stored with its own Cache-Control: no-store is never cached.
    for _ in 0..2 {
        let r = http.get(url("/live.json")).send().await.expect("get");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(!status(&r).contains("; hit"), "{}", status(&r));
    }

    // The hit really comes from the edge: it survives the origin going away.
    origin.proc.kill();
    let third = http.get(url("/index.html")).send().await.expect("get with the origin down");
    assert_eq!(third.status(), 200);
    assert!(status(&third).contains("; hit"), "{}", status(&third));
    assert_eq!(third.text().await.expect("body"), "<h1>home</h1>");
}
