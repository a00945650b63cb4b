//! Signed URLs and cookies in the Akamai EdgeAuth token format, so tokens minted by existing
//! generators (the `akamai-edgeauth` Python package, Akamai's Java/Node/Go ports) work here:
//!
//! ```text
//! [ip=IP~][st=START~]exp=END~acl=PATTERN[!PATTERN...][~id=…][~data=…]~hmac=HEX
//! [ip=IP~][st=START~]exp=END[~id=…][~data=…]~hmac=HEX          (a URL token)
//! ```
//!
//! `hmac` is HMAC-SHA256, keyed with the hex-decoded key, over every field before it joined
//! by `~`; a URL token (one without `acl`) signs `~url=PATH` after them, binding it to one
//! path. Checks, in order: the HMAC under any configured key (in constant time), `exp` in the
//! future, `st` in the past, `ip` equal to the client address, the path matched by one of the
//! `acl` patterns (`*` any run of characters, `?` one). EdgeAuth's optional salt and its
//! SHA-1/MD5 modes are not accepted.
//!
//! Paths with `.`/`..` segments (also percent-encoded) are refused outright: `acl=/free/*`
//! must not admit `/free/../paid/x`, which an origin would read as `/paid/x`.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use http::header;
use http::request::Parts;
use percent_encoding::percent_decode_str;
use sha2::Sha256;
use stratus_config::policy::{TokenAuth, TokenSource};

use crate::error::ProxyError;

/// Longest token accepted; real ones are a few hundred bytes.
const MAX_TOKEN: usize = 4096;

/// A site's token check.
#[derive(Debug)]
pub(super) struct Verifier {
    keys: Vec<Vec<u8>>,
    name: String,
    from: TokenSource,
    prefixes: Vec<String>,
}

impl Verifier {
    pub(super) fn new(cfg: &TokenAuth) -> Self {
        Self {
            keys: cfg.keys.iter().map(|k| k.bytes().to_vec()).collect(),
            name: cfg.name.clone(),
            from: cfg.from,
            prefixes: cfg.prefixes.clone(),
        }
    }

    /// Checks the request's token; a query token is removed from the request target.
    pub(super) fn check(
        &self,
        parts: &mut Parts,
        client: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<(), ProxyError> {
        let path = parts.uri.path().to_owned();
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|p| path.starts_with(p.as_str())) {
            return Ok(());
        }
        let token = match self.from {
            TokenSource::Query => take_query_token(parts, &self.name),
            TokenSource::Cookie => cookie(&parts.headers, &self.name),
            TokenSource::Header => {
                let v =
                    parts.headers.get(self.name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned);
                parts.headers.remove(self.name.as_str());
                v
            }
        };
        let token = token.ok_or(ProxyError::Forbidden("token-missing"))?;
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        verify(&token, &self.keys, &path, client, now).map_err(ProxyError::Forbidden)
    }
}

/// Verifies `token` for a request of `path` from `client` at `now` (Unix seconds); the error
/// is the `Cache-Status` detail.
pub(super) fn verify(
    token: &str,
    keys: &[Vec<u8>],
    path: &str,
    client: Option<IpAddr>,
    now: u64,
) -> Result<(), &'static str> {
    if token.len() > MAX_TOKEN {
        return Err("token-invalid");
    }
    let (signed, mac) = token.rsplit_once("~hmac=").ok_or("token-invalid")?;
    let mac = hex::decode(mac).map_err(|_| "token-invalid")?;
    let mut fields = Fields::default();
    for field in signed.split('~') {
        let (name, value) = field.split_once('=').ok_or("token-invalid")?;
        let slot = match name {
            "ip" => &mut fields.ip,
            "st" => &mut fields.st,
            "exp" => &mut fields.exp,
            "acl" => &mut fields.acl,
            "url" => return Err("token-invalid"),
            // `id`, `data` and fields of later versions are signed but mean nothing to us.
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err("token-invalid");
        }
    }
    let url_source;
    let source = match fields.acl {
        Some(_) => signed,
        None => {
            url_source = format!("{signed}~url={path}");
            &url_source
        }
    };
    let signed_by_a_key = keys.iter().any(|key| {
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else { return false };
        m.update(source.as_bytes());
        m.verify_slice(&mac).is_ok()
    });
    if !signed_by_a_key {
        return Err("token-invalid");
    }
    let exp: u64 = fields.exp.ok_or("token-invalid")?.parse().map_err(|_| "token-invalid")?;
    if now >= exp {
        return Err("token-expired");
    }
    if let Some(st) = fields.st {
        let st: u64 = st.parse().map_err(|_| "token-invalid")?;
        if now < st {
            return Err("token-not-yet-valid");
        }
    }
    if let Some(ip) = fields.ip {
        let ip: IpAddr = ip.parse().map_err(|_| "token-invalid")?;
        if client != Some(ip) {
            return Err("token-ip");
        }
    }
    if has_dot_segment(path) {
        return Err("token-path");
    }
    if let Some(acl) = fields.acl
        && !acl.split('!').any(|pattern| glob(pattern.as_bytes(), path.as_bytes()))
    {
        return Err("token-path");
    }
    Ok(())
}

#[derive(Default)]
struct Fields<'a> {
    ip: Option<&'a str>,
    st: Option<&'a str>,
    exp: Option<&'a str>,
    acl: Option<&'a str>,
}

/// Whether a path has a `.` or `..` segment, also percent-encoded (`%2e`).
fn has_dot_segment(path: &str) -> bool {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    decoded.split(['/', '\\']).any(|s| s == "." || s == "..")
}

/// `*` matches any run of bytes (slashes too, as in EdgeAuth ACLs), `?` one byte. Linear
/// backtracking on the last `*`, so a hostile pattern or path costs O(len²) at worst.
pub(super) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Takes the token parameter out of the query (percent-decoded), rewriting the request target
/// without it so neither the cache key nor the origin sees it.
fn take_query_token(parts: &mut Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        if n == name {
            token.get_or_insert_with(|| percent_decode_str(v).decode_utf8_lossy().into_owned());
        } else {
            rest.push(pair);
        }
    }
    let token = token?;
    let path = parts.uri.path();
    let target = if rest.is_empty() { path.to_owned() } else { format!("{path}?{}", rest.join("&")) };
    let mut uri = http::uri::Builder::new();
    if let Some(s) = parts.uri.scheme() {
        uri = uri.scheme(s.clone());
    }
    if let Some(a) = parts.uri.authority() {
        uri = uri.authority(a.clone());
    }
    if let Ok(u) = uri.path_and_query(target).build() {
        parts.uri = u;
    }
    Some(token)
}

/// The value of cookie `name` in the request's `Cookie` fields.
fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Mints a token as EdgeAuth does.
    fn mint(key: &[u8], fields: &str, url: Option<&str>) -> String {
        let source = match url {
            Some(u) => format!("{fields}~url={u}"),
            None => fields.to_owned(),
        };
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(source.as_bytes());
        format!("{fields}~hmac={}", hex::encode(m.finalize().into_bytes()))
    }

    const KEY: &[u8] = b"\x0a\x0b\x0c";

    #[test]
    fn token_table() {
        let keys = vec![b"old".to_vec(), KEY.to_vec()];
        let ip = Some("192.0.2.7".parse().unwrap());
        let check = |token: &str, path: &str, want: Result<(), &str>| {
            assert_eq!(verify(token, &keys, path, ip, 1000), want, "{token} {path}");
        };
        check(&mint(KEY, "exp=2000~acl=/v/*", None), "/v/a/b.ts", Ok(()));
        check(&mint(KEY, "exp=2000~acl=/v/*", None), "/w/a", Err("token-path"));
        check(&mint(KEY, "exp=2000~acl=/v/*", None), "/v/../w/a", Err("token-path"));
        check(&mint(KEY, "exp=2000~acl=/v/*", None), "/v/%2e%2E/w/a", Err("token-path"));
        check(&mint(KEY, "exp=2000~acl=/a/*!/b/?.js", None), "/b/x.js", Ok(()));
        check(&mint(KEY, "exp=999~acl=/*", None), "/x", Err("token-expired"));
        check(&mint(KEY, "exp=1000~acl=/*", None), "/x", Err("token-expired"));
        check(&mint(KEY, "st=1500~exp=2000~acl=/*", None), "/x", Err("token-not-yet-valid"));
        check(&mint(KEY, "ip=192.0.2.7~exp=2000~acl=/*", None), "/x", Ok(()));
        check(&mint(KEY, "ip=192.0.2.8~exp=2000~acl=/*", None), "/x", Err("token-ip"));
        check(&mint(b"old", "exp=2000~acl=/*~id=s1~data=p", None), "/x", Ok(()));
        check(&mint(b"other", "exp=2000~acl=/*", None), "/x", Err("token-invalid"));
        check(&mint(KEY, "exp=2000", Some("/one")), "/one", Ok(()));
        check(&mint(KEY, "exp=2000", Some("/one")), "/two", Err("token-invalid"));
        check(&mint(KEY, "acl=/*", None), "/x", Err("token-invalid"));
        check(&mint(KEY, "exp=2000~exp=3000~acl=/*", None), "/x", Err("token-invalid"));
        check("exp=2000~acl=/*", "/x", Err("token-invalid"));
        check("exp=2000~acl=/*~hmac=zz", "/x", Err("token-invalid"));
        // Tampering with a signed field breaks the signature.
        let t = mint(KEY, "exp=2000~acl=/v/*", None).replace("exp=2000", "exp=9000");
        check(&t, "/v/x", Err("token-invalid"));
    }

    #[test]
    fn globs() {
        assert!(glob(b"/a/*", b"/a/b/c"));
        assert!(glob(b"*", b""));
        assert!(glob(b"/a/*.ts", b"/a/x/y.ts"));
        assert!(!glob(b"/a/*.ts", b"/a/x/y.tsx"));
        assert!(glob(b"/a?c", b"/abc"));
        assert!(!glob(b"/a", b"/ab"));
        assert!(glob(b"**a**", b"xxaxx"));
    }

    #[test]
    fn query_tokens_leave_the_target() {
        let req =
            http::Request::get("/v/a.ts?x=1&__token__=exp%3D1~acl%3D%2F*~hmac%3Dab&y=2").body(()).unwrap();
        let (mut parts, ()) = req.into_parts();
        assert_eq!(take_query_token(&mut parts, "__token__").as_deref(), Some("exp=1~acl=/*~hmac=ab"));
        assert_eq!(parts.uri, "/v/a.ts?x=1&y=2");
        let (mut only, ()) = http::Request::get("/v?__token__=t").body(()).unwrap().into_parts();
        assert_eq!(take_query_token(&mut only, "__token__").as_deref(), Some("t"));
        assert_eq!(only.uri, "/v");
    }

    #[test]
    fn cookies() {
        let mut h = http::HeaderMap::new();
        h.append(header::COOKIE, "a=1; __token__=exp=1~hmac=ab".parse().unwrap());
        assert_eq!(cookie(&h, "__token__").as_deref(), Some("exp=1~hmac=ab"));
        assert_eq!(cookie(&h, "b"), None);
    }

    /// A glob without wildcards matches only itself; the reference for the rest is a naive
    /// recursive matcher.
    fn naive(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
            (Some(&c), Some(&d)) if c == b'?' || c == d => naive(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn any_input_is_refused_cleanly(token in ".{0,300}", path in "/[a-z./%*]{0,40}") {
            let _ = verify(&token, &[KEY.to_vec()], &path, None, 1000);
        }

        #[test]
        fn minted_tokens_verify_and_any_flip_breaks_them(
            acl in "/[a-z]{1,8}/\\*",
            leaf in "[a-z]{1,8}",
            exp in 1001u64..u64::MAX / 2,
            flip in 0usize..200,
        ) {
            let token = mint(KEY, &format!("exp={exp}~acl={acl}"), None);
            let path = format!("{}{leaf}", acl.trim_end_matches('*'));
            prop_assert_eq!(verify(&token, &[KEY.to_vec()], &path, None, 1000), Ok(()));
            let mut bytes = token.into_bytes();
            let i = flip % bytes.len();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let flipped = String::from_utf8(bytes).unwrap();
            prop_assert!(verify(&flipped, &[KEY.to_vec()], &path, None, 1000).is_err());
        }

        #[test]
        fn glob_agrees_with_a_naive_matcher(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            prop_assert_eq!(glob(p.as_bytes(), t.as_bytes()), naive(p.as_bytes(), t.as_bytes()));
        }
    }
}
