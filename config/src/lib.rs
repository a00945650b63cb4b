//! One typed configuration for every Stratus component.
//!
//! A configuration file is TOML with one section per component — `[edge]`, `[origin]`,
//! `[control]`, `[loadtest]` — any of which may be present. Values use human units
//! (`256MiB`, `30s`), unknown keys are rejected, and every error names the file, the line and
//! the key:
//!
//! ```
//! let err = stratus_config::parse("edge.toml", "[edge]\nlisteners = [{ listen = \"0.0.0.0:80\" }]\n\
//!     sites = [{ hosts = [\"*\"], origins = [\"htp:/x\"] }]\n").unwrap_err();
//! assert_eq!(err.to_string(),
//!     "edge.toml:3: edge.sites[0].origins[0]: invalid URL \"htp:/x\" (the scheme must be http or https)");
//! ```
//!
//! Parsing is two steps, as in ripgrep: serde builds the raw types, then `validate` checks what
//! types cannot say (cross-field rules). Secrets may come from the environment instead of the
//! file; [`Env`] is read once in `main` and applied with [`StratusConfig::apply_env`].

mod cluster;
pub mod control;
pub mod edge;
pub mod fleet;
mod invalid;
pub mod loadtest;
mod net;
pub mod observe;
pub mod origin;
pub mod policy;
pub mod protocol;
pub mod purge;
mod secret;
mod units;
mod upstream;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use control::{ControlConfig, ControlUrls, NatsServers};
pub use edge::EdgeConfig;
pub use invalid::Invalid;
pub use loadtest::Scenario;
pub use net::{HttpUrl, IpRange, ListenAddr};
pub use origin::OriginConfig;
pub use secret::Secret;
pub use units::{ByteSize, Duration};

/// A whole configuration file: any subset of the components' sections.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StratusConfig {
    /// `[edge]`: the caching proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeConfig>,
    /// `[origin]`: the S3-compatible bucket server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginConfig>,
    /// `[control]`: the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlConfig>,
    /// `[loadtest]`: a load-test scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loadtest: Option<Scenario>,
}

/// Secrets and settings taken from the environment, read once by the binary.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `STRATUS_TOKEN`: bearer token of the control API, the edge admin API and subscriptions.
    pub token: Option<Secret>,
    /// `STRATUS_ACCESS_KEY`: the origin's S3 access key id.
    pub access_key: Option<Secret>,
    /// `STRATUS_SECRET_KEY`: the origin's S3 secret key.
    pub secret_key: Option<Secret>,
    /// `STRATUS_ORIGIN_ACCESS_KEY`: the access key id an edge signs origin requests with
    /// (`origin_auth`).
    pub origin_access_key: Option<Secret>,
    /// `STRATUS_ORIGIN_SECRET_KEY`: the secret key an edge signs origin requests with.
    pub origin_secret_key: Option<Secret>,
    /// `STRATUS_METRICS_TOKEN`: read-only token for `/metrics` (edge admin, control, origin).
    pub metrics_token: Option<Secret>,
    /// `STRATUS_CONTROL`: the control plane's URL for `stratus purge`.
    pub control: Option<String>,
}

impl Env {
    /// Reads the `STRATUS_*` variables; empty ones count as unset.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).map(Secret::new);
        Self {
            token: var("STRATUS_TOKEN"),
            access_key: var("STRATUS_ACCESS_KEY"),
            secret_key: var("STRATUS_SECRET_KEY"),
            origin_access_key: var("STRATUS_ORIGIN_ACCESS_KEY"),
            origin_secret_key: var("STRATUS_ORIGIN_SECRET_KEY"),
            metrics_token: var("STRATUS_METRICS_TOKEN"),
            control: std::env::var("STRATUS_CONTROL").ok().filter(|v| !v.is_empty()),
        }
    }
}

impl StratusConfig {
    /// Fills secrets the file left out from the environment; the file wins where it has one.
    pub fn apply_env(&mut self, env: &Env) {
        let fill = |slot: &mut Option<Secret>, value: &Option<Secret>| {
            if slot.is_none() {
                slot.clone_from(value);
            }
        };
        if let Some(edge) = &mut self.edge {
            fill(&mut edge.token, &env.token);
            fill(&mut edge.origin_access_key, &env.origin_access_key);
            fill(&mut edge.origin_secret_key, &env.origin_secret_key);
            if let Some(admin) = &mut edge.admin {
                fill(&mut admin.metrics_token, &env.metrics_token);
            }
        }
        if let Some(control) = &mut self.control {
            fill(&mut control.token, &env.token);
            fill(&mut control.metrics_token, &env.metrics_token);
        }
        if let Some(origin) = &mut self.origin {
            fill(&mut origin.token, &env.token);
            fill(&mut origin.metrics_token, &env.metrics_token);
            fill(&mut origin.access_key, &env.access_key);
            fill(&mut origin.secret_key, &env.secret_key);
        }
    }

    /// The effective configuration as TOML, defaults filled in and secrets masked.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }

    /// Checks the rules across fields again, e.g. after command-line flags changed values;
    /// the error reads `edge.cache.size: must be greater than 0`.
    pub fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| format!("{}: {}", e.path, e.message))
    }

    fn validate(&self) -> Result<(), Invalid> {
        let within = |section: &str, r: Result<(), Invalid>| {
            r.map_err(|mut e| {
                e.path = format!("{section}.{}", e.path);
                e
            })
        };
        if let Some(c) = &self.edge {
            within("edge", c.validate())?;
        }
        if let Some(c) = &self.origin {
            within("origin", c.validate())?;
        }
        if let Some(c) = &self.control {
            within("control", c.validate())?;
        }
        if let Some(c) = &self.loadtest {
            within("loadtest", c.validate())?;
        }
        Ok(())
    }
}

/// A configuration error, located: `edge.toml:12: edge.sites[0].origins[0]: invalid URL "htp:/x"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line, when the error can be pinned to one.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `edge.cache.size`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<StratusConfig, ConfigError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(&file, &src)
}

/// Parses and validates configuration text; `file` names it in errors.
pub fn parse(file: &str, src: &str) -> Result<StratusConfig, ConfigError> {
    let error = |line, key, message| ConfigError { file: file.to_owned(), line, key, message };
    let de = toml::Deserializer::parse(src)
        .map_err(|e| error(line_of(src, e.span()), None, format!("TOML syntax: {}", e.message())))?;
    let config: StratusConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let key = (key != ".").then_some(key);
        error(line_of(src, inner.span()), key, inner.message().to_owned())
    })?;
    config.validate().map_err(|e| error(locate(src, &e.path), Some(e.path), e.message))?;
    Ok(config)
}

fn line_of(src: &str, span: Option<std::ops::Range<usize>>) -> Option<usize> {
    let start = span?.start.min(src.len());
    Some(src[..start].bytes().filter(|&b| b == b'\n').count() + 1)
}

/// Finds the line of a key path such as `edge.sites[1].ttl[0].min`, or of the deepest
/// table on the way when the key itself is absent (a required value left out).
fn locate(src: &str, path: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(src).ok()?;
    let mut span = root.span();
    let mut value = DeValue::Table(root.into_inner());
    for segment in path.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let DeValue::Table(table) = &value else { break };
        let Some((_, found)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else { break };
        span = found.span();
        let mut next = found.get_ref().clone();
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let (Ok(i), DeValue::Array(items)) = (index.parse::<usize>(), &next) else { break };
            let Some(item) = items.get(i) else { break };
            span = item.span();
            next = item.get_ref().clone();
        }
        value = next;
    }
    line_of(src, Some(span))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        parse("t.toml", src).expect_err("should be rejected").to_string()
    }

    const EDGE: &str = "[edge]\nlisteners = [{ listen = \"127.0.0.1:0\" }]\n\n[[edge.sites]]\nhosts = [\"*\"]\norigins = [\"http://127.0.0.1:9000\"]\n";

    #[test]
    fn a_minimal_edge_parses_with_defaults() {
        let c = parse("t.toml", EDGE).expect("valid");
        let edge = c.edge.expect("edge section");
        assert_eq!(edge.cache.size, ByteSize::mib(256));
        assert_eq!(edge.sites[0].origins[0].as_str(), "http://127.0.0.1:9000");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let bad_url = EDGE.replace("http://127.0.0.1:9000", "htp:/x");
        assert_eq!(
            err(&bad_url),
            "t.toml:6: edge.sites[0].origins[0]: invalid URL \"htp:/x\" (the scheme must be http or https)"
        );
        let bad_size = format!("{EDGE}\n[edge.cache]\nsize = \"12 parsecs\"\n");
        assert!(
            err(&bad_size).starts_with("t.toml:9: edge.cache.size: invalid size \"12 parsecs\""),
            "{}",
            err(&bad_size)
        );
        let unknown = format!("{EDGE}colour = \"blue\"\n");
        assert!(
            err(&unknown).starts_with("t.toml:7: edge.sites[0].colour: unknown field `colour`"),
            "{}",
            err(&unknown)
        );
        let syntax = "[edge\nlisten = 1\n";
        assert!(err(syntax).starts_with("t.toml:1: TOML syntax:"), "{}", err(syntax));
    }

    #[test]
    fn validation_errors_are_located_too() {
        let src = format!("{EDGE}\n[edge.cache]\nsize = \"1MiB\"\nmax_object_size = \"2MiB\"\n");
        assert_eq!(err(&src), "t.toml:10: edge.cache.max_object_size: must not exceed cache.size");
        let src = format!("{EDGE}\n[edge.cache]\nslice_size = \"512\"\n");
        assert_eq!(err(&src), "t.toml:9: edge.cache.slice_size: must be at least 1KiB");
    }

    /// With a disk tier, objects larger than the memory tier are allowed (they live on disk).
    #[test]
    fn a_disk_tier_allows_objects_larger_than_memory() {
        let disk = |size: &str| {
            format!(
                "{EDGE}\n[edge.cache]\nsize = \"1MiB\"\nmax_object_size = \"2GiB\"\n[edge.cache.disk]\npath = \"/var/cache/s\"\nsize = \"{size}\"\n"
            )
        };
        let cfg = parse("t.toml", &disk("10GiB")).expect("valid");
        let d = cfg.edge.and_then(|e| e.cache.disk).expect("disk tier");
        assert_eq!((d.path.to_str(), d.size), (Some("/var/cache/s"), ByteSize(10 << 30)));
        assert_eq!(
            err(&disk("1GiB")),
            "t.toml:10: edge.cache.max_object_size: must not exceed cache.size or cache.disk.size"
        );
        let unknown = format!("{EDGE}\n[edge.cache.disk]\npath = \"/d\"\nsize = \"1GiB\"\nsync = true\n");
        assert!(err(&unknown).contains("unknown field `sync`"), "{}", err(&unknown));
    }

    #[test]
    fn secrets_come_from_the_environment_and_are_masked() {
        let mut c = parse("t.toml", EDGE).expect("valid");
        c.apply_env(&Env { token: Some(Secret::new("s3cr3t")), ..Env::default() });
        let edge = c.edge.as_ref().expect("edge");
        assert_eq!(edge.token.as_ref().map(Secret::expose), Some("s3cr3t"));
        let printed = c.to_toml();
        assert!(!printed.contains("s3cr3t") && printed.contains("token = \"***\""), "{printed}");
    }
}
