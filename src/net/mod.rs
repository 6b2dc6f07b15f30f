//! The network side: listeners, connection tasks, and the HTTP router. Everything here runs
//! on the tokio runtime; it decodes with `protocol`, decides nothing itself, and talks to the
//! simulation only through the [`crate::bridge`].

mod comms_ws;
mod game_ws;
mod garp_ws;
pub mod http;
pub mod listener;
pub mod ndjson;
mod rest;
pub mod store_server;
pub mod ws;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bridge::Inbox;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::services::Accounts;
use crate::store::Store;

/// What every connection task and handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub accounts: Arc<Accounts>,
    pub inbox: Inbox,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub uploads: Arc<crate::services::uploads::Uploads>,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them to close.
    pub tasks: TaskTracker,
}

/// Counts a connection as open for its protocol while alive.
pub struct ConnectionGauge {
    metrics: Arc<Metrics>,
    protocol: &'static str,
}

impl ConnectionGauge {
    pub fn open(metrics: &Arc<Metrics>, protocol: &'static str) -> Self {
        metrics.connections.with_label_values(&[protocol]).inc();
        Self {
            metrics: metrics.clone(),
            protocol,
        }
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.metrics
            .connections
            .with_label_values(&[self.protocol])
            .dec();
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
