//! Load-test scenarios for `stratus loadtest --scenario FILE` (`[loadtest]`).

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;
use crate::net::HttpUrl;
use crate::purge::PurgeRequest;
use crate::units::Duration;

/// A scenario: a target, then phases run in order.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Base URL of the key space (`BASE/0` … `BASE/N-1`).
    pub base: HttpUrl,
    /// Number of keys.
    pub keys: u64,
    /// Zipf exponent for key popularity; uniform when unset.
    #[serde(default)]
    pub zipf: Option<f64>,
    /// Seed for the key sampler, so runs are reproducible.
    #[serde(default)]
    pub seed: u64,
    /// Connections.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Use HTTP/2.
    #[serde(default)]
    pub http2: bool,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Control plane for purge steps.
    #[serde(default)]
    pub control: Option<HttpUrl>,
    /// The phases, in order.
    pub phases: Vec<Phase>,
}

fn default_connections() -> usize {
    32
}

fn default_timeout() -> Duration {
    Duration::secs(10)
}

/// One phase of a scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Name shown in the report.
    pub name: String,
    /// How long the phase lasts.
    pub duration: Duration,
    /// Constant request rate (requests per second); closed loop when unset.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Ramp the rate linearly from `rate` to this by the end of the phase.
    #[serde(default)]
    pub ramp_to: Option<f64>,
    /// Results of this phase are left out of the totals (warm-up).
    #[serde(default)]
    pub warmup: bool,
    /// Purge issued through the control plane when the phase starts (the control API's body:
    /// `files`, `prefixes`, `tags`, `hosts`, `purge_everything`, `soft`).
    #[serde(default)]
    pub purge: Option<PurgeRequest>,
}

impl Scenario {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.keys == 0 {
            return Err(Invalid::new("keys", "must be at least 1"));
        }
        if self.zipf.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
            return Err(Invalid::new("zipf", "must be a positive number"));
        }
        if self.connections == 0 {
            return Err(Invalid::new("connections", "must be at least 1"));
        }
        if self.phases.is_empty() {
            return Err(Invalid::new("phases", "at least one phase is required"));
        }
        for (i, p) in self.phases.iter().enumerate() {
            if p.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                return Err(Invalid::new(format!("phases[{i}].rate"), "must be a positive number"));
            }
            if p.ramp_to.is_some() && p.rate.is_none() {
                return Err(Invalid::new(format!("phases[{i}].ramp_to"), "needs rate"));
            }
            if p.purge.as_ref().is_some_and(PurgeRequest::is_empty) {
                return Err(Invalid::new(format!("phases[{i}].purge"), "names no target"));
            }
            if p.purge.is_some() && self.control.is_none() {
                return Err(Invalid::new(
                    format!("phases[{i}].purge"),
                    "needs control (the control-plane URL)",
                ));
            }
        }
        Ok(())
    }
}
