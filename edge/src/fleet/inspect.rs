//! The cache inspection, admin `GET /cache?url=…`: what is stored for a URL, each variant with
//! its stored headers, age, remaining freshness, tags, size, tier and hits — what Varnish's
//! `varnishlog` or a Fastly debug header tell, as one JSON answer.

use std::time::Instant;

use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

use crate::cache::entry::{Entry, MAX_HITS};
use crate::cache::key::{self, CacheKey, VARIANT_MARK};
use crate::cache::store::{Slot, Variants};
use crate::edge::Edge;

/// The answer for the request query `query` (`url=` a percent-encoded absolute URL).
pub fn answer(edge: &Edge, query: Option<&str>) -> (StatusCode, Value) {
    let Some(raw) = query.and_then(|q| q.split('&').find_map(|p| p.strip_prefix("url="))) else {
        return bad("name a URL: /cache?url=http://host/path");
    };
    let url = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return bad(&format!("invalid url: {e}")),
    };
    let (Some(_), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return bad("the url needs a host, e.g. http://cdn.example/a.png");
    };
    let host = match key::normalize_host(authority.as_str()) {
        Ok(h) => h,
        Err(e) => return bad(&format!("invalid host: {e}")),
    };
    let router = edge.router();
    let Some(site) = router.route(&host) else {
        return (StatusCode::NOT_FOUND, json!({ "url": url, "error": "no site serves this host" }));
    };
    // Header-keyed sites (`key.headers`) are looked up as a request without those headers.
    let key = CacheKey::new(&host, &uri, &site.cfg.key, &HeaderMap::new());
    let now = Instant::now();
    let (slot, variants) = edge.store.inspect(key.primary());
    let (vary, entries): (Option<Vec<String>>, Variants) = match slot {
        Some(Slot::Object(e)) => (None, vec![(key.primary().clone(), e)]),
        Some(Slot::Vary(v)) => (Some(v.names.iter().map(|n| n.as_str().to_owned()).collect()), variants),
        Some(Slot::HitForMiss(_)) => {
            let body = json!({ "url": url, "key": printable(key.primary()), "site": &*site.name,
                "stored": false, "hit_for_miss": true, "variants": [] });
            return (StatusCode::OK, body);
        }
        None => (None, Vec::new()),
    };
    let shown: Vec<Value> = entries.iter().map(|(k, e)| variant(k, e, now)).collect();
    let status = if shown.is_empty() { StatusCode::NOT_FOUND } else { StatusCode::OK };
    let body = json!({
        "url": url,
        "key": printable(key.primary()),
        "site": &*site.name,
        "stored": !shown.is_empty(),
        "vary": vary,
        "variants": shown,
    });
    (status, body)
}

fn bad(why: &str) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, json!({ "error": why }))
}

/// One stored response.
fn variant(key: &str, e: &Entry, now: Instant) -> Value {
    // The variant key's tail: `SEP SEP name:value` per `Vary` header.
    let selected: serde_json::Map<String, Value> = key
        .split_once(VARIANT_MARK)
        .map(|(_, tail)| tail)
        .unwrap_or_default()
        .split(VARIANT_MARK)
        .filter_map(|p| p.split_once(':'))
        .map(|(n, v)| (n.to_owned(), Value::from(v)))
        .collect();
    let headers: Vec<Value> = e
        .headers()
        .to_map(0)
        .iter()
        .map(|(n, v)| json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let body = e.body_len();
    json!({
        "selected_by": selected,
        "status": e.status.as_u16(),
        "headers": headers,
        "age": e.age(now).as_secs(),
        "ttl": e.ttl(now),
        "fresh": e.is_fresh(now),
        "soft_purged": e.is_invalidated(),
        "tags": e.tags().collect::<Vec<_>>(),
        "body_bytes": body,
        "size": e.weight(),
        "tier": "memory",
        "hits": e.hits(),
        "hits_capped": e.hits() >= MAX_HITS,
    })
}

/// A key with its separators shown as ` | `.
fn printable(key: &str) -> String {
    key.replace(VARIANT_MARK, " || ").replace('\u{1f}', " | ")
}
