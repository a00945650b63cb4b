//! Whether a stored response may answer a request (RFC 9111 §4.2, §4.2.4, §5.2.1): one pure
//! decision over the entry, the request's directives and the time, so the hit path reads top
//! to bottom and the rules are checked by a table below.

use std::time::{Duration, Instant};

use crate::cache::directives::{Directives, Seconds};
use crate::cache::entry::Entry;
use crate::proxy::status::{Fwd, StaleWhy};

/// What to do with a stored response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Fresh, and the request accepts it.
    Fresh,
    /// Stale but servable: the client's `max-stale`, or `stale-while-revalidate` (the caller
    /// starts a background revalidation).
    Stale(StaleWhy),
    /// Ask the origin: [`Fwd::Request`] when the entry is fresh but the request wants a newer
    /// one (`no-cache`, `max-age`, `min-fresh`), [`Fwd::Stale`] when it is stale.
    Revalidate(Fwd),
}

/// Decides whether `e` may answer a request with directives `req` at `now`. `no_cache` is the
/// request's `no-cache`, or `Pragma: no-cache` without `Cache-Control` (RFC 9111 §5.4).
pub(crate) fn reuse(e: &Entry, req: &Directives, no_cache: bool, now: Instant) -> Reuse {
    reuse_aged(e, req, no_cache, e.age(now))
}

/// [`reuse`] for an entry whose current age is `age` (`Entry::age`): a hit computes the age
/// once for this decision, `Age` and `Cache-Status`.
pub(crate) fn reuse_aged(e: &Entry, req: &Directives, no_cache: bool, age: Duration) -> Reuse {
    if e.fresh_at(age) {
        let remaining = e.lifetime().saturating_sub(age);
        let accepted = !no_cache
            && match req.seconds("max-age") {
                Seconds::Value(n) => age <= Duration::from_secs(n),
                Seconds::Invalid => false,
                Seconds::Absent => true,
            }
            && match req.seconds("min-fresh") {
                Seconds::Value(n) => remaining.as_secs() >= n,
                _ => true,
            };
        return if accepted { Reuse::Fresh } else { Reuse::Revalidate(Fwd::Request) };
    }
    // A soft-purged entry is never served stale on the client's word: the purge asked for a
    // revalidation (it may still serve for `stale-if-error`, decided after the fetch).
    let may_serve_stale = !no_cache && !e.is_invalidated() && !e.must_revalidate() && !e.no_cache();
    if may_serve_stale {
        let staleness = e.staleness_at(age);
        if req.max_stale().is_some_and(|max| staleness.as_secs() <= max) {
            return Reuse::Stale(StaleWhy::MaxStale);
        }
        if staleness < e.swr() {
            return Reuse::Stale(StaleWhy::WhileRevalidate);
        }
    }
    Reuse::Revalidate(Fwd::Stale)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::cache::entry::{Exchange, StoredHead};
    use crate::cache::freshness::Policy;
    use crate::cache::key::CacheKey;

    /// An entry stored `age` seconds before the decision, fresh for `lifetime` seconds.
    struct Stored {
        lifetime: u64,
        swr: u64,
        no_cache: bool,
        must_revalidate: bool,
        soft_purged: bool,
    }

    const PLAIN: Stored =
        Stored { lifetime: 60, swr: 0, no_cache: false, must_revalidate: false, soft_purged: false };

    fn entry(s: &Stored) -> Entry {
        let policy = Policy {
            storable: Ok(()),
            lifetime: Duration::from_secs(s.lifetime),
            swr: Duration::from_secs(s.swr),
            sie: Duration::ZERO,
            no_cache: s.no_cache,
            must_revalidate: s.must_revalidate,
        };
        let head = StoredHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            targeted: HeaderMap::new(),
            tags: Vec::new(),
            policy,
        };
        let key = CacheKey::new(
            "h",
            &http::Uri::from_static("/p"),
            &stratus_config::edge::KeyRules::default(),
            &HeaderMap::new(),
        );
        let e = Entry::new(head, Bytes::from_static(b"body"), key, &Exchange::now(SystemTime::now()));
        if s.soft_purged {
            e.invalidate();
        }
        e
    }

    #[test]
    fn reuse_follows_rfc_9111() {
        use Fwd::{Request, Stale as StaleFwd};
        use Reuse::{Fresh, Revalidate, Stale};
        use StaleWhy::{MaxStale, WhileRevalidate};
        let swr = Stored { swr: 30, ..PLAIN };
        #[rustfmt::skip]
        let table: &[(&str, &Stored, &str, bool, u64, Reuse)] = &[
            // (case, entry, request Cache-Control, Pragma/no-cache, age s, expected)
            ("fresh", &PLAIN, "", false, 10, Fresh),
            ("stale", &PLAIN, "", false, 61, Revalidate(StaleFwd)),
            ("request no-cache", &PLAIN, "no-cache", true, 10, Revalidate(Request)),
            ("max-age satisfied", &PLAIN, "max-age=20", false, 10, Fresh),
            ("max-age exceeded", &PLAIN, "max-age=5", false, 10, Revalidate(Request)),
            ("max-age=0", &PLAIN, "max-age=0", false, 1, Revalidate(Request)),
            ("invalid max-age", &PLAIN, "max-age=x", false, 1, Revalidate(Request)),
            ("min-fresh satisfied", &PLAIN, "min-fresh=40", false, 10, Fresh),
            ("min-fresh not met", &PLAIN, "min-fresh=55", false, 10, Revalidate(Request)),
            ("max-stale covers", &PLAIN, "max-stale=30", false, 80, Stale(MaxStale)),
            ("max-stale too short", &PLAIN, "max-stale=5", false, 80, Revalidate(StaleFwd)),
            ("max-stale unbounded", &PLAIN, "max-stale", false, 100_000, Stale(MaxStale)),
            ("swr window", &swr, "", false, 70, Stale(WhileRevalidate)),
            ("past swr window", &swr, "", false, 95, Revalidate(StaleFwd)),
            ("swr but no-cache request", &swr, "no-cache", true, 70, Revalidate(StaleFwd)),
            ("must-revalidate ignores max-stale", &Stored { must_revalidate: true, ..PLAIN }, "max-stale", false, 61, Revalidate(StaleFwd)),
            ("must-revalidate ignores swr", &Stored { must_revalidate: true, swr: 30, ..PLAIN }, "", false, 70, Revalidate(StaleFwd)),
            ("response no-cache never stale", &Stored { no_cache: true, swr: 30, ..PLAIN }, "max-stale", false, 70, Revalidate(StaleFwd)),
            ("soft purge: not fresh", &Stored { soft_purged: true, ..PLAIN }, "", false, 1, Revalidate(StaleFwd)),
            ("soft purge: no max-stale", &Stored { soft_purged: true, ..PLAIN }, "max-stale", false, 1, Revalidate(StaleFwd)),
            ("soft purge: no swr", &Stored { soft_purged: true, swr: 30, ..PLAIN }, "", false, 1, Revalidate(StaleFwd)),
        ];
        for (case, stored, cc, no_cache, age, want) in table {
            let e = entry(stored);
            let now = Instant::now() + Duration::from_secs(*age);
            let got = reuse(&e, &Directives::parse(cc), *no_cache, now);
            assert_eq!(got, *want, "{case}");
        }
    }
}
