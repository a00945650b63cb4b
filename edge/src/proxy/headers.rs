//! Header hygiene on both sides of the proxy: hop-by-hop fields (RFC 9110 §7.6.1), `Via`,
//! `X-Forwarded-*`, and the fields meant only for us (`CDN-Cache-Control`,
//! `Surrogate-Control`, tag headers) that clients must never see.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Version};

use crate::cache::directives::{CDN_CACHE_CONTROL, SURROGATE_CONTROL};

/// Fields that describe one connection, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Removes hop-by-hop fields, including those `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in named {
        h.remove(name);
    }
    for name in HOP_BY_HOP {
        h.remove(name);
    }
}

/// Appends our `Via` entry (RFC 9110 §7.6.3).
pub fn append_via(h: &mut HeaderMap, version: Version) {
    let v = match version {
        Version::HTTP_2 => "2 stratus",
        Version::HTTP_10 => "1.0 stratus",
        _ => "1.1 stratus",
    };
    h.append(header::VIA, HeaderValue::from_static(v));
}

/// Fields through which a proxy tells the origin who the client is and what it asked for.
/// An origin that builds links or redirects from them would answer differently for the same
/// cache key, so a client's own values never reach it: only those of trusted proxies do.
const FORWARDING: [&str; 14] = [
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-real-ip",
    "front-end-https",
];

/// Fields that make some frameworks treat a GET as another method: never on a request whose
/// answer may be stored.
const METHOD_OVERRIDE: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// Sets the forwarding fields of a request to the origin. From a `trusted` proxy, its fields
/// pass and the client address is appended to its `X-Forwarded-For`; from anyone else, every
/// [`FORWARDING`] field is dropped and `X-Forwarded-For` holds just the client address. In
/// both cases `X-Forwarded-Proto` says how the request reached us unless a trusted proxy set it.
pub fn set_forwarding(h: &mut HeaderMap, client: Option<IpAddr>, proto: &'static str, trusted: bool) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let xfp = HeaderName::from_static("x-forwarded-proto");
    let prior = if trusted { crate::cache::key::header_value(h, xff.as_str()) } else { String::new() };
    if !trusted {
        for name in FORWARDING {
            h.remove(name);
        }
    }
    h.remove(&xff);
    if let Some(ip) = client {
        let value = if prior.is_empty() { ip.to_string() } else { format!("{prior}, {ip}") };
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(xff, v);
        }
    }
    if !h.contains_key(&xfp) {
        h.insert(xfp, HeaderValue::from_static(proto));
    }
}

/// The address a request comes from, for rate limits and allow/deny lists: the peer, unless
/// the peer is a trusted proxy; then the right-most `X-Forwarded-For` entry that is not a
/// trusted proxy itself (entries further left could be written by anyone). An unparsable
/// entry ends the walk at the last address known good.
pub fn client_address(
    peer: Option<IpAddr>,
    h: &HeaderMap,
    trusted: &[stratus_config::IpRange],
) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    let mut client = peer?;
    if !is_trusted(client) {
        return Some(client);
    }
    let xff = crate::cache::key::header_value(h, "x-forwarded-for");
    for entry in xff.rsplit(',') {
        let Some(ip) = parse_forwarded_ip(entry.trim()) else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an IP, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())).map(|ip| {
        match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        }
    })
}

/// Removes the method-override fields (see [`METHOD_OVERRIDE`]).
pub fn strip_method_override(h: &mut HeaderMap) {
    for name in METHOD_OVERRIDE {
        h.remove(name);
    }
}

/// Removes the tag headers and returns the tags they listed (space- or comma-separated).
pub fn take_tags(h: &mut HeaderMap, names: &[HeaderName]) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for name in names {
        for v in h.get_all(name) {
            for t in String::from_utf8_lossy(v.as_bytes()).split([' ', ',', '\t']) {
                if !t.is_empty() && !tags.iter().any(|x| x == t) {
                    tags.push(t.to_owned());
                }
            }
        }
        h.remove(name);
    }
    tags
}

/// Removes the cache-control fields targeted at us (RFC 9213 says they are not forwarded).
pub fn strip_targeted(h: &mut HeaderMap) {
    h.remove(&CDN_CACHE_CONTROL);
    h.remove(&SURROGATE_CONTROL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_fields_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn client_address_trusts_forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<stratus_config::IpRange> =
            ["10.0.0.0/8", "127.0.0.1"].iter().map(|s| s.parse().unwrap()).collect();
        let check = |peer: &str, xff: Option<&str>, want: &str| {
            let mut h = HeaderMap::new();
            if let Some(v) = xff {
                h.insert("x-forwarded-for", v.parse().unwrap());
            }
            let got = client_address(Some(peer.parse().unwrap()), &h, &trusted);
            assert_eq!(got, Some(want.parse().unwrap()), "{peer} {xff:?}");
        };
        check("192.0.2.1", Some("198.51.100.7"), "192.0.2.1");
        check("127.0.0.1", None, "127.0.0.1");
        check("127.0.0.1", Some("198.51.100.7"), "198.51.100.7");
        check("127.0.0.1", Some("6.6.6.6, 198.51.100.7, 10.1.1.1"), "198.51.100.7");
        check("127.0.0.1", Some("10.2.2.2, 10.1.1.1"), "10.2.2.2");
        check("127.0.0.1", Some("198.51.100.7:443"), "198.51.100.7");
        check("127.0.0.1", Some("[2001:db8::1]:443"), "2001:db8::1");
        check("127.0.0.1", Some("garbage, 10.1.1.1"), "10.1.1.1");
        check("127.0.0.1", Some("garbage"), "127.0.0.1");
    }

    #[test]
    fn tags_are_split_and_removed() {
        let mut h = HeaderMap::new();
        h.insert("surrogate-key", "a b".parse().unwrap());
        h.insert("cache-tag", "b,c".parse().unwrap());
        let names = [HeaderName::from_static("surrogate-key"), HeaderName::from_static("cache-tag")];
        assert_eq!(take_tags(&mut h, &names), ["a", "b", "c"]);
        assert!(h.is_empty());
    }
}
