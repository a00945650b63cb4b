//! Session tickets sealed with one AES-256-GCM pass, under keys that rotate.
//!
//! rustls' own ticketer for aws-lc-rs encrypts a ticket with AES-256-CBC and authenticates it
//! with a separate HMAC-SHA256 (RFC 5077's construction), building the HMAC input in a second
//! buffer: about 21,000 instructions per resumed handshake, 2 % of it (`docs/performance.md`,
//! TLS). One AEAD pass does both jobs. The keys are handled as rustls does: a new random key
//! every [`ROTATE`], the previous one still accepted for one more period, so a ticket is good for
//! at most two periods (the lifetime announced to clients); a key older than that is dropped
//! even when no ticket was made for a while. A ticket is
//!
//! ```text
//! key name (16 random bytes, the AAD) ‖ nonce (12 random bytes) ‖ AES-256-GCM(state) ‖ tag (16)
//! ```
//!
//! Random nonces are safe for 2³² tickets per key (NIST SP 800-38D §8.3); one key seals six
//! hours of tickets, 200,000 a second before that bound is reached. Forward secrecy of the
//! sessions is TLS 1.3's ECDHE, which resumption keeps running; the ticket key only protects
//! the resumption secret, as with any ticketer.

use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// How long one key seals new tickets.
pub const ROTATE: Duration = Duration::from_secs(6 * 60 * 60);

const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;
const HEAD_LEN: usize = NAME_LEN + NONCE_LEN;

struct Key {
    name: [u8; NAME_LEN],
    aead: RandomizedNonceKey,
}

impl Key {
    fn generate() -> Option<Self> {
        let rng = SystemRandom::new();
        let mut name = [0; NAME_LEN];
        let mut secret = [0; 32];
        rng.fill(&mut name).ok()?;
        rng.fill(&mut secret).ok()?;
        let aead = RandomizedNonceKey::new(&AES_256_GCM, &secret).ok()?;
        Some(Self { name, aead })
    }
}

struct Keys {
    current: Key,
    previous: Option<Key>,
    /// Unix seconds at which `current` stops sealing.
    rotate_at: u64,
}

/// A [`ProducesTickets`] over AES-256-GCM with rotating keys.
pub struct Ticketer {
    keys: RwLock<Keys>,
    period: u64,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticketer").field("period", &self.period).finish_non_exhaustive()
    }
}

impl Ticketer {
    /// A ticketer with a fresh random key; `None` when the system has no randomness.
    pub fn new() -> Option<Self> {
        Self::starting(ROTATE.as_secs(), unix_now())
    }

    fn starting(period: u64, now: u64) -> Option<Self> {
        let keys = Keys { current: Key::generate()?, previous: None, rotate_at: now.saturating_add(period) };
        Some(Self { keys: RwLock::new(keys), period })
    }

    /// Rotates the keys if `now` has reached the rotation time.
    fn roll(&self, now: u64) {
        if now < self.keys.read().unwrap_or_else(PoisonError::into_inner).rotate_at {
            return;
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if now < keys.rotate_at {
            return; // another thread rotated meanwhile
        }
        // Without randomness the current key goes on sealing; the next ticket tries again.
        let Some(next) = Key::generate() else { return };
        let stale = now >= keys.rotate_at.saturating_add(self.period);
        let old = std::mem::replace(&mut keys.current, next);
        // The old key has sealed tickets for at most one period up to now, unless nothing
        // asked for a ticket for a whole period: then its tickets are past their lifetime.
        keys.previous = (!stale).then_some(old);
        keys.rotate_at = now.saturating_add(self.period);
    }

    fn seal(&self, now: u64, plain: &[u8]) -> Option<Vec<u8>> {
        self.roll(now);
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key = &keys.current;
        let mut out = Vec::with_capacity(HEAD_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&[0; NONCE_LEN]);
        out.extend_from_slice(plain);
        let (nonce, tag) =
            key.aead.seal_in_place_separate_tag(Aad::from(&key.name), &mut out[HEAD_LEN..]).ok()?;
        out[NAME_LEN..HEAD_LEN].copy_from_slice(nonce.as_ref());
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn open(&self, now: u64, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < HEAD_LEN + TAG_LEN {
            return None;
        }
        self.roll(now);
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key =
            [Some(&keys.current), keys.previous.as_ref()].into_iter().flatten().find(|k| k.name == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let len = key.aead.open_in_place(nonce, Aad::from(&key.name), &mut buf).ok()?.len();
        buf.truncate(len);
        Some(buf)
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    /// Two periods: the one a ticket's key seals in, and the one it is still accepted in.
    fn lifetime(&self) -> u32 {
        u32::try_from(self.period.saturating_mul(2)).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(unix_now(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(unix_now(), cipher)
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: u64 = 1_800_000_000;
    const P: u64 = 100;

    fn ticketer() -> Ticketer {
        Ticketer::starting(P, T0).expect("randomness")
    }

    proptest! {
        #[test]
        fn what_is_sealed_opens_to_the_same_bytes(plain in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let t = ticketer();
            let ticket = t.seal(T0, &plain).expect("seal");
            prop_assert_eq!(ticket.len(), HEAD_LEN + plain.len() + TAG_LEN);
            prop_assert_eq!(t.open(T0 + 1, &ticket), Some(plain));
        }

        #[test]
        fn any_changed_bit_or_cut_is_refused(
            plain in proptest::collection::vec(any::<u8>(), 1..300),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            cut in any::<prop::sample::Index>(),
        ) {
            let t = ticketer();
            let ticket = t.seal(T0, &plain).expect("seal");
            let mut flipped = ticket.clone();
            flipped[at.index(ticket.len())] ^= 1 << bit;
            prop_assert_eq!(t.open(T0, &flipped), None);
            prop_assert_eq!(t.open(T0, &ticket[..cut.index(ticket.len())]), None);
        }

        #[test]
        fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert_eq!(ticketer().open(T0, &bytes), None);
        }
    }

    #[test]
    fn nonces_differ_between_tickets_of_one_state() {
        let t = ticketer();
        let (a, b) = (t.seal(T0, b"state").unwrap(), t.seal(T0, b"state").unwrap());
        assert_eq!(a[..NAME_LEN], b[..NAME_LEN]);
        assert_ne!(a[NAME_LEN..HEAD_LEN], b[NAME_LEN..HEAD_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn another_ticketers_tickets_are_refused() {
        let ticket = ticketer().seal(T0, b"state").unwrap();
        assert_eq!(ticketer().open(T0, &ticket), None);
    }

    /// A key seals for one period and is accepted for one more; then its tickets are refused.
    #[test]
    fn keys_rotate_and_old_tickets_expire() {
        let t = ticketer();
        let first = t.seal(T0, b"first").unwrap();
        assert_eq!(t.open(T0 + P - 1, &first).as_deref(), Some(&b"first"[..]));
        // Rotation: a new key seals, the first one still opens.
        let second = t.seal(T0 + P, b"second").unwrap();
        assert_ne!(first[..NAME_LEN], second[..NAME_LEN]);
        assert_eq!(t.open(T0 + P, &first).as_deref(), Some(&b"first"[..]));
        // Next rotation: the first key is gone, the second still opens.
        assert_eq!(t.open(T0 + 2 * P, &first), None);
        assert_eq!(t.open(T0 + 2 * P, &second).as_deref(), Some(&b"second"[..]));
        assert_eq!(t.lifetime(), 2 * 100);
    }

    /// After a quiet stretch longer than a period, the previous key is past its lifetime too.
    #[test]
    fn a_key_idle_past_its_lifetime_is_not_kept_as_previous() {
        let t = ticketer();
        let first = t.seal(T0, b"first").unwrap();
        assert_eq!(t.open(T0 + 2 * P, &first), None);
        let later = t.seal(T0 + 2 * P, b"later").unwrap();
        assert_eq!(t.open(T0 + 2 * P + 1, &later).as_deref(), Some(&b"later"[..]));
    }

    /// The ticketer works through rustls' trait, with the real clock.
    #[test]
    fn through_the_trait() {
        let t: std::sync::Arc<dyn ProducesTickets> = std::sync::Arc::new(Ticketer::new().unwrap());
        assert!(t.enabled());
        assert_eq!(u64::from(t.lifetime()), 2 * ROTATE.as_secs());
        let ticket = t.encrypt(b"session").unwrap();
        assert_eq!(t.decrypt(&ticket).as_deref(), Some(&b"session"[..]));
    }
}
