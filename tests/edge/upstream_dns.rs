//! Origins named by host names, resolved through `[edge.dns] nameservers` pointed at a DNS
//! server the test runs: answers follow their TTL, several addresses are all usable, and a
//! resolution failure is a 502 with `detail=dns` — or a stale copy under `stale-if-error`.

use std::time::Duration;

use crate::support::dns::DnsServer;
use crate::support::edge::edge_with_toml;
use crate::support::http::{client, send};
use crate::support::origin::Origin;
use crate::support::{self, until};

/// A site for `*` in front of `origin`, resolved by `dns`. No idle connections are kept, so
/// every request resolves and connects anew (a kept connection outlives a DNS change).
fn config(dns: &DnsServer, origin: &str) -> String {
    format!(
        r#"
[edge.dns]
nameservers = ["{dns}"]
timeout = "300ms"
attempts = 1

[[edge.sites]]
hosts = ["*"]
origins = ["{origin}"]
pool = {{ max_idle = 0 }}
timeouts = {{ connect = "1s", first_byte = "2s", total = "10s" }}
"#,
        dns = dns.addr
    )
}

async fn get(edge: &support::Proc, path: &str) -> support::http::Got {
    send(client().get(format!("{}{path}", edge.url("edge http")))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_record_is_picked_up_after_its_ttl() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    // The same port on another loopback address, so one origin URL can point at either.
    let b = Origin::backend("b", &format!("127.0.0.2:{}", a.addr.port())).await;
    let dns = DnsServer::start().await;
    dns.set("app.test", &["127.0.0.1"]);
    let (edge, _cfg) = edge_with_toml(&config(&dns, &a.url_for("app.test")));

    let got = get(&edge, "/page").await;
    assert_eq!((got.status, got.text().as_str()), (200, "a"), "{}", got.cache());
    assert_eq!(a.seen("/page")[0].host, format!("app.test:{}", a.addr.port()));

    dns.set("app.test", &["127.0.0.2"]);
    // The answer had a TTL of one second; after it, the new address is used.
    until("the new address is used", Duration::from_secs(10), || async {
        (get(&edge, "/page").await.text() == "b").then_some(())
    })
    .await;
    assert_eq!(b.seen("/page")[0].host, format!("app.test:{}", a.addr.port()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_of_a_name_is_usable_and_a_dead_one_is_skipped() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let b = Origin::backend("b", &format!("127.0.0.2:{}", a.addr.port())).await;
    let dns = DnsServer::start().await;
    // 127.0.0.3 has nothing listening on the port: connecting there is refused.
    dns.set("pool.test", &["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    let (edge, _cfg) = edge_with_toml(&config(&dns, &a.url_for("pool.test")));
    for _ in 0..9 {
        let got = get(&edge, "/spread").await;
        assert_eq!(got.status, 200, "the next address is tried when one refuses: {}", got.cache());
    }
    assert!(a.hits("/spread") > 0 && b.hits("/spread") > 0, "requests spread over the addresses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_failure_is_a_502_with_detail_dns() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let dns = DnsServer::start().await;
    let (edge, _cfg) = edge_with_toml(&config(&dns, &a.url_for("missing.test")));
    let got = get(&edge, "/x").await;
    assert_eq!(got.status, 502, "NXDOMAIN");
    assert!(got.cache().contains("detail=dns"), "{}", got.cache());

    dns.set("missing.test", &["127.0.0.1"]);
    until("the name resolves once it exists", Duration::from_secs(10), || async {
        (get(&edge, "/x").await.status == 200).then_some(())
    })
    .await;

    // The server stops answering: once the cached answer expires, lookups time out.
    dns.stop();
    let got = until("lookups fail without a DNS server", Duration::from_secs(10), || async {
        let got = get(&edge, "/x").await;
        (got.status != 200).then_some(got)
    })
    .await;
    assert_eq!(got.status, 502);
    assert!(got.cache().contains("detail=dns"), "{}", got.cache());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_failure_serves_a_stale_copy_under_stale_if_error() {
    let a = Origin::backend("a", "127.0.0.1:0").await;
    let dns = DnsServer::start().await;
    dns.set("app.test", &["127.0.0.1"]);
    let (edge, _cfg) = edge_with_toml(&config(&dns, &a.url_for("app.test")));

    // max-age=1, stale-if-error=600.
    let got = get(&edge, "/stale/a.css").await;
    assert!(got.cache().contains("stored"), "{}", got.cache());

    dns.set("app.test", &[]);
    let got = until("the stale copy is served", Duration::from_secs(10), || async {
        let got = get(&edge, "/stale/a.css").await;
        got.cache().contains("detail=stale-if-error").then_some(got)
    })
    .await;
    assert_eq!((got.status, got.text().as_str()), (200, "a"));
    // (The answer cached before the record went away may have served one revalidation.)
    let asked = a.hits("/stale/a.css");
    let again = get(&edge, "/stale/a.css").await;
    assert!(again.cache().contains("detail=stale-if-error"), "{}", again.cache());
    assert_eq!(a.hits("/stale/a.css"), asked, "the origin is not reachable by name any more");

    let fresh = get(&edge, "/elsewhere").await;
    assert_eq!(fresh.status, 502, "nothing stored: the DNS failure shows");
    assert!(fresh.cache().contains("detail=dns"), "{}", fresh.cache());
}
