//! The control protocol between edges and the control plane (`docs/PROTOCOL.md`, "Edge ↔
//! control") as types: the control plane writes these and the edge follower reads them, so the
//! two sides cannot drift apart. Like the purge body it lives here because it is a contract
//! between parts.
//!
//! ```
//! use stratus_config::protocol::{Op, StreamLine};
//! use stratus_config::purge::PurgeRequest;
//!
//! let purge = PurgeRequest { tags: vec!["blog".into()], ..PurgeRequest::default() };
//! let line = StreamLine::Entry { seq: 12, op: Op::purge(12, purge) }.to_line().unwrap();
//! assert_eq!(
//!     line,
//!     "{\"type\":\"entry\",\"seq\":12,\"op\":{\"type\":\"purge\",\"id\":\"p-12\",\
//!      \"tags\":[\"blog\"],\"purge_everything\":false,\"soft\":false}}\n"
//! );
//! assert!(matches!(StreamLine::read(line.trim_end()), Ok(StreamLine::Entry { seq: 12, .. })));
//! ```
//!
//! Reading is strict where acting on half a message would be wrong, and lenient where a newer
//! control plane may have added something: a log operation of a type this version does not know
//! reads as [`Op::Unknown`] (acked without acting), and a purge or configuration whose body has
//! fields this version does not know reads as [`Readable::Unreadable`], so the entry is still
//! consumed in order and the edge can fall back (drop its cache, report the configuration as
//! failed) instead of stalling the stream.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fleet::FleetConfig;
use crate::purge::{ObjectRef, PurgeRequest};

/// Whether a `Content-Type` value names JSON (`application/json` or `application/*+json`,
/// parameters allowed). Every JSON body the parts accept (control API, edge admin API) must say
/// so: a browser on another site can send `text/plain`, a form or no type at all without a
/// CORS preflight, but not JSON, so this is what keeps such pages from purging (CSRF).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|v| {
        let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// Longest line of a subscription stream, newline excluded: 16 MiB.
///
/// The edge refuses longer lines (its framing stops buffering there), and the control plane
/// refuses to append an operation whose line would be longer, so no entry can wedge a follower.
/// Purges and pushed configurations are far below it (their request bodies are at most 1 MiB);
/// the one operation that can grow is a prewarm of a bucket listing, whose 10 000 objects of at
/// most 1024-byte keys fit with room to spare.
pub const MAX_LINE: usize = 16 << 20;

/// One line of a subscription (`GET /v1/edges/{id}/events`), in NDJSON.
///
/// The control plane writes the operation as it stored it (`O` = its stored JSON text); the
/// edge reads it as an [`Op`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamLine<O = Op> {
    /// A log entry, in sequence order without gaps.
    Entry {
        /// Its sequence number.
        seq: u64,
        /// What to do.
        op: O,
    },
    /// The log no longer holds the position asked for: drop the whole cache and treat every
    /// entry below `next` as applied.
    Reset {
        /// The first sequence number still in the log (or the next one to be written).
        next: u64,
    },
    /// Sent every 5 s on an idle stream, so both sides notice a dead connection.
    Ping {
        /// The log's last sequence number.
        head: u64,
    },
}

impl StreamLine {
    /// Reads one line (without its newline).
    pub fn read(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }
}

impl<O: Serialize> StreamLine<O> {
    /// The line as it goes on the wire, newline included.
    pub fn to_line(&self) -> Result<String, serde_json::Error> {
        let mut line = serde_json::to_string(self)?;
        line.push('\n');
        Ok(line)
    }
}

/// A log operation (`OP` in `docs/PROTOCOL.md`): `{"type": "purge", "id": "p-12", ...}`.
///
/// Ids are the kind's letter and the sequence number ([`OpKind::id`]); build operations with
/// [`Op::purge`], [`Op::prewarm`] and [`Op::config`] so they are right.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Op {
    /// Apply a purge. Its body is the purge body, flattened.
    Purge {
        /// `p-SEQ`.
        id: String,
        /// The purge; unreadable when it names targets this version does not know.
        #[serde(flatten)]
        purge: Readable<PurgeRequest>,
    },
    /// Fetch URLs and objects into the cache.
    Prewarm {
        /// `w-SEQ`.
        id: String,
        /// URLs, `http://host/path`.
        #[serde(default)]
        urls: Vec<String>,
        /// Objects, mapped by each edge to its sites.
        #[serde(default)]
        objects: Vec<ObjectRef>,
    },
    /// Replace the sites. Its body is the fleet configuration, flattened.
    Config {
        /// `c-SEQ`.
        id: String,
        /// The sites; unreadable when they use fields this version does not know.
        #[serde(flatten)]
        config: Readable<FleetConfig>,
    },
    /// An operation of a type this version does not know: acked without acting. Never written.
    #[serde(other)]
    Unknown,
}

impl Op {
    /// The purge entry `seq`.
    pub fn purge(seq: u64, purge: PurgeRequest) -> Self {
        Self::Purge { id: OpKind::Purge.id(seq), purge: Readable::Read(purge) }
    }

    /// The prewarm entry `seq`.
    pub fn prewarm(seq: u64, urls: Vec<String>, objects: Vec<ObjectRef>) -> Self {
        Self::Prewarm { id: OpKind::Prewarm.id(seq), urls, objects }
    }

    /// The configuration entry `seq`.
    pub fn config(seq: u64, config: FleetConfig) -> Self {
        Self::Config { id: OpKind::Config.id(seq), config: Readable::Read(config) }
    }

    /// The operation's kind, `None` for [`Op::Unknown`].
    pub fn kind(&self) -> Option<OpKind> {
        match self {
            Self::Purge { .. } => Some(OpKind::Purge),
            Self::Prewarm { .. } => Some(OpKind::Prewarm),
            Self::Config { .. } => Some(OpKind::Config),
            Self::Unknown => None,
        }
    }

    /// The operation's id (`p-12`), `None` for [`Op::Unknown`].
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Purge { id, .. } | Self::Prewarm { id, .. } | Self::Config { id, .. } => Some(id),
            Self::Unknown => None,
        }
    }
}

/// The kinds of operations the control plane writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `purge`, ids `p-SEQ`.
    Purge,
    /// `prewarm`, ids `w-SEQ`.
    Prewarm,
    /// `config`, ids `c-SEQ`.
    Config,
}

impl OpKind {
    /// The `type` it is written as: `purge`, `prewarm` or `config`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Purge => "purge",
            Self::Prewarm => "prewarm",
            Self::Config => "config",
        }
    }

    /// The id of entry `seq` of this kind: `p-12`.
    pub fn id(self, seq: u64) -> String {
        let letter = match self {
            Self::Purge => 'p',
            Self::Prewarm => 'w',
            Self::Config => 'c',
        };
        format!("{letter}-{seq}")
    }

    /// The kind and sequence number an id names (`w-12` → prewarm, 12).
    pub fn parse_id(id: &str) -> Option<(Self, u64)> {
        let (letter, seq) = id.split_once('-')?;
        let kind = match letter {
            "p" => Self::Purge,
            "w" => Self::Prewarm,
            "c" => Self::Config,
            _ => return None,
        };
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((kind, seq.parse().ok()?))
    }
}

/// A part of a message that a newer writer may have extended: the value, or, when this version
/// cannot read it, the JSON as it came and why. The rest of the message stays readable, so the
/// entry is consumed and its failure handled instead of failing the whole stream. An unreadable
/// value is written back exactly as it was read.
#[derive(Clone, Debug, PartialEq)]
pub enum Readable<T> {
    /// Read as `T`.
    Read(T),
    /// Not readable as `T`.
    Unreadable {
        /// The JSON as it came.
        value: serde_json::Value,
        /// Why it cannot be read, as serde says it.
        error: String,
    },
}

impl<T> Readable<T> {
    /// The value, or why it cannot be read.
    pub fn as_result(&self) -> Result<&T, &str> {
        match self {
            Self::Read(value) => Ok(value),
            Self::Unreadable { error, .. } => Err(error),
        }
    }
}

impl<T: Serialize> Serialize for Readable<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Read(value) => value.serialize(s),
            Self::Unreadable { value, .. } => value.serialize(s),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Readable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(match T::deserialize(&value) {
            Ok(read) => Self::Read(read),
            Err(e) => Self::Unreadable { value, error: e.to_string() },
        })
    }
}

/// `POST /v1/edges/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// Edge id, unique in the fleet: 1–128 of `A-Z a-z 0-9 - _ . :`.
    pub id: String,
    /// Edge software version.
    #[serde(default)]
    pub version: String,
    /// Client-facing URL.
    #[serde(default)]
    pub url: String,
    /// Admin API URL.
    #[serde(default)]
    pub admin: Option<String>,
    /// The point of presence this edge belongs to (`[edge] pop`); edges of one PoP discover
    /// each other as cluster peers. Absent from older edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pop: Option<String>,
    /// The URL the edge's cluster peers reach it at (`[edge.cluster] self`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_url: Option<String>,
}

/// `GET /v1/edges` as an edge reads it to discover its peers: the other fields are ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct EdgeList {
    /// Every edge the control plane knows.
    pub edges: Vec<ListedEdge>,
}

/// One edge of [`EdgeList`].
#[derive(Clone, Debug, Deserialize)]
pub struct ListedEdge {
    /// Edge id.
    pub id: String,
    /// Heard from within the control plane's `edge_timeout`.
    pub live: bool,
    /// Its `pop` label, if it sent one.
    #[serde(default)]
    pub pop: Option<String>,
    /// The URL its peers reach it at, if it sent one.
    #[serde(default)]
    pub peer_url: Option<String>,
}

/// The answer to a registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The log's last sequence number: a starting edge begins after it.
    pub head: u64,
    /// The configuration in force, when one was pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigInForce>,
}

/// The newest `config` entry, kept beyond compaction: `{"seq", "id", "sites"}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigInForce {
    /// Its sequence number.
    pub seq: u64,
    /// Its id, `c-SEQ`.
    pub id: String,
    /// The sites; unreadable when they use fields this version does not know.
    #[serde(flatten)]
    pub config: Readable<FleetConfig>,
}

/// An entry an edge could not apply, as acks and heartbeats report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The entry's sequence number.
    pub seq: u64,
    /// Why, as the edge put it.
    pub error: String,
}

/// `POST /v1/edges/{id}/ack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The highest sequence number applied.
    pub seq: u64,
    /// Entries consumed but not applied, until an ack or heartbeat carried them.
    #[serde(default)]
    pub failed: Vec<Failure>,
}

/// Counters an edge reports in heartbeats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EdgeStats {
    /// Client requests served.
    pub requests: u64,
    /// Of those, cache hits.
    pub hits: u64,
    /// Bytes held in the cache.
    pub cache_bytes: u64,
    /// Entries in the cache.
    pub cache_entries: u64,
    /// Response body bytes sent to clients.
    pub served_bytes: u64,
    /// Responses with a 5xx status.
    pub server_errors: u64,
    /// Whether each configured origin takes requests now, one per site and origin (never
    /// more than [`MAX_ORIGIN_HEALTH`]; older edges send none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<OriginHealth>,
}

/// At most this many [`OriginHealth`] rows are sent or kept per edge.
pub const MAX_ORIGIN_HEALTH: usize = 256;

/// One origin of one site, as an edge's health checks see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginHealth {
    /// The site's name (its first host).
    pub site: String,
    /// The origin's configured URL.
    pub origin: String,
    /// Whether it takes requests now.
    pub up: bool,
}

/// `POST /v1/edges/{id}/heartbeat`; every field may be left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    /// Highest sequence number applied (counts as an ack).
    pub applied: u64,
    /// Sequence number of the `config` entry whose sites the edge runs (0: its own file's).
    pub config: u64,
    /// The edge's counters.
    #[serde(flatten)]
    pub stats: EdgeStats,
    /// Entries consumed but not applied, until an ack or heartbeat carried them.
    pub failed: Vec<Failure>,
}

/// The answer to a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// The log's last sequence number.
    pub head: u64,
}

/// Where one edge is with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeState {
    /// Acked.
    Applied,
    /// Live and not yet acked.
    Pending,
    /// Down before applying it, or reported it could not apply it.
    Failed,
}

/// The state of one edge for one entry, as the control API answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeProgress {
    /// Edge id.
    pub id: String,
    /// Where it is.
    pub state: EdgeState,
    /// Milliseconds from the API call to the edge's ack, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_ms: Option<f64>,
    /// Why the edge could not apply the entry, when it said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests;
