//! Byte ranges (RFC 9110 §14): `Range: bytes=…` against a complete stored body, answered 206
//! with one part or `multipart/byteranges`, or 416. Parts are slices of the stored `Bytes`, so
//! no body byte is copied.
//!
//! A range request never makes the answer larger than the representation (issue 16: 32
//! overlapping `bytes=0-` used to return 32 copies). Ranges are sorted and coalesced when they
//! overlap, touch or are closer than a part header costs (§14.6 allows this whatever order they
//! came in); more than [`MAX_PARTS`] parts after that, or a multipart body that would be larger
//! than the whole representation, are answered 200 with the whole body (§14.2 lets a server
//! ignore `Range`).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use std::sync::Arc;

use crate::body::Body;
use crate::cache::disk::blocks::FileBody;

/// More parts than this (after coalescing) are ignored: the whole body is sent (200).
pub const MAX_PARTS: usize = 16;

/// Ranges separated by fewer bytes than this are merged: a multipart part header (boundary,
/// `Content-Range`, maybe `Content-Type`) costs about as much as the gap.
const MERGE_GAP: u64 = 80;

/// What a `Range` header asks of a body of a given length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ranges {
    /// Serve the whole body (no usable `Range`, or too many parts).
    Full,
    /// These inclusive byte ranges: within the body, sorted, disjoint and not adjacent.
    Parts(Vec<(u64, u64)>),
    /// Nothing requested overlaps the body.
    Unsatisfiable,
}

/// Parses `value` for a body of `len` bytes. A syntactically invalid header is ignored.
pub fn parse(value: &str, len: u64) -> Ranges {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ranges::Full };
    let mut parts = Vec::new();
    let mut any = false;
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        any = true;
        let Some((a, b)) = item.split_once('-') else { return Ranges::Full };
        let (a, b) = (a.trim(), b.trim());
        let range = if a.is_empty() {
            // Suffix range: the last N bytes.
            let Ok(n) = b.parse::<u64>() else { return Ranges::Full };
            if n == 0 || len == 0 {
                continue;
            }
            (len.saturating_sub(n), len - 1)
        } else {
            let Ok(start) = a.parse::<u64>() else { return Ranges::Full };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e,
                    _ => return Ranges::Full,
                }
            };
            if start >= len {
                continue;
            }
            (start, end.min(len - 1))
        };
        parts.push(range);
    }
    if !any {
        return Ranges::Full;
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable;
    }
    let parts = coalesce(parts);
    if parts.len() > MAX_PARTS { Ranges::Full } else { Ranges::Parts(parts) }
}

/// Sorts ranges and merges those that overlap or are less than [`MERGE_GAP`] apart.
fn coalesce(mut parts: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    parts.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(parts.len());
    for (a, b) in parts {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(MERGE_GAP) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// One piece of a 206 body.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// A multipart boundary and part header (or the closing boundary).
    Head(Bytes),
    /// Bytes `a..=b` of the body.
    Slice(u64, u64),
}

/// How a 206 answer is laid out.
#[derive(Debug)]
struct Layout {
    pieces: Vec<Piece>,
    /// Body length.
    size: u64,
    /// `Content-Range` for a single part, `Content-Type` for multipart.
    header: (header::HeaderName, String),
}

/// Lays out the 206 for `ranges` (as [`parse`] returns them) of a body of `len` bytes, or
/// `None` when a multipart answer would be larger than the body itself.
fn layout(ranges: &[(u64, u64)], len: u64, content_type: Option<&str>) -> Option<Layout> {
    if let [(a, b)] = ranges {
        return Some(Layout {
            pieces: vec![Piece::Slice(*a, *b)],
            size: b - a + 1,
            header: (header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}")),
        });
    }
    let boundary = format!("stratus-{:016x}", len.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ranges.len() as u64);
    let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut size = 0u64;
    for &(a, b) in ranges {
        let mut head = format!("\r\n--{boundary}\r\n");
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str(&format!("Content-Range: bytes {a}-{b}/{len}\r\n\r\n"));
        size += head.len() as u64 + (b - a + 1);
        pieces.push(Piece::Head(Bytes::from(head)));
        pieces.push(Piece::Slice(a, b));
    }
    let close = format!("\r\n--{boundary}--\r\n");
    size += close.len() as u64;
    pieces.push(Piece::Head(Bytes::from(close)));
    if size > len {
        return None;
    }
    let ctype = format!("multipart/byteranges; boundary={boundary}");
    Some(Layout { pieces, size, header: (header::CONTENT_TYPE, ctype) })
}

/// A stored body that answers are cut from: in memory, or in a file (a large object on disk,
/// read only as the client takes the bytes sent).
#[derive(Clone, Copy, Debug)]
pub enum Stored<'a> {
    Memory(&'a Bytes),
    File(&'a Arc<FileBody>),
}

impl Stored<'_> {
    /// The body's length.
    pub fn len(self) -> u64 {
        match self {
            Self::Memory(b) => b.len() as u64,
            Self::File(f) => f.len(),
        }
    }

    /// The whole body.
    pub fn whole(self) -> Body {
        match self {
            Self::Memory(b) => crate::body::full(b.clone()),
            Self::File(f) => f.body(0, f.len()),
        }
    }

    /// The pieces of a 206 in order: part heads as they are, the ranges' bytes from the body.
    fn pieces(self, pieces: Vec<Piece>) -> Body {
        match self {
            Self::Memory(body) => chunks(
                pieces
                    .into_iter()
                    .map(|p| match p {
                        Piece::Head(h) => h,
                        Piece::Slice(a, b) => body.slice(a as usize..=b as usize),
                    })
                    .collect(),
            ),
            Self::File(file) => {
                use futures_util::StreamExt;
                use http_body_util::BodyExt;
                let file = file.clone();
                let frames = futures_util::stream::iter(pieces).flat_map(move |p| match p {
                    Piece::Head(h) => StreamExt::boxed(futures_util::stream::once(async move {
                        Ok(hyper::body::Frame::data(h))
                    })),
                    Piece::Slice(a, b) => {
                        StreamExt::boxed(http_body_util::BodyStream::new(file.body(a, b + 1)))
                    }
                });
                http_body_util::StreamBody::new(frames).boxed_unsync()
            }
        }
    }
}

/// Builds the 206 response for `ranges` (as [`parse`] returns them) of `body`; `headers` are
/// the full response's. `Err` gives the headers back when the whole body is the better answer.
pub fn respond(
    ranges: &[(u64, u64)],
    body: Stored<'_>,
    mut headers: HeaderMap,
    head_only: bool,
) -> Result<Response<Body>, HeaderMap> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let Some(layout) = layout(ranges, body.len(), ctype) else { return Err(headers) };
    let (name, value) = layout.header;
    set(&mut headers, name, &value);
    set(&mut headers, header::CONTENT_LENGTH, &layout.size.to_string());
    let body = if head_only { crate::body::empty() } else { body.pieces(layout.pieces) };
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    *res.headers_mut() = headers;
    Ok(res)
}

/// A whole body as it streams (a fill's, `proxy/pipeline.rs`).
pub type ByteStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Bytes, crate::error::ProxyError>> + Send + 'static>,
>;

/// Bytes `a..=b` of the body `whole` streams, cut as they pass: nothing before `a` is kept,
/// and the stream is left (and so the fill's reader dropped) once `b` has gone by. A body
/// that ends before `b` ends this one with an error.
pub fn cut(whole: ByteStream, a: u64, b: u64) -> Body {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    let parts = futures_util::stream::unfold((whole, 0u64), move |(mut s, mut pos)| async move {
        while pos <= b {
            let chunk = match s.next().await {
                Some(Ok(c)) => c,
                Some(Err(e)) => return Some((Err(Box::new(e) as crate::body::BoxError), (s, u64::MAX))),
                None => {
                    let e = crate::error::ProxyError::Upstream("body ended before the range".into());
                    return Some((Err(Box::new(e) as crate::body::BoxError), (s, u64::MAX)));
                }
            };
            let (start, end) = (pos, pos + chunk.len() as u64);
            pos = end;
            if end <= a {
                continue;
            }
            let from = usize::try_from(a.saturating_sub(start)).unwrap_or(0);
            let to = usize::try_from((b + 1).min(end) - start).unwrap_or(0);
            return Some((Ok(hyper::body::Frame::data(chunk.slice(from..to))), (s, pos)));
        }
        None
    });
    http_body_util::StreamBody::new(parts).boxed_unsync()
}

/// The 416 answer for a body of `len` bytes.
pub fn unsatisfiable(len: u64, mut headers: HeaderMap) -> Response<Body> {
    headers.remove(header::CONTENT_TYPE);
    set(&mut headers, header::CONTENT_RANGE, &format!("bytes */{len}"));
    set(&mut headers, header::CONTENT_LENGTH, "0");
    let mut res = Response::new(crate::body::empty());
    *res.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    *res.headers_mut() = headers;
    res
}

/// A body of several `Bytes`, sent in order without copying.
pub fn chunks(parts: Vec<Bytes>) -> Body {
    use http_body_util::BodyExt;
    let stream = futures_util::stream::iter(parts.into_iter().map(|b| Ok(hyper::body::Frame::data(b))));
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

fn set(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, u64, Ranges)] = &[
            ("bytes=0-4", 10, Ranges::Parts(vec![(0, 4)])),
            ("bytes=5-", 10, Ranges::Parts(vec![(5, 9)])),
            ("bytes=-3", 10, Ranges::Parts(vec![(7, 9)])),
            ("bytes=-30", 10, Ranges::Parts(vec![(0, 9)])),
            ("bytes=0-99", 10, Ranges::Parts(vec![(0, 9)])),
            ("bytes=10-20", 10, Ranges::Unsatisfiable),
            ("bytes=-0", 10, Ranges::Unsatisfiable),
            ("bytes=5-2", 10, Ranges::Full),
            ("bytes=a-b", 10, Ranges::Full),
            ("items=0-1", 10, Ranges::Full),
            ("bytes=", 10, Ranges::Full),
            ("bytes=,", 10, Ranges::Full),
            // Coalescing: overlapping, adjacent and near ranges become one, in any order.
            ("bytes=0-1, 4-5", 10, Ranges::Parts(vec![(0, 5)])),
            ("bytes=0-,0-,0-,0-", 1000, Ranges::Parts(vec![(0, 999)])),
            ("bytes=500-599,0-99", 1000, Ranges::Parts(vec![(0, 99), (500, 599)])),
            ("bytes=0-99,100-199", 1000, Ranges::Parts(vec![(0, 199)])),
            ("bytes=0-99,179-199", 1000, Ranges::Parts(vec![(0, 199)])),
            ("bytes=0-99,181-199", 1000, Ranges::Parts(vec![(0, 99), (181, 199)])),
            ("bytes=-100,900-", 1000, Ranges::Parts(vec![(900, 999)])),
            ("bytes=0-0,-1", 1000, Ranges::Parts(vec![(0, 0), (999, 999)])),
            ("bytes=18446744073709551615-", 10, Ranges::Unsatisfiable),
            ("bytes=0-18446744073709551615", 10, Ranges::Parts(vec![(0, 9)])),
            ("bytes=0-18446744073709551616", 10, Ranges::Full),
        ];
        for (value, len, want) in cases {
            assert_eq!(&parse(value, *len), want, "{value}");
        }
    }

    #[test]
    fn too_many_parts_are_ignored() {
        let spread =
            |n: u64| (0..n).map(|i| format!("{}-{}", i * 1000, i * 1000)).collect::<Vec<_>>().join(",");
        let at_limit = format!("bytes={}", spread(MAX_PARTS as u64));
        assert!(matches!(parse(&at_limit, 1 << 20), Ranges::Parts(p) if p.len() == MAX_PARTS));
        assert_eq!(parse(&format!("bytes={}", spread(MAX_PARTS as u64 + 1)), 1 << 20), Ranges::Full);
        // 32 copies of the whole object are one part, not 32.
        let copies = format!("bytes={}", vec!["0-"; 32].join(","));
        assert_eq!(parse(&copies, 50 << 20), Ranges::Parts(vec![(0, (50 << 20) - 1)]));
    }

    #[test]
    fn a_multipart_answer_larger_than_the_body_is_not_made() {
        // Two tiny parts of a small body: the part headers alone outweigh it.
        assert!(layout(&[(0, 0), (200, 200)], 210, Some("text/plain")).is_none());
        let big = layout(&[(0, 0), (200, 200)], 100_000, Some("text/plain")).unwrap();
        assert_eq!(big.pieces.len(), 5);
        assert!(big.size < 400, "{}", big.size);
    }

    /// The length of the answer `respond` gives for `value` on a body of `len` bytes.
    fn answer_len(value: &str, len: usize, ctype: &str) -> u64 {
        let body = Bytes::from(vec![b'x'; len]);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ctype).unwrap());
        match parse(value, len as u64) {
            Ranges::Full => len as u64,
            Ranges::Unsatisfiable => 0,
            Ranges::Parts(parts) => {
                for w in parts.windows(2) {
                    assert!(w[0].1 + MERGE_GAP < w[1].0, "{parts:?}");
                }
                assert!(parts.iter().all(|&(a, b)| a <= b && b < len as u64), "{parts:?}");
                match respond(&parts, Stored::Memory(&body), headers, false) {
                    Ok(res) => {
                        let n: u64 = res.headers()[header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
                        // The parts are ready slices: collecting never waits.
                        let collect = http_body_util::BodyExt::collect(res.into_body());
                        let got = futures_util::FutureExt::now_or_never(collect).unwrap().unwrap().to_bytes();
                        assert_eq!(got.len() as u64, n);
                        n
                    }
                    Err(_) => len as u64,
                }
            }
        }
    }

    fn spec() -> impl Strategy<Value = String> {
        let n = 0u64..3000;
        prop_oneof![
            (n.clone(), n.clone()).prop_map(|(a, b)| format!("{a}-{b}")),
            n.clone().prop_map(|a| format!("{a}-")),
            n.prop_map(|b| format!("-{b}")),
            "[0-9a-z ,-]{0,8}",
        ]
    }

    proptest! {
        #[test]
        fn no_range_header_makes_the_answer_larger_than_the_body(
            specs in prop::collection::vec(spec(), 0..64),
            len in 0usize..2500,
            ctype in "[a-z/+;= -]{0,200}",
        ) {
            let value = format!("bytes={}", specs.join(","));
            prop_assert!(answer_len(&value, len, &ctype) <= len as u64, "{value} on {len}");
        }

        #[test]
        fn any_text_parses_without_panicking(value in "\\PC{0,64}", len in 0u64..u64::MAX) {
            let _ = parse(&value, len);
        }
    }
}
