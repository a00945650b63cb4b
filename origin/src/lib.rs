//! Stratus origin: the S3-compatible bucket server.

use stratus_config::OriginConfig;
use tokio_util::sync::CancellationToken;

/// Errors of the origin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This part of Stratus is not built yet.
    #[error("stratus origin is not built yet (issue #5)")]
    NotBuilt,
}

/// Runs the origin until `shutdown` is cancelled.
///
/// Prints one line `listening origin ROLE http://ADDR` on stdout per bound listener.
pub async fn run(config: OriginConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let _ = (config, shutdown);
    Err(Error::NotBuilt)
}
