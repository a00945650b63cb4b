//! `stratus`: one binary for every part of the CDN. It parses flags, loads the configuration,
//! starts the runtime and calls the libraries; all behaviour lives in the member crates.

mod signal;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use stratus_config::{ByteSize, Env, HttpUrl, ListenAddr, StratusConfig};
use tokio_util::sync::CancellationToken;

/// mimalloc rather than glibc's malloc: a cache fill allocates and frees dozens of short-lived
/// buffers around the few allocations a cached object keeps, and glibc leaves the holes they
/// make in the heap. With mimalloc's size-segregated pages a cached 1 KiB object costs about
/// 190 bytes less resident memory (`bench/run.py --only memory`). Transparent huge pages are
/// off for mimalloc (`no_thp`): with them every thread's heap grew in 2 MiB steps, and the
/// origin's peak RSS for a streamed 100 MiB upload doubled (32 → 68 MiB; 35 MiB without).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stratus: a caching CDN — edge, control plane, S3-compatible origin and load tester.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an edge: the caching reverse proxy.
    Edge(EdgeArgs),
    /// Run the S3-compatible origin over a local directory.
    Origin(OriginArgs),
    /// Run the control plane: purge, prewarm, edge registry, event log.
    Control(ControlArgs),
    /// Generate load against an edge (or any HTTP server) and report latency and hit ratio.
    Loadtest(stratus_loadtest::LoadtestArgs),
    /// Purge content on every edge through the control plane.
    Purge(stratus_control::cli::PurgeArgs),
    /// Start a whole local CDN: origin with a demo bucket, control plane and two edges.
    Up(up::UpArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a file and print the effective configuration (secrets masked).
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Clone, Debug, clap::Args)]
struct EdgeArgs {
    /// Client listener (HTTP), e.g. 0.0.0.0:8080; replaces the file's listeners.
    #[arg(long)]
    listen: Option<ListenAddr>,
    /// Origin for every host, e.g. http://127.0.0.1:9000/demo; replaces the file's sites.
    #[arg(long)]
    origin: Option<HttpUrl>,
    /// Admin API listener (purge, metrics, health).
    #[arg(long)]
    admin: Option<ListenAddr>,
    /// Memory cache capacity, e.g. 256MiB.
    #[arg(long)]
    cache_size: Option<ByteSize>,
    /// Disk tier directory (`[edge.cache.disk] path`): objects survive restarts there.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Disk tier capacity, e.g. 10GiB (`[edge.cache.disk] size`; default 1GiB with --cache-dir).
    #[arg(long, value_name = "SIZE")]
    disk_size: Option<ByteSize>,
    /// Control plane to follow for purges and prewarms; several replicas separated by commas
    /// (http://a:7070,http://b:7070) are failed over between.
    #[arg(long)]
    control: Option<stratus_config::ControlUrls>,
    /// Name of this edge in the control plane's registry.
    #[arg(long)]
    id: Option<String>,
    /// An edge of this PoP, e.g. http://10.0.0.2:8080 (repeatable; this edge's own URL may be
    /// among them): the edges share one cache by rendezvous hashing. Replaces the file's peers.
    #[arg(long = "peer", value_name = "URL")]
    peers: Vec<HttpUrl>,
    /// This edge's URL as its peers reach it (when no listener address names it).
    #[arg(long = "self", value_name = "URL")]
    self_url: Option<HttpUrl>,
    /// The point of presence this edge belongs to (`[edge] pop`), sent when it registers.
    #[arg(long, value_name = "LABEL")]
    pop: Option<String>,
    /// Take the cluster's peers from the control plane: the live edges with the same --pop
    /// (`[edge.cluster] discover = true`; needs --self and --control).
    #[arg(long)]
    discover_peers: bool,
    /// Access log: off, - (stdout, the default) or a file path (reopened on SIGUSR1).
    #[arg(long, value_name = "off|-|PATH")]
    access_log: Option<stratus_config::observe::AccessLogTarget>,
    /// Access log format: json (the default) or combined.
    #[arg(long, value_name = "json|combined")]
    access_log_format: Option<stratus_config::observe::AccessLogFormat>,
    /// Configuration file (its [edge] section).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct OriginArgs {
    /// Listener, e.g. 0.0.0.0:9000.
    #[arg(long)]
    listen: Option<ListenAddr>,
    /// Directory holding the buckets.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A bucket anyone may read without signing (repeatable).
    #[arg(long = "public", value_name = "BUCKET")]
    public: Vec<String>,
    /// URL that object events are posted to, e.g. http://127.0.0.1:7070/v1/events/origin.
    #[arg(long)]
    notify: Option<HttpUrl>,
    /// Configuration file (its [origin] section).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ControlArgs {
    /// API listener, e.g. 0.0.0.0:7070.
    #[arg(long)]
    listen: Option<ListenAddr>,
    /// Directory for the embedded event log (not needed with --log nats://…).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep the log in a NATS JetStream cluster instead: nats://HOST:PORT[,HOST:PORT…]. Several
    /// control processes on one cluster serve the API together.
    #[arg(long)]
    log: Option<stratus_config::NatsServers>,
    /// Replicas of the JetStream stream and buckets when they are created (default: the
    /// number of servers in --log, at most 3).
    #[arg(long)]
    log_replicas: Option<usize>,
    /// Configuration file (its [control] section).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let env = Env::from_process();
    match run(cli.command, &env) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stratus: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, env: &Env) -> Result<ExitCode> {
    let runtime = runtime().context("cannot start the tokio runtime")?;
    match command {
        Command::Config(ConfigCommand::Check { file }) => {
            let mut config = stratus_config::load(&file)?;
            config.apply_env(env);
            print!("{}", config.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Edge(args) => {
            let config = edge_config(args.clone(), env)?;
            let (reload, reloads) = tokio::sync::mpsc::channel(4);
            runtime.block_on(async {
                // Installed before anything binds, so a SIGHUP never meets the default action
                // (terminate) once the edge is reachable.
                let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .context("cannot install the SIGHUP handler")?;
                tokio::spawn(reload_on_hangup(hangup, args, env.clone(), reload));
                serve(|stop| stratus_edge::run(config, stop, reloads)).await
            })
        }
        Command::Origin(args) => {
            let config = origin_config(args, env)?;
            runtime.block_on(serve(|stop| stratus_origin::run(config, stop)))
        }
        Command::Control(args) => {
            let config = control_config(args, env)?;
            runtime.block_on(serve(|stop| stratus_control::run(config, stop)))
        }
        Command::Loadtest(args) => {
            Ok(exit_code(runtime.block_on(stratus_loadtest::run(args, env.token.clone()))?))
        }
        Command::Purge(mut args) => {
            if args.control.is_none() {
                args.control.clone_from(&env.control);
            }
            Ok(exit_code(runtime.block_on(stratus_control::cli::purge(args, env.token.clone()))?))
        }
        Command::Up(args) => runtime.block_on(up::run(args, env)),
    }
}

fn exit_code(ok: bool) -> ExitCode {
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// A worker thread per core this process may run on (its CPU affinity, so `taskset` counts).
/// On a single core, tokio's current-thread scheduler: the work-stealing one has nothing to
/// steal there and only adds cross-thread wake-ups (about 4 % more CPU per cached 1 KiB hit
/// and a longer p99 with `bench/run.py`, which pins the proxy to one core).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cores == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Runtime::new()
    }
}

/// Runs a server until SIGINT or SIGTERM, then lets it shut down gracefully.
async fn serve<F, Fut, E>(start: F) -> Result<ExitCode>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let stop = CancellationToken::new();
    tokio::spawn(signal::cancel_on_signal(stop.clone()));
    // With several workers, run the server on one of them, not on the thread blocked in
    // `block_on` (on one core that thread is the only one and runs it anyway).
    tokio::spawn(start(stop)).await.context("the server task panicked")??;
    Ok(ExitCode::SUCCESS)
}

/// On every SIGHUP reads the edge's configuration again — the file with the same flags and
/// environment as at start — and hands it to the running edge. A file that does not load is
/// logged (file:line: key: why) and the running configuration stays.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    args: EdgeArgs,
    env: Env,
    reload: tokio::sync::mpsc::Sender<stratus_config::EdgeConfig>,
) {
    while hangup.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", "reloading the configuration");
        match edge_config(args.clone(), &env) {
            Ok(config) => {
                if reload.send(config).await.is_err() {
                    return; // the edge has stopped
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "reload refused; the running configuration stays");
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    // s3s logs every refused request (a bad signature, an anonymous write) at ERROR; the origin
    // logs requests itself, so s3s stays quiet unless RUST_LOG asks for it.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off"));
    // Colours only for a person at a terminal: escape codes in a log file or journald are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads `file` (if any) with the environment's secrets applied.
fn load(file: Option<&Path>, env: &Env) -> Result<StratusConfig> {
    let mut config = match file {
        Some(path) => stratus_config::load(path)?,
        None => StratusConfig::default(),
    };
    config.apply_env(env);
    Ok(config)
}

/// Re-checks the cross-field rules once flags have changed values.
fn checked(config: StratusConfig) -> Result<StratusConfig> {
    config.check().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Ok(config)
}

fn edge_config(args: EdgeArgs, env: &Env) -> Result<stratus_config::EdgeConfig> {
    let mut file = load(args.config.as_deref(), env)?;
    let mut edge = match (file.edge.take(), args.listen, args.origin.clone()) {
        (Some(edge), _, _) => edge,
        (None, Some(listen), Some(origin)) => stratus_config::EdgeConfig::simple(listen, origin),
        (None, _, _) => {
            bail!("stratus edge needs --listen and --origin, or --config FILE with an [edge] section")
        }
    };
    if let Some(listen) = args.listen {
        edge.listeners =
            vec![stratus_config::edge::Listener { listen, tls: false, default_certificate: None }];
    }
    if let Some(origin) = args.origin {
        edge.sites = vec![stratus_config::edge::Site::catch_all(origin)];
    }
    if let Some(listen) = args.admin {
        // The file's (or the environment's) read-only token stays with the admin listener.
        let metrics_token =
            edge.admin.take().and_then(|a| a.metrics_token).or_else(|| env.metrics_token.clone());
        edge.admin = Some(stratus_config::edge::Admin { listen, metrics_token });
    }
    if let Some(target) = args.access_log {
        edge.access_log = target;
    }
    if let Some(format) = args.access_log_format {
        edge.access_log_format = format;
    }
    if let Some(size) = args.cache_size {
        edge.cache.size = size;
    }
    match (args.cache_dir, args.disk_size, &mut edge.cache.disk) {
        (Some(path), size, Some(disk)) => {
            disk.path = path;
            disk.size = size.unwrap_or(disk.size);
        }
        (Some(path), size, disk @ None) => {
            *disk = Some(stratus_config::edge::Disk { path, size: size.unwrap_or(ByteSize::mib(1024)) });
        }
        (None, Some(size), Some(disk)) => disk.size = size,
        (None, Some(_), None) => bail!("--disk-size needs --cache-dir (or [edge.cache.disk] in the file)"),
        (None, None, _) => {}
    }
    if args.cache_size.is_some() || edge.cache.disk.is_some() {
        // Objects larger than the memory tier can live on disk only.
        let largest = edge.cache.disk.as_ref().map_or(edge.cache.size, |d| d.size.max(edge.cache.size));
        edge.cache.max_object_size = edge.cache.max_object_size.min(largest);
    }
    if !args.peers.is_empty() || args.self_url.is_some() || args.discover_peers {
        let cluster =
            edge.cluster.get_or_insert_with(|| stratus_config::edge::Cluster::new(Vec::new(), None));
        if !args.peers.is_empty() {
            cluster.peers = args.peers;
        }
        if args.self_url.is_some() {
            cluster.self_url = args.self_url;
        }
        cluster.discover |= args.discover_peers;
    }
    edge.pop = args.pop.or(edge.pop);
    edge.control = args.control.or(edge.control);
    edge.id = args.id.or(edge.id);
    if edge.token.is_none() {
        edge.token.clone_from(&env.token);
    }
    let edge = checked(StratusConfig { edge: Some(edge), ..StratusConfig::default() })?.edge;
    edge.context("no edge configuration")
}

fn origin_config(args: OriginArgs, env: &Env) -> Result<stratus_config::OriginConfig> {
    let mut file = load(args.config.as_deref(), env)?;
    let mut origin = match (file.origin.take(), args.listen, args.data.clone()) {
        (Some(origin), _, _) => origin,
        (None, Some(listen), Some(data)) => stratus_config::OriginConfig::new(listen, data),
        (None, _, _) => {
            bail!("stratus origin needs --listen and --data, or --config FILE with an [origin] section")
        }
    };
    origin.listen = args.listen.unwrap_or(origin.listen);
    origin.data = args.data.unwrap_or(origin.data);
    origin.notify = args.notify.or(origin.notify);
    for name in args.public {
        origin.make_public(&name);
    }
    let mut config = StratusConfig { origin: Some(origin), ..StratusConfig::default() };
    config.apply_env(env);
    checked(config)?.origin.context("no origin configuration")
}

fn control_config(args: ControlArgs, env: &Env) -> Result<stratus_config::ControlConfig> {
    let mut file = load(args.config.as_deref(), env)?;
    let mut control = match (file.control.take(), args.listen, args.data.clone()) {
        (Some(control), _, _) => control,
        (None, Some(listen), Some(data)) => stratus_config::ControlConfig::new(listen, data),
        (None, Some(listen), None) if args.log.is_some() => {
            stratus_config::ControlConfig::new(listen, PathBuf::new())
        }
        (None, _, _) => bail!(
            "stratus control needs --listen and --data (or --log nats://…), or --config FILE with a [control] section"
        ),
    };
    control.listen = args.listen.unwrap_or(control.listen);
    control.data = args.data.unwrap_or(control.data);
    control.log = args.log.or(control.log);
    control.log_replicas = args.log_replicas.or(control.log_replicas);
    let mut config = StratusConfig { control: Some(control), ..StratusConfig::default() };
    config.apply_env(env);
    checked(config)?.control.context("no control configuration")
}
