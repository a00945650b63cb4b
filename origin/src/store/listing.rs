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
pub fn list<T: Clone>(index: &BTreeMap<String, T>, q: &ListQuery<'_>) -> ListPage<T> {
    let mut page = ListPage { objects: Vec::new(), prefixes: Vec::new(), next_token: None };
    let start = match &q.after {
        Some(after) if after.as_str() >= q.prefix => Bound::Excluded(after.clone()),
        _ => Bound::Included(q.prefix.to_owned()),
    };
    let mut last: Option<String> = None;
    let mut skip = q.skip_prefix.clone();
    for (key, value) in index.range((start, Bound::Unbounded)) {
        if !key.starts_with(q.prefix) {
            break;
        }
        if skip.as_deref().is_some_and(|p| key.starts_with(p)) {
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
                skip = Some(p.clone());
                page.prefixes.push(p);
            }
            None => {
                last = Some(token_for_key(key));
                page.objects.push((key.clone(), value.clone()));
            }
        }
    }
    page
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
    fn bad_tokens_are_refused() {
        for bad in ["", "x00", "kzz", "kff"] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_token(&token_for_key("a b+%")), Some(("a b+%".to_owned(), None)));
    }
}
