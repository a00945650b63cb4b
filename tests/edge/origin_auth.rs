//! `origin_auth`: an edge signs its origin requests with SigV4, so a private bucket on the real
//! `stratus origin` sits behind it unreadable to anyone else (CloudFront's origin access
//! control).

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::support::edge::edge_with_toml_env;
use crate::support::http::{get, send};
use crate::support::s3::{ACCESS_KEY, SECRET_KEY, client, encode_path, private, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_private_bucket_is_readable_only_through_the_signing_edge() {
    let origin = start(&[private("vault")]);
    let s3 = client(&origin.url, "vault");
    let key = "reports/q1 2026+final.txt";
    s3.put(&Path::from("plain.txt"), PutPayload::from_static(b"secret numbers")).await.unwrap();
    s3.put(&Path::from(key), PutPayload::from_static(b"final numbers")).await.unwrap();

    // Anonymous requests to the origin are refused.
    let anonymous = get(&format!("{}/vault/plain.txt", origin.url), &[]).await;
    assert_eq!(anonymous.status, 403, "{}", anonymous.text());

    let site =
        |auth: &str| format!("[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}/vault\"]\n{auth}", origin.url);
    let creds = [("STRATUS_ORIGIN_ACCESS_KEY", ACCESS_KEY), ("STRATUS_ORIGIN_SECRET_KEY", SECRET_KEY)];
    let (signing, _d1) = edge_with_toml_env(
        &site("[edge.sites.origin_auth]\nkind = \"s3\"\nregion = \"us-east-1\"\n"),
        &creds,
    );
    let (plain, _d2) = edge_with_toml_env(&site(""), &creds);

    let through = get(&format!("{}/plain.txt", signing.url("edge http")), &[]).await;
    assert_eq!((through.status, through.text().as_str()), (200, "secret numbers"), "{}", through.cache());
    let encoded = format!("{}/{}", signing.url("edge http"), encode_path(key));
    let odd = get(&encoded, &[]).await;
    assert_eq!((odd.status, odd.text().as_str()), (200, "final numbers"), "a key with a space and a plus");
    let head = send(reqwest::Client::new().head(format!("{}/plain.txt", signing.url("edge http")))).await;
    assert_eq!(head.status, 200);
    // A client's own credentials or x-amz fields cannot steer a signed request.
    let forged = get(
        &format!("{}/plain.txt?x=1", signing.url("edge http")),
        &[("authorization", "AWS4-HMAC-SHA256 Credential=nobody"), ("x-amz-date", "20000101T000000Z")],
    )
    .await;
    assert_eq!(forged.status, 200, "{}", forged.text());

    let unsigned = get(&format!("{}/plain.txt", plain.url("edge http")), &[]).await;
    assert_eq!(unsigned.status, 403, "an edge without origin_auth is an anonymous client");
    assert!(!unsigned.text().contains("secret"));

    // Writes through the signing edge are not signed with its keys.
    let put =
        send(reqwest::Client::new().put(format!("{}/planted.txt", signing.url("edge http"))).body("x")).await;
    assert_eq!(put.status, 403, "{}", put.text());
}

#[test]
fn origin_auth_without_credentials_is_a_startup_error() {
    let dir = crate::support::process::tempdir();
    let path = crate::support::edge::rewrite(
        &dir,
        "[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"http://127.0.0.1:9\"]\n[edge.sites.origin_auth]\nkind = \"s3\"\n",
    );
    let (code, _out, err) =
        crate::support::process::run_stratus(&["edge", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("STRATUS_ORIGIN_ACCESS_KEY"), "{err}");
}
