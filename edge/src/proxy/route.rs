//! Routing: which site serves a host. Exact host names first, then the `"*"` site; a host no
//! site names is refused (421), never sent to some default origin by accident.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use stratus_config::edge::{Site, TtlRule};

use crate::cache::freshness::SiteRules;
use crate::error::Error;
use crate::policy::Policy;
use crate::upstream::{Outbound, Upstream};

/// A site with its upstream client.
#[derive(Debug)]
pub struct SiteState {
    /// The site's configuration.
    pub cfg: Site,
    /// Its origins.
    pub upstream: Upstream,
    /// TTL rules, longest prefix first.
    ttl: Vec<TtlRule>,
    /// Address lists, rate limit, tokens, header rules.
    pub(crate) policy: Policy,
    /// The site's name in metrics labels: its first host (`*` for the catch-all site).
    pub name: Arc<str>,
    /// Its `stratus_edge_responses_total` counters, one per code label, taken from the edge's
    /// metrics by its first response (`Metrics::response_of`).
    pub(crate) responses: OnceLock<Arc<[::metrics::Counter]>>,
}

impl SiteState {
    /// The site rules that apply to `path`.
    pub fn rules(&self, path: &str) -> SiteRules<'_> {
        SiteRules {
            ttl: self.ttl.iter().find(|r| path.starts_with(&r.prefix)),
            negative: &self.cfg.negative,
            stale_if_error: self.cfg.stale_if_error.map(|d| d.get()),
        }
    }
}

/// Sites by host.
#[derive(Debug)]
pub struct Router {
    outbound: Outbound,
    sites: Vec<Arc<SiteState>>,
    by_host: HashMap<String, usize>,
    wildcard: Option<usize>,
}

impl Router {
    /// Builds the router and each site's upstream (clients, health probes); `outbound` holds
    /// what they share and is kept for rebuilds. Must run inside a Tokio runtime.
    pub fn new(sites: &[Site], outbound: &Outbound) -> Result<Self, Error> {
        Self::build(sites, outbound, None)
    }

    /// A router for `sites` that keeps this one's state (upstream clients with their pooled
    /// connections and origin health) for every site whose configuration did not change, as a
    /// reload does. Sites that changed or went away drop their upstream, which stops its
    /// health probes.
    pub fn rebuild(&self, sites: &[Site]) -> Result<Self, Error> {
        Self::build(sites, &self.outbound, Some(self))
    }

    fn build(sites: &[Site], outbound: &Outbound, previous: Option<&Self>) -> Result<Self, Error> {
        let mut out =
            Self { outbound: outbound.clone(), sites: Vec::new(), by_host: HashMap::new(), wildcard: None };
        // Sites compare by their serialized form: the config types are plain data, and this
        // runs once per reload, never per request.
        let old: Vec<(serde_json::Value, &Arc<SiteState>)> = previous
            .map(|p| p.sites.iter().filter_map(|s| Some((serde_json::to_value(&s.cfg).ok()?, s))).collect())
            .unwrap_or_default();
        for (i, site) in sites.iter().enumerate() {
            let same = serde_json::to_value(site)
                .ok()
                .and_then(|v| old.iter().find(|(cfg, _)| *cfg == v).map(|(_, s)| Arc::clone(s)));
            let state = match same {
                Some(state) => state,
                None => {
                    let mut ttl = site.ttl.clone();
                    ttl.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
                    Arc::new(SiteState {
                        cfg: site.clone(),
                        upstream: Upstream::new(site, outbound)?,
                        ttl,
                        policy: Policy::new(site),
                        name: site.hosts.first().map_or("", String::as_str).into(),
                        responses: OnceLock::new(),
                    })
                }
            };
            out.sites.push(state);
            for host in &site.hosts {
                if host == "*" {
                    out.wildcard = Some(i);
                } else {
                    out.by_host.insert(host.to_ascii_lowercase(), i);
                }
            }
        }
        Ok(out)
    }

    /// The site for `host` (lowercase, without port).
    pub fn route(&self, host: &str) -> Option<&Arc<SiteState>> {
        self.by_host.get(host).or(self.wildcard.as_ref()).and_then(|i| self.sites.get(*i))
    }

    /// Every site.
    pub fn sites(&self) -> &[Arc<SiteState>] {
        &self.sites
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(host: &str, origin: &str) -> Site {
        let mut s = Site::catch_all(origin.parse().expect("origin"));
        s.hosts = vec![host.to_owned()];
        s
    }

    #[tokio::test]
    async fn a_rebuild_keeps_the_state_of_unchanged_sites() {
        let a = site("a.example", "http://127.0.0.1:1");
        let b = site("b.example", "http://127.0.0.1:2");
        let outbound = Outbound::new(&Default::default(), Default::default());
        let first = Router::new(&[a.clone(), b.clone()], &outbound).expect("router");
        let mut b2 = b.clone();
        b2.origins = vec!["http://127.0.0.1:3".parse().expect("origin")];
        let c = site("*", "http://127.0.0.1:4");
        let second = first.rebuild(&[b2, a, c]).expect("rebuild");
        let same = |h: &str| Arc::ptr_eq(first.route(h).expect("old"), second.route(h).expect("new"));
        assert!(same("a.example"), "an unchanged site keeps its upstream client");
        assert!(!same("b.example"), "a changed site gets a new one");
        assert_eq!(second.route("other.example").expect("wildcard").cfg.hosts, vec!["*".to_owned()]);
        assert!(first.route("other.example").is_none());
    }
}
