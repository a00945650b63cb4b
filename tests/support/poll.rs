//! Polling with a deadline instead of sleeps: one policy (every 20 ms, panic naming what was
//! awaited once the limit passes), for blocking tests ([`eventually`]) and async ones ([`until`]).

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const INTERVAL: Duration = Duration::from_millis(20);

/// The deadline of one wait; panics with what was awaited once it has passed.
struct Deadline<'a> {
    what: &'a str,
    limit: Duration,
    at: Instant,
}

impl<'a> Deadline<'a> {
    fn new(what: &'a str, limit: Duration) -> Self {
        Self { what, limit, at: Instant::now() + limit }
    }

    /// Panics if the deadline has passed.
    fn check(&self) {
        assert!(Instant::now() < self.at, "timed out after {:?} waiting for: {}", self.limit, self.what);
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `limit`
/// (blocking; for `#[test]` functions and sync closures inside async tests).
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Deadline::new(what, limit);
    loop {
        if let Some(v) = check() {
            return v;
        }
        deadline.check();
        std::thread::sleep(INTERVAL);
    }
}

/// Polls the async `check` every 20 ms until it returns `Some`, or panics with `what` after
/// `limit`.
pub async fn until<T, F: Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Deadline::new(what, limit);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        deadline.check();
        tokio::time::sleep(INTERVAL).await;
    }
}
