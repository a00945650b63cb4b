//! The control plane with the real `stratus origin`: object events posted by the origin
//! (`--notify`) purge the object on both edges, and prewarm lists a bucket on the origin.

use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;

use crate::support::control::{Api, TOKEN, start_control, start_edge};
use crate::support::http::get_on;
use crate::support::{self, until};

/// Origin with a public `demo` bucket posting its events to the control plane, and two edges in
/// front of the bucket following the control plane.
struct Fleet {
    origin: support::s3::Origin,
    _control: support::Proc,
    edges: Vec<support::Proc>,
    api: Api,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// With `notify` the origin posts its events to the control plane (started first); without,
    /// the control plane lists buckets on the origin (started first). Either way nothing needs
    /// a port known in advance.
    async fn start(notify: bool) -> Self {
        let dir = support::tempdir();
        let bucket = [support::s3::public("demo", Some("max-age=3600"))];
        let (origin, control) = if notify {
            let control = start_control(dir.path(), "");
            let url = format!("{}/v1/events/origin", control.url("control api"));
            let opts = support::s3::Options { notify: Some(&url), token: Some(TOKEN), ..Default::default() };
            (support::s3::start_with(&bucket, &opts), control)
        } else {
            let origin = support::s3::start(&bucket);
            let control = start_control(dir.path(), &format!("origin = {:?}", origin.url));
            (origin, control)
        };
        let api = Api::new(&control);
        let bucket_url = format!("{}/demo", origin.url);
        let edges = ["a", "b"].iter().map(|id| start_edge(&bucket_url, &api.base, id)).collect();
        api.until_following(2).await;
        Self { origin, _control: control, edges, api, _dir: dir }
    }

    async fn put(&self, key: &str, body: &str) {
        let s3 = support::s3::client(&self.origin.url, "demo");
        s3.put(&Path::from(key), PutPayload::from(body.to_owned())).await.expect("put");
    }

    /// The body each edge serves for `/KEY` and whether it was a hit.
    async fn served(&self, key: &str) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for edge in &self.edges {
            // As `curl http://127.0.0.1:PORT/KEY` asks: the catch-all site keys objects by the
            // edge's own address, which is also where it prewarms objects to.
            let addr = edge.addr("edge http");
            let got = get_on(&addr, &addr, &format!("/{key}")).await;
            assert_eq!(got.status, 200, "{got:?}");
            out.push((got.text(), got.hit()));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_object_version_is_served_by_both_edges_within_a_second_without_a_purge() {
    let fleet = Fleet::start(true).await;
    fleet.put("site/app.css", "body { color: red }").await;
    // The first put's own event must have landed before warming, or it would purge the copies.
    until("the first put's purge is applied", Duration::from_secs(10), || async {
        let (_, status) = fleet.api.get("/v1/purge/p-1").await;
        (status["edges"].as_array()?.iter().filter(|e| e["state"] == "applied").count() == 2).then_some(())
    })
    .await;
    fleet.served("site/app.css").await;
    let cached = fleet.served("site/app.css").await;
    assert_eq!(cached, vec![("body { color: red }".to_owned(), true); 2], "both edges cache v1 for an hour");

    fleet.put("site/app.css", "body { color: blue }").await;
    until("both edges serve the new version", Duration::from_secs(1), || async {
        let served = fleet.served("site/app.css").await;
        served.iter().all(|(body, _)| body == "body { color: blue }").then_some(())
    })
    .await;
    // Nobody called purge: the entry in the log came from the origin's event.
    let (_, status) = fleet.api.get("/v1/purge/p-2").await;
    assert_eq!(status["op"]["objects"], json!([{"bucket": "demo", "key": "site/app.css"}]), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prewarm_of_a_bucket_prefix_makes_the_next_requests_hits() {
    let fleet = Fleet::start(false).await;
    for key in ["img/a.png", "img/b.png", "doc/c.txt"] {
        fleet.put(key, &format!("content of {key}")).await;
    }
    let (status, answer) =
        fleet.api.post("/v1/prewarm?wait=5s", json!({"bucket": "demo", "prefix": "img/"})).await;
    assert_eq!(status, 200, "{answer}");
    let (_, entry) = fleet.api.get(&format!("/v1/prewarm/{}", answer["id"].as_str().expect("id"))).await;
    assert_eq!(entry["op"]["objects"].as_array().map(Vec::len), Some(2), "{entry}");

    // Prewarm is acked once queued; the fetches finish shortly after. Watch the edges' own
    // stats rather than requesting the objects, which would fill the caches by itself.
    until("both edges hold the two prewarmed objects", Duration::from_secs(10), || async {
        let mut all = true;
        for edge in &fleet.edges {
            let stats = reqwest::Client::new()
                .get(format!("{}/stats", edge.url("edge admin")))
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()?;
            all &= stats["cache_entries"].as_u64() == Some(2);
        }
        all.then_some(())
    })
    .await;
    for key in ["img/a.png", "img/b.png"] {
        let served = fleet.served(key).await;
        assert_eq!(served, vec![(format!("content of {key}"), true); 2], "{key} is a hit on both edges");
    }
    assert!(fleet.served("doc/c.txt").await.iter().all(|(_, hit)| !hit), "outside the prefix: not prewarmed");
}
