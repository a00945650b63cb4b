//! Routing: which site serves a host. Exact host names first, then the `"*"` site; a host no
//! site names is refused (421), never sent to some default origin by accident.

use std::collections::HashMap;
use std::sync::Arc;

use stratus_config::edge::{Site, TtlRule};

use crate::error::Error;
use crate::freshness::SiteRules;
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
}

impl SiteState {
    /// The site rules that apply to `path`.
    pub fn rules(&self, path: &str) -> SiteRules<'_> {
        SiteRules { ttl: self.ttl.iter().find(|r| path.starts_with(&r.prefix)), negative: &self.cfg.negative }
    }
}

/// Sites by host.
#[derive(Debug)]
pub struct Router {
    sites: Vec<Arc<SiteState>>,
    by_host: HashMap<String, usize>,
    wildcard: Option<usize>,
}

impl Router {
    /// Builds the router and each site's upstream (clients, health probes); `outbound` holds
    /// what they share. Must run inside a Tokio runtime.
    pub fn new(sites: &[Site], outbound: &Outbound) -> Result<Self, Error> {
        let mut out = Self { sites: Vec::new(), by_host: HashMap::new(), wildcard: None };
        for (i, site) in sites.iter().enumerate() {
            let mut ttl = site.ttl.clone();
            ttl.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            out.sites.push(Arc::new(SiteState {
                cfg: site.clone(),
                upstream: Upstream::new(site, outbound)?,
                ttl,
            }));
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
