//! The network side: listeners, connection tasks, and the HTTP router. Everything here runs
//! on the tokio runtime; it decodes with `protocol`, decides nothing itself, and talks to the
//! simulation only through the [`crate::bridge`].

mod admin;
mod comms_ws;
mod game_ws;
mod garp_ws;
pub mod http;
pub mod listener;
pub mod ndjson;
pub mod raos;
pub mod rest;
pub mod rest_guard;
pub mod store_server;
pub mod web;
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
    /// Where RaOS asset bytes live.
    pub assets: crate::services::assets::AssetFiles,
    /// The achievements players can unlock (`data/achievements.json`).
    pub achievements: Arc<crate::services::progress::Achievements>,
    /// GARP player tokens and sessions, which outlive any one socket.
    pub garp_players: Arc<crate::services::garp_players::GarpPlayers>,
    /// This node's link to the others (a no-op on a node alone).
    pub cluster: crate::cluster::Cluster,
    /// REST rate limits, per access token.
    pub rest_limits: Arc<rest_guard::RestLimits>,
    /// The `/game` message types plugins added.
    pub game_messages: Arc<crate::sim::extend::GameMessageTypes>,
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

/// The token a WebSocket handshake carries, for browsers, which cannot set headers:
/// `?token=`, `Authorization: Bearer`, or the subprotocol `access_token.<JWT>`. The second
/// value is the subprotocol to answer with when the token came as one (a browser fails a
/// connection whose offered subprotocol is not selected).
pub fn handshake_token(
    headers: &axum::http::HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    const SUBPROTOCOL_PREFIX: &str = "access_token.";
    if let Some(t) = query.get("token").filter(|t| !t.is_empty()) {
        return (Some(t.clone()), None);
    }
    if let Some(t) = bearer(headers) {
        return (Some(t.to_owned()), None);
    }
    let offered = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| p.starts_with(SUBPROTOCOL_PREFIX));
    match offered {
        Some(p) => (
            Some(p[SUBPROTOCOL_PREFIX.len()..].to_owned()),
            Some(p.to_owned()),
        ),
        None => (None, None),
    }
}

/// A token bucket: `rate` requests per second with bursts of `burst`.
#[derive(Debug, Clone)]
pub struct RateBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: tokio::time::Instant,
}

impl RateBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            at: tokio::time::Instant::now(),
        }
    }

    /// Whether the bucket has been left alone for `idle` (it is full again by then).
    pub fn idle_for(&self, idle: std::time::Duration) -> bool {
        self.at.elapsed() >= idle
    }

    /// Takes one token; false if there is none (the request is over the limit).
    pub fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The base URL clients reached this server at: `scheme://host`, from the `Host` header
/// (the HTTP listener's address without one). `websocket` picks `ws`/`wss` over
/// `http`/`https`.
pub fn public_base(state: &AppState, headers: &axum::http::HeaderMap, websocket: bool) -> String {
    let tls = state.config.tls_cert.is_some();
    let scheme = match (websocket, tls) {
        (true, true) => "wss",
        (true, false) => "ws",
        (false, true) => "https",
        (false, false) => "http",
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.http.to_string());
    format!("{scheme}://{host}")
}
