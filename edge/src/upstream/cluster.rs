//! Tiered caching: which upstream tier a fill asks first.
//!
//! **Cluster** (`[edge.cluster]`). The edges of one PoP share one cache: each cache key has one
//! owner among the live peers, chosen by rendezvous (highest random weight) hashing. A miss on
//! another edge is fetched from the owner, which coalesces it with every other request for the
//! key and fetches from its own upstream. When a peer leaves (down by health checks), only the
//! keys it owned move, each to the next peer by hash; when it comes back they return.
//!
//! The score of peer `p` for key `k` is `XXH3-64(k, seed = XXH3-64(id(p)))`, `id` being the
//! peer's normalized URL (`stratus_config::edge::peer_id`): a documented function every edge
//! computes the same way, whatever its build (unlike `std`'s `SipHash`, whose output may
//! change between Rust releases). Ties, which need a 64-bit collision, go to the larger id.
//!
//! **Parents** (a site's `parents`) are ranked by the same score, so each key has one parent
//! and a shield tier caches each object once.
//!
//! **Loops.** A request that came from a peer (`Stratus-Hop: peer`) is never sent to another
//! peer: the owner goes to its parents or origins, even when its view of the ring differs.
//! Requests through several tiers carry `CDN-Loop` (RFC 8586), which `proxy/headers.rs` checks.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use http::Response;
use http::header::HeaderValue;
use stratus_config::ListenAddr;
use stratus_config::edge::{CaRoots, Cluster as ClusterConfig, MAX_PEERS, peer_id};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::error::Error;
use crate::upstream::connect;
use crate::upstream::dns::Dns;
use crate::upstream::origin::{Origin, Settings, Tier, spawn_probe};

/// `Stratus-Hop`: tells the next edge which tier sent the request.
pub const STRATUS_HOP: http::HeaderName = http::HeaderName::from_static("stratus-hop");

/// The `Stratus-Hop` value of a request from a peer: its receiver must not ask another peer.
pub const FROM_PEER: HeaderValue = HeaderValue::from_static("peer");

/// The `Stratus-Hop` value of a request from a lower tier (a child edge).
pub const FROM_CHILD: HeaderValue = HeaderValue::from_static("child");

/// A server ranked by rendezvous hashing: its seed is the hash of its id.
#[derive(Clone, Debug)]
pub(crate) struct Ranked {
    pub(crate) server: Arc<Origin>,
    id: String,
    seed: u64,
}

impl Ranked {
    pub(crate) fn new(server: Arc<Origin>, id: String) -> Self {
        Self { seed: xxh3_64(id.as_bytes()), server, id }
    }

    fn score(&self, key: &str) -> (u64, &str) {
        (xxh3_64_with_seed(key.as_bytes(), self.seed), &self.id)
    }
}

/// `servers` that are up, best first for `key`.
pub(crate) fn rank<'a>(servers: &'a [Ranked], key: &str) -> Vec<&'a Arc<Origin>> {
    let mut up: Vec<(_, &Ranked)> =
        servers.iter().filter(|s| s.server.health.is_up()).map(|s| (s.score(key), s)).collect();
    up.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    up.into_iter().map(|(_, s)| &s.server).collect()
}

/// The peers of this edge's PoP: static (`peers`), or discovered from the control plane
/// (`discover`) and swapped whole on every change, so a fill sees one consistent ring.
#[derive(Debug)]
pub struct Cluster {
    /// The other peers.
    peers: ArcSwap<Vec<Ranked>>,
    /// This edge's own id and seed (its `server` is never used).
    own: (String, u64),
    /// Keep copies of what owners serve.
    pub(crate) keep_copies: bool,
    /// What clients of discovered peers are built with.
    cfg: ClusterConfig,
    tls: Arc<rustls::ClientConfig>,
    dns: Dns,
    stop: CancellationToken,
    /// Each peer's health probe, by id (aborted when the peer leaves).
    probes: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for probe in self.lock_probes().values() {
            probe.abort();
        }
    }
}

impl Cluster {
    /// Clients for every other peer of `cfg`, with their health probes (if configured).
    pub(crate) fn new(
        cfg: &ClusterConfig,
        listeners: &[ListenAddr],
        dns: &Dns,
        stop: &CancellationToken,
    ) -> Result<Self, Error> {
        let invalid = |e: stratus_config::Invalid| Error::Origin {
            origin: format!("cluster.{}", e.path),
            reason: e.message,
        };
        let (ids, own) = cfg.members(listeners).map_err(invalid)?;
        let cluster = Self {
            peers: ArcSwap::from_pointee(Vec::new()),
            own: (own.clone(), xxh3_64(own.as_bytes())),
            keep_copies: cfg.keep_copies,
            cfg: cfg.clone(),
            tls: Arc::new(connect::tls_config(CaRoots::Webpki, None)?),
            dns: dns.clone(),
            stop: stop.clone(),
            probes: Mutex::new(HashMap::new()),
        };
        let peers =
            ids.into_iter().filter(|id| *id != own).map(|id| cluster.peer(id)).collect::<Result<_, _>>()?;
        cluster.peers.store(Arc::new(peers));
        tracing::info!(own = %own, peers = cluster.peers.load().len(), discover = cfg.discover, "cluster of peers");
        Ok(cluster)
    }

    fn lock_probes(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.probes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client for peer `id`, with its health probe.
    fn peer(&self, id: String) -> Result<Ranked, Error> {
        let settings = Settings {
            tier: Tier::Peer,
            timeouts: &self.cfg.timeouts,
            pool: &self.cfg.pool,
            health: &self.cfg.health,
            tls: &self.tls,
            dns: &self.dns,
        };
        let url = id.parse().map_err(|e: String| Error::Origin { origin: id.clone(), reason: e })?;
        let server = Arc::new(Origin::new(&url, settings)?);
        if let Some(probe) = spawn_probe(&server, &self.cfg.health, self.stop.clone()) {
            self.lock_probes().insert(id.clone(), probe);
        }
        Ok(Ranked::new(server, id))
    }

    /// Whether the peers are discovered from the control plane (`discover`).
    pub fn discovers(&self) -> bool {
        self.cfg.discover
    }

    /// Replaces the peers with the edges at `urls` (the live edges of this PoP, as the
    /// control plane lists them; this edge's own URL may be among them). URLs that are no peer
    /// URL are skipped, and beyond [`MAX_PEERS`] the first by id are kept. Peers that stay
    /// keep their connections and health. Returns whether the set changed.
    pub fn set_peers(&self, urls: &[String]) -> bool {
        let mut ids = BTreeSet::new();
        for url in urls {
            match url.parse().map_err(|e: String| e).and_then(|u| peer_id(&u)) {
                Ok(id) if id != self.own.0 => {
                    ids.insert(id);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(url = %url, %error, "discovered peer URL skipped"),
            }
        }
        let ids: Vec<String> = ids.into_iter().take(MAX_PEERS - 1).collect();
        let current = self.peers.load_full();
        if current.len() == ids.len() && current.iter().zip(&ids).all(|(p, id)| p.id == *id) {
            return false;
        }
        let mut next = Vec::with_capacity(ids.len());
        for id in ids {
            match current.iter().find(|p| p.id == id) {
                Some(kept) => next.push(kept.clone()),
                None => match self.peer(id.clone()) {
                    Ok(peer) => next.push(peer),
                    Err(error) => tracing::warn!(peer = %id, %error, "discovered peer skipped"),
                },
            }
        }
        next.sort_by(|a, b| a.id.cmp(&b.id));
        let mut probes = self.lock_probes();
        probes.retain(|id, probe| {
            let stays = next.iter().any(|p| p.id == *id);
            if !stays {
                probe.abort();
            }
            stays
        });
        drop(probes);
        let listed: Vec<&str> = next.iter().map(|p| p.id.as_str()).collect();
        tracing::info!(own = %self.own.0, peers = next.len() + 1, members = ?listed, "cluster peers discovered");
        self.peers.store(Arc::new(next));
        true
    }

    /// The live peers that rank above this edge for `key`, best first: the owner, then the
    /// next owners should it fail. Empty when this edge owns the key.
    pub(crate) fn owners(&self, key: &str) -> Vec<Arc<Origin>> {
        let own = (xxh3_64_with_seed(key.as_bytes(), self.own.1), self.own.0.as_str());
        let peers = self.peers.load();
        let mut up: Vec<(_, &Ranked)> = peers
            .iter()
            .filter(|p| p.server.health.is_up())
            .map(|p| (p.score(key), p))
            .filter(|(score, _)| *score > own)
            .collect();
        up.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        up.into_iter().map(|(_, p)| p.server.clone()).collect()
    }
}

/// Whether a response from another edge is that edge's own error (it could not reach its
/// upstream, or refused a loop) rather than an answer it relays: a 5xx whose last
/// `Cache-Status` member — the one the answering edge added — has no `fwd-status` and is no
/// hit. Such an answer sends the fill on to the next tier, so that a failing peer never
/// becomes a client's error.
pub(crate) fn edge_error<B>(res: &Response<B>) -> bool {
    if !res.status().is_server_error() {
        return false;
    }
    let Some(last) = res
        .headers()
        .get_all("cache-status")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
    else {
        // Not from a Stratus edge at all (a proxy in between, a crash): not an answer either.
        return true;
    };
    let params: Vec<&str> = last.split(';').skip(1).map(str::trim).collect();
    !params.iter().any(|p| *p == "hit" || p.starts_with("fwd-status="))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn server(url: &str, tier: Tier) -> Arc<Origin> {
        let tls = Arc::new(connect::tls_config(CaRoots::Webpki, None).expect("tls"));
        let d = stratus_config::edge::OriginTimeouts::default();
        let s = Settings {
            tier,
            timeouts: &d,
            pool: &Default::default(),
            health: &Default::default(),
            tls: &tls,
            dns: &Dns::new(&Default::default()),
        };
        Arc::new(Origin::new(&url.parse().expect("url"), s).expect("server"))
    }

    fn ring(n: usize) -> Vec<Ranked> {
        (0..n)
            .map(|i| {
                let id = format!("http://10.0.0.{i}:8080");
                Ranked::new(server(&id, Tier::Parent), id)
            })
            .collect()
    }

    #[test]
    fn scores_are_stable_across_builds() {
        // Pinned values: every edge, whatever its version, must pick the same owner.
        let r = Ranked::new(server("http://10.0.0.1:8080", Tier::Peer), "http://10.0.0.1:8080".into());
        assert_eq!(r.seed, xxh3_64(b"http://10.0.0.1:8080"));
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2, "XXH3-64 of the empty input (reference value)");
    }

    #[tokio::test]
    async fn keys_spread_and_only_a_leaving_peers_keys_move() {
        let servers = ring(3);
        let keys: Vec<String> = (0..3000).map(|i| format!("cdn.example/obj/{i}")).collect();
        let owner = |s: &[Ranked], k: &str| rank(s, k).first().map(|o| o.name.clone()).expect("owner");
        let before: Vec<String> = keys.iter().map(|k| owner(&servers, k)).collect();
        for s in &servers {
            let n = before.iter().filter(|o| **o == s.server.name).count();
            assert!((800..1200).contains(&n), "{} owns {n} of 3000", s.server.name);
        }
        // The third peer leaves: its keys move, the others' stay.
        let two: Vec<Ranked> = servers.into_iter().take(2).collect();
        for (k, was) in keys.iter().zip(&before) {
            let now = owner(&two, k);
            if two.iter().any(|s| s.server.name == *was) {
                assert_eq!(&now, was, "{k} moved although its owner stayed");
            }
        }
    }

    #[test]
    fn edge_errors_are_told_from_relayed_answers() {
        let res = |status: u16, cs: Option<&str>| {
            let mut r = Response::builder().status(status);
            if let Some(cs) = cs {
                r = r.header("cache-status", cs);
            }
            r.body(()).expect("response")
        };
        let cases = [
            (502, Some("edge-b; detail=connect"), true),
            (508, Some("edge-b"), true),
            (502, None, true),
            (503, Some("edge-b; fwd=uri-miss; fwd-status=503"), false),
            (500, Some("origin-cdn; fwd=miss; fwd-status=500, edge-b; hit; ttl=3"), false),
            (502, Some("edge-c; fwd=uri-miss; fwd-status=200, edge-b; detail=timeout"), true),
            (200, None, false),
            (404, Some("edge-b; detail=x"), false),
        ];
        for (status, cs, want) in cases {
            assert_eq!(edge_error(&res(status, cs)), want, "{status} {cs:?}");
        }
    }

    proptest! {
        #[test]
        fn the_owner_is_the_first_ranked_and_never_this_edge(key in "\\PC{0,80}") {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            let _guard = rt.enter();
            let servers = ring(4);
            let ranked = rank(&servers, &key);
            prop_assert_eq!(ranked.len(), 4);
            // Seen from the fourth peer: the peers above it, in the same order.
            let own = &servers[3];
            let urls = (0..3).map(|i| format!("http://10.0.0.{i}:8080").parse().expect("url")).collect();
            let cfg = ClusterConfig::new(urls, Some(own.id.parse().expect("url")));
            let cluster = Cluster::new(&cfg, &[], &Dns::new(&Default::default()), &CancellationToken::new())
                .expect("cluster");
            let above: Vec<String> = cluster.owners(&key).iter().map(|o| o.name.clone()).collect();
            let want: Vec<String> = ranked.iter().map(|o| o.name.clone()).take_while(|n| *n != own.server.name).collect();
            prop_assert_eq!(above, want);
        }
    }
}
