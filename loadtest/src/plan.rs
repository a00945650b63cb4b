//! Turns flags or a scenario file into a checked plan: targets, the request template, and the
//! phases to run in order.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request};
use stratus_config::purge::PurgeRequest;
use stratus_config::{HttpUrl, Scenario};

use crate::args::LoadtestArgs;
use crate::connect::Body;
use crate::error::Error;
use crate::schedule::Schedule;
use crate::targets::{Pick, Targets};

/// How a phase ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Length {
    /// After this long.
    Time(Duration),
    /// After exactly this many requests.
    Count(u64),
}

/// One phase of a run.
#[derive(Debug, Clone)]
pub(crate) struct PhasePlan {
    pub name: String,
    pub length: Length,
    /// Constant-rate or ramp schedule; closed loop when `None`.
    pub rate: Option<Schedule>,
    /// Left out of the totals.
    pub warmup: bool,
    /// Purge issued through the control plane when the phase starts.
    pub purge: Option<PurgeRequest>,
}

/// Everything a run needs, checked.
#[derive(Debug)]
pub(crate) struct Plan {
    pub targets: Targets,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub connections: usize,
    pub streams: usize,
    pub http2: bool,
    pub insecure: bool,
    pub timeout: Duration,
    pub seed: u64,
    pub phases: Vec<PhasePlan>,
    pub control: Option<HttpUrl>,
    pub json: bool,
    pub fail_on_errors: bool,
}

impl Plan {
    /// Builds the plan from the command line (and the scenario file it names).
    pub fn from_args(args: &LoadtestArgs) -> Result<Self, Error> {
        let scenario = match &args.scenario {
            Some(path) => Some(
                stratus_config::load(path)?
                    .loadtest
                    .ok_or_else(|| Error::Invalid(format!("{}: no [loadtest] section", path.display())))?,
            ),
            None => None,
        };
        let http2 = args.http2 || scenario.as_ref().is_some_and(|s| s.http2);
        let pick = |uniform: Pick, zipf: Option<f64>| match zipf {
            Some(s) if s > 0.0 && s.is_finite() => Ok(Pick::Zipf(s)),
            Some(s) => Err(Error::Invalid(format!("--zipf {s}: must be a positive number"))),
            None => Ok(uniform),
        };
        let targets = if let Some(s) = &scenario {
            Targets::key_space(s.base.as_str(), s.keys, pick(Pick::Uniform, s.zipf)?, http2)?
        } else if let (Some(base), Some(keys)) = (&args.base, args.keys) {
            if !args.urls.is_empty() || args.url_file.is_some() {
                return Err(Error::Invalid("give either URLs or --base/--keys, not both".into()));
            }
            Targets::key_space(base, keys, pick(Pick::Uniform, args.zipf)?, http2)?
        } else {
            let mut urls = args.urls.clone();
            if let Some(path) = &args.url_file {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Read { path: path.clone(), source: e })?;
                urls.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
            }
            Targets::from_urls(&urls, pick(Pick::RoundRobin, args.zipf)?, http2)?
        };

        let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::Invalid(format!("invalid method {:?}", args.method)))?;
        let mut headers = HeaderMap::new();
        if !http2 {
            // HTTP/1.1 needs Host; HTTP/2 carries it as :authority in the absolute URI.
            let host = HeaderValue::from_str(&targets.origin.authority)
                .map_err(|_| Error::Invalid(format!("invalid host {:?}", targets.origin.authority)))?;
            headers.insert(HOST, host);
        }
        for line in &args.headers {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| Error::Invalid(format!("header {line:?} must look like `Name: value`")))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| Error::Invalid(format!("invalid header name in {line:?}")))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| Error::Invalid(format!("invalid header value in {line:?}")))?;
            if name == HOST {
                headers.insert(name, value);
            } else {
                headers.append(name, value);
            }
        }
        let body = match (&args.body, &args.body_file) {
            (Some(text), _) => Bytes::from(text.clone()),
            (None, Some(path)) => {
                Bytes::from(std::fs::read(path).map_err(|e| Error::Read { path: path.clone(), source: e })?)
            }
            (None, None) => Bytes::new(),
        };

        let (connections, timeout, seed, phases, control) = match scenario {
            Some(s) => scenario_phases(s)?,
            None => (args.connections, args.timeout.get(), args.seed, cli_phases(args)?, None),
        };
        if connections == 0 || args.streams == 0 {
            return Err(Error::Invalid("-c and --streams must be at least 1".into()));
        }
        if timeout.is_zero() {
            return Err(Error::Invalid("--timeout must be greater than 0".into()));
        }
        Ok(Self {
            targets,
            method,
            headers,
            body,
            connections,
            streams: if http2 { args.streams } else { 1 },
            http2,
            insecure: args.insecure,
            timeout,
            seed,
            phases,
            control,
            json: args.json,
            fail_on_errors: args.fail_on_errors,
        })
    }

    /// Workers: one per connection for HTTP/1.1, `streams` per connection for HTTP/2.
    pub fn workers(&self) -> usize {
        self.connections * self.streams
    }

    /// The request for target `index`; everything but the header map is a refcount bump.
    pub fn request(&self, index: usize) -> Request<Body> {
        let mut req = Request::new(Body::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.targets.uris[index].clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// When each phase starts and (for timed phases) ends, given the run's start.
    pub fn timeline(&self, t0: Instant) -> Vec<(Instant, Option<Instant>)> {
        let mut at = t0;
        self.phases
            .iter()
            .map(|p| match p.length {
                Length::Time(d) => {
                    let span = (at, Some(at + d));
                    at += d;
                    span
                }
                Length::Count(_) => (at, None),
            })
            .collect()
    }
}

fn cli_phases(args: &LoadtestArgs) -> Result<Vec<PhasePlan>, Error> {
    let rate = match args.rate {
        Some(r) if r > 0.0 && r.is_finite() => Some(r),
        Some(r) => return Err(Error::Invalid(format!("--rate {r}: must be a positive number"))),
        None => None,
    };
    let mut phases = Vec::new();
    if let Some(w) = args.warmup.filter(|w| !w.get().is_zero()) {
        let d = w.get();
        let rate = rate.map(|r| Schedule::constant(r, Some(d)));
        phases.push(PhasePlan {
            name: "warm-up".into(),
            length: Length::Time(d),
            rate,
            warmup: true,
            purge: None,
        });
    }
    let length = match args.requests {
        Some(0) => return Err(Error::Invalid("-n must be at least 1".into())),
        Some(n) => Length::Count(n),
        None if args.duration.get().is_zero() => {
            return Err(Error::Invalid("-d must be greater than 0".into()));
        }
        None => Length::Time(args.duration.get()),
    };
    let rate = rate.map(|r| {
        let mut s = Schedule::constant(r, None);
        if let Length::Time(d) = length {
            s.length = Some(d);
        } else if let Length::Count(n) = length {
            // -n with --rate: n requests at the rate; the schedule ends with the last one.
            s.length = Some(Duration::from_secs_f64(n as f64 / r));
        }
        s
    });
    phases.push(PhasePlan { name: "main".into(), length, rate, warmup: false, purge: None });
    Ok(phases)
}

type ScenarioParts = (usize, Duration, u64, Vec<PhasePlan>, Option<HttpUrl>);

fn scenario_phases(s: Scenario) -> Result<ScenarioParts, Error> {
    let phases = s
        .phases
        .into_iter()
        .map(|p| {
            let d = p.duration.get();
            if d.is_zero() {
                return Err(Error::Invalid(format!("phase {:?}: duration must be greater than 0", p.name)));
            }
            let rate = p.rate.map(|r| Schedule { from: r, to: p.ramp_to.unwrap_or(r), length: Some(d) });
            Ok(PhasePlan { name: p.name, length: Length::Time(d), rate, warmup: p.warmup, purge: p.purge })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok((s.connections, s.timeout.get(), s.seed, phases, s.control))
}
