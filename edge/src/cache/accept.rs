//! Normal forms of `Accept-Language` and `Accept-Encoding` for `Vary` secondary keys, so that
//! values which ask for the same thing select the same variant: `en-US,fr;q=0.5`,
//! `fr;q=0.50, EN-us` and `en-us ,  fr;q=.5`-style spellings all become `en-us, fr;q=0.5`.
//!
//! The normal form lowercases each member (language tags and content codings are
//! case-insensitive, RFC 9110 §8.4.1, §8.5.1), drops `q=1` (the default), writes q-values
//! without trailing zeros, removes repeated members (the first wins) and other parameters, and
//! sorts by q-value, highest first, then by name. Sorting equal q-values by name is the
//! deliberate part: RFC 9110 §12.4.2 gives order no meaning among equal weights, so
//! `en, fr` and `fr, en` share a variant, as Fastly's and Varnish's `Accept-Language`
//! normalisers also treat them. The origin still gets the client's own value.
//!
//! A member that cannot be read (an empty name, a q-value that is not a number between 0
//! and 1) is kept lowercased as it came, so junk never merges with a valid value.

/// Whether the field `name` is normalised here.
pub fn normalised(name: &str) -> bool {
    name.eq_ignore_ascii_case("accept-language") || name.eq_ignore_ascii_case("accept-encoding")
}

/// The normal form of the members of an `Accept-Language` or `Accept-Encoding` field (all
/// field lines, already split at commas), joined with `", "`.
pub fn normal_form<'a>(members: impl Iterator<Item = &'a str>) -> String {
    // (weight in thousandths, text); junk sorts last under its own text.
    let mut items: Vec<(u16, String)> = Vec::new();
    for member in members {
        let member = member.trim();
        if member.is_empty() {
            continue;
        }
        let item = parse(member).unwrap_or_else(|| (0, junk(member)));
        if !items.iter().any(|(_, text)| same_name(text, &item.1)) {
            items.push(item);
        }
    }
    items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = String::new();
    for (_, text) in items {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&text);
    }
    out
}

/// `name;q=…` → (weight, normal text); `None` when it does not parse.
fn parse(member: &str) -> Option<(u16, String)> {
    let mut parts = member.split(';');
    let name = parts.next()?.trim().to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-*_.+!#$%&'^`|~".contains(&b))
    {
        return None;
    }
    let mut weight = 1000;
    for param in parts {
        let (key, value) = param.split_once('=')?;
        if key.trim().eq_ignore_ascii_case("q") {
            weight = qvalue(value.trim())?;
        }
    }
    let text = match weight {
        1000 => name,
        w => format!("{name};q={}", thousandths(w)),
    };
    Some((weight, text))
}

/// RFC 9110 §12.4.2 `qvalue`: `0[.ddd]` or `1[.000]`, in thousandths.
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// `500` → `0.5`, `0` → `0`.
fn thousandths(w: u16) -> String {
    let text = format!("0.{w:03}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() { "0".to_owned() } else { text.to_owned() }
}

/// A member that does not parse, lowercased and without inner whitespace runs.
fn junk(member: &str) -> String {
    member.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase()
}

/// Whether two normal items name the same language or coding.
fn same_name(a: &str, b: &str) -> bool {
    let name = |t: &str| t.split(';').next().unwrap_or_default().to_owned();
    name(a) == name(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: &str) {
        assert_eq!(normal_form(input.split(',')), want, "{input}");
    }

    #[test]
    fn normal_forms() {
        check("en", "en");
        check("EN-us", "en-us");
        check("en-US,fr;q=0.5", "en-us, fr;q=0.5");
        check("fr;q=0.50 , en-US", "en-us, fr;q=0.5");
        check("fr; q=0.5, en-us;q=1.0", "en-us, fr;q=0.5");
        check("fr, en", "en, fr");
        check("en, fr", "en, fr");
        check("de;q=0.7, fr;q=0.9, en", "en, fr;q=0.9, de;q=0.7");
        check("gzip, br", "br, gzip");
        check("br;q=1, gzip;q=1.000, identity;q=0", "br, gzip, identity;q=0");
        check("gzip, gzip;q=0.1", "gzip");
        check("*;q=0.1, en", "en, *;q=0.1");
        check("", "");
        check(" , ,", "");
        // Junk stays apart from valid values, and from other junk.
        check("en;q=2", "en;q=2");
        check("en;q=abc", "en;q=abc");
        check("en;q=0.5555", "en;q=0.5555");
        assert_ne!(normal_form("en;q=2".split(',')), normal_form("en".split(',')));
    }

    proptest::proptest! {
        /// The normal form is a fixed point and ignores order, case and whitespace.
        #[test]
        fn order_case_and_space_do_not_matter(
            items in proptest::collection::vec(("[a-z]{1,3}(-[a-z]{2})?", proptest::option::of(0u16..=1000)), 0..6),
            seed in proptest::num::u64::ANY,
        ) {
            let render = |items: &[(String, Option<u16>)], upper: bool, pad: &str| {
                items.iter().map(|(n, q)| {
                    let n = if upper { n.to_ascii_uppercase() } else { n.clone() };
                    match q { Some(q) => format!("{pad}{n};q={}.{:03}{pad}", q / 1000, q % 1000), None => format!("{pad}{n}") }
                }).collect::<Vec<_>>().join(",")
            };
            let one = render(&items, false, "");
            let mut shuffled = items.clone();
            // Deterministic shuffle; names repeat rarely enough that order among duplicates
            // (first wins) only matters when the generator repeats a name.
            let n = shuffled.len().max(1);
            shuffled.rotate_left((seed as usize) % n);
            let names: std::collections::HashSet<_> = items.iter().map(|(n, _)| n.clone()).collect();
            let other = render(&shuffled, true, "  ");
            let a = normal_form(one.split(','));
            proptest::prop_assert_eq!(normal_form(a.split(',')), a.clone());
            if names.len() == items.len() {
                proptest::prop_assert_eq!(normal_form(other.split(',')), a);
            }
        }
    }
}
