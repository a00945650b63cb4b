//! The disk tier (`--cache-dir`): objects beyond the memory tier are served from disk without
//! the origin, survive SIGTERM and SIGKILL, never come back once purged, and a corrupted file
//! is a miss.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::support::edge::{edge, edge_with_config, purge};
use crate::support::http::{Got, client, get, metric};
use crate::support::origin::{Origin, RangeSupport, Reply};
use crate::support::poll::until;
use crate::support::process::{Proc, tempdir};

/// The object files under a cache directory.
fn object_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(subs) = std::fs::read_dir(dir.join("objects")) else { return Vec::new() };
    subs.flatten()
        .filter_map(|s| std::fs::read_dir(s.path()).ok())
        .flat_map(|files| files.flatten().map(|f| f.path()))
        .collect()
}

/// Waits until `n` objects are on disk.
async fn on_disk(dir: &Path, n: usize) {
    until(&format!("{n} object files"), Duration::from_secs(20), || async {
        (object_files(dir).len() >= n).then_some(())
    })
    .await;
}

fn disk_edge(origin: &Origin, dir: &Path, memory: &str) -> Proc {
    edge(origin, &["--cache-size", memory, "--cache-dir", dir.to_str().unwrap(), "--disk-size", "64MiB"])
}

async fn metrics(edge: &Proc) -> String {
    client().get(format!("{}/metrics", edge.url("edge admin"))).send().await.unwrap().text().await.unwrap()
}

fn from_disk(got: &Got) -> bool {
    got.hit() && got.own_cache().contains("detail=disk")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_beyond_the_memory_tier_are_served_from_disk_without_the_origin() {
    let origin = Origin::start().await;
    let body = "d".repeat(64 * 1024);
    for i in 0..40 {
        origin.fixed(&format!("/disk/fill/{i}"), Reply::ok(&body, &[("cache-control", "max-age=300")]));
    }
    let dir = tempdir();
    let edge = disk_edge(&origin, dir.path(), "1MiB");
    let base = edge.url("edge http");
    for i in 0..40 {
        let got = get(&format!("{base}/disk/fill/{i}"), &[]).await;
        assert_eq!(got.body.len(), body.len());
    }
    on_disk(dir.path(), 40).await;
    let mut disk_hits = 0;
    for i in 0..40 {
        let got = get(&format!("{base}/disk/fill/{i}"), &[]).await;
        assert_eq!(got.text(), body, "object {i}");
        assert!(got.hit(), "object {i}: {}", got.cache());
        disk_hits += usize::from(from_disk(&got));
    }
    // 40 × 64 KiB cannot all be in a 1 MiB memory tier, yet every request was a hit. (How
    // many came from disk depends on moka's admission and when its evictions run.)
    assert!(disk_hits > 0, "no hit came from disk");
    for i in 0..40 {
        assert_eq!(origin.hits(&format!("/disk/fill/{i}")), 1, "object {i} went to the origin again");
    }
    let text = metrics(&edge).await;
    assert!(metric(&text, "stratus_edge_cache_bytes{tier=\"memory\"}") <= 1024.0 * 1024.0);
    assert!(metric(&text, "stratus_edge_cache_entries{tier=\"disk\"}") >= 40.0, "{text}");
    assert_eq!(metric(&text, "stratus_edge_cache_hits_total{tier=\"disk\"}"), disk_hits as f64, "{text}");
}

/// Restarts on the same directory, after SIGTERM and after SIGKILL, serve what is on disk as
/// hits; an object read from disk twice is promoted, so the next hit comes from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_on_disk_survive_sigterm_and_sigkill() {
    let origin = Origin::start().await;
    for i in 0..3 {
        origin.fixed(
            &format!("/disk/warm/{i}"),
            Reply::ok(&format!("warm {i}"), &[("cache-control", "max-age=300")]),
        );
    }
    let dir = tempdir();
    let mut first = disk_edge(&origin, dir.path(), "16MiB");
    for i in 0..3 {
        get(&format!("{}/disk/warm/{i}", first.url("edge http")), &[]).await;
    }
    on_disk(dir.path(), 3).await;
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(20)), Some(0));
    for how in ["TERM", "KILL"] {
        let mut edge = disk_edge(&origin, dir.path(), "16MiB");
        let base = edge.url("edge http");
        for i in 0..3 {
            let got = get(&format!("{base}/disk/warm/{i}"), &[]).await;
            assert_eq!(got.text(), format!("warm {i}"));
            assert!(from_disk(&got), "after {how}: {}", got.cache());
            // Read from disk twice in a row, an object is promoted on the second read (the first
            // read alone does not promote: `docs/edge.md`, "Disk tier").
            let second = get(&format!("{base}/disk/warm/{i}"), &[]).await;
            assert!(from_disk(&second), "promoted on its first read from disk: {}", second.cache());
            let again = get(&format!("{base}/disk/warm/{i}"), &[]).await;
            assert!(again.hit() && !from_disk(&again), "promoted to memory: {}", again.cache());
            assert_eq!(origin.hits(&format!("/disk/warm/{i}")), 1);
        }
        if how == "TERM" {
            edge.signal("TERM");
            assert_eq!(edge.wait_exit(Duration::from_secs(20)), Some(0));
        } else {
            edge.kill();
        }
    }
}

/// A flipped byte or a file cut short (a torn write) is a miss: fetched again and served
/// intact, never garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_or_torn_object_file_is_a_miss() {
    let origin = Origin::start().await;
    let body = "c".repeat(5000);
    for p in ["flipped", "torn"] {
        origin.fixed(&format!("/disk/corrupt/{p}"), Reply::ok(&body, &[("cache-control", "max-age=300")]));
    }
    let dir = tempdir();
    let mut edge = disk_edge(&origin, dir.path(), "16MiB");
    get(&format!("{}/disk/corrupt/flipped", edge.url("edge http")), &[]).await;
    on_disk(dir.path(), 1).await;
    let flipped = object_files(dir.path()).pop().unwrap();
    get(&format!("{}/disk/corrupt/torn", edge.url("edge http")), &[]).await;
    on_disk(dir.path(), 2).await;
    let torn = object_files(dir.path()).into_iter().find(|f| *f != flipped).unwrap();
    edge.kill();
    let mut bytes = std::fs::read(&flipped).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x20;
    std::fs::write(&flipped, &bytes).unwrap();
    let bytes = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    let edge = disk_edge(&origin, dir.path(), "16MiB");
    for p in ["flipped", "torn"] {
        let got = get(&format!("{}/disk/corrupt/{p}", edge.url("edge http")), &[]).await;
        assert_eq!(got.text(), body, "{p}");
        assert!(!got.hit(), "{p}: {}", got.cache());
        assert_eq!(origin.hits(&format!("/disk/corrupt/{p}")), 2, "{p}");
    }
    let text = metrics(&edge).await;
    assert_eq!(metric(&text, "stratus_edge_disk_corrupt_total"), 2.0);
}

/// SIGKILL while large objects are being filled and written: after a restart each object is
/// either served whole from disk or fetched again, and no partial write is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_during_large_fills_leaves_whole_objects_or_none() {
    let origin = Origin::start().await;
    let bodies: Vec<String> = (0..4u8).map(|i| char::from(b'a' + i).to_string().repeat(6 << 20)).collect();
    for (i, b) in bodies.iter().enumerate() {
        origin.fixed(&format!("/disk/large/{i}"), Reply::ok(b, &[("cache-control", "max-age=300")]));
    }
    let dir = tempdir();
    let mut edge = disk_edge(&origin, dir.path(), "64MiB");
    let base = edge.url("edge http");
    let fills = (0..4).map(|i| {
        let url = format!("{base}/disk/large/{i}");
        tokio::spawn(async move { get(&url, &[]).await })
    });
    for f in fills {
        f.await.unwrap();
    }
    edge.kill();
    let edge = disk_edge(&origin, dir.path(), "64MiB");
    let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "partial writes are removed on start");
    let mut from_disk_n = 0;
    for (i, b) in bodies.iter().enumerate() {
        let got = get(&format!("{}/disk/large/{i}", edge.url("edge http")), &[]).await;
        assert!(got.text() == *b, "object {i}: {} bytes, not the object", got.body.len());
        if from_disk(&got) {
            from_disk_n += 1;
            assert_eq!(origin.hits(&format!("/disk/large/{i}")), 1);
        } else {
            assert_eq!(origin.hits(&format!("/disk/large/{i}")), 2);
        }
    }
    eprintln!("{from_disk_n} of 4 large objects survived the SIGKILL on disk");
}

/// A purge applied before a restart stays applied: hard purges miss, soft purges are stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purges_survive_a_restart() {
    let origin = Origin::start().await;
    for p in ["gone", "kept", "soft"] {
        let cc = [("cache-control", "max-age=300"), ("etag", "\"v1\"")];
        origin.fixed(&format!("/disk/purge/{p}"), Reply::ok(p, &cc));
    }
    let dir = tempdir();
    let mut edge = disk_edge(&origin, dir.path(), "16MiB");
    for p in ["gone", "kept", "soft"] {
        get(&format!("{}/disk/purge/{p}", edge.url("edge http")), &[]).await;
    }
    on_disk(dir.path(), 3).await;
    purge(&edge, serde_json::json!({"files": ["/disk/purge/gone"]})).await;
    purge(&edge, serde_json::json!({"files": ["/disk/purge/soft"], "soft": true})).await;
    edge.kill();
    let edge = disk_edge(&origin, dir.path(), "16MiB");
    let base = edge.url("edge http");
    let kept = get(&format!("{base}/disk/purge/kept"), &[]).await;
    assert!(from_disk(&kept), "{}", kept.cache());
    let gone = get(&format!("{base}/disk/purge/gone"), &[]).await;
    assert!(!gone.hit(), "a hard-purged object came back: {}", gone.cache());
    assert_eq!(origin.hits("/disk/purge/gone"), 2);
    // Soft-purged: stale, so it is revalidated (the origin answers 200 here) rather than
    // served as fresh.
    let soft = get(&format!("{base}/disk/purge/soft"), &[]).await;
    assert!(!soft.hit(), "a soft-purged object was served as fresh: {}", soft.cache());
    assert_eq!(soft.text(), "soft");
    assert_eq!(origin.hits("/disk/purge/soft"), 2);
    assert_eq!(origin.hits("/disk/purge/kept"), 1);
}

fn following_edge(origin: &Origin, control: &Proc, dir: &Path) -> Proc {
    let mut cmd = crate::support::process::stratus();
    cmd.args(["edge", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--origin", &origin.url])
        .args(["--control", &control.url("control api"), "--id", "disk-edge"])
        .args(["--cache-dir", dir.to_str().unwrap(), "--disk-size", "64MiB"])
        .env("STRATUS_TOKEN", crate::support::control::TOKEN);
    Proc::start(cmd, &["edge http", "edge admin"])
}

/// A purge sent through the control plane while the edge is down is applied when it comes
/// back, before anything is served from disk: the edge resumes from the sequence it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_sent_while_the_edge_is_down_applies_before_disk_hits() {
    use crate::support::control::{Api, start_control};
    let origin = Origin::start().await;
    for p in ["gone", "kept"] {
        origin.fixed(&format!("/disk/down/{p}"), Reply::ok(p, &[("cache-control", "max-age=300")]));
    }
    let control_dir = tempdir();
    let control = start_control(control_dir.path(), "");
    let api = Api::new(&control);
    let dir = tempdir();
    let mut edge = following_edge(&origin, &control, dir.path());
    api.until_following(1).await;
    for p in ["gone", "kept"] {
        get(&format!("{}/disk/down/{p}", edge.url("edge http")), &[]).await;
    }
    on_disk(dir.path(), 2).await;
    edge.kill();
    api.purge(serde_json::json!({"files": ["/disk/down/gone"]})).await;
    let edge = following_edge(&origin, &control, dir.path());
    let base = edge.url("edge http");
    // Nothing is read from disk until the follower caught up (a request before then would go
    // to the origin); the edge says when.
    crate::support::poll::eventually("the follower caught up", Duration::from_secs(20), || {
        edge.stderr().contains("serving from the disk cache").then_some(())
    });
    let gone = get(&format!("{base}/disk/down/gone"), &[]).await;
    let kept = get(&format!("{base}/disk/down/kept"), &[]).await;
    assert!(from_disk(&kept), "{}", kept.cache());
    assert_eq!(kept.text(), "kept");
    assert!(!gone.hit(), "purged while down, served after restart: {}", gone.cache());
    assert_eq!(origin.hits("/disk/down/gone"), 2);
}

/// A cache directory that fails writes: a 1 MiB tmpfs (a disk that fills up) where this test
/// may mount one, else a directory whose `tmp/` is replaced by a file (every write fails).
struct FailingDir {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl FailingDir {
    fn new() -> Self {
        let dir = tempdir();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Self { dir, mounted }
    }

    /// Breaks writes after the edge created its directories (no-op on the small tmpfs).
    fn break_writes(&self) {
        if !self.mounted {
            let tmp = self.dir.path().join("tmp");
            std::fs::remove_dir_all(&tmp).unwrap();
            std::fs::write(&tmp, b"not a directory").unwrap();
        }
    }
}

impl Drop for FailingDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
        }
    }
}

/// Disk full (or any write error): the edge keeps serving from memory and the origin, counts
/// the errors and says so in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_degrades_to_memory_only() {
    let origin = Origin::start().await;
    let body = "f".repeat(64 * 1024);
    for i in 0..40 {
        origin.fixed(&format!("/disk/full/{i}"), Reply::ok(&body, &[("cache-control", "max-age=300")]));
    }
    let failing = FailingDir::new();
    let edge = disk_edge(&origin, failing.dir.path(), "16MiB");
    failing.break_writes();
    let base = edge.url("edge http");
    for round in 0..2 {
        for i in 0..40 {
            let got = get(&format!("{base}/disk/full/{i}"), &[]).await;
            assert_eq!((got.status, got.body.len()), (200, body.len()), "round {round} object {i}");
        }
    }
    // Served from memory the second time: the failing disk cost no hit.
    for i in 0..40 {
        assert_eq!(origin.hits(&format!("/disk/full/{i}")), 1, "object {i}");
    }
    let errors = until("disk errors counted", Duration::from_secs(20), || async {
        let n = metric(&metrics(&edge).await, "stratus_edge_disk_errors_total");
        (n > 0.0).then_some(n)
    })
    .await;
    assert!(errors >= 1.0);
    assert!(edge.stderr().contains("disk cache error"), "{}", edge.stderr());
}

/// The disk tier stays within `--disk-size`: evicted objects' files are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_disk_tier_stays_within_its_size() {
    let origin = Origin::start().await;
    let body = "s".repeat(64 * 1024);
    for i in 0..40 {
        origin.fixed(&format!("/disk/size/{i}"), Reply::ok(&body, &[("cache-control", "max-age=300")]));
    }
    let dir = tempdir();
    let path = dir.path().to_str().unwrap();
    let edge = edge(&origin, &["--cache-size", "4MiB", "--cache-dir", path, "--disk-size", "1MiB"]);
    for i in 0..40 {
        get(&format!("{}/disk/size/{i}", edge.url("edge http")), &[]).await;
    }
    let on_disk_bytes = || -> u64 {
        object_files(dir.path()).iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
    };
    // Writes are behind the requests: wait until the files settle within the size.
    until("object files within 1 MiB", Duration::from_secs(20), || async {
        let text = metrics(&edge).await;
        let written = metric(&text, "stratus_edge_disk_writes_total");
        (written > 16.0 && on_disk_bytes() <= 1 << 20).then_some(())
    })
    .await;
    let text = metrics(&edge).await;
    assert!(metric(&text, "stratus_edge_cache_bytes{tier=\"disk\"}") <= f64::from(1 << 20), "{text}");
    assert!(metric(&text, "stratus_edge_disk_evictions_total") > 0.0, "{text}");
    assert!(!object_files(dir.path()).is_empty());
}

/// An object larger than the whole memory tier is stored on disk only and served from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_larger_than_the_memory_tier_lives_on_disk() {
    let origin = Origin::start().await;
    let body = "L".repeat(3 << 20);
    origin.fixed("/disk/huge", Reply::ok(&body, &[("cache-control", "max-age=300")]));
    let dir = tempdir();
    let edge = disk_edge(&origin, dir.path(), "1MiB");
    let url = format!("{}/disk/huge", edge.url("edge http"));
    assert_eq!(get(&url, &[]).await.body.len(), body.len());
    on_disk(dir.path(), 1).await;
    // The memory tier lets it go at its next housekeeping (moka evicts lazily); from then on
    // it is served from disk, whole, and never fetched again.
    until("a hit from disk", Duration::from_secs(20), || async {
        let got = get(&url, &[]).await;
        assert!(got.text() == body && got.hit(), "{} bytes, {}", got.body.len(), got.cache());
        from_disk(&got).then_some(())
    })
    .await;
    assert_eq!(origin.hits("/disk/huge"), 1);
}

/// Two `Accept-Encoding` variants of one URL (gzip and identity), each larger than the memory
/// tier: once memory let them go, each request gets its own variant's body from disk; after a
/// restart too (the `Vary` marker is on disk); and a purge of the URL removes both for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_vary_variant_is_served_its_own_body_from_disk_and_after_a_restart() {
    let origin = Origin::start().await;
    let path = "/disk/vary/page";
    let bodies = [("gzip", "G".repeat(2 << 20)), ("identity", "I".repeat(2 << 20))];
    let answers = bodies.clone();
    origin.route(path, move |seen, _| {
        // What the edge forwards of `identity` may differ; only gzip names gzip.
        let gzip = seen.header("accept-encoding").contains("gzip");
        let body = &answers[usize::from(!gzip)].1;
        Reply::ok(body, &[("cache-control", "max-age=300"), ("vary", "Accept-Encoding")])
    });
    let dir = tempdir();
    let mut edge = disk_edge(&origin, dir.path(), "1MiB");
    let url = format!("{}{path}", edge.url("edge http"));
    for (enc, body) in &bodies {
        let got = get(&url, &[("accept-encoding", enc)]).await;
        assert!(got.text() == *body, "{enc}: {} bytes, {}", got.body.len(), got.cache());
    }
    // The marker and the two variants.
    on_disk(dir.path(), 3).await;
    // Memory lets each go at its next housekeeping (it is larger than the tier); from then on
    // it comes from disk, found under the key the marker in memory gives.
    for (enc, body) in &bodies {
        until(&format!("{enc} from disk"), Duration::from_secs(20), || async {
            let got = get(&url, &[("accept-encoding", enc)]).await;
            assert!(got.text() == *body && got.hit(), "{enc}: {} bytes, {}", got.body.len(), got.cache());
            from_disk(&got).then_some(())
        })
        .await;
    }
    assert_eq!(origin.hits(path), 2);
    edge.kill();
    // After a restart nothing is in memory: the marker on disk leads to each variant.
    let edge = disk_edge(&origin, dir.path(), "1MiB");
    let url = format!("{}{path}", edge.url("edge http"));
    for (enc, body) in bodies.iter().rev() {
        let got = get(&url, &[("accept-encoding", enc)]).await;
        assert!(got.text() == *body, "{enc} after a restart: {} bytes", got.body.len());
        assert!(from_disk(&got), "{enc} after a restart: {}", got.cache());
    }
    assert_eq!(origin.hits(path), 2);
    // A URL purge names every variant; the bans keep them gone after another restart.
    purge(&edge, serde_json::json!({"files": [path]})).await;
    let mut edge = edge;
    edge.kill();
    let edge = disk_edge(&origin, dir.path(), "1MiB");
    let url = format!("{}{path}", edge.url("edge http"));
    for (enc, body) in &bodies {
        let got = get(&url, &[("accept-encoding", enc)]).await;
        assert!(got.text() == *body && !got.hit(), "{enc} after the purge: {}", got.cache());
    }
    assert_eq!(origin.hits(path), 4);
}

/// A custom `Vary` header: two values, two variants, both on disk; after a restart each value
/// gets its own body and a value never seen goes to the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn variants_of_a_custom_vary_header_come_back_from_disk_apart() {
    let origin = Origin::start().await;
    let path = "/disk/vary/tenant";
    origin.route(path, |seen, _| {
        let body = format!("for tenant {}", seen.header("x-tenant"));
        Reply::ok(&body, &[("cache-control", "max-age=300"), ("vary", "X-Tenant")])
    });
    let dir = tempdir();
    let mut edge = disk_edge(&origin, dir.path(), "16MiB");
    let url = format!("{}{path}", edge.url("edge http"));
    for t in ["a", "b"] {
        assert_eq!(get(&url, &[("x-tenant", t)]).await.text(), format!("for tenant {t}"));
    }
    on_disk(dir.path(), 3).await;
    edge.kill();
    let edge = disk_edge(&origin, dir.path(), "16MiB");
    let url = format!("{}{path}", edge.url("edge http"));
    // Whitespace differences normalise to the same variant, as in memory.
    for (sent, t) in [("b", "b"), (" a ", "a"), ("a", "a")] {
        let got = get(&url, &[("x-tenant", sent)]).await;
        assert_eq!(got.text(), format!("for tenant {t}"));
        assert!(got.hit(), "{sent:?}: {}", got.cache());
    }
    assert_eq!(origin.hits(path), 2);
    let got = get(&url, &[("x-tenant", "c")]).await;
    assert_eq!((got.text(), got.hit()), ("for tenant c".to_owned(), false));
    assert_eq!(origin.hits(path), 3);
}

/// A sliced object four times the memory tier: its slices go to disk, a second whole read
/// comes from there with no origin request, and after a restart a range in the middle is
/// served from disk, with no origin request and the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_range_of_a_sliced_object_is_served_from_disk_after_eviction_and_a_restart() {
    let origin = Origin::start().await;
    let path = "/disk/sliced.bin";
    let body = Bytes::from((0..4u32 << 20).map(|i| ((i * 7 + i / 65536) % 251) as u8).collect::<Vec<_>>());
    let served = body.clone();
    origin.route(path, move |seen, _| {
        let headers = [("etag", "\"v1\""), ("cache-control", "max-age=300")];
        Reply::ranged(seen, &served, &headers, RangeSupport::Honour)
    });
    let dir = tempdir();
    let config = sliced_config(dir.path(), "1MiB");
    let (mut edge, _config) = edge_with_config(&origin, &config);
    let url = format!("{}{path}", edge.url("edge http"));
    let got = get(&url, &[]).await;
    assert_eq!(Md5::digest(&got.body), Md5::digest(&body));
    assert_eq!(origin.hits(path), 64);
    on_disk(dir.path(), 64).await;
    // 4 MiB cannot be in a 1 MiB memory tier: the rest is read back from disk.
    let again = get(&url, &[]).await;
    assert_eq!(Md5::digest(&again.body), Md5::digest(&body));
    assert!(again.hit() && from_disk(&again), "{}", again.cache());
    assert_eq!(origin.hits(path), 64);
    edge.kill();

    let (edge, _config) = edge_with_config(&origin, &config);
    let url = format!("{}{path}", edge.url("edge http"));
    let (a, b) = (2_000_000usize, 2_300_000usize);
    let got = get(&url, &[("range", &format!("bytes={a}-{b}"))]).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-range"), format!("bytes {a}-{b}/{}", body.len()));
    assert_eq!(Md5::digest(&got.body), Md5::digest(&body[a..=b]));
    assert!(got.hit() && from_disk(&got), "{}", got.cache());
    assert_eq!(origin.hits(path), 64, "no origin request after the restart");
}

/// The config of an edge with `memory` of memory tier and a disk tier in `dir`, whose one site
/// slices in 64 KiB slices.
fn sliced_config(dir: &Path, memory: &str) -> String {
    format!(
        "[edge.cache]\nsize = \"{memory}\"\nslice_size = \"64KiB\"\n\
         [edge.cache.disk]\npath = \"{}\"\nsize = \"64MiB\"\n\
         [[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\nslice = true\n",
        dir.display()
    )
}

/// An object that changed at the origin while its slices were on disk: after a restart, the
/// first slice fetched shows the new version, the old slices are dropped from disk as well as
/// memory, and the answer is the new version throughout, never a mix; after another restart
/// the new slices come from disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slices_on_disk_of_a_changed_object_are_dropped_not_mixed() {
    const SLICE: usize = 64 * 1024;
    let origin = Origin::start().await;
    let path = "/disk/changing.bin";
    let version =
        |seed: u32| Bytes::from((0..1u32 << 20).map(|i| ((i * 7 + seed) % 251) as u8).collect::<Vec<_>>());
    let (old, new) = (version(0), version(100));
    let (o, n) = (old.clone(), new.clone());
    origin.route(path, move |seen, count| {
        // The first two requests get version 1, every later one version 2.
        let (body, etag) = if count <= 2 { (&o, "\"v1\"") } else { (&n, "\"v2\"") };
        Reply::ranged(seen, body, &[("etag", etag), ("cache-control", "max-age=3600")], RangeSupport::Honour)
    });
    let dir = tempdir();
    let config = sliced_config(dir.path(), "16MiB");
    let (mut edge, _config) = edge_with_config(&origin, &config);
    let url = format!("{}{path}", edge.url("edge http"));
    let got = get(&url, &[("range", &format!("bytes={}-{}", 3 * SLICE, 5 * SLICE - 1))]).await;
    assert_eq!((got.status, got.header("etag")), (206, "\"v1\"".to_owned()));
    on_disk(dir.path(), 2).await;
    edge.kill();

    // Slices 3 and 4 are on disk as v1; slice 5 comes back as v2.
    let (mut edge, _config) = edge_with_config(&origin, &config);
    let url = format!("{}{path}", edge.url("edge http"));
    let want = new.slice(3 * SLICE..6 * SLICE);
    let got = get(&url, &[("range", &format!("bytes={}-{}", 3 * SLICE, 6 * SLICE - 1))]).await;
    assert_eq!((got.status, got.header("etag")), (206, "\"v2\"".to_owned()), "{}", edge.stderr());
    assert!(got.body == want, "the answer mixes versions");
    assert_eq!(origin.hits(path), 5, "slices 3, 4 (v1), then 5, 3, 4 (v2)");
    edge.signal("TERM");
    assert_eq!(edge.wait_exit(Duration::from_secs(20)), Some(0));

    let (edge, _config) = edge_with_config(&origin, &config);
    let url = format!("{}{path}", edge.url("edge http"));
    let got = get(&url, &[("range", &format!("bytes={}-{}", 3 * SLICE, 6 * SLICE - 1))]).await;
    assert!(got.body == want, "an old slice came back from disk");
    assert!(got.hit() && from_disk(&got), "{}", got.cache());
    assert_eq!(origin.hits(path), 5);
    assert_eq!(Md5::digest(&got.body), Md5::digest(&want));
}

/// Responses the edge compresses vary on `Accept-Encoding`: each encoding is kept on disk and
/// comes back after a restart with its own bytes and `Content-Encoding`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compressed_responses_come_back_from_disk_per_encoding() {
    let origin = Origin::start().await;
    let path = "/disk/app.css";
    let css: String = (0..400).map(|i| format!(".c{i} {{ margin: {i}px; }}\n")).collect();
    let headers = [("content-type", "text/css"), ("cache-control", "max-age=600"), ("etag", "\"c1\"")];
    origin.fixed(path, Reply::ok(&css, &headers).sized());
    let dir = tempdir();
    let mut edge = disk_edge(&origin, dir.path(), "16MiB");
    let url = format!("{}{path}", edge.url("edge http"));
    let mut first = Vec::new();
    for accept in ["gzip", "br", "identity"] {
        let got = get(&url, &[("accept-encoding", accept)]).await;
        first.push((accept, got.header("content-encoding"), got.body.clone()));
    }
    assert_eq!(first.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(), ["gzip", "br", ""]);
    assert_eq!(first[2].2, css.as_bytes());
    // The marker and three variants.
    on_disk(dir.path(), 4).await;
    // Each encoding's first request is a Vary miss to the origin (docs/edge.md); none after.
    assert_eq!(origin.hits(path), 3);
    edge.kill();
    let edge = disk_edge(&origin, dir.path(), "16MiB");
    let url = format!("{}{path}", edge.url("edge http"));
    for (accept, encoding, body) in first.iter().rev() {
        let got = get(&url, &[("accept-encoding", accept)]).await;
        assert!(from_disk(&got), "{accept}: {}", got.cache());
        assert_eq!(&got.header("content-encoding"), encoding, "{accept}");
        // The compressed bytes of a fill may differ from a stored copy's: compare what decodes.
        assert_eq!(decode(encoding, &got.body).await, css.as_bytes(), "{accept}");
        assert_eq!(decode(encoding, body).await, css.as_bytes(), "{accept}");
    }
    assert_eq!(origin.hits(path), 3);
}

/// `body` with `Content-Encoding: encoding` undone.
async fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    match encoding {
        "br" => BrotliDecoder::new(body).read_to_end(&mut out).await.unwrap(),
        "gzip" => GzipDecoder::new(body).read_to_end(&mut out).await.unwrap(),
        "" => {
            out.extend_from_slice(body);
            0
        }
        other => panic!("unexpected content-encoding {other}"),
    };
    out
}

/// Purges apply to slices on disk as to whole objects: after a tag purge and a restart no
/// slice of the purged object comes back from disk, while another object's slices do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_purge_keeps_slices_on_disk_from_coming_back() {
    let origin = Origin::start().await;
    let body = Bytes::from((0..256u32 * 1024).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    for (path, tag) in [("/disk/slices/purged.bin", "videos"), ("/disk/slices/kept.bin", "other")] {
        let served = body.clone();
        origin.route(path, move |seen, _| {
            let headers = [("etag", "\"v1\""), ("cache-control", "max-age=300"), ("surrogate-key", tag)];
            Reply::ranged(seen, &served, &headers, RangeSupport::Honour)
        });
    }
    let dir = tempdir();
    let config = sliced_config(dir.path(), "16MiB");
    let (mut edge, _config) = edge_with_config(&origin, &config);
    for path in ["/disk/slices/purged.bin", "/disk/slices/kept.bin"] {
        assert!(get(&format!("{}{path}", edge.url("edge http")), &[]).await.body == body);
    }
    on_disk(dir.path(), 8).await;
    assert_eq!(purge(&edge, serde_json::json!({"tags": ["videos"]})).await, 4);
    edge.kill();
    let (edge, _config) = edge_with_config(&origin, &config);
    let (a, b) = (100_000usize, 150_000usize);
    let kept = get(
        &format!("{}/disk/slices/kept.bin", edge.url("edge http")),
        &[("range", &format!("bytes={a}-{b}"))],
    )
    .await;
    assert!(kept.hit() && from_disk(&kept), "{}", kept.cache());
    assert!(kept.body == body.slice(a..=b));
    let url = format!("{}/disk/slices/purged.bin", edge.url("edge http"));
    let purged = get(&url, &[("range", &format!("bytes={a}-{b}"))]).await;
    assert!(!purged.hit(), "a purged slice came back from disk: {}", purged.cache());
    assert!(purged.body == body.slice(a..=b));
    assert_eq!(origin.hits("/disk/slices/purged.bin"), 4 + 2, "slices 1 and 2 fetched again");
    assert_eq!(origin.hits("/disk/slices/kept.bin"), 4);
}
