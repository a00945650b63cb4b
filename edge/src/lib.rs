//! Stratus edge: the caching reverse proxy.

use stratus_config::EdgeConfig;
use tokio_util::sync::CancellationToken;

/// Errors of the edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This part of Stratus is not built yet.
    #[error("stratus edge is not built yet (issue #4)")]
    NotBuilt,
}

/// Runs the edge until `shutdown` is cancelled.
///
/// Prints one line `listening edge ROLE http://ADDR` on stdout per bound listener.
pub async fn run(config: EdgeConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let _ = (config, shutdown);
    Err(Error::NotBuilt)
}

pub mod follow;
pub mod purge;
