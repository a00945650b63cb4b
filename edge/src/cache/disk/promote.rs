//! Which objects read back from disk go into the memory tier: those read twice within a while.
//!
//! Promoting on every disk hit (as Traffic Server does) costs a memory-store insert, and, once
//! memory is full, an eviction, on every disk hit: when the working set is far larger than
//! memory, the memory tier churns without its hit ratio moving. nginx and Varnish never copy a
//! disk object into a memory tier of their own (the page cache is their memory tier). Between
//! the two, an object is promoted on its second disk read within a window, the "doorkeeper" of
//! TinyLFU: an object that comes back soon is hot and is kept in memory; one that comes back
//! only after memory would have evicted it anyway is served from disk again (and from the page
//! cache, which holds it). Hit ratio is not at stake: a disk hit is a hit.
//!
//! The window is a direct-mapped table of recently read hashes, as many slots as the memory
//! tier holds small objects (a power of two between [`MIN_SLOTS`] and [`MAX_SLOTS`]): a hash
//! stays until another read lands on its slot, so roughly as long as the memory tier would keep
//! an object that arrived meanwhile. Fixed memory (8 bytes a slot), no lock: two racing reads
//! of one slot at worst promote an object once more or once less.

use std::sync::atomic::{AtomicU64, Ordering};

/// The memory-tier bytes per slot: about what a 1 KiB object weighs in memory (`entry.rs`).
const BYTES_PER_SLOT: u64 = 2 << 10;
/// The smallest table.
pub const MIN_SLOTS: usize = 1 << 10;
/// The largest table (8 MiB of slots).
pub const MAX_SLOTS: usize = 1 << 20;

/// The doorkeeper: remembers the hashes of objects read from disk lately.
#[derive(Debug)]
pub struct Doorkeeper {
    slots: Box<[AtomicU64]>,
}

impl Doorkeeper {
    /// A window sized for a memory tier of `memory` bytes.
    pub fn for_memory(memory: u64) -> Self {
        let want = usize::try_from(memory / BYTES_PER_SLOT).unwrap_or(MAX_SLOTS);
        let n = want.clamp(MIN_SLOTS, MAX_SLOTS).next_power_of_two().min(MAX_SLOTS);
        Self { slots: (0..n).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Whether the object hashed `h` was read from disk lately: true (and forgotten, so that a
    /// later eviction starts it over) on its second read within the window; otherwise the read
    /// is remembered and the answer is false.
    pub fn admit(&self, h: u64) -> bool {
        // Zero marks an empty slot; the low bit is lost to no harm (the index picks the slot).
        let tag = h | 1;
        let slot = &self.slots[(h >> 32) as usize & (self.slots.len() - 1)];
        if slot.load(Ordering::Relaxed) == tag {
            slot.store(0, Ordering::Relaxed);
            true
        } else {
            slot.store(tag, Ordering::Relaxed);
            false
        }
    }

    /// How many hashes the window holds at most.
    #[cfg(test)]
    pub fn window(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_window_follows_the_memory_tier_within_bounds() {
        assert_eq!(Doorkeeper::for_memory(0).window(), MIN_SLOTS);
        assert_eq!(Doorkeeper::for_memory(2 << 20).window(), 1 << 10);
        assert_eq!(Doorkeeper::for_memory(18 << 20).window(), 1 << 14);
        assert_eq!(Doorkeeper::for_memory(u64::MAX).window(), MAX_SLOTS);
    }

    /// The second read promotes, the first and the third (after the promotion) do not.
    #[test]
    fn the_second_read_within_the_window_promotes() {
        let d = Doorkeeper::for_memory(0);
        assert!(!d.admit(42 << 32));
        assert!(d.admit(42 << 32));
        assert!(!d.admit(42 << 32));
    }

    /// A read of another object on the same slot pushes the first out of the window.
    #[test]
    fn a_colliding_read_ends_the_window() {
        let d = Doorkeeper::for_memory(0);
        let (a, b) = (7 << 32, (7 + d.window() as u64) << 32);
        assert!(!d.admit(a));
        assert!(!d.admit(b));
        assert!(!d.admit(a));
        assert!(d.admit(a));
    }

    proptest! {
        /// Whatever was read before, an object read twice in a row is promoted on the second
        /// read, and never on a read right after its promotion.
        #[test]
        fn twice_in_a_row_always_promotes(before in proptest::collection::vec(any::<u64>(), 0..200), h: u64) {
            let d = Doorkeeper::for_memory(4 << 20);
            for x in before {
                d.admit(x);
            }
            d.admit(h);
            prop_assert!(d.admit(h));
            prop_assert!(!d.admit(h));
        }
    }
}
