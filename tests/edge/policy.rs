//! Edge policy against the real binary: header rules, allow/deny lists, signed URLs and
//! cookies (tokens minted by the `akamai-edgeauth` Python package, as users mint them), and
//! rate limits per client. Distinct clients are distinct loopback source addresses
//! (127.0.0.2, 127.0.0.3, ...), or `X-Forwarded-For` from a trusted proxy.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::edge::edge_with_toml_env;
use crate::support::http::{Got, get, get_on, send};
use crate::support::origin::{Origin, Reply};

/// A client whose connections come from `source` (a loopback address).
fn client_from(source: &str) -> reqwest::Client {
    let ip: IpAddr = source.parse().unwrap();
    reqwest::Client::builder().no_proxy().local_address(ip).build().unwrap()
}

async fn get_from(source: &str, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client_from(source).get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req).await
}

fn site(origin: &Origin, extra: &str) -> String {
    format!("[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\n{extra}", origin.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn header_rules_set_add_and_remove_by_prefix_on_hits_misses_and_errors() {
    let origin = Origin::start().await;
    let cached =
        [("cache-control", "max-age=60"), ("server", "origin/1.0"), ("x-frame-options", "SAMEORIGIN")];
    origin.fixed("/api/data", Reply::ok("{}", &cached));
    origin.fixed("/page", Reply::ok("page", &cached));
    let toml = site(
        &origin,
        "[[edge.sites.headers]]\nset = { \"x-frame-options\" = \"DENY\", \"x-content-type-options\" = \"nosniff\" }\n\
         remove = [\"server\"]\n\
         [[edge.sites.headers]]\nprefix = \"/api/\"\n\
         set = { \"access-control-allow-origin\" = \"*\" }\nadd = { \"vary\" = \"Origin\" }\n",
    );
    let (edge, _dir) = edge_with_toml_env(&toml, &[]);
    let base = edge.url("edge http");
    for round in ["miss", "hit"] {
        let api = get(&format!("{base}/api/data"), &[]).await;
        assert_eq!(api.status, 200);
        assert_eq!(api.hit(), round == "hit", "{}", api.cache());
        assert_eq!(api.header("access-control-allow-origin"), "*", "{round}");
        assert_eq!(api.header("x-frame-options"), "DENY", "{round}");
        assert_eq!(api.header("x-content-type-options"), "nosniff");
        assert_eq!(api.header("vary"), "Origin");
        assert!(!api.headers.contains_key("server"), "{round}: the origin's Server is removed");
        let page = get(&format!("{base}/page"), &[]).await;
        assert_eq!(page.header("x-frame-options"), "DENY");
        assert!(!page.headers.contains_key("access-control-allow-origin"), "only under /api/");
    }
    // The edge's own answers get them too (a CORS header on an error lets a page read it).
    let missing = get(&format!("{base}/api/nothing"), &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("access-control-allow-origin"), "*");
    assert_eq!(origin.hits("/api/data"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allow_and_deny_lists_by_client_address() {
    let origin = Origin::start().await;
    origin.fixed("/ip", Reply::ok("ok", &[("cache-control", "max-age=60")]));
    let toml = format!(
        "trusted_proxies = [\"127.0.0.9\"]\n{}",
        site(&origin, "allow = [\"127.0.0.0/29\", \"::1\"]\ndeny = [\"127.0.0.3\"]\n")
    );
    let (edge, _dir) = edge_with_toml_env(&toml, &[]);
    let url = format!("{}/ip", edge.url("edge http"));
    assert_eq!(get_from("127.0.0.2", &url, &[]).await.status, 200);
    let denied = get_from("127.0.0.3", &url, &[]).await;
    assert_eq!(denied.status, 403);
    assert!(denied.cache().contains("detail=ip-denied"), "{}", denied.cache());
    assert_eq!(denied.header("cache-control"), "no-store");
    let outside = get_from("127.0.0.10", &url, &[]).await;
    assert_eq!(outside.status, 403, "not in allow");
    // A client's own X-Forwarded-For changes nothing; a trusted proxy's names the client.
    let spoofed = get_from("127.0.0.3", &url, &[("x-forwarded-for", "127.0.0.2")]).await;
    assert_eq!(spoofed.status, 403);
    let via_proxy = get_from("127.0.0.9", &url, &[("x-forwarded-for", "127.0.0.2")]).await;
    assert_eq!(via_proxy.status, 200);
    let denied_via_proxy = get_from("127.0.0.9", &url, &[("x-forwarded-for", "127.0.0.3")]).await;
    assert_eq!(denied_via_proxy.status, 403);
    assert_eq!(origin.hits("/ip"), 1, "refused requests never reach the origin");
}

/// Mints an EdgeAuth token with the `akamai-edgeauth` Python package: `args` are Python
/// keyword arguments of `EdgeAuth(...)`, `call` e.g. `generate_acl_token('/v/*')`.
fn mint(args: &str, call: &str) -> String {
    let script = format!(
        "import sys\ntry:\n    from akamai.edgeauth import EdgeAuth\nexcept ImportError:\n    \
         sys.exit('akamai-edgeauth is missing: pip install akamai-edgeauth (.ci/run installs it)')\n\
         print(EdgeAuth({args}).{call})"
    );
    let out = std::process::Command::new("python3").args(["-c", &script]).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "minting a token failed (the test needs `pip install akamai-edgeauth`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

const KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const OLD_KEY: &str = "00112233445566778899aabbccddeeff";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_urls_valid_expired_tampered_and_wrong_path() {
    let origin = Origin::start().await;
    origin.fallback(|req, _| Reply::ok(&format!("video {}", req.path), &[("cache-control", "max-age=600")]));
    let toml = site(
        &origin,
        &format!("[edge.sites.token_auth]\nkeys = [\"{OLD_KEY}\", \"{KEY}\"]\nprefixes = [\"/v/\"]\n"),
    );
    // The access log is on by default, on stdout.
    let (edge, _dir) = edge_with_toml_env(&toml, &[]);
    let base = edge.url("edge http");
    let token = mint(&format!("key='{KEY}', window_seconds=300"), "generate_acl_token('/v/*')");

    let first = get(&format!("{base}/v/seg1.ts?q=1&__token__={token}"), &[]).await;
    assert_eq!(first.status, 200, "{}", first.cache());
    assert_eq!(first.text(), "video /v/seg1.ts?q=1", "the token never reaches the origin");
    // Another valid token for the same object shares the cached copy: the token is not keyed.
    let other = mint(&format!("key='{OLD_KEY}', window_seconds=600"), "generate_acl_token('/v/*')");
    let second = get(&format!("{base}/v/seg1.ts?__token__={other}&q=1"), &[]).await;
    assert_eq!(second.status, 200);
    assert!(second.hit(), "a token signed with the old key is valid, and not in the key: {}", second.cache());

    let refused = |path: String, detail: &'static str| {
        let base = base.clone();
        async move {
            let res = get(&format!("{base}{path}"), &[]).await;
            assert_eq!(res.status, 403, "{path}");
            assert!(res.cache().contains(&format!("detail={detail}")), "{path}: {}", res.cache());
            assert!(!res.text().contains("video"), "{path}: nothing of the object is served");
        }
    };
    refused("/v/seg1.ts?q=1".into(), "token-missing").await;
    let expired = mint(&format!("key='{KEY}', end_time={}", now() - 10), "generate_acl_token('/v/*')");
    refused(format!("/v/seg1.ts?q=1&__token__={expired}"), "token-expired").await;
    // A later expiry written into a valid token, as someone extending their link would.
    let exp = token.split('~').find_map(|f| f.strip_prefix("exp=")).unwrap();
    let tampered = token.replace(&format!("exp={exp}"), &format!("exp={}", now() + 86_400));
    refused(format!("/v/seg1.ts?q=1&__token__={tampered}"), "token-invalid").await;
    let wrong_key =
        mint(&format!("key='{}', window_seconds=300", "ff".repeat(16)), "generate_acl_token('/v/*')");
    refused(format!("/v/seg1.ts?q=1&__token__={wrong_key}"), "token-invalid").await;
    let elsewhere = mint(&format!("key='{KEY}', window_seconds=300"), "generate_acl_token('/w/*')");
    refused(format!("/v/seg1.ts?q=1&__token__={elsewhere}"), "token-path").await;
    // Dot segments would let `acl=/v/*` reach other paths once the origin resolves them.
    let dots =
        get_on(&edge.addr("edge http"), "a.example", &format!("/v/%2e%2e/paid/x?__token__={token}")).await;
    assert_eq!(dots.status, 403);
    assert!(dots.cache().contains("detail=token-path"), "{}", dots.cache());
    let bound =
        mint(&format!("key='{KEY}', window_seconds=300, ip='127.0.0.5'"), "generate_acl_token('/v/*')");
    refused(format!("/v/seg1.ts?q=1&__token__={bound}"), "token-ip").await;
    assert_eq!(
        get_from("127.0.0.5", &format!("{base}/v/seg1.ts?q=1&__token__={bound}"), &[]).await.status,
        200
    );
    // A URL token signs one path.
    let url_token = mint(&format!("key='{KEY}', window_seconds=300"), "generate_url_token('/v/one.ts')");
    assert_eq!(get(&format!("{base}/v/one.ts?__token__={url_token}"), &[]).await.status, 200);
    refused(format!("/v/two.ts?__token__={url_token}"), "token-invalid").await;
    // Outside the protected prefixes nothing is asked.
    assert_eq!(get(&format!("{base}/free.css"), &[]).await.status, 200);
    assert_eq!(origin.hits("/v/seg1.ts?q=1"), 1);
    // The reason is in the access log too.
    crate::support::poll::eventually(
        "the access log names the reason",
        std::time::Duration::from_secs(5),
        || {
            let log = edge.stdout();
            (log.contains("detail=token-expired") && log.contains("detail=token-path")).then_some(())
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_cookies_and_headers() {
    let origin = Origin::start().await;
    origin
        .fallback(|req, _| Reply::ok(&format!("private {}", req.path), &[("cache-control", "max-age=600")]));
    let toml = format!(
        "[[edge.sites]]\nhosts = [\"cookie.example\"]\norigins = [\"{0}\"]\n\
         [edge.sites.token_auth]\nkeys = [\"{KEY}\"]\nfrom = \"cookie\"\nname = \"edge-auth\"\n\
         [[edge.sites]]\nhosts = [\"header.example\"]\norigins = [\"{0}\"]\n\
         [edge.sites.token_auth]\nkeys = [\"{KEY}\"]\nfrom = \"header\"\nname = \"x-edge-token\"\n",
        origin.url
    );
    let (edge, _dir) = edge_with_toml_env(&toml, &[]);
    let url = format!("{}/p/doc.pdf", edge.url("edge http"));
    let token = mint(&format!("key='{KEY}', window_seconds=300"), "generate_acl_token('/p/*')");
    let cookie = format!("theme=dark; edge-auth={token}");
    let ok = get(&url, &[("host", "cookie.example"), ("cookie", &cookie)]).await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "private /p/doc.pdf"));
    let missing = get(&url, &[("host", "cookie.example"), ("cookie", "theme=dark")]).await;
    assert_eq!(missing.status, 403);
    let ok = get(&url, &[("host", "header.example"), ("x-edge-token", &token)]).await;
    assert_eq!(ok.status, 200);
    assert!(
        origin.requests().iter().all(|r| r.header("x-edge-token").is_empty()),
        "a header token stays at the edge"
    );
    let in_query = get(&format!("{url}?__token__={token}"), &[("host", "header.example")]).await;
    assert_eq!(in_query.status, 403, "the token is only read where the site says");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_per_client_leaves_others_alone() {
    let origin = Origin::start().await;
    origin.fixed("/rl", Reply::ok("ok", &[("cache-control", "max-age=60")]));
    let toml = format!(
        "trusted_proxies = [\"127.0.0.9\"]\n{}",
        site(&origin, "[edge.sites.rate_limit]\nrate = \"1/m\"\nburst = 3\n")
    );
    let (edge, _dir) = edge_with_toml_env(&toml, &[]);
    let url = format!("{}/rl", edge.url("edge http"));
    for i in 0..3 {
        assert_eq!(get_from("127.0.0.2", &url, &[]).await.status, 200, "request {i} is within the burst");
    }
    let limited = get_from("127.0.0.2", &url, &[]).await;
    assert_eq!(limited.status, 429);
    let retry: u64 = limited.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(limited.header("ratelimit-limit"), "3");
    assert_eq!(limited.header("ratelimit-remaining"), "0");
    assert!(limited.cache().contains("detail=rate-limited"), "{}", limited.cache());
    // Another client is not affected, and a client's own X-Forwarded-For buys nothing.
    assert_eq!(get_from("127.0.0.3", &url, &[]).await.status, 200);
    let spoofed = get_from("127.0.0.2", &url, &[("x-forwarded-for", "203.0.113.50")]).await;
    assert_eq!(spoofed.status, 429);
    // Behind a trusted proxy each forwarded client has its own allowance.
    for client in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..3 {
            assert_eq!(get_from("127.0.0.9", &url, &[("x-forwarded-for", client)]).await.status, 200);
        }
        assert_eq!(get_from("127.0.0.9", &url, &[("x-forwarded-for", client)]).await.status, 429, "{client}");
    }
}
