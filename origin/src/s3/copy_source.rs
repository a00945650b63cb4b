//! The source of a server-side copy: `x-amz-copy-source` (parsed by s3s, checked here) and
//! `x-amz-copy-source-range` (parsed here), with the errors S3 gives for each.
//!
//! S3 accepts exactly one form of copy range, `bytes=first-last` with both offsets and
//! `first <= last`; the open and suffix forms a GET's `Range` allows (`bytes=5-`, `bytes=-5`)
//! are refused, as is anything after the last digit. A range reaching past the source's end is
//! refused rather than clamped (`Range specified is not valid for source object of size: N`),
//! unlike a GET's, so a client never gets a shorter part than it asked for.

use std::ops::Range;

use s3s::dto::CopySource;
use s3s::{S3Error, S3Result, s3_error};

/// S3's limit for one copy source (CopyObject) or one copied part (UploadPartCopy).
pub const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;

const RANGE_FORM: &str = "The x-amz-copy-source-range value must be of the form bytes=first-last where first and \
                          last are the zero-based offsets of the first and last bytes to copy";

/// The bucket and key of a copy source. Access points and outposts are not served here; a
/// version other than `null` (the only version of an object in an unversioned bucket) is
/// refused as S3 refuses a malformed one.
pub fn bucket_and_key(source: &CopySource) -> S3Result<(&str, &str)> {
    let CopySource::Bucket { bucket, key, version_id } = source else {
        return Err(s3_error!(NotImplemented, "copying from an access point or outpost is not supported"));
    };
    if key.is_empty() {
        return Err(s3_error!(
            InvalidArgument,
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
        ));
    }
    if version_id.as_deref().is_some_and(|v| v != "null") {
        return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
    }
    Ok((bucket, key))
}

/// Parses `bytes=first-last` into the inclusive offsets; `None` for any other text.
pub fn parse_range(header: &str) -> Option<(u64, u64)> {
    let (first, last) = header.strip_prefix("bytes=")?.split_once('-')?;
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u64>().ok()
    };
    let (first, last) = (number(first)?, number(last)?);
    (first <= last).then_some((first, last))
}

/// The bytes of a source of `size` bytes that a copy takes: the range asked for, or all of it.
pub fn resolve(range: Option<&str>, size: u64) -> S3Result<Range<u64>> {
    let span = match range {
        None => 0..size,
        Some(header) => {
            let (first, last) =
                parse_range(header).ok_or_else(|| s3_error!(InvalidArgument, "{RANGE_FORM}"))?;
            if last >= size {
                return Err(s3_error!(
                    InvalidArgument,
                    "Range specified is not valid for source object of size: {size}"
                ));
            }
            first..last + 1
        }
    };
    if span.end - span.start > MAX_COPY {
        return Err(too_large());
    }
    Ok(span)
}

/// The error S3 gives for a copy source over 5 GiB.
pub fn too_large() -> S3Error {
    s3_error!(
        InvalidRequest,
        "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_COPY}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_closed_ranges_parse() {
        let check =
            |input: &str, expected: Option<(u64, u64)>| assert_eq!(parse_range(input), expected, "{input:?}");
        check("bytes=0-0", Some((0, 0)));
        check("bytes=5-9", Some((5, 9)));
        check("bytes=007-10", Some((7, 10)));
        check("bytes=0-18446744073709551615", Some((0, u64::MAX)));
        for bad in [
            "",
            "bytes=",
            "bytes=-5",
            "bytes=5-",
            "bytes=9-5",
            "bytes=1-2,4-5",
            "bytes= 1-2",
            "bytes=1-2 ",
            "bytes=+1-2",
            "bytes=1--2",
            "Bytes=1-2",
            "items=1-2",
            "bytes=0-18446744073709551616",
            "bytes=1-٣",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn ranges_resolve_against_the_source_size() {
        assert_eq!(resolve(None, 10).ok(), Some(0..10));
        assert_eq!(resolve(Some("bytes=2-9"), 10).ok(), Some(2..10));
        let err = resolve(Some("bytes=2-10"), 10).expect_err("past the end");
        assert_eq!(err.code().as_str(), "InvalidArgument");
        assert_eq!(err.message(), Some("Range specified is not valid for source object of size: 10"));
        let err = resolve(Some("bytes=-3"), 10).expect_err("suffix");
        assert!(err.message().is_some_and(|m| m.starts_with("The x-amz-copy-source-range value must be")));
        assert_eq!(resolve(None, MAX_COPY + 1).expect_err("too big").code().as_str(), "InvalidRequest");
        assert!(resolve(Some(&format!("bytes=1-{MAX_COPY}")), MAX_COPY + 1).is_ok());
    }

    #[test]
    fn copy_sources_name_a_bucket_key_and_no_other_version() {
        let parse = |h: &str| CopySource::parse(h).expect("parses");
        assert_eq!(bucket_and_key(&parse("/src/a%20b/c.bin")).ok(), Some(("src", "a b/c.bin")));
        assert_eq!(bucket_and_key(&parse("src/k?versionId=null")).ok(), Some(("src", "k")));
        assert_eq!(
            bucket_and_key(&parse("src/k?versionId=3HL4kqtJ")).expect_err("v").code().as_str(),
            "InvalidArgument"
        );
        assert_eq!(bucket_and_key(&parse("src/")).expect_err("no key").code().as_str(), "InvalidArgument");
    }

    /// How botocore (boto3, aws-cli) writes `x-amz-copy-source`: `bucket/key`, the key
    /// percent-encoded except `/` and `~`.
    fn as_botocore_sends(bucket: &str, key: &str) -> String {
        const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~')
            .remove(b'/');
        format!("{bucket}/{}", percent_encoding::utf8_percent_encode(key, KEEP))
    }

    proptest! {
        #[test]
        fn every_closed_range_round_trips(first in any::<u64>(), len in any::<u64>()) {
            let last = first.saturating_add(len);
            prop_assert_eq!(parse_range(&format!("bytes={first}-{last}")), Some((first, last)));
        }

        #[test]
        fn hostile_range_text_never_panics_and_parses_only_the_closed_form(s in "\\PC{0,40}|bytes=[0-9 ,+-]{0,30}") {
            if let Some((first, last)) = parse_range(&s) {
                prop_assert!(first <= last);
                let rest = s.strip_prefix("bytes=").unwrap_or_default();
                prop_assert!(rest.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
                prop_assert_eq!(rest.matches('-').count(), 1);
            }
            for size in [0, 1, 100] {
                if let Ok(span) = resolve(Some(&s), size) {
                    prop_assert!(span.start < span.end && span.end <= size);
                }
            }
        }

        #[test]
        fn every_key_a_client_encodes_names_the_same_key(key in "\\PC{1,250}") {
            let header = as_botocore_sends("src-bucket", &key);
            let source = CopySource::parse(&header).expect("a client's copy source parses");
            prop_assert_eq!(bucket_and_key(&source).ok(), Some(("src-bucket", key.as_str())));
        }

        #[test]
        fn hostile_copy_sources_are_refused_or_split_where_the_header_says(
            header in "/?[a-z0-9.-]{0,8}(/\\PC{0,40})?(\\?versionId=\\PC{0,8})?"
        ) {
            if let Some((bucket, key)) = CopySource::parse(&header).ok().as_ref().and_then(|s| bucket_and_key(s).ok()) {
                let path = header.split("?versionId=").next().unwrap_or_default();
                let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
                prop_assert_eq!(decoded.strip_prefix('/').unwrap_or(&decoded), format!("{bucket}/{key}"));
                prop_assert!(!key.is_empty());
            }
        }
    }
}
