//! Starting the edge: bind the listeners, start the housekeeping tasks, follow the control plane.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stratus_config::EdgeConfig;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::edge::Edge;
use crate::error::Error;
use crate::fleet::{admin, follow, follow_target, reload, target};
use crate::proxy::downstream::Downstream;
use crate::proxy::{pipeline, server, tls};

/// Runs the edge until `shutdown` is cancelled. Every configuration sent on `reloads` is
/// applied with [`Edge::reload`] (SIGHUP in `stratus edge`); dropping the sender is fine.
///
/// Prints one line `listening edge http http://ADDR` (or `listening edge https https://ADDR`
/// for a TLS listener) on stdout per bound listener.
pub async fn run(
    config: EdgeConfig,
    shutdown: CancellationToken,
    reloads: mpsc::Receiver<EdgeConfig>,
) -> Result<(), Error> {
    let edge = Edge::new(&config, &shutdown)?;
    let mut tasks = JoinSet::new();
    // Installed before anything binds: SIGUSR1's default action would end the process.
    reopen_on_usr1(&edge, &shutdown, &mut tasks)?;
    let first_url = listen_clients(&edge, &config, &shutdown, &mut tasks).await?;
    let admin_url = listen_admin(&edge, &config, &shutdown, &mut tasks).await?;
    housekeeping(&edge, &config, &shutdown, &mut tasks);
    tasks.spawn(reload::serve(edge.clone(), reloads, shutdown.clone()));
    if let Some(control) = config.control.clone() {
        let registration = follow_target::Registration {
            id: config.id.clone().unwrap_or_else(host_name),
            url: first_url.unwrap_or_default(),
            admin: admin_url,
            pop: config.pop.clone(),
            peer_url: config
                .cluster
                .as_ref()
                .and_then(|c| c.self_url.as_ref())
                .map(|u| stratus_config::edge::peer_id(u).unwrap_or_else(|_| u.to_string())),
            discover: config.cluster.as_ref().is_some_and(|c| c.discover),
        };
        let target: Arc<dyn follow_target::FollowTarget> = Arc::new(target::EdgeTarget(edge.clone()));
        tasks.spawn(follow::run(control, config.token.clone(), registration, target, shutdown.clone()));
    }

    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "edge task failed");
        }
    }
    if let Some(disk) = edge.disk.clone() {
        let _ = tokio::task::spawn_blocking(move || disk.drain(Duration::from_secs(10))).await;
    }
    // The lines of the last requests, still in the writer's buffers.
    let log = edge.access_log.clone();
    let _ = tokio::task::spawn_blocking(move || log.flush()).await;
    tracing::info!("edge stopped");
    Ok(())
}

/// Binds the client listeners and starts serving them; returns the first one's URL.
async fn listen_clients(
    edge: &Arc<Edge>,
    config: &EdgeConfig,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Option<String>, Error> {
    let mut first_url = None;
    for (i, l) in config.listeners.iter().enumerate() {
        let listener = bind(l.listen.0).await?;
        let scheme = if l.tls { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}",
            listener.local_addr().map_err(|e| Error::Bind { addr: l.listen.0, source: e })?
        );
        let acceptor = if l.tls {
            Some(Arc::new(tls::Acceptor::new(
                edge.certs.clone(),
                i,
                config.limits.header_read_timeout.get(),
            )?))
        } else {
            None
        };
        println!("listening edge {scheme} {url}");
        tracing::info!(%url, "edge listening");
        first_url.get_or_insert(url);
        let e = edge.clone();
        let handler = move |req, from: Downstream| pipeline::handle(e.clone(), req, Some(from));
        tasks.spawn(server::serve(
            listener,
            server::builder(&config.limits),
            handler,
            acceptor,
            server::ConnLimits::clients(&config.limits),
            shutdown.clone(),
        ));
    }
    Ok(first_url)
}

/// Binds the admin listener, if one is configured; returns its URL.
async fn listen_admin(
    edge: &Arc<Edge>,
    config: &EdgeConfig,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Option<String>, Error> {
    let Some(admin) = &config.admin else { return Ok(None) };
    let listener = bind(admin.listen.0).await?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| Error::Bind { addr: admin.listen.0, source: e })?
    );
    println!("listening edge admin {url}");
    tracing::info!(%url, "edge admin listening");
    let tokens = admin::Tokens {
        admin: config.token.clone(),
        read: config.admin.as_ref().and_then(|a| a.metrics_token.clone()),
    };
    let e = edge.clone();
    let handler = move |req, _from: Downstream| admin::handle(e.clone(), tokens.clone(), req);
    tasks.spawn(server::serve(
        listener,
        server::builder(&config.limits),
        handler,
        None,
        server::ConnLimits {
            max_connections: 256,
            drain: Duration::from_secs(5),
            ..server::ConnLimits::clients(&config.limits)
        },
        shutdown.clone(),
    ));
    Ok(Some(url))
}

/// How often expired entries nobody asked for are swept out of the memory tier.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Work off the request path: a sweep for expired entries every [`SWEEP_EVERY`], and
/// certificate files replaced on disk. (Metrics need no upkeep: `histogram.rs`.)
fn housekeeping(
    edge: &Arc<Edge>,
    config: &EdgeConfig,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let (e, stop) = (edge.clone(), shutdown.clone());
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    // On a blocking-pool thread, not the runtime's: a sweep walks the whole
                    // cache and would hold up every request queued behind it (the p99 of
                    // issue #23).
                    let store = e.store.clone();
                    let _ = tokio::task::spawn_blocking(move || store.sweep()).await;
                }
            }
        }
    });

    // New handshakes pick up certificate files replaced on disk.
    if config.listeners.iter().any(|l| l.tls) {
        let (certs, stop) = (edge.certs.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(tls::POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let certs = certs.clone();
                        let _ = tokio::task::spawn_blocking(move || certs.poll()).await;
                    }
                }
            }
        });
    }
}

/// Reopens the access log file on every SIGUSR1 (logrotate's `postrotate`), as nginx does.
fn reopen_on_usr1(
    edge: &Arc<Edge>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())
        .map_err(|e| Error::AccessLog(format!("cannot install the SIGUSR1 handler: {e}")))?;
    let (log, stop) = (edge.access_log.clone(), shutdown.clone());
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                got = usr1.recv() => match got {
                    Some(()) => {
                        tracing::info!(signal = "SIGUSR1", "reopening the access log");
                        log.reopen();
                    }
                    None => break,
                },
            }
        }
    });
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edge".to_owned())
}
