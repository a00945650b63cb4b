//! Origin load a client can cause with request cache directives: a site with
//! `client_cache_control = "ignore"` answers a loop of `no-cache` (and `Pragma: no-cache`,
//! `max-age=0`, `no-store`) requests from the cache; a site that honours them (the default)
//! sends one conditional request per client request, and concurrent ones share one.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::edge::edge_with_config;
use crate::support::http::{client, send};
use crate::support::origin::{Origin, Reply};

const DIRECTIVES: [(&str, &str); 4] = [
    ("cache-control", "no-cache"),
    ("pragma", "no-cache"),
    ("cache-control", "max-age=0"),
    ("cache-control", "no-store"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_cache_loop_reaches_the_origin_only_where_the_site_honours_client_directives() {
    let origin = Origin::cacheable().await;
    let (edge, _dir) = edge_with_config(
        &origin,
        "[[edge.sites]]\nhosts = [\"ignore.test\"]\norigins = [\"ORIGIN\"]\nclient_cache_control = \"ignore\"\n\
         [[edge.sites]]\nhosts = [\"honor.test\"]\norigins = [\"ORIGIN\"]\n",
    );
    let base = edge.url("edge http");
    let rounds = 5;
    for (host, path) in [("ignore.test", "/load/ignored"), ("honor.test", "/load/honoured")] {
        let first = send(client().get(format!("{base}{path}")).header("host", host)).await;
        assert_eq!(first.status, 200, "{host}");
        for _ in 0..rounds {
            for (name, value) in DIRECTIVES {
                let got =
                    send(client().get(format!("{base}{path}")).header("host", host).header(name, value))
                        .await;
                assert_eq!((got.status, got.text()), (200, format!("{path} v1")), "{host} {name}: {value}");
            }
        }
    }
    let n = rounds * DIRECTIVES.len();
    // Ignored: the one fill, then everything from the cache.
    assert_eq!(origin.requests().iter().filter(|s| s.path == "/load/ignored").count(), 1);
    // Honoured: `no-store` fetches in full, the others revalidate (304).
    assert_eq!(origin.full("/load/honoured"), 1 + rounds);
    assert_eq!(origin.not_modified("/load/honoured"), n - rounds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_no_cache_requests_share_one_revalidation() {
    let origin = Origin::start().await;
    // The first answer at once; revalidations take a while, so the requests overlap.
    origin.route("/load/concurrent", |_, n| {
        let reply = Reply::ok("shared", &[("cache-control", "max-age=600"), ("etag", "\"1\"")]);
        if n == 1 { reply } else { reply.delayed(Duration::from_secs(2)) }
    });
    let (edge, _dir) = edge_with_config(&origin, "[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"ORIGIN\"]\n");
    let url = format!("{}/load/concurrent", edge.url("edge http"));
    assert_eq!(send(client().get(&url)).await.status, 200);

    let waiters: Vec<_> = (0..10)
        .map(|i| {
            let url = url.clone();
            let (name, value) =
                if i % 2 == 0 { ("cache-control", "no-cache") } else { ("pragma", "no-cache") };
            tokio::spawn(async move { send(client().get(&url).header(name, value)).await })
        })
        .collect();
    for w in waiters {
        let got = w.await.unwrap();
        assert_eq!((got.status, got.text()), (200, "shared".to_owned()));
    }
    assert_eq!(origin.hits("/load/concurrent"), 2, "one fill and one shared revalidation");
}
