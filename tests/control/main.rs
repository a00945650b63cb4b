//! End-to-end tests of `stratus control` and `stratus purge`: the API, the CLI, pushed site
//! configuration, a fleet of real edges following the log, and object events from the origin.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod cli;
mod config;
mod dashboard;
mod fleet;
mod metrics;
mod origin;
