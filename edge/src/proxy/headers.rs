//! Header hygiene on both sides of the proxy: hop-by-hop fields (RFC 9110 §7.6.1), `Via`,
//! `X-Forwarded-*`, and the fields meant only for us (`Surrogate-Control`, tag headers) that
//! clients must never see.

use std::net::IpAddr;

use http::header::{self, Entry, HeaderName};
use http::{HeaderMap, HeaderValue, Version};

use crate::cache::directives::SURROGATE_CONTROL;

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

/// Whether `name` (lowercase) is one of the fixed hop-by-hop fields.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

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

/// Appends our `Via` entry (RFC 9110 §7.6.3). A lone empty `Via` (the placeholder a hit's
/// head carries, `cache/heads.rs`; an empty list from anyone else says nothing either) is
/// replaced, so that the map gets no new field.
pub fn append_via(h: &mut HeaderMap, version: Version) {
    let v = HeaderValue::from_static(match version {
        Version::HTTP_2 => "2 stratus",
        Version::HTTP_10 => "1.0 stratus",
        _ => "1.1 stratus",
    });
    match h.entry(header::VIA) {
        Entry::Occupied(mut e) => {
            let mut values = e.iter();
            if values.next().is_some_and(HeaderValue::is_empty) && values.next().is_none() {
                e.insert(v);
            } else {
                e.append(v);
            }
        }
        Entry::Vacant(e) => {
            e.insert(v);
        }
    }
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

/// The field that carries an object's tags from one tier to the next (it is among the default
/// `cache.tag_headers`, which the receiving edge reads them from).
pub const TIER_TAGS: HeaderName = HeaderName::from_static("surrogate-key");

/// Whether the request already passed through this edge: one of its `CDN-Loop` members
/// (RFC 8586: `cdn-id *( ";" parameter )`, comma-separated) carries `edge=INSTANCE`.
pub fn looped(h: &HeaderMap, instance: &str) -> bool {
    h.get_all("cdn-loop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .flat_map(|member| member.split(';').skip(1))
        .filter_map(|param| param.split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("edge") && value.trim().trim_matches('"') == instance
        })
}

/// Adds what only edges use to a response for another edge (a peer or a child tier): the
/// cache-control fields targeted at CDNs, which apply to every tier (RFC 9213), and the tags
/// under `tag_header`, so that purges by tag reach the copy the other edge keeps.
pub fn add_edge_fields<'a>(
    h: &mut HeaderMap,
    targeted: impl Iterator<Item = (HeaderName, HeaderValue)>,
    tags: impl Iterator<Item = &'a str>,
    tag_header: Option<&HeaderName>,
) {
    for (name, value) in targeted {
        h.append(name, value);
    }
    let tags: Vec<&str> = tags.collect();
    if let Some(name) = tag_header
        && !tags.is_empty()
        && let Ok(v) = HeaderValue::from_str(&tags.join(" "))
    {
        h.insert(name.clone(), v);
    }
}

/// Removes `Surrogate-Control`, which only surrogates of the site's own CDN read (the Edge
/// Architecture Specification has the last one remove it). `CDN-Cache-Control` is forwarded:
/// it targets every CDN cache on the path, including any in front of this edge, which is
/// what RFC 9213 §3 calls typical (and Cloudflare does); clients ignore it.
pub fn strip_targeted(h: &mut HeaderMap) {
    h.remove(&SURROGATE_CONTROL);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our `Via` follows the upstream's; it takes the place of a hit's empty placeholder.
    #[test]
    fn via_is_appended_or_fills_the_placeholder() {
        let via = |values: &[&'static str], version| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::VIA, HeaderValue::from_static(v));
            }
            append_via(&mut h, version);
            h.get_all(header::VIA).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(via(&[], Version::HTTP_11), ["1.1 stratus"]);
        assert_eq!(via(&[""], Version::HTTP_2), ["2 stratus"]);
        assert_eq!(via(&["1.1 parent"], Version::HTTP_10), ["1.1 parent", "1.0 stratus"]);
        assert_eq!(via(&["", "1.1 x"], Version::HTTP_11), ["", "1.1 x", "1.1 stratus"]);
    }

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
    fn loops_are_found_by_this_edges_member_only() {
        let cases = [
            ("stratus; edge=edge-a-1234abcd", true),
            ("foo.example, stratus; edge=\"edge-a-1234abcd\"", true),
            ("stratus; EDGE = edge-a-1234abcd; x=1", true),
            ("stratus; edge=edge-a-1234abcd0", false),
            ("stratus; edge=edge-b-1234abcd", false),
            ("edge-a-1234abcd", false),
            ("", false),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert("cdn-loop", value.parse().unwrap());
            assert_eq!(looped(&h, "edge-a-1234abcd"), want, "{value}");
        }
    }

    proptest::proptest! {
        #[test]
        fn loop_parsing_never_panics_and_finds_its_own_member(prefix in "[ -~]{0,40}", instance in "[a-z0-9-]{1,20}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&prefix) {
                h.append("cdn-loop", v);
            }
            let _ = looped(&h, &instance);
            h.append("cdn-loop", HeaderValue::from_str(&format!("stratus; edge={instance}")).unwrap());
            proptest::prop_assert!(looped(&h, &instance));
        }
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
