//! `stratus up`: a whole local CDN in one command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use stratus_config::Env;

/// Arguments of `stratus up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// First port: origin on BASE, control on BASE+1, edges on BASE+2 and BASE+3
    /// (admins BASE+4 and BASE+5). Without it the ports of DESIGN.md are used.
    #[arg(long)]
    pub port_base: Option<u16>,
    /// Keep state here between runs (default: a temporary directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Starts everything and runs until Ctrl-C or SIGTERM.
pub async fn run(args: UpArgs, env: &Env) -> Result<ExitCode> {
    let _ = (args, env);
    bail!("stratus up is not built yet (issue #8)")
}
