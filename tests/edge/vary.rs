//! `Vary`: one stored variant per combination of the listed request headers, normalized;
//! waiters on a fill whose response varies differently from their request are not handed
//! the wrong variant.

// In tests a panic is the failure report; `unwrap` keeps assertions short.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::support::edge::edge;
use crate::support::http::get;
use crate::support::origin::{Origin, Part, Reply};
use crate::support::{self, until};

fn by_language(seen: &support::origin::Seen) -> String {
    let lang = seen.headers.get("accept-language").map_or("none", |v| v.to_str().unwrap());
    format!("lang={lang}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn variants_are_stored_apart_and_normalized() {
    let origin = Origin::start().await;
    origin.route("/vary/lang", |seen, _| {
        Reply::ok(&by_language(seen), &[("cache-control", "max-age=300"), ("vary", "Accept-Language")])
    });
    let edge = edge(&origin, &[]);
    let url = format!("{}/vary/lang", edge.url("edge http"));
    let en = get(&url, &[("accept-language", "en")]).await;
    assert!(en.cache().contains("fwd=uri-miss"));
    let fr = get(&url, &[("accept-language", "fr")]).await;
    assert_eq!(fr.text(), "lang=fr");
    assert!(fr.cache().contains("fwd=vary-miss"), "{}", fr.cache());
    let en = get(&url, &[("accept-language", "en")]).await;
    assert_eq!(en.text(), "lang=en");
    assert!(en.cache().contains("hit"));
    assert_eq!(origin.hits("/vary/lang"), 2);
    // Whitespace differences select the same variant.
    get(&url, &[("accept-language", "de,  en")]).await;
    let same = get(&url, &[("accept-language", "de, en")]).await;
    assert!(same.cache().contains("hit"), "{}", same.cache());
    assert_eq!(origin.hits("/vary/lang"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_for_another_variant_fetches_its_own() {
    let origin = Origin::start().await;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    origin.route("/vary/race", move |seen, _| {
        Reply::ok("", &[("cache-control", "max-age=300"), ("vary", "accept-language")])
            .parts(vec![Part::Gate(g.clone()), Part::Data(Bytes::from(by_language(seen)))])
    });
    let edge = edge(&origin, &[]);
    let url = format!("{}/vary/race", edge.url("edge http"));
    let en = {
        let url = url.clone();
        tokio::spawn(async move { get(&url, &[("accept-language", "en")]).await })
    };
    until("the first fill reached the origin", Duration::from_secs(10), || async {
        (origin.hits("/vary/race") == 1).then_some(())
    })
    .await;
    let fr = {
        let url = url.clone();
        tokio::spawn(async move { get(&url, &[("accept-language", "fr")]).await })
    };
    gate.add_permits(10);
    assert_eq!(en.await.unwrap().text(), "lang=en");
    assert_eq!(fr.await.unwrap().text(), "lang=fr");
}
