//! Storability and freshness of a response for a shared cache (RFC 9111 §3, §4.2, RFC 9213,
//! RFC 5861), with the site's TTL and negative-caching rules on top.
//!
//! Why not `http-cache-semantics` alone: it refuses to store any status outside its own list
//! (a `500` with `max-age` is storable per §3), never stores `Set-Cookie` responses even with
//! `s-maxage`, applies heuristic freshness without a cap, computes `Age` without the §4.2.3
//! corrections and knows nothing of `CDN-Cache-Control`, `stale-while-revalidate` or
//! `stale-if-error`. The unit tests below check that for the plain cases both agree.
//!
//! Decisions where the RFCs leave room (written down as the issue asks):
//! - Directive source: `CDN-Cache-Control`, else `Surrogate-Control`, else `Cache-Control` +
//!   `Expires` + `Pragma`. When a targeted field is used the others are ignored (RFC 9213 §2.1).
//! - Heuristic freshness: 10% of `Date - Last-Modified`, capped at one day, only for the
//!   heuristically cacheable statuses. Without explicit freshness, without a usable heuristic
//!   and without validators a response is not stored (it could never be served).
//! - A response with `Set-Cookie` is stored only when freshness is explicitly meant for shared
//!   caches (`public`, `s-maxage` or a targeted field), as Fastly and Varnish do by default.
//! - `private="field"` is treated as `private` (not stored).
//! - `must-revalidate` / `proxy-revalidate` forbid serving stale for `max-stale` and
//!   `stale-while-revalidate`; `stale-if-error` is honoured "regardless of other freshness
//!   information" (RFC 5861 §4).

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderName};
use http::{HeaderMap, StatusCode};
use stratus_config::edge::{NegativeRule, TtlRule};

use crate::cache::directives::{CDN_CACHE_CONTROL, Directives, SURROGATE_CONTROL, Seconds};

/// Statuses that may get heuristic freshness (RFC 9110 §15.1).
const HEURISTIC_STATUSES: [u16; 12] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];
/// Heuristic freshness is capped here, as RFC 9111 §4.2.2 suggests for the 10% rule.
const HEURISTIC_CAP: Duration = Duration::from_secs(24 * 3600);

/// Why a response is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStorable {
    /// `no-store`.
    NoStore,
    /// `private`.
    Private,
    /// Request had `Authorization` and the response did not allow sharing.
    Authorization,
    /// Interim, partial or not-modified status.
    Status,
    /// `Vary: *` never matches a later request.
    VaryStar,
    /// `Set-Cookie` without explicit shared freshness.
    SetCookie,
    /// Nothing says how long it could be reused and it cannot be revalidated.
    NoFreshness,
}

impl NotStorable {
    /// Short text for `Cache-Status: detail=`.
    pub fn detail(self) -> &'static str {
        match self {
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::Status => "status",
            Self::VaryStar => "vary-star",
            Self::SetCookie => "set-cookie",
            Self::NoFreshness => "no-freshness",
        }
    }
}

/// What the site's configuration adds to the origin's headers for one response.
#[derive(Clone, Copy, Debug, Default)]
pub struct SiteRules<'a> {
    /// The TTL rule whose prefix matched the path (longest prefix).
    pub ttl: Option<&'a TtlRule>,
    /// Negative-caching rules of the site.
    pub negative: &'a [NegativeRule],
    /// The site's `stale_if_error` bound: a stale-if-error window for every response the
    /// origin does not forbid to be served stale.
    pub stale_if_error: Option<Duration>,
}

/// How a response may be stored and reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `Ok` when the response may be stored.
    pub storable: Result<(), NotStorable>,
    /// Freshness lifetime (§4.2.1), after site rules.
    pub lifetime: Duration,
    /// `stale-while-revalidate` window.
    pub swr: Duration,
    /// `stale-if-error` window.
    pub sie: Duration,
    /// Must be revalidated before every reuse (`no-cache`).
    pub no_cache: bool,
    /// Stale copies may not be served for `max-stale` or `stale-while-revalidate`.
    pub must_revalidate: bool,
}

#[cfg(test)]
impl Policy {
    /// For tests: storable, fresh for `lifetime`, no stale windows, no revalidation rules.
    pub(crate) fn fresh_for(lifetime: Duration) -> Self {
        Self {
            storable: Ok(()),
            lifetime,
            swr: Duration::ZERO,
            sie: Duration::ZERO,
            no_cache: false,
            must_revalidate: false,
        }
    }
}

/// The directives that apply to us and whether they came from a targeted field.
pub fn response_directives(headers: &HeaderMap) -> (Directives, bool) {
    // CDN-Cache-Control counts when it parses to a non-empty dictionary, even if none of its
    // members is usable (`max-age="60"`); an empty or unparsable one is ignored (RFC 9213 §2.1).
    if let Some(d) = Directives::from_headers(headers, &CDN_CACHE_CONTROL) {
        return (d, true);
    }
    if let Some(d) = Directives::from_headers(headers, &SURROGATE_CONTROL).filter(|d| !d.is_empty()) {
        return (d, true);
    }
    (Directives::from_headers(headers, &header::CACHE_CONTROL).unwrap_or_default(), false)
}

/// A date header value, `None` when absent or malformed.
pub fn date_header(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    headers.get(name)?.to_str().ok().and_then(|s| parse_date(s.trim()))
}

const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// An HTTP-date in any of its three formats (RFC 9110 §5.6.7), read as a cache should: case
/// does not matter (RFC 9111 §4.2: "a cache recipient SHOULD match the field value
/// case-insensitively", so `THU, 18 AUG 2050 02:01:18 gMT` is a date), and neither does a
/// weekday that does not fit the date (it is redundant; nginx ignores it too, and
/// `Thu Aug  8 02:01:18 2050` in asctime form is then a Monday's date). Zones other than
/// `GMT` stay invalid.
pub fn parse_date(text: &str) -> Option<SystemTime> {
    if let Ok(t) = httpdate::parse_http_date(text) {
        return Some(t);
    }
    if text.len() > 64 || !text.is_ascii() {
        return None;
    }
    // Canonical case: every word capitalised, the zone upper case.
    let mut canon = String::with_capacity(text.len());
    let mut word_start = true;
    for c in text.chars() {
        canon.push(if word_start { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
        word_start = !c.is_ascii_alphabetic();
    }
    let canon = canon.replace("Gmt", "GMT");
    if let Ok(t) = httpdate::parse_http_date(&canon) {
        return Some(t);
    }
    // The weekday is the first word: try the one that fits, in the same form (3 letters, or
    // the whole name in RFC 850 dates).
    let end = canon.find([',', ' '])?;
    let long = end > 3;
    WEEKDAYS.iter().find_map(|day| {
        let day = if long { day } else { &day[..3] };
        httpdate::parse_http_date(&format!("{day}{}", &canon[end..])).ok()
    })
}

/// Computes the policy for a response received at `response_time` to a GET.
pub fn policy(
    status: StatusCode,
    headers: &HeaderMap,
    request_has_authorization: bool,
    response_time: SystemTime,
    rules: SiteRules<'_>,
) -> Policy {
    let (cc, targeted) = response_directives(headers);
    let secs = |name: &str| match cc.seconds(name) {
        Seconds::Value(n) => Some(Duration::from_secs(n)),
        _ => None,
    };
    let pragma_no_cache = !targeted
        && !headers.contains_key(header::CACHE_CONTROL)
        && headers.get_all(header::PRAGMA).iter().any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
    let no_cache = cc.has("no-cache") || pragma_no_cache;
    let must_revalidate = cc.has("must-revalidate") || cc.has("proxy-revalidate");
    let date = date_header(headers, &header::DATE).unwrap_or(response_time);

    // Explicit freshness, in the order §4.2.1 gives for a shared cache. Invalid values count
    // as "explicit and already stale".
    let explicit: Option<Duration> = match (cc.seconds("s-maxage"), cc.seconds("max-age")) {
        (Seconds::Value(n), _) => Some(Duration::from_secs(n)),
        (Seconds::Invalid, _) => Some(Duration::ZERO),
        (Seconds::Absent, Seconds::Value(n)) => Some(Duration::from_secs(n)),
        (Seconds::Absent, Seconds::Invalid) => Some(Duration::ZERO),
        (Seconds::Absent, Seconds::Absent) if !targeted && headers.contains_key(header::EXPIRES) => {
            // Malformed or duplicate Expires means "already expired" (§5.3).
            let single = headers.get_all(header::EXPIRES).iter().count() == 1;
            Some(match date_header(headers, &header::EXPIRES) {
                Some(exp) if single => exp.duration_since(date).unwrap_or_default(),
                _ => Duration::ZERO,
            })
        }
        _ => None,
    };
    let shared_explicit = targeted || cc.has("s-maxage") || cc.has("public");

    let code = status.as_u16();
    let negative = rules.negative.iter().find(|r| r.status == code);
    let heuristic_status = HEURISTIC_STATUSES.contains(&code);
    let has_validator = headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);

    let storable = (|| {
        if cc.has("no-store") {
            return Err(NotStorable::NoStore);
        }
        if cc.has("private") {
            return Err(NotStorable::Private);
        }
        if status.is_informational()
            || status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Err(NotStorable::Status);
        }
        if request_has_authorization && !(cc.has("public") || cc.has("s-maxage") || cc.has("must-revalidate"))
        {
            return Err(NotStorable::Authorization);
        }
        if headers
            .get_all(header::VARY)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|p| p.trim() == "*")))
        {
            return Err(NotStorable::VaryStar);
        }
        if headers.contains_key(header::SET_COOKIE) && !shared_explicit {
            return Err(NotStorable::SetCookie);
        }
        let has_rule =
            negative.is_some() || (rules.ttl.and_then(|r| r.default).is_some() && heuristic_status);
        let may_heuristic = heuristic_status || cc.has("public");
        if explicit.is_none() && !has_rule && !(may_heuristic && (has_validator || no_cache)) {
            return Err(NotStorable::NoFreshness);
        }
        Ok(())
    })();

    let mut lifetime = match explicit {
        Some(d) => d,
        None => match (negative, rules.ttl.and_then(|r| r.default)) {
            (Some(rule), _) => rule.ttl.get(),
            (None, Some(default)) if heuristic_status || cc.has("public") => default.get(),
            _ if heuristic_status || cc.has("public") => heuristic(headers, date),
            _ => Duration::ZERO,
        },
    };
    if let Some(rule) = rules.ttl {
        if let Some(min) = rule.min {
            lifetime = lifetime.max(min.get());
        }
        if let Some(max) = rule.max {
            lifetime = lifetime.min(max.get());
        }
    }
    if no_cache {
        lifetime = Duration::ZERO;
    }
    let swr = if must_revalidate || no_cache { None } else { secs("stale-while-revalidate") };
    // The site's bound is the operator's word, not the origin's: it yields to the origin's
    // explicit "never serve this stale" (RFC 9111 §4.2.4: must-revalidate, proxy-revalidate
    // and s-maxage, which implies proxy-revalidate for shared caches, and no-cache), whereas
    // the origin's own `stale-if-error` overrides those (RFC 5861 §4).
    let site_sie = rules.stale_if_error.filter(|_| !(must_revalidate || no_cache || cc.has("s-maxage")));
    let sie = secs("stale-if-error").unwrap_or_default().max(site_sie.unwrap_or_default());
    Policy {
        storable,
        lifetime,
        swr: swr.unwrap_or_default(),
        sie,
        no_cache,
        must_revalidate: must_revalidate || cc.has("s-maxage"),
    }
}

/// 10% of the time since `Last-Modified`, capped (§4.2.2).
fn heuristic(headers: &HeaderMap, date: SystemTime) -> Duration {
    match date_header(headers, &header::LAST_MODIFIED).and_then(|lm| date.duration_since(lm).ok()) {
        Some(age) => (age / 10).min(HEURISTIC_CAP),
        None => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_config::Duration as CfgDuration;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    const NOW: u64 = 1_700_000_000;
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }
    fn date(offset: i64) -> String {
        httpdate::fmt_http_date(
            SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.saturating_add_signed(offset)),
        )
    }

    fn check(status: u16, pairs: &[(&str, &str)], auth: bool, want: Result<u64, NotStorable>) {
        let p =
            policy(StatusCode::from_u16(status).unwrap(), &headers(pairs), auth, now(), SiteRules::default());
        let got = p.storable.map(|()| p.lifetime.as_secs());
        assert_eq!(got, want, "{status} {pairs:?} auth={auth}");
    }

    #[test]
    fn storability_and_lifetime_table() {
        let d = date(0);
        let d = d.as_str();
        let lm = date(-1000);
        let exp = date(120);
        check(200, &[("cache-control", "max-age=60")], false, Ok(60));
        check(200, &[("cache-control", "max-age=60, s-maxage=10")], false, Ok(10));
        check(200, &[("date", d), ("expires", &exp)], false, Ok(120));
        check(200, &[("date", d), ("expires", &exp), ("cache-control", "max-age=5")], false, Ok(5));
        check(200, &[("expires", "0")], false, Ok(0));
        check(200, &[("cache-control", "max-age=60, max-age=30")], false, Ok(0));
        check(200, &[("cache-control", "max-age=soon")], false, Ok(0));
        check(500, &[("cache-control", "max-age=60")], false, Ok(60));
        check(500, &[], false, Err(NotStorable::NoFreshness));
        check(302, &[("last-modified", &lm)], false, Err(NotStorable::NoFreshness));
        check(200, &[("date", d), ("last-modified", &lm)], false, Ok(100));
        check(404, &[("date", d), ("last-modified", &lm)], false, Ok(100));
        check(200, &[("date", d), ("last-modified", &date(-100 * 24 * 3600))], false, Ok(24 * 3600));
        check(200, &[], false, Err(NotStorable::NoFreshness));
        check(200, &[("cache-control", "no-store, max-age=60")], false, Err(NotStorable::NoStore));
        check(200, &[("cache-control", "private, max-age=60")], false, Err(NotStorable::Private));
        check(200, &[("cache-control", "no-cache, max-age=60"), ("etag", "\"x\"")], false, Ok(0));
        check(200, &[("cache-control", "max-age=60")], true, Err(NotStorable::Authorization));
        check(200, &[("cache-control", "public, max-age=60")], true, Ok(60));
        check(200, &[("cache-control", "s-maxage=60")], true, Ok(60));
        check(200, &[("cache-control", "max-age=60"), ("vary", "*")], false, Err(NotStorable::VaryStar));
        check(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
            false,
            Err(NotStorable::SetCookie),
        );
        check(200, &[("cache-control", "s-maxage=60"), ("set-cookie", "a=b")], false, Ok(60));
        check(206, &[("cache-control", "max-age=60")], false, Err(NotStorable::Status));
        // RFC 9213: the targeted field wins and the others are ignored.
        check(200, &[("cache-control", "private"), ("cdn-cache-control", "max-age=30")], false, Ok(30));
        check(
            200,
            &[("cache-control", "max-age=600"), ("cdn-cache-control", "no-store")],
            false,
            Err(NotStorable::NoStore),
        );
        check(200, &[("cache-control", "max-age=600"), ("surrogate-control", "max-age=20")], false, Ok(20));
        check(
            200,
            &[("surrogate-control", "max-age=20"), ("cdn-cache-control", "max-age=40")],
            false,
            Ok(40),
        );
    }

    #[test]
    fn stale_windows() {
        let p = policy(
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=1, stale-while-revalidate=30, stale-if-error=60")]),
            false,
            now(),
            SiteRules::default(),
        );
        assert_eq!((p.swr.as_secs(), p.sie.as_secs()), (30, 60));
        let p = policy(
            StatusCode::OK,
            &headers(&[(
                "cache-control",
                "max-age=1, must-revalidate, stale-while-revalidate=30, stale-if-error=60",
            )]),
            false,
            now(),
            SiteRules::default(),
        );
        assert_eq!((p.swr.as_secs(), p.sie.as_secs(), p.must_revalidate), (0, 60, true));
    }

    #[test]
    fn site_stale_if_error_bound() {
        let rules = SiteRules { stale_if_error: Some(Duration::from_secs(3600)), ..SiteRules::default() };
        let sie = |cc: &str| {
            policy(StatusCode::OK, &headers(&[("cache-control", cc)]), false, now(), rules).sie.as_secs()
        };
        assert_eq!(sie("max-age=60"), 3600);
        assert_eq!(sie("max-age=60, stale-if-error=7200"), 7200);
        assert_eq!(sie("max-age=60, stale-if-error=60"), 3600);
        // The origin's "never stale" wins over the operator's bound, not over its own directive.
        assert_eq!(sie("max-age=60, must-revalidate"), 0);
        assert_eq!(sie("max-age=60, proxy-revalidate"), 0);
        assert_eq!(sie("s-maxage=60"), 0);
        assert_eq!(sie("no-cache"), 0);
        assert_eq!(sie("max-age=60, must-revalidate, stale-if-error=30"), 30);
    }

    #[test]
    fn site_rules() {
        let negative = [NegativeRule { status: 404, ttl: CfgDuration::secs(10) }];
        let ttl = TtlRule {
            prefix: "/".into(),
            default: Some(CfgDuration::secs(300)),
            min: Some(CfgDuration::secs(5)),
            max: Some(CfgDuration::secs(3600)),
        };
        let rules = SiteRules { ttl: Some(&ttl), negative: &negative, stale_if_error: None };
        let run = |status: u16, pairs: &[(&str, &str)]| {
            let p = policy(StatusCode::from_u16(status).unwrap(), &headers(pairs), false, now(), rules);
            p.storable.map(|()| p.lifetime.as_secs())
        };
        assert_eq!(run(404, &[]), Ok(10));
        assert_eq!(run(200, &[]), Ok(300));
        assert_eq!(run(200, &[("cache-control", "max-age=1")]), Ok(5));
        assert_eq!(run(200, &[("cache-control", "max-age=86400")]), Ok(3600));
        assert_eq!(run(503, &[]), Err(NotStorable::NoFreshness));
        assert_eq!(run(200, &[("cache-control", "no-store")]), Err(NotStorable::NoStore));
    }

    /// Where `http-cache-semantics` is right, we agree with it.
    #[test]
    fn agrees_with_http_cache_semantics_on_plain_cases() {
        let d = date(0);
        let cases: &[&[(&str, &str)]] = &[
            &[("date", &d), ("cache-control", "max-age=60")],
            &[("date", &d), ("cache-control", "public, s-maxage=30, max-age=60")],
            &[("date", &d), ("cache-control", "no-store")],
            &[("date", &d), ("cache-control", "private, max-age=60")],
        ];
        for pairs in cases {
            let mut res = http::Response::new(());
            *res.headers_mut() = headers(pairs);
            let req = http::Request::get("http://a.example/x").body(()).unwrap();
            let theirs = http_cache_semantics::CachePolicy::new_options(
                &req,
                &res,
                now(),
                http_cache_semantics::CacheOptions { shared: true, ..Default::default() },
            );
            let ours = policy(StatusCode::OK, res.headers(), false, now(), SiteRules::default());
            assert_eq!(ours.storable.is_ok(), theirs.is_storable(), "{pairs:?}");
            if ours.storable.is_ok() {
                assert_eq!(ours.lifetime, theirs.time_to_live(now()), "{pairs:?}");
            }
        }
    }

    #[test]
    fn dates_are_read_case_insensitively_and_weekdays_ignored() {
        let want = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_544_400_878));
        for text in [
            "Thu, 18 Aug 2050 02:01:18 GMT",
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 AUG 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gMT",
            "thu, 18 aug 2050 02:01:18 gmt",
            "Mon, 18 Aug 2050 02:01:18 GMT",
            "Thursday, 18-Aug-50 02:01:18 GMT",
            "THURSDAY, 18-AUG-50 02:01:18 GMT",
            "Thu Aug 18 02:01:18 2050",
        ] {
            assert_eq!(parse_date(text), want, "{text}");
        }
        assert!(parse_date("Thu Aug  8 02:01:18 2050").is_some());
        for bad in
            ["Thu, 18 Aug 2050 02:01:18 UTC", "Thu, 18 Aug 2050 02:01:18 AEST", "0", "", "Thu, 32 Aug 2050"]
        {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// HTTP dates from a client or origin never panic the parser; a date we would write
        /// reads back to the same second.
        #[test]
        fn http_dates(text in "\\PC{0,40}", secs in 0u64..4_102_444_800) {
            let mut h = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&text) {
                h.insert(header::EXPIRES, v);
                let _ = date_header(&h, &header::EXPIRES);
            }
            let t = std::time::UNIX_EPOCH + Duration::from_secs(secs);
            h.insert(header::DATE, http::HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap());
            proptest::prop_assert_eq!(date_header(&h, &header::DATE), Some(t));
        }
    }
}
