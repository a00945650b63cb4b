//! Positional reads into buffers the kernel fills without their being zeroed first (`pread`
//! through `rustix`, which does the unsafe part): the disk tier's reads of whole files
//! (`load.rs`) and of large bodies' blocks (`blocks.rs`) copy each byte once.

use std::fs::File;
use std::io;

use rustix::io::Errno;

/// Up to `n` bytes of `f` from `at`, fewer at its end, in a buffer filled by the kernel
/// without being zeroed first.
pub fn read_at(f: &File, at: u64, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    while buf.len() < n {
        let offset = at + buf.len() as u64;
        // The read goes into the room left before the capacity, exactly `n`.
        match rustix::io::pread(f, rustix::buffer::spare_capacity(&mut buf), offset) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Any span reads back the file's bytes, cut short at its end.
    #[test]
    fn spans_read_back_and_stop_at_the_end() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        for (at, n) in [(0, 0), (0, 100_000), (5, 70_000), (99_999, 1), (90_000, 20_000), (200_000, 10)] {
            let want = &data[(at as usize).min(data.len())..(at as usize + n).min(data.len())];
            assert_eq!(read_at(&f, at, n).unwrap(), want, "{at}+{n}");
        }
    }
}
