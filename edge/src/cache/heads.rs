//! Ready-made header maps for the entries hit most, kept per thread.
//!
//! An entry keeps its fields as text (`fields.rs`), which keeps a small object small but makes
//! every hit parse the text, check each value and hash each name into a new `HeaderMap`: the
//! largest cost of a hit that is ours (`docs/performance.md`, "Instructions per hit").
//! Cloning a finished map costs a fifth of that (two allocations, and a copy and a
//! reference-count increment per field). So each thread keeps a small table of finished maps
//! ([`SLOTS`] of them, about 2 KiB each) for the entries it hits repeatedly, as nginx keeps
//! its hot state per worker. Entries themselves stay as small as they were: the table's
//! memory is bounded per thread, not per entry.
//!
//! A slot is found from the entry's address and holds a `Weak` to it. While the `Weak` lives
//! the entry's allocation cannot be reused, so an entry at the same address *is* the entry
//! the map was made from; its fields never change (a revalidation stores a new entry). The
//! map's values are a copy of the entry's header text, not slices of its buffer, so an
//! evicted entry's body is not kept alive by the table. An entry gets a slot from its
//! second hit on ([`HOT`]), and a slot held by a live entry that keeps being hit is given
//! up only after [`CREDIT`] other entries asked for it in between, so two hot entries that
//! share a slot do not rebuild it on every hit.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderValue};

use crate::cache::entry::Entry;
use crate::cache::fields::Fields;

/// Slots per thread.
const SLOTS: usize = 64;
/// Hits an entry must have had before it gets a slot: most entries are never hit twice.
const HOT: u16 = 2;
/// How many requests for other entries a slot's entry outlasts; each hit on it earns one back.
const CREDIT: u8 = 3;
/// Fields a response adds to the stored ones (Age, Content-Length, Cache-Status, Via), and
/// room for two of those some responses add (`Vary` on a compressible one, `Accept-Ranges`
/// and `Content-Range` on a range).
pub const ADDED: usize = 6;
/// The `Cache-Status` field's name (RFC 9211). Defined here, in the cache, because a hit's
/// head carries it; the proxy, which writes its value, uses this one.
pub const CACHE_STATUS: header::HeaderName = header::HeaderName::from_static("cache-status");

struct Slot {
    entry: Weak<Entry>,
    map: HeaderMap,
    credit: u8,
}

thread_local! {
    static SLOTS_OF_THREAD: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// The response headers `e` stores, with `Age`, `Content-Length`, `Cache-Status` and `Via`
/// present as placeholders (to be set by the caller; [`with_placeholders`]).
pub fn headers(e: &Arc<Entry>) -> HeaderMap {
    if e.hits() < HOT {
        return fresh(e);
    }
    SLOTS_OF_THREAD.with(|slots| match slots.try_borrow_mut() {
        Ok(mut slots) => lookup(&mut slots, e),
        Err(_) => fresh(e),
    })
}

fn lookup(slots: &mut Vec<Option<Slot>>, e: &Arc<Entry>) -> HeaderMap {
    if slots.is_empty() {
        slots.resize_with(SLOTS, || None);
    }
    let Some(slot) = slots.get_mut(index(e)) else { return fresh(e) };
    match slot {
        Some(s) if std::ptr::eq(s.entry.as_ptr(), Arc::as_ptr(e)) => {
            s.credit = (s.credit + 1).min(CREDIT);
            return s.map.clone();
        }
        Some(s) if s.credit > 0 && s.entry.strong_count() > 0 => {
            s.credit -= 1;
            return fresh(e);
        }
        _ => {}
    }
    let map = template(e);
    let out = map.clone();
    *slot = Some(Slot { entry: Arc::downgrade(e), map, credit: 1 });
    out
}

/// The slot of an entry: its address, hashed (allocations are aligned, so the low bits alone
/// would leave most slots unused).
fn index(e: &Arc<Entry>) -> usize {
    let addr = Arc::as_ptr(e) as usize;
    (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - SLOTS.trailing_zeros())) % SLOTS
}

/// A map built from the entry's own buffer, for this response only.
fn fresh(e: &Entry) -> HeaderMap {
    with_placeholders(e.headers().to_map(ADDED))
}

/// A map for the table: over a copy of the header text, so that it holds no part of the
/// entry's buffer.
fn template(e: &Entry) -> HeaderMap {
    let fields = e.headers();
    let text = Bytes::copy_from_slice(fields.text());
    with_placeholders(Fields::new(&text, 0..text.len()).to_map(ADDED))
}

/// `Age` and `Content-Length` are set on every response from an entry, `Cache-Status` and
/// `Via` on every response; present in the map, setting them replaces a value instead of
/// adding a field, which would grow the clone (a clone has no spare room: its first new
/// field reallocated the map's entries on every hit, about 400 instructions). The
/// `Cache-Status` and `Via` placeholders are empty, which the pipeline reads as absent: an
/// entry never stores an upstream `Cache-Status` (`proxy/fill.rs`), and our `Via` replaces
/// an empty one instead of following it (`proxy/headers.rs`, `append_via`).
fn with_placeholders(mut map: HeaderMap) -> HeaderMap {
    for (name, placeholder) in
        [(header::AGE, "0"), (header::CONTENT_LENGTH, "0"), (CACHE_STATUS, ""), (header::VIA, "")]
    {
        map.entry(name).or_insert(HeaderValue::from_static(placeholder));
    }
    map
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bytes::Bytes;
    use http::{HeaderName, StatusCode};

    use super::*;
    use crate::cache::entry::{Exchange, StoredHead};
    use crate::cache::freshness::Policy;
    use crate::cache::key::CacheKey;

    fn entry(tag: &str) -> Arc<Entry> {
        let mut h = HeaderMap::new();
        h.append(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        h.append(HeaderName::from_static("x-which"), HeaderValue::from_str(tag).unwrap());
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        let head = StoredHead {
            status: StatusCode::OK,
            headers: h,
            targeted: HeaderMap::new(),
            tags: Vec::new(),
            policy: Policy::fresh_for(std::time::Duration::from_secs(60)),
        };
        let key = CacheKey::new(
            "h",
            &http::Uri::from_static("/p"),
            &stratus_config::edge::KeyRules::default(),
            &HeaderMap::new(),
        );
        Arc::new(Entry::new(head, Bytes::from_static(b"body"), key, &Exchange::now(SystemTime::now())))
    }

    fn which(map: &HeaderMap) -> &str {
        map.get("x-which").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Whatever the table holds, every entry gets exactly its own fields, in order, with the
    /// four fields every response sets.
    #[test]
    fn every_entry_gets_its_own_fields_whatever_the_table_holds() {
        // More live entries than slots, so that they share slots and take them from each other.
        let entries: Vec<Arc<Entry>> = (0..SLOTS * 3).map(|i| entry(&format!("e{i}"))).collect();
        for round in 0..6 {
            for (i, e) in entries.iter().enumerate() {
                e.hit();
                let map = headers(e);
                assert_eq!(which(&map), format!("e{i}"), "round {round}");
                let names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
                assert_eq!(
                    names,
                    [
                        "cache-control",
                        "x-which",
                        "set-cookie",
                        "age",
                        "content-length",
                        "cache-status",
                        "via"
                    ]
                );
                assert_eq!(map.get_all(header::SET_COOKIE).iter().count(), 2);
                let mut without = map.clone();
                for name in [header::AGE, header::CONTENT_LENGTH, CACHE_STATUS, header::VIA] {
                    without.remove(name);
                }
                assert_eq!(without, e.headers().to_map(0));
            }
        }
    }

    /// A slot whose entry was dropped is never served to a new entry at the same address,
    /// and does not keep the dropped entry's buffer alive.
    #[test]
    fn a_dropped_entry_never_answers_for_another() {
        for i in 0..200 {
            let e = entry(&format!("n{i}"));
            e.hit();
            e.hit();
            let data = e.body();
            assert_eq!(which(&headers(&e)), format!("n{i}"));
            assert_eq!(which(&headers(&e)), format!("n{i}"), "from the table");
            drop(e);
            // Only this handle is left on the entry's buffer: the table holds a copy of the text.
            assert!(data.is_unique(), "the table pins an evicted entry's buffer");
        }
    }
}
