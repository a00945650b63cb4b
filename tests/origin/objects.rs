//! The origin through a real S3 client (`object_store`): objects, metadata, copies, deletes,
//! listings, ranges, conditional GETs and a 100 MiB multipart upload.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
    WriteMultipart,
};

use crate::support;
use crate::support::s3::{
    client, decode_url, encode_path, md5_hex, pattern, private, send_signed, start, xml_texts,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_with_headers_metadata_and_odd_keys() {
    let origin = start(&[private("media")]);
    let s3 = client(&origin.url, "media");

    let mut attrs = Attributes::new();
    attrs.insert(Attribute::ContentType, "image/png".into());
    attrs.insert(Attribute::CacheControl, "public, max-age=600".into());
    attrs.insert(Attribute::ContentDisposition, "attachment; filename=\"a.png\"".into());
    attrs.insert(Attribute::ContentEncoding, "identity".into());
    attrs.insert(Attribute::Metadata("owner".into()), "team-a".into());
    let body = pattern(200_000, 1);
    let path = Path::from("img/a.png");
    let put = s3
        .put_opts(
            &path,
            PutPayload::from(body.clone()),
            PutOptions { attributes: attrs.clone(), ..Default::default() },
        )
        .await
        .expect("put");
    assert_eq!(put.e_tag.as_deref(), Some(format!("\"{}\"", md5_hex(&body)).as_str()), "ETag is the MD5");

    let got = s3.get(&path).await.expect("get");
    assert_eq!(got.meta.size, body.len() as u64);
    assert_eq!(got.attributes, attrs, "content headers and user metadata come back");
    assert_eq!(got.bytes().await.expect("body"), body);

    let head = s3.head(&path).await.expect("head");
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.e_tag, put.e_tag);

    // Keys with spaces, '+', unicode and a long one survive the round trip and list back.
    let long = format!("long/{}", "x".repeat(900));
    let odd = ["with space/file name.txt", "plus+sign", "ünïcødé/✓.txt", long.as_str()];
    for k in odd {
        s3.put(&Path::from(k), PutPayload::from(k.as_bytes().to_vec())).await.expect("put odd key");
    }
    for k in odd {
        let got = s3.get(&Path::from(k)).await.expect("get odd key").bytes().await.expect("body");
        assert_eq!(got.as_ref(), k.as_bytes(), "{k}");
    }
    let mut listed: Vec<String> =
        s3.list(None).map_ok(|m| m.location.to_string()).try_collect().await.expect("list");
    listed.sort();
    let mut want: Vec<String> = odd.iter().map(|k| Path::from(*k).to_string()).collect();
    want.push("img/a.png".into());
    want.sort();
    assert_eq!(listed, want);

    // An empty object is an object.
    let empty = Path::from("empty");
    let put_empty = s3.put(&empty, PutPayload::default()).await.expect("put empty");
    assert_eq!(put_empty.e_tag.as_deref(), Some("\"d41d8cd98f00b204e9800998ecf8427e\""));
    let got = s3.get(&empty).await.expect("get empty");
    assert_eq!(got.meta.size, 0);
    assert!(got.bytes().await.expect("body").is_empty());
    s3.delete(&empty).await.expect("delete empty");

    // CopyObject keeps the body, headers and metadata.
    let copy = Path::from("img/copy.png");
    s3.copy(&path, &copy).await.expect("copy");
    let got = s3.get(&copy).await.expect("get copy");
    assert_eq!(got.attributes, attrs);
    assert_eq!(got.meta.e_tag, put.e_tag, "same body, same MD5");
    assert_eq!(got.bytes().await.expect("body"), body);

    // Overwrite replaces the whole object.
    s3.put(&path, PutPayload::from_static(b"v2")).await.expect("overwrite");
    let got = s3.get(&path).await.expect("get v2");
    assert!(got.attributes.is_empty() || got.attributes.get(&Attribute::CacheControl).is_none());
    assert_eq!(got.bytes().await.expect("body").as_ref(), b"v2");

    // DeleteObject, then DeleteObjects (batch) for the rest.
    s3.delete(&path).await.expect("delete");
    let err = s3.get(&path).await.expect_err("deleted object is gone");
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    let rest: Vec<Path> = s3.list(None).map_ok(|m| m.location).try_collect().await.expect("list");
    assert_eq!(rest.len(), 5);
    let deleted: Vec<Path> = s3
        .delete_stream(futures_util::stream::iter(rest.into_iter().map(Ok)).boxed())
        .try_collect()
        .await
        .expect("batch delete");
    assert_eq!(deleted.len(), 5);
    let left: Vec<_> = s3.list(None).try_collect().await.expect("list");
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paginates_over_2500_keys_with_prefixes_and_offsets() {
    let origin = start(&[private("many")]);
    let s3 = client(&origin.url, "many");
    let keys: Vec<String> = (0..2500).map(|i| format!("dir{}/key-{i:05}", i % 5)).collect();
    futures_util::stream::iter(keys.iter())
        .map(|k| {
            let s3 = &s3;
            async move { s3.put(&Path::from(k.as_str()), PutPayload::from(k.clone().into_bytes())).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("2500 puts");

    // object_store follows continuation tokens; the origin returns at most 1000 keys a page.
    let listed: Vec<String> =
        s3.list(None).map_ok(|m| m.location.to_string()).try_collect().await.expect("list");
    let mut want = keys.clone();
    want.sort();
    assert_eq!(listed.len(), 2500);
    assert_eq!(listed, want, "every key once, in order");

    let under: Vec<_> = s3.list(Some(&Path::from("dir3"))).try_collect().await.expect("list prefix");
    assert_eq!(under.len(), 500);

    let tree = s3.list_with_delimiter(None).await.expect("delimiter");
    let prefixes: Vec<String> = tree.common_prefixes.iter().map(ToString::to_string).collect();
    assert_eq!(prefixes, ["dir0", "dir1", "dir2", "dir3", "dir4"]);
    assert!(tree.objects.is_empty());

    // start-after.
    let offset = Path::from("dir4/key-02000");
    let after: Vec<String> = s3
        .list_with_offset(None, &offset)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("offset");
    assert_eq!(after, want.iter().filter(|k| k.as_str() > "dir4/key-02000").cloned().collect::<Vec<_>>());
}

/// Regression (issue 16.11): one key holding a control character made every listing of its
/// bucket unparseable XML. With `encoding-type=url` (ListObjects v1 and v2,
/// ListMultipartUploads) names come percent-encoded; without it a page holding a name XML 1.0
/// cannot carry is answered URL-encoded anyway, with `<EncodingType>url</EncodingType>`. Every
/// answer is well-formed XML 1.0 and every key round-trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_of_keys_with_control_characters_are_well_formed_xml_and_round_trip() {
    let origin = start(&[private("ctl")]);
    let base = format!("{}/ctl", origin.url);
    let keys = [
        "k/bell\u{7}",
        "k/cr\r\nlf",
        "k/del\u{7f}",
        "k/dir\u{1}/inner",
        "k/esc\u{1b}[31m",
        "k/nul\u{0}",
        "k/plain.txt",
        "k/tab\tnewline\n",
        "k/unit\u{1f}",
        "k/with space+plus%pct",
        "k/\u{FFFF}",
    ];
    for k in keys {
        let r = send_signed(http::Method::PUT, &format!("{base}/{}", encode_path(k)), k.into()).await;
        assert_eq!(r.status(), 200, "PUT {k:?}: {}", r.text().await.unwrap_or_default());
    }
    let get = async |url: String| {
        let r = send_signed(http::Method::GET, &url, Vec::new()).await;
        assert_eq!(r.status(), 200, "{url}");
        r.text().await.expect("body")
    };
    let mut sorted = keys.map(str::to_owned).to_vec();
    sorted.sort();

    // encoding-type=url: v2 and v1, names decode to the stored keys.
    for list in ["list-type=2&", ""] {
        let xml = get(format!("{base}?{list}prefix=k%2F&encoding-type=url")).await;
        assert_eq!(xml_texts(&xml, &["EncodingType"]), ["url"], "{xml}");
        let listed: Vec<String> =
            xml_texts(&xml, &["Contents", "Key"]).iter().map(|k| decode_url(k)).collect();
        assert_eq!(listed, sorted, "{list}");
        assert_eq!(xml_texts(&xml, &["Prefix"]), ["k/"]);
    }
    // A delimiter: the common prefix holding a control character is encoded too.
    let xml = get(format!("{base}?list-type=2&prefix=k%2Fdir&delimiter=%2F&encoding-type=url")).await;
    assert_eq!(xml_texts(&xml, &["CommonPrefixes", "Prefix"]), ["k/dir%01/"], "{xml}");
    // Markers come back encoded and resume where they should.
    let xml = get(format!("{base}?prefix=k%2F&encoding-type=url&max-keys=3")).await;
    let next = decode_url(&xml_texts(&xml, &["NextMarker"])[0]);
    assert_eq!(next, sorted[2]);
    let xml = get(format!("{base}?prefix=k%2F&encoding-type=url&marker={}", encode_path(&next))).await;
    assert_eq!(decode_url(&xml_texts(&xml, &["Marker"])[0]), next);
    assert_eq!(xml_texts(&xml, &["Contents", "Key"]).len(), sorted.len() - 3);

    // No encoding-type: a page of plain names is verbatim; a page holding a control character is
    // URL-encoded and says so.
    let xml = get(format!("{base}?list-type=2&prefix=k%2Fplain")).await;
    assert!(xml_texts(&xml, &["EncodingType"]).is_empty(), "{xml}");
    assert_eq!(xml_texts(&xml, &["Contents", "Key"]), ["k/plain.txt"]);
    let xml = get(format!("{base}?list-type=2&prefix=k%2Fwith")).await;
    assert_eq!(xml_texts(&xml, &["Contents", "Key"]), ["k/with space+plus%pct"], "verbatim, as on S3");
    for list in ["list-type=2&", ""] {
        let xml = get(format!("{base}?{list}prefix=k%2F")).await;
        assert_eq!(xml_texts(&xml, &["EncodingType"]), ["url"], "{xml}");
        let listed: Vec<String> =
            xml_texts(&xml, &["Contents", "Key"]).iter().map(|k| decode_url(k)).collect();
        assert_eq!(listed, sorted, "{list}");
    }

    // Every listed key reads back by its decoded name.
    for k in &sorted {
        assert_eq!(&get(format!("{base}/{}", encode_path(k))).await, k);
    }

    // Any other encoding is refused, as on S3.
    let r =
        send_signed(http::Method::GET, &format!("{base}?list-type=2&encoding-type=base64"), Vec::new()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(support::s3::error_code(&r.text().await.expect("body")).as_deref(), Some("InvalidArgument"));

    // ListMultipartUploads, with and without encoding-type=url.
    let key = "up/esc\u{1b}[0m";
    let r =
        send_signed(http::Method::POST, &format!("{base}/{}?uploads", encode_path(key)), Vec::new()).await;
    assert_eq!(r.status(), 200);
    let created = r.text().await.expect("body");
    let upload_id = xml_texts(&created.replace('\u{1b}', "?"), &["UploadId"]).remove(0);
    for query in ["uploads&encoding-type=url", "uploads"] {
        let xml = get(format!("{base}?{query}")).await;
        assert_eq!(xml_texts(&xml, &["EncodingType"]), ["url"], "{query}: {xml}");
        let listed: Vec<String> = xml_texts(&xml, &["Upload", "Key"]).iter().map(|k| decode_url(k)).collect();
        assert_eq!(listed, [key], "{query}");
        assert_eq!(xml_texts(&xml, &["Upload", "UploadId"]), std::slice::from_ref(&upload_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_and_conditional_gets() {
    let origin = start(&[private("cond")]);
    let s3 = client(&origin.url, "cond");
    let path = Path::from("doc.txt");
    let body = b"0123456789abcdefghij".to_vec();
    let put = s3.put(&path, PutPayload::from(body.clone())).await.expect("put");
    let etag = put.e_tag.clone().expect("etag");
    let head = s3.head(&path).await.expect("head");

    // Ranges.
    assert_eq!(s3.get_range(&path, 2..5).await.expect("range").as_ref(), b"234");
    let get = |range| GetOptions { range: Some(range), ..Default::default() };
    let r = s3.get_opts(&path, get(GetRange::Suffix(4))).await.expect("suffix");
    assert_eq!(r.range, 16..20);
    assert_eq!(r.bytes().await.expect("body").as_ref(), b"ghij");
    let r = s3.get_opts(&path, get(GetRange::Offset(18))).await.expect("offset");
    assert_eq!(r.bytes().await.expect("body").as_ref(), b"ij");
    let err = s3.get_opts(&path, get(GetRange::Offset(20))).await.expect_err("range past the end");
    assert!(err.to_string().contains("416") || err.to_string().contains("InvalidRange"), "{err}");

    // Conditions.
    let r = s3.get_opts(&path, GetOptions { if_match: Some(etag.clone()), ..Default::default() });
    assert_eq!(r.await.expect("If-Match hit").bytes().await.expect("body"), body);
    let r = s3.get_opts(&path, GetOptions { if_match: Some("\"nope\"".into()), ..Default::default() }).await;
    assert!(matches!(r, Err(object_store::Error::Precondition { .. })), "If-Match miss: {r:?}");
    let r = s3.get_opts(&path, GetOptions { if_none_match: Some(etag.clone()), ..Default::default() }).await;
    assert!(matches!(r, Err(object_store::Error::NotModified { .. })), "If-None-Match hit: {r:?}");
    let r = s3.get_opts(&path, GetOptions { if_none_match: Some("\"other\"".into()), ..Default::default() });
    assert_eq!(r.await.expect("If-None-Match miss").bytes().await.expect("body"), body);
    let r =
        s3.get_opts(&path, GetOptions { if_modified_since: Some(head.last_modified), ..Default::default() });
    assert!(
        matches!(r.await, Err(object_store::Error::NotModified { .. })),
        "not modified since its own time"
    );
    let before = head.last_modified - Duration::from_secs(60);
    let r = s3.get_opts(&path, GetOptions { if_modified_since: Some(before), ..Default::default() }).await;
    assert!(r.is_ok(), "modified since a minute before: {r:?}");
    let err = s3
        .get_opts(&path, GetOptions { if_unmodified_since: Some(before), ..Default::default() })
        .await
        .expect_err("IUS");
    assert!(matches!(err, object_store::Error::Precondition { .. }), "{err}");

    // The same over plain HTTP through a presigned URL: exact statuses and headers.
    use object_store::signer::Signer;
    let url = s3.signed_url(http::Method::GET, &path, Duration::from_secs(300)).await.expect("presign");
    let http = reqwest::Client::new();
    let r = http.get(url.clone()).header("range", "bytes=5-7").send().await.expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 5-7/20");
    assert_eq!(r.headers()["content-length"], "3");
    assert_eq!(r.bytes().await.expect("body").as_ref(), b"567");
    // If-Range: the range only if the validator still names this version.
    let r = http
        .get(url.clone())
        .header("range", "bytes=5-7")
        .header("if-range", &etag)
        .send()
        .await
        .expect("if-range");
    assert_eq!(r.status(), 206);
    let r = http
        .get(url.clone())
        .header("range", "bytes=5-7")
        .header("if-range", "\"old\"")
        .send()
        .await
        .expect("if-range");
    assert_eq!(r.status(), 200, "a stale If-Range gets the whole object");
    assert_eq!(r.bytes().await.expect("body"), body);
    let r = http.get(url.clone()).header("range", "bytes=50-").send().await.expect("416");
    assert_eq!(r.status(), 416);
    assert_eq!(support::s3::error_code(&r.text().await.expect("body")).as_deref(), Some("InvalidRange"));
    let r = http.get(url.clone()).header("if-none-match", &etag).send().await.expect("304");
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.headers().contains_key("last-modified"));
    assert!(r.bytes().await.expect("body").is_empty(), "a 304 has no body");
    let r = http.get(url.clone()).send().await.expect("200");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "20");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert!(r.headers().contains_key("last-modified"));
    let r = http.head(url).send().await;
    // A presigned URL is for one method: HEAD with a GET signature is refused.
    assert_eq!(r.expect("head").status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_one_key_end_with_one_whole_object() {
    let origin = start(&[private("race")]);
    let s3 = client(&origin.url, "race");
    let path = Path::from("contended");
    let bodies: Vec<Vec<u8>> = (0..8).map(|i| pattern(2 * 1024 * 1024 + i, i as u64 + 10)).collect();
    let results =
        futures_util::future::join_all(bodies.iter().map(|b| s3.put(&path, PutPayload::from(b.clone()))))
            .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let got = s3.get(&path).await.expect("get");
    let etag = got.meta.e_tag.clone().expect("etag");
    let data = got.bytes().await.expect("body");
    let winner =
        bodies.iter().position(|b| b.as_slice() == data.as_ref()).expect("the body is one whole write");
    assert_eq!(etag, format!("\"{}\"", md5_hex(&bodies[winner])), "the ETag belongs to that body");
    let no_temp = support::s3::files_under(&origin.data)
        .iter()
        .all(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".tmp.")));
    assert!(no_temp, "no temporary file is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_of_100_mib_streams_with_bounded_memory() {
    let origin = start(&[private("big")]);
    let s3 = client(&origin.url, "big");
    const PART: usize = 10 * 1024 * 1024;
    let data = pattern(100 * 1024 * 1024, 7);
    let path = Path::from("videos/big.bin");
    let upload = s3.put_multipart(&path).await.expect("create upload");
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    for chunk in data.chunks(1024 * 1024) {
        writer.wait_for_capacity(2).await.expect("capacity");
        writer.write(chunk);
    }
    let done = writer.finish().await.expect("complete");

    // ETag: MD5 of the concatenated part MD5s, then "-10".
    let mut md5s = Vec::new();
    for part in data.chunks(PART) {
        md5s.extend(hex::decode(md5_hex(part)).expect("hex"));
    }
    let want = format!("\"{}-10\"", md5_hex(&md5s));
    assert_eq!(done.e_tag.as_deref(), Some(want.as_str()));

    // Stream it back and compare without holding a second copy.
    let got = s3.get(&path).await.expect("get");
    assert_eq!(got.meta.size, data.len() as u64);
    assert_eq!(got.meta.e_tag.as_deref(), Some(want.as_str()));
    let mut stream = got.into_stream();
    let mut offset = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        assert_eq!(&data[offset..offset + chunk.len()], chunk.as_ref(), "bytes at {offset}");
        offset += chunk.len();
    }
    assert_eq!(offset, data.len());

    // 100 MiB went in and out; the origin never held it in memory.
    let status = std::fs::read_to_string(format!("/proc/{}/status", origin.proc.pid())).expect("proc status");
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    eprintln!("origin peak RSS after a 100 MiB upload and download: {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "origin peak RSS {peak_kib} KiB");
}

#[test]
fn sigterm_stops_the_origin_cleanly_and_data_survives_a_restart() {
    let dir = std::sync::Arc::new(support::tempdir());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut origin = support::s3::start_in(dir.clone(), &[private("keep")], &Default::default());
    let s3 = client(&origin.url, "keep");
    rt.block_on(s3.put(&Path::from("a"), PutPayload::from_static(b"kept"))).expect("put");
    origin.proc.signal("TERM");
    assert_eq!(origin.proc.wait_exit(Duration::from_secs(15)), Some(0), "exit code after SIGTERM");

    let origin = support::s3::start_in(dir, &[private("keep")], &Default::default());
    let s3 = client(&origin.url, "keep");
    let body =
        rt.block_on(async { s3.get(&Path::from("a")).await?.bytes().await }).expect("get after restart");
    assert_eq!(body.as_ref(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_over_5_gib_is_refused_before_it_is_read() {
    use object_store::signer::Signer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = start(&[private("limits")]);
    let s3 = client(&origin.url, "limits");
    let url = s3
        .signed_url(http::Method::PUT, &Path::from("huge.bin"), Duration::from_secs(60))
        .await
        .expect("sign");
    let target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let host = url.authority().to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&host).await.expect("connect");
    let head = format!("PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 6442450944\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.expect("send head");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>EntityTooLarge</Code>"), "{answer}");
    assert!(s3.head(&Path::from("huge.bin")).await.is_err(), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_creates_are_atomic_exactly_one_of_many_wins() {
    use object_store::{PutMode, UpdateVersion};
    let origin = start(&[private("locks")]);
    let s3 = client(&origin.url, "locks");
    let path = Path::from("leader.lock");
    let create = || PutOptions { mode: PutMode::Create, ..Default::default() };
    let attempts = futures_util::future::join_all(
        (0..8u8).map(|i| s3.put_opts(&path, PutPayload::from(vec![i; 1024 * 1024]), create())),
    )
    .await;
    let winners: Vec<_> = attempts.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{attempts:?}");
    for r in attempts.iter().filter(|r| r.is_err()) {
        assert!(matches!(r, Err(object_store::Error::AlreadyExists { .. })), "{r:?}");
    }
    let winner_etag = winners[0].as_ref().expect("winner").e_tag.clone();
    assert_eq!(s3.head(&path).await.expect("head").e_tag, winner_etag, "the stored object is the winner's");

    // If-Match: an update against a stale ETag is refused, against the current one accepted.
    let stale = UpdateVersion { e_tag: Some("\"0123\"".into()), version: None };
    let r = s3
        .put_opts(
            &path,
            PutPayload::from_static(b"x"),
            PutOptions { mode: PutMode::Update(stale), ..Default::default() },
        )
        .await;
    assert!(matches!(r, Err(object_store::Error::Precondition { .. })), "{r:?}");
    let current = UpdateVersion { e_tag: winner_etag, version: None };
    let r = s3
        .put_opts(
            &path,
            PutPayload::from_static(b"y"),
            PutOptions { mode: PutMode::Update(current), ..Default::default() },
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    let body = s3.get(&path).await.expect("get").bytes().await.expect("body");
    assert_eq!(body.as_ref(), b"y");
}
