//! Answering from a response we hold: the client's preconditions (RFC 9110 §13.2.2) → 304 or
//! 412, byte ranges → 206/416, `HEAD` → headers only. Used for cache hits, for revalidated
//! entries and for responses still streaming from a fill.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::body::{Body, empty};
use crate::proxy::numbers::number;
use crate::proxy::range::{self, Ranges, Stored};

/// What the client's conditional headers decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the response.
    Proceed,
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since`, in
/// the order §13.2.2 fixes, against a GET/HEAD response. Only 2xx responses are conditional.
pub fn precondition(req: &HeaderMap, status: StatusCode, res: &HeaderMap) -> Precondition {
    if !status.is_success() || !asks(req).conditional {
        return Precondition::Proceed;
    }
    let etag = res.get(header::ETAG).and_then(|v| v.to_str().ok());
    // Parsed only when a date precondition asks: most requests carry none, and parsing the
    // date was about 3 % of a hit's instructions (`docs/performance.md`, "Large objects").
    let last_modified = || crate::cache::freshness::date_header(res, &header::LAST_MODIFIED);
    if let Some(im) = text(req, &header::IF_MATCH) {
        if !list_matches(&im, etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(ius) = crate::cache::freshness::date_header(req, &header::IF_UNMODIFIED_SINCE)
        && last_modified().is_none_or(|lm| lm > ius)
    {
        return Precondition::Failed;
    }
    if let Some(inm) = text(req, &header::IF_NONE_MATCH) {
        if list_matches(&inm, etag, false) {
            return Precondition::NotModified;
        }
    } else if let Some(ims) = crate::cache::freshness::date_header(req, &header::IF_MODIFIED_SINCE)
        && last_modified().is_some_and(|lm| lm <= ims)
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Which fields of a request that change an answer from a held response it carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Asks {
    /// `If-Match`, `If-None-Match`, `If-Modified-Since` or `If-Unmodified-Since`.
    conditional: bool,
    /// `Range`.
    range: bool,
}

/// Looks for them in one pass over the request's names: most requests carry none, and five
/// lookups by name cost more than comparing the few names a request has.
fn asks(req: &HeaderMap) -> Asks {
    let mut asks = Asks::default();
    for name in req.keys() {
        match *name {
            header::IF_MATCH
            | header::IF_NONE_MATCH
            | header::IF_MODIFIED_SINCE
            | header::IF_UNMODIFIED_SINCE => {
                asks.conditional = true;
            }
            header::RANGE => asks.range = true,
            _ => {}
        }
    }
    asks
}

fn text(h: &HeaderMap, name: &header::HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in h.get_all(name) {
        let s = v.to_str().ok()?;
        match &mut out {
            Some(o) => {
                o.push(',');
                o.push_str(s);
            }
            None => out = Some(s.to_owned()),
        }
    }
    out
}

/// Whether an entity-tag list (or `*`) matches `etag`; strong comparison when `strong`.
fn list_matches(list: &str, etag: Option<&str>, strong: bool) -> bool {
    let Some(etag) = etag.map(str::trim) else { return false };
    if list.trim() == "*" {
        return true;
    }
    let opaque = |t: &str| t.trim().strip_prefix("W/").unwrap_or(t.trim()).to_owned();
    if strong && etag.starts_with("W/") {
        return false;
    }
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .any(|t| if strong { !t.starts_with("W/") && t == etag } else { opaque(t) == opaque(etag) })
}

/// A `304` carrying the fields a 200 would have had that §15.4.5 lists (plus ours).
pub fn not_modified(res: &HeaderMap) -> Response<Body> {
    let mut out = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
        header::AGE,
        header::VIA,
    ] {
        for v in res.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    *r.headers_mut() = out;
    r
}

/// A `412`.
pub fn precondition_failed() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::PRECONDITION_FAILED;
    r
}

/// Answers from a complete body, in memory or in a file: preconditions, then `Range`, then the
/// whole thing.
pub fn complete(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Stored<'_>,
    req: &HeaderMap,
    head_only: bool,
) -> Response<Body> {
    let asks = asks(req);
    if asks.conditional {
        match precondition(req, status, &headers) {
            Precondition::NotModified => return not_modified(&headers),
            Precondition::Failed => return precondition_failed(),
            Precondition::Proceed => {}
        }
    }
    let len = body.len();
    if asks.range
        && status == StatusCode::OK
        && let Some(value) = req.get(header::RANGE).and_then(|v| v.to_str().ok())
        && if_range_holds(req, &headers)
    {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        match range::parse(value, len) {
            Ranges::Parts(parts) => match range::respond(&parts, body, headers, head_only) {
                Ok(partial) => return partial,
                // A multipart answer would outweigh the whole body: send the body.
                Err(h) => headers = h,
            },
            Ranges::Unsatisfiable => return range::unsatisfiable(len, headers),
            Ranges::Full => {}
        }
    }
    headers.insert(header::CONTENT_LENGTH, number(len));
    let mut r = Response::new(if head_only { empty() } else { body.whole() });
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// `If-Range`: the range applies only if the validator still matches (strongly).
pub fn if_range_holds(req: &HeaderMap, res: &HeaderMap) -> bool {
    let Some(v) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else { return true };
    let v = v.trim();
    if v.starts_with('"') || v.starts_with("W/") {
        return list_matches(v, res.get(header::ETAG).and_then(|e| e.to_str().ok()), true);
    }
    match (
        httpdate::parse_http_date(v).ok(),
        crate::cache::freshness::date_header(res, &header::LAST_MODIFIED),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether the client asked for a byte range we would honour on a complete body.
pub fn wants_range(req: &HeaderMap) -> bool {
    req.contains_key(header::RANGE)
}

/// The answer on `health_path` of the client listeners, for load balancers: never cached.
pub fn health() -> Response<Body> {
    let mut res = Response::new(crate::body::full("ok\n"));
    let h = res.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        m
    }

    #[test]
    fn precondition_table() {
        let lm = "Tue, 15 Nov 1994 12:45:26 GMT";
        let later = "Wed, 16 Nov 1994 12:45:26 GMT";
        let earlier = "Mon, 14 Nov 1994 12:45:26 GMT";
        let res = h(&[("etag", "\"v1\""), ("last-modified", lm)]);
        let cases: &[(&[(&str, &str)], Precondition)] = &[
            (&[], Precondition::Proceed),
            (&[("if-none-match", "\"v1\"")], Precondition::NotModified),
            (&[("if-none-match", "W/\"v1\"")], Precondition::NotModified),
            (&[("if-none-match", "\"v0\", \"v1\"")], Precondition::NotModified),
            (&[("if-none-match", "*")], Precondition::NotModified),
            (&[("if-none-match", "\"v2\"")], Precondition::Proceed),
            (&[("if-none-match", "\"v2\""), ("if-modified-since", later)], Precondition::Proceed),
            (&[("if-modified-since", later)], Precondition::NotModified),
            (&[("if-modified-since", lm)], Precondition::NotModified),
            (&[("if-modified-since", earlier)], Precondition::Proceed),
            (&[("if-match", "\"v2\"")], Precondition::Failed),
            (&[("if-match", "\"v1\"")], Precondition::Proceed),
            (&[("if-unmodified-since", earlier)], Precondition::Failed),
        ];
        for (req, want) in cases {
            assert_eq!(precondition(&h(req), StatusCode::OK, &res), *want, "{req:?}");
        }
        assert_eq!(
            precondition(&h(&[("if-none-match", "*")]), StatusCode::NOT_FOUND, &res),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_range() {
        let res = h(&[("etag", "\"v1\""), ("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")]);
        assert!(if_range_holds(&h(&[("if-range", "\"v1\"")]), &res));
        assert!(!if_range_holds(&h(&[("if-range", "\"v0\"")]), &res));
        assert!(!if_range_holds(&h(&[("if-range", "W/\"v1\"")]), &res));
        assert!(if_range_holds(&h(&[("if-range", "Tue, 15 Nov 1994 12:45:26 GMT")]), &res));
    }
}
