//! Reading by part and ranged HEAD (issue 22): GET and HEAD with `partNumber` answer one part
//! of a multipart object as S3 does (boto3, `tests/smoke/s3_copy_parts.py parts`), and a HEAD
//! with `Range` is a 206 with the range's headers and no body (raw bytes on a socket).

use std::io::{Read, Write};
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::support::s3::{client, public, run_client_script, start};

#[test]
fn boto3_reads_a_multipart_object_part_by_part() {
    let origin = start(&[]);
    run_client_script(&origin.url, "s3_copy_parts.py", &["parts"], "s3 parts: all checks passed");
}

/// The raw answer to `request`, read until the server closes the connection.
fn exchange(addr: &str, request: &str) -> String {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    conn.write_all(request.as_bytes()).expect("send");
    let mut out = Vec::new();
    conn.read_to_end(&mut out).expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_with_range_is_a_206_without_a_body() {
    let origin = start(&[public("site", None)]);
    let s3 = client(&origin.url, "site");
    s3.put(&Path::from("ten.txt"), PutPayload::from_static(b"0123456789")).await.expect("put");
    let addr = origin.url.trim_start_matches("http://").to_owned();

    // Blocking sockets are fine here: the origin is another process.
    let head = |range: &str| {
        exchange(
            &addr,
            &format!(
                "HEAD /site/ten.txt HTTP/1.1\r\nHost: {addr}\r\nRange: {range}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    let (mid, suffix, past) = (head("bytes=2-5"), head("bytes=-3"), head("bytes=10-"));
    let lower = mid.to_ascii_lowercase();
    assert!(mid.starts_with("HTTP/1.1 206"), "{mid}");
    assert!(lower.contains("content-range: bytes 2-5/10\r\n"), "{mid}");
    assert!(lower.contains("content-length: 4\r\n"), "{mid}");
    assert!(mid.ends_with("\r\n\r\n"), "no body after the head: {mid:?}");
    assert!(suffix.to_ascii_lowercase().contains("content-range: bytes 7-9/10\r\n"), "{suffix}");
    assert!(past.starts_with("HTTP/1.1 416"), "{past}");
    assert!(past.ends_with("\r\n\r\n"), "no body after the head: {past:?}");

    // Without Range, HEAD is still the whole object.
    let whole =
        exchange(&addr, &format!("HEAD /site/ten.txt HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"));
    assert!(
        whole.starts_with("HTTP/1.1 200") && whole.to_ascii_lowercase().contains("content-length: 10\r\n"),
        "{whole}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_part_numbers_get_precise_errors() {
    let origin = start(&[public("site", None)]);
    let s3 = client(&origin.url, "site");
    s3.put(&Path::from("k"), PutPayload::from_static(b"abc")).await.expect("put");
    let http = reqwest::Client::new();
    for (query, status, code) in [
        ("partNumber=0", 400, "InvalidArgument"),
        ("partNumber=10001", 400, "InvalidArgument"),
        ("partNumber=-1", 400, "InvalidArgument"),
        ("partNumber=x", 400, "InvalidArgument"),
        ("partNumber=99999999999", 400, "InvalidArgument"),
        ("partNumber=2", 416, "InvalidPartNumber"),
    ] {
        let resp = http.get(format!("{}/site/k?{query}", origin.url)).send().await.expect("get");
        assert_eq!(resp.status().as_u16(), status, "{query}");
        let body = resp.text().await.expect("body");
        assert_eq!(crate::support::s3::error_code(&body).as_deref(), Some(code), "{query}: {body}");
    }
    let resp = http.get(format!("{}/site/k?partNumber=1", origin.url)).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 0-2/3");
    assert_eq!(resp.text().await.expect("body"), "abc");
}
