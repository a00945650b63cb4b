//! Shutdown on SIGINT and SIGTERM, shared by every server command and `stratus up`.

use tokio_util::sync::CancellationToken;

/// Cancels `stop` on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn cancel_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::error!("cannot install the SIGTERM handler");
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutting down"),
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
    }
    stop.cancel();
}
