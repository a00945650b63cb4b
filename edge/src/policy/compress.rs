//! On-the-fly compression (gzip, brotli, zstd with `async-compression`) of responses the
//! origin sent uncompressed, for compressible types.
//!
//! **Negotiation, bounded.** A site with compression on replaces each request's
//! `Accept-Encoding` by the one encoding it will get — `br`, else `zstd`, else `gzip`, else
//! none (identity) — before the key is built and the origin is asked, as Fastly and CloudFront
//! normalise it. So an origin's `Vary: Accept-Encoding` makes at most four variants, and every
//! client that accepts brotli shares one.
//!
//! **Compressed once, stored.** A compressible response (200, no `Content-Encoding`, a
//! configured type, not `no-transform`) is stored with `Vary: Accept-Encoding` added, and its
//! body is compressed for the request's encoding in the fill task, after it arrived whole,
//! then stored as that variant with `Content-Encoding`, its own length and a weak `ETag` (the
//! compressed bytes are not the origin's, yet the origin still recognises the validator when
//! the edge revalidates). Later hits for that encoding are plain hits: no compression on the
//! hit path. Another encoding is another variant, filled from the origin like any Vary miss.
//! Responses not stored (misses still streaming, passes) are compressed as they stream.
//!
//! Left alone: other statuses (a 206 is cut from the identity body), bodies smaller than
//! `min_size` or larger than [`MAX_STORED`], types not in `types` (images, video and archives
//! are compressed already), and anything the origin encoded itself.

use std::io;

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::Frame;
use stratus_config::policy::Compression;
use tokio::io::{AsyncBufRead, AsyncReadExt};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::body::{Body, BoxError};

/// Larger bodies are stored and sent as the origin sent them (CloudFront's limit, 10 MB): one
/// compression must not hold a fill task for long.
pub(crate) const MAX_STORED: usize = 10 << 20;

/// The encodings the edge produces, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Brotli (`br`).
    Br,
    /// Zstandard (`zstd`).
    Zstd,
    /// `gzip`.
    Gzip,
    /// No compression.
    Identity,
}

impl Encoding {
    fn token(self) -> Option<&'static str> {
        match self {
            Self::Br => Some("br"),
            Self::Zstd => Some("zstd"),
            Self::Gzip => Some("gzip"),
            Self::Identity => None,
        }
    }
}

/// The best encoding a request's `Accept-Encoding` accepts: `br` > `zstd` > `gzip` >
/// identity. `q=0` refuses a coding; `*` accepts the ones not named.
pub(crate) fn negotiate(h: &HeaderMap) -> Encoding {
    negotiate_values(h.get_all(header::ACCEPT_ENCODING).iter())
}

/// [`negotiate`] over the values of `Accept-Encoding`. Codings are compared in place, without
/// a lower-cased copy of each (every request with compression on is negotiated).
fn negotiate_values<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Encoding {
    let mut accepted = [None::<bool>; 3];
    let mut star = None::<bool>;
    for value in values {
        // `to_str` admits only tab and visible ASCII, so the ASCII trims below trim what
        // `str::trim` would, without decoding characters.
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or("").trim_ascii();
            let slot = if coding.eq_ignore_ascii_case("br") {
                &mut accepted[0]
            } else if coding.eq_ignore_ascii_case("zstd") {
                &mut accepted[1]
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut accepted[2]
            } else if coding == "*" {
                &mut star
            } else {
                continue;
            };
            let refused = params.any(|p| {
                let p = p.trim_ascii();
                let q = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="));
                q.is_some_and(|q| q.trim_ascii().parse::<f32>().map_or(true, |q| q <= 0.0))
            });
            *slot = Some(!refused);
        }
    }
    preferred(accepted, star)
}

/// The first of `br`, `zstd`, `gzip` that is accepted (`accepted` in that order; a coding not
/// named takes `star`'s answer), else identity.
fn preferred(accepted: [Option<bool>; 3], star: Option<bool>) -> Encoding {
    let order = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];
    order
        .into_iter()
        .zip(accepted)
        .find(|(_, a)| a.or(star).unwrap_or(false))
        .map_or(Encoding::Identity, |(e, _)| e)
}

/// The media type of a `Content-Type` value (before any parameter, without surrounding
/// whitespace) and its top-level type (before the `/`). Byte scans: `str::split` by a
/// `char` cost a hit about 300 instructions here (`docs/performance.md`, "The hit's own
/// work, fifth round").
fn media_type(value: &[u8]) -> (&[u8], &[u8]) {
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    let media = value[..end].trim_ascii();
    let top = media.iter().position(|&b| b == b'/').map_or(media, |slash| &media[..slash]);
    (media, top)
}

/// The bit of [`Compressor::type_lengths`] for a length; every length from 63 on shares the
/// top bit.
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// A site's compression settings.
#[derive(Debug)]
pub(super) struct Compressor {
    enabled: bool,
    /// Configured types, lower-cased: whole media types, and top-level types (`text/*`).
    types: Vec<String>,
    tops: Vec<String>,
    /// Bit `n` set when a configured whole type is `n` bytes long (`n` < 64): most responses'
    /// types (images, video, `application/octet-stream`) are turned away by their length,
    /// without a comparison.
    type_lengths: u64,
    min_size: u64,
}

impl Compressor {
    pub(super) fn new(cfg: &Compression) -> Self {
        let types = lowered(&cfg.types, |t| !t.ends_with("/*"));
        Self {
            enabled: cfg.enabled,
            type_lengths: types.iter().fold(0, |mask, t| mask | length_bit(t.len())),
            types,
            tops: lowered(&cfg.types, |t| t.ends_with("/*"))
                .into_iter()
                .map(|t| t[..t.len() - 2].to_owned())
                .collect(),
            min_size: cfg.min_size.bytes(),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a body of `len` bytes is worth compressing and small enough to.
    pub(super) fn fits(&self, len: usize) -> bool {
        len as u64 >= self.min_size && len <= MAX_STORED
    }

    /// Replaces the request's `Accept-Encoding` by its negotiated encoding (or removes it).
    /// A request without the field, or with exactly the one token it would be replaced by
    /// (a request from another edge, or a client that sends one coding), is left as it is:
    /// one lookup, no rewrite.
    pub(super) fn normalize(&self, h: &mut HeaderMap) -> Encoding {
        let (enc, kept) = {
            let all = h.get_all(header::ACCEPT_ENCODING);
            let mut values = all.iter();
            let Some(first) = values.next() else { return Encoding::Identity };
            let single = values.next().is_none();
            let enc = negotiate_values(all.iter());
            (enc, single && enc.token().is_some_and(|t| first.as_bytes() == t.as_bytes()))
        };
        match enc.token() {
            _ if kept => {}
            Some(t) => {
                h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(t));
            }
            None => {
                h.remove(header::ACCEPT_ENCODING);
            }
        }
        enc
    }

    /// Whether a response with this head is one the edge compresses (its length aside when
    /// unknown).
    pub(super) fn compressible(&self, status: StatusCode, h: &HeaderMap) -> bool {
        if !self.enabled || status != StatusCode::OK {
            return false;
        }
        // The type first: it turns away most responses that are not for compressing with one
        // lookup (this runs on every hit), and it is compared in place as bytes, without a
        // lowercased copy or a check that the value is text (the configured types are ASCII,
        // so no other bytes match), against types split by kind once, when the site is loaded.
        let Some(ct) = h.get(header::CONTENT_TYPE) else { return false };
        let (media, top) = media_type(ct.as_bytes());
        let typed = (self.type_lengths & length_bit(media.len()) != 0
            && self.types.iter().any(|t| media.eq_ignore_ascii_case(t.as_bytes())))
            || self.tops.iter().any(|t| top.eq_ignore_ascii_case(t.as_bytes()));
        if !typed || h.contains_key(header::CONTENT_RANGE) {
            return false;
        }
        if h.get(header::CONTENT_ENCODING).is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity")) {
            return false;
        }
        if length(h).is_some_and(|n| n < self.min_size || n > MAX_STORED as u64) {
            return false;
        }
        let no_transform = h
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("no-transform"));
        !no_transform
    }

    /// Store side: adds `Vary: Accept-Encoding` to a compressible response about to be stored
    /// and returns the encoding its body is to be stored in.
    pub(super) fn for_store(
        &self,
        status: StatusCode,
        h: &mut HeaderMap,
        request: &HeaderMap,
    ) -> Option<Encoding> {
        if !self.compressible(status, h) {
            return None;
        }
        add_vary(h);
        let enc = negotiate(request);
        (enc != Encoding::Identity).then_some(enc)
    }

    /// Response side: compresses an eligible identity response as it streams (one not
    /// already compressed in the store) and marks compressible ones `Vary: Accept-Encoding`.
    pub(super) fn respond(&self, mut res: Response<Body>, enc: Encoding, head_only: bool) -> Response<Body> {
        if !self.compressible(res.status(), res.headers()) {
            return res;
        }
        add_vary(res.headers_mut());
        let Some(token) = enc.token() else { return res };
        let h = res.headers_mut();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
        h.remove(header::CONTENT_LENGTH);
        h.remove(header::ACCEPT_RANGES);
        weaken_etag(h);
        if head_only {
            return res;
        }
        res.map(|body| {
            let data = BodyDataStream::new(body).map_err(io::Error::other);
            let reader = StreamReader::new(data);
            let out = ReaderStream::new(encoder(enc, reader, true))
                .map_ok(Frame::data)
                .map_err(|e| Box::new(e) as BoxError);
            StreamBody::new(out).boxed_unsync()
        })
    }
}

/// The configured types that `pick` selects, trimmed and lower-cased.
fn lowered(types: &[String], pick: impl Fn(&str) -> bool) -> Vec<String> {
    types.iter().map(|t| t.trim().to_ascii_lowercase()).filter(|t| pick(t)).collect()
}

/// Compresses a whole body for storing, and fixes the head to describe it.
pub(crate) async fn compress_stored(enc: Encoding, body: &Bytes, h: &mut HeaderMap) -> io::Result<Bytes> {
    let mut out = Vec::with_capacity(body.len() / 3);
    encoder(enc, &body[..], false).read_to_end(&mut out).await?;
    if let Some(token) = enc.token() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    weaken_etag(h);
    Ok(Bytes::from(out))
}

/// An encoder over `input`; `streaming` picks faster settings for per-request compression.
fn encoder<'a, R: AsyncBufRead + Unpin + Send + 'a>(
    enc: Encoding,
    input: R,
    streaming: bool,
) -> Box<dyn tokio::io::AsyncRead + Unpin + Send + 'a> {
    // Brotli's default quality (11) is for offline use: ~1 MB/s. 5 (stored, paid once) and
    // 4 (streamed) compress better than gzip at gzip-like speed.
    let brotli = if streaming { 4 } else { 5 };
    match enc {
        Encoding::Br => Box::new(BrotliEncoder::with_quality(input, Level::Precise(brotli))),
        Encoding::Zstd => Box::new(ZstdEncoder::with_quality(input, Level::Precise(3))),
        Encoding::Gzip | Encoding::Identity => Box::new(GzipEncoder::with_quality(input, Level::Precise(6))),
    }
}

fn length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse().ok())
}

/// Adds `Accept-Encoding` to `Vary` unless it is there (or `*` is).
fn add_vary(h: &mut HeaderMap) {
    let present = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| n.trim().eq_ignore_ascii_case("accept-encoding") || n.trim() == "*");
    if !present {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A strong `ETag` becomes weak: the compressed bytes differ from the origin's, but the
/// representation is the same (nginx does the same when it gzips).
fn weaken_etag(h: &mut HeaderMap) {
    let etag = HeaderName::from_static("etag");
    if let Some(v) = h.get(&etag)
        && v.as_bytes().starts_with(b"\"")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(v.as_bytes());
        if let Ok(w) = HeaderValue::from_bytes(&weak) {
            h.insert(etag, w);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(accept: &[&str], want: Encoding) {
        let mut h = HeaderMap::new();
        for v in accept {
            h.append(header::ACCEPT_ENCODING, v.parse().unwrap());
        }
        assert_eq!(negotiate(&h), want, "{accept:?}");
    }

    #[test]
    fn negotiation_table() {
        check(&[], Encoding::Identity);
        check(&["gzip, deflate, br"], Encoding::Br);
        check(&["gzip, deflate, br, zstd"], Encoding::Br);
        check(&["br;q=0, zstd, gzip"], Encoding::Zstd);
        check(&["BR;Q=0.0, gzip;q=0.5"], Encoding::Gzip);
        check(&["gzip;q=0"], Encoding::Identity);
        check(&["*"], Encoding::Br);
        check(&["*;q=0, gzip"], Encoding::Gzip);
        check(&["br;q=0", "*"], Encoding::Zstd);
        check(&["identity"], Encoding::Identity);
        check(&["deflate"], Encoding::Identity);
        check(&["x-gzip"], Encoding::Gzip);
        check(&["gzip;q=x"], Encoding::Identity);
    }

    #[test]
    fn eligibility() {
        let c = Compressor::new(&Compression::default());
        let head = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            }
            h
        };
        let ok = StatusCode::OK;
        assert!(c.compressible(
            ok,
            &head(&[("content-type", "text/css; charset=utf-8"), ("content-length", "5000")])
        ));
        assert!(c.compressible(ok, &head(&[("content-type", "application/json")])));
        assert!(!c.compressible(ok, &head(&[("content-type", "image/png"), ("content-length", "5000")])));
        assert!(!c.compressible(ok, &head(&[("content-type", "text/css"), ("content-length", "100")])));
        assert!(!c.compressible(ok, &head(&[("content-type", "text/css"), ("content-encoding", "gzip")])));
        assert!(!c.compressible(
            ok,
            &head(&[("content-type", "text/css"), ("cache-control", "public, no-transform")])
        ));
        assert!(!c.compressible(StatusCode::NOT_FOUND, &head(&[("content-type", "text/html")])));
        assert!(!c.compressible(ok, &head(&[])), "no type, no guess");
        assert!(c.compressible(ok, &head(&[("content-type", "Text/Plain")])), "text/* in any case");
        assert!(c.compressible(ok, &head(&[("content-type", "application/JSON; charset=utf-8")])));
        assert!(!c.compressible(ok, &head(&[("content-type", "textual/plain")])));
        // Every configured type matches in any case, whatever its length (the length filter).
        for t in Compression::default().types.iter().filter(|t| !t.ends_with("/*")) {
            assert!(c.compressible(ok, &head(&[("content-type", &t.to_uppercase())])), "{t}");
        }
        let long = "application/vnd.example.a-media-type-name-longer-than-sixty-three-bytes+json";
        let c_long = Compressor::new(&Compression { types: vec![long.into()], ..Compression::default() });
        assert!(c_long.compressible(ok, &head(&[("content-type", long)])));
        assert!(!c_long.compressible(ok, &head(&[("content-type", &format!("{long}x"))])));
        assert!(!c_long.compressible(ok, &head(&[("content-type", "application/json")])));
        assert!(!c.compressible(ok, &head(&[("content-type", "application/json+x")])));
        assert!(
            !c.compressible(ok, &head(&[("content-type", "text/plain"), ("content-range", "bytes 0-1/9")])),
            "a part is cut from the identity body"
        );
    }

    #[tokio::test]
    async fn stored_bodies_round_trip() {
        use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
        let body = Bytes::from("body { color: red; }\n".repeat(200));
        for enc in [Encoding::Br, Encoding::Zstd, Encoding::Gzip] {
            let mut h = HeaderMap::new();
            h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
            let packed = compress_stored(enc, &body, &mut h).await.unwrap();
            assert!(packed.len() < body.len() / 10, "{enc:?}: {}", packed.len());
            assert_eq!(h[header::ETAG], "W/\"v1\"");
            assert_eq!(h[header::CONTENT_LENGTH], packed.len().to_string().as_str());
            let mut out = Vec::new();
            match enc {
                Encoding::Br => BrotliDecoder::new(&packed[..]).read_to_end(&mut out).await,
                Encoding::Zstd => ZstdDecoder::new(&packed[..]).read_to_end(&mut out).await,
                _ => GzipDecoder::new(&packed[..]).read_to_end(&mut out).await,
            }
            .unwrap();
            assert_eq!(out, body);
        }
    }

    /// The negotiation as it was written first (a lower-cased copy of every coding), to check
    /// the in-place comparison against.
    fn negotiate_by_copy(h: &HeaderMap) -> Encoding {
        let mut accepted = [None::<bool>; 3];
        let mut star = None::<bool>;
        for value in h.get_all(header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut params = item.split(';');
                let coding = params.next().unwrap_or("").trim().to_ascii_lowercase();
                let refused = params.any(|p| {
                    let p = p.trim();
                    let q = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="));
                    q.is_some_and(|q| q.trim().parse::<f32>().map_or(true, |q| q <= 0.0))
                });
                let slot = match coding.as_str() {
                    "br" => &mut accepted[0],
                    "zstd" => &mut accepted[1],
                    "gzip" | "x-gzip" => &mut accepted[2],
                    "*" => &mut star,
                    _ => continue,
                };
                *slot = Some(!refused);
            }
        }
        preferred(accepted, star)
    }

    fn accept(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(header::ACCEPT_ENCODING, v);
            }
        }
        h.insert(header::USER_AGENT, HeaderValue::from_static("t"));
        h
    }

    /// What `normalize` leaves: the one token of the negotiated encoding, or no field at all;
    /// the other fields untouched; and normalizing again changes nothing.
    fn check_normalized(values: &[&str]) -> Result<(), TestCaseError> {
        let c = Compressor::new(&Compression::default());
        let mut h = accept(values);
        let want = negotiate_by_copy(&h);
        let enc = c.normalize(&mut h);
        prop_assert_eq!(enc, want, "{:?}", values);
        let left: Vec<_> = h.get_all(header::ACCEPT_ENCODING).iter().map(|v| v.as_bytes().to_vec()).collect();
        let expected: Vec<Vec<u8>> = enc.token().map(|t| t.as_bytes().to_vec()).into_iter().collect();
        prop_assert_eq!(left, expected, "{:?}", values);
        prop_assert_eq!(h.get(header::USER_AGENT).map(HeaderValue::as_bytes), Some(&b"t"[..]));
        let before = h.clone();
        prop_assert_eq!(c.normalize(&mut h), enc);
        prop_assert_eq!(h, before);
        Ok(())
    }

    #[test]
    fn normalization_table() {
        for values in [
            &[][..],
            &["gzip"],
            &["br"],
            &["zstd"],
            &["GZIP"],
            &["gzip", "gzip"],
            &["br", "gzip"],
            &["gzip, deflate, br, zstd"],
            &["identity"],
            &["gzip;q=0"],
            &["br;q=0", "br"],
            &["Br"],
        ] {
            check_normalized(values).unwrap();
        }
    }

    proptest! {
        /// The byte scan reads the media type and the top-level type that splitting the text
        /// does, `Content-Type` values with parameters, spaces and odd slashes included.
        #[test]
        fn media_type_reads_as_splitting_the_text(value in "[ \t]?(text|application|[a-zA-Z0-9+.-]{0,8})(/[a-zA-Z0-9+./-]{0,10})?[ \t]?(;[ \t]?[!-~ \t]{0,12})*") {
            let (media, top) = media_type(value.as_bytes());
            let want = value.split(';').next().unwrap_or("").trim();
            prop_assert_eq!(media, want.as_bytes());
            prop_assert_eq!(top, want.split('/').next().unwrap_or("").as_bytes());
        }

        #[test]
        fn negotiation_is_as_by_copy(values in proptest::collection::vec("(?i)[ \t]?(br|zstd|x?gzip|identity|\\*|[a-z*;=0-9., \t]{0,12})[ \t]?(;[ \t]?q=[ \t]?[01](\\.[0-9])?[ \t]?)?(,[ \t]?(br|zstd|gzip|\\*|[A-Za-z;=0-9 \t]{0,8}))*", 0..3)) {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            prop_assert_eq!(negotiate(&accept(&values)), negotiate_by_copy(&accept(&values)), "{:?}", values);
            check_normalized(&values)?;
        }

        #[test]
        fn negotiation_never_picks_a_refused_coding(value in "[a-z*;=0-9., ]{0,40}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(header::ACCEPT_ENCODING, v);
            }
            let enc = negotiate(&h);
            if let Some(token) = enc.token() {
                prop_assert!(value.contains(token) || value.contains('*'), "{value:?} → {enc:?}");
            }
        }
    }
}
