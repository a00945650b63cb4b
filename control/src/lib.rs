//! Stratus control: the control plane.

use stratus_config::ControlConfig;
use tokio_util::sync::CancellationToken;

/// Errors of the control.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This part of Stratus is not built yet.
    #[error("stratus control is not built yet (issue #6)")]
    NotBuilt,
}

/// Runs the control until `shutdown` is cancelled.
///
/// Prints one line `listening control ROLE http://ADDR` on stdout per bound listener.
pub async fn run(config: ControlConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let _ = (config, shutdown);
    Err(Error::NotBuilt)
}

/// `stratus purge`: the command-line client of the purge API.
pub mod cli {
    /// Arguments of `stratus purge`.
    #[derive(Debug, clap::Args)]
    pub struct PurgeArgs {
        /// Control-plane URL, e.g. http://127.0.0.1:7070.
        #[arg(long)]
        pub control: String,
    }

    /// Sends the purge and prints the outcome per edge; `Ok(false)` when an edge did not apply it.
    pub async fn purge(args: PurgeArgs, token: Option<stratus_config::Secret>) -> Result<bool, super::Error> {
        let _ = (args, token);
        Err(super::Error::NotBuilt)
    }
}
