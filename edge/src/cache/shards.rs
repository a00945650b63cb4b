//! How a `quick_cache` map of the memory tier or of the disk index is laid out: its shards and
//! the share of each kept for hot items.
//!
//! A shard is a fixed share of the capacity, with its own lock and clock, and quick_cache
//! refuses an item heavier than its shard's hot part (the memory tier keeps 97 % hot, the disk
//! index 50 %). So a map gets as many shards as keep each at least twice the largest item it
//! may be given. Where even one shard is not that large, the disk index's hot part grows until
//! its largest file fits ([`layout`]: `max_object_size` may be most of the disk); the memory
//! tier keeps its share and does not hold an object over 97 % of itself. More shards than that
//! only split the clock; two runtime threads and one writer need no more than [`MAX`].

/// At most this many shards.
const MAX: u64 = 8;

/// Shards for `capacity` bytes of items of at most `largest` bytes: a power of two, each
/// shard at least twice `largest`, between 1 and [`MAX`].
pub fn for_largest(capacity: u64, largest: u64) -> usize {
    let fit = capacity / largest.saturating_mul(2).max(1);
    let n = if fit == 0 { 1 } else { 1 << fit.ilog2() };
    usize::try_from(n.min(MAX)).unwrap_or(1)
}

/// Shards (as [`for_largest`]) and the hot share for `capacity` bytes of items of at most
/// `largest` bytes, where `hot` is the share wanted: raised, up to all of a shard, as far as
/// the largest item needs (with 1 % to spare for rounding).
pub fn layout(capacity: u64, largest: u64, hot: f64) -> (usize, f64) {
    let n = for_largest(capacity, largest);
    let shard = (capacity / n as u64).max(1);
    let needed = largest as f64 / shard as f64 * 1.01;
    (n, hot.max(needed).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_holds_twice_the_largest_item() {
        assert_eq!(for_largest(4 << 30, 2 << 30), 1);
        assert_eq!(for_largest(4 << 30, 1 << 30), 2);
        assert_eq!(for_largest(256 << 20, 64 << 20), 2);
        assert_eq!(for_largest(10 << 30, 64 << 20), 8);
        assert_eq!(for_largest(1 << 20, 4 << 20), 1);
        assert_eq!(for_largest(100, 0), 8);
        for (capacity, largest) in [(3u64 << 30, 100u64 << 20), (1 << 20, 1 << 20), (7 << 20, 1 << 10)] {
            let n = for_largest(capacity, largest) as u64;
            assert!(n == 1 || capacity / n >= 2 * largest, "{capacity} {largest} {n}");
        }
    }

    /// The hot part of a shard always holds the largest item, and is the share wanted when
    /// a shard is twice the largest item or more.
    #[test]
    fn the_hot_part_holds_the_largest_item() {
        for (capacity, largest) in
            [(4u64 << 30, 3u64 << 30), (4 << 30, 2 << 30), (1 << 20, 1 << 20), (10 << 30, 64 << 20)]
        {
            for want in [0.5, 0.97] {
                let (n, hot) = layout(capacity, largest, want);
                assert!((capacity / n as u64) as f64 * hot >= largest as f64, "{capacity} {largest} {want}");
                assert!((want..=1.0).contains(&hot));
            }
        }
        assert_eq!(layout(10 << 30, 64 << 20, 0.97), (8, 0.97));
        assert_eq!(layout(4 << 30, 1 << 30, 0.97), (2, 0.97));
    }
}
