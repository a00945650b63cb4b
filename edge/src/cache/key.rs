//! Cache keys. A primary key names an object as clients ask for it: host (lowercased, without
//! port, as `docs/PROTOCOL.md` fixes), path and the query after the site's rules, plus any
//! request headers the site adds. GET and HEAD share keys (HEAD is answered from the GET).
//! `Vary` adds a secondary key built from the request's values of the listed headers,
//! normalized (whitespace collapsed, lists joined with ", "; `Accept-Language` and
//! `Accept-Encoding` also ignore order, case and q-value spelling, see `accept.rs`) so trivial
//! differences share a variant.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use http::{HeaderMap, Uri};
use stratus_config::edge::{KeyRules, QueryMode};

use crate::cache::accept;

/// Separates the parts of a key; it cannot appear in a host, path or header value.
const SEP: char = '\u{1f}';
/// What follows the primary key in the key of a `Vary` variant.
pub const VARIANT_MARK: &str = "\u{1f}\u{1f}";

/// The primary cache key of a request and the parts purges match on, all in one shared
/// string: `host path [?query] [SEP header:value]...`. The store keys its map and its purge
/// index with the same `Arc<str>`, so a cached object carries its key once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    primary: Arc<str>,
    /// `primary[..host_end]` is the host.
    host_end: u32,
    /// `primary[host_end..path_end]` is the path.
    path_end: u32,
    /// `primary[path_end + 1..query_end]` is the query, when `query_end > path_end`.
    query_end: u32,
}

impl CacheKey {
    /// Builds the key for a request to `host` for `uri` under the site's `rules`.
    pub fn new(host: &str, uri: &Uri, rules: &KeyRules, headers: &HeaderMap) -> Self {
        let path = uri.path();
        let query = uri.query().and_then(|q| select_params(q, rules, rules.query));
        let (mut path_end, mut query_end) = (0, 0);
        let primary = shared(|key| {
            key.push_str(host);
            key.push_str(path);
            path_end = key.len();
            if let Some(q) = &query {
                key.push('?');
                key.push_str(q);
            }
            query_end = key.len();
            for name in &rules.headers {
                key.push(SEP);
                key.extend(name.chars().map(|c| c.to_ascii_lowercase()));
                key.push(':');
                push_header_value(key, headers, name.as_str());
            }
        });
        // Request heads are limited to far less than 4 GiB, so the offsets fit.
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            primary,
            host_end: offset(host.len()),
            path_end: offset(path_end),
            query_end: offset(query_end),
        }
    }

    /// The host, lowercased, without port.
    pub fn host(&self) -> &str {
        &self.primary[..self.host_end as usize]
    }

    /// The path as sent.
    pub fn path(&self) -> &str {
        &self.primary[self.host_end as usize..self.path_end as usize]
    }

    /// The query after the site's rules (`None` when it contributes nothing).
    pub fn query(&self) -> Option<&str> {
        (self.query_end > self.path_end)
            .then(|| &self.primary[self.path_end as usize + 1..self.query_end as usize])
    }

    /// The whole primary key.
    pub fn primary(&self) -> &Arc<str> {
        &self.primary
    }

    /// The key's string and the ends of its host, path and query (for the disk tier).
    pub fn parts(&self) -> (&Arc<str>, [u32; 3]) {
        (&self.primary, [self.host_end, self.path_end, self.query_end])
    }

    /// A key from [`CacheKey::parts`]; `None` unless the ends fall in order on character
    /// boundaries, the host has no `/` and the path starts with one.
    pub fn from_parts(primary: Arc<str>, ends: [u32; 3]) -> Option<Self> {
        let [h, p, q] = ends.map(|n| n as usize);
        let ok = h <= p
            && p <= q
            && q <= primary.len()
            && [h, p, q].iter().all(|&i| primary.is_char_boundary(i))
            && !primary[..h].contains('/')
            && primary[h..p].starts_with('/')
            && (q == p || primary[p..].starts_with('?'));
        ok.then_some(Self { primary, host_end: ends[0], path_end: ends[1], query_end: ends[2] })
    }

    /// The key of the variant selected by `vary` for a request with `headers`.
    pub fn variant(&self, vary: &[HeaderName], headers: &HeaderMap) -> Arc<str> {
        if vary.is_empty() {
            return self.primary.clone();
        }
        shared(|key| {
            key.push_str(&self.primary);
            for name in vary {
                key.push(SEP);
                key.push(SEP);
                key.push_str(name.as_str());
                key.push(':');
                push_header_value(key, headers, name.as_str());
            }
        })
    }
}

thread_local! {
    /// Where a key is put together before it is copied into its shared string, so that a
    /// key costs one allocation (not a growing `String` and then its copy).
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A thread's scratch space is given back when a key made it larger than this.
const SCRATCH_KEEP: usize = 4096;

/// The string `build` writes, as a shared string.
fn shared(build: impl FnOnce(&mut String)) -> Arc<str> {
    SCRATCH.with_borrow_mut(|key| {
        key.clear();
        build(key);
        let out = Arc::from(key.as_str());
        if key.capacity() > SCRATCH_KEEP {
            *key = String::new();
        }
        out
    })
}

/// The host and path of a stored key (of a primary key or any of its variants).
pub fn host_and_path(key: &str) -> (&str, &str) {
    // A host has no `/` (see `HostFields::host`) and a path starts with one; the path ends at the
    // query or at the first separator.
    let (host, rest) = key.split_at(key.find('/').unwrap_or(key.len()));
    let end = rest.find(['?', SEP]).unwrap_or(rest.len());
    (host, &rest[..end])
}

/// Whether `key` (a primary key or a variant) is for exactly `host_path`, any query or variant.
pub fn is_for_path(key: &str, host_path: &str) -> bool {
    key.strip_prefix(host_path).is_some_and(|rest| rest.is_empty() || rest.starts_with(['?', SEP]))
}

/// The query as the site's rules make it part of the key.
pub fn normalize_query(query: &str, rules: &KeyRules) -> Option<String> {
    select_params(query, rules, rules.query).map(Cow::into_owned)
}

/// The query sent to the origin for a GET or HEAD: the client's, without the parameters the
/// key ignores (`ignore_params`, or all of them with `query = "drop"`), in the client's order.
pub fn upstream_query(query: &str, rules: &KeyRules) -> Option<String> {
    let mode = if rules.query == QueryMode::Sort { QueryMode::Keep } else { rules.query };
    select_params(query, rules, mode).map(Cow::into_owned)
}

/// `query` without `rules.ignore_params`, sorted by name with `mode = Sort`, nothing with
/// `Drop`; `None` when nothing is left. Borrowed when the query is kept as it is.
fn select_params<'a>(query: &'a str, rules: &KeyRules, mode: QueryMode) -> Option<Cow<'a, str>> {
    if mode == QueryMode::Drop {
        return None;
    }
    if mode == QueryMode::Keep && rules.ignore_params.is_empty() {
        return (!query.is_empty()).then_some(Cow::Borrowed(query));
    }
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(n, _)| n);
            !rules.ignore_params.iter().any(|i| i == name)
        })
        .collect();
    if mode == QueryMode::Sort {
        // Stable sort by name keeps repeated parameters (`a=2&a=1`) in their meaningful order.
        pairs.sort_by_key(|p| p.split_once('=').map_or(*p, |(n, _)| n));
    }
    (!pairs.is_empty()).then(|| Cow::Owned(pairs.join("&")))
}

/// All values of `name`, whitespace-normalized and joined with ", "; `Accept-Language` and
/// `Accept-Encoding` in their normal form (`accept.rs`: order, case and q-value spelling do
/// not matter).
pub fn header_value(headers: &HeaderMap, name: &str) -> String {
    let mut out = String::new();
    push_header_value(&mut out, headers, name);
    out
}

/// [`header_value`], appended to `out`.
fn push_header_value(out: &mut String, headers: &HeaderMap, name: &str) {
    if accept::normalised(name) {
        let texts: Vec<std::borrow::Cow<'_, str>> =
            headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
        out.push_str(&accept::normal_form(texts.iter().flat_map(|t| t.split(','))));
        return;
    }
    let start = out.len();
    for v in headers.get_all(name) {
        let text = String::from_utf8_lossy(v.as_bytes());
        for item in text.split(',') {
            let mut words = item.split_whitespace();
            let Some(first) = words.next() else { continue };
            if out.len() > start {
                out.push_str(", ");
            }
            out.push_str(first);
            for word in words {
                out.push(' ');
                out.push_str(word);
            }
        }
    }
}

/// The header names listed by `Vary` (lowercased, deduplicated, sorted); `None` for `Vary: *`.
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for v in headers.get_all(http::header::VARY) {
        for item in String::from_utf8_lossy(v.as_bytes()).split(',') {
            let item = item.trim();
            if item == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(item.to_ascii_lowercase().as_bytes()) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names)
}

/// A request's target authority and `Host` fields, held apart from the request (the clones
/// share its bytes; nothing is copied), so that the host read from them can stay borrowed
/// while a site's policy rewrites the request.
#[derive(Debug)]
pub struct HostFields {
    authority: Option<Authority>,
    /// The first two `Host` fields: a second one is refused.
    fields: [Option<HeaderValue>; 2],
}

impl HostFields {
    /// The fields of a request.
    pub fn of(uri: &Uri, headers: &HeaderMap) -> Self {
        let mut fields = headers.get_all(http::header::HOST).iter();
        Self { authority: uri.authority().cloned(), fields: [fields.next().cloned(), fields.next().cloned()] }
    }

    /// The host of the request: HTTP/2 `:authority` or absolute-form URI, else `Host`, normalized
    /// by [`normalize_host`]. The cache key and the `Host` the origin receives both come from this
    /// one value, so no client can have one host's answer stored under another's name.
    ///
    /// Refused (the request is answered 400): no host; two `Host` fields (RFC 9112 §3.2); a target
    /// authority and a `Host` that name different hosts (RFC 9113 §8.3.1 says so for h2; for
    /// HTTP/1.1 absolute-form RFC 9112 §3.2.2 lets a server ignore `Host`, but a disagreement is
    /// what a poisoning attempt looks like); userinfo; an invalid port; a host with characters no
    /// host name or IP literal has (a host is part of every cache key, so one with `/` could make a
    /// key that names another host's object: `a.example/x` + `/p` = `a.example` + `/x/p`).
    pub fn host(&self) -> Result<Cow<'_, str>, &'static str> {
        host_of(self.authority.as_ref().map(Authority::as_str), self.fields.iter().flatten())
    }
}

/// [`HostFields::host`] from the target's authority and the `Host` fields.
fn host_of<'a>(
    authority: Option<&'a str>,
    mut fields: impl Iterator<Item = &'a HeaderValue>,
) -> Result<Cow<'a, str>, &'static str> {
    let field = fields.next();
    if fields.next().is_some() {
        return Err("more than one Host field");
    }
    let field = field.map(|v| v.to_str().map_err(|_| "invalid Host field")).transpose()?;
    let from_field = field.map(normal_host).transpose()?;
    match authority {
        Some(authority) => {
            let host = normal_host(authority)?;
            if from_field.as_ref().is_some_and(|f| *f != host) {
                return Err("Host does not match the request target");
            }
            Ok(host)
        }
        None => from_field.ok_or("missing Host"),
    }
}

/// `Host`-style `host[:port]` → the host as keys and origins see it: lowercased, without port,
/// IPv6 brackets or a trailing dot (`Example.COM.:8080` → `example.com`). Purges normalize
/// their hosts the same way.
pub fn normalize_host(hostport: &str) -> Result<String, &'static str> {
    normal_host(hostport).map(Cow::into_owned)
}

/// [`normalize_host`], borrowing from `hostport` unless it has upper-case letters (a request's
/// host is normalized on every request; most arrive in lower case).
fn normal_host(hostport: &str) -> Result<Cow<'_, str>, &'static str> {
    match plain_host(hostport) {
        Some(host) => Ok(Cow::Borrowed(host)),
        None => any_host(hostport),
    }
}

/// The host of the common `Host` field in one pass — a lower-case name or IPv4 address with
/// an optional port of at most five digits — exactly as [`any_host`] reads it; `None` for
/// anything else, which `any_host` then reads (or refuses).
fn plain_host(hostport: &str) -> Option<&str> {
    let bytes = hostport.as_bytes();
    let mut end = bytes.len();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {}
            b':' => {
                end = i;
                break;
            }
            _ => return None,
        }
    }
    let port = bytes.get(end + 1..).unwrap_or_default();
    let port_ok = port.len() < 5 || (port.len() == 5 && port <= b"65535".as_slice());
    if !(port_ok && port.iter().all(u8::is_ascii_digit)) {
        return None;
    }
    let host = &hostport[..end];
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// [`normal_host`] for any text: surrounding whitespace, IPv6 literals, upper case, and every
/// refusal.
fn any_host(hostport: &str) -> Result<Cow<'_, str>, &'static str> {
    let hostport = hostport.trim();
    if hostport.contains('@') {
        return Err("userinfo in the authority");
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("unclosed IPv6 literal")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("invalid authority")?),
        };
        (inner, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err("IPv6 literal without brackets"),
            None => (hostport, None),
        }
    };
    // An empty port is allowed by RFC 3986 and means the default.
    if let Some(p) = port
        && !p.is_empty()
        && !(p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
    {
        return Err("invalid port");
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if !valid {
        return Err("invalid host");
    }
    Ok(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// A purge's or admin's host as keys hold it ([`normalize_host`]), leniently: an entry that
/// does not normalize is kept as given (lowercased), so it matches nothing rather than all.
pub fn purge_host(hostport: &str) -> String {
    normalize_host(hostport).unwrap_or_else(|_| hostport.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(query: QueryMode, ignore: &[&str]) -> KeyRules {
        KeyRules { query, ignore_params: ignore.iter().map(|s| (*s).to_owned()).collect(), headers: vec![] }
    }

    #[test]
    fn query_rules_table() {
        let cases: &[(QueryMode, &[&str], &str, Option<&str>)] = &[
            (QueryMode::Keep, &[], "b=1&a=2", Some("b=1&a=2")),
            (QueryMode::Keep, &[], "", None),
            (QueryMode::Keep, &["utm_source"], "b=1&utm_source=x&a=2", Some("b=1&a=2")),
            (QueryMode::Sort, &[], "b=1&a=2&a=1", Some("a=2&a=1&b=1")),
            (QueryMode::Sort, &["x"], "x=1", None),
            (QueryMode::Drop, &[], "b=1", None),
        ];
        for (mode, ignore, q, want) in cases {
            assert_eq!(normalize_query(q, &rules(*mode, ignore)).as_deref(), *want, "{mode:?} {q}");
        }
        // Upstream, the client's order stays; what is left out is left out of the key too.
        let upstream: &[(QueryMode, &[&str], &str, Option<&str>)] = &[
            (QueryMode::Keep, &["utm_source"], "b=1&utm_source=x&a=2", Some("b=1&a=2")),
            (QueryMode::Sort, &["x"], "b=1&x=1&a=2", Some("b=1&a=2")),
            (QueryMode::Drop, &[], "b=1", None),
        ];
        for (mode, ignore, q, want) in upstream {
            assert_eq!(upstream_query(q, &rules(*mode, ignore)).as_deref(), *want, "{mode:?} {q}");
        }
    }

    #[test]
    fn key_parts_and_path_matching() {
        let rules = KeyRules { headers: vec!["X-Tenant".into()], ..KeyRules::default() };
        let mut h = HeaderMap::new();
        h.insert("x-tenant", "t1".parse().unwrap());
        let key = CacheKey::new("a.example", &Uri::from_static("/p/q?b=1"), &rules, &h);
        assert_eq!((key.host(), key.path(), key.query()), ("a.example", "/p/q", Some("b=1")));
        let bare = CacheKey::new("a.example", &Uri::from_static("/p"), &KeyRules::default(), &h);
        assert_eq!((bare.host(), bare.path(), bare.query()), ("a.example", "/p", None));
        assert_eq!(host_and_path(key.primary()), ("a.example", "/p/q"));
        assert!(is_for_path(key.primary(), "a.example/p/q"));
        assert!(is_for_path(bare.primary(), "a.example/p"));
        assert!(!is_for_path(key.primary(), "a.example/p"), "/p/q is not /p");
        assert!(!is_for_path("a.example/pq", "a.example/p"));
    }

    #[test]
    fn request_hosts_table() {
        let hosts = |fields: &[&str]| {
            let mut m = HeaderMap::new();
            for f in fields {
                m.append(http::header::HOST, f.parse().unwrap());
            }
            m
        };
        #[rustfmt::skip]
        let cases: &[(&str, &[&str], Result<&str, &str>)] = &[
            // (target, Host fields, expected)
            ("/x", &["CDN.Example:8080"], Ok("cdn.example")),
            ("/x", &["[::1]:80"], Ok("::1")),
            ("/x", &["a.example."], Ok("a.example")),
            ("/x", &["a.example.:"], Ok("a.example")),
            ("/x", &["a.example/x"], Err("invalid host")),
            ("/x", &["a b"], Err("invalid host")),
            ("/x", &["a.example:1337x"], Err("invalid port")),
            ("/x", &["a.example:65536"], Err("invalid port")),
            ("/x", &["a.example:-1"], Err("invalid port")),
            ("/x", &["user@a.example"], Err("userinfo in the authority")),
            ("/x", &["::1"], Err("IPv6 literal without brackets")),
            ("/x", &["[::1"], Err("unclosed IPv6 literal")),
            ("/x", &[""], Err("invalid host")),
            ("/x", &[], Err("missing Host")),
            ("/x", &["a.example", "b.example"], Err("more than one Host field")),
            ("/x", &["a.example", "a.example"], Err("more than one Host field")),
            // HTTP/2 `:authority` and HTTP/1.1 absolute-form name an IPv6 host alike.
            ("http://[::1]:8080/x", &[], Ok("::1")),
            ("http://B.example:1/x", &[], Ok("b.example")),
            ("http://victim.example/x", &["victim.example:1337"], Ok("victim.example")),
            ("http://victim.example/x", &["Victim.Example."], Ok("victim.example")),
            ("http://victim.example/x", &["evil.example"], Err("Host does not match the request target")),
        ];
        for (target, fields, want) in cases {
            let h = hosts(fields);
            let fields = HostFields::of(&target.parse::<Uri>().unwrap(), &h);
            let got = fields.host();
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{target} {fields:?}");
        }
    }

    proptest::proptest! {
        /// The one-pass reading of common hosts is the general one's, for anything a `Host`
        /// field may hold (and for the common shapes, which random text seldom hits).
        #[test]
        fn plain_hosts_read_as_any_other(
            text in "[ -~]{0,24}",
            shaped in "[a-z0-9._-]{0,12}(\\.)?(:[0-9]{0,6})?(:[0-9]{0,3})?",
        ) {
            for hostport in [&text, &shaped] {
                if let Some(host) = plain_host(hostport) {
                    proptest::prop_assert_eq!(any_host(hostport), Ok(Cow::Borrowed(host)));
                }
            }
            // Of these shapes, what the general reading accepts is exactly what the one pass does.
            proptest::prop_assert_eq!(plain_host(&shaped).is_some(), any_host(&shaped).is_ok(), "{}", shaped);
        }

        /// Whatever the client sends, a host that is accepted cannot name another key's path
        /// or query, and normalizing it again changes nothing.
        #[test]
        fn accepted_hosts_are_normal(host in "\\PC{0,40}") {
            if let Ok(h) = normalize_host(&host) {
                proptest::prop_assert!(!h.is_empty());
                proptest::prop_assert!(!h.contains(['/', '?', '#', SEP, '@', ' ']));
                proptest::prop_assert_eq!(h.to_ascii_lowercase(), h.clone());
                let again = if h.contains(':') { format!("[{h}]") } else { h.clone() };
                proptest::prop_assert_eq!(normalize_host(&again), Ok(h));
            }
        }

        /// Keys of accepted hosts split back into the host and path they were built from.
        #[test]
        fn keys_split_back(host in "[a-zA-Z0-9.-]{1,20}(:[0-9]{1,5})?", path in "/[a-zA-Z0-9/._~%-]{0,30}", query in "[a-z0-9=&]{0,20}") {
            if let Ok(h) = normalize_host(&host) {
                let uri: Uri = format!("{path}?{query}").parse().unwrap();
                let key = CacheKey::new(&h, &uri, &KeyRules::default(), &HeaderMap::new());
                proptest::prop_assert_eq!(host_and_path(key.primary()), (h.as_str(), path.as_str()));
                proptest::prop_assert_eq!(key.host(), h.as_str());
            }
        }
    }

    /// The key as it was built before it was put together in a per-thread buffer: a `String`
    /// grown part by part, each header's value in a `String` of its own.
    fn key_as_before(host: &str, uri: &Uri, rules: &KeyRules, headers: &HeaderMap) -> String {
        let mut primary = host.to_owned();
        primary.push_str(uri.path());
        if let Some(q) = uri.query().and_then(|q| normalize_query(q, rules)) {
            primary.push('?');
            primary.push_str(&q);
        }
        for name in &rules.headers {
            primary.push(SEP);
            primary.push_str(&name.to_ascii_lowercase());
            primary.push(':');
            let mut out = String::new();
            for v in headers.get_all(name.as_str()) {
                for item in String::from_utf8_lossy(v.as_bytes()).split(',') {
                    let item = item.split_whitespace().collect::<Vec<_>>().join(" ");
                    if item.is_empty() {
                        continue;
                    }
                    if !out.is_empty() {
                        out.push_str(", ");
                    }
                    out.push_str(&item);
                }
            }
            primary.push_str(&out);
        }
        primary
    }

    proptest::proptest! {
        /// Keys (and so every stored object's name) are byte for byte what they were, for any
        /// query rules, key headers and values, and a key never depends on the one built
        /// before it on the same thread.
        #[test]
        fn keys_are_built_as_before(
            host in "[a-z0-9.-]{1,20}",
            path in "/[a-zA-Z0-9/._~%-]{0,30}",
            query in proptest::option::of("[a-z0-9=&]{0,20}"),
            mode in 0..3u8,
            ignore in proptest::collection::vec("[a-z]{1,3}", 0..3),
            names in proptest::collection::vec("X-[A-Za-z]{1,4}", 0..3),
            values in proptest::collection::vec(("x-[a-z]{1,4}", "[ -~]{0,20}"), 0..4),
            long in 0..6000usize,
        ) {
            let mode = [QueryMode::Keep, QueryMode::Sort, QueryMode::Drop][usize::from(mode)];
            let rules = KeyRules { query: mode, ignore_params: ignore, headers: names };
            let mut headers = HeaderMap::new();
            for (name, value) in &values {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
                }
            }
            // A long key first, to leave the thread's buffer large and full of other bytes.
            let long_path = format!("/{}", "l".repeat(long));
            let _ = CacheKey::new("other.example", &long_path.parse::<Uri>().unwrap(), &rules, &headers);
            let target = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
            let uri: Uri = target.parse().unwrap();
            let key = CacheKey::new(&host, &uri, &rules, &headers);
            let before = key_as_before(&host, &uri, &rules, &headers);
            proptest::prop_assert_eq!(&**key.primary(), before.as_str());
            proptest::prop_assert_eq!(key.host(), host.as_str());
            proptest::prop_assert_eq!(key.path(), path.as_str());
            // A variant's key: the primary key, then each `Vary` name and the request's value.
            let vary: Vec<HeaderName> =
                values.iter().map(|(n, _)| HeaderName::from_bytes(n.as_bytes()).unwrap()).collect();
            let mut want = before.clone();
            if !vary.is_empty() {
                for name in &vary {
                    want.push_str(&format!("{SEP}{SEP}{}:{}", name.as_str(), header_value(&headers, name.as_str())));
                }
            }
            proptest::prop_assert_eq!(&*key.variant(&vary, &headers), want.as_str());
        }
    }

    #[test]
    fn hosts_are_borrowed_unless_lowercased() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::HOST, v.parse().unwrap());
            m
        };
        let uri = Uri::from_static("/x");
        let (plain, upper) = (h("a.example:80"), h("A.example"));
        assert!(matches!(HostFields::of(&uri, &plain).host(), Ok(Cow::Borrowed("a.example"))));
        assert!(matches!(HostFields::of(&uri, &upper).host(), Ok(Cow::Owned(h)) if h == "a.example"));
    }

    #[test]
    fn variants_normalize_whitespace() {
        let key = CacheKey::new("a", &Uri::from_static("/p"), &KeyRules::default(), &HeaderMap::new());
        let mut h1 = HeaderMap::new();
        h1.insert("accept-encoding", "gzip,  br".parse().unwrap());
        let mut h2 = HeaderMap::new();
        h2.append("accept-encoding", "gzip".parse().unwrap());
        h2.append("accept-encoding", "br".parse().unwrap());
        let vary = [HeaderName::from_static("accept-encoding")];
        assert_eq!(key.variant(&vary, &h1), key.variant(&vary, &h2));
        assert!(key.variant(&vary, &h1).starts_with(&**key.primary()));
        assert_eq!(
            vary_names(&{
                let mut h = HeaderMap::new();
                h.insert("vary", "Accept-Encoding, *".parse().unwrap());
                h
            }),
            None
        );
    }
}
