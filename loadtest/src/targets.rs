//! What to request: the target origin, the precomputed request URIs, and the key sampler.
//!
//! Every URI is built once before the run (origin-form plus `Host` for HTTP/1.1, absolute for
//! HTTP/2, whose `:scheme` and `:authority` come from the URI), so the hot path only clones a
//! refcounted `Uri`. All targets share one origin: connections are opened to it alone.

use http::Uri;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::error::Error;

/// The origin every connection is opened to.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// `https` when true.
    pub tls: bool,
    /// Host name or IP literal (without brackets), for DNS and SNI.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `host[:port]` as the URL wrote it, for `Host` and `:authority`.
    pub authority: String,
}

/// How the next target is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pick {
    /// Each connection walks the list in order, starting at its own offset.
    RoundRobin,
    /// Uniformly at random.
    Uniform,
    /// Zipf-distributed rank with exponent `s`: index 0 is the most popular.
    Zipf(f64),
}

/// The targets of a run.
#[derive(Debug)]
pub(crate) struct Targets {
    pub origin: Origin,
    /// Request URIs, in key order.
    pub uris: Vec<Uri>,
    /// How to pick among them.
    pub pick: Pick,
    /// Shown in the report: the first URL, or `BASE/{0..N-1}`.
    pub label: String,
}

impl Targets {
    /// Targets from explicit URLs (from the command line or a file).
    pub fn from_urls(urls: &[String], pick: Pick, http2: bool) -> Result<Self, Error> {
        let first = urls.first().ok_or(Error::NoTargets)?;
        let origin = origin_of(first)?;
        let mut uris = Vec::with_capacity(urls.len());
        for url in urls {
            let this = origin_of(url)?;
            if this.tls != origin.tls || this.host != origin.host || this.port != origin.port {
                return Err(Error::MixedOrigins(first.clone(), url.clone()));
            }
            let parsed = parse_uri(url)?;
            let path = parsed.path_and_query().map_or("/", |p| p.as_str());
            uris.push(request_uri(&origin, path, http2)?);
        }
        let label =
            if urls.len() == 1 { first.clone() } else { format!("{first} (+{} more)", urls.len() - 1) };
        Ok(Self { origin, uris, pick, label })
    }

    /// The key space `base/0 … base/keys-1`.
    pub fn key_space(base: &str, keys: u64, pick: Pick, http2: bool) -> Result<Self, Error> {
        if keys == 0 {
            return Err(Error::Invalid("--keys must be at least 1".into()));
        }
        let origin = origin_of(base)?;
        let parsed = parse_uri(base)?;
        if parsed.query().is_some() {
            return Err(Error::Invalid(format!("--base {base:?} must not have a query")));
        }
        let prefix = parsed.path().trim_end_matches('/');
        let count = usize::try_from(keys).map_err(|_| Error::Invalid("--keys is too large".into()))?;
        let mut uris = Vec::with_capacity(count);
        for k in 0..keys {
            uris.push(request_uri(&origin, &format!("{prefix}/{k}"), http2)?);
        }
        let label = format!("{}/{{0..{}}}", base.trim_end_matches('/'), keys - 1);
        Ok(Self { origin, uris, pick, label })
    }
}

fn parse_uri(url: &str) -> Result<Uri, Error> {
    url.parse::<Uri>().map_err(|e| Error::Invalid(format!("invalid URL {url:?}: {e}")))
}

/// The origin (scheme, host, port) of an absolute http(s) URL.
pub(crate) fn origin_of(url: &str) -> Result<Origin, Error> {
    let uri = parse_uri(url)?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(Error::Invalid(format!("invalid URL {url:?}: the scheme must be http or https"))),
    };
    let authority =
        uri.authority().ok_or_else(|| Error::Invalid(format!("invalid URL {url:?}: a host is required")))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Origin { tls, host, port, authority: authority.as_str().to_owned() })
}

fn request_uri(origin: &Origin, path: &str, http2: bool) -> Result<Uri, Error> {
    let text = if http2 {
        let scheme = if origin.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", origin.authority)
    } else {
        path.to_owned()
    };
    text.parse::<Uri>().map_err(|e| Error::Invalid(format!("invalid target path {path:?}: {e}")))
}

/// Picks target indexes for one worker; seeded per worker so runs are reproducible.
#[derive(Debug)]
pub(crate) struct Sampler {
    rng: Xoshiro256PlusPlus,
    zipf: Option<Zipf<f64>>,
    n: usize,
    next: usize,
    pick: Pick,
}

impl Sampler {
    /// A sampler over `n` targets for worker `worker` of a run seeded with `seed`.
    pub fn new(pick: Pick, n: usize, seed: u64, worker: usize) -> Result<Self, Error> {
        let zipf = match pick {
            Pick::Zipf(s) => {
                Some(Zipf::new(n as f64, s).map_err(|e| Error::Invalid(format!("--zipf {s}: {e}")))?)
            }
            _ => None,
        };
        // Mix the worker index into the seed so workers draw different, reproducible streams.
        let stream = seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Ok(Self { rng: Xoshiro256PlusPlus::seed_from_u64(stream), zipf, n, next: worker % n.max(1), pick })
    }

    /// The next target index in `0..n`.
    pub fn next_index(&mut self) -> usize {
        match self.pick {
            Pick::RoundRobin => {
                let i = self.next;
                self.next = if i + 1 == self.n { 0 } else { i + 1 };
                i
            }
            Pick::Uniform => self.rng.random_range(0..self.n),
            Pick::Zipf(_) => {
                let rank = self.zipf.as_ref().map_or(1.0, |z| z.sample(&mut self.rng));
                // Ranks are 1-based floats in 1..=n; clamp guards the float edge.
                (rank as usize).clamp(1, self.n) - 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(pick: Pick, n: usize, draws: usize, seed: u64) -> Vec<f64> {
        let mut sampler = Sampler::new(pick, n, seed, 0).expect("sampler");
        let mut counts = vec![0u64; n];
        for _ in 0..draws {
            counts[sampler.next_index()] += 1;
        }
        counts.into_iter().map(|c| c as f64 / draws as f64).collect()
    }

    /// The generalized harmonic number H(n, s) = Σ k^-s: the Zipf normalizing constant.
    fn harmonic(n: usize, s: f64) -> f64 {
        (1..=n).map(|k| (k as f64).powf(-s)).sum()
    }

    #[test]
    fn zipf_top_key_frequency_matches_theory() {
        for (n, s) in [(100, 1.0), (1000, 0.8), (10_000, 1.2), (50, 2.0)] {
            let freq = frequencies(Pick::Zipf(s), n, 200_000, 42);
            let expected = 1.0 / harmonic(n, s);
            // 200k draws: the standard error of the top frequency is below 0.0012.
            assert!((freq[0] - expected).abs() < 0.006, "n={n} s={s}: top {} vs theory {expected}", freq[0]);
            let second = 2f64.powf(-s) / harmonic(n, s);
            assert!((freq[1] - second).abs() < 0.006, "n={n} s={s}: second {} vs theory {second}", freq[1]);
        }
    }

    #[test]
    fn uniform_keys_are_flat() {
        let freq = frequencies(Pick::Uniform, 10, 100_000, 7);
        for f in freq {
            assert!((f - 0.1).abs() < 0.006, "{f}");
        }
    }

    #[test]
    fn same_seed_same_keys() {
        let draw = |seed| {
            let mut s = Sampler::new(Pick::Zipf(1.0), 1000, seed, 3).expect("sampler");
            (0..100).map(|_| s.next_index()).collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert_ne!(draw(9), draw(10));
    }

    #[test]
    fn round_robin_starts_at_the_worker_offset() {
        let mut s = Sampler::new(Pick::RoundRobin, 3, 0, 4).expect("sampler");
        let got: Vec<usize> = (0..5).map(|_| s.next_index()).collect();
        assert_eq!(got, vec![1, 2, 0, 1, 2]);
    }

    #[test]
    fn key_space_uris() {
        let t = Targets::key_space("http://cdn.example:8080/k/", 3, Pick::Uniform, false).expect("targets");
        assert_eq!(t.uris.iter().map(ToString::to_string).collect::<Vec<_>>(), ["/k/0", "/k/1", "/k/2"]);
        assert_eq!(t.origin.authority, "cdn.example:8080");
        let t = Targets::key_space("https://cdn.example", 1, Pick::Uniform, true).expect("targets");
        assert_eq!(t.uris[0].to_string(), "https://cdn.example/0");
        assert_eq!(t.origin.port, 443);
    }

    #[test]
    fn urls_must_share_an_origin() {
        let urls = ["http://a.example/x".to_owned(), "http://b.example/y".to_owned()];
        assert!(matches!(Targets::from_urls(&urls, Pick::RoundRobin, false), Err(Error::MixedOrigins(..))));
        assert!(origin_of("ftp://a/").is_err());
    }
}
