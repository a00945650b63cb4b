//! [`Invalid`]: a rule broken after parsing. Every section's `validate` returns it, so it lives
//! below them all rather than in the crate root that imports them.

use std::fmt;

/// A rule broken after parsing, at a key path relative to its section (`sites[0].hosts`);
/// displayed as `PATH: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key path, e.g. `sites[1].ttl[0].prefix`.
    pub path: String,
    /// What is wrong, lowercase.
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for Invalid {}
