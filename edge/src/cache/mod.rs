//! The cache: what is stored (`store`, `entry`, `fields`; `heads`: ready-made header maps of hot entries, per thread), under which name (`key`, with `accept` for `Vary` on `Accept-*`), for how
//! long (`directives`, `freshness`), whether a stored response may answer a request (`reuse`),
//! how concurrent misses share one origin fetch (`coalesce`), how large objects are cut
//! into slices stored one by one (`slice`), how the cache maps are sharded (`shards`), and the
//! disk tier behind the memory store (`disk`).

pub(crate) mod accept;
pub(crate) mod coalesce;
pub(crate) mod directives;
pub(crate) mod disk;
pub(crate) mod entry;
pub(crate) mod fields;
pub(crate) mod freshness;
pub(crate) mod heads;
pub(crate) mod key;
pub(crate) mod reuse;
pub(crate) mod shards;
pub(crate) mod slice;
pub(crate) mod store;
