//! Rate limits per client: GCRA (`governor`'s keyed limiter), `rate` with `burst`.
//!
//! The key is the client address — IPv6 by its /64, since one host holds a whole /64 — and,
//! with `header` set, a hash of that request header's value. Memory stays bounded when a
//! hostile client rotates addresses: every 1024 checks (or 10 s) the limiter forgets clients
//! whose state equals a fresh one (`retain_recent`: anyone idle for `burst / rate`), and if
//! `max_clients` are still tracked after that, it starts afresh (a flood of distinct addresses
//! resets everyone's allowance rather than growing the map without end).

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::HeaderMap;
use http::header::HeaderName;
use stratus_config::edge::RateLimit;

use crate::error::{Limited, ProxyError};

type Keyed = RateLimiter<Key, DefaultKeyedStateStore<Key>, DefaultClock>;

/// Who a request is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    ip: IpAddr,
    header: u64,
}

/// A site's limiter.
pub(super) struct Limiter {
    limiter: ArcSwap<Keyed>,
    quota: Quota,
    header: Option<HeaderName>,
    hasher: std::collections::hash_map::RandomState,
    max_clients: usize,
    checks: AtomicU64,
    limit: u32,
    window: u64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("quota", &self.quota)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub(super) fn new(cfg: &RateLimit) -> Self {
        let period = Duration::from_secs(u64::from(cfg.rate.per_secs)) / cfg.rate.count;
        let burst = NonZeroU32::new(cfg.burst()).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: ArcSwap::from_pointee(RateLimiter::keyed(quota)),
            quota,
            header: cfg.header.as_deref().and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            hasher: std::collections::hash_map::RandomState::new(),
            max_clients: cfg.max_clients,
            checks: AtomicU64::new(0),
            limit: burst.get(),
            window: (period * burst.get()).as_secs().max(1),
        }
    }

    /// Counts one request; `Err` (429) when the client is over its limit.
    pub(super) fn check(&self, client: Option<IpAddr>, headers: &HeaderMap) -> Result<(), ProxyError> {
        let key = Key {
            ip: client.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), bucket),
            header: self
                .header
                .as_ref()
                .and_then(|h| headers.get(h))
                .map_or(0, |v| self.hasher.hash_one(v.as_bytes())),
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.tidy();
        }
        let limiter = self.limiter.load();
        match limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(ProxyError::RateLimited(Limited {
                    retry_after: retry_after.max(1),
                    limit: self.limit,
                    window: self.window,
                }))
            }
        }
    }

    /// Forgets idle clients; starts afresh if `max_clients` are still tracked.
    fn tidy(&self) {
        let limiter = self.limiter.load();
        limiter.retain_recent();
        if limiter.len() >= self.max_clients {
            tracing::warn!(clients = limiter.len(), max = self.max_clients, "rate limit state full; reset");
            self.limiter.store(std::sync::Arc::new(RateLimiter::keyed(self.quota)));
        } else {
            limiter.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.limiter.load().len()
    }
}

/// The address a client is counted by: IPv4 as is, IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: &str, burst: u32, max_clients: usize) -> Limiter {
        Limiter::new(&RateLimit {
            rate: rate.parse().unwrap(),
            burst: Some(burst),
            header: None,
            max_clients,
        })
    }

    #[test]
    fn burst_then_refused_per_client() {
        let l = limiter("1/h", 3, 100);
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        let h = HeaderMap::new();
        for _ in 0..3 {
            assert!(l.check(a, &h).is_ok());
        }
        match l.check(a, &h) {
            Err(ProxyError::RateLimited(lim)) => {
                assert!(lim.retry_after > 3000 && lim.retry_after <= 3600, "{lim:?}");
                assert_eq!(lim.limit, 3);
            }
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(l.check(b, &h).is_ok(), "another client is not affected");
        // One IPv6 /64 is one client.
        let v6a = Some("2001:db8:1:2::1".parse().unwrap());
        let v6b = Some("2001:db8:1:2:ffff::9".parse().unwrap());
        for _ in 0..3 {
            assert!(l.check(v6a, &h).is_ok());
        }
        assert!(l.check(v6b, &h).is_err());
    }

    #[test]
    fn rotating_addresses_stay_bounded() {
        let l = limiter("1/h", 1, 500);
        let h = HeaderMap::new();
        for i in 0..20_000u32 {
            let _ = l.check(Some(IpAddr::V4(i.into())), &h);
        }
        assert!(l.clients() <= 500 + 1024, "{} clients tracked", l.clients());
    }
}
