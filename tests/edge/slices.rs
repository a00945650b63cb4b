//! Large objects in slices (`[[edge.sites]] slice = true`, `cache.slice_size`): ranges fetch
//! and store only the slices they cover, later ranges combine stored slices with fetched ones,
//! whole objects are assembled slice by slice in bounded memory, validators must match to
//! combine, purges remove every slice, and origins that ignore `Range` still work.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::support::edge::{edge_with_config, purge};
use crate::support::http::{Got, get};
use crate::support::origin::{Origin, RangeSupport, Reply};
use crate::support::process::Proc;

const KIB: u64 = 1024;
const MIB: u64 = 1 << 20;
/// The slice size of these tests' edges.
const SLICE: u64 = 64 * KIB;

/// `len` bytes where byte `i` is `(i * 7 + seed) % 251`: every slice differs from its neighbours.
fn object(len: u64, seed: u64) -> Bytes {
    Bytes::from((0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect::<Vec<u8>>())
}

/// An origin serving `body` under `path` with byte ranges (`support`) and `headers`.
fn serve(
    origin: &Origin,
    path: &str,
    body: Bytes,
    headers: &'static [(&'static str, &'static str)],
    support: RangeSupport,
) {
    origin.route(path, move |seen, _| Reply::ranged(seen, &body, headers, support));
}

/// An edge whose one site slices, with `extra` lines in `[edge.cache]`.
fn sliced_edge(origin: &Origin, cache: &str) -> (Proc, tempfile::TempDir) {
    edge_with_config(
        origin,
        &format!(
            "[edge.cache]\nslice_size = \"64KiB\"\n{cache}\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\nslice = true\n"
        ),
    )
}

/// The `Range` values the origin saw for `path`, in order.
fn ranges_seen(origin: &Origin, path: &str) -> Vec<String> {
    origin.seen(path).iter().map(|s| s.header("range").to_owned()).collect()
}

/// The origin's `Range` for slice `i` of an object of `len` bytes.
fn slice_range(i: u64) -> String {
    format!("bytes={}-{}", i * SLICE, (i + 1) * SLICE - 1)
}

async fn range(url: &str, value: &str) -> Got {
    get(url, &[("range", value)]).await
}

const V1: &[(&str, &str)] =
    &[("etag", "\"v1\""), ("cache-control", "max-age=3600"), ("content-type", "video/mp4")];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_middle_range_fetches_only_its_slices_and_a_later_overlap_only_the_missing_ones() {
    let origin = Origin::start().await;
    let body = object(MIB, 0);
    serve(&origin, "/slices/mid.mp4", body.clone(), V1, RangeSupport::Honour);
    let (edge, _dir) = sliced_edge(&origin, "");
    let url = format!("{}/slices/mid.mp4", edge.url("edge http"));

    // Bytes 200000..=300000 lie in slices 3 and 4.
    let got = range(&url, "bytes=200000-300000").await;
    assert_eq!(got.status, 206, "{}", edge.stderr());
    assert_eq!(got.header("content-range"), format!("bytes 200000-300000/{MIB}"));
    assert_eq!(got.body, body.slice(200000..=300000));
    assert_eq!(got.header("etag"), "\"v1\"");
    assert!(
        got.own_cache().contains("fwd=uri-miss") && got.own_cache().contains("stored"),
        "{}",
        got.cache()
    );
    assert_eq!(ranges_seen(&origin, "/slices/mid.mp4"), [slice_range(3), slice_range(4)]);

    // 250000..=400000 covers slices 3 to 6: 3 and 4 are stored, only 5 and 6 are fetched.
    let got = range(&url, "bytes=250000-400000").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, body.slice(250000..=400000));
    assert!(got.own_cache().contains("fwd=partial"), "{}", got.cache());
    assert_eq!(
        ranges_seen(&origin, "/slices/mid.mp4"),
        [slice_range(3), slice_range(4), slice_range(5), slice_range(6)]
    );

    // Everything stored now: a hit, and the origin sent only the 4 slices, 256 KiB in all.
    let got = range(&url, "bytes=197000-393215").await;
    assert!(got.hit(), "{}", got.cache());
    assert_eq!(got.body, body.slice(197000..=393215));
    assert_eq!(origin.hits("/slices/mid.mp4"), 4);
    let sent: u64 = origin
        .seen("/slices/mid.mp4")
        .iter()
        .map(|s| {
            let r = s.header("range").trim_start_matches("bytes=").to_owned();
            let (a, b) = r.split_once('-').unwrap();
            b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1
        })
        .sum();
    assert_eq!(sent, 4 * SLICE);

    // A suffix range needs the length first: slice 0 tells it, then the last slice.
    let got = range(&url, "bytes=-100").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, body.slice((MIB - 100) as usize..));
    assert_eq!(got.header("content-range"), format!("bytes {}-{}/{MIB}", MIB - 100, MIB - 1));
    let seen = ranges_seen(&origin, "/slices/mid.mp4");
    assert_eq!(seen[4..], [slice_range(0), slice_range(15)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_get_is_assembled_from_slices_and_then_served_from_them() {
    let origin = Origin::start().await;
    // Not a multiple of the slice size: the last slice is short.
    let len = MIB + 1000;
    let body = object(len, 3);
    serve(&origin, "/slices/whole.bin", body.clone(), V1, RangeSupport::Honour);
    let (edge, _dir) = sliced_edge(&origin, "");
    let url = format!("{}/slices/whole.bin", edge.url("edge http"));

    let got = get(&url, &[]).await;
    assert_eq!(got.status, 200, "{}", edge.stderr());
    assert_eq!(got.header("content-length"), len.to_string());
    assert_eq!(got.header("accept-ranges"), "bytes");
    assert!(got.header("content-range").is_empty());
    assert_eq!(Md5::digest(&got.body), Md5::digest(&body));
    let slices = len.div_ceil(SLICE);
    let mut want: Vec<String> = (0..slices - 1).map(slice_range).collect();
    want.push(slice_range(slices - 1));
    assert_eq!(ranges_seen(&origin, "/slices/whole.bin"), want);

    let again = get(&url, &[]).await;
    assert!(again.hit(), "{}", again.cache());
    assert_eq!(Md5::digest(&again.body), Md5::digest(&body));
    // HEAD: the head of the whole object, from the stored slice 0.
    let res = crate::support::http::client().head(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], len.to_string().as_str());
    assert_eq!(origin.hits("/slices/whole.bin"), slices as usize);

    // A range the client makes conditional on another version gets the whole object.
    let stale = get(&url, &[("range", "bytes=0-9"), ("if-range", "\"v0\"")]).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body.len() as u64, len);
    let fresh = get(&url, &[("range", "bytes=0-9"), ("if-range", "\"v1\"")]).await;
    assert_eq!((fresh.status, fresh.body.clone()), (206, body.slice(0..10)));
    // Conditional requests are answered from the stored head.
    let not_modified = get(&url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(not_modified.status, 304);
    // Past the end: 416 with the length.
    let beyond = range(&url, &format!("bytes={}-", len + 10)).await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), format!("bytes */{len}"));
    assert_eq!(origin.hits("/slices/whole.bin"), slices as usize, "no more origin requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_etag_drops_the_stored_slices_instead_of_mixing_versions() {
    let origin = Origin::start().await;
    let (old, new) = (object(MIB, 0), object(MIB, 100));
    let (o, n) = (old.clone(), new.clone());
    origin.route("/slices/changing.bin", move |seen, count| {
        // The first request gets version 1, every later one version 2.
        if count == 1 {
            Reply::ranged(seen, &o, V1, RangeSupport::Honour)
        } else {
            let v2: &'static [(&str, &str)] = &[("etag", "\"v2\""), ("cache-control", "max-age=3600")];
            Reply::ranged(seen, &n, v2, RangeSupport::Honour)
        }
    });
    let (edge, _dir) = sliced_edge(&origin, "");
    let url = format!("{}/slices/changing.bin", edge.url("edge http"));
    let got = range(&url, &format!("bytes={}-{}", 3 * SLICE, 3 * SLICE + 99)).await;
    assert_eq!((got.status, got.header("etag")), (206, "\"v1\"".to_owned()));

    // Slice 3 is stored as v1; slice 4 comes back as v2: the v1 slice is dropped and fetched
    // again, and the answer is v2 throughout.
    let got = range(&url, &format!("bytes={}-{}", 3 * SLICE, 5 * SLICE - 1)).await;
    assert_eq!(got.status, 206, "{}", edge.stderr());
    assert_eq!(got.header("etag"), "\"v2\"");
    assert_eq!(got.body, new.slice((3 * SLICE) as usize..(5 * SLICE) as usize));
    assert_eq!(
        ranges_seen(&origin, "/slices/changing.bin"),
        [slice_range(3), slice_range(4), slice_range(3)]
    );
    let again = range(&url, &format!("bytes={}-{}", 3 * SLICE, 5 * SLICE - 1)).await;
    assert!(again.hit(), "{}", again.cache());
    assert_eq!(again.body, new.slice((3 * SLICE) as usize..(5 * SLICE) as usize));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purges_by_url_and_tag_remove_every_slice() {
    let origin = Origin::start().await;
    let body = object(256 * KIB, 9);
    let tagged: &'static [(&str, &str)] =
        &[("etag", "\"v1\""), ("cache-control", "max-age=3600"), ("surrogate-key", "videos")];
    serve(&origin, "/slices/purge.bin", body.clone(), tagged, RangeSupport::Honour);
    let (edge, _dir) = sliced_edge(&origin, "");
    let url = format!("{}/slices/purge.bin", edge.url("edge http"));

    let got = get(&url, &[]).await;
    assert_eq!(got.body, body);
    assert_eq!(origin.hits("/slices/purge.bin"), 4);
    assert!(get(&url, &[]).await.hit());
    assert_eq!(purge(&edge, serde_json::json!({"files": ["http://127.0.0.1/slices/purge.bin"]})).await, 4);
    let got = get(&url, &[]).await;
    assert!(!got.hit(), "{}", got.cache());
    assert_eq!(got.body, body);
    assert_eq!(origin.hits("/slices/purge.bin"), 8);

    assert_eq!(purge(&edge, serde_json::json!({"tags": ["videos"]})).await, 4);
    let got = range(&url, "bytes=0-9").await;
    assert!(got.own_cache().contains("fwd=uri-miss"), "{}", got.cache());
    assert_eq!(origin.hits("/slices/purge.bin"), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origins_that_ignore_range_or_hide_the_length_get_the_whole_object_path() {
    let origin = Origin::start().await;
    let body = object(300 * KIB, 5);
    serve(&origin, "/slices/plain.bin", body.clone(), V1, RangeSupport::Ignore);
    serve(&origin, "/slices/nolength.bin", body.clone(), V1, RangeSupport::UnknownLength);
    let (edge, _dir) = sliced_edge(&origin, "");
    // An origin that ignores `Range` answers the slice request whole: that answer is the
    // object's fill, as on any site, so it is asked once.
    // One that hides the length (`bytes 0-65535/*`) gets a second request without `Range`.
    for (path, asked) in [("/slices/plain.bin", 1), ("/slices/nolength.bin", 2)] {
        let url = format!("{}{path}", edge.url("edge http"));
        let got = range(&url, "bytes=100000-100009").await;
        assert_eq!(got.status, 206, "{path}: {}", edge.stderr());
        assert_eq!(got.body, body.slice(100000..=100009), "{path}");
        assert_eq!(origin.hits(path), asked, "{path}");
        assert_eq!(ranges_seen(&origin, path)[0], slice_range(1), "{path}");
        // Then the object is stored whole, as on a site without slices.
        let whole = get(&url, &[]).await;
        assert!(whole.hit(), "{path}: {}", whole.cache());
        assert_eq!(whole.body, body, "{path}");
        assert_eq!(origin.hits(path), asked, "{path}");
    }
    assert_eq!(ranges_seen(&origin, "/slices/nolength.bin")[1], "", "the fallback asks for the whole object");

    // Errors too: one origin request, the answer as the origin gave it.
    origin.fixed(
        "/slices/missing.bin",
        Reply::status(404, "no such object", &[("cache-control", "max-age=60")]),
    );
    let url = format!("{}/slices/missing.bin", edge.url("edge http"));
    let got = range(&url, "bytes=0-10").await;
    assert_eq!((got.status, got.text()), (404, "no such object".to_owned()));
    assert_eq!(origin.hits("/slices/missing.bin"), 1);
    assert!(get(&url, &[]).await.hit());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_each_slice_fetch() {
    let origin = Origin::start().await;
    let body = object(512 * KIB, 1);
    serve(&origin, "/slices/shared.bin", body.clone(), V1, RangeSupport::Honour);
    let (edge, _dir) = sliced_edge(&origin, "");
    let url = format!("{}/slices/shared.bin", edge.url("edge http"));
    let gets: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { get(&url, &[]).await }
            })
        })
        .collect();
    for g in gets {
        assert_eq!(g.await.unwrap().body, body);
    }
    // 8 slices, each fetched once however many clients wanted it at the same time (a client
    // that came late finds it stored).
    assert_eq!(origin.hits("/slices/shared.bin"), 8);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sliced_object_larger_than_the_cache_streams_in_bounded_memory() {
    let origin = Origin::start().await;
    let len = 96 * MIB;
    let body = object(len, 11);
    serve(&origin, "/slices/huge.bin", body.clone(), V1, RangeSupport::Honour);
    // 1 MiB slices, a 16 MiB cache: the object is 6 times the cache (and too large to store).
    let (edge, _dir) = edge_with_config(
        &origin,
        "[edge.cache]\nsize = \"16MiB\"\nmax_object_size = \"16MiB\"\nslice_size = \"1MiB\"\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\nslice = true\n",
    );
    let url = format!("{}/slices/huge.bin", edge.url("edge http"));
    let idle = rss_kib(edge.pid(), "VmRSS:");
    let mut res = crate::support::http::client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut hash = Md5::new();
    let mut n = 0u64;
    while let Some(chunk) = res.chunk().await.unwrap() {
        n += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(n, len);
    assert_eq!(hash.finalize(), Md5::digest(&body));
    assert_eq!(origin.hits("/slices/huge.bin"), 96);
    let peak = rss_kib(edge.pid(), "VmHWM:");
    let grew = peak.saturating_sub(idle) / 1024;
    assert!(grew < 32, "the edge's peak RSS grew by {grew} MiB for a 96 MiB object");
    eprintln!("sliced 96 MiB object: peak RSS {grew} MiB above idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_origin_claiming_a_huge_length_costs_no_more_than_the_slices_read() {
    let origin = Origin::start().await;
    let slice = object(SLICE, 2);
    // Slice 0 of an "object" of 10^15 bytes; every other range is refused.
    origin.route("/slices/liar.bin", move |seen, _| {
        if seen.header("range") == slice_range(0) {
            let mut reply = Reply::status(206, "", V1)
                .parts(vec![crate::support::origin::Part::Data(slice.clone())])
                .sized();
            reply.headers.push(("content-range".into(), format!("bytes 0-{}/1000000000000000", SLICE - 1)));
            reply
        } else {
            Reply::status(416, "", &[("content-range", "bytes */65536")]).sized()
        }
    });
    let (edge, _dir) = sliced_edge(&origin, "");
    let url = format!("{}/slices/liar.bin", edge.url("edge http"));
    let got = range(&url, "bytes=0-99").await;
    assert_eq!(got.status, 206, "{}", edge.stderr());
    assert_eq!(got.header("content-range"), "bytes 0-99/1000000000000000");
    assert_eq!(got.body, object(SLICE, 2).slice(0..100));
    // Far over `max_object_size`, so nothing is stored. The whole "object": slice 0 again,
    // then the origin refuses slice 1 and the response is cut short: never a 200 that looks
    // complete, and no slice is asked for before the client gets to it.
    let res = crate::support::http::client().get(&url).send().await.unwrap();
    let status = res.status();
    let body = res.bytes().await;
    assert!(status == 200 && body.is_err(), "{status} {body:?}");
    assert_eq!(ranges_seen(&origin, "/slices/liar.bin"), [slice_range(0), slice_range(0), slice_range(1)]);
}
