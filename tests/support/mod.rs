//! The one harness of the end-to-end tests and the purge-latency bench, in the manner of
//! linkerd2-proxy's `linkerd/app/integration`: real `stratus` processes and in-process fakes of
//! what they talk to. Each test binary (`tests/*/main.rs`) and the bench include it with
//! `#[path = "../support/mod.rs"] mod support;`; not every binary uses every helper.
//!
//! - [`process`]: spawn `stratus`, read its `listening` lines with a deadline, kill it on drop.
//! - [`poll`]: [`eventually`] (blocking) and [`until`] (async), polling with a deadline.
//! - [`origin`]: the one scriptable HTTP(S) origin (per-path replies, records every request,
//!   can be taken down and brought back); [`load_target`] scripts it for the load tester.
//! - [`http`]: a client's view of a response (`Got`, `Cache-Status`).
//! - [`edge`]: start `stratus edge` from flags or an `[edge]` snippet, purge through its admin API.
//! - [`control`]: start `stratus control`, its API, simulated followers.
//! - [`s3`]: start `stratus origin` and real S3 clients (`object_store`) against it.
//! - [`nats`]: a three-node NATS JetStream cluster on 127.0.0.1 (real `nats-server`s).
//! - [`dns`], [`tls`], [`net`]: a scriptable DNS server, a test CA, a TCP forwarder.
//! - [`raw`]: a raw-TCP origin for malformed or huge answers, and a raw-TCP client.
#![allow(dead_code, unused_imports)]

pub mod control;
pub mod dns;
pub mod edge;
pub mod http;
pub mod load_target;
pub mod nats;
pub mod net;
pub mod origin;
pub mod poll;
pub mod process;
pub mod raw;
pub mod s3;
pub mod tls;

pub use poll::{eventually, until};
pub use process::{Proc, run_stratus, stratus, tempdir, write_file};
