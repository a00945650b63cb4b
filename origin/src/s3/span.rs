//! Which bytes a GET or HEAD answers with: the whole object, a `Range` (honouring `If-Range`),
//! or one part (`?partNumber=`), and the headers that say so.
//!
//! As on S3: a part is a ranged answer (206 with `Content-Range`), also for an object not
//! uploaded in parts, whose only part is 1; `x-amz-mp-parts-count` comes with a part of a
//! multipart object and never with the whole object; the ETag stays the object's. A part past
//! the last is `416 InvalidPartNumber`; asking for a range and a part at once is
//! `400 InvalidRequest`. HEAD answers exactly as GET would, without the body.

use std::ops::Range;
use std::time::{Duration, UNIX_EPOCH};

use s3s::dto::Range as HttpRange;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use crate::store::ObjectMeta;
use crate::store::multipart::MAX_PART_NUMBER;

/// The bytes to send and how to describe them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub bytes: Range<u64>,
    /// Set for a ranged answer (206): `bytes first-last/size`.
    pub content_range: Option<String>,
    /// Set when a part of a multipart object was asked for.
    pub parts_count: Option<i32>,
}

/// Decides the span of `meta` a request asks for.
pub fn requested(
    meta: &ObjectMeta,
    range: Option<&HttpRange>,
    part_number: Option<i32>,
    if_range: Option<&http::HeaderValue>,
) -> S3Result<Span> {
    if let Some(n) = part_number {
        if range.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        let n = u32::try_from(n).ok().filter(|n| (1..=MAX_PART_NUMBER).contains(n)).ok_or_else(|| {
            s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive")
        })?;
        let (bytes, count) = meta.part_range(n).ok_or_else(invalid_part_number)?;
        // A zero-byte part (only an empty object has one) has no byte range to name.
        let content_range = (bytes.end > bytes.start)
            .then(|| format!("bytes {}-{}/{}", bytes.start, bytes.end - 1, meta.size));
        let parts_count = meta.parts.is_some().then(|| i32::try_from(count).unwrap_or(i32::MAX));
        return Ok(Span { bytes, content_range, parts_count });
    }
    let whole = Span { bytes: 0..meta.size, content_range: None, parts_count: None };
    let Some(range) = range.filter(|_| range_applies(meta, if_range)) else { return Ok(whole) };
    let bytes = range.check(meta.size).map_err(|_| {
        s3_error!(InvalidRange, "The requested range is not satisfiable (object size {})", meta.size)
    })?;
    let content_range = Some(format!("bytes {}-{}/{}", bytes.start, bytes.end - 1, meta.size));
    Ok(Span { bytes, content_range, parts_count: None })
}

/// If-Range (RFC 9110 §13.1.5; not parsed by s3s): a range of another version would splice two
/// bodies, so a validator that no longer matches means the whole object.
fn range_applies(meta: &ObjectMeta, if_range: Option<&http::HeaderValue>) -> bool {
    let Some(v) = if_range.and_then(|v| v.to_str().ok()) else { return if_range.is_none() };
    let v = v.trim();
    if v.starts_with('"') {
        v.trim_matches('"') == meta.etag
    } else {
        httpdate::parse_http_date(v)
            .is_ok_and(|t| t == UNIX_EPOCH + Duration::from_secs(meta.modified_ms / 1000))
    }
}

fn invalid_part_number() -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    err.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart() -> ObjectMeta {
        ObjectMeta {
            size: 12,
            etag: "e-3".into(),
            parts: Some(3),
            part_sizes: vec![5, 5, 2],
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_part_is_a_ranged_answer_with_the_part_count() {
        let span = requested(&multipart(), None, Some(2), None).expect("part 2");
        assert_eq!(
            span,
            Span { bytes: 5..10, content_range: Some("bytes 5-9/12".into()), parts_count: Some(3) }
        );
        let single = ObjectMeta { size: 4, etag: "e".into(), ..ObjectMeta::default() };
        let span = requested(&single, None, Some(1), None).expect("part 1 of a plain object");
        assert_eq!(span, Span { bytes: 0..4, content_range: Some("bytes 0-3/4".into()), parts_count: None });
    }

    #[test]
    fn bad_part_numbers_get_s3s_errors() {
        let code = |n: i32| requested(&multipart(), None, Some(n), None).expect_err("refused");
        let err = code(4);
        assert_eq!(
            (err.code().as_str(), err.status_code()),
            ("InvalidPartNumber", Some(http::StatusCode::RANGE_NOT_SATISFIABLE))
        );
        for n in [0, -1, 10_001, i32::MAX] {
            assert_eq!(code(n).code().as_str(), "InvalidArgument", "{n}");
        }
        let range = HttpRange::Int { first: 0, last: Some(1) };
        let err = requested(&multipart(), Some(&range), Some(1), None).expect_err("both");
        assert_eq!(err.code().as_str(), "InvalidRequest");
    }

    #[test]
    fn ranges_honour_if_range() {
        let meta = multipart();
        let range = HttpRange::Int { first: 2, last: None };
        let span = requested(&meta, Some(&range), None, None).expect("range");
        assert_eq!(span.content_range.as_deref(), Some("bytes 2-11/12"));
        let stale = http::HeaderValue::from_static("\"other\"");
        assert_eq!(requested(&meta, Some(&range), None, Some(&stale)).expect("whole").bytes, 0..12);
        let past = HttpRange::Int { first: 12, last: None };
        assert_eq!(
            requested(&meta, Some(&past), None, None).expect_err("416").code().as_str(),
            "InvalidRange"
        );
    }
}
