//! How many shards a `quick_cache` map of the memory tier or of the disk index gets.
//!
//! A shard is a fixed share of the capacity, with its own lock and clock, and quick_cache
//! refuses an item heavier than its shard's hot part: the memory tier's share is 97 %, the
//! disk index's 50 %, so a shard at least twice the largest item keeps every item either may
//! be given. More shards than that only split the clock; two runtime threads and one writer
//! need no more than [`MAX`].

/// At most this many shards.
const MAX: u64 = 8;

/// Shards for `capacity` bytes of items of at most `largest` bytes: a power of two, each
/// shard at least twice `largest`, between 1 and [`MAX`].
pub fn for_largest(capacity: u64, largest: u64) -> usize {
    let fit = capacity / largest.saturating_mul(2).max(1);
    let n = if fit == 0 { 1 } else { 1 << fit.ilog2() };
    usize::try_from(n.min(MAX)).unwrap_or(1)
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
}
