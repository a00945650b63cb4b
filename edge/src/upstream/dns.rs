//! Resolving origin host names: hickory-resolver with its per-TTL cache, behind the
//! `tower_service::Service<Name>` that hyper-util's `HttpConnector` takes.
//!
//! By default the resolver reads the system configuration (`/etc/resolv.conf`);
//! `[edge.dns] nameservers` replaces it with the given servers (UDP, TCP for truncated
//! answers). `/etc/hosts` is consulted first either way. When the system configuration cannot be read, the edge falls back to the C
//! library's resolver (`getaddrinfo`) with a warning instead of refusing to start, since an
//! edge whose origins are IP addresses needs no DNS at all.
//!
//! Answers are cached for their TTL (hickory's cache; we set no minimum, so a 1-second TTL is
//! honoured). A name with several addresses is spread over: each lookup rotates the list by
//! one, and `HttpConnector` tries the next address when a connect fails. Origins named by an
//! IP address never reach the resolver.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use stratus_config::edge::Dns as DnsConfig;

/// A name could not be resolved (no such name, no address, no answer from the servers).
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {name}: {reason}")]
pub struct DnsError {
    /// The name.
    pub name: String,
    /// Why, as the resolver put it.
    pub reason: String,
}

/// The edge's resolver, shared by every site (one cache); cheap to clone.
#[derive(Clone, Debug)]
pub struct Dns {
    inner: Inner,
    /// Lookups so far, for rotating multi-address answers.
    turn: Arc<AtomicUsize>,
}

#[derive(Clone)]
enum Inner {
    Hickory(Box<TokioResolver>),
    Gai(GaiResolver),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hickory(_) => "hickory",
            Self::Gai(_) => "getaddrinfo",
        })
    }
}

impl Dns {
    /// A resolver per `cfg`: its name servers, or the system configuration when none are given.
    pub fn new(cfg: &DnsConfig) -> Self {
        let provider = TokioRuntimeProvider::default();
        let builder = if cfg.nameservers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the system DNS configuration; using getaddrinfo");
                    return Self { inner: Inner::Gai(GaiResolver::new()), turn: Arc::default() };
                }
            }
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|addr| {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for conn in &mut ns.connections {
                        conn.port = addr.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let mut builder = builder;
        let opts = builder.options_mut();
        opts.timeout = cfg.timeout.get();
        opts.attempts = cfg.attempts;
        // IPv4 first: HttpConnector races the other family after a short delay (happy
        // eyeballs), and most origins are reachable over IPv4.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        match builder.build() {
            Ok(r) => Self { inner: Inner::Hickory(Box::new(r)), turn: Arc::default() },
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the DNS resolver; using getaddrinfo");
                Self { inner: Inner::Gai(GaiResolver::new()), turn: Arc::default() }
            }
        }
    }

    /// Resolves `name` to addresses (port 0; the connector sets the origin's), rotated.
    pub async fn resolve(&self, name: &str) -> Result<Vec<SocketAddr>, DnsError> {
        let fail = |reason: String| DnsError { name: name.to_owned(), reason };
        let mut addrs: Vec<SocketAddr> = match &self.inner {
            Inner::Hickory(r) => {
                let found = r.lookup_ip(name).await.map_err(|e| fail(e.to_string()))?;
                found.iter().map(|ip| SocketAddr::new(ip, 0)).collect()
            }
            Inner::Gai(r) => {
                let mut r = r.clone();
                let parsed = name.parse::<Name>().map_err(|e| fail(e.to_string()))?;
                tower_service::Service::call(&mut r, parsed).await.map_err(|e| fail(e.to_string()))?.collect()
            }
        };
        if addrs.is_empty() {
            return Err(fail("no addresses".to_owned()));
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        rotate(&mut addrs, turn);
        Ok(addrs)
    }
}

/// Rotates each address family by `turn` so that connections spread over every address,
/// keeping the families' order (the connector's happy eyeballs prefers the first family).
fn rotate(addrs: &mut [SocketAddr], turn: usize) {
    let Some(first) = addrs.first().map(SocketAddr::is_ipv4) else { return };
    let v4 = addrs.iter().take_while(|a| a.is_ipv4() == first).count();
    let (first, rest) = addrs.split_at_mut(v4);
    for part in [first, rest] {
        if !part.is_empty() {
            let n = part.len();
            part.rotate_left(turn % n);
        }
    }
}

impl tower_service::Service<Name> for Dns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = DnsError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DnsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DnsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let dns = self.clone();
        Box::pin(async move { dns.resolve(name.as_str()).await.map(Vec::into_iter) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn rotation_spreads_within_each_family() {
        let cases: [(&[&str], usize, &[&str]); 4] = [
            (&["1.1.1.1:0"], 5, &["1.1.1.1:0"]),
            (&["1.1.1.1:0", "2.2.2.2:0", "3.3.3.3:0"], 1, &["2.2.2.2:0", "3.3.3.3:0", "1.1.1.1:0"]),
            (&["1.1.1.1:0", "2.2.2.2:0", "3.3.3.3:0"], 3, &["1.1.1.1:0", "2.2.2.2:0", "3.3.3.3:0"]),
            (
                &["1.1.1.1:0", "2.2.2.2:0", "[::1]:0", "[::2]:0"],
                1,
                &["2.2.2.2:0", "1.1.1.1:0", "[::2]:0", "[::1]:0"],
            ),
        ];
        for (input, turn, want) in cases {
            let mut got = addrs(input);
            rotate(&mut got, turn);
            assert_eq!(got, addrs(want), "{input:?} turn {turn}");
        }
    }
}
