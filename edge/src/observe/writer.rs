//! Where access-log lines wait and how they reach the file.
//!
//! A request formats its own line (`format.rs`) into one of [`SLOTS`] buffers, chosen by the
//! thread it runs on, so threads rarely share one and a line costs the request no copy, no
//! queue and no allocation beyond its buffer's growth. The first line after a batch wakes the
//! writer thread, which lets lines gather for [`GATHER`], then swaps every buffer for an empty
//! one and writes what they held: under load one wake-up and one `write` carry about a hundred
//! lines, and an idle edge wakes nothing and keeps nothing waiting. Waking the writer per line
//! cost a futex call and a context switch on the request's core for every other request
//! (issue #23, `docs/performance.md`).
//!
//! As with nginx's per-worker buffers, lines from different threads may reach the file out of
//! order by up to a batch (about a millisecond); each line carries its request's time. A
//! buffer holds at most [`MAX_WAITING`]: when the writer cannot keep up (a stalled disk), more
//! lines are dropped and counted rather than held. A file is reopened when asked (SIGUSR1), the
//! way nginx does for logrotate: the old file is written up to that point, new lines go to a
//! new file at the configured path.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use stratus_config::observe::{AccessLogFormat, AccessLogTarget};

use super::format::{json_string, write_line};
use super::record::Record;

/// Buffers lines are formatted into; a thread always uses the same one.
const SLOTS: usize = 16;

/// Bytes one buffer may hold before its lines are dropped (16 MiB over all buffers).
const MAX_WAITING: usize = 1 << 20;

/// A buffer whose capacity grew beyond this during a burst is not kept for reuse.
const KEEP_CAPACITY: usize = 256 * 1024;

/// How long the writer lets lines gather after the first one wakes it: nginx's `access_log …
/// flush=` in spirit. Long enough that under load a batch carries about a hundred lines;
/// short enough that writing one takes the proxy's core for only a few microseconds at a time.
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

/// The buffers, the output and the writer thread's signals, shared by every request.
pub(super) struct Lines {
    slots: [Mutex<Vec<u8>>; SLOTS],
    format: AccessLogFormat,
    /// The edge id as a JSON string.
    edge: Vec<u8>,
    sink: Mutex<Sink>,
    /// Set by the first line after a batch (which then wakes the writer), cleared by the writer
    /// before it takes the buffers.
    armed: AtomicBool,
    reopen: AtomicBool,
    closing: AtomicBool,
    /// Lines dropped because their buffer was full.
    dropped: AtomicU64,
    writer: OnceLock<Thread>,
}

/// The output and the buffer swapped in for a full one.
struct Sink {
    out: Output,
    spare: Vec<u8>,
    /// Whether the last write failed: a run of failures is said once, not once per batch.
    failing: bool,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines").field("format", &self.format).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while formatting leaves at worst a partial line; the log goes on.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This thread's buffer number.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SLOT: Cell<usize> = const { Cell::new(usize::MAX) });
    SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS);
        }
        s.get()
    })
}

impl Lines {
    /// The shared state and its writer thread.
    pub(super) fn start(out: Output, format: AccessLogFormat, edge: &str) -> io::Result<Arc<Self>> {
        let lines = Arc::new(Self {
            slots: std::array::from_fn(|_| Mutex::new(Vec::new())),
            format,
            edge: json_string(edge),
            sink: Mutex::new(Sink { out, spare: Vec::new(), failing: false }),
            armed: AtomicBool::new(false),
            reopen: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            writer: OnceLock::new(),
        });
        let shared = lines.clone();
        let handle = std::thread::Builder::new().name("access-log".into()).spawn(move || shared.run())?;
        let _ = lines.writer.set(handle.thread().clone());
        Ok(lines)
    }

    /// Formats `record` into this thread's buffer and makes sure the writer will see it.
    pub(super) fn push(&self, record: &Record) {
        {
            let mut buf = lock(&self.slots[slot()]);
            if buf.len() >= MAX_WAITING {
                drop(buf);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            write_line(&mut buf, record, &self.edge, self.format);
        }
        // A plain load first: under load the writer is already armed, and the line costs no
        // write to a shared cache line.
        if !self.armed.load(Ordering::SeqCst) && !self.armed.swap(true, Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Lines dropped because their buffer was full.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Asks for the file to be reopened before the next batch.
    pub(super) fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Stops the writer after a last batch.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }

    /// The writer thread: sleeps until woken, gathers, writes; ends when closed.
    fn run(&self) {
        loop {
            std::thread::park();
            let closing = self.closing.load(Ordering::SeqCst);
            if !closing {
                std::thread::sleep(GATHER);
            }
            self.flush();
            if closing {
                return;
            }
        }
    }

    /// Writes every line formatted so far (the writer's batch; also called at shutdown).
    pub(super) fn flush(&self) {
        let mut sink = lock(&self.sink);
        // Cleared before the buffers are taken: a line added after this wakes the writer again.
        self.armed.store(false, Ordering::SeqCst);
        if self.reopen.swap(false, Ordering::SeqCst) {
            sink.out.reopen();
        }
        let Sink { out, spare, failing } = &mut *sink;
        for slot in &self.slots {
            {
                let mut buf = lock(slot);
                if buf.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *buf, spare);
            }
            match out.write(spare) {
                Ok(()) => *failing = false,
                Err(e) if !*failing => {
                    *failing = true;
                    tracing::error!(error = %e, "cannot write the access log; lines are lost");
                }
                Err(_) => {}
            }
            spare.clear();
            if spare.capacity() > KEEP_CAPACITY {
                *spare = Vec::new();
            }
        }
    }
}
