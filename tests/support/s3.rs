//! S3: start `stratus origin` with credentials and buckets, and build real S3 clients
//! (`object_store`) against it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, RetryConfig};

use crate::support::process::{self, Proc};

/// Credentials every test origin is started with.
pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key-0123456789";

/// A bucket in the origin's configuration.
#[derive(Clone, Copy, Debug)]
pub struct BucketSpec<'a> {
    pub name: &'a str,
    pub public: bool,
    pub cache_control: Option<&'a str>,
}

/// A private bucket.
pub fn private(name: &str) -> BucketSpec<'_> {
    BucketSpec { name, public: false, cache_control: None }
}

/// A public bucket.
pub fn public<'a>(name: &'a str, cache_control: Option<&'a str>) -> BucketSpec<'a> {
    BucketSpec { name, public: true, cache_control }
}

/// A running origin and its data directory.
pub struct Origin {
    pub proc: Proc,
    pub url: String,
    pub data: PathBuf,
    /// Holds the temporary directory for the test's lifetime.
    pub dir: Arc<tempfile::TempDir>,
}

/// Extra settings for [`start_with`].
#[derive(Default)]
pub struct Options<'a> {
    pub notify: Option<&'a str>,
    pub token: Option<&'a str>,
    pub domain: Option<&'a str>,
    /// Start without STRATUS_ACCESS_KEY / STRATUS_SECRET_KEY.
    pub no_credentials: bool,
    /// `multipart_expiry`, e.g. `"3s"`.
    pub multipart_expiry: Option<&'a str>,
}

/// Starts an origin with these buckets in a fresh temporary directory.
pub fn start(buckets: &[BucketSpec<'_>]) -> Origin {
    start_with(buckets, &Options::default())
}

/// Starts an origin with these buckets and options in a fresh temporary directory.
pub fn start_with(buckets: &[BucketSpec<'_>], opts: &Options<'_>) -> Origin {
    let dir = Arc::new(process::tempdir());
    start_in(dir, buckets, opts)
}

/// Starts an origin over `dir/data` (reusing what an earlier run left there).
pub fn start_in(dir: Arc<tempfile::TempDir>, buckets: &[BucketSpec<'_>], opts: &Options<'_>) -> Origin {
    let data = dir.path().join("data");
    let mut toml = format!("[origin]\nlisten = \"127.0.0.1:0\"\ndata = {:?}\n", data.display().to_string());
    if let Some(n) = opts.notify {
        toml.push_str(&format!("notify = {n:?}\n"));
    }
    if let Some(d) = opts.domain {
        toml.push_str(&format!("domain = {d:?}\n"));
    }
    if let Some(e) = opts.multipart_expiry {
        toml.push_str(&format!("multipart_expiry = {e:?}\n"));
    }
    for b in buckets {
        toml.push_str(&format!("\n[[origin.buckets]]\nname = {:?}\npublic = {}\n", b.name, b.public));
        if let Some(cc) = b.cache_control {
            toml.push_str(&format!("cache_control = {cc:?}\n"));
        }
    }
    let config = process::write_file(dir.path(), "origin.toml", &toml);
    let mut cmd = process::stratus();
    cmd.arg("origin").arg("--config").arg(&config);
    if !opts.no_credentials {
        cmd.env("STRATUS_ACCESS_KEY", ACCESS_KEY).env("STRATUS_SECRET_KEY", SECRET_KEY);
    }
    if let Some(t) = opts.token {
        cmd.env("STRATUS_TOKEN", t);
    }
    let proc = Proc::start(cmd, &["origin s3"]);
    let url = proc.url("origin s3");
    Origin { proc, url, data, dir }
}

/// An `object_store` S3 client for `bucket` with the test credentials and no retries (so a
/// failure shows as one).
pub fn client(url: &str, bucket: &str) -> AmazonS3 {
    client_with(url, bucket, ACCESS_KEY, SECRET_KEY)
}

/// An `object_store` S3 client with the given credentials.
pub fn client_with(url: &str, bucket: &str, access: &str, secret: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(url)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_access_key_id(access)
        .with_secret_access_key(secret)
        .with_virtual_hosted_style_request(false)
        .with_retry(RetryConfig { max_retries: 0, ..RetryConfig::default() })
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .expect("object_store client")
}

/// An `object_store` client that sends no signature at all.
pub fn anonymous(url: &str, bucket: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(url)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_skip_signature(true)
        .with_virtual_hosted_style_request(false)
        .with_retry(RetryConfig { max_retries: 0, ..RetryConfig::default() })
        .build()
        .expect("object_store client")
}

/// `len` bytes of a deterministic pseudo-random pattern (xorshift), distinct per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The S3 error code in an XML error body, e.g. `NoSuchKey`.
pub fn error_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(body[start..end].to_owned())
}

/// `s` percent-encoded as S3 canonicalises a path: everything but unreserved characters and `/`.
pub fn encode_path(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// `s` with `%XX` escapes decoded (as boto3's `unquote`).
pub fn decode_url(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8().expect("UTF-8 after decoding").into_owned()
}

/// Sends `method url` signed with the test credentials (SigV4 in headers, `UNSIGNED-PAYLOAD`):
/// a raw request for keys and queries a high-level client will not send. `url`'s path must be
/// encoded as S3 canonicalises it ([`encode_path`]).
pub async fn send_signed(method: http::Method, url: &str, body: Vec<u8>) -> reqwest::Response {
    send_signed_with(method, url, &[], body).await
}

/// Like [`send_signed`], with extra `headers` (signed too, as SigV4 wants every `x-amz-*`).
pub async fn send_signed_with(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    use object_store::aws::{AwsAuthorizer, AwsCredential};
    let credential =
        AwsCredential { key_id: ACCESS_KEY.to_owned(), secret_key: SECRET_KEY.to_owned(), token: None };
    let mut req = http::Request::builder()
        .method(method.clone())
        .uri(url)
        .body(object_store::client::HttpRequestBody::from(body.clone()))
        .expect("request");
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        req.headers_mut().insert(name, http::HeaderValue::from_str(value).expect("header value"));
    }
    AwsAuthorizer::new(&credential, "s3", "us-east-1")
        .with_sign_payload(false)
        .try_authorize(&mut req, None)
        .expect("sign");
    let mut out = reqwest::Client::new().request(method, url).body(body);
    for (name, value) in req.headers() {
        out = out.header(name, value);
    }
    out.send().await.expect("send")
}

/// The text of every element at the end of `path` (e.g. `["Contents", "Key"]`) in `xml`, after
/// checking the document is well-formed XML 1.0: only characters XML 1.0 allows, no carriage
/// return (a parser would hand it back as a line feed), and properly nested elements with
/// known entities. quick-xml does not check characters itself, hence the first check; Python's
/// expat, Go's `encoding/xml` and Java's parsers do and refuse the whole document.
pub fn xml_texts(xml: &str, path: &[&str]) -> Vec<String> {
    use quick_xml::events::Event;
    let bad = xml.char_indices().find(
        |&(_, c)| !matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..),
    );
    assert!(bad.is_none(), "{bad:?} cannot appear in XML 1.0: {xml:?}");
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut at: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut found = Vec::new();
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("not well-formed: {e}: {xml:?}")) {
            Event::Start(e) => {
                at.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().expect("text")),
            Event::GeneralRef(r) => match r.resolve_char_ref().expect("character reference") {
                Some(c) => text.push(c),
                None => {
                    let name = r.decode().expect("entity");
                    text.push_str(quick_xml::escape::resolve_xml_entity(&name).expect("known entity"));
                }
            },
            Event::End(_) => {
                if at.ends_with(&path.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()) {
                    found.push(std::mem::take(&mut text));
                }
                at.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(at.is_empty(), "unclosed elements {at:?}: {xml:?}");
    found
}

/// Runs a Python script of `tests/smoke/` (boto3 and aws-cli, `pip install awscli boto3`)
/// against the origin at `url` with the test credentials; fails the test, showing its output,
/// unless it exits 0 and prints `done`.
pub fn run_client_script(url: &str, script: &str, args: &[&str], done: &str) -> String {
    let path = format!("{}/tests/smoke/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .env("S3_URL", url)
        .env("STRATUS_ACCESS_KEY", ACCESS_KEY)
        .env("STRATUS_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("run python3 (needs boto3 and aws-cli: pip install awscli boto3)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(done), "{stdout}");
    stdout
}
