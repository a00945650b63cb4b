//! One request as the access log sees it, packed.
//!
//! A request copies what its line will say into a few bytes as it arrives ([`Record`]: its
//! time, client, method, host, path, protocol, user agent and referer) and adds its answer's
//! fields when it ends ([`pack`]); the writer thread unpacks ([`Entries`]) and formats them a
//! batch at a time (`format.rs`). The request path thus copies bytes and formats nothing:
//! formatting inline cost each request about 2,300 instructions spread over code that evicted
//! the request path's own from the instruction cache, where the writer formats a thousand
//! lines in one tight loop (`docs/performance.md`).
//!
//! The packing is private to this process (written and read by this module only); every read
//! is still checked, so that a mistake drops lines rather than panicking.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, Version, header};

/// The request's side of one access-log line, packed as it arrives.
#[derive(Debug)]
pub struct Record {
    raw: Vec<u8>,
}

/// The answer's side of an access-log line.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// Response status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// From the request's arrival to its last body byte handed to the connection.
    pub duration: Duration,
    /// The cache outcome label (`hit`, `miss`, ...).
    pub cache: &'static str,
    /// The response's `Cache-Status` field.
    pub cache_status: Option<&'a HeaderValue>,
    /// The cache tier that answered, when the cache did.
    pub tier: Option<&'static str>,
    /// The origin's status, when the origin was asked.
    pub origin_status: Option<u16>,
    /// How long the origin took to answer with a response head, when it was asked.
    pub origin_time: Option<Duration>,
}

/// One line's fields, unpacked: what `format.rs` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub time: SystemTime,
    pub client: Option<IpAddr>,
    pub method: &'a [u8],
    pub tls: bool,
    pub version: Version,
    /// The `Host` field (or HTTP/2 `:authority`).
    pub host: Option<&'a [u8]>,
    /// Request target: path and query.
    pub path: &'a [u8],
    pub user_agent: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    pub cache: &'a [u8],
    pub cache_status: Option<&'a [u8]>,
    pub tier: Option<&'a [u8]>,
    pub origin_status: Option<u16>,
    pub origin_time: Option<Duration>,
}

/// Marks an absent string or time.
const NONE32: u32 = u32::MAX;
const NONE64: u64 = u64::MAX;

impl Record {
    /// Packs the parts of `req` the line needs, arrived at `time` from `client`.
    pub fn begin<B>(req: &Request<B>, client: Option<SocketAddr>, tls: bool, time: SystemTime) -> Self {
        let mut raw = Vec::with_capacity(160);
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        raw.extend_from_slice(&since.as_secs().to_le_bytes());
        raw.extend_from_slice(&since.subsec_nanos().to_le_bytes());
        match client.map(|c| c.ip()) {
            None => raw.push(0),
            Some(IpAddr::V4(v4)) => {
                raw.push(4);
                raw.extend_from_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                raw.push(6);
                raw.extend_from_slice(&v6.octets());
            }
        }
        raw.push(u8::from(tls));
        raw.push(version_code(req.version()));
        text(&mut raw, req.method().as_str().as_bytes());
        let headers = req.headers();
        match headers.get(header::HOST) {
            Some(h) => text(&mut raw, h.as_bytes()),
            None => opt_text(&mut raw, req.uri().authority().map(|a| a.as_str().as_bytes())),
        }
        text(&mut raw, req.uri().path_and_query().map_or(b"/", |p| p.as_str().as_bytes()));
        opt_text(&mut raw, headers.get(header::USER_AGENT).map(HeaderValue::as_bytes));
        opt_text(&mut raw, headers.get(header::REFERER).map(HeaderValue::as_bytes));
        Self { raw }
    }
}

/// Appends one whole entry, `record` and `answer`, to `buf` (length first).
pub fn pack(buf: &mut Vec<u8>, record: &Record, a: &Answer<'_>) {
    let answer_len = 2 + 8 + 8 + 4 + a.cache.len() + 4 + 4 + 2 + 8;
    let extra = a.cache_status.map_or(0, HeaderValue::len) + a.tier.map_or(0, str::len);
    let len = record.raw.len() + answer_len + extra;
    buf.reserve(4 + len);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(NONE32).to_le_bytes());
    buf.extend_from_slice(&record.raw);
    buf.extend_from_slice(&a.status.to_le_bytes());
    buf.extend_from_slice(&a.bytes.to_le_bytes());
    buf.extend_from_slice(&nanos(a.duration).to_le_bytes());
    text(buf, a.cache.as_bytes());
    opt_text(buf, a.cache_status.map(HeaderValue::as_bytes));
    opt_text(buf, a.tier.map(str::as_bytes));
    buf.extend_from_slice(&a.origin_status.unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&a.origin_time.map_or(NONE64, nanos).to_le_bytes());
}

/// The entries [`pack`] wrote into a buffer, in order. Stops at the first that does not read
/// back (which would be a bug here, not anyone's input).
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Entries<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let mut all = Reader(self.rest);
        let len = usize::try_from(all.u32()?).ok()?;
        let entry = all.take(len);
        self.rest = all.0;
        let Some(line) = entry.and_then(|e| unpack(Reader(e))) else {
            self.rest = &[];
            return None;
        };
        Some(line)
    }
}

fn unpack(mut r: Reader<'_>) -> Option<Line<'_>> {
    let secs = r.u64()?;
    let nanos = r.u32()?;
    let client = match r.u8()? {
        0 => None,
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).ok()?))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(r.take(16)?).ok()?))),
        _ => return None,
    };
    let tls = r.u8()? != 0;
    let version = version_of(r.u8()?);
    let method = r.text()?;
    let host = r.opt_text()?;
    let path = r.text()?;
    let user_agent = r.opt_text()?;
    let referer = r.opt_text()?;
    let status = r.u16()?;
    let bytes = r.u64()?;
    let duration = Duration::from_nanos(r.u64()?);
    let cache = r.text()?;
    let cache_status = r.opt_text()?;
    let tier = r.opt_text()?;
    let origin_status = Some(r.u16()?).filter(|s| *s != 0);
    let origin_time = Some(r.u64()?).filter(|t| *t != NONE64).map(Duration::from_nanos);
    Some(Line {
        time: UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999)),
        client,
        method,
        tls,
        version,
        host,
        path,
        user_agent,
        referer,
        status,
        bytes,
        duration,
        cache,
        cache_status,
        tier,
        origin_status,
        origin_time,
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NONE64 - 1)
}

/// A length-prefixed string. Longer than 4 GiB cannot happen (hyper caps a request head far
/// below); it would be cut.
fn text(buf: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len().min(NONE32 as usize - 1);
    buf.extend_from_slice(&(n as u32).to_le_bytes());
    buf.extend_from_slice(&bytes[..n]);
}

fn opt_text(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => text(buf, b),
        None => buf.extend_from_slice(&NONE32.to_le_bytes()),
    }
}

fn version_code(v: Version) -> u8 {
    match v {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 2,
    }
}

fn version_of(code: u8) -> Version {
    match code {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        3 => Version::HTTP_2,
        4 => Version::HTTP_3,
        _ => Version::HTTP_11,
    }
}

/// Reads packed fields front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (now, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(now)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn text(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.take(usize::try_from(n).ok()?)
    }

    fn opt_text(&mut self) -> Option<Option<&'a [u8]>> {
        let n = self.u32()?;
        if n == NONE32 {
            return Some(None);
        }
        self.take(usize::try_from(n).ok()?).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::observe::record::*;

    fn request(ua: &[u8], path: &str) -> Request<()> {
        let mut b = Request::builder().uri(path).header("host", "cdn.example");
        if let Ok(v) = HeaderValue::from_bytes(ua) {
            b = b.header("user-agent", v);
        }
        b.body(()).expect("request")
    }

    proptest! {
        /// Whatever a request and its answer hold, one entry or many read back exactly.
        #[test]
        fn entries_read_back_as_packed(
            ua in proptest::collection::vec(0x20u8..0x7f, 0..80),
            status in 100u16..1000,
            bytes in any::<u64>(),
            micros in any::<u32>(),
            cache_status in proptest::option::of("[ -~]{0,40}"),
            origin in proptest::option::of(100u16..1000),
            v6 in any::<bool>(),
            n in 1usize..4,
        ) {
            let req = request(&ua, "/a/b?c=d");
            let client: SocketAddr = if v6 { "[2001:db8::7]:443".parse() } else { "192.0.2.7:5555".parse() }
                .expect("address");
            let time = UNIX_EPOCH + Duration::new(1_765_000_000, 123_456_789);
            let record = Record::begin(&req, Some(client), true, time);
            let cs = cache_status.map(|c| HeaderValue::from_str(&c).expect("value"));
            let answer = Answer {
                status,
                bytes,
                duration: Duration::from_micros(u64::from(micros)),
                cache: "hit",
                cache_status: cs.as_ref(),
                tier: Some("memory"),
                origin_status: origin,
                origin_time: origin.map(|_| Duration::from_millis(7)),
            };
            let mut buf = Vec::new();
            for _ in 0..n {
                pack(&mut buf, &record, &answer);
            }
            let lines: Vec<Line<'_>> = Entries::new(&buf).collect();
            prop_assert_eq!(lines.len(), n);
            let l = lines[n - 1];
            prop_assert_eq!(l.time, time);
            prop_assert_eq!(l.client, Some(client.ip()));
            prop_assert_eq!(l.method, b"GET");
            prop_assert!(l.tls);
            prop_assert_eq!(l.host, Some(&b"cdn.example"[..]));
            prop_assert_eq!(l.path, b"/a/b?c=d");
            prop_assert_eq!(l.user_agent, Some(&ua[..]).filter(|_| HeaderValue::from_bytes(&ua).is_ok()));
            prop_assert_eq!(l.referer, None);
            prop_assert_eq!((l.status, l.bytes, l.duration), (status, bytes, answer.duration));
            prop_assert_eq!(l.cache, b"hit");
            prop_assert_eq!(l.cache_status, cs.as_ref().map(HeaderValue::as_bytes));
            prop_assert_eq!(l.tier, Some(&b"memory"[..]));
            prop_assert_eq!(l.origin_status, origin);
            prop_assert_eq!(l.origin_time, answer.origin_time);
        }

        /// A buffer cut anywhere reads back the whole entries before the cut and nothing more.
        #[test]
        fn a_cut_buffer_reads_back_what_is_whole(cut in 0usize..400) {
            let req = request(b"curl/8", "/x");
            let record = Record::begin(&req, None, false, UNIX_EPOCH);
            let answer = Answer {
                status: 200,
                bytes: 1,
                duration: Duration::ZERO,
                cache: "miss",
                cache_status: None,
                tier: None,
                origin_status: Some(200),
                origin_time: None,
            };
            let mut buf = Vec::new();
            pack(&mut buf, &record, &answer);
            let one = buf.len();
            pack(&mut buf, &record, &answer);
            let cut = cut.min(buf.len());
            let whole = if cut == buf.len() { 2 } else if cut >= one { 1 } else { 0 };
            prop_assert_eq!(Entries::new(&buf[..cut]).count(), whole);
        }
    }
}
