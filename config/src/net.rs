//! Network values in configuration files: HTTP(S) URLs and listen addresses.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An absolute `http://` or `https://` URL with a host, such as an origin or the control plane.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    /// The parsed URL.
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The URL as text, without a trailing slash on an empty path.
    pub fn as_str(&self) -> &str {
        let s = self.0.as_str();
        if self.0.path() == "/" && self.0.query().is_none() { s.strip_suffix('/').unwrap_or(s) } else { s }
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }
}

impl FromStr for HttpUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid URL {s:?} ({why})");
        let url = url::Url::parse(s.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("a host is required"));
        }
        if url.fragment().is_some() {
            return Err(invalid("a fragment is not allowed"));
        }
        Ok(Self(url))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A listen address `IP:PORT`; `localhost:PORT` is accepted as `127.0.0.1:PORT` and port 0
/// asks the system for a free port (the server logs the one it bound).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_prefix("localhost:").map(|p| format!("127.0.0.1:{p}"));
        let text = t.as_deref().unwrap_or(s.trim());
        text.parse::<SocketAddr>()
            .map(Self)
            .map_err(|_| format!("invalid listen address {s:?} (expected IP:PORT, e.g. 0.0.0.0:8080)"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// An address range of trusted proxies: a CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or one
/// address (`127.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange(pub ipnet::IpNet);

impl IpRange {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        t.parse::<ipnet::IpNet>().or_else(|_| t.parse::<IpAddr>().map(ipnet::IpNet::from)).map(Self).map_err(
            |_| format!("invalid address range {s:?} (expected an IP or a CIDR block, e.g. 10.0.0.0/8)"),
        )
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for IpRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!("http://127.0.0.1:9000".parse::<HttpUrl>().is_ok());
        assert_eq!(
            "https://origin.example/bucket".parse::<HttpUrl>().map(|u| u.to_string()),
            Ok("https://origin.example/bucket".to_owned())
        );
        for bad in ["htp:/x", "ftp://a", "http://", "origin.example", "http://a/#frag"] {
            let err = bad.parse::<HttpUrl>().expect_err(bad);
            assert!(err.starts_with(&format!("invalid URL {bad:?}")), "{err}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!("localhost:0".parse::<ListenAddr>().map(|a| a.0.port()), Ok(0));
        assert!("0.0.0.0:8080".parse::<ListenAddr>().is_ok());
        assert!("[::1]:80".parse::<ListenAddr>().is_ok());
        assert!("8080".parse::<ListenAddr>().is_err());
    }
}
