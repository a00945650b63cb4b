//! End-to-end tests of `stratus loadtest` against the load target of `tests/support`.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod rate;
