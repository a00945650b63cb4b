//! ListObjects over the sorted key index: prefix, delimiter and common prefixes, max-keys,
//! start-after and continuation tokens.
//!
//! A continuation token is the hex of the last item returned (`k` + key or `p` + common
//! prefix), so a page resumes exactly after it even if keys change in between; it is opaque to
//! clients, as S3's are.

use std::collections::BTreeMap;
use std::ops::Bound;

/// What a listing asks for.
#[derive(Clone, Debug, Default)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    /// List keys strictly after this one.
    pub after: Option<String>,
    /// The previous page ended with this common prefix: skip every key under it.
    pub skip_prefix: Option<String>,
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage<T> {
    pub objects: Vec<(String, T)>,
    pub prefixes: Vec<String>,
    /// Set when more items follow: the token of the last item returned.
    pub next_token: Option<String>,
}

/// Lists `index` per `q`.
///
/// Each step is one ordered lookup from a cursor, and a common prefix is jumped over rather than
/// walked, so listing the "directories" of a bucket costs the number of items returned, not the
/// number of keys under them.
pub fn list<T: Clone>(index: &BTreeMap<String, T>, q: &ListQuery<'_>) -> ListPage<T> {
    let mut page = ListPage { objects: Vec::new(), prefixes: Vec::new(), next_token: None };
    let mut cursor = match &q.after {
        Some(after) if after.as_str() >= q.prefix => Bound::Excluded(after.clone()),
        _ => Bound::Included(q.prefix.to_owned()),
    };
    if let Some(p) = &q.skip_prefix {
        cursor = cursor.max_with(past(p));
    }
    let mut last: Option<String> = None;
    while let Some((key, value)) = index.range((cursor.clone(), Bound::Unbounded)).next() {
        if !key.starts_with(q.prefix) {
            break;
        }
        if q.skip_prefix.as_deref().is_some_and(|p| key.starts_with(p)) {
            // Only keys continuing with U+10FFFF land here; step over them one by one.
            cursor = Bound::Excluded(key.clone());
            continue;
        }
        let common = q.delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            key[q.prefix.len()..].find(d).map(|i| key[..q.prefix.len() + i + d.len()].to_owned())
        });
        if page.objects.len() + page.prefixes.len() >= q.max_keys {
            page.next_token = last;
            return page;
        }
        match common {
            Some(p) => {
                last = Some(token_for_prefix(&p));
                cursor = past(&p);
                // Keys under `p` sorting after the jump target are skipped one by one.
                let skip = p.clone();
                page.prefixes.push(p);
                while let Some((k, _)) = index.range((cursor.clone(), Bound::Unbounded)).next() {
                    if !k.starts_with(&skip) {
                        break;
                    }
                    cursor = Bound::Excluded(k.clone());
                }
            }
            None => {
                last = Some(token_for_key(key));
                page.objects.push((key.clone(), value.clone()));
                cursor = Bound::Excluded(key.clone());
            }
        }
    }
    page
}

/// A bound after (almost) every key starting with `prefix`: `prefix` followed by the highest
/// code point. Keys continuing with that very code point are still compared one by one.
fn past(prefix: &str) -> Bound<String> {
    Bound::Excluded(format!("{prefix}{}", char::MAX))
}

/// The later of two lower bounds.
trait MaxWith {
    fn max_with(self, other: Self) -> Self;
}

impl MaxWith for Bound<String> {
    fn max_with(self, other: Self) -> Self {
        let key = |b: &Bound<String>| match b {
            Bound::Included(s) => (s.clone(), 0),
            Bound::Excluded(s) => (s.clone(), 1),
            Bound::Unbounded => (String::new(), 0),
        };
        if key(&other) > key(&self) { other } else { self }
    }
}

/// The token that resumes after `key`.
pub fn token_for_key(key: &str) -> String {
    format!("k{}", hex::encode(key))
}

fn token_for_prefix(prefix: &str) -> String {
    format!("p{}", hex::encode(prefix))
}

/// Decodes a token into (list after this key, skip keys under this prefix).
pub fn parse_token(token: &str) -> Option<(String, Option<String>)> {
    let (kind, rest) = token.split_at_checked(1)?;
    let value = String::from_utf8(hex::decode(rest).ok()?).ok()?;
    match kind {
        "k" => Some((value, None)),
        "p" => Some((value.clone(), Some(value))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(keys: &[&str]) -> BTreeMap<String, ()> {
        keys.iter().map(|k| ((*k).to_owned(), ())).collect()
    }

    fn keys(page: &ListPage<()>) -> Vec<&str> {
        page.objects.iter().map(|(k, ())| k.as_str()).collect()
    }

    #[test]
    fn prefix_and_delimiter() {
        let idx = index(&["a.txt", "img/1.png", "img/2.png", "img/x/3.png", "imgs", "z/1"]);
        let q = ListQuery { prefix: "", delimiter: Some("/"), max_keys: 1000, ..Default::default() };
        let page = list(&idx, &q);
        assert_eq!(keys(&page), ["a.txt", "imgs"]);
        assert_eq!(page.prefixes, ["img/", "z/"]);
        assert_eq!(page.next_token, None);

        let q = ListQuery { prefix: "img/", delimiter: Some("/"), max_keys: 1000, ..Default::default() };
        let page = list(&idx, &q);
        assert_eq!(keys(&page), ["img/1.png", "img/2.png"]);
        assert_eq!(page.prefixes, ["img/x/"]);
    }

    #[test]
    fn pages_resume_after_keys_and_prefixes() {
        let idx = index(&["a", "b/1", "b/2", "c", "d/1"]);
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (after, skip_prefix) = token.as_deref().and_then(parse_token).unzip();
            let q = ListQuery {
                prefix: "",
                delimiter: Some("/"),
                after,
                skip_prefix: skip_prefix.flatten(),
                max_keys: 1,
            };
            let page = list(&idx, &q);
            seen.extend(keys(&page).iter().map(|k| (*k).to_owned()));
            seen.extend(page.prefixes.iter().cloned());
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b/", "c", "d/"]);
    }

    #[test]
    fn start_after_before_the_prefix_is_ignored() {
        let idx = index(&["a", "p/1", "p/2"]);
        let q = ListQuery { prefix: "p/", after: Some("a".into()), max_keys: 10, ..Default::default() };
        assert_eq!(keys(&list(&idx, &q)), ["p/1", "p/2"]);
        let q = ListQuery { prefix: "p/", after: Some("p/1".into()), max_keys: 10, ..Default::default() };
        assert_eq!(keys(&list(&idx, &q)), ["p/2"]);
    }

    #[test]
    fn exactly_full_page_has_no_token() {
        let idx = index(&["a", "b"]);
        let q = ListQuery { max_keys: 2, ..Default::default() };
        assert_eq!(list(&idx, &q).next_token, None);
        let q = ListQuery { max_keys: 1, ..Default::default() };
        assert_eq!(list(&idx, &q).next_token, Some(token_for_key("a")));
    }

    #[test]
    fn prefixes_are_jumped_including_keys_with_the_highest_code_point() {
        let max = char::MAX;
        let idx = index(&["a/1", "a/2", &format!("a/{max}x"), "b", "c/1"]);
        let q = ListQuery { delimiter: Some("/"), max_keys: 1000, ..Default::default() };
        let page = list(&idx, &q);
        assert_eq!(page.prefixes, ["a/", "c/"]);
        assert_eq!(keys(&page), ["b"]);
        let q = ListQuery {
            delimiter: Some("/"),
            after: Some("a/".into()),
            skip_prefix: Some("a/".into()),
            max_keys: 1000,
            ..Default::default()
        };
        let page = list(&idx, &q);
        assert_eq!(page.prefixes, ["c/"]);
        assert_eq!(keys(&page), ["b"]);
    }

    /// The obvious listing: every key under the prefix, rolled up at the first delimiter.
    fn naive(keys: &[String], prefix: &str, delimiter: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in keys.iter().filter(|k| k.starts_with(prefix)) {
            let item = match delimiter.and_then(|d| k[prefix.len()..].find(d).map(|i| (i, d))) {
                Some((i, d)) => k[..prefix.len() + i + d.len()].to_owned(),
                None => k.clone(),
            };
            if out.last() != Some(&item) {
                out.push(item);
            }
        }
        out
    }

    #[test]
    fn paging_through_matches_the_naive_listing() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let alphabet = ['a', 'b', '/', '-', char::MAX];
        for _ in 0..200 {
            let mut keys: Vec<String> = (0..rnd(40))
                .map(|_| (0..1 + rnd(6)).map(|_| alphabet[rnd(alphabet.len() as u64) as usize]).collect())
                .collect();
            keys.sort();
            keys.dedup();
            let idx: BTreeMap<String, ()> = keys.iter().map(|k| (k.clone(), ())).collect();
            let prefix = ["", "a", "a/", "b/a"][rnd(4) as usize];
            let delimiter = [None, Some("/"), Some("-")][rnd(3) as usize];
            let max_keys = 1 + rnd(5) as usize;
            let mut got = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let (after, skip_prefix) = token.as_deref().and_then(parse_token).unzip();
                let q = ListQuery { prefix, delimiter, after, skip_prefix: skip_prefix.flatten(), max_keys };
                let page = list(&idx, &q);
                assert!(page.objects.len() + page.prefixes.len() <= max_keys);
                let mut items: Vec<String> = keys_of(&page);
                items.extend(page.prefixes.iter().cloned());
                items.sort();
                got.extend(items);
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            got.sort();
            assert_eq!(
                got,
                naive(&keys, prefix, delimiter),
                "keys {keys:?} prefix {prefix:?} delimiter {delimiter:?}"
            );
        }
    }

    fn keys_of(page: &ListPage<()>) -> Vec<String> {
        page.objects.iter().map(|(k, ())| k.clone()).collect()
    }

    #[test]
    fn bad_tokens_are_refused() {
        for bad in ["", "x00", "kzz", "kff"] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_token(&token_for_key("a b+%")), Some(("a b+%".to_owned(), None)));
    }
}
