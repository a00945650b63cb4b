//! Large objects and the disk tier: a body larger than an eighth of the memory tier is written
//! to disk as it streams to the client and served back from its file block by block, whole
//! or in ranges, without the edge ever holding it in memory; a fill cut short by SIGKILL
//! leaves no object behind.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::sync::Semaphore;

use crate::support::edge::edge_with_config;
use crate::support::http::{Got, client, get, metric};
use crate::support::origin::{Origin, Part, Reply};
use crate::support::poll::until;
use crate::support::process::{Proc, tempdir};

const MIB: usize = 1 << 20;

/// `len` bytes that differ at every offset a wrong seek could land on.
fn object(len: usize, seed: u32) -> Bytes {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    Bytes::from(
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect::<Vec<_>>(),
    )
}

/// An edge with a memory tier of `memory`, a 512 MiB disk tier in `dir` and objects of up to
/// 256 MiB.
fn large_edge(origin: &Origin, dir: &Path, memory: &str) -> (Proc, tempfile::TempDir) {
    let config = format!(
        "[edge.cache]\nsize = \"{memory}\"\nmax_object_size = \"256MiB\"\n\
         [edge.cache.disk]\npath = \"{}\"\nsize = \"512MiB\"\n\
         [[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n",
        dir.display()
    );
    edge_with_config(origin, &config)
}

/// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`).
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// Resets the peak resident size of `pid` to its current size (Linux `clear_refs`), so that
/// the next `VmHWM` is the peak of what follows; false where the kernel does not allow it.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn object_files(dir: &Path, sub: &str) -> Vec<PathBuf> {
    let walk = |p: &Path| std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path());
    match sub {
        "tmp" => walk(&dir.join("tmp")).collect(),
        _ => walk(&dir.join("objects")).flat_map(|d| walk(&d).collect::<Vec<_>>()).collect(),
    }
}

fn from_disk(got: &Got) -> bool {
    got.hit() && got.own_cache().contains("detail=disk")
}

async fn metrics(edge: &Proc) -> String {
    client().get(format!("{}/metrics", edge.url("edge admin"))).send().await.unwrap().text().await.unwrap()
}

/// GETs `url` and hashes the body as it arrives (the test holds no copy of it either).
async fn fetch_hashed(url: &str, range: Option<&str>) -> (u16, reqwest::header::HeaderMap, u64, Vec<u8>) {
    let mut req = client().get(url);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let mut res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let (mut hash, mut n) = (Md5::new(), 0u64);
    while let Some(chunk) = res.chunk().await.unwrap() {
        n += chunk.len() as u64;
        hash.update(&chunk);
    }
    (status, headers, n, hash.finalize().to_vec())
}

fn own_cache(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("cache-status").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// A 64 MiB object through an 8 MiB memory tier: the first request streams it (and writes it
/// to disk), the second is a hit from disk, a range from its middle too; the edge's peak
/// resident memory grows by far less than the object during the fill and during the hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_object_streams_to_disk_and_back_in_bounded_memory() {
    let origin = Origin::start().await;
    let len = 64 * MIB;
    let body = object(len, 7);
    let cc = [("cache-control", "max-age=300"), ("etag", "\"big\""), ("content-type", "video/mp4")];
    origin.fixed("/disk/large/big.mp4", Reply::ok("", &cc).parts(vec![Part::Data(body.clone())]).sized());
    let dir = tempdir();
    let (edge, _config) = large_edge(&origin, dir.path(), "8MiB");
    let url = format!("{}/disk/large/big.mp4", edge.url("edge http"));
    let pid = edge.pid();
    let want = Md5::digest(&body).to_vec();

    let idle = memory(pid, "VmRSS:");
    let (status, headers, n, hash) = fetch_hashed(&url, None).await;
    assert_eq!((status, n), (200, len as u64));
    assert_eq!(hash, want, "the first answer is the object");
    assert!(!own_cache(&headers).contains("hit"), "{}", own_cache(&headers));
    let fill_growth = memory(pid, "VmHWM:").saturating_sub(idle);
    assert!(
        fill_growth < len as u64 / 2,
        "the edge's peak RSS grew by {} MiB while a {} MiB object streamed through",
        fill_growth >> 20,
        len >> 20
    );
    // On disk as one file, and not in memory.
    assert_eq!(object_files(dir.path(), "objects").len(), 1);
    let text = metrics(&edge).await;
    assert!(metric(&text, "stratus_edge_cache_bytes{tier=\"memory\"}") < (8 * MIB) as f64, "{text}");

    let reset = reset_peak(pid);
    let before_hit = memory(pid, if reset { "VmHWM:" } else { "VmRSS:" });
    let (status, headers, n, hash) = fetch_hashed(&url, None).await;
    assert_eq!((status, n), (200, len as u64));
    assert_eq!(hash, want, "the hit is the object");
    assert!(own_cache(&headers).contains("hit") && own_cache(&headers).contains("detail=disk"));
    let hit_growth = memory(pid, "VmHWM:").saturating_sub(before_hit);
    assert!(hit_growth < len as u64 / 2, "the peak RSS grew by {} MiB during a disk hit", hit_growth >> 20);
    assert_eq!(origin.hits("/disk/large/big.mp4"), 1);

    // A range in the middle, across block boundaries, read from the file.
    let (a, b) = (30_000_001usize, 31_234_567usize);
    let got = get(&url, &[("range", &format!("bytes={a}-{b}"))]).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-range"), format!("bytes {a}-{b}/{len}"));
    assert!(got.body == body.slice(a..=b), "{} bytes, not the range", got.body.len());
    assert!(from_disk(&got), "{}", got.cache());
    // Two ranges: multipart, each part cut from the file.
    let got = get(&url, &[("range", "bytes=0-99,50000000-50000099")]).await;
    assert_eq!(got.status, 206);
    assert!(got.header("content-type").starts_with("multipart/byteranges"));
    let find = |part: &[u8]| got.body.windows(part.len()).any(|w| w == part);
    assert!(find(&body[..100]) && find(&body[50_000_000..50_000_100]));
    // Conditional requests and HEAD need no body.
    let got = get(&url, &[("if-none-match", "\"big\"")]).await;
    assert_eq!(got.status, 304);
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    assert_eq!(origin.hits("/disk/large/big.mp4"), 1);
    eprintln!(
        "64 MiB object, 8 MiB memory tier: peak RSS +{} MiB during the fill, +{} MiB during the disk hit",
        fill_growth >> 20,
        hit_growth >> 20
    );
}

/// A body without `Content-Length` that outgrows the memory tier's share on the way goes to
/// disk too, including what arrived before it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunked_body_that_outgrows_memory_is_written_to_disk_whole() {
    let origin = Origin::start().await;
    let body = object(24 * MIB, 3);
    let parts = body.chunks(MIB).map(|c| Part::Data(body.slice_ref(c))).collect();
    origin.fixed("/disk/large/chunked", Reply::ok("", &[("cache-control", "max-age=300")]).parts(parts));
    let dir = tempdir();
    let (edge, _config) = large_edge(&origin, dir.path(), "8MiB");
    let url = format!("{}/disk/large/chunked", edge.url("edge http"));
    let first = get(&url, &[]).await;
    assert!(first.body == body && !first.hit(), "{} bytes, {}", first.body.len(), first.cache());
    let again = get(&url, &[]).await;
    assert!(again.body == body, "{} bytes", again.body.len());
    assert!(from_disk(&again), "{}", again.cache());
    assert_eq!(origin.hits("/disk/large/chunked"), 1);
}

/// SIGKILL while a large body is being written to disk: the partial file is in `tmp/`, never
/// among the objects; after a restart it is gone, the object is fetched again, served whole
/// and then from disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_during_a_streaming_fill_leaves_no_partial_object() {
    let origin = Origin::start().await;
    let body = object(32 * MIB, 5);
    let gate = Arc::new(Semaphore::new(0));
    let (served, held) = (body.clone(), gate.clone());
    origin.route("/disk/large/killed", move |_, n| {
        let reply = Reply::ok("", &[("cache-control", "max-age=300")]);
        if n == 1 {
            // Half the body, then nothing until the edge is gone.
            let half = served.len() / 2;
            reply.parts(vec![Part::Data(served.slice(..half)), Part::Gate(held.clone()), Part::Reset])
        } else {
            reply.parts(vec![Part::Data(served.clone())]).sized()
        }
    });
    let dir = tempdir();
    let (mut edge, config) = large_edge(&origin, dir.path(), "8MiB");
    let url = format!("{}/disk/large/killed", edge.url("edge http"));
    let mut res = client().get(&url).send().await.unwrap();
    let mut got = 0;
    while got < body.len() / 4 {
        got += res.chunk().await.unwrap().unwrap().len();
    }
    until("a partial file in tmp/", Duration::from_secs(20), || async {
        let sizes: u64 =
            object_files(dir.path(), "tmp").iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
        (sizes >= MIB as u64).then_some(())
    })
    .await;
    assert!(object_files(dir.path(), "objects").is_empty(), "nothing complete yet");
    edge.kill();
    drop(res);
    gate.add_permits(1);
    drop(config);

    let (edge, _config) = large_edge(&origin, dir.path(), "8MiB");
    assert!(object_files(dir.path(), "tmp").is_empty(), "partial writes are removed on start");
    assert!(object_files(dir.path(), "objects").is_empty());
    let url = format!("{}/disk/large/killed", edge.url("edge http"));
    let got = get(&url, &[]).await;
    assert!(got.body == body && !got.hit(), "{} bytes, {}", got.body.len(), got.cache());
    let again = get(&url, &[]).await;
    assert!(again.body == body && from_disk(&again), "{} bytes, {}", again.body.len(), again.cache());
    assert_eq!(origin.hits("/disk/large/killed"), 2);
}

/// A body cut short by the origin leaves no file, and the next request fetches it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_body_cut_short_is_not_stored() {
    let origin = Origin::start().await;
    let body = object(16 * MIB, 9);
    let served = body.clone();
    origin.route("/disk/large/cut", move |_, n| {
        let reply = Reply::ok("", &[("cache-control", "max-age=300")]);
        if n == 1 {
            reply.parts(vec![Part::Data(served.slice(..10 * MIB)), Part::Reset])
        } else {
            reply.parts(vec![Part::Data(served.clone())]).sized()
        }
    });
    let dir = tempdir();
    let (edge, _config) = large_edge(&origin, dir.path(), "8MiB");
    let url = format!("{}/disk/large/cut", edge.url("edge http"));
    let cut = client().get(&url).send().await.unwrap().bytes().await;
    assert!(cut.is_err(), "a truncated body is never presented as complete");
    until("the partial file removed", Duration::from_secs(20), || async {
        object_files(dir.path(), "tmp").is_empty().then_some(())
    })
    .await;
    assert!(object_files(dir.path(), "objects").is_empty());
    let got = get(&url, &[]).await;
    assert!(got.body == body && !got.hit(), "{} bytes, {}", got.body.len(), got.cache());
    assert_eq!(origin.hits("/disk/large/cut"), 2);
}

/// A flipped byte in a large object's body fails its block's checksum: the response is cut
/// (never the wrong bytes as a complete body), the file is dropped, and the next request is a
/// miss served whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_in_a_large_file_is_never_served() {
    let origin = Origin::start().await;
    let body = object(12 * MIB, 4);
    origin.fixed(
        "/disk/large/flip",
        Reply::ok("", &[("cache-control", "max-age=300")]).parts(vec![Part::Data(body.clone())]).sized(),
    );
    let dir = tempdir();
    let (mut edge, _config) = large_edge(&origin, dir.path(), "8MiB");
    let url = format!("{}/disk/large/flip", edge.url("edge http"));
    assert!(get(&url, &[]).await.body == body);
    edge.kill();
    let file = object_files(dir.path(), "objects").pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let (edge, _config) = large_edge(&origin, dir.path(), "8MiB");
    let url = format!("{}/disk/large/flip", edge.url("edge http"));
    let broken = client().get(&url).send().await.unwrap().bytes().await;
    assert!(broken.is_err(), "the damaged body is cut, not completed");
    let got = get(&url, &[]).await;
    assert!(got.body == body && !got.hit(), "{} bytes, {}", got.body.len(), got.cache());
    assert_eq!(origin.hits("/disk/large/flip"), 2);
    assert_eq!(metric(&metrics(&edge).await, "stratus_edge_disk_corrupt_total"), 1.0);
}

/// A `Range` request that misses on a large object is answered 206 with the range cut from
/// the body as it streams (never gathered in memory), while the whole object is written to
/// disk; the next range is a disk hit.
///
/// The memory a streaming fill holds is bounded, not proportional to the object: the readers'
/// window (`coalesce::WINDOW`, 4 MiB), the hand-off to the disk writer (`handoff::LIMIT`, 4 MiB,
/// plus the batch being written), hyper's buffers and the allocator's slack, about 20 MiB when
/// the machine is busy. The object is large enough that "less than half of it" tells that bound
/// from a body gathered whole (with 48 MiB the two were within a few MiB under a full test run).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_range_that_misses_on_a_large_object_streams_and_stores_it() {
    let origin = Origin::start().await;
    let len = 96 * MIB;
    let body = object(len, 8);
    let cc = [("cache-control", "max-age=300"), ("etag", "\"r\"")];
    origin.fixed("/disk/large/ranged", Reply::ok("", &cc).parts(vec![Part::Data(body.clone())]).sized());
    let dir = tempdir();
    let (edge, _config) = large_edge(&origin, dir.path(), "8MiB");
    let url = format!("{}/disk/large/ranged", edge.url("edge http"));
    let idle = memory(edge.pid(), "VmRSS:");
    let (a, b) = (40_000_000usize, 40_999_999usize);
    let got = get(&url, &[("range", &format!("bytes={a}-{b}"))]).await;
    assert_eq!(got.status, 206, "{}", got.cache());
    assert_eq!(got.header("content-range"), format!("bytes {a}-{b}/{len}"));
    assert!(got.body == body.slice(a..=b), "{} bytes, not the range", got.body.len());
    let growth = memory(edge.pid(), "VmHWM:").saturating_sub(idle);
    assert!(growth < len as u64 / 2, "peak RSS grew by {} MiB for a range of a miss", growth >> 20);
    // The fill goes on to the end after the client's range has passed, and stores the object.
    until("the object on disk", Duration::from_secs(30), || async {
        (!object_files(dir.path(), "objects").is_empty()).then_some(())
    })
    .await;
    let got = get(&url, &[("range", "bytes=-1000")]).await;
    assert_eq!(got.status, 206);
    assert!(got.body == body.slice(len - 1000..) && from_disk(&got), "{}", got.cache());
    assert_eq!(origin.hits("/disk/large/ranged"), 1);
}

/// Requests that come while a large object is being written to disk cannot follow the fill
/// from its first byte (that part left memory): they wait for the file and are served from it,
/// so the origin is asked once however many clients want the object (nginx's
/// `proxy_cache_lock`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_during_a_streaming_fill_wait_for_the_file_and_the_origin_is_asked_once() {
    let origin = Origin::start().await;
    let body = object(16 * MIB, 11);
    let gate = Arc::new(Semaphore::new(0));
    let (served, held) = (body.clone(), gate.clone());
    origin.route("/disk/large/herd", move |_, _| {
        // Half the body, then the rest once the test opens the gate (chunked: the edge switches
        // to disk once the body outgrows the memory tier's share).
        let half = served.len() / 2;
        Reply::ok("", &[("cache-control", "max-age=300")]).parts(vec![
            Part::Data(served.slice(..half)),
            Part::Gate(held.clone()),
            Part::Data(served.slice(half..)),
        ])
    });
    let dir = tempdir();
    let (edge, _config) = large_edge(&origin, dir.path(), "8MiB");
    let url = format!("{}/disk/large/herd", edge.url("edge http"));
    let mut first = client().get(&url).send().await.unwrap();
    let mut got = 0;
    while got < 2 * MIB {
        got += first.chunk().await.unwrap().unwrap().len();
    }
    // Three more clients while the fill is half way: each waits on it.
    let late: Vec<_> = (0..3).map(|_| tokio::spawn(get_owned(url.clone()))).collect();
    until("three requests wait on the fill", Duration::from_secs(20), || async {
        (metric(&metrics(&edge).await, "stratus_edge_coalesced_waiters_total") >= 3.0).then_some(())
    })
    .await;
    gate.add_permits(1);
    let mut rest = Vec::new();
    while let Some(chunk) = first.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(got + rest.len(), body.len());
    for waiter in late {
        let got = waiter.await.unwrap();
        assert!(got.body == body, "{} bytes", got.body.len());
        assert!(from_disk(&got), "{}", got.cache());
    }
    assert_eq!(origin.hits("/disk/large/herd"), 1, "one origin request for four clients");
}

async fn get_owned(url: String) -> Got {
    get(&url, &[]).await
}
