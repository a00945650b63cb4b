//! Byte ranges (RFC 9110 §14): `Range: bytes=…` against a complete stored body, answered 206
//! with one part or `multipart/byteranges`, or 416. Parts are slices of the stored `Bytes`, so
//! no body byte is copied.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::body::Body;

/// More ranges than this in one request are ignored (answered 200), a guard against
/// requests that ask for thousands of tiny overlapping parts.
const MAX_RANGES: usize = 32;

/// What a `Range` header asks of a body of a given length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ranges {
    /// Serve the whole body (no usable `Range`).
    Full,
    /// These inclusive byte ranges.
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
    if !any || parts.len() > MAX_RANGES {
        return Ranges::Full;
    }
    if parts.is_empty() { Ranges::Unsatisfiable } else { Ranges::Parts(parts) }
}

/// Builds the 206 (or 416) response for `ranges` of `body`; `headers` are the full response's.
pub fn respond(
    ranges: &[(u64, u64)],
    body: &Bytes,
    mut headers: HeaderMap,
    head_only: bool,
) -> Response<Body> {
    let len = body.len() as u64;
    let slice = |(a, b): (u64, u64)| body.slice(a as usize..=b as usize);
    let (payload, size): (Vec<Bytes>, u64) = if let [one] = ranges {
        set(&mut headers, header::CONTENT_RANGE, &format!("bytes {}-{}/{len}", one.0, one.1));
        (vec![slice(*one)], one.1 - one.0 + 1)
    } else {
        let boundary =
            format!("stratus-{:016x}", len.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ranges.len() as u64);
        let ctype = headers.get(header::CONTENT_TYPE).cloned();
        let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
        for r in ranges {
            let mut head = format!("\r\n--{boundary}\r\n");
            if let Some(ct) = ctype.as_ref().and_then(|v| v.to_str().ok()) {
                head.push_str(&format!("Content-Type: {ct}\r\n"));
            }
            head.push_str(&format!("Content-Range: bytes {}-{}/{len}\r\n\r\n", r.0, r.1));
            parts.push(Bytes::from(head));
            parts.push(slice(*r));
        }
        parts.push(Bytes::from(format!("\r\n--{boundary}--\r\n")));
        set(&mut headers, header::CONTENT_TYPE, &format!("multipart/byteranges; boundary={boundary}"));
        let size = parts.iter().map(|p| p.len() as u64).sum();
        (parts, size)
    };
    set(&mut headers, header::CONTENT_LENGTH, &size.to_string());
    let body = if head_only { crate::body::empty() } else { chunks(payload) };
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    *res.headers_mut() = headers;
    res
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

    #[test]
    fn parse_table() {
        let cases: &[(&str, u64, Ranges)] = &[
            ("bytes=0-4", 10, Ranges::Parts(vec![(0, 4)])),
            ("bytes=5-", 10, Ranges::Parts(vec![(5, 9)])),
            ("bytes=-3", 10, Ranges::Parts(vec![(7, 9)])),
            ("bytes=-30", 10, Ranges::Parts(vec![(0, 9)])),
            ("bytes=0-99", 10, Ranges::Parts(vec![(0, 9)])),
            ("bytes=0-1, 4-5", 10, Ranges::Parts(vec![(0, 1), (4, 5)])),
            ("bytes=10-20", 10, Ranges::Unsatisfiable),
            ("bytes=-0", 10, Ranges::Unsatisfiable),
            ("bytes=5-2", 10, Ranges::Full),
            ("bytes=a-b", 10, Ranges::Full),
            ("items=0-1", 10, Ranges::Full),
            ("bytes=", 10, Ranges::Full),
        ];
        for (value, len, want) in cases {
            assert_eq!(&parse(value, *len), want, "{value}");
        }
    }
}
