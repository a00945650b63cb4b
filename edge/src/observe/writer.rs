//! The access log's writer thread: formats records into one buffer and writes it when the
//! queue runs dry (or the buffer is large), so a burst of requests costs one write, and an
//! idle edge has nothing waiting in memory. After each batch it pauses for [`GATHER`] before
//! draining again, so that under load records gather in the queue instead of each one waking
//! the thread: waking it per record cost a futex call and a context switch on the request's
//! core for every other request (issue #23, `docs/performance.md`). An idle writer blocks,
//! and the first record after a pause wakes it at once. A file is reopened when asked (SIGUSR1), the way
//! nginx does for logrotate: the old file is written up to that point, new lines go to a
//! new file at the configured path.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use stratus_config::observe::{AccessLogFormat, AccessLogTarget};

use super::format::write_line;
use super::record::Record;

/// What the writer receives.
// Records travel by value: boxing them would cost an allocation on every request, the hit path
// included; the queue's slots are allocated once.
#[allow(clippy::large_enum_variant)]
pub(super) enum Msg {
    /// A record to write.
    Line(Record),
    /// Wakes the writer to reopen its file (the flag says so; this only wakes it).
    Reopen,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Line(_) => "Line",
            Self::Reopen => "Reopen",
        })
    }
}

/// Written out once this much is buffered, even if more records are waiting.
const FLUSH_AT: usize = 64 * 1024;

/// How long the writer lets records gather after a batch: nginx's `access_log … flush=` in
/// spirit. Long enough that under load a wake-up serves about a hundred records instead of
/// one; short enough that a batch (formatting and one write) takes the proxy's core for only
/// about 0.1 ms at a time, which a 10 ms pause would stretch to a millisecond and into the p99
/// of requests on the same core; and the queue (`super::QUEUE` records) holds what arrives
/// meanwhile up to millions of requests a second.
const GATHER: Duration = Duration::from_millis(1);

/// Where lines go.
pub(super) enum Output {
    Stdout,
    File { path: PathBuf, file: File },
}

impl Output {
    /// Opens the target; `None` for `off`.
    pub(super) fn open(target: &AccessLogTarget) -> io::Result<Option<Self>> {
        Ok(match target {
            AccessLogTarget::Off => None,
            AccessLogTarget::Stdout => Some(Self::Stdout),
            AccessLogTarget::File(path) => Some(Self::File { file: append(path)?, path: path.clone() }),
        })
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            // Stdout's lock keeps whole batches apart from the `listening` lines.
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Self::File { file, .. } => file.write_all(buf),
        }
    }

    fn reopen(&mut self) {
        if let Self::File { path, file } = self {
            match append(path) {
                Ok(f) => {
                    *file = f;
                    tracing::info!(path = %path.display(), "access log reopened");
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot reopen the access log; writing to the old file");
                }
            }
        }
    }
}

fn append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

/// Starts the writer thread; it ends when every sender is gone.
pub(super) fn spawn(
    rx: Receiver<Msg>,
    mut out: Output,
    format: AccessLogFormat,
    edge: String,
    reopen: Arc<AtomicBool>,
) -> io::Result<()> {
    std::thread::Builder::new().name("access-log".into()).spawn(move || {
        let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
        let mut failing = false;
        while let Ok(first) = rx.recv() {
            if reopen.swap(false, Ordering::Relaxed) {
                out.reopen();
            }
            let mut next = Some(first);
            while let Some(msg) = next {
                if let Msg::Line(record) = msg {
                    write_line(&mut buf, &record, &edge, format);
                }
                if buf.len() >= FLUSH_AT {
                    break;
                }
                next = rx.try_recv().ok();
            }
            match out.write(&buf) {
                Ok(()) => failing = false,
                // Said once per run of failures, not once per line (a full disk).
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "cannot write the access log; lines are lost");
                }
                Err(_) => {}
            }
            // A full buffer means more is waiting: write on without pausing.
            if buf.len() < FLUSH_AT {
                std::thread::sleep(GATHER);
            }
            buf.clear();
        }
    })?;
    Ok(())
}
