//! What a purge names: the body shared by the admin API and the control plane's log entries
//! (see `docs/PROTOCOL.md`, "Purge body").

pub use stratus_config::purge::{ObjectRef, PurgeRequest};

/// What a purge names, resolved against the edge's sites (objects become site paths, file
/// queries are normalized by the host's key rules). Unparseable entries are skipped.
pub(crate) fn targets(
    purge: &PurgeRequest,
    router: &crate::proxy::route::Router,
) -> Vec<crate::cache::store::Target> {
    use crate::cache::store::Target;
    let mut out = Vec::new();
    for f in &purge.files {
        if let Some((host, path, query)) = split_url(f) {
            let query = query.and_then(|q| {
                let rules = host
                    .as_deref()
                    .and_then(|h| router.route(h))
                    .map(|s| s.cfg.key.clone())
                    .unwrap_or_default();
                crate::cache::key::normalize_query(q, &rules)
            });
            out.push(Target::Url { host, path, query });
        }
    }
    for p in &purge.prefixes {
        if let Some((host, prefix, _)) = split_url(p) {
            out.push(Target::Prefix { host, prefix });
        }
    }
    out.extend(purge.tags.iter().map(|t| Target::Tag(t.clone())));
    out.extend(purge.hosts.iter().map(|h| Target::Host(crate::cache::key::purge_host(h))));
    for o in &purge.objects {
        for (host, path) in site_paths(o, router) {
            out.push(Target::Url { host, path, query: None });
        }
    }
    out
}

/// The (host, path) pairs under which sites in front of `object`'s bucket serve it; a `None`
/// host means every host (the site is the catch-all `"*"`).
pub(crate) fn site_paths(
    object: &ObjectRef,
    router: &crate::proxy::route::Router,
) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let full = format!("/{}/{}", object.bucket, object.key.trim_start_matches('/'));
    for site in router.sites() {
        let mut path = None;
        for origin in &site.cfg.origins {
            let u = origin.url();
            let prefix = u.path().trim_end_matches('/');
            if !prefix.is_empty() {
                if let Some(rest) = full.strip_prefix(prefix).filter(|r| r.starts_with('/')) {
                    path = Some(rest.to_owned());
                }
            } else if u.host_str().and_then(|h| h.split('.').next()) == Some(object.bucket.as_str()) {
                path = Some(format!("/{}", object.key.trim_start_matches('/')));
            }
        }
        let Some(path) = path else { continue };
        for h in &site.cfg.hosts {
            let host = (h != "*").then(|| crate::cache::key::purge_host(h));
            out.push((host, path.clone()));
        }
    }
    out
}

/// `http://host:port/path?query`, `host/path` or `/path` → (host, path, query).
fn split_url(s: &str) -> Option<(Option<String>, String, Option<&str>)> {
    let s = s.trim();
    let s = s.split('#').next().unwrap_or(s);
    let rest =
        s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")).or_else(|| s.strip_prefix("//"));
    let (host, target) = match rest {
        Some(r) => match r.find('/') {
            Some(i) => (Some(&r[..i]), &r[i..]),
            None => (Some(r), "/"),
        },
        None if s.starts_with('/') => (None, s),
        None => match s.find('/') {
            Some(i) => (Some(&s[..i]), &s[i..]),
            None => (Some(s), "/"),
        },
    };
    let host = host.map(crate::cache::key::purge_host).filter(|h| !h.is_empty());
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Some((host, path.to_owned(), query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_map_to_site_paths() {
        let site = |hosts: &[&str], origin: &str| {
            let mut s = stratus_config::edge::Site::catch_all(origin.parse().expect("url"));
            s.hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
            s
        };
        let router = crate::proxy::route::Router::new(
            &[
                site(&["cdn.example"], "http://127.0.0.1:9000/demo"),
                site(&["img.example"], "http://photos.s3.example"),
                site(&["*"], "http://127.0.0.1:9000/demo/sub"),
            ],
            &crate::upstream::Outbound::new(&Default::default(), Default::default()),
        )
        .expect("router");
        let paths = |bucket: &str, key: &str| {
            site_paths(&ObjectRef { bucket: bucket.into(), key: key.into() }, &router)
        };
        assert_eq!(
            paths("demo", "sub/a.css"),
            vec![(Some("cdn.example".to_owned()), "/sub/a.css".to_owned()), (None, "/a.css".to_owned())]
        );
        assert_eq!(paths("photos", "x.png"), vec![(Some("img.example".to_owned()), "/x.png".to_owned())]);
        assert!(paths("other", "x").is_empty());
    }

    #[test]
    fn urls_split_like_the_protocol_says() {
        let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            ("http://cdn.example/img/a.png", Some("cdn.example"), "/img/a.png", None),
            ("https://CDN.example:8443/a?x=1", Some("cdn.example"), "/a", Some("x=1")),
            ("/img/a.png", None, "/img/a.png", None),
            ("cdn.example/img/", Some("cdn.example"), "/img/", None),
            ("cdn.example", Some("cdn.example"), "/", None),
        ];
        for (input, host, path, query) in cases {
            let (h, p, q) = split_url(input).unwrap();
            assert_eq!((h.as_deref(), p.as_str(), q), (*host, *path, *query), "{input}");
        }
    }
}
