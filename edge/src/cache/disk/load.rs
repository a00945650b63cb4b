//! Reading an object's file back, as cheaply as the page cache allows (`docs/edge.md`, "Disk
//! tier"; measured in `docs/performance.md`, "Disk tier hits").
//!
//! A small file the page cache holds is read on the runtime thread, as nginx reads its cache
//! files, but without ever waiting: `openat2` with `RESOLVE_CACHED` opens it only if the path
//! resolves from the kernel's directory cache, and `preadv2` with `RWF_NOWAIT` copies it only
//! if every byte is in memory; either refuses rather than waits, and a refused file (or a
//! kernel or file system without them) goes to tokio's blocking pool like every larger file.
//! Handing a read to the blocking pool costs two thread wake-ups, far more than copying a few
//! KiB from the page cache. Files are opened with `O_NOATIME`, so a read never writes.
//!
//! Every read trusts the index's size only as far as the file agrees: a file shorter or longer
//! than that fails its checksum or length checks when decoded (`file.rs`, `stream.rs`).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSliceMut};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::{Errno, ReadWriteFlags};
use rustix::path::Arg;

use crate::cache::disk::file::MAGIC_STREAMED;
use crate::cache::disk::pread;

/// Files up to this size are read on the runtime thread when the page cache holds them whole.
/// A 1 KiB object's file is about 1.5 KiB; at 64 KiB, a page-cache copy still costs a few µs.
pub const INLINE_MAX: u64 = 64 << 10;

/// Cleared the first time the kernel or file system refuses `RWF_NOWAIT` or
/// `RESOLVE_CACHED`, so that such a system pays the refusal once rather than on every read.
static NOWAIT: AtomicBool = AtomicBool::new(true);

/// An object's file, read.
#[derive(Debug)]
pub enum Contents {
    /// A file written whole (`file.rs`): its bytes.
    Whole(Bytes),
    /// A large object's file (`stream.rs`), open, and its length: its head is read by
    /// `stream::open` and its body block by block as it is served.
    Streamed(File, u64),
}

/// Reads the file at `path` under the directory `dir`, `size` bytes by the index, on the
/// calling thread, if the page cache holds all of it; `Ok(None)` when that would mean waiting
/// for the disk (or the system cannot tell), and then [`blocking`] reads it. The tier passes
/// its `objects/` directory and a name under it: the kernel then resolves two components
/// instead of the whole path (a third of the open's time was that walk, `docs/performance.md`).
pub fn cached(dir: BorrowedFd<'_>, path: impl Arg, size: u64) -> io::Result<Option<Contents>> {
    if size > INLINE_MAX || !NOWAIT.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let Some(f) = open_cached(dir, path)? else { return Ok(None) };
    let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
    match rustix::io::preadv2(&f, &mut [IoSliceMut::new(&mut buf)], 0, ReadWriteFlags::NOWAIT) {
        // A short read: part is not in memory, or the file is shorter than the index says
        // (then the blocking read finds it corrupt).
        Ok(n) if n < buf.len() => Ok(None),
        Ok(_) => contents(f, buf).map(Some),
        Err(Errno::AGAIN) => Ok(None),
        Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {
            NOWAIT.store(false, Ordering::Relaxed);
            tracing::info!("RWF_NOWAIT unsupported here: every disk-tier read goes to the blocking pool");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens `path` for reading without waiting: `openat2` with `RESOLVE_CACHED` resolves it only
/// from the kernel's directory cache and refuses (`Ok(None)`) when that would mean reading a
/// directory from disk or waiting for a writer's lock on it (an open that waited 2–4 ms stalled
/// every connection of the runtime thread, `docs/performance.md`). `O_NOATIME`: a read must not
/// write an inode (the tier owns its files).
fn open_cached(dir: BorrowedFd<'_>, path: impl Arg) -> io::Result<Option<File>> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOATIME;
    match rustix::fs::openat2(dir, path, flags, Mode::empty(), ResolveFlags::CACHED) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::AGAIN) => Ok(None),
        // No `openat2`, no `RESOLVE_CACHED` (before Linux 5.12), or files this process does
        // not own (`O_NOATIME`): every read goes to the blocking pool.
        Err(Errno::NOSYS | Errno::INVAL | Errno::PERM | Errno::OPNOTSUPP) => {
            NOWAIT.store(false, Ordering::Relaxed);
            tracing::info!(
                "openat2(RESOLVE_CACHED) unavailable here: every disk-tier read goes to the blocking pool"
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens `path` for reading, without updating its access time where the tier owns it.
fn open(path: &Path) -> io::Result<File> {
    let noatime = OpenOptions::new().read(true).custom_flags(OFlags::NOATIME.bits() as i32).open(path);
    match noatime {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(path),
        other => other,
    }
}

/// Reads the file at `path`, `size` bytes by the index (blocking): a whole file in one read
/// into a buffer that is not zeroed first; a large object's file only as far as its magic.
pub fn blocking(path: &Path, size: u64) -> io::Result<Contents> {
    let f = open(path)?;
    if size > INLINE_MAX {
        let mut magic = [0u8; 8];
        if f.read_exact_at(&mut magic, 0).is_ok() && &magic == MAGIC_STREAMED {
            let len = f.metadata()?.len();
            return Ok(Contents::Streamed(f, len));
        }
    }
    let buf = pread::read_at(&f, 0, usize::try_from(size).unwrap_or(0))?;
    contents(f, buf)
}

fn contents(f: File, buf: Vec<u8>) -> io::Result<Contents> {
    if buf.get(..8) == Some(&MAGIC_STREAMED[..]) {
        let len = f.metadata()?.len();
        return Ok(Contents::Streamed(f, len));
    }
    Ok(Contents::Whole(Bytes::from(buf)))
}

#[cfg(test)]
mod tests {
    use rustix::fs::CWD;

    use super::*;

    fn file_of(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, data).unwrap();
        (dir, p)
    }

    fn whole(c: Contents) -> Vec<u8> {
        match c {
            Contents::Whole(b) => b.to_vec(),
            Contents::Streamed(..) => panic!("not a whole file"),
        }
    }

    /// Both ways read exactly the bytes of the file; a file that was just written is in the
    /// page cache, so the inline read takes it (or the system has no `RWF_NOWAIT`).
    #[test]
    fn both_ways_read_the_file_as_it_is() {
        for len in [0usize, 1, 4095, 4096, 70_000, 300_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let (_d, p) = file_of(&data);
            assert_eq!(whole(blocking(&p, len as u64).unwrap()), data, "{len}");
            if let Some(c) = cached(CWD, &p, len as u64).unwrap() {
                assert_eq!(whole(c), data, "{len}");
            } else {
                assert!(len as u64 > INLINE_MAX || !NOWAIT.load(Ordering::Relaxed), "{len}");
            }
        }
    }

    /// A file shorter than the index says reads short (decoding then refuses it), one longer
    /// reads only as far as the index says; neither reads past what the file holds.
    #[test]
    fn a_size_that_does_not_match_the_file_reads_what_is_there() {
        let (_d, p) = file_of(b"0123456789");
        assert_eq!(whole(blocking(&p, 20).unwrap()), b"0123456789");
        assert_eq!(cached(CWD, &p, 20).unwrap().map(whole), None);
        assert_eq!(whole(blocking(&p, 4).unwrap()), b"0123");
        if let Some(c) = cached(CWD, &p, 4).unwrap() {
            assert_eq!(whole(c), b"0123");
        }
    }

    /// A large object's file is recognised by its magic, small or large, and not read whole.
    #[test]
    fn a_streamed_file_is_opened_not_read() {
        for len in [64usize, INLINE_MAX as usize + 10] {
            let mut data = MAGIC_STREAMED.to_vec();
            data.resize(len, 7);
            let (_d, p) = file_of(&data);
            let Contents::Streamed(_, n) = blocking(&p, len as u64).unwrap() else { panic!("{len}") };
            assert_eq!(n, len as u64);
            if let Some(c) = cached(CWD, &p, len as u64).unwrap() {
                assert!(matches!(c, Contents::Streamed(_, n) if n == len as u64));
            }
        }
    }

    /// A name under an open directory reads the same file as its whole path.
    #[test]
    fn a_name_under_an_open_directory_reads_its_file() {
        let (d, _p) = file_of(b"under the directory");
        let dir =
            rustix::fs::open(d.path(), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .unwrap();
        if let Some(c) = cached(std::os::fd::AsFd::as_fd(&dir), "f", 19).unwrap() {
            assert_eq!(whole(c), b"under the directory");
        } else {
            assert!(!NOWAIT.load(Ordering::Relaxed));
        }
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gone");
        assert_eq!(blocking(&p, 10).unwrap_err().kind(), io::ErrorKind::NotFound);
        if NOWAIT.load(Ordering::Relaxed) {
            assert_eq!(cached(CWD, &p, 10).unwrap_err().kind(), io::ErrorKind::NotFound);
        }
    }
}
