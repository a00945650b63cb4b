//! What the accepting side knows about a request's client connection, handed to the pipeline
//! as the request's one extension ([`Downstream`]): whether it came over TLS, and the handle
//! that sends 1xx heads ahead of the response.
//!
//! One extension rather than one per value: `http::Extensions` boxes its map on the first
//! insert and every value in its own box, so each further extension is an allocation and a
//! hash per request (`docs/performance.md`, "The connection's own work").

use crate::proxy::interim::Interim;

/// How a request reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Cleartext HTTP/1.1 or h2c.
    Plain,
    /// HTTP/1.1 or h2 inside TLS.
    Tls,
}

/// The extension every request from a client listener carries.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// How the request arrived.
    pub transport: Transport,
    /// Sends interim (1xx) heads to the client; `None` for HTTP/1.0 (RFC 9110 §15.2: no 1xx
    /// to HTTP/1.0 clients).
    pub interim: Option<Interim>,
}

impl Downstream {
    /// Whether the request in `extensions` arrived over TLS; `false` for a request without
    /// the extension (one the edge made itself).
    pub fn tls(extensions: &http::Extensions) -> bool {
        extensions.get::<Self>().is_some_and(|d| d.transport == Transport::Tls)
    }

    /// The request's 1xx handle, if its client can take interim heads.
    pub fn interim(extensions: &http::Extensions) -> Option<Interim> {
        extensions.get::<Self>().and_then(|d| d.interim.clone())
    }
}
