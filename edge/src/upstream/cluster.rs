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

use std::sync::Arc;

use http::Response;
use http::header::HeaderValue;
use stratus_config::ListenAddr;
use stratus_config::edge::{CaRoots, Cluster as ClusterConfig};
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
#[derive(Debug)]
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

/// The peers of this edge's PoP.
#[derive(Debug)]
pub struct Cluster {
    /// The other peers.
    peers: Vec<Ranked>,
    /// This edge's own id and seed (its `server` is never used).
    own: (String, u64),
    /// Keep copies of what owners serve.
    pub(crate) keep_copies: bool,
    probes: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for probe in &self.probes {
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
        let tls = Arc::new(connect::tls_config(CaRoots::Webpki, None)?);
        let settings = Settings {
            tier: Tier::Peer,
            timeouts: &cfg.timeouts,
            pool: &cfg.pool,
            health: &cfg.health,
            tls: &tls,
            dns,
        };
        let mut peers = Vec::new();
        let mut probes = Vec::new();
        for id in ids.into_iter().filter(|id| *id != own) {
            let url = id.parse().map_err(|e: String| Error::Origin { origin: id.clone(), reason: e })?;
            let server = Arc::new(Origin::new(&url, settings)?);
            probes.extend(spawn_probe(&server, &cfg.health, stop.clone()));
            peers.push(Ranked::new(server, id));
        }
        tracing::info!(own = %own, peers = peers.len(), "cluster of peers");
        Ok(Self { peers, own: (own.clone(), xxh3_64(own.as_bytes())), keep_copies: cfg.keep_copies, probes })
    }

    /// The live peers that rank above this edge for `key`, best first: the owner, then the
    /// next owners should it fail. Empty when this edge owns the key.
    pub(crate) fn owners(&self, key: &str) -> Vec<&Arc<Origin>> {
        let own = (xxh3_64_with_seed(key.as_bytes(), self.own.1), self.own.0.as_str());
        let mut up: Vec<(_, &Ranked)> = self
            .peers
            .iter()
            .filter(|p| p.server.health.is_up())
            .map(|p| (p.score(key), p))
            .filter(|(score, _)| *score > own)
            .collect();
        up.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        up.into_iter().map(|(_, p)| &p.server).collect()
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
            let cluster = Cluster {
                peers: ring(3),
                own: (own.id.clone(), own.seed),
                keep_copies: true,
                probes: Vec::new(),
            };
            let above: Vec<String> = cluster.owners(&key).iter().map(|o| o.name.clone()).collect();
            let want: Vec<String> = ranked.iter().map(|o| o.name.clone()).take_while(|n| *n != own.server.name).collect();
            prop_assert_eq!(above, want);
        }
    }
}
