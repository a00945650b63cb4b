//! Crash safety: SIGKILL the origin in the middle of large PUTs and show that afterwards every
//! key holds its old object (or none) — never a torn one — and no temporary file is visible.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::support;
use crate::support::s3::{Options, client, files_under, md5_hex, pattern, private, start_in};

const DECLARED: u64 = 64 * 1024 * 1024;
const SENT: usize = 8 * 1024 * 1024;

/// Starts a presigned PUT of `DECLARED` bytes that sends only `SENT` and then stalls; returns
/// the sender (dropping it would end the body) and the request task.
fn slow_put(
    url: reqwest::Url,
) -> (tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let task = tokio::spawn(async move {
        // The origin dies mid-body: the request fails, which is the point.
        let _ = reqwest::Client::new().put(url).header("content-length", DECLARED).body(body).send().await;
    });
    let feeder = tx.clone();
    tokio::spawn(async move {
        for chunk in pattern(SENT, 99).chunks(64 * 1024) {
            if feeder.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                return;
            }
        }
    });
    (tx, task)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn temp_bytes(data: &std::path::Path) -> u64 {
    files_under(data)
        .iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".tmp.")))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_large_puts_leaves_the_old_object_or_none() {
    let dir = Arc::new(support::tempdir());
    let mut origin = start_in(dir.clone(), &[private("media")], &Options::default());
    let s3 = client(&origin.url, "media");
    let old = pattern(1024 * 1024, 1);
    let old_etag =
        s3.put(&Path::from("video.bin"), PutPayload::from(old.clone())).await.expect("put v1").e_tag;

    let replace = s3.signed_url(http::Method::PUT, &Path::from("video.bin"), Duration::from_secs(300)).await;
    let fresh = s3.signed_url(http::Method::PUT, &Path::from("fresh.bin"), Duration::from_secs(300)).await;
    let (_keep_a, task_a) = slow_put(replace.expect("presign"));
    let (_keep_b, task_b) = slow_put(fresh.expect("presign"));

    // Both bodies are partly on disk...
    let data = origin.data.clone();
    support::eventually("16 MiB of partial uploads on disk", Duration::from_secs(30), || {
        (temp_bytes(&data) >= 2 * SENT as u64).then_some(())
    });
    // ...and invisible: readers still see the old object and only it.
    let got = s3.get(&Path::from("video.bin")).await.expect("get during upload");
    assert_eq!(got.meta.e_tag, old_etag);
    let listed: Vec<_> = s3.list(None).map_ok(|m| m.location.to_string()).try_collect().await.expect("list");
    assert_eq!(listed, ["video.bin"]);

    origin.proc.kill();
    let _ = tokio::join!(task_a, task_b);

    let origin = start_in(dir, &[private("media")], &Options::default());
    let s3 = client(&origin.url, "media");
    let got = s3.get(&Path::from("video.bin")).await.expect("old object survives");
    assert_eq!(got.meta.e_tag, old_etag);
    let body = got.bytes().await.expect("body");
    assert_eq!(md5_hex(&body), md5_hex(&old), "the old body, whole");
    let err = s3.get(&Path::from("fresh.bin")).await.expect_err("the interrupted new key does not exist");
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    let listed: Vec<_> = s3.list(None).map_ok(|m| m.location.to_string()).try_collect().await.expect("list");
    assert_eq!(listed, ["video.bin"]);
    assert_eq!(temp_bytes(&origin.data), 0, "the restart removed the partial uploads");
    assert!(origin.proc.stderr().contains("removing an interrupted write"));
}
