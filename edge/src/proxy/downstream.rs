//! What the accepting side knows about a request's client connection, handed to the handler
//! beside the request ([`Downstream`]): the peer's address, whether it came over TLS, and the
//! handle that sends 1xx heads ahead of the response.
//!
//! An argument rather than a request extension: `http::Extensions` boxes its map on the
//! first insert, allocates the map's table and boxes each value, so one extension cost every
//! request three allocations, a hashed insert and a lookup, about 600 instructions of a 1 KiB
//! hit's 17,000 (`docs/performance.md`, "The hit's own work, fifth round").

use std::net::SocketAddr;

use crate::proxy::interim::Interim;

/// How a request reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Cleartext HTTP/1.1 or h2c.
    Plain,
    /// HTTP/1.1 or h2 inside TLS.
    Tls,
}

/// The client connection a request came over.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The peer's address (the client, or a proxy in front of the edge).
    pub peer: SocketAddr,
    /// How the request arrived.
    pub transport: Transport,
    /// Sends interim (1xx) heads to the client; `None` for HTTP/1.0 (RFC 9110 §15.2: no 1xx
    /// to HTTP/1.0 clients).
    pub interim: Option<Interim>,
}

impl Downstream {
    /// Whether the request came over TLS; `false` for a request the edge made itself (`None`).
    pub fn tls(from: Option<&Self>) -> bool {
        from.is_some_and(|d| d.transport == Transport::Tls)
    }
}
