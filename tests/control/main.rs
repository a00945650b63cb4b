//! End-to-end tests of `stratus control` and `stratus purge`: the API, the CLI, pushed site
//! configuration, a fleet of real edges following the log, object events from the origin, and
//! several replicas on a NATS JetStream cluster.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod cli;
mod config;
mod dashboard;
mod fleet;
mod metrics;
mod nats;
mod origin;
