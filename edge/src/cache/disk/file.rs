//! One file of the disk tier: a fixed header, the key, the stored header text, the body, and a
//! CRC-32 (IEEE, `crc32fast`) of everything before it as a trailer.
//!
//! ```text
//! magic "STRDSK02" | key_len u32 | key ends 3×u32 | text_len u32 | text ends 3×u32 |
//! body_len u64 | status u16 | flags u16 | lifetime, swr, sie 3×u32 | age_ms u64 |
//! written_ms u64 | stored_ms u64 | kind u16 | primary_len u32 | key | text | body | crc32 u32
//! ```
//!
//! `key` is the whole slot key: the primary key (`key[..primary_len]`, whose host, path and
//! query end at `key ends`), then what names the slot under it — nothing for the object itself,
//! a `Vary` variant's `SEP SEP name:value`..., a slice's `SEP SEP @index`. `kind` 1 is a `Vary`
//! marker: its text is the header names that select a variant, joined by `, `, and it has no
//! body. Files of the first format (`STRDSK01`: no `kind`, no `primary_len`, the key is the
//! primary key) are still read, as objects under their primary key.
//!
//! All integers are little endian. A file is written under a temporary name and renamed into
//! place once complete, so a crash mid-write leaves only a temporary file (removed on start);
//! the checksum catches what rename cannot: a torn page after a power loss, a flipped byte.
//! [`decode`] trusts nothing: every length is checked against the file before it is used.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderName;

use crate::cache::entry::Persisted;
use crate::cache::key::CacheKey;

const MAGIC: &[u8; 8] = b"STRDSK02";
/// A large object's file, written as its body streamed in (`stream.rs`).
pub const MAGIC_STREAMED: &[u8; 8] = b"STRDSK03";
/// The first format, still read.
const MAGIC_V1: &[u8; 8] = b"STRDSK01";
/// Bytes before the key in the first format.
const HEADER_V1: usize = 8 + 4 + 12 + 4 + 12 + 8 + 2 + 2 + 12 + 8 + 8 + 8;
/// Bytes before the key: the first format's, then `kind` and `primary_len`.
pub const HEADER: usize = HEADER_V1 + 2 + 4;
const KIND_OBJECT: u16 = 0;
const KIND_VARY: u16 = 1;
/// Keys are bounded by request-head limits; anything longer is not ours.
const MAX_KEY: usize = 64 << 10;

/// What a file holds under its slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A stored response.
    Object(Persisted),
    /// A `Vary` marker: the resource varies on these request headers (lowercased, sorted).
    Vary(Vec<HeaderName>),
}

/// A file as it is written and read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The object's primary cache key (what purges match on).
    pub key: CacheKey,
    /// What follows the primary key in the slot's key (empty for the primary slot).
    pub suffix: Arc<str>,
    /// The object, or a `Vary` marker.
    pub content: Content,
    /// Wall-clock milliseconds since the Unix epoch when the file was written (the entry's age
    /// then is `entry.age_ms`).
    pub written_ms: u64,
    /// Wall-clock milliseconds when the response arrived at this edge; purges applied after it
    /// apply to it (see `bans.rs`).
    pub stored_ms: u64,
}

/// Why a file was not a valid object.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    #[error("shorter than its header")]
    Short,
    #[error("not an object file")]
    Magic,
    #[error("lengths do not match the file")]
    Length,
    #[error("checksum mismatch")]
    Checksum,
    #[error("key or header text malformed")]
    Malformed,
}

/// Writes `r` to `w`; returns the bytes written.
pub fn encode(w: &mut impl Write, r: &Record) -> io::Result<u64> {
    let mut w = Crc { inner: w, crc: crc32fast::Hasher::new(), n: 0 };
    let body = write_head(&mut w, r, None, MAGIC)?;
    w.write_all(&body)?;
    let crc = w.crc.clone().finalize();
    w.inner.write_all(&crc.to_le_bytes())?;
    Ok(w.n + 4)
}

/// Writes the fixed header, the key and the header text of `r` under `magic`, announcing a
/// body of `body_len` bytes (the record's own body when `None`); returns the record's body.
pub fn write_head(
    w: &mut impl Write,
    r: &Record,
    body_len: Option<u64>,
    magic: &[u8; 8],
) -> io::Result<Bytes> {
    let (primary, key_ends) = r.key.parts();
    let marker;
    let (e, kind) = match &r.content {
        Content::Object(p) => (p, KIND_OBJECT),
        Content::Vary(names) => {
            let text = names.iter().map(HeaderName::as_str).collect::<Vec<_>>().join(", ");
            let n = u32_len(text.len())?;
            marker = Persisted {
                text: Bytes::from(text),
                ends: [n; 3],
                body: Bytes::new(),
                status: 0,
                flags: 0,
                lifetime: 0,
                swr: 0,
                sie: 0,
                age_ms: 0,
            };
            (&marker, KIND_VARY)
        }
    };
    let key_len = primary.len() + r.suffix.len();
    w.write_all(magic)?;
    w.write_all(&u32_len(key_len)?.to_le_bytes())?;
    for n in key_ends {
        w.write_all(&n.to_le_bytes())?;
    }
    w.write_all(&u32_len(e.text.len())?.to_le_bytes())?;
    for n in e.ends {
        w.write_all(&n.to_le_bytes())?;
    }
    w.write_all(&body_len.unwrap_or(e.body.len() as u64).to_le_bytes())?;
    w.write_all(&e.status.to_le_bytes())?;
    w.write_all(&e.flags.to_le_bytes())?;
    for n in [e.lifetime, e.swr, e.sie] {
        w.write_all(&n.to_le_bytes())?;
    }
    for n in [e.age_ms, r.written_ms, r.stored_ms] {
        w.write_all(&n.to_le_bytes())?;
    }
    w.write_all(&kind.to_le_bytes())?;
    w.write_all(&u32_len(primary.len())?.to_le_bytes())?;
    w.write_all(primary.as_bytes())?;
    w.write_all(r.suffix.as_bytes())?;
    w.write_all(&e.text)?;
    Ok(e.body.clone())
}

fn u32_len(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "field too long"))
}

/// The fixed header of a file, as read (lengths not yet checked against the file).
#[derive(Debug)]
pub struct Head {
    /// Bytes of the fixed header (the key follows).
    pub len: usize,
    pub key_len: usize,
    pub text_len: usize,
    pub body_len: u64,
    key_ends: [u32; 3],
    ends: [u32; 3],
    status: u16,
    flags: u16,
    lifetime: u32,
    swr: u32,
    sie: u32,
    age_ms: u64,
    written_ms: u64,
    stored_ms: u64,
    kind: u16,
    primary_len: usize,
}

/// Parses the fixed header at the start of `buf`, written under one of `magics` (the first
/// format's when `v1` is among them). Checks only what needs no other part of the file.
pub fn parse_head(buf: &[u8], magics: &[&[u8; 8]]) -> Result<Head, Corrupt> {
    if buf.len() < HEADER_V1 {
        return Err(Corrupt::Short);
    }
    let magic = magics.iter().find(|m| buf[..8] == m[..]).ok_or(Corrupt::Magic)?;
    let v1 = *magic == MAGIC_V1;
    let len = if v1 { HEADER_V1 } else { HEADER };
    if buf.len() < len {
        return Err(Corrupt::Short);
    }
    let mut r = Reader { buf, at: 8 };
    let key_len = r.u32() as usize;
    let key_ends = [r.u32(), r.u32(), r.u32()];
    let text_len = r.u32() as usize;
    let ends = [r.u32(), r.u32(), r.u32()];
    let body_len = r.u64();
    let status = r.u16();
    let flags = r.u16();
    let [lifetime, swr, sie] = [r.u32(), r.u32(), r.u32()];
    let [age_ms, written_ms, stored_ms] = [r.u64(), r.u64(), r.u64()];
    let (kind, primary_len) = if v1 { (KIND_OBJECT, key_len) } else { (r.u16(), r.u32() as usize) };
    if key_len > MAX_KEY || primary_len > key_len {
        return Err(Corrupt::Length);
    }
    Ok(Head {
        len,
        key_len,
        text_len,
        body_len,
        key_ends,
        ends,
        status,
        flags,
        lifetime,
        swr,
        sie,
        age_ms,
        written_ms,
        stored_ms,
        kind,
        primary_len,
    })
}

impl Head {
    /// The record this header describes, given its `key` bytes, header `text` and `body`
    /// (all already checked against the checksum).
    pub fn record(&self, key: &[u8], text: Bytes, body: Bytes) -> Result<Record, Corrupt> {
        let whole = std::str::from_utf8(key).map_err(|_| Corrupt::Malformed)?;
        let (primary, suffix) = whole.split_at_checked(self.primary_len).ok_or(Corrupt::Malformed)?;
        let key = CacheKey::from_parts(Arc::from(primary), self.key_ends).ok_or(Corrupt::Malformed)?;
        let suffix = Arc::from(suffix);
        let (written_ms, stored_ms) = (self.written_ms, self.stored_ms);
        if self.kind == KIND_VARY {
            let text = std::str::from_utf8(&text).map_err(|_| Corrupt::Malformed)?;
            let names = text
                .split(", ")
                .map(|n| HeaderName::from_bytes(n.as_bytes()).map_err(|_| Corrupt::Malformed))
                .collect::<Result<Vec<_>, _>>()?;
            if names.is_empty() || !body.is_empty() {
                return Err(Corrupt::Malformed);
            }
            return Ok(Record { key, suffix, content: Content::Vary(names), written_ms, stored_ms });
        }
        if self.kind != KIND_OBJECT {
            return Err(Corrupt::Malformed);
        }
        let entry = Persisted {
            text,
            ends: self.ends,
            body,
            status: self.status,
            flags: self.flags,
            lifetime: self.lifetime,
            swr: self.swr,
            sie: self.sie,
            age_ms: self.age_ms,
        };
        Ok(Record { key, suffix, content: Content::Object(entry), written_ms, stored_ms })
    }
}

/// Reads a whole file written by [`encode`].
pub fn decode(file: &Bytes) -> Result<Record, Corrupt> {
    if file.len() < HEADER_V1 + 4 {
        return Err(Corrupt::Short);
    }
    let h = parse_head(&file[..file.len() - 4], &[MAGIC, MAGIC_V1])?;
    let (content, trailer) = file.split_at(file.len() - 4);
    let want = (h.len as u64)
        .checked_add(h.key_len as u64)
        .and_then(|n| n.checked_add(h.text_len as u64))
        .and_then(|n| n.checked_add(h.body_len));
    if want != Some(content.len() as u64) {
        return Err(Corrupt::Length);
    }
    let crc = u32::from_le_bytes(trailer.try_into().map_err(|_| Corrupt::Short)?);
    if crc32fast::hash(content) != crc {
        return Err(Corrupt::Checksum);
    }
    let text_at = h.len + h.key_len;
    let body_at = text_at + h.text_len;
    h.record(&file[h.len..text_at], file.slice(text_at..body_at), file.slice(body_at..content.len()))
}

/// A writer that checksums what passes through it.
struct Crc<'a, W> {
    inner: &'a mut W,
    crc: crc32fast::Hasher,
    n: u64,
}

impl<W: Write> Write for Crc<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the fixed header (its length is checked before any read).
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[self.at..self.at + N]);
        self.at += N;
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &[u8]) -> Record {
        let rules = stratus_config::edge::KeyRules::default();
        let key = CacheKey::new("h", &http::Uri::from_static("/a/b?x=1"), &rules, &http::HeaderMap::new());
        Record {
            key,
            suffix: Arc::from(""),
            content: Content::Object(Persisted {
                text: Bytes::from_static(b"\x91text/plain\ntag1\n"),
                ends: [12, 12, 17],
                body: Bytes::copy_from_slice(body),
                status: 200,
                flags: 4,
                lifetime: 60,
                swr: 1,
                sie: 2,
                age_ms: 1234,
            }),
            written_ms: 1_700_000_000_000,
            stored_ms: 1_699_999_999_000,
        }
    }

    fn bytes(r: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encode(&mut out, r).unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let r = record(b"hello");
        assert_eq!(decode(&Bytes::from(bytes(&r))), Ok(r));
    }

    #[test]
    fn variants_slices_and_markers_read_back_as_written() {
        let variant = Record { suffix: Arc::from("\u{1f}\u{1f}accept-encoding:gzip"), ..record(b"v") };
        let slice = Record { suffix: Arc::from("\u{1f}\u{1f}@7"), ..record(b"s") };
        let names = vec![HeaderName::from_static("accept-encoding"), HeaderName::from_static("x-tenant")];
        let marker = Record { content: Content::Vary(names), ..record(b"") };
        for r in [variant, slice, marker] {
            assert_eq!(decode(&Bytes::from(bytes(&r))), Ok(r));
        }
    }

    /// A file of the first format (the key is the primary key, no kind) reads as an object.
    #[test]
    fn files_of_the_first_format_still_read() {
        let r = record(b"old");
        let mut v2 = bytes(&r);
        v2.truncate(v2.len() - 4);
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&v2[8..HEADER_V1]);
        v1.extend_from_slice(&v2[HEADER..]);
        v1.extend_from_slice(&crc32fast::hash(&v1).to_le_bytes());
        assert_eq!(decode(&Bytes::from(v1)), Ok(r));
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_rejected() {
        let good = bytes(&record(b"some body bytes"));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(decode(&Bytes::from(bad)).is_err(), "flip at {i}");
        }
        for n in 0..good.len() {
            assert!(decode(&Bytes::copy_from_slice(&good[..n])).is_err(), "cut at {n}");
        }
    }

    proptest::proptest! {
        /// Whatever a file holds, decoding returns an error or a record; it never panics.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&Bytes::from(data));
        }

        /// A valid header with arbitrary lengths and contents is never taken for a record
        /// unless its checksum matches.
        #[test]
        fn garbage_after_the_magic_is_rejected(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut file = MAGIC.to_vec();
            file.extend_from_slice(&data);
            let good = bytes(&record(b"x"));
            proptest::prop_assume!(file != good);
            proptest::prop_assert!(decode(&Bytes::from(file)).is_err());
        }

        #[test]
        fn bodies_round_trip(body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let r = record(&body);
            proptest::prop_assert_eq!(decode(&Bytes::from(bytes(&r))), Ok(r));
        }
    }
}
