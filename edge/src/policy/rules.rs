//! Response header rules (`[[edge.sites.headers]]`): per path prefix, `remove`, then `set`,
//! then `add`, in the order the rules are written. No scripting: names and values are fixed
//! strings checked when the configuration is loaded.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use stratus_config::edge::HeaderRule;

#[derive(Debug)]
struct Rule {
    prefix: String,
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

/// A site's compiled header rules.
#[derive(Debug, Default)]
pub(super) struct Rules(Vec<Rule>);

impl Rules {
    /// Compiles the rules; names and values that do not parse were refused by the
    /// configuration's validation, so none is dropped here in practice.
    pub(super) fn new(rules: &[HeaderRule]) -> Self {
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .filter_map(|(n, v)| {
                    Some((HeaderName::from_bytes(n.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?))
                })
                .collect()
        };
        Self(
            rules
                .iter()
                .map(|r| Rule {
                    prefix: r.prefix.clone(),
                    remove: r
                        .remove
                        .iter()
                        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                        .collect(),
                    set: pairs(&r.set),
                    add: pairs(&r.add),
                })
                .collect(),
        )
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies every rule whose prefix `path` starts with.
    pub(super) fn apply(&self, path: &str, headers: &mut HeaderMap) {
        for rule in self.0.iter().filter(|r| path.starts_with(&r.prefix)) {
            for name in &rule.remove {
                headers.remove(name);
            }
            for (name, value) in &rule.set {
                headers.insert(name.clone(), value.clone());
            }
            for (name, value) in &rule.add {
                headers.append(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_by_prefix_in_order() {
        let map =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let rules = vec![
            HeaderRule {
                prefix: "/".into(),
                set: map(&[("x-frame-options", "DENY")]),
                remove: vec!["server".into()],
                ..HeaderRule::default()
            },
            HeaderRule {
                prefix: "/api/".into(),
                set: map(&[("access-control-allow-origin", "*")]),
                add: map(&[("vary", "Origin")]),
                ..HeaderRule::default()
            },
        ];
        let rules = Rules::new(&rules);
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("origin"));
        h.insert("vary", HeaderValue::from_static("Accept-Encoding"));
        h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        rules.apply("/api/x", &mut h);
        assert!(!h.contains_key("server"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h.get_all("vary").iter().count(), 2);
        let mut other = HeaderMap::new();
        rules.apply("/index.html", &mut other);
        assert!(!other.contains_key("access-control-allow-origin"));
        assert_eq!(other["x-frame-options"], "DENY");
    }
}
