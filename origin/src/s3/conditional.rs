//! Conditional requests (RFC 9110 §13.2.2, as S3 evaluates them): `If-Match` and
//! `If-Unmodified-Since` fail with 412, `If-None-Match` and `If-Modified-Since` answer 304.
//! A present ETag condition takes precedence over its date twin.

use s3s::dto::{ETagCondition, Timestamp, TimestampFormat};

/// The conditions of a GET or HEAD.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    /// Seconds since the Unix epoch.
    pub if_modified_since: Option<i64>,
    /// Seconds since the Unix epoch.
    pub if_unmodified_since: Option<i64>,
}

/// What to do with the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Proceed,
    NotModified,
    PreconditionFailed,
}

fn matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        // S3 compares the opaque value; a weak `W/` prefix from an intermediary does not
        // change which body it names.
        ETagCondition::ETag(t) => t.value() == etag,
    }
}

/// Evaluates `c` against an object with `etag` (unquoted) modified at `modified` (seconds).
pub fn evaluate(c: &Conditions<'_>, etag: &str, modified: i64) -> Outcome {
    match (c.if_match, c.if_unmodified_since) {
        (Some(m), _) if !matches(m, etag) => return Outcome::PreconditionFailed,
        (None, Some(since)) if modified > since => return Outcome::PreconditionFailed,
        _ => {}
    }
    match (c.if_none_match, c.if_modified_since) {
        (Some(m), _) if matches(m, etag) => Outcome::NotModified,
        (None, Some(since)) if modified <= since => Outcome::NotModified,
        _ => Outcome::Proceed,
    }
}

/// A timestamp in whole seconds since the Unix epoch.
pub fn seconds(t: &Timestamp) -> Option<i64> {
    let mut out = Vec::new();
    t.format(TimestampFormat::EpochSeconds, &mut out).ok()?;
    let text = String::from_utf8(out).ok()?;
    let whole = text.split('.').next()?;
    whole.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;

    fn tag(v: &str) -> ETagCondition {
        ETagCondition::ETag(ETag::Strong(v.to_owned()))
    }

    #[test]
    fn table() {
        let any = ETagCondition::Any;
        let (a, b) = (tag("aaa"), tag("bbb"));
        let c = |im, inm, ims, ius| Conditions {
            if_match: im,
            if_none_match: inm,
            if_modified_since: ims,
            if_unmodified_since: ius,
        };
        use Outcome::*;
        let cases: &[(Conditions<'_>, Outcome)] = &[
            (c(None, None, None, None), Proceed),
            (c(Some(&a), None, None, None), Proceed),
            (c(Some(&b), None, None, None), PreconditionFailed),
            (c(Some(&any), None, None, None), Proceed),
            (c(None, Some(&a), None, None), NotModified),
            (c(None, Some(&b), None, None), Proceed),
            (c(None, Some(&any), None, None), NotModified),
            (c(None, None, Some(100), None), NotModified),
            (c(None, None, Some(99), None), Proceed),
            (c(None, None, None, Some(100)), Proceed),
            (c(None, None, None, Some(99)), PreconditionFailed),
            // An ETag condition overrides its date twin.
            (c(Some(&a), None, None, Some(99)), Proceed),
            (c(None, Some(&b), Some(100), None), Proceed),
            // 412 wins over 304.
            (c(Some(&b), Some(&a), None, None), PreconditionFailed),
        ];
        for (i, (cond, want)) in cases.iter().enumerate() {
            assert_eq!(evaluate(cond, "aaa", 100), *want, "case {i}: {cond:?}");
        }
    }

    #[test]
    fn timestamps_to_seconds() {
        let t = Timestamp::parse(TimestampFormat::HttpDate, "Wed, 25 Nov 2026 09:00:00 GMT").expect("date");
        assert_eq!(seconds(&t), Some(1_795_597_200));
    }
}
