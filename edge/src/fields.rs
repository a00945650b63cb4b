//! Stored header fields. A `HeaderMap` spends about 150 bytes of hash index and link slots on
//! every field, and a `(HeaderName, HeaderValue)` pair 72: for a small cached object either
//! costs more than its body. A stored response only needs its fields in order, so [`Fields`]
//! keeps them as text, `name:value\n` per field, in a slice of the buffer the entry's body lives
//! in. A hit turns them into the response's `HeaderMap` in one pass: standard names are matched
//! without allocating and values are slices of the same buffer.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Header fields in their original order, repeated names kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// `name:value\n` per field. Names are lowercase tokens (no `:`) and values hold no
    /// control characters (no `\n`), so the text splits back unambiguously.
    block: Bytes,
    count: u32,
}

impl Fields {
    /// Bytes [`Fields::encode`] writes for `map`.
    pub fn encoded_len(map: &HeaderMap) -> usize {
        map.iter().map(|(n, v)| n.as_str().len() + v.len() + 2).sum()
    }

    /// Appends `map`'s fields to `buf`.
    pub fn encode(map: &HeaderMap, buf: &mut BytesMut) {
        for (name, value) in map {
            buf.put_slice(name.as_str().as_bytes());
            buf.put_u8(b':');
            buf.put_slice(value.as_bytes());
            buf.put_u8(b'\n');
        }
    }

    /// The fields of `map`, read back from the front of `buf`, where [`Fields::encode`] wrote
    /// them; `buf` keeps what follows.
    pub fn take_from(map: &HeaderMap, buf: &mut Bytes) -> Self {
        let len = Self::encoded_len(map).min(buf.len());
        Self { block: buf.split_to(len), count: u32::try_from(map.len()).unwrap_or(u32::MAX) }
    }

    /// Every field in order, as raw name and value bytes.
    fn raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.block.split(|b| *b == b'\n').filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
    }

    /// Every field in order. Values share the stored buffer.
    pub fn iter(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        self.raw().filter_map(|(name, value)| {
            // Both were valid when encoded; a field that somehow is not is left out.
            let name = HeaderName::from_bytes(name).ok()?;
            let value = HeaderValue::from_maybe_shared(self.block.slice_ref(value)).ok()?;
            Some((name, value))
        })
    }

    /// A `HeaderMap` holding these fields, with room for `extra` more.
    pub fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.count as usize + extra);
        for (name, value) in self.iter() {
            map.append(name, value);
        }
        map
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        let (_, value) = self.raw().find(|(n, _)| *n == name.as_str().as_bytes())?;
        HeaderValue::from_maybe_shared(self.block.slice_ref(value)).ok()
    }

    /// Whether a field `name` is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.raw().any(|(n, _)| n == name.as_str().as_bytes())
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of text held.
    pub fn bytes(&self) -> usize {
        self.block.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn fields_keep_order_repeats_and_values() {
        let mut h = HeaderMap::new();
        h.append(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1; Path=/: x"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        h.append("x-custom", HeaderValue::from_static(""));
        h.append(header::ETAG, HeaderValue::from_static("\"a:b\"\t"));
        let mut buf = BytesMut::new();
        Fields::encode(&h, &mut buf);
        buf.put_slice(b"body");
        let mut buf = buf.freeze();
        let f = Fields::take_from(&h, &mut buf);
        assert_eq!(&buf[..], b"body", "the rest of the buffer is left");
        assert_eq!(f.to_map(0), h, "no field, order or repetition changes");
        assert_eq!(f.len(), 5);
        assert_eq!(
            f.get(&header::SET_COOKIE).as_ref().map(HeaderValue::as_bytes),
            Some(&b"a=1; Path=/: x"[..])
        );
        assert_eq!(f.get(&header::ETAG).as_ref().map(HeaderValue::as_bytes), Some(&b"\"a:b\"\t"[..]));
        assert!(f.contains(&HeaderName::from_static("x-custom")));
        assert!(!f.contains(&header::LAST_MODIFIED));
    }
}
