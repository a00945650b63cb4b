//! Cache-Control style directive lists (`Cache-Control`, `CDN-Cache-Control`,
//! `Surrogate-Control`), parsed the way RFC 9111 §5.2 and RFC 9213 ask: `Cache-Control` and
//! `Surrogate-Control` leniently by hand (they are not structured fields, and real origins
//! send sloppy ones), `CDN-Cache-Control` strictly as the RFC 8941 dictionary it is, with the
//! `sfv` crate.
//!
//! Directive names are case-insensitive; values may be tokens or quoted strings. A directive
//! given twice with different values, or a delta-seconds directive with a value that is not a
//! number, is *invalid*: [`Directives::seconds`] then answers `Invalid`, and the freshness code
//! treats the response as stale (RFC 9111 §4.2.1, "caches are encouraged to consider responses
//! that have invalid freshness information to be stale").

use http::HeaderMap;
use http::header::HeaderName;

/// `CDN-Cache-Control` (RFC 9213).
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `Surrogate-Control` (Edge Architecture Specification).
pub static SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// A parsed directive list, in header order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    items: Vec<(String, Option<String>)>,
}

/// The value of a delta-seconds directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seconds {
    /// Not present.
    Absent,
    /// Present without a usable value (no value, not a number, or given twice differently).
    Invalid,
    /// Present with this many seconds (saturating at `u32::MAX`, as §1.2.2 allows).
    Value(u64),
}

impl Directives {
    /// Parses every field named `name` in `headers`, as one comma-separated list.
    /// `CDN-Cache-Control` is a structured field and goes through [`Self::from_structured`].
    pub fn from_headers(headers: &HeaderMap, name: &HeaderName) -> Option<Self> {
        if *name == CDN_CACHE_CONTROL {
            return Self::from_structured(headers, name);
        }
        let mut values = headers.get_all(name).iter().peekable();
        values.peek()?;
        let mut out = Self::default();
        for v in values {
            // A field value that is not visible ASCII cannot hold directives we understand.
            if let Ok(text) = v.to_str() {
                out.parse_into(text, *name == SURROGATE_CONTROL);
            }
        }
        Some(out)
    }

    /// Parses a targeted field (RFC 9213 §2.1): an RFC 8941 dictionary, its field lines
    /// combined with commas as RFC 9651 §4.2 asks. `None` when absent, and also when it fails
    /// to parse (non-ASCII, a bad key such as `MaX-aGe`, junk such as `&&&&&`, an integer of
    /// more than 15 digits): the field is then ignored as a whole, as if it were not there,
    /// and the other fields apply. A repeated key keeps its last value (dictionary semantics).
    ///
    /// Members are mapped back to directives as §2.1 infers their types: `?1` (no value) is a
    /// directive without value, strings and tokens are values, and the delta-seconds
    /// directives take non-negative integers only. A member of the wrong type (`max-age="60"`,
    /// `max-age=1.5`, `no-store=?0`, an inner list) is not used at all, unlike the
    /// Cache-Control rule that makes an invalid `max-age` mean "stale".
    fn from_structured(headers: &HeaderMap, name: &HeaderName) -> Option<Self> {
        let mut text = Vec::new();
        for v in headers.get_all(name) {
            if !text.is_empty() {
                text.extend_from_slice(b", ");
            }
            text.extend_from_slice(v.as_bytes());
        }
        if text.is_empty() {
            return None;
        }
        let dict: sfv::Dictionary = sfv::Parser::new(&text).parse().ok()?;
        // An empty field is ignored too (§2.1); one whose members are all unusable is not: it
        // is a valid field that says nothing we can use, and the others stay ignored.
        if dict.is_empty() {
            return None;
        }
        let mut out = Self::default();
        for (key, member) in dict {
            let sfv::ListEntry::Item(item) = member else { continue };
            let name = key.as_str();
            let value = match item.bare_item {
                sfv::BareItem::Integer(n) if i64::from(n) >= 0 => Some(i64::from(n).to_string()),
                _ if DELTA_SECONDS.contains(&name) => continue,
                sfv::BareItem::Boolean(true) => None,
                sfv::BareItem::String(s) => Some(s.as_str().to_owned()),
                sfv::BareItem::Token(t) => Some(t.as_str().to_owned()),
                _ => continue,
            };
            out.items.push((name.to_owned(), value));
        }
        Some(out)
    }

    /// Parses one field value.
    #[cfg(test)]
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        out.parse_into(text, false);
        out
    }

    /// Parses one list. With `targeted` (Surrogate-Control), a directive may end in
    /// `;device` (Edge Architecture Specification 1.0): the suffix is removed and the directive
    /// applies to us. Surrogate-Control reaches only the surrogates of the site's own CDN, so
    /// every device token names one of ours, as Fastly and Akamai read it.
    fn parse_into(&mut self, text: &str, targeted: bool) {
        for mut part in split_list(text) {
            if targeted
                && let Some((directive, device)) = part.rsplit_once(';')
                && !device.is_empty()
                && device.trim().bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                part = directive;
            }
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (part.trim(), None),
            };
            // A name that is not a token (RFC 9110 §5.6.2) is junk, e.g. from an unclosed quote.
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                continue;
            }
            self.items.push((name.to_ascii_lowercase(), value));
        }
    }

    /// Whether the directive is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.items.iter().any(|(n, _)| n == name)
    }

    /// Whether no directive is present at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A delta-seconds directive such as `max-age`.
    pub fn seconds(&self, name: &str) -> Seconds {
        let mut found: Option<Option<u64>> = None;
        for (n, v) in &self.items {
            if n != name {
                continue;
            }
            let parsed = v.as_deref().and_then(parse_delta);
            match found {
                None => found = Some(parsed),
                Some(prev) if prev == parsed => {}
                Some(_) => return Seconds::Invalid,
            }
        }
        match found {
            None => Seconds::Absent,
            Some(None) => Seconds::Invalid,
            Some(Some(n)) => Seconds::Value(n),
        }
    }

    /// `max-stale` may come without a value, meaning "any staleness".
    pub fn max_stale(&self) -> Option<u64> {
        if !self.has("max-stale") {
            return None;
        }
        match self.seconds("max-stale") {
            Seconds::Value(n) => Some(n),
            _ => Some(u64::MAX),
        }
    }

    /// The field-name list of a qualified `private="..."` / `no-cache="..."`, if any.
    #[cfg(test)]
    pub fn value(&self, name: &str) -> Option<&str> {
        self.items.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }
}

/// Directives whose value is delta-seconds (RFC 9111 §5.2.2, RFC 5861).
const DELTA_SECONDS: [&str; 4] = ["max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"];

/// delta-seconds: digits only; values too large saturate (RFC 9111 §1.2.2).
fn parse_delta(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(u64::from(u32::MAX)).min(u64::from(u32::MAX)))
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
}

/// Splits a comma-separated list, keeping commas inside quoted strings.
fn split_list(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_table() {
        let cases: &[(&str, &str, Seconds)] = &[
            ("max-age=60", "max-age", Seconds::Value(60)),
            ("Max-Age=60", "max-age", Seconds::Value(60)),
            ("max-age=\"60\"", "max-age", Seconds::Value(60)),
            ("public, max-age=60, s-maxage=10", "s-maxage", Seconds::Value(10)),
            ("max-age=60, max-age=60", "max-age", Seconds::Value(60)),
            ("max-age=60, max-age=30", "max-age", Seconds::Invalid),
            ("max-age=abc", "max-age", Seconds::Invalid),
            ("max-age=-1", "max-age", Seconds::Invalid),
            ("max-age", "max-age", Seconds::Invalid),
            ("max-age=99999999999999999999", "max-age", Seconds::Value(u64::from(u32::MAX))),
            ("no-cache", "max-age", Seconds::Absent),
        ];
        for (text, name, want) in cases {
            assert_eq!(Directives::parse(text).seconds(name), *want, "{text}");
        }
    }

    fn cdn(values: &[&str]) -> Option<Directives> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&CDN_CACHE_CONTROL, http::HeaderValue::from_str(v).expect("test value"));
        }
        Directives::from_headers(&h, &CDN_CACHE_CONTROL)
    }

    /// CDN-Cache-Control is a structured dictionary: unparsable fields are ignored whole,
    /// members of the wrong type are dropped.
    #[test]
    fn cdn_cache_control_table() {
        type Case<'a> = (&'a [&'a str], Option<(Seconds, bool)>);
        let cases: &[Case<'_>] = &[
            // (max-age, has no-store); None = the field is ignored
            (&["max-age=60"], Some((Seconds::Value(60), false))),
            (&["max-age=60, no-store"], Some((Seconds::Value(60), true))),
            (&["max-age=60", "no-store"], Some((Seconds::Value(60), true))),
            (&["max-age=99999999999"], Some((Seconds::Value(u64::from(u32::MAX)), false))),
            (&["max-age=60, max-age=30"], Some((Seconds::Value(30), false))),
            (&["max-age=\"60\""], Some((Seconds::Absent, false))),
            (&["max-age=1.5"], Some((Seconds::Absent, false))),
            (&["max-age=-1"], Some((Seconds::Absent, false))),
            (&["max-age"], Some((Seconds::Absent, false))),
            (&["no-store=?0, max-age=5"], Some((Seconds::Value(5), false))),
            (&["max-age=(1 2)"], Some((Seconds::Absent, false))),
            (&["max-age=60;a=b"], Some((Seconds::Value(60), false))),
            (&["max-age=10000, &&&&&"], None),
            (&["MaX-aGe=60"], None),
            (&["max-age =60"], None),
            (&["max-age=1234567890123456"], None),
            (&[""], None),
            (&[], None),
        ];
        for (values, want) in cases {
            let got = cdn(values).map(|d| (d.seconds("max-age"), d.has("no-store")));
            assert_eq!(got, *want, "{values:?}");
        }
        let d = cdn(&["private=\"set-cookie\", no-cache"]).expect("valid");
        assert_eq!(d.value("private"), Some("set-cookie"));
        assert!(d.has("no-cache"));
    }

    #[test]
    fn quoted_commas_stay_in_values() {
        let d = Directives::parse("private=\"a, b\", max-age=5");
        assert_eq!(d.value("private"), Some("a, b"));
        assert_eq!(d.seconds("max-age"), Seconds::Value(5));
    }

    /// Regression: `max-age=60;edge` in Surrogate-Control was read as an invalid max-age, so
    /// the response counted as stale.
    #[test]
    fn surrogate_control_device_suffixes_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(&SURROGATE_CONTROL, http::HeaderValue::from_static("max-age=60;edge, no-store;abc"));
        let d = Directives::from_headers(&h, &SURROGATE_CONTROL).expect("present");
        assert_eq!(d.seconds("max-age"), Seconds::Value(60));
        assert!(d.has("no-store"));
        // Cache-Control has no such syntax: the value stays invalid there.
        h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=60;edge"));
        let cc = Directives::from_headers(&h, &http::header::CACHE_CONTROL).expect("present");
        assert_eq!(cc.seconds("max-age"), Seconds::Invalid);
    }

    #[test]
    fn max_stale_without_value_is_unbounded() {
        assert_eq!(Directives::parse("max-stale").max_stale(), Some(u64::MAX));
        assert_eq!(Directives::parse("max-stale=5").max_stale(), Some(5));
        assert_eq!(Directives::parse("no-cache").max_stale(), None);
    }

    proptest::proptest! {
        /// Any field value parses without panicking, and what comes out is well-formed: names
        /// are non-empty lowercase tokens.
        #[test]
        fn any_value_parses_to_clean_names(text in "\\PC{0,80}") {
            let d = Directives::parse(&text);
            for (name, _) in &d.items {
                proptest::prop_assert!(!name.is_empty());
                proptest::prop_assert_eq!(name.to_ascii_lowercase(), name.clone());
                proptest::prop_assert!(!name.contains([',', '"', ' ', '=', ';']));
            }
            let _ = d.seconds("max-age");
            let _ = d.max_stale();
        }

        /// Any CDN-Cache-Control value parses without panicking; when it is used, every
        /// delta-seconds directive it yields is a number.
        #[test]
        fn any_cdn_cache_control_parses(text in "[ -~]{0,60}") {
            if let Some(d) = cdn(&[&text]) {
                for name in DELTA_SECONDS {
                    proptest::prop_assert_ne!(d.seconds(name), Seconds::Invalid, "{}", text);
                }
            }
        }

        /// A list written by an origin reads back: every delta-seconds value, quoted or not,
        /// in any case, among other directives with quoted commas.
        #[test]
        fn written_lists_read_back(
            max_age in 0u64..=u64::from(u32::MAX),
            s_maxage in proptest::option::of(0u64..1_000_000),
            quoted in proptest::bool::ANY,
            upper in proptest::bool::ANY,
            private_fields in "[a-z-]{1,10}(, [a-z-]{1,10}){0,3}",
        ) {
            let name = if upper { "Max-Age" } else { "max-age" };
            let value = if quoted { format!("\"{max_age}\"") } else { max_age.to_string() };
            let mut text = format!("public, private=\"{private_fields}\", {name}={value}");
            if let Some(s) = s_maxage {
                text.push_str(&format!(" ,s-maxage={s}"));
            }
            let d = Directives::parse(&text);
            proptest::prop_assert_eq!(d.seconds("max-age"), Seconds::Value(max_age));
            proptest::prop_assert_eq!(d.value("private"), Some(private_fields.as_str()));
            proptest::prop_assert_eq!(
                d.seconds("s-maxage"),
                s_maxage.map_or(Seconds::Absent, Seconds::Value)
            );
        }
    }
}
