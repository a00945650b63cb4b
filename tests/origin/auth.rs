//! Who may do what on the origin: SigV4 in headers and presigned URLs (with expiry), bad
//! signatures, public versus private buckets with their default Cache-Control,
//! virtual-hosted-style requests, and an origin started without credentials.

use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use crate::support;
use crate::support::s3::{
    Options, anonymous, client, client_with, error_code, private, public, start, start_with,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_work_with_a_plain_http_client_until_they_expire() {
    let origin = start(&[private("docs")]);
    let s3 = client(&origin.url, "docs");
    let http = reqwest::Client::new();

    // Presigned PUT, then presigned GET, with nothing but reqwest.
    let path = Path::from("reports/q3 summary.txt");
    let put = s3.signed_url(http::Method::PUT, &path, Duration::from_secs(300)).await.expect("presign put");
    let r = http.put(put).body("quarterly numbers").send().await.expect("put");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let get = s3.signed_url(http::Method::GET, &path, Duration::from_secs(300)).await.expect("presign get");
    let r = http.get(get.clone()).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "quarterly numbers");

    // Tampering with the signature or the path is a 403 SignatureDoesNotMatch.
    let mut tampered = get.clone();
    let query: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            // Change the last hex digit to a different one (always setting `0` left a signature
            // that ended in `0` untouched, and the request passed one run in sixteen).
            let v = if k == "X-Amz-Signature" {
                let last = if v.ends_with('0') { '1' } else { '0' };
                format!("{}{last}", &v[..v.len() - 1])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(query);
    let r = http.get(tampered).send().await.expect("tampered");
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(&r.text().await.expect("body")).as_deref(), Some("SignatureDoesNotMatch"));
    let mut other_key = get.clone();
    other_key.set_path("/docs/reports/other.txt");
    let r = http.get(other_key).send().await.expect("other key");
    assert_eq!(r.status(), 403);

    // A URL signed for one second stops working.
    let short = s3.signed_url(http::Method::GET, &path, Duration::from_secs(1)).await.expect("presign");
    support::until("the presigned URL expires", Duration::from_secs(10), || async {
        let r = http.get(short.clone()).send().await.expect("get");
        let expired = r.status() == 403
            && r.text().await.is_ok_and(|b| b.contains("AccessDenied") && b.contains("expired"));
        expired.then_some(())
    })
    .await;
}

/// The URL with its `X-Amz-Expires` value replaced (the signature no longer matches, but S3
/// checks the parameters first).
fn with_expires(url: &reqwest::Url, value: &str) -> reqwest::Url {
    let mut out = url.clone();
    let query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "X-Amz-Expires" { value.to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(query);
    out
}

/// Regression (issue 16.11): a presigned URL valid for longer than S3's seven days, up to
/// 136 years (any `u32`), was accepted. Like S3, it is now a 400
/// `AuthorizationQueryParametersError`, as are negative and non-numeric expiries and SigV2
/// URLs expiring more than a week from now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_valid_for_more_than_a_week_are_refused_like_s3() {
    let origin = start(&[private("docs")]);
    let s3 = client(&origin.url, "docs");
    let http = reqwest::Client::new();
    let path = Path::from("contract.pdf");
    s3.put(&path, PutPayload::from_static(b"signed")).await.expect("put");

    // Exactly seven days is S3's maximum, and works.
    let week = s3.signed_url(http::Method::GET, &path, Duration::from_secs(604_800)).await.expect("presign");
    let r = http.get(week.clone()).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "signed");

    // Correctly signed, but for longer than a week.
    for secs in [604_801, 30 * 86_400, u64::from(u32::MAX)] {
        let url = s3.signed_url(http::Method::GET, &path, Duration::from_secs(secs)).await.expect("presign");
        let r = http.get(url).send().await.expect("get");
        assert_eq!(r.status(), 400, "X-Amz-Expires={secs}");
        let body = r.text().await.expect("body");
        assert_eq!(error_code(&body).as_deref(), Some("AuthorizationQueryParametersError"), "{body}");
        assert!(body.contains("X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds"));
    }
    let put = s3.signed_url(http::Method::PUT, &path, Duration::from_secs(604_801)).await.expect("presign");
    let r = http.put(put).body("replaced").send().await.expect("put");
    assert_eq!(r.status(), 400);
    let body = s3.get(&path).await.expect("get").bytes().await.expect("body");
    assert_eq!(body.as_ref(), b"signed", "the refused presigned PUT stored nothing");

    // Malformed expiries get S3's messages, not a generic InvalidRequest.
    let cases = [
        ("-1", "X-Amz-Expires must be non-negative"),
        ("-604801", "X-Amz-Expires must be non-negative"),
        ("abc", "X-Amz-Expires should be a number"),
        ("", "X-Amz-Expires should be a number"),
        ("1.5", "X-Amz-Expires should be a number"),
        ("99999999999999999999999", "X-Amz-Expires must be less than a week"),
    ];
    for (value, message) in cases {
        let r = http.get(with_expires(&week, value)).send().await.expect("get");
        assert_eq!(r.status(), 400, "X-Amz-Expires={value:?}");
        let body = r.text().await.expect("body");
        assert_eq!(error_code(&body).as_deref(), Some("AuthorizationQueryParametersError"), "{body}");
        assert!(body.contains(message), "X-Amz-Expires={value:?}: {body}");
    }
    // A valid expiry that is not the signed one is a signature mismatch, as on S3.
    let r = http.get(with_expires(&week, "3600")).send().await.expect("get");
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(&r.text().await.expect("body")).as_deref(), Some("SignatureDoesNotMatch"));

    // SigV2 presigned URLs (`Expires` is a Unix time; boto3's default for presigning) get the
    // same week, checked before the signature.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let v2 = |expires: u64| {
        format!(
            "{}/docs/contract.pdf?AWSAccessKeyId={}&Expires={expires}&Signature=bm90LWEtc2lnbmF0dXJl",
            origin.url,
            crate::support::s3::ACCESS_KEY
        )
    };
    let r = http.get(v2(now + 30 * 86_400)).send().await.expect("get");
    assert_eq!(r.status(), 400);
    let body = r.text().await.expect("body");
    assert_eq!(error_code(&body).as_deref(), Some("AuthorizationQueryParametersError"), "{body}");
    let r = http.get(v2(now + 86_400)).send().await.expect("get");
    assert_eq!(r.status(), 403, "within the week the (bogus) signature is checked");
    assert_eq!(error_code(&r.text().await.expect("body")).as_deref(), Some("SignatureDoesNotMatch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_with_s3_errors() {
    let origin = start(&[private("vault")]);
    let good = client(&origin.url, "vault");
    good.put(&Path::from("k"), PutPayload::from_static(b"v")).await.expect("put");

    let bad_secret = client_with(&origin.url, "vault", support::s3::ACCESS_KEY, "not-the-secret");
    let err = bad_secret.get(&Path::from("k")).await.expect_err("bad secret");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    let err = bad_secret.put(&Path::from("k"), PutPayload::from_static(b"evil")).await.expect_err("bad put");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");

    let bad_key = client_with(&origin.url, "vault", "nobody", support::s3::SECRET_KEY);
    let err = bad_key.get(&Path::from("k")).await.expect_err("unknown key id");
    assert!(err.to_string().contains("InvalidAccessKeyId"), "{err}");

    // Nothing changed.
    let body = good.get(&Path::from("k")).await.expect("get").bytes().await.expect("body");
    assert_eq!(body.as_ref(), b"v");

    // The same refusal over plain HTTP: a forged Authorization header.
    let r = reqwest::Client::new()
        .get(format!("{}/vault/k", origin.url))
        .header("x-amz-date", "20261125T090000Z")
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/20261125/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
                support::s3::ACCESS_KEY,
                "0".repeat(64)
            ),
        )
        .send()
        .await
        .expect("forged");
    assert_eq!(r.status(), 403);
    let code = error_code(&r.text().await.expect("body"));
    assert!(matches!(code.as_deref(), Some("SignatureDoesNotMatch" | "RequestTimeTooSkewed")), "{code:?}");
}

async fn etag_of(http: &reqwest::Client, url: &str) -> String {
    let r = http.head(url).send().await.expect("head");
    r.headers()["etag"].to_str().expect("etag").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_buckets_are_readable_and_listable_anonymously_private_ones_are_not() {
    let origin = start(&[public("site", Some("public, max-age=300")), private("vault")]);
    let site = client(&origin.url, "site");
    let vault = client(&origin.url, "vault");
    site.put(&Path::from("index.html"), PutPayload::from_static(b"<h1>hi</h1>")).await.expect("put");
    let mut attrs = Attributes::new();
    attrs.insert(Attribute::CacheControl, "no-cache".into());
    site.put_opts(
        &Path::from("own.css"),
        PutPayload::from_static(b"body{}"),
        PutOptions { attributes: attrs, ..Default::default() },
    )
    .await
    .expect("put");
    vault.put(&Path::from("secret.txt"), PutPayload::from_static(b"s3cr3t")).await.expect("put");

    let http = reqwest::Client::new();
    let r = http.get(format!("{}/site/index.html", origin.url)).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300", "the bucket's default");
    assert!(r.headers().contains_key("etag"));
    assert_eq!(r.text().await.expect("body"), "<h1>hi</h1>");
    // A cache holding several versions revalidates with a list of ETags.
    let etag = etag_of(&http, &format!("{}/site/index.html", origin.url)).await;
    let r = http
        .get(format!("{}/site/index.html", origin.url))
        .header("if-none-match", format!("\"0123\", {etag}"))
        .send()
        .await
        .expect("conditional get");
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300", "a 304 carries the caching headers");
    let r = http
        .get(format!("{}/site/index.html", origin.url))
        .header("if-none-match", "\"0123\", W/\"4567\"")
        .send()
        .await
        .expect("conditional get");
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{}/site/own.css", origin.url)).send().await.expect("get");
    assert_eq!(r.headers()["cache-control"], "no-cache", "an object's own Cache-Control wins");
    let r = http.head(format!("{}/site/index.html", origin.url)).send().await.expect("head");
    assert_eq!((r.status().as_u16(), r.headers()["content-length"].to_str().ok()), (200, Some("11")));
    let r = http.get(format!("{}/site/missing", origin.url)).send().await.expect("get");
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.text().await.expect("body")).as_deref(), Some("NoSuchKey"));

    // Anonymous listing of the public bucket (what the control plane's prewarm does).
    let listed: Vec<String> = anonymous(&origin.url, "site")
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("anonymous list");
    assert_eq!(listed, ["index.html", "own.css"]);

    // Everything else is denied to anonymous clients.
    let denied = [
        http.get(format!("{}/vault/secret.txt", origin.url)),
        http.get(format!("{}/vault?list-type=2", origin.url)),
        http.put(format!("{}/site/evil.html", origin.url)).body("evil"),
        http.delete(format!("{}/site/index.html", origin.url)),
        http.put(format!("{}/newbucket", origin.url)),
        http.get(format!("{}/", origin.url)),
    ];
    for req in denied {
        let req = req.build().expect("request");
        let what = format!("{} {}", req.method(), req.url());
        let r = http.execute(req).await.expect("send");
        assert_eq!(r.status(), 403, "{what}");
        assert_eq!(error_code(&r.text().await.expect("body")).as_deref(), Some("AccessDenied"), "{what}");
    }
    let err = anonymous(&origin.url, "vault").get(&Path::from("secret.txt")).await.expect_err("private");
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert!(site.head(&Path::from("index.html")).await.is_ok(), "the anonymous DELETE changed nothing");
    assert!(site.head(&Path::from("evil.html")).await.is_err(), "the anonymous PUT stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosted_style_names_the_bucket_in_the_host() {
    let opts = Options { domain: Some("s3.test"), ..Options::default() };
    let origin = start_with(&[public("assets", None)], &opts);
    client(&origin.url, "assets")
        .put(&Path::from("css/a.css"), PutPayload::from_static(b"a{}"))
        .await
        .expect("put");
    let port = origin.url.rsplit(':').next().expect("port");
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/css/a.css", origin.url))
        .header("host", format!("assets.s3.test:{port}"))
        .send()
        .await
        .expect("virtual-hosted get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "a{}");
    // Path-style keeps working on the same origin.
    let r = http.get(format!("{}/assets/css/a.css", origin.url)).send().await.expect("path-style get");
    assert_eq!(r.status(), 200);

    // A real client signing virtual-hosted-style requests. `assets.s3.test` does not resolve,
    // so the client reaches the origin through it as an HTTP proxy: the request line and Host
    // header still name `assets.s3.test`, which is what the origin and the signature see.
    let vhost = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://assets.s3.test:{port}"))
        .with_virtual_hosted_style_request(true)
        .with_bucket_name("assets")
        .with_region("us-east-1")
        .with_access_key_id(support::s3::ACCESS_KEY)
        .with_secret_access_key(support::s3::SECRET_KEY)
        .with_client_options(
            object_store::ClientOptions::new().with_allow_http(true).with_proxy_url(&origin.url),
        )
        .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
        .build()
        .expect("client");
    vhost.put(&Path::from("js/app.js"), PutPayload::from_static(b"run()")).await.expect("virtual-hosted put");
    let body = vhost.get(&Path::from("js/app.js")).await.expect("get").bytes().await.expect("body");
    assert_eq!(body.as_ref(), b"run()");
    let listed: Vec<String> =
        vhost.list(None).map_ok(|m| m.location.to_string()).try_collect().await.expect("virtual-hosted list");
    assert_eq!(listed, ["css/a.css", "js/app.js"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_only_public_reads_work() {
    let dir = std::sync::Arc::new(support::tempdir());
    // Seed an object with credentials, then restart the same data directory without them.
    let seeded = support::s3::start_in(dir.clone(), &[public("open", None)], &Options::default());
    client(&seeded.url, "open").put(&Path::from("a.txt"), PutPayload::from_static(b"A")).await.expect("put");
    drop(seeded);

    let opts = Options { no_credentials: true, ..Options::default() };
    let origin = support::s3::start_in(dir, &[public("open", None)], &opts);
    support::eventually("the startup warning", Duration::from_secs(5), || {
        origin.proc.stderr().contains("no credentials configured").then_some(())
    });
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/open/a.txt", origin.url)).send().await.expect("get");
    assert_eq!(r.status(), 200);
    let r = http.put(format!("{}/open/b.txt", origin.url)).body("B").send().await.expect("anonymous put");
    assert_eq!(r.status(), 403);
    let err = client(&origin.url, "open").put(&Path::from("b.txt"), PutPayload::from_static(b"B")).await;
    let err = err.expect_err("a signed put is refused");
    assert!(err.to_string().contains("InvalidAccessKeyId"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_payload_uploads_are_accepted_when_the_headers_are_signed() {
    let origin = start(&[private("raw")]);
    let unsigned = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&origin.url)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("raw")
        .with_access_key_id(support::s3::ACCESS_KEY)
        .with_secret_access_key(support::s3::SECRET_KEY)
        .with_unsigned_payload(true)
        .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
        .build()
        .expect("client");
    let body = support::s3::pattern(3 * 1024 * 1024, 5);
    let put = unsigned
        .put(&Path::from("blob"), PutPayload::from(body.clone()))
        .await
        .expect("unsigned-payload put");
    assert_eq!(put.e_tag, Some(format!("\"{}\"", support::s3::md5_hex(&body))));
    let got =
        client(&origin.url, "raw").get(&Path::from("blob")).await.expect("get").bytes().await.expect("body");
    assert_eq!(got.as_ref(), body.as_slice());
}
