//! Conditional requests (RFC 9110 §13.2.2, as S3 evaluates them): `If-Match` and
//! `If-Unmodified-Since` fail with 412, `If-None-Match` and `If-Modified-Since` answer 304.
//! A present ETag condition takes precedence over its date twin.
//!
//! s3s parses one ETag per header; a list (`If-None-Match: "a", "b"`, what a cache holding
//! several versions sends) is taken out of anonymous requests before s3s sees it
//! ([`take_etag_lists`]) and evaluated here.

use s3s::dto::{ETagCondition, Timestamp, TimestampFormat};

/// An `If-Match`/`If-None-Match` value: `*` or a list of entity tags (unquoted, `W/` dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tags {
    Any,
    List(Vec<String>),
}

impl Tags {
    /// From the single value s3s parsed.
    pub fn from_condition(c: &ETagCondition) -> Self {
        match c {
            ETagCondition::Any => Tags::Any,
            ETagCondition::ETag(t) => Tags::List(vec![t.value().to_owned()]),
        }
    }

    /// Parses a header value: `*` or comma-separated (weak or strong) entity tags.
    pub fn parse(value: &str) -> Self {
        if value.trim() == "*" {
            return Tags::Any;
        }
        let tags = value
            .split(',')
            .map(|t| {
                let t = t.trim();
                let t = t.strip_prefix("W/").unwrap_or(t);
                t.trim_matches('"').to_owned()
            })
            .filter(|t| !t.is_empty())
            .collect();
        Tags::List(tags)
    }

    fn matches(&self, etag: &str) -> bool {
        match self {
            Tags::Any => true,
            // S3 compares the opaque value; a weak `W/` prefix from an intermediary does not
            // change which body it names.
            Tags::List(tags) => tags.iter().any(|t| t == etag),
        }
    }
}

/// `If-Match`/`If-None-Match` lists removed from a request, for the operation to evaluate.
#[derive(Clone, Debug, Default)]
pub struct EtagLists {
    pub if_match: Option<Tags>,
    pub if_none_match: Option<Tags>,
}

/// Moves `If-Match`/`If-None-Match` headers holding more than one tag into an [`EtagLists`]
/// request extension, which s3s passes through. Only for unsigned requests: removing a header
/// a client signed would break its signature (a signed list is refused by s3s with 400).
pub fn take_etag_lists(req: &mut http::Request<hyper::body::Incoming>) {
    let signed = req.headers().contains_key(http::header::AUTHORIZATION)
        || req.uri().query().is_some_and(|q| q.contains("X-Amz-Signature=") || q.contains("Signature="));
    if signed {
        return;
    }
    let mut lists = EtagLists::default();
    for (name, slot) in [
        (http::header::IF_MATCH, &mut lists.if_match),
        (http::header::IF_NONE_MATCH, &mut lists.if_none_match),
    ] {
        let values: Vec<String> =
            req.headers().get_all(&name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
        if values.len() > 1 || values.first().is_some_and(|v| v.contains(',')) {
            req.headers_mut().remove(&name);
            *slot = Some(Tags::parse(&values.join(",")));
        }
    }
    if lists.if_match.is_some() || lists.if_none_match.is_some() {
        req.extensions_mut().insert(lists);
    }
}

/// The conditions of a GET or HEAD.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    pub if_match: Option<Tags>,
    pub if_none_match: Option<Tags>,
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

/// Evaluates `c` against an object with `etag` (unquoted) modified at `modified` (seconds).
pub fn evaluate(c: &Conditions, etag: &str, modified: i64) -> Outcome {
    match (&c.if_match, c.if_unmodified_since) {
        (Some(m), _) if !m.matches(etag) => return Outcome::PreconditionFailed,
        (None, Some(since)) if modified > since => return Outcome::PreconditionFailed,
        _ => {}
    }
    match (&c.if_none_match, c.if_modified_since) {
        (Some(m), _) if m.matches(etag) => Outcome::NotModified,
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

    fn tag(v: &str) -> Tags {
        Tags::from_condition(&ETagCondition::ETag(ETag::Strong(v.to_owned())))
    }

    #[test]
    fn table() {
        let any = Tags::Any;
        let (a, b) = (tag("aaa"), tag("bbb"));
        let c = |im: Option<&Tags>, inm: Option<&Tags>, ims, ius| Conditions {
            if_match: im.cloned(),
            if_none_match: inm.cloned(),
            if_modified_since: ims,
            if_unmodified_since: ius,
        };
        use Outcome::*;
        let list = Tags::parse(r#""zzz", W/"aaa""#);
        let cases: &[(Conditions, Outcome)] = &[
            (c(None, Some(&list), None, None), NotModified),
            (c(Some(&list), None, None, None), Proceed),
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
    fn tag_lists_parse() {
        assert_eq!(Tags::parse("*"), Tags::Any);
        assert_eq!(Tags::parse(r#""a", W/"b",c"#), Tags::List(vec!["a".into(), "b".into(), "c".into()]));
    }

    #[test]
    fn timestamps_to_seconds() {
        let t = Timestamp::parse(TimestampFormat::HttpDate, "Wed, 25 Nov 2026 09:00:00 GMT").expect("date");
        assert_eq!(seconds(&t), Some(1_795_597_200));
    }
}
