//! ListObjectsV2 and ListObjects (v1) over the bucket index.
//!
//! With `encoding-type=url` (which aws-cli, boto3, minio-go and rclone send) keys, prefixes,
//! delimiter, marker and start-after are percent-encoded in the response, everything but
//! unreserved characters and `/`; `+` becomes `%2B` and a space `%20`, which decode the same
//! under `unquote` and `unquote_plus`. Any other `encoding-type` is refused, as on S3.
//!
//! Without it S3 writes names verbatim, and a key holding a character XML 1.0 cannot carry
//! (most C0 controls, U+FFFE, U+FFFF) makes the whole listing unparseable; a carriage return
//! parses but comes back as a line feed. A numeric character reference does not help: `&#x1;`
//! is no more well-formed in XML 1.0 than the raw byte. So when a page would hold such a name
//! the origin answers it URL-encoded anyway and says so with `<EncodingType>url</EncodingType>`,
//! the signal S3 defines for decoding: the document always parses, clients that honour the
//! element (minio-go, rclone) get the right names, and pages without such names are unchanged.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Origin, s3_err, timestamp};
use crate::store::Entry;
use crate::store::listing::{ListQuery, parse_token};

const URL_SAFE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
const MAX_KEYS: i32 = 1000;

/// Encodes `s` for a response when the listing is URL-encoded.
pub(super) fn enc(url: bool, s: String) -> String {
    if url { utf8_percent_encode(&s, URL_SAFE).to_string() } else { s }
}

/// Whether an XML 1.0 parser hands `s` back unchanged when it is written as element text:
/// every character is a legal XML `Char` and none is a carriage return (which parsers turn into
/// a line feed).
pub(super) fn xml_safe(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
}

/// The encoding of a listing's names: URL-encoded when the client asked for it or when one of
/// `names` cannot be written as XML text (see the module comment); verbatim otherwise. Any
/// other requested encoding is `InvalidArgument`, as on S3.
pub(super) fn encoding<'a>(
    asked: Option<&EncodingType>,
    mut names: impl Iterator<Item = &'a str>,
) -> S3Result<Option<EncodingType>> {
    match asked {
        Some(e) if e.as_str() == EncodingType::URL => Ok(Some(e.clone())),
        Some(_) => Err(s3_error!(InvalidArgument, "Invalid Encoding Method specified in Request")),
        None if names.all(xml_safe) => Ok(None),
        None => {
            tracing::debug!("listing holds names XML 1.0 cannot carry: answered URL-encoded");
            Ok(Some(EncodingType::from_static(EncodingType::URL)))
        }
    }
}

fn max_keys(asked: Option<i32>) -> S3Result<usize> {
    match asked {
        None => Ok(MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
    }
}

fn object(url: bool, key: String, e: &Entry) -> Object {
    Object {
        key: Some(enc(url, key)),
        size: i64::try_from(e.size).ok(),
        e_tag: Some(ETag::Strong(e.etag.clone())),
        last_modified: Some(timestamp(e.modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    }
}

impl Origin {
    pub(super) fn do_list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        encoding(i.encoding_type.as_ref(), std::iter::empty())?;
        let max = max_keys(i.max_keys)?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let (after, skip_prefix) = match &i.continuation_token {
            Some(t) => parse_token(t)
                .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))?,
            None => (i.start_after.clone().unwrap_or_default(), None),
        };
        let q = ListQuery {
            prefix: &prefix,
            delimiter: i.delimiter.as_deref(),
            after: (!after.is_empty()).then_some(after),
            skip_prefix,
            max_keys: max,
        };
        let page = bucket.list(&q);
        let key_count = page.objects.len() + page.prefixes.len();
        let names = [&prefix].into_iter().chain(&i.delimiter).chain(&i.start_after);
        let names = names.chain(page.objects.iter().map(|(k, _)| k)).chain(&page.prefixes);
        let encoding_type = encoding(i.encoding_type.as_ref(), names.map(String::as_str))?;
        let url = encoding_type.is_some();
        let output = ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(enc(url, prefix)),
            delimiter: i.delimiter.map(|d| enc(url, d)),
            max_keys: Some(max as i32),
            key_count: i32::try_from(key_count).ok(),
            is_truncated: Some(page.next_token.is_some()),
            continuation_token: i.continuation_token,
            next_continuation_token: page.next_token,
            start_after: i.start_after.map(|s| enc(url, s)),
            encoding_type,
            contents: Some(page.objects.into_iter().map(|(k, e)| object(url, k, &e)).collect()),
            common_prefixes: Some(
                page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(url, p)) }).collect(),
            ),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    pub(super) fn do_list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let bucket = self.store.bucket(&i.bucket).map_err(s3_err)?;
        encoding(i.encoding_type.as_ref(), std::iter::empty())?;
        let max = max_keys(i.max_keys)?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let marker = i.marker.clone().unwrap_or_default();
        // A marker that is a common prefix (v1's NextMarker with a delimiter) skips its keys.
        let skip_prefix = i
            .delimiter
            .as_deref()
            .filter(|d| !d.is_empty() && marker.ends_with(*d) && marker.starts_with(&prefix))
            .map(|_| marker.clone());
        let q = ListQuery {
            prefix: &prefix,
            delimiter: i.delimiter.as_deref(),
            after: (!marker.is_empty()).then(|| marker.clone()),
            skip_prefix,
            max_keys: max,
        };
        let page = bucket.list(&q);
        let truncated = page.next_token.is_some();
        // NextMarker is the last key or common prefix returned, whichever sorts last.
        let last = page
            .objects
            .last()
            .map(|(k, _)| k.clone())
            .into_iter()
            .chain(page.prefixes.last().cloned())
            .max();
        let names = [&prefix, &marker].into_iter().chain(&i.delimiter);
        let names = names.chain(page.objects.iter().map(|(k, _)| k)).chain(&page.prefixes);
        let encoding_type = encoding(i.encoding_type.as_ref(), names.map(String::as_str))?;
        let url = encoding_type.is_some();
        let output = ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(enc(url, prefix)),
            marker: Some(enc(url, marker)),
            delimiter: i.delimiter.map(|d| enc(url, d)),
            max_keys: Some(max as i32),
            is_truncated: Some(truncated),
            next_marker: if truncated { last.map(|l| enc(url, l)) } else { None },
            encoding_type,
            contents: Some(page.objects.into_iter().map(|(k, e)| object(url, k, &e)).collect()),
            common_prefixes: Some(
                page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(url, p)) }).collect(),
            ),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_of_keys() {
        let cases = [
            ("a/b.txt", "a/b.txt"),
            ("with space", "with%20space"),
            ("plus+sign", "plus%2Bsign"),
            ("pct%41", "pct%2541"),
            ("é", "%C3%A9"),
            ("~_-.", "~_-."),
        ];
        for (raw, want) in cases {
            assert_eq!(enc(true, raw.to_owned()), want);
            assert_eq!(enc(false, raw.to_owned()), raw);
        }
    }

    #[test]
    fn names_xml_cannot_carry() {
        let cases = [
            ("plain/key.txt", true),
            ("tab\tand\nnewline", true),
            ("ünï©ødé ✓ 😀", true),
            ("<&>\"'", true),
            ("\u{7f}\u{85}\u{9f}", true),
            ("\u{FFFD}", true),
            ("cr\r", false),
            ("nul\0", false),
            ("bell\u{7}", false),
            ("vt\u{b}ff\u{c}", false),
            ("esc\u{1b}[31m", false),
            ("us\u{1f}", false),
            ("\u{FFFE}", false),
            ("\u{FFFF}", false),
        ];
        for (name, safe) in cases {
            assert_eq!(xml_safe(name), safe, "{name:?}");
        }
    }

    #[test]
    fn encoding_is_url_when_asked_or_needed() {
        let url = EncodingType::from_static(EncodingType::URL);
        let names = |v: &'static [&'static str]| v.iter().copied();
        assert_eq!(encoding(None, names(&["a", "b c"])).ok(), Some(None));
        assert_eq!(encoding(Some(&url), names(&["a"])).ok(), Some(Some(url.clone())));
        assert_eq!(encoding(None, names(&["a", "b\u{1}"])).ok(), Some(Some(url.clone())));
        assert_eq!(encoding(None, names(&["a\r\n"])).ok(), Some(Some(url.clone())));
        let other = EncodingType::from("base64".to_owned());
        let err = encoding(Some(&other), names(&["a"])).err().map(|e| e.code().as_str().to_owned());
        assert_eq!(err.as_deref(), Some("InvalidArgument"));
    }
}
