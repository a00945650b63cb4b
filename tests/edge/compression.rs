//! On-the-fly compression against the real binary: negotiated per request, decompressing to
//! the origin's bytes, stored once per encoding and shared by every equivalent
//! `Accept-Encoding`, and leaving alone what must not be compressed.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
use tokio::io::AsyncReadExt;

use crate::support::edge::edge;
use crate::support::http::{Got, get};
use crate::support::origin::{Origin, Reply};

/// The body as the client reads it after undoing `Content-Encoding`.
async fn decoded(res: &Got) -> Vec<u8> {
    let mut out = Vec::new();
    let body = &res.body[..];
    match res.header("content-encoding").as_str() {
        "br" => BrotliDecoder::new(body).read_to_end(&mut out).await.unwrap(),
        "zstd" => ZstdDecoder::new(body).read_to_end(&mut out).await.unwrap(),
        "gzip" => GzipDecoder::new(body).read_to_end(&mut out).await.unwrap(),
        "" => {
            out.extend_from_slice(body);
            0
        }
        other => panic!("unexpected content-encoding {other}"),
    };
    out
}

fn stylesheet() -> String {
    (0..400)
        .map(|i| format!(".c{i} {{ color: #{:06x}; margin: {i}px; }}\n", i * 2654435761u64 % 0xffffff))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compression_is_negotiated_stored_once_per_encoding_and_shared() {
    let origin = Origin::start().await;
    let css = stylesheet();
    let headers =
        [("content-type", "text/css; charset=utf-8"), ("cache-control", "max-age=600"), ("etag", "\"c1\"")];
    origin.fixed("/app.css", Reply::ok(&css, &headers).sized());
    let edge = edge(&origin, &[]);
    let url = format!("{}/app.css", edge.url("edge http"));

    // (Accept-Encoding, expected encoding, expected hit)
    let cases = [
        ("gzip, deflate, br", "br", false),
        ("br;q=1.0, gzip;q=0.8", "br", true),
        ("deflate, gzip, br, zstd", "br", true),
        ("gzip", "gzip", false),
        ("x-gzip, deflate;q=0.5", "gzip", true),
        ("br;q=0, zstd", "zstd", false),
        ("zstd, gzip", "zstd", true),
        ("", "", false),
        ("identity", "", true),
        ("gzip;q=0", "", true),
    ];
    for (accept, want, hit) in cases {
        let res = if accept.is_empty() {
            get(&url, &[]).await
        } else {
            get(&url, &[("accept-encoding", accept)]).await
        };
        assert_eq!(res.status, 200, "{accept}");
        assert_eq!(res.header("content-encoding"), want, "{accept:?}: {}", res.cache());
        assert_eq!(res.hit(), hit, "{accept:?}: {}", res.cache());
        assert!(res.header("vary").to_ascii_lowercase().contains("accept-encoding"), "{accept:?}");
        assert_eq!(decoded(&res).await, css.as_bytes(), "{accept:?} decodes to the origin's bytes");
        if want.is_empty() {
            assert_eq!(res.header("etag"), "\"c1\"");
        } else {
            assert!(res.body.len() < css.len() / 3, "{accept:?}: {} bytes", res.body.len());
            assert_eq!(res.header("etag"), "W/\"c1\"", "{accept:?}: a compressed body has a weak ETag");
        }
        if hit {
            assert_eq!(res.header("content-length"), res.body.len().to_string(), "{accept:?}");
        }
    }
    assert_eq!(origin.hits("/app.css"), 4, "one origin fetch per encoding (br, gzip, zstd, identity)");

    // A conditional request with the weak validator gets a 304 from the stored variant.
    let revalidated = get(&url, &[("accept-encoding", "br"), ("if-none-match", "W/\"c1\"")]).await;
    assert_eq!(revalidated.status, 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_tiny_bodies_no_transform_and_encoded_bodies_are_left_alone() {
    let origin = Origin::start().await;
    let big = "x".repeat(8000);
    let cc = ("cache-control", "max-age=600");
    origin.fixed("/logo.png", Reply::ok(&big, &[("content-type", "image/png"), cc]).sized());
    origin.fixed("/tiny.txt", Reply::ok("tiny", &[("content-type", "text/plain"), cc]).sized());
    origin.fixed(
        "/raw.txt",
        Reply::ok(&big, &[("content-type", "text/plain"), ("cache-control", "max-age=600, no-transform")])
            .sized(),
    );
    origin.fixed(
        "/pre.js",
        Reply::ok(&big, &[("content-type", "application/javascript"), ("content-encoding", "gzip"), cc])
            .sized(),
    );
    let edge = edge(&origin, &[]);
    let base = edge.url("edge http");
    for path in ["/logo.png", "/tiny.txt", "/raw.txt", "/pre.js"] {
        for _ in 0..2 {
            let res = get(&format!("{base}{path}"), &[("accept-encoding", "br, gzip")]).await;
            assert_eq!(res.status, 200);
            let want = if path == "/pre.js" { "gzip" } else { "" };
            assert_eq!(res.header("content-encoding"), want, "{path}");
            assert_eq!(
                res.body.len(),
                if path == "/tiny.txt" { 4 } else { 8000 },
                "{path}: the origin's bytes"
            );
        }
    }
}
