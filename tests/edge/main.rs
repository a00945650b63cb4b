//! End-to-end tests of `stratus edge`: the caching core, requests and limits, sites, TLS,
//! upstreams (HTTPS, DNS, failover), reload and shutdown, against the scriptable origin of
//! `tests/support`.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod cluster;
mod coalesce;
mod compression;
mod conformance;
mod core_path;
mod discover;
mod disk;
mod disk_large;
mod freshness;
mod http2;
mod idle;
mod lifecycle;
mod limits;
mod observe;
mod origin_auth;
mod origin_load;
mod policy;
mod requests;
mod security;
mod security_memory;
mod security_odd;
mod security_ranges;
mod shield;
mod sites;
mod slices;
mod store;
mod tls;
mod uploads;
mod upstream_control;
mod upstream_dns;
mod upstream_failover;
mod upstream_tls;
mod vary;
