//! Per-site edge policy (`[edge.sites.*]`): signed-URL tokens, rate limits, address allow and
//! deny lists, response header rules, compression and origin request signing. Semantics and
//! examples are in `docs/edge.md`, "Edge policy".

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::invalid::Invalid;
use crate::units::ByteSize;

/// `[edge.sites.token_auth]`: requests must carry a valid Akamai EdgeAuth token
/// (`[ip=…~][st=…~]exp=…~acl=…~hmac=…`, HMAC-SHA256), or get a 403.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAuth {
    /// HMAC keys in hex, as EdgeAuth generators take them; a token signed with any one of them
    /// is valid, so a key is rotated by adding the new one, then removing the old one.
    pub keys: Vec<HexKey>,
    /// The query parameter, cookie or header that carries the token.
    #[serde(default = "token_name")]
    pub name: String,
    /// Where the token is: `query` (default), `cookie` or `header`.
    #[serde(default)]
    pub from: TokenSource,
    /// Path prefixes that need a token; the whole site when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
}

fn token_name() -> String {
    "__token__".to_owned()
}

/// Where a request carries its token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    /// A query parameter (`?__token__=…`); removed before the cache key and the origin see it.
    #[default]
    Query,
    /// A cookie (`Cookie: __token__=…`).
    Cookie,
    /// A request header; removed before the request goes to the origin.
    Header,
}

/// A binary key written in hex. Kept as written so configurations round-trip through the
/// control plane; `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct HexKey {
    text: String,
    bytes: Vec<u8>,
}

impl HexKey {
    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl FromStr for HexKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bytes = hex::decode(t)
            .map_err(|_| "a key must be written in hex (an even number of 0-9a-f)".to_owned())?;
        if bytes.is_empty() {
            return Err("a key must not be empty".to_owned());
        }
        Ok(Self { text: t.to_owned(), bytes })
    }
}

impl fmt::Debug for HexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for HexKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HexKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// `[edge.sites.rate_limit]`: a GCRA limit per client (address, and optionally a header).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate per client, e.g. `"50/s"`, `"600/m"`, `"1000/h"`.
    pub rate: Rate,
    /// Requests a client may send at once above the rate; defaults to the rate's count.
    #[serde(default)]
    pub burst: Option<u32>,
    /// A request header whose value, with the client address, names the client (e.g. an API
    /// key header); requests without it are counted by address alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Clients tracked at once; past it the oldest state is dropped (memory stays bounded
    /// when clients rotate addresses).
    #[serde(default = "max_clients")]
    pub max_clients: usize,
}

fn max_clients() -> usize {
    100_000
}

impl RateLimit {
    /// The burst in force.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate.count)
    }
}

/// A rate: `count` requests per `per_secs` seconds, written `"50/s"`, `"600/m"` or `"10/h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests.
    pub count: u32,
    /// Per this many seconds (1, 60 or 3600).
    pub per_secs: u32,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid rate {s:?} (expected COUNT/UNIT, e.g. \"50/s\", \"600/m\", \"10/h\")");
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per_secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("invalid rate {s:?} (the count must be at least 1)"));
        }
        Ok(Self { count, per_secs })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per_secs {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `[[edge.sites.headers]]`: response header rules for paths under a prefix, applied in order
/// to every response of the site (hits, misses and the edge's own errors): `remove`, then
/// `set` (replacing), then `add` (appending).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    /// Path prefix, e.g. `/api/`; `/` (the default) for every path.
    #[serde(default = "slash")]
    pub prefix: String,
    /// Fields set to these values, replacing any the origin sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Fields added next to any the origin sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Fields removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

fn slash() -> String {
    "/".to_owned()
}

/// `[edge.sites.compression]`: gzip, brotli and zstd on the fly for compressible types.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Compression {
    /// Compress responses the origin sent uncompressed.
    pub enabled: bool,
    /// Media types compressed (`text/*` matches every text type); parameters are ignored.
    pub types: Vec<String>,
    /// Smaller bodies are sent as they are.
    pub min_size: ByteSize,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            enabled: true,
            types: [
                "text/*",
                "application/json",
                "application/javascript",
                "application/xml",
                "application/xhtml+xml",
                "application/rss+xml",
                "application/atom+xml",
                "application/manifest+json",
                "application/wasm",
                "image/svg+xml",
                "font/ttf",
                "font/otf",
            ]
            .map(str::to_owned)
            .to_vec(),
            min_size: ByteSize(1024),
        }
    }
}

/// `[edge.sites.origin_auth]`: sign origin requests, like CloudFront's origin access control.
/// The credentials come from `STRATUS_ORIGIN_ACCESS_KEY` and `STRATUS_ORIGIN_SECRET_KEY`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginAuth {
    /// The signing scheme; `s3` (AWS Signature Version 4) is the only one.
    pub kind: OriginAuthKind,
    /// The region in the signature's scope.
    #[serde(default = "us_east_1")]
    pub region: String,
    /// The service in the signature's scope.
    #[serde(default = "s3")]
    pub service: String,
}

fn us_east_1() -> String {
    "us-east-1".to_owned()
}

fn s3() -> String {
    "s3".to_owned()
}

/// Origin request signing schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginAuthKind {
    /// AWS Signature Version 4 in headers (S3, MinIO, the Stratus origin).
    S3,
}

/// Checks a site's policy sections; errors name the key below the site.
pub(crate) fn validate(
    token: Option<&TokenAuth>,
    rate: Option<&RateLimit>,
    headers: &[HeaderRule],
) -> Result<(), Invalid> {
    if let Some(t) = token {
        if t.keys.is_empty() {
            return Err(Invalid::new("token_auth.keys", "at least one key is required"));
        }
        if t.name.is_empty() || !t.name.bytes().all(|b| b.is_ascii_graphic() && !b"=;,&".contains(&b)) {
            return Err(Invalid::new("token_auth.name", "must be a non-empty token without = ; , &"));
        }
        if t.from == TokenSource::Header && http::HeaderName::from_bytes(t.name.as_bytes()).is_err() {
            return Err(Invalid::new("token_auth.name", "is not a valid header name"));
        }
        if let Some(j) = t.prefixes.iter().position(|p| !p.starts_with('/')) {
            return Err(Invalid::new(format!("token_auth.prefixes[{j}]"), "must start with /"));
        }
    }
    if let Some(r) = rate {
        if r.burst() == 0 {
            return Err(Invalid::new("rate_limit.burst", "must be at least 1"));
        }
        if let Some(h) = &r.header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            return Err(Invalid::new("rate_limit.header", "is not a valid header name"));
        }
        if r.max_clients == 0 {
            return Err(Invalid::new("rate_limit.max_clients", "must be at least 1"));
        }
    }
    for (j, rule) in headers.iter().enumerate() {
        let at = |k: &str| format!("headers[{j}].{k}");
        if !rule.prefix.starts_with('/') {
            return Err(Invalid::new(at("prefix"), "must start with /"));
        }
        let names = rule.set.keys().chain(rule.add.keys()).chain(rule.remove.iter());
        for name in names {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Invalid::new(at("set"), format!("{name:?} is not a valid header name")));
            }
        }
        for (name, value) in rule.set.iter().chain(rule.add.iter()) {
            if http::HeaderValue::from_str(value).is_err() {
                return Err(Invalid::new(at(name), "is not a valid header value"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let check = |s: &str, want: Option<(u32, u32)>| {
            assert_eq!(s.parse::<Rate>().ok().map(|r| (r.count, r.per_secs)), want, "{s}");
        };
        check("50/s", Some((50, 1)));
        check(" 600 / m ", Some((600, 60)));
        check("10/h", Some((10, 3600)));
        check("0/s", None);
        check("50", None);
        check("50/d", None);
        check("-1/s", None);
        check("x/s", None);
        assert_eq!("600/m".parse::<Rate>().map(|r| r.to_string()), Ok("600/m".to_owned()));
    }

    #[test]
    fn hex_keys() {
        assert_eq!("0a0B".parse::<HexKey>().map(|k| k.bytes().to_vec()), Ok(vec![10, 11]));
        for bad in ["", "abc", "zz"] {
            assert!(bad.parse::<HexKey>().is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", "0a".parse::<HexKey>().unwrap()), "***");
    }
}
