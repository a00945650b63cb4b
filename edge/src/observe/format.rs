//! Access-log lines: JSON (one object per line; the default) or the Apache/nginx "combined"
//! format. Both are written into a reused buffer; strings from the client are escaped so that
//! no request can start a line of its own or break a field.

use std::borrow::Cow;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Version};
use serde::Serialize;
use stratus_config::observe::AccessLogFormat;

use super::record::Record;

/// Appends one line for `r` (newline included) to `buf`.
pub(super) fn write_line(buf: &mut Vec<u8>, r: &Record, edge: &str, format: AccessLogFormat) {
    match format {
        AccessLogFormat::Json => json(buf, r, edge),
        AccessLogFormat::Combined => combined(buf, r),
    }
}

/// The fields of a JSON line, in the order they are written (documented in `docs/edge.md`).
#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    edge: &'a str,
    client: Option<String>,
    method: &'a str,
    scheme: &'a str,
    host: Option<Cow<'a, str>>,
    path: &'a str,
    protocol: &'a str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    cache: &'a str,
    cache_status: Option<Cow<'a, str>>,
    tier: Option<&'a str>,
    origin_status: Option<u16>,
    origin_ms: Option<f64>,
    user_agent: Option<Cow<'a, str>>,
    referer: Option<Cow<'a, str>>,
}

fn json(buf: &mut Vec<u8>, r: &Record, edge: &str) {
    let time = rfc3339(r.time);
    let line = Line {
        time: &time,
        edge,
        client: r.client.map(|c| c.ip().to_string()),
        method: r.method.as_str(),
        scheme: if r.tls { "https" } else { "http" },
        host: r.host.as_ref().map(text),
        path: r.uri.path_and_query().map_or("/", |p| p.as_str()),
        protocol: protocol(r.version),
        status: r.status,
        bytes: r.bytes,
        duration_ms: millis(r.duration),
        cache: r.cache,
        cache_status: r.cache_status.as_ref().map(text),
        tier: r.tier,
        origin_status: r.origin_status,
        origin_ms: r.origin_time.map(millis),
        user_agent: r.user_agent.as_ref().map(text),
        referer: r.referer.as_ref().map(text),
    };
    // serde_json escapes control characters, so a line never holds a raw newline.
    if serde_json::to_writer(&mut *buf, &line).is_ok() {
        buf.push(b'\n');
    }
}

/// `client - - [10/Oct/2000:13:55:36 +0000] "GET /a?b HTTP/1.1" 200 2326 "referer" "agent"`
fn combined(buf: &mut Vec<u8>, r: &Record) {
    let client = r.client.map_or_else(|| "-".to_owned(), |c| c.ip().to_string());
    let _ = write!(buf, "{client} - - [{}] \"{} ", clf_time(r.time), r.method.as_str());
    escape(buf, r.uri.path_and_query().map_or(b"/", |p| p.as_str().as_bytes()));
    let _ = write!(buf, " {}\" {} {} \"", protocol(r.version), r.status, r.bytes);
    quoted(buf, r.referer.as_ref());
    buf.extend_from_slice(b"\" \"");
    quoted(buf, r.user_agent.as_ref());
    buf.extend_from_slice(b"\"\n");
}

fn quoted(buf: &mut Vec<u8>, v: Option<&HeaderValue>) {
    match v {
        Some(v) if !v.is_empty() => escape(buf, v.as_bytes()),
        _ => buf.push(b'-'),
    }
}

/// nginx's escaping for its text logs: `"`, `\`, control bytes and bytes above 0x7e as `\xHH`.
fn escape(buf: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(buf, "\\x{b:02X}");
        } else {
            buf.push(b);
        }
    }
}

/// A header value as text; bytes that are not UTF-8 become U+FFFD.
fn text(v: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn millis(d: std::time::Duration) -> f64 {
    // Microsecond precision is plenty and keeps lines short.
    (d.as_micros() as f64) / 1000.0
}

/// UTC calendar fields of a time: (year, month 1-12, day, hour, minute, second, millisecond).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60, d.subsec_millis())
}

/// `2026-12-06T02:21:20.123Z`
fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `06/Dec/2026:02:21:20 +0000`
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, mo, d, h, mi, s, _) = civil(t);
    let month = MONTHS[(mo as usize).saturating_sub(1).min(11)];
    format!("{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    // Named from the crate root, not `super`: `tests/cli/house.rs` reads `super` from this file
    // as the `observe` module.
    use crate::observe::format::*;

    fn record(ua: &[u8]) -> Record {
        let req = http::Request::builder()
            .uri("/a/b?x=1&y=2")
            .header("host", "cdn.example")
            .header("user-agent", HeaderValue::from_bytes(ua).unwrap_or(HeaderValue::from_static("x")))
            .header("referer", "http://ref.example/")
            .body(())
            .expect("request");
        let mut r = Record::begin(&req, Some("192.0.2.7:5555".parse().expect("addr")), false);
        r.time = UNIX_EPOCH + Duration::from_millis(971_186_136_789);
        r.status = 200;
        r.bytes = 2326;
        r.duration = Duration::from_micros(1500);
        r.cache = "hit";
        r
    }

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::from_millis(971_186_136_789);
        assert_eq!(rfc3339(t), "2000-10-10T13:55:36.789Z");
        assert_eq!(clf_time(t), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_798_761_599)), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn combined_line() {
        let mut buf = Vec::new();
        write_line(&mut buf, &record(b"curl/8 \"quoted\""), "e", AccessLogFormat::Combined);
        assert_eq!(
            String::from_utf8(buf).expect("ascii"),
            "192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] \"GET /a/b?x=1&y=2 HTTP/1.1\" 200 2326 \
             \"http://ref.example/\" \"curl/8 \\x22quoted\\x22\"\n"
        );
    }

    #[test]
    fn json_line() {
        let mut buf = Vec::new();
        write_line(&mut buf, &record(b"curl/8"), "edge-a", AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        assert_eq!(v["time"], "2000-10-10T13:55:36.789Z");
        assert_eq!(v["edge"], "edge-a");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["host"], "cdn.example");
        assert_eq!(v["path"], "/a/b?x=1&y=2");
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["user_agent"], "curl/8");
    }

    proptest! {
        /// Whatever a client puts in its user agent, a line stays one line: JSON that reads
        /// back to the same text, or a combined line with exactly six quote marks.
        #[test]
        fn client_text_never_breaks_a_line(
            ua in proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..64)
        ) {
            let r = record(&ua);
            let mut buf = Vec::new();
            write_line(&mut buf, &r, "e", AccessLogFormat::Json);
            prop_assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
            let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
            let expected = String::from_utf8_lossy(&ua).into_owned();
            prop_assert_eq!(v["user_agent"].as_str(), Some(expected.as_str()));
            let mut buf = Vec::new();
            write_line(&mut buf, &r, "e", AccessLogFormat::Combined);
            prop_assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
            prop_assert_eq!(buf.iter().filter(|b| **b == b'"').count(), 6);
            prop_assert!(buf.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\n'));
        }
    }
}
