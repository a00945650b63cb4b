//! Where a slot lives on disk: the hash of its key, its file's name, and what its key says
//! (a variant's header names). Pure functions, shared by the tier's readers and its writer.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use http::header::HeaderName;

use crate::cache::key::VARIANT_MARK;
use crate::cache::slice;

/// The header names of a variant's slot (`suffix`: what follows the primary key), as
/// `CacheKey::variant` wrote them; `None` for the primary slot and for slices.
pub fn variant_names(suffix: &str) -> Option<Vec<HeaderName>> {
    if suffix.starts_with(slice::MARK) {
        return None;
    }
    let names: Option<Vec<HeaderName>> = suffix
        .strip_prefix(VARIANT_MARK)?
        .split(VARIANT_MARK)
        .map(|part| HeaderName::from_bytes(part.split_once(':')?.0.as_bytes()).ok())
        .collect();
    names.filter(|n| !n.is_empty())
}

/// The hash a slot's key is indexed and named by (XXH3).
pub fn hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The file of the slot hashed `h`, written `seq`-th: `objects/xx/<hash>-<seq>`.
pub fn object_path(objects: &Path, h: u64, seq: u64) -> PathBuf {
    objects.join(ObjectName::new(h, seq).as_str())
}

/// The name of an object's file under `objects/`, `xx/<hash>-<seq>` in lowercase hex, written
/// on the stack: every disk hit opens a file by it, and `format!` cost more than the read.
#[derive(Clone, Copy)]
pub struct ObjectName {
    buf: [u8; 2 + 1 + 16 + 1 + 16],
    len: usize,
}

impl ObjectName {
    pub fn new(h: u64, seq: u64) -> Self {
        let mut buf = [0u8; 36];
        hex(&mut buf[..2], h >> 56);
        buf[2] = b'/';
        hex(&mut buf[3..19], h);
        buf[19] = b'-';
        let digits = (16 - seq.leading_zeros() as usize / 4).max(1);
        hex(&mut buf[20..20 + digits], seq);
        Self { buf, len: 20 + digits }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits, `/` and `-` are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Writes the low `out.len()` hex digits of `n` into `out`, most significant first.
fn hex(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// `(hash, seq)` from a file name written by [`object_path`].
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (h, seq) = name.split_once('-')?;
    if h.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(h, 16).ok()?, u64::from_str_radix(seq, 16).ok()?))
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::cache::key::CacheKey;

    /// The names come back as `CacheKey::variant` put them in, values with `:` included;
    /// slices and the primary slot have none.
    #[test]
    fn variant_names_are_read_from_variant_keys() {
        let rules = stratus_config::edge::KeyRules::default();
        let key = CacheKey::new("h", &http::Uri::from_static("/p"), &rules, &HeaderMap::new());
        let mut h = HeaderMap::new();
        h.insert("x-tenant", "a:b, c".parse().unwrap());
        h.insert("accept-encoding", "gzip".parse().unwrap());
        let names = vec![HeaderName::from_static("accept-encoding"), HeaderName::from_static("x-tenant")];
        let slot = key.variant(&names, &h);
        assert_eq!(variant_names(&slot[key.primary().len()..]), Some(names));
        assert_eq!(variant_names(""), None);
        assert_eq!(variant_names(&slice::key("", 3)), None);
    }

    proptest::proptest! {
        /// Whatever the names and values, the names read back from a variant key are the ones
        /// it was built from.
        #[test]
        fn variant_names_round_trip(
            names in proptest::collection::btree_set("[a-z][a-z0-9-]{0,12}", 1..4),
            value in "[ -~]{0,20}",
        ) {
            let names: Vec<HeaderName> = names.iter().map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()).collect();
            let mut h = HeaderMap::new();
            for n in &names {
                h.insert(n.clone(), http::HeaderValue::from_str(&value).unwrap());
            }
            let rules = stratus_config::edge::KeyRules::default();
            let key = CacheKey::new("h", &http::Uri::from_static("/p?q=1"), &rules, &HeaderMap::new());
            let slot = key.variant(&names, &h);
            proptest::prop_assert_eq!(variant_names(&slot[key.primary().len()..]), Some(names));
        }
    }

    proptest::proptest! {
        /// The name written on the stack is the one `format!` writes, and reads back.
        #[test]
        fn object_names_are_what_format_writes(h: u64, seq: u64) {
            let name = ObjectName::new(h, seq);
            proptest::prop_assert_eq!(name.as_str(), format!("{:02x}/{h:016x}-{seq:x}", h >> 56));
            proptest::prop_assert_eq!(parse_name(&name.as_str()[3..]), Some((h, seq)));
        }
    }

    #[test]
    fn file_names_round_trip_and_others_are_refused() {
        let p = object_path(Path::new("/o"), 0xab12_0000_0000_0001, 0x2f);
        assert_eq!(p, Path::new("/o/ab/ab12000000000001-2f"));
        assert_eq!(ObjectName::new(0, 0).as_str(), "00/0000000000000000-0");
        assert_eq!(ObjectName::new(u64::MAX, u64::MAX).as_str(), "ff/ffffffffffffffff-ffffffffffffffff");
        assert_eq!(parse_name("ab12000000000001-2f"), Some((0xab12_0000_0000_0001, 0x2f)));
        for bad in ["", "x", "ab12-1", "ab1200000000000g-1", "ab12000000000001-", "ab12000000000001"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
