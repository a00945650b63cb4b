//! Incomplete multipart uploads expire (`multipart_expiry`, issue 22): once older than the
//! configured age an upload is no longer listed, its parts are deleted from disk and using it
//! is `NoSuchUpload`; a younger upload is untouched.

use std::time::Duration;

use http::Method;

use crate::support;
use crate::support::s3::{Options, error_code, files_under, private, send_signed, start_with, xml_texts};

async fn create_upload(url: &str, key: &str) -> String {
    let resp = send_signed(Method::POST, &format!("{url}/media/{key}?uploads"), Vec::new()).await;
    assert_eq!(resp.status(), 200);
    let xml = resp.text().await.expect("body");
    xml_texts(&xml, &["UploadId"]).pop().expect("an upload id")
}

async fn listed(url: &str) -> Vec<String> {
    let resp = send_signed(Method::GET, &format!("{url}/media?uploads"), Vec::new()).await;
    assert_eq!(resp.status(), 200);
    xml_texts(&resp.text().await.expect("body"), &["Upload", "UploadId"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_upload_past_its_age_is_unlisted_and_its_parts_deleted() {
    let opts = Options { multipart_expiry: Some("4s"), ..Options::default() };
    let origin = start_with(&[private("media")], &opts);
    let id = create_upload(&origin.url, "old.bin").await;
    let part = send_signed(
        Method::PUT,
        &format!("{}/media/old.bin?partNumber=1&uploadId={id}", origin.url),
        vec![7u8; 64 * 1024],
    )
    .await;
    assert_eq!(part.status(), 200);
    assert_eq!(listed(&origin.url).await, std::slice::from_ref(&id), "a young upload is listed");
    let dir = origin.data.join("media").join("uploads").join(&id);
    assert!(dir.join("part.00001").exists(), "its part is on disk");

    let url = origin.url.clone();
    support::until("the upload is no longer listed", Duration::from_secs(30), || {
        let url = url.clone();
        async move { listed(&url).await.is_empty().then_some(()) }
    })
    .await;
    // The upload's directory is first renamed aside (`.trash.…`), then removed: wait until
    // nothing of it is left anywhere under `uploads/`.
    let uploads = origin.data.join("media").join("uploads");
    support::eventually("its directory and every part are deleted", Duration::from_secs(30), || {
        (!dir.exists() && files_under(&uploads).is_empty()).then_some(())
    });

    let resp = send_signed(
        Method::PUT,
        &format!("{}/media/old.bin?partNumber=2&uploadId={id}", origin.url),
        vec![1u8; 10],
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(&resp.text().await.expect("body")).as_deref(), Some("NoSuchUpload"));
    assert!(origin.proc.stderr().contains("expired an incomplete multipart upload"));

    // A new upload starts young again.
    let fresh = create_upload(&origin.url, "new.bin").await;
    assert_eq!(listed(&origin.url).await, [fresh]);
}

#[test]
fn a_zero_expiry_is_refused_with_its_key() {
    let dir = support::tempdir();
    let config = support::process::write_file(
        dir.path(),
        "origin.toml",
        "[origin]\nlisten = \"127.0.0.1:0\"\ndata = \"/tmp/x\"\nmultipart_expiry = \"0s\"\n",
    );
    let (code, _, stderr) =
        support::process::run_stratus(&["config", "check", config.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("origin.multipart_expiry: must be longer than 0s"), "{stderr}");
}
