//! The ban log: every purge the edge applied, kept in `bans.log` in the cache directory so that
//! no purged object comes back from disk after a restart (Varnish's bans, persisted).
//!
//! A purge is not searched for on disk (the disk index knows key hashes only, not hosts, paths
//! or tags); instead it is appended here, one JSON line fsync'd before the purge is reported
//! done, and an object read from disk is checked against the bans applied after it was stored:
//! a matching hard ban drops it, a matching soft ban marks it stale. The log is bounded: past
//! [`MAX_BANS`] the disk tier is emptied and the log starts over, and a log that does not
//! parse empties the disk tier too — serving a purged object is worse than a cold cache.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::entry::Entry;
use crate::cache::store::Target;

/// Bans kept before the disk tier is emptied instead.
pub const MAX_BANS: usize = 10_000;

/// One applied purge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Wall-clock milliseconds since the Unix epoch when it was applied.
    pub at: u64,
    /// Soft purges mark objects stale instead of removing them.
    pub soft: bool,
    /// What it names.
    pub what: What,
}

/// What a ban names: a resolved purge target, or everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum What {
    Url { host: Option<String>, path: String, query: Option<String> },
    Prefix { host: Option<String>, prefix: String },
    Host { host: String },
    Tag { tag: String },
    All,
}

impl From<&Target> for What {
    fn from(t: &Target) -> Self {
        match t.clone() {
            Target::Url { host, path, query } => Self::Url { host, path, query },
            Target::Prefix { host, prefix } => Self::Prefix { host, prefix },
            Target::Host(host) => Self::Host { host },
            Target::Tag(tag) => Self::Tag { tag },
        }
    }
}

impl What {
    /// Whether it names `e`, as `Store::purge` would.
    pub fn matches(&self, e: &Entry) -> bool {
        let k = &e.key;
        let host_is = |h: &Option<String>| h.as_deref().is_none_or(|h| h == k.host());
        match self {
            Self::Url { host, path, query } => {
                host_is(host) && k.path() == path && query.as_deref().is_none_or(|q| k.query() == Some(q))
            }
            Self::Prefix { host, prefix } => host_is(host) && k.path().starts_with(prefix.as_str()),
            Self::Host { host } => k.host() == host,
            Self::Tag { tag } => e.tags().any(|t| t == tag),
            Self::All => true,
        }
    }
}

/// What the bans say about an object read from disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Stale,
    Drop,
}

/// The bans in force and the log they are appended to.
#[derive(Debug)]
pub struct Bans {
    file: File,
    list: Vec<Ban>,
}

impl Bans {
    /// Opens (or creates) the log at `path`; the flag is false when a line did not parse: the
    /// caller must then empty the disk tier and [`Bans::reset`].
    pub fn open(path: &Path) -> io::Result<(Self, bool)> {
        let file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
        let mut list = Vec::new();
        let mut intact = true;
        for line in io::BufReader::new(&file).lines() {
            match serde_json::from_str::<Ban>(&line?) {
                Ok(b) => list.push(b),
                Err(_) => intact = false,
            }
        }
        Ok((Self { file, list }, intact))
    }

    /// Appends `ban` durably.
    pub fn add(&mut self, ban: Ban) -> io::Result<()> {
        let mut line = serde_json::to_vec(&ban).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.list.push(ban);
        Ok(())
    }

    /// Forgets every ban (the disk tier was emptied).
    pub fn reset(&mut self) -> io::Result<()> {
        self.list.clear();
        self.file.set_len(0)?;
        self.file.sync_data()
    }

    /// Bans held.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// What the bans applied at or after `stored_ms` say about `e`.
    pub fn verdict(&self, e: &Entry, stored_ms: u64) -> Verdict {
        let mut v = Verdict::Keep;
        for b in self.list.iter().filter(|b| b.at >= stored_ms) {
            if b.what.matches(e) {
                if !b.soft {
                    return Verdict::Drop;
                }
                v = Verdict::Stale;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::cache::entry::{Exchange, StoredHead};
    use crate::cache::freshness::Policy;
    use crate::cache::key::CacheKey;

    fn entry(host: &str, uri: &'static str, tags: &[&str]) -> Entry {
        let rules = stratus_config::edge::KeyRules::default();
        let key = CacheKey::new(host, &http::Uri::from_static(uri), &rules, &HeaderMap::new());
        let policy = Policy::fresh_for(Duration::from_secs(60));
        let head = StoredHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            targeted: HeaderMap::new(),
            tags: tags.iter().map(ToString::to_string).collect(),
            policy,
        };
        Entry::new(head, Bytes::from_static(b"x"), key, &Exchange::now(SystemTime::now()))
    }

    /// Bans match what `Store::purge` removes from memory.
    #[test]
    fn bans_match_like_purges() {
        let e = entry("a.test", "/img/cat.png?v=2", &["pets", "img"]);
        let url = |host: Option<&str>, path: &str, query: Option<&str>| What::Url {
            host: host.map(str::to_owned),
            path: path.to_owned(),
            query: query.map(str::to_owned),
        };
        let prefix = |host: Option<&str>, p: &str| What::Prefix {
            host: host.map(str::to_owned),
            prefix: p.to_owned(),
        };
        let cases = [
            (url(Some("a.test"), "/img/cat.png", None), true),
            (url(None, "/img/cat.png", None), true),
            (url(Some("a.test"), "/img/cat.png", Some("v=2")), true),
            (url(Some("a.test"), "/img/cat.png", Some("v=3")), false),
            (url(Some("b.test"), "/img/cat.png", None), false),
            (url(Some("a.test"), "/img/cat", None), false),
            (prefix(Some("a.test"), "/img/"), true),
            (prefix(None, "/img"), true),
            (prefix(Some("b.test"), "/img/"), false),
            (prefix(Some("a.test"), "/css/"), false),
            (What::Host { host: "a.test".into() }, true),
            (What::Host { host: "a.tes".into() }, false),
            (What::Tag { tag: "pets".into() }, true),
            (What::Tag { tag: "pet".into() }, false),
            (What::All, true),
        ];
        for (what, want) in cases {
            assert_eq!(what.matches(&e), want, "{what:?}");
        }
    }

    /// Only bans applied at or after an object arrived apply to it; a hard one wins.
    #[test]
    fn verdicts_follow_the_order_of_bans_and_arrival() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bans, _) = Bans::open(&dir.path().join("bans.log")).unwrap();
        let e = entry("a.test", "/p", &["t"]);
        bans.add(Ban { at: 100, soft: false, what: What::Tag { tag: "t".into() } }).unwrap();
        bans.add(Ban { at: 200, soft: true, what: What::Host { host: "a.test".into() } }).unwrap();
        assert_eq!(bans.verdict(&e, 50), Verdict::Drop);
        assert_eq!(bans.verdict(&e, 100), Verdict::Drop, "same millisecond: purged, to be safe");
        assert_eq!(bans.verdict(&e, 150), Verdict::Stale);
        assert_eq!(bans.verdict(&e, 201), Verdict::Keep);
        assert_eq!(bans.verdict(&entry("b.test", "/p", &[]), 0), Verdict::Keep);
    }

    #[test]
    fn bans_survive_reopening_and_a_garbled_log_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.log");
        let (mut bans, intact) = Bans::open(&path).unwrap();
        assert!(intact);
        let ban = Ban { at: 5, soft: true, what: What::Tag { tag: "t".into() } };
        bans.add(ban.clone()).unwrap();
        bans.add(Ban { at: 6, soft: false, what: What::All }).unwrap();
        drop(bans);
        let (bans, intact) = Bans::open(&path).unwrap();
        assert!(intact);
        assert_eq!(bans.list, vec![ban, Ban { at: 6, soft: false, what: What::All }]);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"at\":7,").unwrap();
        assert!(!Bans::open(&path).unwrap().1, "a torn line is noticed");
    }
}
