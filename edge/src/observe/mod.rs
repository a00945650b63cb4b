//! Observe, the last phase of every request: the access log. A request ends by formatting its
//! [`Record`] (`format.rs`) into a buffer that a writer thread writes out in batches
//! (`writer.rs`); the request path never waits for a disk or a pipe. When the writer is behind
//! the line is dropped and counted (`stratus_edge_access_log_dropped_total`).

mod format;
mod record;
mod writer;

use std::sync::Arc;
use stratus_config::observe::{AccessLogFormat, AccessLogTarget};

pub use self::record::Record;
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

    /// Whether lines are written at all (`access_log = "off"` makes this false).
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Logs a finished request; drops and counts the line when the writer is behind.
    pub fn send(&self, record: &Record) {
        if let Some(inner) = &self.inner {
            inner.0.push(record);
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

/// Sends its record when dropped: kept by a streamed response body, so that the line has the
/// bytes really sent and the time the body ended (or was abandoned).
#[derive(Debug)]
pub struct Pending {
    record: Option<Box<Record>>,
    started: std::time::Instant,
    log: AccessLog,
}

impl Pending {
    /// A record to finish when the body is dropped.
    pub fn new(record: Record, started: std::time::Instant, log: AccessLog) -> Self {
        Self { record: Some(Box::new(record)), started, log }
    }

    /// Counts body bytes sent.
    pub fn sent(&mut self, n: u64) {
        if let Some(r) = &mut self.record {
            r.bytes += n;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.duration = self.started.elapsed();
            self.log.send(&r);
        }
    }
}
