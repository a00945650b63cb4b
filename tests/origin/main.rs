//! End-to-end tests of `stratus origin`, the S3-compatible server: objects, authentication,
//! crash safety, object events, an edge in front of it, and real S3 clients.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod copy;
mod crash;
mod edge;
mod events;
mod expiry;
mod metrics;
mod objects;
mod parts;
mod smoke;
