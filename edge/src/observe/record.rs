//! One request as the access log sees it: the request's side of its line, formatted when the
//! request arrives, and the answer's side, known when it ends.

use std::time::Duration;

use http::HeaderValue;

/// The request's side of one access-log line, formatted as the request arrives
/// ([`super::AccessLog::begin`]): the text before the answer's fields and the text after them.
///
/// Formatting then, rather than keeping the request's fields until the line is written, costs
/// the request no copies of its URI and header values (shared-byte clones, and their release at
/// the end) and keeps what the pipeline carries through its phases to one buffer.
#[derive(Debug)]
pub struct Record {
    /// The line's text around the answer's fields: `text[..split]` comes before them,
    /// `text[split..]` (newline included) after them.
    pub(super) text: Vec<u8>,
    pub(super) split: usize,
}

/// The answer's side of an access-log line.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// Response status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// From the request's arrival to its last body byte handed to the connection.
    pub duration: Duration,
    /// The cache outcome label (`hit`, `miss`, ...).
    pub cache: &'static str,
    /// The response's `Cache-Status` field.
    pub cache_status: Option<&'a HeaderValue>,
    /// The cache tier that answered, when the cache did.
    pub tier: Option<&'static str>,
    /// The origin's status, when the origin was asked.
    pub origin_status: Option<u16>,
    /// How long the origin took to answer with a response head, when it was asked.
    pub origin_time: Option<Duration>,
}
