//! Stratus edge: the caching reverse proxy.
//!
//! `stratus edge` answers clients over HTTP/1.1 and HTTP/2 (h2c, or h2 by ALPN on TLS
//! listeners), caches origin responses in memory as a shared cache (RFC 9111), coalesces
//! concurrent misses into one origin fetch that every waiter streams from, and exposes an
//! admin API for purges and metrics. Its one entry point is [`run`].
//!
//! ```text
//! client ─► proxy/server ─► proxy/pipeline: route → key → lookup ─┬─ hit (cache/reuse) ─► proxy/respond
//!                                                                 └─ miss/stale ─► cache/coalesce ◄─ proxy/fill ─► upstream/ ─► origin
//!                                                                                       │ cache/store (quick_cache + purge indexes)
//! admin ─► fleet/admin (purge, metrics, stats)     control ─► fleet/follow ─► fleet/target
//! ```
//!
//! Folders by concern:
//! - `cache/` — what is stored and for how long: `store`, `entry`, `fields` (and `heads`,
//!   ready-made header maps of the entries a thread hits most), `key`,
//!   `directives`, `freshness`, `reuse` (may a stored response answer?), `coalesce` (one
//!   origin fetch for many waiters), `slice` (objects stored in slices), `disk/` (the disk
//!   tier behind the memory store: `tier`, the object `file` format, file names and slot
//!   keys in `slot`, persisted purge `bans`).
//! - `proxy/` — the request path: `server` and `tls` accept, `conns` closes idle connections,
//!   `pipeline` runs the phases of a GET or HEAD over a `ctx`, `passthrough` the other methods,
//!   `fill` the origin fetch and store, `respond` and `range` answer from held responses
//!   (`numbers`: number-valued fields without an allocation),
//!   `slice` serves sites with `slice = true` slice by slice,
//!   `status` is the one source of `Cache-Status` and request metrics.
//! - `policy/` — per-site rules on requests (address lists, rate limits, signed-URL tokens)
//!   and responses (header rules).
//! - `upstream/` — origins: connections, DNS, pools, health, request signing; `cluster` picks
//!   the tier a fill asks first (the key's owner among the PoP's peers, then the site's parents).
//! - `fleet/` — the admin API, purges, following the control plane, reloads.
//! - `edge.rs` holds the shared state, `run.rs` starts listeners and housekeeping, `error.rs`
//!   maps failures to responses, `body.rs` is the response body type, `metrics.rs` the metrics (latency histograms: `stratus_config::observe::Histogram`).
//! - `observe/` — the access log: records, their formats, the writer thread.
//!
//! Decisions where the RFCs leave room are written down in the module that makes them
//! (see `cache/freshness.rs`, `cache/coalesce.rs`, `cache/store.rs`) and in `docs/edge.md`.

mod body;
mod cache;
mod edge;
mod error;
mod fleet;
mod metrics;
mod observe;
mod policy;
mod proxy;
mod run;
mod upstream;

pub use error::Error;
pub use run::run;
