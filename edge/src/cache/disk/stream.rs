//! The file of a large object, written as its body arrives from the origin and read back a
//! block at a time (`blocks.rs`), so neither costs the object's size in memory.
//!
//! ```text
//! magic "STRDSK03" | the fixed header of file.rs | key | text | body |
//! block crc32 u32 × ceil(body_len / BLOCK) | crc32 u32 of everything but the body
//! ```
//!
//! The header is written first with a body length of zero and rewritten in place (same
//! length) once the body is complete; the trailer checksums the header, key, text and block
//! checksums, and each [`BLOCK`] of the body has its own checksum, checked when that block is
//! served. The file is written under a temporary name and renamed into place only when the
//! body arrived complete, exactly as other files are: a body cut short, or a crash, leaves no
//! object file, and a torn or corrupted one fails a checksum.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use crate::cache::disk::blocks::{BLOCK, blocks};
use crate::cache::disk::file::{Content, Corrupt, HEADER, MAGIC_STREAMED, Record, parse_head, write_head};

/// Header text longer than this is not ours (request and response heads are far smaller).
const MAX_TEXT: usize = 16 << 20;

/// Body bytes per write. One vectored write of a whole batch (1 MiB and more) cost twice the
/// CPU per GiB here, most of it in the kernel's copy into the page cache
/// (`docs/performance.md`, "Large objects through the disk tier").
const WRITE: usize = 256 << 10;

/// A large object's file being written. The body is written as it is handed over, straight
/// from its chunks in vectored writes of `WRITE` bytes (no copy into a buffer of ours); its
/// block checksums are computed on the way.
pub struct StreamWriter {
    out: File,
    /// Bytes of the header, key and text.
    head_len: u64,
    body_len: u64,
    block: crc32fast::Hasher,
    in_block: u64,
    crcs: Vec<u32>,
}

impl StreamWriter {
    /// Creates `path` and writes the head of `record` (its body comes through [`Self::write_chunks`]).
    pub fn create(path: &Path, record: &Record) -> io::Result<Self> {
        let mut head = Vec::new();
        write_head(&mut head, record, Some(0), MAGIC_STREAMED)?;
        let mut out = File::create(path)?;
        out.write_all(&head)?;
        Ok(Self {
            out,
            head_len: head.len() as u64,
            body_len: 0,
            block: crc32fast::Hasher::new(),
            in_block: 0,
            crcs: Vec::new(),
        })
    }

    /// Body bytes written so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Appends the body bytes of `chunks`, in order, straight from them: a vectored write per
    /// `WRITE` bytes, checksummed right after the kernel copied them, while they are still
    /// in the CPU's cache.
    pub fn write_chunks(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        let mut group: Vec<&[u8]> = Vec::new();
        let mut in_group = 0;
        for chunk in chunks {
            let mut rest: &[u8] = chunk;
            while !rest.is_empty() {
                let (now, later) = rest.split_at((WRITE - in_group).min(rest.len()));
                group.push(now);
                in_group += now.len();
                rest = later;
                if in_group == WRITE {
                    self.write_group(&group)?;
                    group.clear();
                    in_group = 0;
                }
            }
        }
        self.write_group(&group)
    }

    fn write_group(&mut self, group: &[&[u8]]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|p| IoSlice::new(p)).collect();
        write_all_vectored(&mut self.out, &mut slices)?;
        for piece in group {
            self.checksum(piece);
        }
        Ok(())
    }

    /// Counts `data` into the body's length and its blocks' checksums.
    fn checksum(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = usize::try_from(BLOCK - self.in_block).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.block.update(now);
            self.in_block += now.len() as u64;
            self.body_len += now.len() as u64;
            if self.in_block == BLOCK {
                self.end_block();
            }
            data = rest;
        }
    }

    fn end_block(&mut self) {
        let done = std::mem::replace(&mut self.block, crc32fast::Hasher::new());
        self.crcs.push(done.finalize());
        self.in_block = 0;
    }

    /// Completes the file with the head of `record` (the same key and text as at
    /// [`Self::create`], its ages as of now); returns the file's size.
    pub fn finish(mut self, record: &Record) -> io::Result<u64> {
        if self.in_block > 0 {
            self.end_block();
        }
        let mut head = Vec::with_capacity(usize::try_from(self.head_len).unwrap_or(0));
        write_head(&mut head, record, Some(self.body_len), MAGIC_STREAMED)?;
        if head.len() as u64 != self.head_len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "object head changed while writing"));
        }
        let table: Vec<u8> = self.crcs.iter().flat_map(|c| c.to_le_bytes()).collect();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&table);
        let crc = crc.finalize().to_le_bytes();
        write_all_vectored(&mut self.out, &mut [IoSlice::new(&table), IoSlice::new(&crc)])?;
        self.out.write_all_at(&head, 0)?;
        Ok(self.head_len + self.body_len + table.len() as u64 + 4)
    }
}

/// Writes all of `bufs` (`Write::write_all_vectored` is not stable yet); the standard library
/// passes at most `IOV_MAX` slices to each `writev`.
fn write_all_vectored(out: &mut File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match out.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A large object's file, opened: its record (with an empty body) and where its body is.
#[derive(Debug)]
pub struct Opened {
    pub record: Record,
    /// Where the body starts in the file.
    pub at: u64,
    pub len: u64,
    /// The body's block checksums.
    pub crcs: Box<[u32]>,
}

/// Reads the head of a file written by [`StreamWriter`], `file_len` bytes long, and checks
/// it: lengths against the file, the checksum of everything but the body. The body's blocks
/// are checked as they are read.
pub fn open(file: &File, file_len: u64) -> Result<Opened, Corrupt> {
    let mut fixed = [0u8; HEADER];
    if file_len < HEADER as u64 + 4 || file.read_exact_at(&mut fixed, 0).is_err() {
        return Err(Corrupt::Short);
    }
    let h = parse_head(&fixed, &[MAGIC_STREAMED])?;
    let n = blocks(h.body_len);
    let table_len = n.checked_mul(4).ok_or(Corrupt::Length)?;
    let want = (h.len as u64)
        .checked_add(h.key_len as u64)
        .and_then(|x| x.checked_add(h.text_len as u64))
        .and_then(|x| x.checked_add(h.body_len))
        .and_then(|x| x.checked_add(table_len))
        .and_then(|x| x.checked_add(4));
    if h.text_len > MAX_TEXT || want != Some(file_len) {
        return Err(Corrupt::Length);
    }
    let mut key_text = vec![0u8; h.key_len + h.text_len];
    let body_at = (h.len + key_text.len()) as u64;
    let mut tail = vec![0u8; usize::try_from(table_len + 4).map_err(|_| Corrupt::Length)?];
    if file.read_exact_at(&mut key_text, h.len as u64).is_err()
        || file.read_exact_at(&mut tail, body_at + h.body_len).is_err()
    {
        return Err(Corrupt::Short);
    }
    let (table, trailer) = tail.split_at(tail.len() - 4);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&fixed);
    crc.update(&key_text);
    crc.update(table);
    if trailer != crc.finalize().to_le_bytes() {
        return Err(Corrupt::Checksum);
    }
    let text = Bytes::copy_from_slice(&key_text[h.key_len..]);
    let record = h.record(&key_text[..h.key_len], text, Bytes::new())?;
    if !matches!(record.content, Content::Object(_)) {
        return Err(Corrupt::Malformed);
    }
    let crcs = table.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Opened { record, at: body_at, len: h.body_len, crcs })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache::entry::Persisted;
    use crate::cache::key::CacheKey;

    fn record(age_ms: u64) -> Record {
        let rules = stratus_config::edge::KeyRules::default();
        let key = CacheKey::new("h", &http::Uri::from_static("/big?x=1"), &rules, &http::HeaderMap::new());
        Record {
            key,
            suffix: Arc::from(""),
            content: Content::Object(Persisted {
                text: Bytes::from_static(b"\x91text/plain\ntag1\n"),
                ends: [12, 12, 17],
                body: Bytes::new(),
                status: 200,
                flags: 0,
                lifetime: 60,
                swr: 0,
                sie: 0,
                age_ms,
            }),
            written_ms: 1_700_000_000_000 + age_ms,
            stored_ms: 1_699_999_999_000,
        }
    }

    fn write(dir: &Path, body: &[u8], pieces: usize) -> (std::path::PathBuf, u64) {
        let path = dir.join("obj");
        let mut w = StreamWriter::create(&path, &record(0)).unwrap();
        let parts = body.chunks(body.len().div_ceil(pieces).max(1));
        // One chunk per write, or in batches of chunks.
        let chunks: Vec<Bytes> = parts.map(Bytes::copy_from_slice).collect();
        let per_write = if pieces.is_multiple_of(2) { 1 } else { chunks.len().div_ceil(3) };
        for batch in chunks.chunks(per_write) {
            w.write_chunks(batch).unwrap();
        }
        let n = w.finish(&record(5000)).unwrap();
        (path, n)
    }

    /// The head written last is read back, the body is where it says, and its block
    /// checksums match however the body arrived in pieces: written piece by piece, or in
    /// batches of chunks (one of more chunks than one `writev` takes).
    #[test]
    fn a_streamed_file_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..(BLOCK as usize * 2 + 123)).map(|i| (i * 7 % 256) as u8).collect();
        for pieces in [1, 2, 3, 1000, 4001] {
            let (path, n) = write(dir.path(), &body, pieces);
            let f = File::open(&path).unwrap();
            assert_eq!(f.metadata().unwrap().len(), n);
            let o = open(&f, n).unwrap();
            assert_eq!(o.record, record(5000));
            assert_eq!(o.len, body.len() as u64);
            assert_eq!(o.crcs.len(), 3);
            let mut got = vec![0u8; body.len()];
            f.read_exact_at(&mut got, o.at).unwrap();
            assert_eq!(got, body);
            for (i, block) in body.chunks(BLOCK as usize).enumerate() {
                assert_eq!(o.crcs[i], crc32fast::hash(block));
            }
        }
    }

    /// A flipped byte outside the body, or any truncation, is refused when opened.
    #[test]
    fn a_damaged_head_or_a_cut_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let body = vec![1u8; 1000];
        let (path, n) = write(dir.path(), &body, 2);
        let good = std::fs::read(&path).unwrap();
        let body_at = open(&File::open(&path).unwrap(), n).unwrap().at as usize;
        let check = |bytes: &[u8]| {
            let p = dir.path().join("bad");
            std::fs::write(&p, bytes).unwrap();
            open(&File::open(&p).unwrap(), bytes.len() as u64)
        };
        for i in (0..body_at).chain(body_at + body.len()..good.len()) {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(check(&bad).is_err(), "flip at {i}");
        }
        for cut in [0, 8, HEADER, body_at, good.len() - 1] {
            assert!(check(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        /// Whatever a file holds after the magic, opening it never panics.
        #[test]
        fn opening_arbitrary_bytes_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x");
            let mut bytes = MAGIC_STREAMED.to_vec();
            bytes.extend_from_slice(&data);
            std::fs::write(&p, &bytes).unwrap();
            let _ = open(&File::open(&p).unwrap(), bytes.len() as u64);
        }
    }
}
