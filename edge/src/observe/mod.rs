//! Observe, the last phase of every request: the access log. A request packs its side of its
//! line as it arrives ([`Record`]) and ends by adding its answer's ([`Answer`]) into a buffer
//! that a writer thread formats and writes out in batches (`record.rs`, `format.rs`,
//! `writer.rs`); the request path never formats a line and never waits for a disk or a pipe. When the writer is behind the line is dropped and
//! counted (`stratus_edge_access_log_dropped_total`).

mod format;
mod record;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Request};
use stratus_config::observe::{AccessLogFormat, AccessLogTarget};

pub use self::record::{Answer, Record};
use self::writer::Lines;
use crate::error::Error;

/// The access log; cloning shares the writer.
#[derive(Clone, Debug)]
pub struct AccessLog {
    inner: Option<Arc<Handle>>,
}

/// Stops the writer, after a last batch, when the last clone of the log is gone.
#[derive(Debug)]
struct Handle(Arc<Lines>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl AccessLog {
    /// Opens `target` (a file is created or appended to) and starts the writer thread.
    /// `edge` is the edge id written on every line.
    pub fn open(target: &AccessLogTarget, format: AccessLogFormat, edge: &str) -> Result<Self, Error> {
        let Some(out) = writer::Output::open(target).map_err(|e| Error::AccessLog(e.to_string()))? else {
            return Ok(Self { inner: None });
        };
        let lines = Lines::start(out, format, edge)
            .map_err(|e| Error::AccessLog(format!("cannot start the access log writer: {e}")))?;
        Ok(Self { inner: Some(Arc::new(Handle(lines))) })
    }

    /// The request's side of its line, or `None` when the log is off (`access_log = "off"`).
    pub fn begin<B>(&self, req: &Request<B>, client: Option<SocketAddr>, tls: bool) -> Option<Record> {
        self.inner.as_ref()?;
        Some(Record::begin(req, client, tls, SystemTime::now()))
    }

    /// Logs a finished request; drops and counts the line when the writer is behind.
    pub fn send(&self, record: &Record, answer: &Answer<'_>) {
        if let Some(inner) = &self.inner {
            inner.0.push(record, answer);
        }
    }

    /// Asks the writer to reopen its file (SIGUSR1, after logrotate moved it away).
    pub fn reopen(&self) {
        if let Some(inner) = &self.inner {
            inner.0.reopen();
        }
    }

    /// Writes every line logged so far, on the calling thread (it blocks: shutdown calls it
    /// from the blocking pool, so that the last requests' lines are not lost).
    pub fn flush(&self) {
        if let Some(inner) = &self.inner {
            inner.0.flush();
        }
    }

    /// Lines dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| inner.0.dropped())
    }
}

/// Sends its line when dropped: kept by a streamed response body, so that the line has the
/// bytes really sent and the time the body ended (or was abandoned).
#[derive(Debug)]
pub struct Pending {
    record: Record,
    /// The answer's fields known when the head went out.
    status: u16,
    cache: &'static str,
    cache_status: Option<HeaderValue>,
    tier: Option<&'static str>,
    origin_status: Option<u16>,
    origin_time: Option<Duration>,
    bytes: u64,
    started: Instant,
    log: AccessLog,
}

impl Pending {
    /// A line to finish when the body is dropped, from what `answer` says now (its `bytes`
    /// and `duration` are counted from here on).
    pub fn new(record: Record, answer: &Answer<'_>, started: Instant, log: AccessLog) -> Self {
        Self {
            record,
            status: answer.status,
            cache: answer.cache,
            cache_status: answer.cache_status.cloned(),
            tier: answer.tier,
            origin_status: answer.origin_status,
            origin_time: answer.origin_time,
            bytes: 0,
            started,
            log,
        }
    }

    /// Counts body bytes sent.
    pub fn sent(&mut self, n: u64) {
        self.bytes += n;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let answer = Answer {
            status: self.status,
            bytes: self.bytes,
            duration: self.started.elapsed(),
            cache: self.cache,
            cache_status: self.cache_status.as_ref(),
            tier: self.tier,
            origin_status: self.origin_status,
            origin_time: self.origin_time,
        };
        self.log.send(&self.record, &answer);
    }
}
