//! Access-log lines: JSON (one object per line; the default) or the Apache/nginx "combined"
//! format. Both are written into a reused buffer; strings from the client are escaped so that
//! no request can start a line of its own or break a field.

use std::cell::Cell;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::Version;
use stratus_config::observe::AccessLogFormat;

use super::record::Line;

/// Appends one line for `l` (newline included) to `buf`; `edge` is the edge id as a JSON
/// string ([`json_string`]), made once rather than escaped on every line.
pub(super) fn write_line(buf: &mut Vec<u8>, l: &Line<'_>, edge: &[u8], format: AccessLogFormat) {
    match format {
        AccessLogFormat::Json => json(buf, l, edge),
        AccessLogFormat::Combined => combined(buf, l),
    }
}

/// One JSON object per line, its fields in this order (documented in `docs/edge.md`): `time`,
/// `edge`, `client`, `method`, `scheme`, `host`, `path`, `protocol`, `status`, `bytes`,
/// `duration_ms`, `cache`, `cache_status`, `tier`, `origin_status`, `origin_ms`, `user_agent`,
/// `referer`; absent values are `null`.
///
/// Written by hand rather than through `serde_json`: serde's generic path (a `String` for the
/// time, one for the address, a float printer and a UTF-8 check per field) cost about 13,000
/// instructions a line (`docs/performance.md`).
fn json(buf: &mut Vec<u8>, l: &Line<'_>, edge: &[u8]) {
    buf.extend_from_slice(b"{\"time\":\"");
    rfc3339_into(buf, l.time);
    buf.extend_from_slice(b"\",\"edge\":");
    buf.extend_from_slice(edge);
    buf.extend_from_slice(b",\"client\":");
    match l.client {
        Some(ip) => {
            buf.push(b'"');
            ip_into(buf, ip);
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
    // The method is a token (the parsers took nothing else): no byte of it needs escaping.
    buf.extend_from_slice(b",\"method\":");
    quote(buf, l.method);
    buf.extend_from_slice(if l.tls { b",\"scheme\":\"https\"" } else { b",\"scheme\":\"http\"" });
    buf.extend_from_slice(b",\"host\":");
    json_opt(buf, l.host);
    buf.extend_from_slice(b",\"path\":");
    json_str(buf, l.path);
    buf.extend_from_slice(b",\"protocol\":\"");
    buf.extend_from_slice(protocol(l.version).as_bytes());
    buf.extend_from_slice(b"\",\"status\":");
    buf.extend_from_slice(itoa::Buffer::new().format(l.status).as_bytes());
    buf.extend_from_slice(b",\"bytes\":");
    buf.extend_from_slice(itoa::Buffer::new().format(l.bytes).as_bytes());
    buf.extend_from_slice(b",\"duration_ms\":");
    millis_into(buf, l.duration);
    // The outcome and tier labels are ours, plain words.
    buf.extend_from_slice(b",\"cache\":");
    quote(buf, l.cache);
    buf.extend_from_slice(b",\"cache_status\":");
    json_opt(buf, l.cache_status);
    buf.extend_from_slice(b",\"tier\":");
    match l.tier {
        Some(tier) => quote(buf, tier),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"origin_status\":");
    match l.origin_status {
        Some(s) => buf.extend_from_slice(itoa::Buffer::new().format(s).as_bytes()),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"origin_ms\":");
    match l.origin_time {
        Some(d) => millis_into(buf, d),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"user_agent\":");
    json_opt(buf, l.user_agent);
    buf.extend_from_slice(b",\"referer\":");
    json_opt(buf, l.referer);
    buf.extend_from_slice(b"}\n");
}

/// `text` as a JSON string, quotes included.
pub(super) fn json_string(text: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(text.len() + 2);
    json_str(&mut buf, text.as_bytes());
    buf
}

/// `bytes` in quotes, as they are: for values that cannot hold a byte needing escape.
fn quote(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    buf.extend_from_slice(bytes);
    buf.push(b'"');
}

/// A JSON string, or `null`.
fn json_opt(buf: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => json_str(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

/// `bytes` as a JSON string: `"` and `\` escaped, control bytes as `\u00XX` (so no raw
/// newline ever reaches the log), UTF-8 kept, and bytes that are not UTF-8 (header values may
/// carry any octet) replaced by U+FFFD, as `String::from_utf8_lossy` does.
fn json_str(buf: &mut Vec<u8>, bytes: &[u8]) {
    // Almost every value is printable ASCII with no quote or backslash: copied whole.
    if plain(bytes) {
        buf.reserve(bytes.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(bytes);
        buf.push(b'"');
        return;
    }
    if !bytes.is_ascii() && std::str::from_utf8(bytes).is_err() {
        return json_str(buf, String::from_utf8_lossy(bytes).as_bytes());
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        buf.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
    }
    buf.extend_from_slice(&bytes[run..]);
    buf.push(b'"');
}

/// Whether every byte of `bytes` is printable ASCII other than `"` and `\\`, eight bytes at a
/// time (a byte-by-byte scan was the largest part of formatting a line).
fn plain(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        // Padded with spaces, which pass.
        let mut w = [b' '; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        return plain_word(w);
    }
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        if !plain_word(word.try_into().unwrap_or([0; 8])) {
            return false;
        }
    }
    // The last eight bytes, overlapping what was checked, cover the rest.
    words.remainder().is_empty() || plain_word(bytes[bytes.len() - 8..].try_into().unwrap_or([0; 8]))
}

/// [`plain`] for eight bytes: none below 0x20, none at 0x7f or above, no `"` and no `\\`.
fn plain_word(w: [u8; 8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let w = u64::from_ne_bytes(w);
    // Nonzero when some byte of `x` is below `n` (n <= 0x80; exact for "some", the classic
    // bit trick: a borrow only starts at such a byte).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let odd = below(w, 0x20)
        | (w & HIGH)
        | below(w ^ (ONES * u64::from(b'"')), 1)
        | below(w ^ (ONES * u64::from(b'\\')), 1)
        | below(w ^ (ONES * 0x7f), 1);
    odd == 0
}

/// The client's address as text: IPv4 digit by digit (the common case, without the
/// formatter), IPv6 through `Display`.
fn ip_into(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    text[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    text[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + octet % 10;
                n += 1;
            }
            buf.extend_from_slice(&text[..n]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

/// A duration in milliseconds with microsecond precision, as a JSON number (`1.5` is `1.500`).
fn millis_into(buf: &mut Vec<u8>, d: std::time::Duration) {
    let micros = d.as_micros();
    buf.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let frac = (micros % 1000) as u16;
    buf.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// `client - - [10/Oct/2000:13:55:36 +0000] "GET /a?b HTTP/1.1" 200 2326 "referer" "agent"`
fn combined(buf: &mut Vec<u8>, l: &Line<'_>) {
    let client = l.client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
    let _ = write!(buf, "{client} - - [{}] \"", clf_time(l.time));
    escape(buf, l.method);
    buf.push(b' ');
    escape(buf, l.path);
    let _ = write!(buf, " {}\" {} {} \"", protocol(l.version), l.status, l.bytes);
    quoted(buf, l.referer);
    buf.extend_from_slice(b"\" \"");
    quoted(buf, l.user_agent);
    buf.extend_from_slice(b"\"\n");
}

fn quoted(buf: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => escape(buf, v),
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

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
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

/// Appends `2026-12-06T02:21:20.123Z`. The text up to the seconds changes once a second, so
/// each thread keeps the last one it wrote (as nginx caches its time strings).
fn rfc3339_into(buf: &mut Vec<u8>, t: SystemTime) {
    thread_local!(static LAST: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) });
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let text = LAST.with(|last| {
        let (at, text) = last.get();
        if at == secs {
            return text;
        }
        let (y, mo, day, h, mi, s, _) = civil(t);
        let y = y.clamp(0, 9999);
        let mut text = [0u8; 19];
        let mut w = &mut text[..];
        let _ = write!(w, "{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}");
        last.set((secs, text));
        text
    });
    buf.extend_from_slice(&text);
    let ms = d.subsec_millis();
    buf.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

#[cfg(test)]
fn rfc3339(t: SystemTime) -> String {
    let mut buf = Vec::new();
    rfc3339_into(&mut buf, t);
    String::from_utf8(buf).unwrap_or_default()
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
    use crate::observe::record::{Answer, Entries, Record, pack};
    use http::HeaderValue;

    /// The line of a `GET /a/b?x=1&y=2` from `192.0.2.7` with user agent `ua`, answered
    /// with `answer` (or a 200 hit of 2,326 bytes in 1.5 ms).
    fn line(ua: &[u8], format: AccessLogFormat, answer: Option<Answer<'_>>) -> Vec<u8> {
        let req = http::Request::builder()
            .uri("/a/b?x=1&y=2")
            .header("host", "cdn.example")
            .header("user-agent", HeaderValue::from_bytes(ua).unwrap_or(HeaderValue::from_static("x")))
            .header("referer", "http://ref.example/")
            .body(())
            .expect("request");
        let client = Some("192.0.2.7:5555".parse().expect("addr"));
        let time = UNIX_EPOCH + Duration::from_millis(971_186_136_789);
        let record = Record::begin(&req, client, false, time);
        let mut packed = Vec::new();
        pack(&mut packed, &record, &answer.unwrap_or(hit()));
        let mut buf = Vec::new();
        for l in Entries::new(&packed) {
            write_line(&mut buf, &l, &json_string("edge-a"), format);
        }
        buf
    }

    fn hit() -> Answer<'static> {
        Answer {
            status: 200,
            bytes: 2326,
            duration: Duration::from_micros(1500),
            cache: "hit",
            cache_status: None,
            tier: Some("memory"),
            origin_status: None,
            origin_time: None,
        }
    }

    #[test]
    fn addresses() {
        for text in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "192.0.2.17", "2001:db8::1"] {
            let mut buf = Vec::new();
            ip_into(&mut buf, text.parse().expect("address"));
            assert_eq!(buf, text.as_bytes());
        }
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
        let buf = line(b"curl/8 \"quoted\"", AccessLogFormat::Combined, None);
        assert_eq!(
            String::from_utf8(buf).expect("ascii"),
            "192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] \"GET /a/b?x=1&y=2 HTTP/1.1\" 200 2326 \
             \"http://ref.example/\" \"curl/8 \\x22quoted\\x22\"\n"
        );
    }

    #[test]
    fn json_line() {
        let buf = line(b"curl/8", AccessLogFormat::Json, None);
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        assert_eq!(v["time"], "2000-10-10T13:55:36.789Z");
        assert_eq!(v["edge"], "edge-a");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["host"], "cdn.example");
        assert_eq!(v["path"], "/a/b?x=1&y=2");
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["user_agent"], "curl/8");
    }

    #[test]
    fn json_line_has_every_field_and_null_for_absent_ones() {
        let answer = Answer {
            origin_status: Some(200),
            origin_time: Some(Duration::from_micros(12_345)),
            tier: None,
            ..hit()
        };
        let buf = line(b"curl/8", AccessLogFormat::Json, Some(answer));
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["scheme"], "http");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 2326);
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["cache_status"], serde_json::Value::Null);
        assert_eq!(v["tier"], serde_json::Value::Null);
        assert_eq!(v["origin_status"], 200);
        assert_eq!(v["origin_ms"], 12.345);
        assert_eq!(v["referer"], "http://ref.example/");
        assert_eq!(v.as_object().map(serde_json::Map::len), Some(18), "{v}");
    }

    proptest! {
        /// Any bytes at all become one JSON string that reads back as their lossy UTF-8 text,
        /// with no raw control byte in the line.
        #[test]
        fn json_strings_escape_anything(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = Vec::new();
            json_str(&mut buf, &bytes);
            prop_assert!(buf.iter().all(|b| *b >= 0x20));
            let back: String = serde_json::from_slice(&buf).expect("a JSON string");
            prop_assert_eq!(back, String::from_utf8_lossy(&bytes).into_owned());
        }

        /// The eight-bytes-at-a-time check says exactly what a byte-by-byte one says.
        #[test]
        fn plain_is_exact(
            mut bytes in proptest::collection::vec(0x20u8..0x7f, 0..40),
            odd in any::<u8>(),
            at in any::<usize>(),
        ) {
            // Printable text with one arbitrary byte anywhere in it.
            bytes.insert(at % (bytes.len() + 1), odd);
            let slow = bytes.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
            prop_assert_eq!(plain(&bytes), slow);
        }

        /// Whatever a client puts in its user agent, a line stays one line: JSON that reads
        /// back to the same text, or a combined line with exactly six quote marks.
        #[test]
        fn client_text_never_breaks_a_line(
            ua in proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..64)
        ) {
            let buf = line(&ua, AccessLogFormat::Json, None);
            prop_assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
            let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
            let expected = String::from_utf8_lossy(&ua).into_owned();
            prop_assert_eq!(v["user_agent"].as_str(), Some(expected.as_str()));
            let buf = line(&ua, AccessLogFormat::Combined, None);
            prop_assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
            prop_assert_eq!(buf.iter().filter(|b| **b == b'"').count(), 6);
            prop_assert!(buf.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\n'));
        }
    }
}
