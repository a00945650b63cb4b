//! Secrets that never show up in logs or printed configuration.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string (a token or a key). `Debug`, `Display` and `Serialize` print `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether an `Authorization` field value carries this secret as a bearer token:
    /// `Bearer TOKEN`, the one check of the control API and the edge admin API.
    ///
    /// - The scheme is case-insensitive (RFC 9110 §11.1): `bearer TOKEN` passes.
    /// - One or more spaces separate scheme and token (`1*SP`, RFC 9110 §11.4).
    /// - Whitespace around the whole value is ignored, because it is not part of a field value
    ///   (RFC 9110 §5.5) and some clients leave a trailing newline from a token file; the token
    ///   itself is compared exactly, so a token with a space inside or a second word fails.
    /// - The comparison takes the same time wherever the first differing byte is (`subtle`),
    ///   so the token cannot be guessed byte by byte from timings; only its length can leak.
    ///
    /// ```
    /// let secret = stratus_config::Secret::new("s3cr3t");
    /// assert!(secret.verify_bearer(Some("Bearer s3cr3t")));
    /// assert!(secret.verify_bearer(Some("bearer  s3cr3t\n")));
    /// assert!(!secret.verify_bearer(Some("Basic s3cr3t")));
    /// assert!(!secret.verify_bearer(None::<&str>));
    /// ```
    pub fn verify_bearer(&self, header: Option<impl AsRef<[u8]>>) -> bool {
        let Some(header) = header else { return false };
        let value = header.as_ref().trim_ascii();
        let Some(space) = value.iter().position(|&b| b == b' ') else { return false };
        let (scheme, rest) = value.split_at(space);
        let token = rest.trim_ascii_start();
        if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() || self.0.is_empty() {
            return false;
        }
        bool::from(subtle::ConstantTimeEq::ct_eq(token, self.0.as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(Self(s))
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: Option<&[u8]>, expected: bool) {
        let got = Secret::new("t0k3n").verify_bearer(header);
        assert_eq!(got, expected, "{:?}", header.map(String::from_utf8_lossy));
    }

    #[test]
    fn bearer_tokens() {
        check(Some(b"Bearer t0k3n"), true);
        check(Some(b"bearer t0k3n"), true);
        check(Some(b"BEARER t0k3n"), true);
        check(Some(b"Bearer   t0k3n"), true);
        check(Some(b" Bearer t0k3n \t"), true);
        check(Some(b"Bearer t0k3n\n"), true);
        check(None, false);
        check(Some(b""), false);
        check(Some(b"Bearer"), false);
        check(Some(b"Bearer "), false);
        check(Some(b"t0k3n"), false);
        check(Some(b"Basic t0k3n"), false);
        check(Some(b"Bearer\tt0k3n"), false);
        check(Some(b"Bearer t0k3"), false);
        check(Some(b"Bearer t0k3nn"), false);
        check(Some(b"Bearer T0K3N"), false);
        check(Some(b"Bearer t0k3n extra"), false);
        check(Some(b"Bearer t0k\xffn"), false);
        check(Some(b"Bearers t0k3n"), false);
        assert!(!Secret::default().verify_bearer(Some("Bearer ")), "an empty secret matches nothing");
    }
}
