//! The body of a large object served from its file on disk: read in checksummed blocks on the
//! blocking pool, one block at a time, so that serving it costs one block of memory per
//! response, whatever the object's size (`docs/edge.md`, "Disk tier").
//!
//! Every block of [`BLOCK`] bytes carries its own CRC-32 in the file (`stream.rs`), checked
//! before any of its bytes are sent: a range reads only the blocks it overlaps, and a flipped
//! byte is never sent. A block that fails its check ends the response with an error (the
//! client's connection or stream is reset, so it never takes the body for complete) and drops
//! the file, so the next request is a miss.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::BodyExt;

use crate::body::{Body, BoxError};

/// Bytes per checksummed block of a large object's body; also what one read takes.
pub const BLOCK: u64 = 256 << 10;

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

    /// Reads and checks block `i` (blocking).
    fn block(&self, i: u64) -> Result<Bytes, BlockError> {
        let start = i * BLOCK;
        let n = BLOCK.min(self.len.saturating_sub(start));
        let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
        self.file.read_exact_at(&mut buf, self.at + start)?;
        let want = usize::try_from(i).ok().and_then(|i| self.crcs.get(i).copied());
        if want != Some(crc32fast::hash(&buf)) {
            (self.on_corrupt)();
            return Err(BlockError::Checksum);
        }
        Ok(Bytes::from(buf))
    }

    /// Bytes `start..end` of the body as a response body, read block by block off the async
    /// runtime as the client takes them.
    pub fn body(self: &Arc<Self>, start: u64, end: u64) -> Body {
        let end = end.min(self.len);
        let stream = futures_util::stream::unfold((self.clone(), start), move |(f, pos)| async move {
            if pos >= end {
                return None;
            }
            let i = pos / BLOCK;
            let reader = f.clone();
            let read = tokio::task::spawn_blocking(move || reader.block(i)).await;
            let block = match read {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cached object body unreadable; response aborted");
                    return Some((Err(Box::new(e) as BoxError), (f, end)));
                }
                Err(e) => return Some((Err(Box::new(e) as BoxError), (f, end))),
            };
            let block_start = i * BLOCK;
            let from = usize::try_from(pos - block_start).unwrap_or(0);
            let to = usize::try_from(end.min(block_start + BLOCK) - block_start).unwrap_or(0);
            let chunk = block.slice(from.min(block.len())..to.min(block.len()));
            let next = block_start + to as u64;
            if chunk.is_empty() {
                // The file is shorter than its header said (it was checked when opened).
                let e = BlockError::Io(std::io::ErrorKind::UnexpectedEof.into());
                return Some((Err(Box::new(e) as BoxError), (f, end)));
            }
            Some((Ok(chunk), (f, next)))
        });
        http_body_util::StreamBody::new(stream.map(|r| r.map(Frame::data))).boxed_unsync()
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
