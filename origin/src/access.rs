//! Who may do what: SigV4 credentials, anonymous reads of public buckets, and which `Host`
//! headers name a bucket (virtual-hosted style).
//!
//! s3s verifies signatures (headers, presigned URLs with their expiry, unsigned and streaming
//! payloads) and compares them in constant time; this module supplies the secret for an access
//! key and the policy applied after authentication:
//!
//! - a request signed with the configured credentials may do everything;
//! - an anonymous request may `GetObject`, `HeadObject`, `HeadBucket` and `ListObjects(V2)` on a
//!   bucket configured `public`. Listing is allowed because the control plane lists a public
//!   bucket anonymously to prewarm edges from it; it is also what S3's "public read" bucket
//!   policy template grants together with reads (`s3:ListBucket`);
//! - everything else is refused with `AccessDenied`.
//!
//! s3s accepts any `X-Amz-Expires` that fits a `u32` (136 years); S3 refuses more than seven
//! days. [`check_presigned_expiry`] applies S3's rule before s3s sees the request, and the same
//! week to SigV2 presigned URLs (whose `Expires` is a time, unbounded on S3), so that no
//! presigned URL, whichever signature version made it, outlives a week.
//!
//! Without configured credentials no signature can verify (every signed request gets
//! `InvalidAccessKeyId`), so only anonymous reads of public buckets work: an origin is never
//! writable without a secret.

use std::collections::HashSet;

use percent_encoding::percent_decode_str;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};
use subtle::ConstantTimeEq;

/// The one access key the origin knows, if any.
#[derive(Debug)]
pub struct Keys {
    pair: Option<(String, String)>,
}

impl Keys {
    /// Credentials from the configuration (`None` when unset).
    pub fn new(pair: Option<(String, String)>) -> Self {
        Self { pair }
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match &self.pair {
            Some((id, secret)) if bool::from(id.as_bytes().ct_eq(access_key.as_bytes())) => {
                Ok(SecretKey::from(secret.as_str()))
            }
            _ => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
        }
    }
}

/// The longest a presigned URL may stay valid, in seconds: seven days, S3's limit for SigV4.
pub const MAX_PRESIGNED_EXPIRY: u64 = 604_800;

/// Refuses a SigV4 presigned URL (a query with `X-Amz-Signature`) whose `X-Amz-Expires` S3
/// would refuse, with S3's `AuthorizationQueryParametersError` (400) and its messages: above
/// [`MAX_PRESIGNED_EXPIRY`], negative, or not a number. A SigV2 presigned URL (`Signature`) whose
/// `Expires` lies more than [`MAX_PRESIGNED_EXPIRY`] after `now` (Unix seconds) is refused the
/// same way; S3 has no limit there, but without one the SigV4 limit would be one parameter away.
/// Parameter names and values are URL-decoded as s3s decodes them, so an encoded name
/// (`X-Amz-%45xpires`) cannot slip past. Expired URLs and an expiry of 0 are left to s3s, which
/// answers `403 AccessDenied` ("Request has expired") as S3 does.
pub fn check_presigned_expiry(query: Option<&str>, now: u64) -> S3Result<()> {
    let Some(query) = query else { return Ok(()) };
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(name), form_decode(value))
        })
        .collect();
    let has = |name: &str| params.iter().any(|(n, _)| n == name);
    let values = |name: &'static str| params.iter().filter(move |(n, _)| n == name).map(|(_, v)| v);
    let refuse =
        |msg: &'static str| Err(S3Error::with_message(S3ErrorCode::AuthorizationQueryParametersError, msg));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !has("X-Amz-Signature") {
        if has("Signature") {
            // SigV2: `Expires` is a Unix time; what is not a number is left to s3s to refuse.
            let limit = now.saturating_add(MAX_PRESIGNED_EXPIRY);
            if values("Expires").any(|v| digits(v) && !v.parse::<u64>().is_ok_and(|t| t <= limit)) {
                return refuse("Expires must be at most a week (604800 seconds) from now");
            }
        }
        return Ok(());
    }
    for value in values("X-Amz-Expires") {
        if let Some(negative) = value.strip_prefix('-')
            && digits(negative)
        {
            return refuse("X-Amz-Expires must be non-negative");
        }
        if !digits(value) {
            return refuse("X-Amz-Expires should be a number");
        }
        // All digits: too many of them is too long, like any value above the limit.
        if !value.parse::<u64>().is_ok_and(|secs| secs <= MAX_PRESIGNED_EXPIRY) {
            return refuse("X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds");
        }
    }
    Ok(())
}

/// Decodes one `application/x-www-form-urlencoded` name or value (`+` is a space), invalid
/// UTF-8 replaced, as s3s (`serde_urlencoded`) decodes the query.
fn form_decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// Operations an anonymous client may perform on a public bucket.
const PUBLIC_OPS: &[&str] = &["GetObject", "HeadObject", "HeadBucket", "ListObjects", "ListObjectsV2"];

/// The access policy: signed requests may do anything, anonymous ones only read public buckets.
#[derive(Debug)]
pub struct Policy {
    public: HashSet<String>,
}

impl Policy {
    /// A policy with these public buckets.
    pub fn new(public: HashSet<String>) -> Self {
        Self { public }
    }

    /// Whether an anonymous `op` on `path` is allowed.
    pub fn allows_anonymous(&self, op: &str, path: &S3Path) -> bool {
        let bucket = match path {
            S3Path::Root => return false,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket,
        };
        PUBLIC_OPS.contains(&op) && self.public.contains(&**bucket)
    }
}

#[async_trait::async_trait]
impl S3Access for Policy {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some() || self.allows_anonymous(cx.s3_op().name(), cx.s3_path()) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "Access Denied"))
        }
    }
}

/// Virtual-hosted-style addressing under one domain: `BUCKET.DOMAIN` names a bucket, any other
/// host (the domain itself, `localhost`, an IP) means path-style.
#[derive(Debug)]
pub struct Domain {
    suffix: String,
}

impl Domain {
    /// Buckets are subdomains of `domain` (e.g. `s3.local`).
    pub fn new(domain: &str) -> Self {
        Self { suffix: format!(".{}", domain.trim_matches('.').to_ascii_lowercase()) }
    }

    /// The bucket named by `host` (with or without a port), if any.
    pub fn bucket_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        if name.len() > self.suffix.len() && name.to_ascii_lowercase().ends_with(&self.suffix) {
            Some(&name[..name.len() - self.suffix.len()])
        } else {
            None
        }
    }
}

impl S3Host for Domain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket_of(host) {
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket.to_ascii_lowercase()),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_to_buckets() {
        let d = Domain::new("s3.local");
        let cases = [
            ("demo.s3.local", Some("demo")),
            ("demo.s3.local:9000", Some("demo")),
            ("a.b.s3.local", Some("a.b")),
            ("DEMO.S3.LOCAL", Some("DEMO")),
            ("s3.local", None),
            ("s3.local:9000", None),
            ("localhost:9000", None),
            ("evils3.local", None),
        ];
        for (host, want) in cases {
            assert_eq!(d.bucket_of(host), want, "{host}");
        }
    }

    #[test]
    fn presigned_expiry_follows_s3() {
        const SIG: &str = "X-Amz-Signature=ab";
        const NOW: u64 = 1_796_515_476;
        let check = |query: &str, want: Option<&str>| {
            let got = check_presigned_expiry(Some(query), NOW).err();
            if let Some(e) = &got {
                assert_eq!(e.code(), &S3ErrorCode::AuthorizationQueryParametersError, "{query}");
            }
            assert_eq!(got.as_ref().and_then(|e| e.message()), want, "{query}");
        };
        let week = Some("X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds");
        let negative = Some("X-Amz-Expires must be non-negative");
        let nan = Some("X-Amz-Expires should be a number");
        let v2week = Some("Expires must be at most a week (604800 seconds) from now");
        let cases = [
            (format!("X-Amz-Expires=1&{SIG}"), None),
            (format!("X-Amz-Expires=0&{SIG}"), None),
            (format!("X-Amz-Expires=604800&{SIG}"), None),
            (format!("X-Amz-Expires=0000604800&{SIG}"), None),
            (format!("X-Amz-Expires=604801&{SIG}"), week),
            (format!("X-Amz-Expires=4294967295&{SIG}"), week),
            (format!("X-Amz-Expires=99999999999999999999999&{SIG}"), week),
            (format!("{SIG}&X-Amz-Expires=3600&X-Amz-Expires=604801"), week),
            (format!("X-Amz-%45xpires=604801&{SIG}"), week),
            ("X-Amz-Expires=%36%30%34%38%30%31&X-Amz-Signatur%65=ab".to_owned(), week),
            (format!("X-Amz-Expires=-1&{SIG}"), negative),
            (format!("X-Amz-Expires=-604801&{SIG}"), negative),
            (format!("X-Amz-Expires=&{SIG}"), nan),
            (format!("X-Amz-Expires&{SIG}"), nan),
            (format!("X-Amz-Expires=abc&{SIG}"), nan),
            (format!("X-Amz-Expires=1.5&{SIG}"), nan),
            (format!("X-Amz-Expires=+60&{SIG}"), nan),
            (format!("X-Amz-Expires=%2060&{SIG}"), nan),
            (format!("X-Amz-Expires=-&{SIG}"), nan),
            (format!("X-Amz-Expires=0x10&{SIG}"), nan),
            // Not a SigV4 presigned URL: s3s does not read X-Amz-Expires, so neither do we.
            ("X-Amz-Expires=99999999".to_owned(), None),
            ("x-amz-expires=99999999&x-amz-signature=ab".to_owned(), None),
            (String::new(), None),
            // SigV2: Expires is a Unix time, at most a week from now.
            (format!("AWSAccessKeyId=a&Signature=x&Expires={}", NOW + 604_800), None),
            (format!("AWSAccessKeyId=a&Signature=x&Expires={}", NOW - 1), None),
            ("AWSAccessKeyId=a&Signature=x&Expires=soon".to_owned(), None),
            ("AWSAccessKeyId=a&Signature=x".to_owned(), None),
            (format!("AWSAccessKeyId=a&Signature=x&Expires={}", NOW + 604_801), v2week),
            ("AWSAccessKeyId=a&Signature=x&Expires=99999999999999999999999".to_owned(), v2week),
            (format!("Signature=x&Expires=0&Expires={}", NOW + 604_801), v2week),
            (format!("Signatur%65=x&%45xpires={}", NOW + 604_801), v2week),
            // SigV4 wins when both are present, as in s3s.
            (format!("X-Amz-Expires=60&{SIG}&Signature=x&Expires={}", NOW + 604_801), None),
        ];
        for (query, want) in &cases {
            check(query, *want);
        }
        assert!(check_presigned_expiry(None, NOW).is_ok());
    }

    #[test]
    fn anonymous_reads_only_on_public_buckets() {
        let p = Policy::new(["pub".to_owned()].into());
        let obj = |b: &str| S3Path::Object { bucket: b.into(), key: "k".into() };
        let bucket = |b: &str| S3Path::Bucket { bucket: b.into() };
        assert!(p.allows_anonymous("GetObject", &obj("pub")));
        assert!(p.allows_anonymous("HeadObject", &obj("pub")));
        assert!(p.allows_anonymous("ListObjectsV2", &bucket("pub")));
        assert!(!p.allows_anonymous("PutObject", &obj("pub")));
        assert!(!p.allows_anonymous("DeleteObject", &obj("pub")));
        assert!(!p.allows_anonymous("DeleteBucket", &bucket("pub")));
        assert!(!p.allows_anonymous("GetObject", &obj("private")));
        assert!(!p.allows_anonymous("ListBuckets", &S3Path::Root));
    }
}
