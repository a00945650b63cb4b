//! The log backend seam: the embedded redb log (`log`, one machine, the default) or a
//! JetStream stream (`nats::log`, several replicas). Both hand out contiguous sequence
//! numbers, stream from an in-memory mirror and compact by count, so subscriptions, the
//! registry and the edges do not know which one is behind them.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use crate::error::Error;
use crate::log::{Failure, Log, Read};
use crate::nats::log::NatsLog;

/// Where the log lives.
#[derive(Debug)]
pub(crate) enum Backend {
    /// `DATA/log.redb` (one control process).
    Embedded(Log),
    /// A JetStream stream (any number of control processes). Boxed: its client handles are
    /// large, and there is one `Backend` per process.
    Nats(Box<NatsLog>),
}

impl Backend {
    /// Appends the operation `build(seq)` returns and answers once it is durable; `committed`
    /// runs before any edge can ack it. `config` marks a `config` entry, which is also kept as
    /// the configuration in force. `created` is when the API call arrived.
    pub async fn append(
        &self,
        build: impl Fn(u64) -> String + Send + Sync + 'static,
        committed: impl FnOnce(u64) + Send + 'static,
        config: bool,
        created: Instant,
    ) -> Result<u64, Error> {
        match self {
            Self::Embedded(log) if config => log.append_config(build, committed).await,
            Self::Embedded(log) => log.append(build, committed).await,
            Self::Nats(log) => {
                let at = SystemTime::now().checked_sub(created.elapsed()).unwrap_or_else(SystemTime::now);
                log.append(&build, Box::new(committed), config, at).await
            }
        }
    }

    /// Up to `max` entries after `after`, or a reset when `after` is no longer in the log.
    pub fn read_after(&self, after: u64, max: usize) -> Read {
        match self {
            Self::Embedded(log) => log.read_after(after, max),
            Self::Nats(log) => log.read_after(after, max),
        }
    }

    /// The operation at `seq`, if it is still in the log.
    pub fn get(&self, seq: u64) -> Option<Arc<str>> {
        match self {
            Self::Embedded(log) => log.get(seq),
            Self::Nats(log) => log.get(seq),
        }
    }

    /// The newest `config` entry and its sequence number, compacted or not.
    pub fn config(&self) -> Option<(u64, Arc<str>)> {
        match self {
            Self::Embedded(log) => log.config(),
            Self::Nats(log) => log.config(),
        }
    }

    /// The last sequence number written (0 for an empty log).
    pub fn head(&self) -> u64 {
        match self {
            Self::Embedded(log) => log.head(),
            Self::Nats(log) => log.head(),
        }
    }

    /// The highest sequence number compacted away.
    pub fn floor(&self) -> u64 {
        match self {
            Self::Embedded(log) => log.floor(),
            Self::Nats(log) => log.floor(),
        }
    }

    /// Why the log cannot be written, while appends fail.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Self::Embedded(log) => log.failure(),
            Self::Nats(log) => log.failure(),
        }
    }

    /// A receiver that changes whenever an entry is appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        match self {
            Self::Embedded(log) => log.subscribe(),
            Self::Nats(log) => log.subscribe(),
        }
    }
}
