//! The load generator's error type, below every module that returns it.

use std::path::PathBuf;

/// Errors of the load generator: all are about setting the run up; failures of individual
/// requests are results, counted in the report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or targets.
    #[error("{0}")]
    Invalid(String),
    /// No URL, URL file entry, key space or scenario was given.
    #[error("no targets: give URLs, --url-file, --base with --keys, or --scenario")]
    NoTargets,
    /// Targets on different origins.
    #[error("all targets must share one scheme, host and port: {0} and {1} differ")]
    MixedOrigins(String, String),
    /// A file named on the command line cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario file is invalid.
    #[error(transparent)]
    Config(#[from] stratus_config::ConfigError),
    /// The target's host name does not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, #[source] std::io::Error),
    /// TLS cannot be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// A task of the generator itself failed.
    #[error("internal error: {0}")]
    Internal(String),
}
