//! Where access-log lines wait and how they reach the file.
//!
//! A request packs its line's fields (`record.rs`) into one of [`SLOTS`] buffers, chosen by the
//! thread it runs on, so threads rarely share one and a line costs the request no queue and no
//! allocation beyond its buffer's growth. The writer thread wakes every [`GATHER`] while lines
//! keep coming, swaps every buffer for an empty one, formats what they held (`format.rs`) and
//! writes it; when a batch finds nothing it sleeps until the next line wakes it. Under load,
//! then, no request wakes anything, and one wake-up and one `write` carry a thousand lines; an
//! idle edge wakes nothing and keeps nothing waiting. Each wake-up of the writer is a context switch on the
//! proxy's core (about 15 µs here, `docs/performance.md`), which is why they are rare.
//!
//! As with nginx's per-worker buffers, lines from different threads may reach the file out of
//! order by up to a batch (about [`GATHER`]); each line carries its request's time. A
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
use super::record::{Answer, Entries, Record, pack};

/// Buffers lines are formatted into; a thread always uses the same one.
const SLOTS: usize = 16;

/// Bytes one buffer may hold before its lines are dropped (16 MiB over all buffers).
const MAX_WAITING: usize = 1 << 20;

/// A buffer whose capacity grew beyond this during a burst is not kept for reuse (a batch
/// under load is a few hundred KiB: those are kept, so that they do not grow again each time).
const KEEP_CAPACITY: usize = 2 * MAX_WAITING;

/// How long lines gather between batches: nginx's `access_log … flush=` in spirit, but short,
/// so that a line reaches the file within about this. Long enough that at 100,000 requests a
/// second a batch carries a thousand lines (one wake-up and one `write` for all); short enough
/// that writing a batch (about 300 KiB) takes the proxy's core for well under a millisecond.
const GATHER: Duration = Duration::from_millis(10);

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
    /// Whether the writer will look at the buffers again without being woken: set by the first
    /// line after the writer went to sleep (which then wakes it), cleared by the writer when a
    /// batch found nothing.
    awake: AtomicBool,
    reopen: AtomicBool,
    closing: AtomicBool,
    /// Lines dropped because their buffer was full.
    dropped: AtomicU64,
    writer: OnceLock<Thread>,
}

/// The output, the buffer swapped in for a full one, and the text formatted from it.
struct Sink {
    out: Output,
    spare: Vec<u8>,
    text: Vec<u8>,
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
            sink: Mutex::new(Sink { out, spare: Vec::new(), text: Vec::new(), failing: false }),
            awake: AtomicBool::new(false),
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

    /// Packs the entry of `record` and `answer` into this thread's buffer and makes sure the
    /// writer will see it.
    pub(super) fn push(&self, record: &Record, answer: &Answer<'_>) {
        {
            let mut buf = lock(&self.slots[slot()]);
            if buf.len() >= MAX_WAITING {
                drop(buf);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pack(&mut buf, record, answer);
        }
        // A plain load first: under load the writer is awake, and the line costs no write to a
        // shared cache line.
        if !self.awake.load(Ordering::SeqCst) && !self.awake.swap(true, Ordering::SeqCst) {
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

    /// The writer thread: sleeps until a line wakes it, then writes a batch every [`GATHER`]
    /// until one finds nothing; ends when closed.
    fn run(&self) {
        loop {
            std::thread::park();
            loop {
                if !self.closing.load(Ordering::SeqCst) {
                    // Woken early by a reopen or by closing.
                    std::thread::park_timeout(GATHER);
                }
                let wrote = self.flush();
                if self.closing.load(Ordering::SeqCst) {
                    return;
                }
                if !wrote && self.idle() {
                    break;
                }
            }
        }
    }

    /// After a batch found nothing: whether the writer may sleep until woken. A line that came
    /// in while `awake` was still set did not wake it; such a line keeps it awake.
    fn idle(&self) -> bool {
        self.awake.store(false, Ordering::SeqCst);
        if self.slots.iter().all(|slot| lock(slot).is_empty()) {
            return true;
        }
        self.awake.store(true, Ordering::SeqCst);
        false
    }

    /// Writes every line formatted so far (the writer's batch; also called at shutdown);
    /// whether there was any.
    pub(super) fn flush(&self) -> bool {
        let mut sink = lock(&self.sink);
        if self.reopen.swap(false, Ordering::SeqCst) {
            sink.out.reopen();
        }
        let Sink { out, spare, text, failing } = &mut *sink;
        let mut wrote = false;
        for slot in &self.slots {
            {
                let mut buf = lock(slot);
                if buf.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *buf, spare);
            }
            wrote = true;
            for line in Entries::new(spare) {
                write_line(text, &line, &self.edge, self.format);
            }
            match out.write(text) {
                Ok(()) => *failing = false,
                Err(e) if !*failing => {
                    *failing = true;
                    tracing::error!(error = %e, "cannot write the access log; lines are lost");
                }
                Err(_) => {}
            }
            for buf in [&mut *spare, &mut *text] {
                buf.clear();
                if buf.capacity() > KEEP_CAPACITY {
                    *buf = Vec::new();
                }
            }
        }
        wrote
    }
}
