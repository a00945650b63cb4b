//! Range amplification (issue 16, item 7): whatever the `Range` header, the answer is never
//! much larger than the object. Overlapping and nearby ranges are coalesced; too many parts,
//! or a multipart answer larger than the object, get the whole object (200).

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;

use crate::support::edge::edge;
use crate::support::http::get;
use crate::support::origin::{Origin, Part, Reply};

const LEN: usize = 1 << 20;

fn object() -> Vec<u8> {
    (0..LEN).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_ranges_never_multiply_the_object() {
    let origin = Origin::start().await;
    let data = object();
    for path in ["/ranges/stored", "/ranges/miss"] {
        origin.fixed(
            path,
            Reply::ok("", &[("cache-control", "max-age=300"), ("content-type", "application/octet-stream")])
                .parts(vec![Part::Data(Bytes::from(data.clone()))])
                .sized(),
        );
    }
    let edge = edge(&origin, &[]);
    let base = edge.url("edge http");
    let whole = get(&format!("{base}/ranges/stored"), &[]).await;
    assert_eq!(whole.body.len(), LEN);

    let copies = format!("bytes={}", vec!["0-"; 32].join(","));
    let spread = |n: usize| {
        let specs: Vec<String> = (0..n).map(|i| format!("{}-{}", i * 4096, i * 4096 + 9)).collect();
        format!("bytes={}", specs.join(","))
    };
    let (sixteen, seventeen) = (spread(16), spread(17));
    let tiny = "bytes=0-0,1000-1000,2000-2000".to_owned();
    // (path, Range, status, body length at most)
    let cases: Vec<(&str, &str, u16, usize)> = vec![
        // The first request for this one is a range miss: answered once the fill completes.
        ("/ranges/miss", &copies, 206, LEN),
        ("/ranges/stored", &copies, 206, LEN),
        ("/ranges/stored", "bytes=0-99,50-149,100-199", 206, 200),
        ("/ranges/stored", "bytes=-100,0-99", 206, 200 + 2 * 140 + 64),
        ("/ranges/stored", &sixteen, 206, 16 * 10 + 16 * 120 + 64),
        ("/ranges/stored", &seventeen, 200, LEN),
        ("/ranges/stored", &tiny, 206, 512),
    ];
    for (path, range, status, most) in cases {
        let got = get(&format!("{base}{path}"), &[("range", range)]).await;
        let short = &range[..range.len().min(60)];
        assert_eq!(got.status, status, "{path} {short}");
        assert!(got.body.len() <= most, "{path} {short}: {} bytes", got.body.len());
        assert_eq!(got.header("content-length"), got.body.len().to_string(), "{path} {short}");
        if status == 200 {
            assert_eq!(got.body[..], data[..], "{short}");
        }
    }
    // The coalesced single part is the object, with its Content-Range.
    let got = get(&format!("{base}/ranges/stored"), &[("range", &copies)]).await;
    assert_eq!(got.header("content-range"), format!("bytes 0-{}/{LEN}", LEN - 1));
    assert_eq!(got.body[..], data[..]);
    // Two distant parts are still multipart, each carrying its bytes.
    let got = get(&format!("{base}/ranges/stored"), &[("range", "bytes=10-19,500000-500009")]).await;
    assert_eq!(got.status, 206);
    assert!(got.header("content-type").starts_with("multipart/byteranges; boundary="));
    let text = got.body.clone();
    for (a, b) in [(10usize, 19usize), (500_000, 500_009)] {
        let marker = format!("Content-Range: bytes {a}-{b}/{LEN}\r\n\r\n");
        let at = find(&text, marker.as_bytes()).unwrap() + marker.len();
        assert_eq!(&text[at..at + (b - a + 1)], &data[a..=b]);
    }
    assert_eq!(origin.hits("/ranges/stored"), 1);
    assert_eq!(origin.hits("/ranges/miss"), 1);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
