//! Configuration of `stratus edge`, the caching reverse proxy (`[edge]` in a config file).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::cluster::{Cluster, MAX_PEERS, check_pop, peer_id};
use crate::invalid::Invalid;
use crate::net::{HttpUrl, ListenAddr};
pub use crate::observe::{AccessLogFormat, AccessLogTarget};
pub use crate::policy::{Compression, HeaderRule, OriginAuth, RateLimit, TokenAuth};
use crate::secret::Secret;
use crate::units::{ByteSize, Duration};
pub use crate::upstream::{CaRoots, Dns, Health, OriginPool, OriginTimeouts};

/// The edge: where it listens, what it caches and which sites it serves.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// This edge's name in the control plane's registry; defaults to the host name.
    #[serde(default)]
    pub id: Option<String>,
    /// The point of presence this edge belongs to (`fra1`): 1–64 of `A-Z a-z 0-9 - _ .`. Sent
    /// when it registers; with `[edge.cluster] discover = true` its cluster peers are the live
    /// edges registered with the same `pop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pop: Option<String>,
    /// Client-facing listeners (HTTP, or HTTPS when `tls` is set).
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// The admin API (purge, metrics, health); off unless set.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// The memory cache.
    #[serde(default)]
    pub cache: Cache,
    /// Sites by host name, each with its origins. A site whose `hosts` holds `"*"` takes
    /// every host that no other site names.
    #[serde(default)]
    pub sites: Vec<Site>,
    /// The control plane this edge follows for purges and prewarms: one URL, or several
    /// replicas (`"http://a:7070,http://b:7070"` or a list) that it fails over between.
    #[serde(default)]
    pub control: Option<crate::control::ControlUrls>,
    /// Bearer token for the admin API and the control-plane subscription; `STRATUS_TOKEN`
    /// in the environment takes its place when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Request limits and timeouts towards clients.
    #[serde(default)]
    pub limits: Limits,
    /// How origin host names are resolved.
    #[serde(default)]
    pub dns: Dns,
    /// Proxies in front of this edge (addresses or CIDR blocks) whose forwarding headers are
    /// kept: `X-Forwarded-For` is appended to, and `Forwarded`, `X-Forwarded-Host`,
    /// `X-Forwarded-Proto`, ... pass to the origin. From any other client they are dropped (or,
    /// for `X-Forwarded-For` and `-Proto`, overwritten): see `docs/security.md`.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::net::IpRange>,
    /// The other edges of this point of presence, which share one cache by rendezvous
    /// hashing (`docs/edge.md`, "Tiered caching"); off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    /// Access key id for sites with `origin_auth`; `STRATUS_ORIGIN_ACCESS_KEY` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_access_key: Option<Secret>,
    /// Secret key for sites with `origin_auth`; `STRATUS_ORIGIN_SECRET_KEY` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_secret_key: Option<Secret>,
    /// Access log: `"-"` for stdout (the default), `"off"`, or a file (reopened on SIGUSR1).
    #[serde(default)]
    pub access_log: AccessLogTarget,
    /// Access log line format: `json` (the default) or `combined`.
    #[serde(default)]
    pub access_log_format: AccessLogFormat,
    /// Path on every client listener that answers `200 ok` for load balancers, before any
    /// site is consulted; `""` turns it off.
    #[serde(default = "default_health_path")]
    pub health_path: String,
}

/// The default `health_path`: a name no site is likely to serve.
pub fn default_health_path() -> String {
    "/.well-known/stratus/health".to_owned()
}

/// One client-facing listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address to bind, e.g. `0.0.0.0:8080`.
    pub listen: ListenAddr,
    /// Terminate TLS here, choosing each site's certificate by SNI.
    #[serde(default)]
    pub tls: bool,
    /// Certificate for handshakes whose SNI names no site (PEM files).
    #[serde(default)]
    pub default_certificate: Option<Certificate>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address to bind, e.g. `127.0.0.1:8081`.
    pub listen: ListenAddr,
    /// Read-only token for `GET /metrics`, `/healthz`, `/stats` and `/cache`;
    /// `STRATUS_METRICS_TOKEN` takes its place when unset. Without it those need no token
    /// (the admin listener is meant to be private); the admin token is accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<Secret>,
}

/// The memory cache.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Capacity in bytes (bodies, headers and per-entry overhead).
    pub size: ByteSize,
    /// Larger responses stream through uncached.
    pub max_object_size: ByteSize,
    /// Response headers whose space- or comma-separated values tag an object for purge by tag.
    /// They are removed before clients see the response. The default adds the S3 user
    /// metadata header `x-amz-meta-surrogate-key` to `Surrogate-Key` and `Cache-Tag`.
    pub tag_headers: Vec<String>,
    /// The unit in which objects of sites with `slice = true` are fetched (`Range` requests to
    /// the origin) and stored, each slice an entry of its own (`docs/edge.md`, "Slices").
    pub slice_size: ByteSize,
    /// The disk tier behind the memory cache (`[edge.cache.disk]`); without it the edge caches
    /// in memory only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<Disk>,
}

/// The disk tier: objects live in files under `path`, survive restarts and are served when the
/// memory cache no longer holds them (`docs/edge.md`, "Disk tier").
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// The cache directory; created when missing. One edge per directory.
    pub path: std::path::PathBuf,
    /// Capacity in bytes of the object files (human units, e.g. `10GiB`).
    pub size: ByteSize,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            size: ByteSize::mib(256),
            max_object_size: ByteSize::mib(64),
            // S3 cannot send arbitrary response headers, so objects in a bucket carry their tags
            // as user metadata (`aws s3 cp --metadata surrogate-key="a b"`).
            tag_headers: ["Surrogate-Key", "Cache-Tag", "x-amz-meta-surrogate-key"]
                .map(str::to_owned)
                .to_vec(),
            // Traffic Server's slice plugin uses 1 MiB by default; nginx's slice module has no
            // default (1 MiB is the size its documentation suggests).
            slice_size: ByteSize::mib(1),
            disk: None,
        }
    }
}

/// A site: the host names it answers for and the origins behind it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Host names (without port) this site serves; `"*"` for every other host.
    pub hosts: Vec<String>,
    /// Origins tried in order; the first healthy one serves. A path in the URL is a prefix
    /// put before every request path (`http://127.0.0.1:9000/demo` serves bucket `demo`).
    pub origins: Vec<HttpUrl>,
    /// Upper-tier edges (a shield) that misses go to before the origins, one per cache key by
    /// rendezvous hashing; the origins stay the last resort.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<HttpUrl>,
    /// Send the origin's host as `Host` instead of the client's.
    #[serde(default = "yes")]
    pub origin_host: bool,
    /// Freshness rules applied on top of the origin's headers.
    #[serde(default)]
    pub ttl: Vec<TtlRule>,
    /// Caching of error statuses that carry no freshness of their own, e.g. 404 for 10s.
    #[serde(default)]
    pub negative: Vec<NegativeRule>,
    /// How the query string and request headers make up the cache key.
    #[serde(default)]
    pub key: KeyRules,
    /// Timeouts towards the origins.
    #[serde(default)]
    pub timeouts: OriginTimeouts,
    /// Certificate authorities HTTPS origins are verified against, besides `ca_file`.
    #[serde(default)]
    pub ca_roots: CaRoots,
    /// Extra CA certificates (PEM) HTTPS origins may chain to, e.g. a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connection pool and limit per origin.
    #[serde(default)]
    pub pool: OriginPool,
    /// Active and passive health checks of the origins.
    #[serde(default)]
    pub health: Health,
    /// The site's certificate on TLS listeners, chosen by SNI.
    #[serde(default)]
    pub tls: Option<Certificate>,
    /// Answer plain-HTTP requests with a redirect to HTTPS.
    #[serde(default)]
    pub https_redirect: bool,
    /// `Strict-Transport-Security` max-age to send on HTTPS responses.
    #[serde(default)]
    pub hsts: Option<Duration>,
    /// Add a `Stratus-Debug` field to every response of this site: its cache key, the tier
    /// that answered, age, TTL, hits, tags and the origin's status and time
    /// (`docs/edge.md`, "Debug header"). Off by default: it shows cache internals to clients.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debug_header: bool,
    /// Fetch and store objects in slices of `cache.slice_size` (`Range` requests to the
    /// origin), so a range of a large object fetches only the slices it needs. Off by
    /// default: each new object then costs a `Range` request first, worth it for large media.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slice: bool,
    /// Whether clients' `Cache-Control`/`Pragma` request directives (`no-cache`, `max-age=0`,
    /// `no-store`, ...) are followed, or ignored so that clients cannot send requests to the
    /// origin at will.
    #[serde(default)]
    pub client_cache_control: ClientCacheControl,
    /// Serve a stored response up to this long past its freshness when the origin cannot be
    /// reached or answers 5xx (nginx `proxy_cache_use_stale error timeout http_5xx`, Fastly
    /// serve-stale), whether or not the response carries `stale-if-error`. Responses that
    /// say `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache` are exempt.
    #[serde(default)]
    pub stale_if_error: Option<Duration>,
    /// Signed URLs and cookies: requests need a valid EdgeAuth token (`docs/edge.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_auth: Option<TokenAuth>,
    /// Requests per client, with a burst; over it → 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Client addresses (IPs or CIDR blocks) served; everyone when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<crate::net::IpRange>,
    /// Client addresses refused with 403; wins over `allow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<crate::net::IpRange>,
    /// Response header rules by path prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderRule>,
    /// On-the-fly compression of text responses.
    #[serde(default)]
    pub compression: Compression,
    /// Sign origin requests (AWS SigV4), for private buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_auth: Option<OriginAuth>,
}

/// What the edge does with a client's request cache directives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCacheControl {
    /// Follow them as RFC 9111 §5.2.1 describes: `no-cache` and `max-age=0` revalidate at the
    /// origin (coalesced with any fetch in flight), `no-store` bypasses the cache.
    #[default]
    Honor,
    /// Answer as if the request carried no `Cache-Control` or `Pragma`, as Cloudflare and
    /// Fastly do by default: only the origin's freshness decides.
    Ignore,
}

fn yes() -> bool {
    true
}

/// A TTL override for paths under a prefix. Bounds clamp the origin's freshness; `default`
/// applies when the origin gives none.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TtlRule {
    /// Path prefix, e.g. `/static/`; `/` for every path.
    pub prefix: String,
    /// Freshness when the response carries none (and is storable).
    #[serde(default)]
    pub default: Option<Duration>,
    /// Lower bound on freshness.
    #[serde(default)]
    pub min: Option<Duration>,
    /// Upper bound on freshness.
    #[serde(default)]
    pub max: Option<Duration>,
}

/// Cache responses with this status for `ttl` when the origin sent no freshness.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NegativeRule {
    /// HTTP status, e.g. 404.
    pub status: u16,
    /// How long to keep it.
    pub ttl: Duration,
}

/// What the query string contributes to the cache key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryMode {
    /// The query as sent.
    #[default]
    Keep,
    /// Parameters sorted by name, so `?b=1&a=2` and `?a=2&b=1` share an entry.
    Sort,
    /// No query in the key at all.
    Drop,
}

/// Cache-key rules.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyRules {
    /// Query handling.
    pub query: QueryMode,
    /// Query parameters left out of the key (e.g. `utm_source`).
    pub ignore_params: Vec<String>,
    /// Request headers added to the key (beyond what `Vary` asks for).
    pub headers: Vec<String>,
}

/// Limits on what clients may send.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Total size of a request head; larger → 431.
    pub max_header_size: ByteSize,
    /// Number of request headers; more → 431.
    pub max_headers: usize,
    /// Request body size; larger → 413.
    pub max_body_size: ByteSize,
    /// Open client connections; at the cap, idle ones are closed to make room for new ones,
    /// which otherwise wait in the listen backlog.
    pub max_connections: usize,
    /// A request head must arrive within this (slowloris), a new connection must send its
    /// first request within it, and a request body may pause no longer (408).
    pub header_read_timeout: Duration,
    /// Connections with no request in flight are closed after this.
    pub idle_timeout: Duration,
    /// On SIGTERM, in-flight responses get this long to finish.
    pub drain_timeout: Duration,
    /// The send buffer of each client connection (`SO_SNDBUF`; nginx `listen … sndbuf=`,
    /// HAProxy `tune.sndbuf.client`). Unset, the kernel sizes it (autotuning, up to
    /// `net.ipv4.tcp_wmem`'s maximum). A fixed buffer caps one connection's throughput at
    /// about `send_buffer / round-trip time` (`docs/performance.md`, "Large objects").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_buffer: Option<ByteSize>,
}

/// Bounds of `limits.send_buffer`: the kernel's own floor is about 4 KiB, and it takes the
/// size as a C `int` that it doubles.
const SEND_BUFFER_MIN: u64 = 4 << 10;
const SEND_BUFFER_MAX: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_size: ByteSize(64 << 10),
            max_headers: 100,
            max_body_size: ByteSize::mib(100),
            max_connections: 10_000,
            header_read_timeout: Duration::secs(10),
            idle_timeout: Duration::secs(60),
            drain_timeout: Duration::secs(30),
            send_buffer: None,
        }
    }
}

impl EdgeConfig {
    /// An edge with one listener and one catch-all site, as `stratus edge --listen --origin` builds.
    pub fn simple(listen: ListenAddr, origin: HttpUrl) -> Self {
        Self {
            id: None,
            pop: None,
            listeners: vec![Listener { listen, tls: false, default_certificate: None }],
            admin: None,
            cache: Cache::default(),
            sites: vec![Site::catch_all(origin)],
            control: None,
            token: None,
            limits: Limits::default(),
            dns: Dns::default(),
            trusted_proxies: Vec::new(),
            cluster: None,
            origin_access_key: None,
            origin_secret_key: None,
            access_log: AccessLogTarget::default(),
            access_log_format: AccessLogFormat::default(),
            health_path: default_health_path(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.listeners.is_empty() {
            return Err(Invalid::new("listeners", "at least one listener is required"));
        }
        validate_sites(&self.sites)?;
        if self.cache.size.0 == 0 {
            return Err(Invalid::new("cache.size", "must be greater than 0"));
        }
        // With a disk tier, objects too big for memory live on disk only.
        match &self.cache.disk {
            None if self.cache.max_object_size > self.cache.size => {
                return Err(Invalid::new("cache.max_object_size", "must not exceed cache.size"));
            }
            Some(d) if self.cache.max_object_size > d.size.max(self.cache.size) => {
                return Err(Invalid::new(
                    "cache.max_object_size",
                    "must not exceed cache.size or cache.disk.size",
                ));
            }
            _ => {}
        }
        if let Some(disk) = &self.cache.disk {
            if disk.size.0 == 0 {
                return Err(Invalid::new("cache.disk.size", "must be greater than 0"));
            }
            if disk.path.as_os_str().is_empty() {
                return Err(Invalid::new("cache.disk.path", "must not be empty"));
            }
        }
        if self.cache.slice_size.0 < 1024 {
            return Err(Invalid::new("cache.slice_size", "must be at least 1KiB"));
        }
        self.dns.validate().map_err(|e| e.within("dns"))?;
        for (i, l) in self.listeners.iter().enumerate() {
            if l.default_certificate.is_some() && !l.tls {
                return Err(Invalid::new(format!("listeners[{i}].default_certificate"), "needs tls = true"));
            }
        }
        validate_sites_for_listeners(&self.sites, &self.listeners)?;
        if let Some(pop) = &self.pop {
            crate::cluster::check_pop(pop).map_err(|why| Invalid::new("pop", why))?;
        }
        if let Some(cluster) = &self.cluster {
            let listen: Vec<ListenAddr> = self.listeners.iter().map(|l| l.listen).collect();
            cluster.validate(&listen).map_err(|e| e.within("cluster"))?;
            if cluster.discover && (self.pop.is_none() || self.control.is_none()) {
                return Err(Invalid::new(
                    "cluster.discover",
                    "needs pop (--pop) and a control plane to follow (--control)",
                ));
            }
        }
        if let Some(size) = self.limits.send_buffer
            && !(SEND_BUFFER_MIN..=SEND_BUFFER_MAX).contains(&size.0)
        {
            return Err(Invalid::new("limits.send_buffer", "must be between 4KiB and 1GiB"));
        }
        if !self.health_path.is_empty() && !self.health_path.starts_with('/') {
            return Err(Invalid::new("health_path", "must start with / (or be \"\" for none)"));
        }
        Ok(())
    }
}

/// The rules between sites and the listeners they are served on: `https_redirect` needs a TLS
/// listener, and a TLS listener needs a certificate from some site or its own default. Checked
/// for a configuration file and again by an edge for sites the control plane pushes, since
/// listeners stay as the edge started.
pub fn validate_sites_for_listeners(sites: &[Site], listeners: &[Listener]) -> Result<(), Invalid> {
    let tls_listener = listeners.iter().any(|l| l.tls);
    if !tls_listener && let Some(i) = sites.iter().position(|s| s.https_redirect) {
        return Err(Invalid::new(format!("sites[{i}].https_redirect"), "needs a listener with tls = true"));
    }
    if tls_listener
        && sites.iter().all(|s| s.tls.is_none())
        && listeners.iter().all(|l| l.default_certificate.is_none())
    {
        return Err(Invalid::new(
            "listeners",
            "a TLS listener needs a site certificate or a default_certificate",
        ));
    }
    Ok(())
}

/// Checks a list of sites with the rules a configuration file's `[[edge.sites]]` must meet: at
/// least one site, every site with hosts and origins, no host served twice, TTL prefixes that
/// start with `/` and `min <= max`, negative rules for error statuses. The control plane checks
/// pushed site configurations with it too; errors name the field as `sites[1].ttl[0].prefix`.
pub fn validate_sites(sites: &[Site]) -> Result<(), Invalid> {
    if sites.is_empty() {
        return Err(Invalid::new("sites", "at least one site is required"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, site) in sites.iter().enumerate() {
        let at = |key: &str| format!("sites[{i}].{key}");
        if site.hosts.is_empty() {
            return Err(Invalid::new(at("hosts"), "at least one host is required"));
        }
        for host in &site.hosts {
            if !seen.insert(host.to_ascii_lowercase()) {
                return Err(Invalid::new(at("hosts"), format!("host {host:?} is served by two sites")));
            }
        }
        if site.origins.is_empty() {
            return Err(Invalid::new(at("origins"), "at least one origin is required"));
        }
        crate::cluster::validate_parents(&site.parents).map_err(|e| e.within(&format!("sites[{i}]")))?;
        for (j, rule) in site.ttl.iter().enumerate() {
            if !rule.prefix.starts_with('/') {
                return Err(Invalid::new(at(&format!("ttl[{j}].prefix")), "must start with /"));
            }
            if let (Some(min), Some(max)) = (rule.min, rule.max)
                && min > max
            {
                return Err(Invalid::new(at(&format!("ttl[{j}].min")), "must not exceed max"));
            }
        }
        let nested = |key: &str, r: Result<(), Invalid>| r.map_err(|e| e.within(&at(key)));
        nested("health", site.health.validate())?;
        nested("pool", site.pool.validate())?;
        crate::upstream::validate_trust(site.ca_roots, site.ca_file.as_ref())
            .map_err(|e| e.within(&format!("sites[{i}]")))?;
        crate::policy::validate(site.token_auth.as_ref(), site.rate_limit.as_ref(), &site.headers)
            .map_err(|e| e.within(&format!("sites[{i}]")))?;
        for (j, rule) in site.negative.iter().enumerate() {
            if !(300..=599).contains(&rule.status) {
                return Err(Invalid::new(
                    at(&format!("negative[{j}].status")),
                    "must be a 3xx, 4xx or 5xx status",
                ));
            }
        }
    }
    Ok(())
}

impl Site {
    /// One site for every host, in front of one origin.
    pub fn catch_all(origin: HttpUrl) -> Self {
        Self {
            hosts: vec!["*".to_owned()],
            origins: vec![origin],
            parents: Vec::new(),
            origin_host: true,
            ttl: Vec::new(),
            negative: Vec::new(),
            key: KeyRules::default(),
            timeouts: OriginTimeouts::default(),
            ca_roots: CaRoots::default(),
            ca_file: None,
            pool: OriginPool::default(),
            health: Health::default(),
            tls: None,
            https_redirect: false,
            hsts: None,
            debug_header: false,
            slice: false,
            client_cache_control: ClientCacheControl::default(),
            stale_if_error: None,
            token_auth: None,
            rate_limit: None,
            allow: Vec::new(),
            deny: Vec::new(),
            headers: Vec::new(),
            compression: Compression::default(),
            origin_auth: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site_error(extra: &str) -> Option<String> {
        let text = format!("hosts = [\"*\"]\norigins = [\"http://127.0.0.1:9\"]\n{extra}");
        let site: Site = match toml::from_str(&text) {
            Ok(s) => s,
            Err(e) => return Some(e.message().to_owned()),
        };
        validate_sites(&[site]).err().map(|e| e.to_string())
    }

    #[test]
    fn send_buffer_is_a_size_within_bounds() {
        let check = |value: &str| {
            let text = format!(
                "[edge]\nlisteners = [{{ listen = \"127.0.0.1:0\" }}]\n\
                 [edge.limits]\nsend_buffer = {value}\n\
                 [[edge.sites]]\nhosts = [\"*\"]\norigins = [\"http://127.0.0.1:9\"]\n"
            );
            crate::parse("edge.toml", &text)
                .map(|c| c.edge.and_then(|e| e.limits.send_buffer))
                .map_err(|e| e.to_string())
        };
        assert_eq!(check("\"256KiB\"").unwrap(), Some(ByteSize(256 << 10)));
        for bad in ["\"1KiB\"", "\"2GiB\"", "0"] {
            let err = check(bad).unwrap_err();
            assert!(err.contains("edge.limits.send_buffer"), "{bad}: {err}");
        }
        assert!(check("\"lots\"").is_err());
    }

    #[test]
    fn site_sections_parse_and_validate() {
        let ok = "allow = [\"10.0.0.0/8\"]\ndeny = [\"10.6.6.6\"]\n\
                  [token_auth]\nkeys = [\"0a0b\"]\nfrom = \"cookie\"\n\
                  [rate_limit]\nrate = \"50/s\"\nburst = 100\n\
                  [compression]\ntypes = [\"text/*\"]\n\
                  [origin_auth]\nkind = \"s3\"\nregion = \"eu-west-1\"\n\
                  [[headers]]\nprefix = \"/api/\"\nset = { \"access-control-allow-origin\" = \"*\" }\n";
        assert_eq!(site_error(ok), None);
        let cases = [
            ("[token_auth]\nkeys = []", "sites[0].token_auth.keys: at least one key is required"),
            ("[token_auth]\nkeys = [\"xyz\"]", "hex"),
            ("[token_auth]\nkeys = [\"0a\"]\nfrom = \"body\"", "unknown variant"),
            ("[rate_limit]\nrate = \"50/d\"", "invalid rate"),
            ("[rate_limit]\nrate = \"5/s\"\nburst = 0", "sites[0].rate_limit.burst: must be at least 1"),
            ("[origin_auth]\nkind = \"gcs\"", "unknown variant"),
            ("[[headers]]\nprefix = \"api\"", "sites[0].headers[0].prefix: must start with /"),
            ("[[headers]]\nset = { \"bad name\" = \"x\" }", "is not a valid header name"),
            ("[[headers]]\nset = { \"x-a\" = \"line\\nbreak\" }", "is not a valid header value"),
            ("allow = [\"10.0.0.0/33\"]", "invalid address range"),
        ];
        for (extra, want) in cases {
            let got = site_error(extra).unwrap_or_default();
            assert!(got.contains(want), "{extra}: {got}");
        }
    }
}
