//! What every handler shares: the log, the registry, the origin client and the settings. It
//! sits below the handlers and imports none of them.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::origin::Origin;
use crate::registry::Registry;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub log: Backend,
    pub registry: Arc<Registry>,
    pub token: Option<stratus_config::Secret>,
    /// Read-only token for `/metrics`; `None` leaves it open.
    pub metrics_token: Option<stratus_config::Secret>,
    /// Host names served besides IP addresses and `localhost` while no token is configured.
    pub allowed_hosts: Vec<String>,
    pub origin: Origin,
    /// The last hour of edge counters, for the dashboard's charts.
    pub history: crate::history::History,
    pub shutdown: CancellationToken,
}

impl State {
    /// Whether a request with these headers passes the token check: no token is configured,
    /// or it carries `Authorization: Bearer TOKEN`.
    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        self.token.as_ref().is_none_or(|token| token.verify_bearer(headers.get(header::AUTHORIZATION)))
    }
}

/// The state as handlers receive it.
pub(crate) type Shared = Arc<State>;
