//! Flexible checksums (`x-amz-checksum-crc32`, `-crc32c`, `-crc64nvme`, `-sha1`, `-sha256`):
//! verified on every upload that declares one, whether in a header or in the trailer of an
//! aws-chunked body (what boto3 and aws-cli send by default). A mismatch is `BadDigest` and
//! nothing is stored.

use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::Checksum;
use s3s::{S3Result, TrailingHeaders, s3_error};

const ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// Header name carrying the checksum of `alg`.
fn header(alg: &str) -> String {
    format!("x-amz-checksum-{alg}")
}

/// Whether the request declares a checksum of `alg`, in a header or announced in `x-amz-trailer`.
fn declared(headers: &http::HeaderMap, alg: &str) -> bool {
    let name = header(alg);
    headers.contains_key(name.as_str())
        || headers
            .get_all("x-amz-trailer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(&name))
}

/// A hasher computing every checksum the request declares (none if it declares none).
pub fn hasher_for(headers: &http::HeaderMap) -> ChecksumHasher {
    let mut h = ChecksumHasher::default();
    for alg in ALGORITHMS {
        if declared(headers, alg) {
            match alg {
                "crc32" => h.crc32 = Some(s3s::crypto::Crc32::new()),
                "crc32c" => h.crc32c = Some(s3s::crypto::Crc32c::new()),
                "crc64nvme" => h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
                "sha1" => h.sha1 = Some(s3s::crypto::Sha1::new()),
                _ => h.sha256 = Some(s3s::crypto::Sha256::new()),
            }
        }
    }
    h
}

fn computed<'a>(c: &'a Checksum, alg: &str) -> Option<&'a str> {
    match alg {
        "crc32" => c.checksum_crc32.as_deref(),
        "crc32c" => c.checksum_crc32c.as_deref(),
        "crc64nvme" => c.checksum_crc64nvme.as_deref(),
        "sha1" => c.checksum_sha1.as_deref(),
        _ => c.checksum_sha256.as_deref(),
    }
}

/// Compares what the body hashed to with what the client declared (header or trailer).
pub fn verify(
    sums: &Checksum,
    headers: &http::HeaderMap,
    trailers: Option<&TrailingHeaders>,
) -> S3Result<()> {
    for alg in ALGORITHMS {
        let Some(ours) = computed(sums, alg) else { continue };
        let name = header(alg);
        let theirs =
            headers.get(name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned).or_else(|| {
                trailers.and_then(|t| {
                    t.read(|h| h.get(name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned))
                })?
            });
        match theirs {
            Some(theirs) if theirs.trim() != ours => {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    alg.to_uppercase()
                ));
            }
            Some(_) => {}
            None => return Err(s3_error!(InvalidRequest, "the declared {name} checksum was not sent")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_checksums_are_checked() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amz-checksum-crc32", http::HeaderValue::from_static("DUoRhQ=="));
        let mut h = hasher_for(&headers);
        h.update(b"hello world");
        assert!(verify(&h.finalize(), &headers, None).is_ok(), "crc32 of hello world");

        let mut h = hasher_for(&headers);
        h.update(b"hello worle");
        let err = verify(&h.finalize(), &headers, None).expect_err("mismatch");
        assert_eq!(err.code().as_str(), "BadDigest");

        let none = http::HeaderMap::new();
        let mut h = hasher_for(&none);
        h.update(b"anything");
        assert!(verify(&h.finalize(), &none, None).is_ok(), "nothing declared, nothing checked");
    }

    #[test]
    fn trailer_announcements_enable_a_checksum() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amz-trailer", http::HeaderValue::from_static("x-amz-checksum-crc64nvme"));
        let h = hasher_for(&headers);
        assert!(h.crc64nvme.is_some() && h.crc32.is_none());
    }
}
