//! Tiered caching: the edges of one point of presence as one cache (`[edge.cluster]`), and the
//! upper-tier pools (`parents`) a site's misses go to before its origins. Re-exported from
//! [`crate::edge`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;
use crate::net::{HttpUrl, ListenAddr};
use crate::units::Duration;
use crate::upstream::{Health, OriginPool, OriginTimeouts};

/// The edges of one point of presence: each cache key has one owner among the live peers,
/// chosen by rendezvous hashing, and a miss elsewhere is fetched from that owner.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Every edge of the PoP by the URL its peers reach it at (`http://10.0.0.1:8080`), this
    /// edge's own included (or given by `self`). Every edge must list the same URLs: they are
    /// what the hash is computed over.
    #[serde(default)]
    pub peers: Vec<HttpUrl>,
    /// Take the peers from the control plane instead: the live edges registered with this
    /// edge's `pop` (itself included), refreshed with every heartbeat. Needs `pop`, `self`
    /// and `control`, and no static `peers`.
    #[serde(default)]
    pub discover: bool,
    /// This edge's own URL among `peers`. Unset: the peer whose address is one of the
    /// listeners' (which then need an explicit IP and port).
    #[serde(default, rename = "self", skip_serializing_if = "Option::is_none")]
    pub self_url: Option<HttpUrl>,
    /// Keep a copy of what the owner served, so a hot object does not cross the PoP on every
    /// hit (default). Off: only owners store, and every request for an object owned elsewhere
    /// is one hop to its owner.
    #[serde(default = "yes")]
    pub keep_copies: bool,
    /// Timeouts towards peers. A peer that does not connect within `connect` is skipped for
    /// the next owner (or the site's parents and origins).
    #[serde(default = "peer_timeouts")]
    pub timeouts: OriginTimeouts,
    /// Connections to each peer.
    #[serde(default)]
    pub pool: OriginPool,
    /// Health checks of peers: by default one failed request takes a peer out of the hash
    /// ring for 2 s, and it is tried again after that.
    #[serde(default = "peer_health")]
    pub health: Health,
}

fn yes() -> bool {
    true
}

fn peer_timeouts() -> OriginTimeouts {
    OriginTimeouts { connect: Duration::secs(1), ..OriginTimeouts::default() }
}

fn peer_health() -> Health {
    Health { max_fails: 1, fail_timeout: Duration::secs(2), ..Health::default() }
}

impl Cluster {
    /// A cluster of `peers`, this edge being `self_url`, with the default settings.
    pub fn new(peers: Vec<HttpUrl>, self_url: Option<HttpUrl>) -> Self {
        Self {
            peers,
            discover: false,
            self_url,
            keep_copies: true,
            timeouts: peer_timeouts(),
            pool: OriginPool::default(),
            health: peer_health(),
        }
    }

    /// The peer ids (see [`peer_id`]) with this edge's own, and which one is this edge's.
    /// `listeners` find this edge among the peers when `self` is unset.
    pub fn members(&self, listeners: &[ListenAddr]) -> Result<(Vec<String>, String), Invalid> {
        if self.discover {
            if !self.peers.is_empty() {
                return Err(Invalid::new("peers", "discovered peers take the place of static peers"));
            }
            let url = self.self_url.as_ref().ok_or_else(|| {
                Invalid::new("self", "discovered peers need this edge's own URL (self, --self URL)")
            })?;
            let id = peer_id(url).map_err(|why| Invalid::new("self", why))?;
            return Ok((vec![id.clone()], id));
        }
        if self.peers.len() > MAX_PEERS {
            return Err(Invalid::new("peers", format!("at most {MAX_PEERS} peers")));
        }
        let mut ids: Vec<String> = Vec::new();
        for (i, url) in self.peers.iter().enumerate() {
            let id = peer_id(url).map_err(|why| Invalid::new(format!("peers[{i}]"), why))?;
            if ids.contains(&id) {
                return Err(Invalid::new(format!("peers[{i}]"), format!("{id} is listed twice")));
            }
            ids.push(id);
        }
        let own = match &self.self_url {
            Some(url) => {
                let id = peer_id(url).map_err(|why| Invalid::new("self", why))?;
                if !ids.contains(&id) {
                    ids.push(id.clone());
                }
                id
            }
            None => {
                let bound: HashSet<String> = listeners
                    .iter()
                    .filter(|l| !l.0.ip().is_unspecified() && l.0.port() != 0)
                    .map(|l| l.0.to_string())
                    .collect();
                let mut mine = self.peers.iter().zip(&ids).filter(|(url, _)| {
                    let u = url.url();
                    let host = match u.host() {
                        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
                        Some(h) => h.to_string(),
                        None => String::new(),
                    };
                    u.port_or_known_default().is_some_and(|p| bound.contains(&format!("{host}:{p}")))
                });
                match (mine.next(), mine.next()) {
                    (Some((_, id)), None) => id.clone(),
                    _ => {
                        return Err(Invalid::new(
                            "self",
                            "cannot tell which peer is this edge: set self (--self URL), or list the \
                             peer whose IP:PORT is a listener's",
                        ));
                    }
                }
            }
        };
        if ids.len() < 2 {
            return Err(Invalid::new("peers", "a cluster needs at least one other peer"));
        }
        Ok((ids, own))
    }

    pub(crate) fn validate(&self, listeners: &[ListenAddr]) -> Result<(), Invalid> {
        self.members(listeners)?;
        self.health.validate().map_err(|e| e.within("health"))?;
        self.pool.validate().map_err(|e| e.within("pool"))?;
        Ok(())
    }
}

/// Most peers of one cluster, static or discovered: beyond it discovered edges are ignored
/// (the first by id are kept, so every edge keeps the same ones).
pub const MAX_PEERS: usize = 256;

/// Checks a `pop` label: 1–64 of `A-Z a-z 0-9 - _ .`.
pub fn check_pop(pop: &str) -> Result<(), String> {
    let ok = !pop.is_empty()
        && pop.len() <= 64
        && pop.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(format!("{pop:?}: must be 1-64 characters of A-Z a-z 0-9 - _ .")) }
}

/// A peer's or parent's identity: `scheme://host:port`, host lowercase, port explicit. The
/// rendezvous hash is computed over it, so every edge must derive the same string from the
/// URLs it was given. URLs with a path, query or user name are refused: a peer is an edge,
/// addressed by host and port only.
pub fn peer_id(url: &HttpUrl) -> Result<String, String> {
    let u = url.url();
    if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() || !u.username().is_empty() {
        return Err(format!("{url}: a peer URL is scheme://host:port, without path, query or user"));
    }
    let host = match u.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string().to_ascii_lowercase(),
        None => return Err(format!("{url}: no host")),
    };
    let port = u.port_or_known_default().ok_or_else(|| format!("{url}: no port"))?;
    Ok(format!("{}://{host}:{port}", u.scheme()))
}

/// Checks a site's `parents`: edge URLs, none twice.
pub(crate) fn validate_parents(parents: &[HttpUrl]) -> Result<(), Invalid> {
    let mut seen = HashSet::new();
    for (i, url) in parents.iter().enumerate() {
        let id = peer_id(url).map_err(|why| Invalid::new(format!("parents[{i}]"), why))?;
        if !seen.insert(id.clone()) {
            return Err(Invalid::new(format!("parents[{i}]"), format!("{id} is listed twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        s.parse().expect("url")
    }

    #[test]
    fn peer_ids_are_normalized() {
        let cases = [
            ("http://10.0.0.1:8080", Ok("http://10.0.0.1:8080")),
            ("http://Edge-A.example", Ok("http://edge-a.example:80")),
            ("https://edge.example/", Ok("https://edge.example:443")),
            ("http://[::1]:81", Ok("http://[::1]:81")),
            ("http://10.0.0.1:8080/x", Err(())),
            ("http://10.0.0.1:8080/?a", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(peer_id(&url(input)).map_err(|_| ()), want.map(str::to_owned), "{input}");
        }
    }

    #[test]
    fn self_is_given_or_found_among_the_listeners() {
        let peers = vec![url("http://127.0.0.1:8080"), url("http://127.0.0.1:8090")];
        let listen = |s: &str| vec![s.parse::<ListenAddr>().expect("addr")];
        let c = Cluster::new(peers.clone(), None);
        assert_eq!(c.members(&listen("127.0.0.1:8090")).expect("found").1, "http://127.0.0.1:8090");
        assert!(c.members(&listen("0.0.0.0:8090")).is_err(), "an unspecified IP names no peer");
        let c = Cluster::new(peers[..1].to_vec(), Some(url("http://127.0.0.1:8090")));
        let (ids, own) = c.members(&listen("0.0.0.0:8090")).expect("self added");
        assert_eq!((ids.len(), own.as_str()), (2, "http://127.0.0.1:8090"));
        let alone = Cluster::new(peers[..1].to_vec(), Some(url("http://127.0.0.1:8080")));
        assert!(alone.members(&[]).is_err(), "one edge is no cluster");
        let twice = Cluster::new(vec![peers[0].clone(), url("http://127.0.0.1:8080/")], None);
        assert!(twice.members(&[]).unwrap_err().message.contains("twice"));
    }
}
