//! Server configuration: built-in defaults, overridden by an optional TOML file, overridden
//! by command-line flags (and their `ECLIPTIC_*` environment equivalents).
//!
//! Every limit and timeout lives here so an operator can find and change it in one place.
//! The defaults are safe for a public server; a load test raises the login and connection
//! limits in a config file rather than by recompiling.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Everything a running server needs to know.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where SQLite, the signing key and uploaded builds live.
    pub data_dir: PathBuf,
    /// HTTP listener: WebSockets (`/game`, `/ws`, `/raos`, GARP), REST, health and metrics.
    pub http: SocketAddr,
    /// Developer server (store-lobby-tcp.md, developer commands).
    pub dev_tcp: SocketAddr,
    /// Lobby/store server (store-lobby-tcp.md, player commands).
    pub lobby_tcp: SocketAddr,
    /// A separate listener for `/metrics`, the admin endpoints and the console, so they
    /// need not face the internet; when set, the HTTP listener no longer serves them.
    pub admin: Option<SocketAddr>,
    /// Simulation rate in ticks per second.
    pub tick_hz: u32,
    /// PEM certificate chain; with `tls_key`, every listener speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// tracing filter, e.g. `info` or `ecliptic=debug,tower_http=info`.
    pub log: String,
    /// Log lines as `text` (the default) or `json`.
    pub log_format: LogFormat,
    /// Web origins besides the server's own that may call the REST API from a browser
    /// (`["https://play.example.com"]`, or `["*"]` for any). Empty: same origin only.
    pub cors_origins: Vec<String>,
    pub limits: Limits,
    pub auth: AuthConfig,
    pub sim: SimConfig,
    pub store: StoreConfig,
    pub game: GameConfig,
    pub uploads: UploadConfig,
    pub comms: CommsConfig,
    pub wagers: WagerConfig,
    pub raos: RaosConfig,
    pub cluster: ClusterConfig,
    pub scripts: ScriptsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./var"),
            http: ([127, 0, 0, 1], 8080).into(),
            dev_tcp: ([127, 0, 0, 1], 7001).into(),
            lobby_tcp: ([127, 0, 0, 1], 7002).into(),
            admin: None,
            tick_hz: 20,
            tls_cert: None,
            tls_key: None,
            log: "info".into(),
            log_format: LogFormat::Text,
            cors_origins: Vec::new(),
            limits: Limits::default(),
            auth: AuthConfig::default(),
            sim: SimConfig::default(),
            store: StoreConfig::default(),
            game: GameConfig::default(),
            uploads: UploadConfig::default(),
            comms: CommsConfig::default(),
            wagers: WagerConfig::default(),
            raos: RaosConfig::default(),
            cluster: ClusterConfig::default(),
            scripts: ScriptsConfig::default(),
        }
    }
}

/// Luau scripts: server mods and room scripts (`docs/scripting.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptsConfig {
    /// Where server mods live, one folder each; `<data_dir>/mods` when unset.
    pub mods_dir: Option<PathBuf>,
    /// How often the mods folder is read for changes (hot reload).
    pub reload_ms: u64,
    /// Run time each script (a mod, a room) may use per tick, across all its calls.
    pub budget_ms: f64,
    /// Memory each script may allocate.
    pub memory_mib: usize,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        Self {
            mods_dir: None,
            reload_ms: 1_000,
            budget_ms: 5.0,
            memory_mib: 32,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, message and fields).
    Json,
}

/// Running as one of several nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `nats://host:4222`: join the nodes that share this NATS server and prefix. Unset:
    /// one node alone.
    pub nats: Option<String>,
    /// Subjects this cluster uses start with this, so clusters can share a NATS server.
    pub subject_prefix: String,
    /// This node's name in the cluster; a random one when unset.
    pub node_id: Option<String>,
    /// How often a node tells the others who is connected to it.
    pub heartbeat_ms: u64,
    /// A node not heard from for this long is taken for gone: its users go offline.
    pub node_timeout_ms: u64,
    /// Star systems this node runs whenever it lives (pinned here). Every other system
    /// goes, when free, to the live node rendezvous hashing of its id picks.
    pub systems: Vec<String>,
    /// How long a node's lease on a star system lasts without renewal. A node renews every
    /// quarter of it and stops playing a system whose lease has less than a quarter left
    /// unrenewed, so a node that lost the database (or was paused) stops before another
    /// may take the system over.
    pub lease_ms: u64,
}

impl ClusterConfig {
    /// A star system's lease (at least 200 ms).
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_ms.max(200))
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats: None,
            subject_prefix: "ecliptic".into(),
            node_id: None,
            heartbeat_ms: 1_000,
            node_timeout_ms: 5_000,
            systems: Vec::new(),
            lease_ms: 3_000,
        }
    }
}

/// Limits on what one client may send or hold. All are on by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message accepted; larger ones close the socket with 1009.
    pub ws_message_bytes: usize,
    /// Longest NDJSON line accepted on the TCP listeners.
    pub ndjson_line_bytes: usize,
    /// Open connections allowed from one IP address across all listeners.
    pub connections_per_ip: usize,
    /// Seconds a connection may stay open without authenticating.
    pub unauthenticated_timeout_secs: u64,
    /// Bytes a `/raos` socket may send before it has shown a valid token (in the upgrade
    /// request or a message); past them it is closed.
    pub unauthenticated_read_bytes: usize,
    /// Seconds an HTTP client has to send each request head (also how long a kept-alive
    /// connection may sit idle between requests).
    pub header_read_timeout_secs: u64,
    /// Seconds a REST request body may pause between two of its pieces before the
    /// request is refused (408). Only the body is timed: once a request has arrived its
    /// work is not cut short, so an error answer never hides a change that went on to
    /// commit.
    pub request_body_timeout_secs: u64,
    /// Commands waiting for the simulation; when full, clients are told the server is busy.
    pub inbox_capacity: usize,
    /// Messages waiting to be written to one connection.
    pub outbound_queue: usize,
    /// Commands the simulation takes from the inbox per wake, so a flood cannot starve a tick.
    pub commands_per_wake: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ws_message_bytes: 64 * 1024,
            ndjson_line_bytes: 1024 * 1024,
            connections_per_ip: 512,
            unauthenticated_timeout_secs: 30,
            header_read_timeout_secs: 10,
            request_body_timeout_secs: 10,
            unauthenticated_read_bytes: 1 << 20,
            inbox_capacity: 65_536,
            outbound_queue: 1024,
            commands_per_wake: 4096,
        }
    }
}

impl Limits {
    pub fn unauthenticated_timeout(&self) -> Duration {
        Duration::from_secs(self.unauthenticated_timeout_secs)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs.max(1))
    }

    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_secs(self.request_body_timeout_secs.max(1))
    }
}

/// Accounts, tokens and login throttling.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of an access token (JWT).
    pub access_token_secs: u64,
    /// Lifetime of a refresh token.
    pub refresh_token_days: u64,
    /// Failed logins allowed per account within `login_window_secs`.
    pub login_failures_per_account: u32,
    /// Failed logins allowed per client IP within `login_window_secs`.
    pub login_failures_per_ip: u32,
    pub login_window_secs: u64,
    /// Password checks one client IP may have running at once; the rest of its logins
    /// wait their turn behind it, not in front of other addresses.
    pub password_checks_per_ip: usize,
    /// Password hashes computed at once. The default leaves one core to the simulation.
    pub hash_concurrency: usize,
    /// HMAC key file for access tokens; generated on first start when absent. Unset: the
    /// data directory's `jwt.key` on SQLite; on PostgreSQL, one key in the database that
    /// every node sharing it uses.
    pub signing_key_file: Option<PathBuf>,
    /// Whether anyone may register a developer account (`REGISTER_DEV`, or REST register
    /// with `roles: ["developer"]`). Off: an operator makes them. Player registration is
    /// always open.
    pub open_developer_registration: bool,
    /// The shortest password accepted for a new account or a reset, in characters (a
    /// password sent already hashed cannot be checked).
    pub password_min_length: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            access_token_secs: 3600,
            refresh_token_days: 30,
            login_failures_per_account: 5,
            login_failures_per_ip: 50,
            login_window_secs: 300,
            password_checks_per_ip: 1,
            hash_concurrency: cores.saturating_sub(1).max(1),
            signing_key_file: None,
            open_developer_registration: false,
            password_min_length: 8,
        }
    }
}

/// The simulation loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Ticks the loop may run back to back to catch up before it skips time.
    pub max_catch_up_ticks: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            max_catch_up_ticks: 3,
        }
    }
}

/// The database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user@host/db`: keep durable state in PostgreSQL, so several nodes can
    /// share it. Unset: SQLite in the data directory.
    pub database: Option<String>,
    /// How long a write waits for a lock held by another process (a backup, an operator's
    /// `sqlite3`, another node) before it fails and its clients hear an error.
    pub busy_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database: None,
            busy_timeout_ms: 5_000,
        }
    }
}

impl StoreConfig {
    /// The database this config names.
    pub fn database(&self, data_dir: &Path) -> crate::store::Database {
        crate::store::Database::choose(self.database.as_deref(), data_dir)
    }

    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }
}

/// Real-time messaging (comms-ws.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommsConfig {
    pub topics_per_connection: usize,
    /// Broadcasts kept per topic for `History`.
    pub history_per_topic: usize,
    /// Direct messages kept per offline user; the oldest are dropped beyond this.
    pub mailbox_per_user: usize,
    /// Messages a connection may send per second (a token bucket) ...
    pub messages_per_second: f64,
    /// ... with bursts of this many.
    pub message_burst: f64,
    /// `AuthStatus token_expiring` is sent this long before the access token expires.
    pub token_expiry_lead_secs: u64,
    /// WebSocket pings to quiet connections this often ...
    pub ping_interval_secs: u64,
    /// ... and a connection silent for this long is closed.
    pub pong_timeout_secs: u64,
    /// Bytes that may wait for one slow reader; past them it is closed (1008).
    pub outbound_bytes: usize,
    /// A connection's messages that come within this many milliseconds of its last write
    /// go out together at the end of the window (one write instead of one each); 0 writes
    /// each at once.
    pub coalesce_ms: u64,
}

impl CommsConfig {
    pub fn coalesce_window(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.coalesce_ms)
    }
}

impl Default for CommsConfig {
    fn default() -> Self {
        Self {
            topics_per_connection: 128,
            history_per_topic: 100,
            mailbox_per_user: 100,
            messages_per_second: 100.0,
            message_burst: 200.0,
            token_expiry_lead_secs: 60,
            ping_interval_secs: 30,
            pong_timeout_secs: 60,
            outbound_bytes: 4 << 20,
            coalesce_ms: 20,
        }
    }
}

/// Uploads and downloads of game builds (store-lobby-tcp.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// Largest build accepted, refused at UPLOAD_BEGIN.
    pub max_bytes: u64,
    /// The chunk size the server answers at UPLOAD_BEGIN and streams downloads in.
    pub chunk_bytes: usize,
    /// An upload with no chunk for this long is dropped with its staging files.
    pub idle_timeout_secs: u64,
    /// Uploads one developer may have open at once ...
    pub open_per_account: usize,
    /// ... and all developers together.
    pub open_total: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            chunk_bytes: 512 * 1024,
            idle_timeout_secs: 600,
            open_per_account: 4,
            open_total: 256,
        }
    }
}

/// The studio and platform API (raos-integration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaosConfig {
    /// Requests per second per WebSocket connection, and per account over REST ...
    pub requests_per_second: f64,
    /// ... with bursts of this many; over it: 1004.
    pub request_burst: f64,
    /// REST requests per second per client address (IPv6: per /64), before any token is
    /// looked at ...
    pub address_requests_per_second: f64,
    /// ... with bursts of this many; over it: 429 and 1004.
    pub address_request_burst: f64,
    /// WebSocket pings this often; a connection silent for three intervals is closed.
    pub ping_interval_secs: u64,
    /// Largest project document.
    pub project_max_bytes: usize,
    /// Largest asset (after base64 and gzip are undone).
    pub asset_max_bytes: usize,
}

impl Default for RaosConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 20.0,
            request_burst: 40.0,
            address_requests_per_second: 200.0,
            address_request_burst: 400.0,
            ping_interval_secs: 30,
            project_max_bytes: 1 << 20,
            asset_max_bytes: 8 << 20,
        }
    }
}

/// Game wagers (garp.md): coins, pots and periods.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WagerConfig {
    /// Coins minted into every new account (0: coins enter only by `wallet grant`).
    pub signup_grant: i64,
    /// Where GARP's redirect sends clients, e.g. `wss://node2.example.com`; default: the
    /// node the client reached (from its `Host` header).
    pub connect_base_url: Option<String>,
    /// GARP requests per second per session ...
    pub requests_per_second: f64,
    /// ... with bursts of this many; over it, an error answer.
    pub request_burst: f64,
    /// How long a player's GARP `authToken` stays valid, across reconnects, unless the
    /// player authenticates to the same game again.
    pub player_token_hours: f64,
}

impl WagerConfig {
    pub fn player_token_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.player_token_hours.max(0.0) * 3600.0)
    }
}

impl Default for WagerConfig {
    fn default() -> Self {
        Self {
            signup_grant: 0,
            connect_base_url: None,
            requests_per_second: 50.0,
            request_burst: 100.0,
            player_token_hours: 24.0,
        }
    }
}

/// The space game.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GameConfig {
    /// A directory laid out like `data/` to use instead of the built-in game data.
    pub data_dir: Option<PathBuf>,
    /// How far around its ship a client sees other entities.
    pub aoi_radius: f32,
    /// Seconds between full `world.snapshot`s to each client.
    pub snapshot_interval_secs: f32,
    /// Bytes per second of deltas each client may be sent; the nearest changes go first
    /// and the rest wait their turn. 0 sends every change every tick. (At 20 Hz each delta's
    /// fixed part, with its zone context, is ~300 bytes: 6 KB/s before any entity.)
    pub client_bytes_per_sec: usize,
    /// Messages waiting to be written to one game connection. Short on purpose: deltas are
    /// droppable, and a client that falls further behind than this skips ahead to a fresh
    /// snapshot instead of reading stale ones (and holding their memory).
    pub outbound_queue: usize,
    /// Host name `START_ROOM` tells clients to connect to; default: the HTTP listener's
    /// address (127.0.0.1 when it listens on all interfaces).
    pub public_host: Option<String>,
    /// Seconds between saves of players' progress (stats); achievements save at once.
    pub progress_save_secs: f32,
    /// Whether the space game (star systems, pirates, markets) runs beside the platform;
    /// `false` hosts only the lobby's uploaded games, in arenas.
    pub space_game: bool,
}

impl Default for GameConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            aoi_radius: 2000.0,
            snapshot_interval_secs: 5.0,
            client_bytes_per_sec: 16 * 1024,
            outbound_queue: 40,
            public_host: None,
            progress_save_secs: 5.0,
            space_game: true,
        }
    }
}

impl Config {
    /// The config the command line starts from: built-in defaults, then the TOML file if
    /// one is named, then `ECLIPTIC_<SECTION>__<KEY>` environment variables for any key
    /// of a section (`ECLIPTIC_LIMITS__CONNECTIONS_PER_IP=2048`) and `ECLIPTIC_CORS_ORIGINS`
    /// (`'["https://a.example"]'`). Top-level keys with a flag (`--http`, `--data-dir`, …)
    /// take their variables through the flag. Unknown keys are errors, from either source.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        use figment::providers::{Env, Format as _, Toml};
        let mut figment = figment::Figment::new();
        if let Some(path) = file {
            anyhow::ensure!(
                path.is_file(),
                "cannot read config {}: no such file",
                path.display()
            );
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("ECLIPTIC_")
            .filter(|key| key.as_str().contains("__") || key == "cors_origins")
            .split("__");
        figment
            .merge(env)
            .extract()
            .map_err(|e| anyhow::anyhow!("config: {e}"))
    }

    /// Reads a TOML config file; unknown keys are errors so typos do not go unnoticed.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    /// A config for tests and embedding: every listener on port 0 in `data_dir`.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            http: ([127, 0, 0, 1], 0).into(),
            dev_tcp: ([127, 0, 0, 1], 0).into(),
            lobby_tcp: ([127, 0, 0, 1], 0).into(),
            ..Self::default()
        }
    }

    pub fn tick_period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.tick_hz.max(1)))
    }

    /// Checks values that would make the server misbehave rather than fail loudly.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=1000).contains(&self.tick_hz),
            "tick_hz must be between 1 and 1000"
        );
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_cert and tls_key go together"
        );
        anyhow::ensure!(
            self.limits.inbox_capacity > 0,
            "limits.inbox_capacity must be positive"
        );
        anyhow::ensure!(
            self.limits.outbound_queue > 0,
            "limits.outbound_queue must be positive"
        );
        anyhow::ensure!(
            self.auth.hash_concurrency > 0,
            "auth.hash_concurrency must be positive"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config file in docs/configuration.md is a real one: every key it shows exists,
    /// with the value it says is the default.
    #[test]
    fn the_documented_config_file_parses_to_the_defaults() {
        let page = include_str!("../docs/configuration.md");
        let start = page
            .find("```toml\ntick_hz")
            .expect("the page's config block")
            + 8;
        let block = &page[start..];
        let block = &block[..block.find("```").expect("its end")];
        let shown: Config = toml::from_str(block).expect("the documented config parses");
        let defaults = Config::default();
        assert_eq!(format!("{shown:?}"), format!("{defaults:?}"));
    }
}
