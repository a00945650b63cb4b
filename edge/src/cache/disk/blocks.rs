//! The body of a large object served from its file on disk: read in checksummed blocks on the
//! blocking pool, up to [`READ_AHEAD`] blocks per read with the next read under way while one
//! is sent, so that serving it costs at most two reads' worth of memory per response, whatever
//! the object's size (`docs/edge.md`, "Disk tier").
//!
//! Every block of [`BLOCK`] bytes carries its own CRC-32 in the file (`stream.rs`), checked
//! before any of its bytes are sent: a range reads only the blocks it overlaps, and a flipped
//! byte is never sent. A block that fails its check ends the response with an error (the
//! client's connection or stream is reset, so it never takes the body for complete) and drops
//! the file, so the next request is a miss.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::BodyExt;

use crate::body::{Body, BoxError};
use crate::cache::disk::pread;

/// Bytes per checksummed block of a large object's body.
pub const BLOCK: u64 = 256 << 10;
/// Blocks one hand-off to the blocking pool reads, at most (1 MiB): a thread wake-up per
/// block was a large share of serving a large body from disk (`docs/performance.md`), and a
/// response holds at most this much of its body in memory.
pub const READ_AHEAD: u64 = 4;

/// Blocks in a body of `len` bytes.
pub fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK)
}

/// A large object's body in its file.
pub struct FileBody {
    /// Open for as long as the body is: a file the tier deletes meanwhile stays readable.
    file: File,
    /// Where the body starts in the file.
    at: u64,
    len: u64,
    /// CRC-32 of each block.
    crcs: Box<[u32]>,
    /// Called once a block fails its check (the tier forgets the file).
    on_corrupt: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody").field("at", &self.at).field("len", &self.len).finish_non_exhaustive()
    }
}

/// Why a block could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("reading a block of a cached object: {0}")]
    Io(#[from] std::io::Error),
    #[error("a block of a cached object failed its checksum")]
    Checksum,
}

impl FileBody {
    /// The body of `len` bytes at `at` in `file`, whose blocks have checksums `crcs`.
    pub fn new(
        file: File,
        at: u64,
        len: u64,
        crcs: Box<[u32]>,
        on_corrupt: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self { file, at, len, crcs, on_corrupt }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Reads and checks blocks `first..first + n` (blocking) into one buffer, not zeroed
    /// first. A block that fails its check ends the buffer before it; when it is the first,
    /// the read fails and the tier is told.
    fn blocks(&self, first: u64, n: u64) -> Result<Bytes, BlockError> {
        let start = first * BLOCK;
        let want = (n * BLOCK).min(self.len.saturating_sub(start));
        let mut buf = pread::read_at(&self.file, self.at + start, usize::try_from(want).unwrap_or(0))?;
        if buf.len() as u64 != want {
            // The file is shorter than its header said (it was checked when opened).
            return Err(BlockError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let first_i = usize::try_from(first).unwrap_or(usize::MAX);
        let bad = buf.chunks(BLOCK as usize).enumerate().position(|(k, block)| {
            self.crcs.get(first_i.saturating_add(k)).copied() != Some(crc32fast::hash(block))
        });
        match bad {
            Some(0) => {
                (self.on_corrupt)();
                return Err(BlockError::Checksum);
            }
            // The blocks before it are good: they go out, and the next read fails on it.
            Some(k) => buf.truncate(k * BLOCK as usize),
            None => {}
        }
        Ok(Bytes::from(buf))
    }

    /// Bytes `start..end` of the body as a response body, read off the async runtime as the
    /// client takes them, up to [`READ_AHEAD`] blocks per read. The next read starts as soon
    /// as one is handed out, so the disk (or page cache) is read while hyper writes to the
    /// socket: at most two reads' worth of the body is in memory per response.
    pub fn body(self: &Arc<Self>, start: u64, end: u64) -> Body {
        let end = end.min(self.len);
        let state = Ahead { file: self.clone(), pos: start, end, next: None };
        let stream = futures_util::stream::unfold(state, |mut s| async move {
            let chunk = s.step().await?;
            if chunk.is_err() {
                s.pos = s.end;
            }
            Some((chunk, s))
        });
        http_body_util::StreamBody::new(stream.map(|r| r.map(Frame::data))).boxed_unsync()
    }

    /// Starts reading the blocks from the one that holds `pos`, as far as `end` needs and at
    /// most [`READ_AHEAD`].
    fn start(self: &Arc<Self>, pos: u64, end: u64) -> Pending {
        let i = pos / BLOCK;
        let n = ((end - 1) / BLOCK + 1 - i).min(READ_AHEAD);
        let reader = self.clone();
        (i, tokio::task::spawn_blocking(move || reader.blocks(i, n)))
    }
}

/// A read under way: its first block and its task.
type Pending = (u64, tokio::task::JoinHandle<Result<Bytes, BlockError>>);

/// A body being served: where it is, and the read that will serve what comes next.
struct Ahead {
    file: Arc<FileBody>,
    pos: u64,
    end: u64,
    next: Option<Pending>,
}

impl Ahead {
    /// The next chunk (`None` at the end), and the read after it started.
    async fn step(&mut self) -> Option<Result<Bytes, BoxError>> {
        if self.pos >= self.end {
            return None;
        }
        let (i, task) = match self.next.take() {
            Some((i, task)) if i == self.pos / BLOCK => (i, task),
            _ => self.file.start(self.pos, self.end),
        };
        let batch = match task.await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cached object body unreadable; response aborted");
                return Some(Err(Box::new(e)));
            }
            Err(e) => return Some(Err(Box::new(e))),
        };
        let batch_start = i * BLOCK;
        let from = usize::try_from(self.pos - batch_start).unwrap_or(0);
        let to = usize::try_from(self.end.min(batch_start + batch.len() as u64) - batch_start).unwrap_or(0);
        if from >= to {
            // Cannot happen (the batch holds the block `pos` is in), but a stream that did
            // not move on would never end.
            return Some(Err(Box::new(BlockError::Io(std::io::ErrorKind::UnexpectedEof.into()))));
        }
        self.pos = batch_start + to as u64;
        if self.pos < self.end {
            self.next = Some(self.file.start(self.pos, self.end));
        }
        Some(Ok(batch.slice(from..to)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn file_body(data: &[u8], flip: Option<usize>) -> (Arc<FileBody>, Arc<AtomicBool>) {
        let mut f = tempfile::tempfile().unwrap();
        let mut on_disk = data.to_vec();
        if let Some(i) = flip {
            on_disk[i] ^= 1;
        }
        f.write_all(b"head").unwrap();
        f.write_all(&on_disk).unwrap();
        let crcs = data.chunks(BLOCK as usize).map(crc32fast::hash).collect();
        let seen = Arc::new(AtomicBool::new(false));
        let s = seen.clone();
        let body =
            FileBody::new(f, 4, data.len() as u64, crcs, Box::new(move || s.store(true, Ordering::Relaxed)));
        (Arc::new(body), seen)
    }

    async fn read(body: Body) -> Result<Vec<u8>, BoxError> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    /// Any range reads back the bytes it names, across block boundaries.
    #[tokio::test]
    async fn ranges_read_back_exactly() {
        let data: Vec<u8> = (0..(BLOCK as usize * 3 + 1000)).map(|i| (i % 251) as u8).collect();
        let (body, _) = file_body(&data, None);
        let b = BLOCK;
        let len = data.len() as u64;
        for (s, e) in [(0, len), (0, 1), (b - 1, b + 1), (b, 2 * b), (5, 3 * b + 7), (len - 1, len), (3, 3)] {
            let got = read(body.body(s, e)).await.unwrap();
            assert_eq!(got, &data[s as usize..e as usize], "{s}..{e}");
        }
    }

    /// Bodies longer than one read: every range comes back whole and exact, in chunks of at
    /// most [`READ_AHEAD`] blocks.
    #[tokio::test]
    async fn ranges_across_several_reads_read_back_exactly() {
        let data: Vec<u8> = (0..(BLOCK as usize * 9 + 5)).map(|i| (i * 31 % 257) as u8).collect();
        let (body, seen) = file_body(&data, None);
        let (b, len) = (BLOCK, data.len() as u64);
        for (s, e) in [(0, len), (1, len - 1), (3 * b + 1, 8 * b + 2), (4 * b, 8 * b), (len - 6, len)] {
            let mut chunks = body.body(s, e);
            let mut got = Vec::new();
            while let Some(frame) = chunks.frame().await {
                let chunk = frame.unwrap().into_data().unwrap();
                assert!(!chunk.is_empty() && chunk.len() as u64 <= READ_AHEAD * b, "{s}..{e}");
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got, &data[s as usize..e as usize], "{s}..{e}");
        }
        assert!(!seen.load(Ordering::Relaxed));
    }

    /// A flipped byte in the middle of a read: the good blocks before it are sent, then the
    /// body ends with an error and the tier is told.
    #[tokio::test]
    async fn a_flipped_byte_inside_a_read_ahead_sends_only_the_blocks_before_it() {
        let data = vec![9u8; BLOCK as usize * 6];
        let (body, seen) = file_body(&data, Some(BLOCK as usize * 2 + 3));
        let mut chunks = body.body(0, data.len() as u64);
        let mut sent = 0;
        let failed = loop {
            match chunks.frame().await {
                Some(Ok(frame)) => sent += frame.into_data().unwrap().len(),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(failed, "the body ended as if complete");
        assert_eq!(sent, BLOCK as usize * 2);
        assert!(seen.load(Ordering::Relaxed));
    }

    /// A flipped byte fails its block: the bytes before it are sent, the block is not, and
    /// the tier is told.
    #[tokio::test]
    async fn a_flipped_byte_ends_the_body_with_an_error() {
        let data = vec![7u8; BLOCK as usize * 2];
        let (body, seen) = file_body(&data, Some(BLOCK as usize + 10));
        assert_eq!(read(body.body(0, BLOCK)).await.unwrap().len(), BLOCK as usize);
        assert!(!seen.load(Ordering::Relaxed));
        assert!(read(body.body(0, 2 * BLOCK)).await.is_err());
        assert!(seen.load(Ordering::Relaxed));
    }
}
