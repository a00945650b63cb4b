//! Stratus control: the control plane of the CDN.
//!
//! It keeps an ordered, persisted event log of purges, prewarms and site configurations, streams it to every edge
//! that follows it (docs/PROTOCOL.md, "Edge ↔ control"), tracks which edge applied what, and
//! serves a JSON API, a CLI client ([`cli`]) and a small dashboard. `docs/control.md` describes
//! the API and the decisions behind it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stratus_control::Error> {
//! let config = stratus_config::ControlConfig::new("127.0.0.1:0".parse().unwrap(), "/tmp/control".into());
//! let stop = tokio_util::sync::CancellationToken::new();
//! stratus_control::run(config, stop).await // prints `listening control api http://127.0.0.1:PORT`
//! # }
//! ```
//!
//! Architecture invariant: edges never need the control plane to serve. Everything here is
//! advisory to them; a control plane that is down only delays purges, it never loses one.

mod api;
mod backend;
mod body;
mod charts;
pub mod cli;
mod dashboard;
mod error;
mod extract;
mod fleet;
mod health;
mod history;
mod log;
mod metrics;
mod nats;
mod ops;
mod origin;
mod registry;
mod sampler;
mod state;
mod subscribe;

use std::sync::Arc;

use stratus_config::ControlConfig;
use tokio_util::sync::CancellationToken;

pub use error::Error;

/// Runs the control plane until `shutdown` is cancelled.
///
/// Prints `listening control api http://ADDR` on stdout once the API is bound.
pub async fn run(config: ControlConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let (log, registry) = match &config.log {
        None => (
            backend::Backend::Embedded(log::Log::open(&config.data, config.retain_entries)?),
            Arc::new(registry::Registry::new(config.edge_timeout.get())),
        ),
        Some(servers) => {
            let cluster = nats::Cluster::connect(servers, config.replicas(), config.retain_entries).await?;
            let registry = Arc::new(registry::Registry::shared(config.edge_timeout.get()));
            let replica = replica_id();
            let tracker = registry.clone();
            let on_entry = Box::new(move |seq, created: std::time::SystemTime| {
                let ago = created.elapsed().unwrap_or_default();
                let created =
                    std::time::Instant::now().checked_sub(ago).unwrap_or_else(std::time::Instant::now);
                tracker.track(seq, created);
            });
            let log = nats::log::NatsLog::open(
                &cluster,
                replica.clone(),
                config.retain_entries,
                on_entry,
                shutdown.clone(),
            )
            .await?;
            nats::edges::share(registry.clone(), cluster.edges.clone(), replica, shutdown.clone());
            (backend::Backend::Nats(Box::new(log)), registry)
        }
    };
    if config.token.is_none() {
        tracing::warn!(
            allowed_hosts = ?config.allowed_hosts,
            "no token configured: the control api is open to anyone who can reach it \
             (by IP address, localhost or an allowed host name)"
        );
    }
    let state = Arc::new(state::State {
        log,
        registry,
        token: config.token.clone(),
        metrics_token: config.metrics_token.clone(),
        allowed_hosts: config.allowed_hosts.clone(),
        origin: origin::Origin::new(config.origin.clone()),
        history: history::History::default(),
        shutdown: shutdown.clone(),
    });
    tokio::spawn(sampler::sample(state.clone(), shutdown.clone()));
    let addr = config.listen.0;
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
    println!("listening control api http://{bound}");
    match &config.log {
        None => tracing::info!(addr = %bound, data = %config.data.display(), "control plane started"),
        Some(servers) => tracing::info!(addr = %bound, log = %servers, "control plane started"),
    }
    // Stream lines and small JSON answers must leave at once, not wait for Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(Error::Serve)?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// A name for this replica, unique among the processes sharing a NATS log: it prefixes the
/// message ids that make retried appends safe, and marks the edge records it writes.
fn replica_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", std::process::id(), nanos)
}
