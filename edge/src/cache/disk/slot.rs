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
    objects.join(format!("{:02x}", h >> 56)).join(format!("{h:016x}-{seq:x}"))
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

    #[test]
    fn file_names_round_trip_and_others_are_refused() {
        let p = object_path(Path::new("/o"), 0xab12_0000_0000_0001, 0x2f);
        assert_eq!(p, Path::new("/o/ab/ab12000000000001-2f"));
        assert_eq!(parse_name("ab12000000000001-2f"), Some((0xab12_0000_0000_0001, 0x2f)));
        for bad in ["", "x", "ab12-1", "ab1200000000000g-1", "ab12000000000001-", "ab12000000000001"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
