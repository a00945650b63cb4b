//! Object events: the origin posts put, copy, complete-multipart and delete events to the
//! control plane's URL (docs/PROTOCOL.md), retrying failures; a receiver that is down or
//! hanging never slows or fails a write; and an event survives the origin being killed before
//! it was delivered (the outbox, issue 22).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::support;
use crate::support::origin::{Origin, Reply};
use crate::support::s3::{Options, client, files_under, private, start_in, start_with};

/// A test event receiver: answers 503 to the first `fail_first` posts, then 202, and keeps
/// every event and `Authorization` header it accepted.
struct Receiver {
    url: String,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
    auth: Arc<Mutex<Vec<String>>>,
    posts: Arc<AtomicUsize>,
    /// While set, every post is answered 503 (the control plane is down).
    down: Arc<AtomicBool>,
    _origin: Origin,
}

async fn receiver(fail_first: usize) -> Receiver {
    let origin = Origin::start().await;
    let url = format!("{}/v1/events/origin", origin.url);
    let events = Arc::new(Mutex::new(Vec::new()));
    let auth = Arc::new(Mutex::new(Vec::new()));
    let posts = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let (ev, au, po, dn) = (events.clone(), auth.clone(), posts.clone(), down.clone());
    origin.fallback(move |req, _| {
        let n = po.fetch_add(1, Ordering::SeqCst);
        if n < fail_first || dn.load(Ordering::SeqCst) {
            return Reply::status(503, "", &[]).sized();
        }
        let json: serde_json::Value = serde_json::from_slice(&req.body).expect("json body");
        ev.lock()
            .expect("event log")
            .extend(json["events"].as_array().expect("events array").iter().cloned());
        let authz = req.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        au.lock().expect("auth log").extend(authz);
        Reply::status(202, "", &[]).sized()
    });
    Receiver { url, events, auth, posts, down, _origin: origin }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_copy_multipart_and_delete_events_reach_the_receiver_despite_failures() {
    let rx = receiver(2).await;
    let opts = Options { notify: Some(&rx.url), token: Some("event-token"), ..Options::default() };
    let origin = start_with(&[private("demo")], &opts);
    let s3 = client(&origin.url, "demo");

    let put = s3.put(&Path::from("a/b.css"), PutPayload::from_static(b"body{}")).await.expect("put");
    s3.copy(&Path::from("a/b.css"), &Path::from("a/c.css")).await.expect("copy");
    let mut mp = WriteMultipart::new(s3.put_multipart(&Path::from("big.bin")).await.expect("mpu"));
    mp.write(b"small single part");
    let done = mp.finish().await.expect("complete");
    s3.delete(&Path::from("a/b.css")).await.expect("delete");

    let events = support::eventually("four events delivered", Duration::from_secs(20), || {
        let events = rx.events.lock().unwrap().clone();
        (events.len() >= 4).then_some(events)
    });
    let summary: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or(""),
                e["bucket"].as_str().unwrap_or(""),
                e["key"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("put", "demo", "a/b.css"),
            ("copy", "demo", "a/c.css"),
            ("complete_multipart", "demo", "big.bin"),
            ("delete", "demo", "a/b.css"),
        ]
    );
    assert_eq!(events[0]["etag"].as_str(), put.e_tag.as_deref(), "the event's ETag is the object's");
    assert_eq!(events[0]["size"], 6);
    assert_eq!(events[2]["etag"].as_str(), done.e_tag.as_deref());
    assert!(events.iter().all(|e| e["at"].as_str().is_some_and(|t| t.ends_with('Z'))), "{events:?}");
    assert!(rx.posts.load(Ordering::SeqCst) >= 3, "the two failed posts were retried");
    assert!(rx.auth.lock().unwrap().iter().all(|a| a == "Bearer event-token"));
    assert!(origin.proc.stderr().contains("event delivery failed"), "failures are logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_absent_receiver_never_blocks_writes() {
    // A receiver that accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_url = format!("http://{}/v1/events/origin", hang.local_addr().expect("addr"));
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = hang.accept().await {
            keep.lock().unwrap().push(s);
        }
    });
    // A receiver that is not there at all.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone_url = format!("http://{}/v1/events/origin", gone.local_addr().expect("addr"));
    drop(gone);

    for url in [hang_url, gone_url] {
        let opts = Options { notify: Some(&url), ..Options::default() };
        let origin = start_with(&[private("demo")], &opts);
        let s3 = client(&origin.url, "demo");
        // The timeout only guards against a hung test; the writes themselves must succeed.
        let writes = async {
            for i in 0..100 {
                let p = Path::from(format!("k{i}"));
                s3.put(&p, PutPayload::from(vec![b'x'; 1000])).await.expect("put");
                if i % 10 == 0 {
                    s3.delete(&p).await.expect("delete");
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), writes).await.expect("writes completed");
        let n = s3.list(None).collect::<Vec<_>>().await.len();
        assert_eq!(n, 90, "{url}");
    }
}

/// Every event file waiting in the origin's outbox.
fn outbox(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    files_under(&data.join(".outbox"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_not_delivered_before_a_sigkill_is_delivered_after_the_restart() {
    let rx = receiver(0).await;
    rx.down.store(true, Ordering::SeqCst);
    let opts = Options { notify: Some(&rx.url), ..Options::default() };
    let dir = Arc::new(support::tempdir());
    let mut origin = start_in(dir.clone(), &[private("demo")], &opts);
    let s3 = client(&origin.url, "demo");
    let put =
        s3.put(&Path::from("page.html"), PutPayload::from_static(b"v2")).await.expect("put answered 200");
    s3.delete(&Path::from("never-existed")).await.expect("delete");

    // The control plane refused the event at least once: it was not delivered when the origin died.
    support::eventually("a delivery attempt", Duration::from_secs(20), || {
        (rx.posts.load(Ordering::SeqCst) >= 1).then_some(())
    });
    assert!(rx.events.lock().unwrap().is_empty());
    assert_eq!(outbox(&origin.data).len(), 1, "the put's event waits on disk, the no-op delete has none");
    origin.proc.kill();

    rx.down.store(false, Ordering::SeqCst);
    let origin = start_in(dir, &[private("demo")], &opts);
    let events =
        support::eventually("the event delivered after the restart", Duration::from_secs(20), || {
            let events = rx.events.lock().unwrap().clone();
            (!events.is_empty()).then_some(events)
        });
    assert_eq!(events[0]["kind"], "put");
    assert_eq!(events[0]["key"], "page.html");
    assert_eq!(
        events[0]["etag"].as_str(),
        put.e_tag.as_deref(),
        "the event names the version that was stored"
    );
    assert_eq!(events[0]["size"], 2);
    let data = origin.data.clone();
    support::eventually("the outbox emptied", Duration::from_secs(20), || {
        outbox(&data).is_empty().then_some(())
    });
    assert!(origin.proc.stderr().contains("delivering events from the outbox"), "{}", origin.proc.stderr());

    // Later writes are announced as before.
    let s3 = client(&origin.url, "demo");
    s3.delete(&Path::from("page.html")).await.expect("delete");
    support::eventually("the delete announced", Duration::from_secs(20), || {
        let events = rx.events.lock().unwrap().clone();
        events.iter().any(|e| e["kind"] == "delete" && e["key"] == "page.html").then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_conditional_write_announces_nothing() {
    let rx = receiver(0).await;
    rx.down.store(true, Ordering::SeqCst);
    let opts = Options { notify: Some(&rx.url), ..Options::default() };
    let origin = start_with(&[private("demo")], &opts);
    let s3 = client(&origin.url, "demo");
    s3.put(&Path::from("k"), PutPayload::from_static(b"v1")).await.expect("put");
    // A conditional create of an existing key is refused: no event for a change that did not happen.
    let create = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
    let err =
        s3.put_opts(&Path::from("k"), PutPayload::from_static(b"v2"), create).await.expect_err("exists");
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }),
        "{err}"
    );
    assert_eq!(outbox(&origin.data).len(), 1, "only the first put's event waits");
}
