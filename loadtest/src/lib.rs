//! Stratus loadtest: a load generator with Zipf keys, constant-rate mode and hit-ratio reports.

/// Errors of the load generator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This part of Stratus is not built yet.
    #[error("stratus loadtest is not built yet (issue #7)")]
    NotBuilt,
}

/// Arguments of `stratus loadtest`.
#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    /// Target URLs.
    pub urls: Vec<String>,
}

/// Runs the load test and prints its report; `Ok(false)` when the run had errors.
pub async fn run(args: LoadtestArgs) -> Result<bool, Error> {
    let _ = args;
    Err(Error::NotBuilt)
}
