//! The disk tier behind the memory store: the tier itself (`tier`: writer, reads), its index
//! of files (`index`),
//! the object file format (`file`), reading a file back (`load`, `pread`), large objects' files
//! written as they stream in (`stream`, their bodies handed over by the fill in batches:
//! `handoff`) and served block by block (`blocks`), file names and slot keys (`slot`), the
//! persisted purges (`bans`) and which objects read back go into memory (`promote`). See
//! `docs/edge.md`, "Disk tier".

pub(crate) mod bans;
pub(crate) mod blocks;
pub(crate) mod file;
pub(crate) mod handoff;
pub(crate) mod index;
pub(crate) mod load;
pub(crate) mod pread;
pub(crate) mod promote;
pub(crate) mod slot;
pub(crate) mod stream;
pub(crate) mod tier;
