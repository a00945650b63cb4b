//! Observe, the last phase of every request: the access log. One [`Record`] per request goes
//! through a bounded channel to a writer thread (`writer.rs`) that formats it (`format.rs`)
//! and writes it; the request path never waits for a disk or a pipe. When the channel is full
//! the record is dropped and counted (`stratus_edge_access_log_dropped_total`).

mod format;
mod record;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use stratus_config::observe::{AccessLogFormat, AccessLogTarget};

pub use self::record::Record;
use self::writer::Msg;
use crate::error::Error;

/// Records waiting for the writer; beyond this they are dropped. The channel allocates its
/// slots up front (about 400 bytes each, 1.6 MiB in all); the writer drains a burst in one go.
const QUEUE: usize = 4096;

/// The access log's sending side; cloning shares the writer.
#[derive(Clone, Debug)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Inner {
    tx: SyncSender<Msg>,
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Opens `target` (a file is created or appended to) and starts the writer thread.
    /// `edge` is the edge id written on every line.
    pub fn open(target: &AccessLogTarget, format: AccessLogFormat, edge: &str) -> Result<Self, Error> {
        let dropped = Arc::new(AtomicU64::new(0));
        let Some(out) = writer::Output::open(target).map_err(|e| Error::AccessLog(e.to_string()))? else {
            return Ok(Self { inner: None, dropped });
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        writer::spawn(rx, out, format, edge.to_owned(), reopen.clone())
            .map_err(|e| Error::AccessLog(format!("cannot start the access log writer: {e}")))?;
        Ok(Self { inner: Some(Arc::new(Inner { tx, reopen })), dropped })
    }

    /// Whether lines are written at all (`access_log = "off"` makes this false).
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues a record; drops and counts it when the writer is behind.
    pub fn send(&self, record: Record) {
        let Some(inner) = &self.inner else { return };
        match inner.tx.try_send(Msg::Line(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Asks the writer to reopen its file (SIGUSR1, after logrotate moved it away).
    pub fn reopen(&self) {
        if let Some(inner) = &self.inner {
            inner.reopen.store(true, Ordering::Relaxed);
            // A full queue means the writer is awake and sees the flag before its next batch.
            let _ = inner.tx.try_send(Msg::Reopen);
        }
    }

    /// Records dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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
            self.log.send(*r);
        }
    }
}
