//! Server-side copies of large objects (issue 22): aws-cli, boto3 and minio's `compose_object`
//! copy with UploadPartCopy (`tests/smoke/s3_copy_parts.py copy|compose`), and hostile copy sources and ranges
//! get S3's errors, as raw signed requests no client library would send.

use http::Method;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::support::s3::{
    client, error_code, private, run_client_script, send_signed, send_signed_with, start, xml_texts,
};

#[test]
fn aws_cli_and_boto3_copy_large_objects_between_buckets_by_parts() {
    let origin = start(&[]);
    let out = run_client_script(&origin.url, "s3_copy_parts.py", &["copy"], "s3 copy: all checks passed");
    assert!(out.contains("ok: aws s3 cp between buckets copies 10 MiB byte for byte"), "{out}");
    assert!(!origin.proc.stderr().contains("storage failure"), "{}", origin.proc.stderr());
}

#[test]
fn minio_compose_object_joins_ranges_by_upload_part_copy() {
    let origin = start(&[]);
    run_client_script(&origin.url, "s3_copy_parts.py", &["compose"], "s3 compose: all checks passed");
}

/// Sends a signed request with `headers` and returns its status and S3 error code.
async fn refused(method: Method, url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let resp = send_signed_with(method, url, headers, Vec::new()).await;
    let status = resp.status().as_u16();
    (status, error_code(&resp.text().await.expect("body")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_copy_sources_and_ranges_get_s3_errors_and_store_nothing() {
    let origin = start(&[private("src"), private("dst")]);
    let s3 = client(&origin.url, "src");
    s3.put(&Path::from("k"), PutPayload::from(vec![b'x'; 1000])).await.expect("put");
    let resp = send_signed(Method::POST, &format!("{}/dst/out?uploads", origin.url), Vec::new()).await;
    let id = xml_texts(&resp.text().await.expect("body"), &["UploadId"]).pop().expect("upload id");
    let part = format!("{}/dst/out?partNumber=1&uploadId={id}", origin.url);
    let copy = format!("{}/dst/copied", origin.url);
    let invalid = (400, Some("InvalidArgument".to_owned()));

    for source in ["src", "/src/", "src/k%80", "src/k?versionId=v1", "a/k"] {
        let headers = [("x-amz-copy-source", source)];
        assert_eq!(refused(Method::PUT, &part, &headers).await, invalid, "UploadPartCopy from {source:?}");
        assert_eq!(refused(Method::PUT, &copy, &headers).await, invalid, "CopyObject from {source:?}");
    }
    let arn = "arn:aws:s3:us-east-1:123456789012:accesspoint/my-ap/object/k";
    assert_eq!(
        refused(Method::PUT, &part, &[("x-amz-copy-source", arn)]).await.1.as_deref(),
        Some("NotImplemented")
    );
    for range in [
        "bytes=0-1000",
        "bytes=1000-1000",
        "bytes=0-99999999999999999999",
        "bytes=-1",
        "bytes=2-1",
        "lines=0-1",
    ] {
        let headers = [("x-amz-copy-source", "src/k"), ("x-amz-copy-source-range", range)];
        assert_eq!(refused(Method::PUT, &part, &headers).await, invalid, "range {range:?}");
    }
    let missing = [("x-amz-copy-source", "src/nope")];
    assert_eq!(refused(Method::PUT, &part, &missing).await, (404, Some("NoSuchKey".to_owned())));
    let other_upload = format!("{}/dst/out?partNumber=1&uploadId={}", origin.url, "f".repeat(32));
    let good = [("x-amz-copy-source", "src/k"), ("x-amz-copy-source-range", "bytes=0-999")];
    assert_eq!(refused(Method::PUT, &other_upload, &good).await, (404, Some("NoSuchUpload".to_owned())));
    let wrong_key = format!("{}/dst/other?partNumber=1&uploadId={id}", origin.url);
    assert_eq!(refused(Method::PUT, &wrong_key, &good).await, (404, Some("NoSuchUpload".to_owned())));
    for n in ["0", "10001", "x"] {
        let url = format!("{}/dst/out?partNumber={n}&uploadId={id}", origin.url);
        assert_eq!(refused(Method::PUT, &url, &good).await, invalid, "part number {n}");
    }

    // Nothing was stored: no part, no object; the last byte is a fine range.
    let parts = send_signed(Method::GET, &format!("{}/dst/out?uploadId={id}", origin.url), Vec::new()).await;
    assert!(xml_texts(&parts.text().await.expect("body"), &["Part", "PartNumber"]).is_empty());
    assert_eq!(refused(Method::GET, &copy, &[]).await.1.as_deref(), Some("NoSuchKey"));
    let last = [("x-amz-copy-source", "src/k"), ("x-amz-copy-source-range", "bytes=999-999")];
    assert_eq!(send_signed_with(Method::PUT, &part, &last, Vec::new()).await.status(), 200);
}
