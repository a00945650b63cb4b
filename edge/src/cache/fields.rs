//! Stored header fields. A `HeaderMap` spends about 150 bytes of hash index and link slots on
//! every field, and a `(HeaderName, HeaderValue)` pair 72: for a small cached object either
//! costs more than its body. A stored response only needs its fields in order, so they are kept
//! as text, one line per field, in the buffer the entry's body lives in, and [`Fields`] reads
//! them from there. A hit turns them into the response's `HeaderMap` in one pass; values are
//! slices of the stored buffer.
//!
//! A line is `name:value\n`, except that a name from [`NAMES`] (the fields origins commonly
//! send) is written as one byte, `0x80 + its index`, directly followed by the value. Header
//! names are ASCII tokens, so a first byte of `0x80` or above is never the start of a spelled
//! name. For a typical response this halves the text, and a hit takes the name from the table
//! instead of parsing it.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// Names written as one byte. Append only: the index is the code.
static NAMES: [HeaderName; 40] = [
    header::ACCEPT_RANGES,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
    header::AGE,
    header::ALT_SVC,
    header::CACHE_CONTROL,
    header::CONTENT_DISPOSITION,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LENGTH,
    header::CONTENT_LOCATION,
    header::CONTENT_RANGE,
    header::CONTENT_SECURITY_POLICY,
    header::CONTENT_TYPE,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::LINK,
    header::LOCATION,
    header::REFERRER_POLICY,
    header::RETRY_AFTER,
    header::SERVER,
    header::SET_COOKIE,
    header::STRICT_TRANSPORT_SECURITY,
    header::VARY,
    header::VIA,
    header::X_CONTENT_TYPE_OPTIONS,
    header::X_FRAME_OPTIONS,
    header::X_XSS_PROTECTION,
    HeaderName::from_static("cdn-cache-control"),
    HeaderName::from_static("surrogate-control"),
    HeaderName::from_static("x-amz-request-id"),
    HeaderName::from_static("x-amz-id-2"),
    HeaderName::from_static("x-amz-version-id"),
    HeaderName::from_static("timing-allow-origin"),
];

/// The first byte of a coded name.
const CODED: u8 = 0x80;

fn code(name: &HeaderName) -> Option<u8> {
    let i = NAMES.iter().position(|n| n == name)?;
    u8::try_from(i).ok().map(|i| CODED + i)
}

/// Header fields in their original order, repeated names kept: a view of stored text.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    /// The buffer the text is a slice of, so values can share it.
    buf: &'a Bytes,
    /// Where the text starts in `buf`.
    start: usize,
    /// The lines.
    text: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Bytes [`Fields::encode`] writes for `map`.
    pub fn encoded_len(map: &HeaderMap) -> usize {
        map.iter().map(|(n, v)| if code(n).is_some() { 1 } else { n.as_str().len() + 1 } + v.len() + 1).sum()
    }

    /// Appends `map`'s fields to `buf`.
    pub fn encode(map: &HeaderMap, buf: &mut BytesMut) {
        for (name, value) in map {
            match code(name) {
                Some(c) => buf.put_u8(c),
                None => {
                    buf.put_slice(name.as_str().as_bytes());
                    buf.put_u8(b':');
                }
            }
            buf.put_slice(value.as_bytes());
            buf.put_u8(b'\n');
        }
    }

    /// The fields [`Fields::encode`] wrote at `buf[range]`.
    pub fn new(buf: &'a Bytes, range: std::ops::Range<usize>) -> Self {
        match buf.get(range.clone()) {
            Some(text) => Self { buf, start: range.start, text },
            None => Self { buf, start: 0, text: &[] },
        }
    }

    /// The stored text.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// Every field in order: its name and where its value is in `text`.
    fn raw(&self) -> Lines<'a> {
        Lines { text: self.text, at: 0 }
    }

    /// The value at `at` in the text, sharing the stored buffer. It was a valid value when
    /// encoded; a value that somehow is not gives `None`.
    fn value(&self, at: std::ops::Range<usize>) -> Option<HeaderValue> {
        if at.is_empty() {
            return Some(HeaderValue::from_static(""));
        }
        HeaderValue::from_maybe_shared(self.buf.slice(self.start + at.start..self.start + at.end)).ok()
    }

    /// Every field in order. Values share the stored buffer.
    pub fn iter(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + use<'a> {
        let this = *self;
        self.raw().filter_map(move |(name, at)| Some((name.header_name()?, this.value(at)?)))
    }

    /// A `HeaderMap` holding these fields, with room for `extra` more.
    ///
    /// Every hit builds one, so this is the hit's largest cost of our own
    /// (`docs/performance.md`, "Instructions per hit"): lines are found with `memchr`,
    /// common names come from [`NAMES`] without parsing, values are slices of the stored
    /// buffer (checked, not copied), and the map is allocated once at its final size.
    pub fn to_map(self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len() + extra);
        for (name, at) in self.raw() {
            if let (Some(name), Some(value)) = (name.header_name(), self.value(at)) {
                map.append(name, value);
            }
        }
        map
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        let (_, at) = self.raw().find(|(n, _)| n.is(name))?;
        self.value(at)
    }

    /// Whether a field `name` is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.raw().any(|(n, _)| n.is(name))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        memchr::memchr_iter(b'\n', self.text).count()
    }

    /// Whether there are none.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// The lines of stored text: each field's name and the range of its value. A line without
/// its `\n` (text cut short) or a spelled name without `:` is skipped.
struct Lines<'a> {
    text: &'a [u8],
    /// Where the next line starts.
    at: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (Name<'a>, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let start = self.at;
            let line = self.text.get(start..)?;
            let end = start + memchr::memchr(b'\n', line)?;
            self.at = end + 1;
            match *line.first()? {
                c if c >= CODED => return Some((Name::Coded(usize::from(c - CODED)), start + 1..end)),
                _ => {
                    let Some(colon) = memchr::memchr(b':', &line[..end - start]) else { continue };
                    return Some((Name::Spelled(&line[..colon]), start + colon + 1..end));
                }
            }
        }
    }
}

/// A stored name.
enum Name<'a> {
    /// Index into [`NAMES`].
    Coded(usize),
    /// Spelled out.
    Spelled(&'a [u8]),
}

impl Name<'_> {
    /// The name as a `HeaderName`: from the table, or parsed when spelled out.
    fn header_name(&self) -> Option<HeaderName> {
        match self {
            Self::Coded(i) => NAMES.get(*i).cloned(),
            Self::Spelled(s) => HeaderName::from_bytes(s).ok(),
        }
    }

    fn is(&self, name: &HeaderName) -> bool {
        match self {
            Self::Coded(i) => NAMES.get(*i) == Some(name),
            Self::Spelled(s) => *s == name.as_str().as_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_order_repeats_and_values() {
        let mut h = HeaderMap::new();
        h.append(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1; Path=/: x"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        h.append("x-custom", HeaderValue::from_static(""));
        h.append(header::ETAG, HeaderValue::from_static("\"a:b\"\t"));
        h.append("x-utf8", HeaderValue::from_bytes(b"\xc3\xa9t\xc3\xa9").unwrap());
        h.append(header::VARY, HeaderValue::from_static(""));
        let mut buf = BytesMut::new();
        Fields::encode(&h, &mut buf);
        let len = buf.len();
        assert_eq!(len, Fields::encoded_len(&h));
        buf.put_slice(b"body");
        let buf = buf.freeze();
        let f = Fields::new(&buf, 0..len);
        assert_eq!(f.to_map(0), h, "no field, order or repetition changes");
        assert_eq!(f.len(), 7);
        assert_eq!(
            f.get(&header::SET_COOKIE).as_ref().map(HeaderValue::as_bytes),
            Some(&b"a=1; Path=/: x"[..])
        );
        assert_eq!(f.get(&header::ETAG).as_ref().map(HeaderValue::as_bytes), Some(&b"\"a:b\"\t"[..]));
        assert!(f.contains(&HeaderName::from_static("x-custom")));
        assert!(f.contains(&header::VARY));
        assert!(!f.contains(&header::LAST_MODIFIED));
        assert!(Fields::new(&buf, len..len).is_empty());
    }

    proptest::proptest! {
        /// Any map survives storing: every field, in order, repeats kept, whether its name is
        /// coded or spelled and whatever bytes its value holds; `get`, `contains` and `len`
        /// agree with the map.
        #[test]
        fn any_fields_survive_storing(
            fields in proptest::collection::vec(
                (0..NAMES.len() + 3, proptest::collection::vec(proptest::prop_oneof![
                    0x20u8..0x7f, 0x80u8..=0xff, proptest::strategy::Just(b'\t')
                ], 0..40)),
                0..12,
            )
        ) {
            let spelled = ["x-a", "x-b-c", "server-timing"];
            let mut h = HeaderMap::new();
            for (n, v) in &fields {
                let name = NAMES.get(*n).cloned().unwrap_or_else(|| HeaderName::from_static(spelled[n - NAMES.len()]));
                h.append(name, HeaderValue::from_bytes(v).unwrap());
            }
            let mut buf = BytesMut::new();
            buf.put_slice(b"before");
            Fields::encode(&h, &mut buf);
            let end = buf.len();
            proptest::prop_assert_eq!(end - 6, Fields::encoded_len(&h));
            buf.put_slice(b"after\n");
            let buf = buf.freeze();
            let f = Fields::new(&buf, 6..end);
            proptest::prop_assert_eq!(&f.to_map(0), &h);
            proptest::prop_assert_eq!(f.iter().collect::<HeaderMap>(), h.clone());
            proptest::prop_assert_eq!(f.len(), h.len());
            for name in h.keys() {
                proptest::prop_assert!(f.contains(name));
                proptest::prop_assert_eq!(f.get(name), h.get(name).cloned());
            }
        }

        /// Text that was never encoded (a corrupt buffer) reads as some fields or none, and
        /// never panics.
        #[test]
        fn any_text_reads_without_panicking(text in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let buf = Bytes::from(text);
            let f = Fields::new(&buf, 0..buf.len());
            let map = f.to_map(1);
            proptest::prop_assert!(map.len() <= f.len());
            let _ = f.get(&header::CONTENT_TYPE);
        }
    }

    #[test]
    fn common_names_take_one_byte() {
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        h.append("x-mine", HeaderValue::from_static("1"));
        let mut buf = BytesMut::new();
        Fields::encode(&h, &mut buf);
        assert_eq!(buf.len(), (1 + 9 + 1) + (7 + 1 + 1), "{buf:?}");
        assert!(NAMES.iter().all(|n| code(n).is_some()), "every name has a code");
    }
}
