//! The `ecliptic` command line: `serve` (the default) and the operator's helper commands.
//!
//! The `ecliptic` binary is `main_with(|server| server)`. A modded server is a binary of
//! its own that calls [`main_with`] with its plugins, and so keeps every flag, command and
//! behaviour of the stock one:
//!
//! ```no_run
//! use ecliptic::prelude::*;
//!
//! struct MyMod;
//!
//! impl Plugin for MyMod {
//!     fn build(&self, _app: &mut App) {}
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     ecliptic::cli::main_with(|server| server.add_plugin(MyMod))
//! }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use tracing_appender::non_blocking::WorkerGuard;

use crate::Config;
use crate::config::LogFormat;
use crate::protocol::{ops, store};
use crate::services::Accounts;
use crate::services::accounts::{Credential, NewAccount, Role};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

/// mimalloc rather than the system allocator: password hashing allocates 19 MiB a time,
/// and glibc's dynamic mmap threshold kept those blocks after use (1.1 GB of RSS after 50
/// logins, 29 MB with mimalloc). It is also quicker for the many short-lived buffers of
/// deltas and frames.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ecliptic",
    version,
    about = "An authoritative game simulation server"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Operator commands that work on the data directory.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Developer tools (the developer server).
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Player tools (the lobby/store server).
    Play {
        #[command(subcommand)]
        command: PlayCommand,
    },
    /// Drive many real clients against a running server and report what they saw.
    Loadgen(LoadgenArgs),
    /// The wallet ledger, on the data directory.
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
    },
}

#[derive(Subcommand)]
enum WalletCommand {
    /// Mint coins into a user's account.
    Grant {
        username: String,
        amount: i64,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Verify the ledger; exits 1 if the invariant does not hold.
    Check {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Args)]
struct LoadgenArgs {
    #[arg(value_enum)]
    scenario: crate::loadgen::Scenario,
    /// Clients to run (at most 20,000).
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Clients started per second.
    #[arg(long, default_value_t = 200.0)]
    ramp: f64,
    /// Seconds to run (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The server's HTTP listener (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The server's lobby listener (loopback only).
    #[arg(long, default_value = "127.0.0.1:7002")]
    lobby_tcp: SocketAddr,
    /// comms-fanout: the HTTP listener of another node of the same cluster for the
    /// publishers (the subscribers stay on --http), to measure fan-out across nodes.
    #[arg(long)]
    publish_http: Option<SocketAddr>,
    /// game: the star system the players join.
    #[arg(long, default_value = "sol-1")]
    system: String,
    /// game: the encoding the players speak (`binary`: they offer the subprotocol of
    /// the compact encoding).
    #[arg(long, value_enum, default_value = "json")]
    encoding: crate::loadgen::Encoding,
    /// game: every player sends its input on one shared 50 ms beat (as the Colyseus
    /// peer's load does), rather than each on its own clock from when it joined.
    #[arg(long)]
    aligned_inputs: bool,
    /// Client n uses account n + this: load generators sharing a cluster use different
    /// players.
    #[arg(long, default_value_t = 0)]
    account_offset: usize,
    /// comms-fanout: how many clients publish ...
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// ... and how many broadcasts each sends per second.
    #[arg(long, default_value_t = 10.0)]
    publish_rate: f64,
    /// comms-fanout and idle: spread the clients over this many accounts (each logs in
    /// once and its connections share the token); default: one account per client.
    #[arg(long)]
    accounts: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Errors the clients may see before the run counts as failed (exit 1). A run also
    /// fails when any client could not connect.
    #[arg(long, default_value_t = 0)]
    max_errors: u64,
}

/// Who you are on the server. The password is asked for (without echo) when neither the
/// flag nor the variable gives it.
#[derive(Args, Clone)]
struct Login {
    /// Account name.
    #[arg(long, env = "ECLIPTIC_USER")]
    user: String,
    /// Account password (asked for when not given).
    #[arg(long, env = "ECLIPTIC_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

impl Login {
    fn password(&self) -> anyhow::Result<String> {
        match &self.password {
            Some(password) => Ok(password.clone()),
            None => prompt_password(&format!("password for {}: ", self.user)),
        }
    }
}

/// Reads a password from the terminal without echoing it.
fn prompt_password(prompt: &str) -> anyhow::Result<String> {
    rpassword::prompt_password(prompt)
        .map_err(|e| anyhow::anyhow!("no password given and none could be asked for: {e}"))
}

/// The developer server and a developer's login on it.
#[derive(Args, Clone)]
struct DevServer {
    /// The developer server (TCP, store-lobby-tcp.md).
    #[arg(long, env = "ECLIPTIC_DEV_TCP", default_value = "127.0.0.1:7001")]
    dev_tcp: String,
    #[command(flatten)]
    login: Login,
}

/// The lobby/store server and a player's login on it.
#[derive(Args, Clone)]
struct LobbyServer {
    /// The lobby/store server (TCP, store-lobby-tcp.md).
    #[arg(long, env = "ECLIPTIC_LOBBY_TCP", default_value = "127.0.0.1:7002")]
    lobby_tcp: String,
    #[command(flatten)]
    login: Login,
}

/// A running server's HTTP listener and an admin's login on it.
#[derive(Args, Clone)]
struct AdminServer {
    /// The server's HTTP listener (REST under /api/v1).
    #[arg(long, env = "ECLIPTIC_HTTP", default_value = "127.0.0.1:8080")]
    http: String,
    #[command(flatten)]
    login: Login,
}

#[derive(Subcommand)]
enum DevCommand {
    /// Create a game; prints its id and its GARP api key and secret.
    CreateGame {
        /// The game's name.
        #[arg(long)]
        name: String,
        /// What the game is, for players.
        #[arg(long, default_value = "")]
        description: String,
        /// The kind of build (e.g. cli, web).
        #[arg(long, default_value = "cli")]
        game_type: String,
        /// Players per room (a room game needs at least 2; 1 is a single-player game).
        #[arg(long, default_value_t = 4)]
        max_players: i64,
        #[command(flatten)]
        server: DevServer,
    },
    /// List your games.
    Games {
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: DevServer,
    },
    /// List a game's published versions.
    Versions {
        /// The game's id.
        game: String,
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: DevServer,
    },
    /// Change a game's details.
    Update {
        /// The game's id.
        game: String,
        /// What the game is, for players.
        #[arg(long)]
        description: Option<String>,
        /// The kind of build.
        #[arg(long)]
        game_type: Option<String>,
        /// Players per room.
        #[arg(long)]
        max_players: Option<u32>,
        #[command(flatten)]
        server: DevServer,
    },
    /// Put a game online (players see it) or take it offline.
    Status {
        /// The game's id.
        game: String,
        #[arg(value_enum)]
        status: GameStatusArg,
        #[command(flatten)]
        server: DevServer,
    },
    /// Upload a build of one of your games as a new version.
    Upload {
        /// The game's id (from `dev create-game` or `dev games`).
        #[arg(long)]
        game: String,
        /// The new version's name, e.g. 1.0.0.
        #[arg(long)]
        version: String,
        /// The build file.
        file: PathBuf,
        #[command(flatten)]
        server: DevServer,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GameStatusArg {
    Online,
    Offline,
}

#[derive(Subcommand)]
enum PlayCommand {
    /// List the games you can play, and the open rooms.
    List {
        /// Print the server's answers as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: LobbyServer,
    },
    /// Download a game's build (the latest, or --version).
    Download {
        /// The game's id.
        game: String,
        /// A version other than the latest.
        #[arg(long)]
        version: Option<String>,
        /// Where downloads go: <dir>/<player>/<game>/<version>/build.bin.
        #[arg(long, default_value = "./downloads")]
        dir: PathBuf,
        #[command(flatten)]
        server: LobbyServer,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account on the data directory, e.g. the first admin (the server may be
    /// running).
    CreateUser {
        /// The new account's name.
        username: String,
        /// Its password (asked for when not given).
        #[arg(long, env = "ECLIPTIC_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Its role (every account is also a player).
        #[arg(long, value_enum, default_value = "player")]
        role: RoleArg,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Bring the database's schema up to date (the server also does this when it starts);
    /// for a PostgreSQL cluster, run it once before starting the nodes of a new version.
    Migrate {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Back up a node's data while it runs: the database (SQLite's online backup), the
    /// uploaded builds and assets, and a manifest to check a restore against. On
    /// PostgreSQL, use pg_dump (docs/deploying.md).
    Backup {
        /// The archive to write (must not exist).
        file: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Restore a backup into an empty (or new) data directory; every file, table count
    /// and the ledger are checked before it is put in place.
    Restore {
        /// The archive `admin backup` wrote.
        file: PathBuf,
        /// The data directory to restore into: empty or not there yet.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Move a stopped node's SQLite data into an empty PostgreSQL database, and its
    /// uploaded files into the directory the cluster's nodes share (docs/deploying.md).
    MoveTo {
        /// The target database, e.g. postgres://user:password@host/ecliptic.
        url: String,
        /// The nodes' shared data directory (default: leave the files where they are).
        #[arg(long)]
        files_to: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Manage accounts on a running server (through its admin endpoints, so a disabled
    /// account's live sessions end at once).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
        #[command(flatten)]
        server: AdminServer,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List accounts.
    List {
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one account.
    Show {
        /// The account's name.
        username: String,
    },
    /// Disable an account: its sessions end and it cannot log in.
    Disable {
        /// The account's name.
        username: String,
    },
    /// Enable a disabled account.
    Enable {
        /// The account's name.
        username: String,
    },
    /// Set a new password (asked for, or ECLIPTIC_NEW_PASSWORD); the account's sessions end.
    ResetPassword {
        /// The account's name.
        username: String,
        /// The new password (asked for when not given).
        #[arg(long, env = "ECLIPTIC_NEW_PASSWORD", hide_env_values = true)]
        new_password: Option<String>,
    },
    /// Set an account's roles (player is always kept); its sessions end.
    SetRoles {
        /// The account's name.
        username: String,
        /// The roles, e.g. developer admin.
        #[arg(value_enum, required = true)]
        roles: Vec<RoleArg>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Player,
    Developer,
    Admin,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Data directory (SQLite, signing key, uploads).
    #[arg(long, env = "ECLIPTIC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML config file with every limit and timeout.
    #[arg(long, env = "ECLIPTIC_CONFIG")]
    config: Option<PathBuf>,
    /// PostgreSQL (`postgres://user@host/db`) instead of SQLite in the data directory.
    #[arg(long, env = "ECLIPTIC_DATABASE", hide_env_values = true)]
    database: Option<String>,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// HTTP listener (WebSockets, REST, /healthz, /metrics).
    #[arg(long, env = "ECLIPTIC_HTTP")]
    http: Option<SocketAddr>,
    /// Developer server (TCP, store-lobby-tcp.md).
    #[arg(long, env = "ECLIPTIC_DEV_TCP")]
    dev_tcp: Option<SocketAddr>,
    /// Lobby/store server (TCP, store-lobby-tcp.md).
    #[arg(long, env = "ECLIPTIC_LOBBY_TCP")]
    lobby_tcp: Option<SocketAddr>,
    /// A separate listener for /metrics, the admin endpoints and /console (then not served
    /// on --http).
    #[arg(long, env = "ECLIPTIC_ADMIN")]
    admin: Option<SocketAddr>,
    /// Simulation ticks per second.
    #[arg(long, env = "ECLIPTIC_TICK_HZ")]
    tick_hz: Option<u32>,
    /// PEM certificate chain: with --tls-key, every listener speaks TLS.
    #[arg(long, env = "ECLIPTIC_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "ECLIPTIC_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log filter, e.g. `info` or `ecliptic=debug`.
    #[arg(long, env = "ECLIPTIC_LOG")]
    log: Option<String>,
    /// Log lines as text or as JSON objects.
    #[arg(long, env = "ECLIPTIC_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// NATS server (`nats://host:4222`) to run as one node of several.
    #[arg(long, env = "ECLIPTIC_NATS")]
    nats: Option<String>,
}

impl DataArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.database {
            config.store.database = Some(url.clone());
        }
        Ok(config)
    }

    /// The config of a command that works on a data directory: without one named, it
    /// refuses to make `./var` up, and says where it looked.
    fn existing_config(&self) -> anyhow::Result<Config> {
        let config = self.config()?;
        // Named on purpose (a flag, a variable, a config file): made if missing, as the
        // server would. Only the implicit default must already be there.
        let named = self.data_dir.is_some() || self.config.is_some() || self.database.is_some();
        if !named && !config.data_dir.is_dir() {
            let looked = std::env::current_dir()
                .map(|cwd| cwd.join(&config.data_dir))
                .unwrap_or_else(|_| config.data_dir.clone());
            anyhow::bail!(
                "no data directory: looked for {} (the default); name one with --data-dir \
                 or ECLIPTIC_DATA_DIR, or run this where the server keeps ./var",
                looked.display()
            );
        }
        Ok(config)
    }
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = self.data.config()?;
        if let Some(v) = self.http {
            config.http = v;
        }
        if let Some(v) = self.dev_tcp {
            config.dev_tcp = v;
        }
        if let Some(v) = self.lobby_tcp {
            config.lobby_tcp = v;
        }
        if let Some(v) = self.tick_hz {
            config.tick_hz = v;
        }
        if let Some(v) = &self.nats {
            config.cluster.nats = Some(v.clone());
        }
        if let Some(v) = &self.tls_cert {
            config.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            config.tls_key = Some(v.clone());
        }
        if let Some(v) = &self.log {
            config.log = v.clone();
        }
        if let Some(v) = self.admin {
            config.admin = Some(v);
        }
        if let Some(v) = self.log_format {
            config.log_format = v;
        }
        Ok(config)
    }
}

/// Logging for a command-line tool; hold the guard until the command ends.
#[must_use = "log lines are flushed when the guard drops"]
fn init_logging(filter: &str) -> WorkerGuard {
    init_logging_as(filter, LogFormat::Text)
}

/// Logs go to stderr through a writer thread (tracing-appender's non-blocking writer), so
/// no thread that logs, the simulation's included, ever waits on a slow stderr: when its
/// buffer is full, lines are dropped rather than block. The guard flushes them on drop.
#[must_use = "log lines are flushed when the guard drops"]
fn init_logging_as(filter: &str, format: LogFormat) -> WorkerGuard {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (stderr, guard) = tracing_appender::non_blocking(std::io::stderr());
    // Logs go to stderr: stdout carries only the `listening` lines scripts read. Warnings
    // and errors are also kept for the operator console.
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(stderr),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(crate::journal::JournalLayer)
        .init();
    guard
}

/// Runs the `ecliptic` command line; `customize` is applied to the server `serve` starts
/// (its plugins, its game's features).
pub fn main_with(customize: impl FnOnce(crate::Server) -> crate::Server) -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve, customize),
        Some(Command::Serve(args)) => serve(args, customize),
        Some(Command::Admin { command }) => admin(command),
        Some(Command::Dev { command }) => dev(command),
        Some(Command::Play { command }) => play(command),
        Some(Command::Loadgen(args)) => loadgen(args),
        Some(Command::Wallet { command }) => wallet(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ecliptic-net")
        .build()?)
}

fn serve(
    args: ServeArgs,
    customize: impl FnOnce(crate::Server) -> crate::Server,
) -> anyhow::Result<()> {
    let config = args.config()?;
    let _log = init_logging_as(&config.log, config.log_format);
    runtime()?.block_on(async move {
        // Handlers go in before the listening lines: a script may signal as soon as it reads them.
        let stop = ShutdownSignal::install()?;
        let server = customize(crate::Server::new(config)).start().await?;
        let admin = server.admin_addr.map(|addr| ("admin", addr));
        for (name, addr) in [
            ("http", server.http_addr),
            ("dev-tcp", server.dev_tcp_addr),
            ("lobby-tcp", server.lobby_tcp_addr),
        ]
        .into_iter()
        .chain(admin)
        {
            // Not `println!`: a reader that has gone (`serve | head -1`) must not stop
            // the server.
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "listening {name} {addr}");
        }
        tracing::info!("ecliptic is up; SIGINT or SIGTERM stops it");
        let failed = tokio::select! {
            _ = stop.wait() => false,
            _ = server.failed() => true,
        };
        tracing::info!("shutting down");
        server.shutdown().await;
        if failed {
            anyhow::bail!("the simulation stopped after a panic; see the log above");
        }
        Ok(())
    })
}

/// SIGINT and SIGTERM, registered up front so none arriving during startup is missed.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn admin(command: AdminCommand) -> anyhow::Result<()> {
    let _log = init_logging("warn");
    match command {
        AdminCommand::CreateUser {
            username,
            password,
            role,
            data,
        } => {
            let config = data.existing_config()?;
            let password = match password {
                Some(password) => password,
                None => prompt_password(&format!("password for {username}: "))?,
            };
            runtime()?.block_on(async move {
                let store = open_store(&config)?;
                let accounts = accounts_of(&store, &config)?;
                let mut roles = vec![Role::Player, role_of(role)];
                roles.dedup();
                let created = accounts
                    .create_user(NewAccount {
                        username,
                        credential: Credential::Password(password),
                        display_name: None,
                        roles,
                    })
                    .await;
                store.close();
                let account = created?;
                let roles: Vec<_> = account.roles.iter().map(|r| r.as_str()).collect();
                println!(
                    "created {} ({}) with roles {}",
                    account.username,
                    account.user_id,
                    roles.join(",")
                );
                Ok(())
            })
        }
        AdminCommand::Migrate { data } => {
            let config = data.config()?;
            let store = open_store(&config)?;
            let version = store.schema_version()?;
            store.close();
            println!("{} schema at version {version}", store.dialect());
            Ok(())
        }
        AdminCommand::Users { command, server } => runtime()?.block_on(users(command, server)),
        AdminCommand::Backup { file, data } => backup(&file, &data),
        AdminCommand::Restore { file, data_dir } => {
            let manifest = crate::services::backup::restore(&file, &data_dir)?;
            println!(
                "restored {} into {}: {}",
                file.display(),
                data_dir.display(),
                describe(&manifest.tables, manifest.files.len(), &manifest.ledger)
            );
            println!("checked: every file's sha256, the rows of every table, the ledger");
            Ok(())
        }
        AdminCommand::MoveTo {
            url,
            files_to,
            data,
        } => move_to(&url, files_to, &data),
    }
}

/// `admin backup`: SQLite only; PostgreSQL has its own tools.
fn backup(file: &std::path::Path, data: &DataArgs) -> anyhow::Result<()> {
    let config = data.existing_config()?;
    anyhow::ensure!(
        config.store.database.is_none(),
        "this node's database is PostgreSQL: back it up with pg_dump, and the shared data \
         directory's uploadedGame/ and assets/ with your file backups (docs/deploying.md)"
    );
    let summary = crate::services::backup::create(&config.data_dir, file)?;
    let manifest = &summary.manifest;
    println!(
        "backed up {} to {} ({} bytes): {}",
        config.data_dir.display(),
        file.display(),
        summary.bytes,
        describe(&manifest.tables, manifest.files.len(), &manifest.ledger)
    );
    Ok(())
}

/// `admin move-to`: a SQLite node's data into PostgreSQL.
fn move_to(url: &str, files_to: Option<PathBuf>, data: &DataArgs) -> anyhow::Result<()> {
    let config = data.existing_config()?;
    anyhow::ensure!(
        config.store.database.is_none(),
        "this node already runs on a database URL; move-to moves a SQLite data directory"
    );
    let files_to = files_to.unwrap_or_else(|| config.data_dir.clone());
    let summary = crate::services::backup::move_to(
        &config.data_dir,
        url,
        &files_to,
        config.auth.signing_key_file.as_deref(),
    )?;
    println!(
        "moved {} to PostgreSQL, files to {}: {}",
        config.data_dir.display(),
        files_to.display(),
        describe(&summary.tables, summary.files, &summary.ledger)
    );
    if summary.signing_key_carried {
        println!("the token signing key went with it: players stay logged in");
    } else {
        println!("no signing key to carry: the nodes make one, and players log in again");
    }
    println!("checked: the rows of every table, the ledger, every password hash");
    Ok(())
}

/// One line on what a backup, restore or move holds.
fn describe(
    tables: &std::collections::BTreeMap<String, i64>,
    files: usize,
    ledger: &crate::services::backup::Ledger,
) -> String {
    let rows: i64 = tables.values().sum();
    let balance = if ledger.balanced {
        "the ledger balances"
    } else {
        "THE LEDGER DOES NOT BALANCE (as in the source)"
    };
    format!(
        "{} tables, {rows} rows, {files} files, {} coins minted over {} moves; {balance}",
        tables.len(),
        ledger.minted,
        ledger.moves
    )
}

/// The accounts of a data directory, for a command-line tool (a node of its own, told of
/// nothing by the others).
fn accounts_of(store: &crate::store::Store, config: &Config) -> anyhow::Result<Accounts> {
    Accounts::open(
        store.clone(),
        &config.data_dir,
        &config.auth,
        crate::cluster::Cluster::single(),
    )
}

/// The store a command-line tool works on: the server's, as its config names it.
fn open_store(config: &Config) -> anyhow::Result<crate::store::Store> {
    crate::store::Store::connect(
        &config.store.database(&config.data_dir),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        config.store.busy_timeout(),
    )
}

/// `admin users`: the admin endpoints of a running server.
async fn users(command: UsersCommand, server: AdminServer) -> anyhow::Result<()> {
    let admin = crate::client::AdminClient::login(
        &server.http,
        &server.login.user,
        &server.login.password()?,
    )
    .await?;
    let account = match command {
        UsersCommand::List { json } => {
            let answer = admin.get("/admin/accounts?limit=1000").await?;
            if json {
                println!("{}", answer["accounts"]);
                return Ok(());
            }
            for account in answer["accounts"].as_array().into_iter().flatten() {
                println!("{}", account_line(account));
            }
            return Ok(());
        }
        UsersCommand::Show { username } => admin.get(&account_path(&username, "")).await?,
        UsersCommand::Disable { username } => {
            admin
                .post(
                    &account_path(&username, "/disable"),
                    &crate::protocol::NoFields {},
                )
                .await?
        }
        UsersCommand::Enable { username } => {
            admin
                .post(
                    &account_path(&username, "/enable"),
                    &crate::protocol::NoFields {},
                )
                .await?
        }
        UsersCommand::ResetPassword {
            username,
            new_password,
        } => {
            let password = match new_password {
                Some(password) => password,
                None => prompt_password(&format!("new password for {username}: "))?,
            };
            let body = ops::NewPassword { password };
            admin
                .post(&account_path(&username, "/password"), &body)
                .await?
        }
        UsersCommand::SetRoles { username, roles } => {
            let roles = roles
                .into_iter()
                .map(role_of)
                .map(|r| r.as_str().to_owned())
                .collect();
            let body = ops::NewRoles { roles };
            admin
                .post(&account_path(&username, "/roles"), &body)
                .await?
        }
    };
    println!("{}", account_line(&account));
    Ok(())
}

fn account_path(username: &str, action: &str) -> String {
    let name: String = url_escape(username);
    format!("/admin/accounts/{name}{action}")
}

/// Escapes a path segment (usernames are ASCII letters, digits and a few marks).
fn url_escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// One account as a line: name, roles, state, open sessions.
fn account_line(account: &Value) -> String {
    let roles: Vec<&str> = account["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{}  roles={}  {}  sessions={}",
        account["user_profile"]["username"].as_str().unwrap_or("?"),
        roles.join(","),
        if account["disabled"] == true {
            "disabled"
        } else {
            "active"
        },
        account["open_sessions"]
    )
}

fn role_of(role: RoleArg) -> Role {
    match role {
        RoleArg::Player => Role::Player,
        RoleArg::Developer => Role::Developer,
        RoleArg::Admin => Role::Admin,
    }
}

fn dev(command: DevCommand) -> anyhow::Result<()> {
    let _log = init_logging("warn");
    runtime()?.block_on(async move {
        match command {
            DevCommand::Upload {
                game,
                version,
                file,
                server,
            } => {
                let password = server.login.password()?;
                let uploaded = crate::client::upload(
                    &server.dev_tcp,
                    &server.login.user,
                    &password,
                    &game,
                    &version,
                    &file,
                )
                .await?;
                println!(
                    "uploaded {game} {version}: {:.1} MiB in {:.2} s ({:.0} MiB/s), sha256 {}",
                    uploaded.size_bytes as f64 / (1 << 20) as f64,
                    uploaded.elapsed.as_secs_f64(),
                    uploaded.mib_per_sec(),
                    uploaded.checksum
                );
            }
            DevCommand::CreateGame {
                name,
                description,
                game_type,
                max_players,
                server,
            } => {
                let mut client = dev_client(&server).await?;
                let game = client
                    .request(
                        "CREATE_GAME",
                        &store::CreateGame {
                            name,
                            description,
                            game_type,
                            max_players,
                        },
                    )
                    .await?;
                print_created(&game);
            }
            DevCommand::Games { json, server } => {
                let games = dev_client(&server)
                    .await?
                    .request("LIST_MY_GAMES", &crate::protocol::NoFields {})
                    .await?;
                print_games(&games, json);
            }
            DevCommand::Versions { game, json, server } => {
                let answer = dev_client(&server)
                    .await?
                    .request("LIST_VERSIONS", &store::GameRef { game_id: game })
                    .await?;
                print_versions(&answer, json);
            }
            DevCommand::Update {
                game,
                description,
                game_type,
                max_players,
                server,
            } => {
                let payload = store::UpdateGameMeta {
                    game_id: game.clone(),
                    description,
                    max_players,
                    game_type,
                    wage: None,
                    period_hours: None,
                    payout_shares: None,
                };
                dev_client(&server)
                    .await?
                    .request("UPDATE_GAME_META", &payload)
                    .await?;
                println!("updated {game}");
            }
            DevCommand::Status {
                game,
                status,
                server,
            } => {
                let status = match status {
                    GameStatusArg::Online => "ONLINE",
                    GameStatusArg::Offline => "OFFLINE",
                };
                dev_client(&server)
                    .await?
                    .request(
                        "SET_GAME_STATUS",
                        &store::SetGameStatus {
                            game_id: game.clone(),
                            status: status.to_string(),
                        },
                    )
                    .await?;
                println!("{game} is {status}");
            }
        }
        Ok(())
    })
}

async fn dev_client(server: &DevServer) -> anyhow::Result<crate::client::LineClient> {
    let mut client = crate::client::LineClient::connect(&server.dev_tcp).await?;
    client
        .login("LOGIN_DEV", &server.login.user, &server.login.password()?)
        .await?;
    Ok(client)
}

/// A new game: its id, and the GARP credentials shown this once.
fn print_created(game: &Value) {
    let field = |name: &str| game[name].as_str().unwrap_or("?").to_owned();
    println!("created game {}", field("game_id"));
    println!("GARP api key:    {}", field("api_key"));
    println!("GARP api secret: {}", field("api_secret"));
    println!("(keep the secret: it is shown only now)");
}

fn print_versions(answer: &Value, json: bool) {
    if json {
        println!("{answer}");
        return;
    }
    for v in answer["versions"].as_array().into_iter().flatten() {
        let latest = if v["is_latest"] == true {
            "  (latest)"
        } else {
            ""
        };
        println!(
            "{}  uploaded {}{latest}",
            v["version"].as_str().unwrap_or("?"),
            v["uploaded_at"].as_str().unwrap_or("?"),
        );
    }
}

fn print_games(answer: &Value, json: bool) {
    if json {
        println!("{answer}");
        return;
    }
    for g in answer["games"].as_array().into_iter().flatten() {
        println!(
            "{}  {}  {}  latest {}",
            g["game_id"].as_str().unwrap_or("?"),
            g["name"].as_str().unwrap_or("?"),
            g["status"].as_str().unwrap_or("?"),
            g["latest_version"].as_str().unwrap_or("none")
        );
    }
}

fn play(command: PlayCommand) -> anyhow::Result<()> {
    let _log = init_logging("warn");
    runtime()?.block_on(async move {
        match command {
            PlayCommand::List { json, server } => {
                let mut client = crate::client::LineClient::connect(&server.lobby_tcp).await?;
                client
                    .login(
                        "LOGIN_PLAYER",
                        &server.login.user,
                        &server.login.password()?,
                    )
                    .await?;
                let games = client
                    .request("LIST_GAMES", &crate::protocol::NoFields {})
                    .await?;
                let rooms = client
                    .request("LIST_ROOMS", &crate::protocol::NoFields {})
                    .await?;
                if json {
                    /// What `--json` prints: the lobby's games and rooms.
                    #[derive(serde::Serialize)]
                    struct Lobby<'a> {
                        games: &'a Value,
                        rooms: &'a Value,
                    }
                    let lobby = Lobby {
                        games: &games["games"],
                        rooms: &rooms["rooms"],
                    };
                    println!("{}", serde_json::to_string(&lobby)?);
                    return Ok(());
                }
                println!("games:");
                print_games(&games, false);
                println!("rooms:");
                for r in rooms["rooms"].as_array().into_iter().flatten() {
                    println!(
                        "{}  game {}  {}  host {}",
                        r["room_id"].as_str().unwrap_or("?"),
                        r["game_id"].as_str().unwrap_or("?"),
                        r["status"].as_str().unwrap_or("?"),
                        r["host"].as_str().unwrap_or("?")
                    );
                }
            }
            PlayCommand::Download {
                game,
                version,
                dir,
                server,
            } => {
                let path = crate::client::download(
                    &server.lobby_tcp,
                    &server.login.user,
                    &server.login.password()?,
                    &game,
                    version.as_deref(),
                    &dir,
                )
                .await?;
                println!("downloaded {}", path.display());
            }
        }
        Ok(())
    })
}

fn loadgen(args: LoadgenArgs) -> anyhow::Result<()> {
    let _log = init_logging("warn");
    let options = crate::loadgen::Options {
        scenario: args.scenario,
        clients: args.clients,
        ramp_per_sec: args.ramp,
        duration: std::time::Duration::from_secs_f64(args.duration.max(0.0)),
        http: args.http,
        lobby: args.lobby_tcp,
        publish_http: args.publish_http,
        system: args.system,
        encoding: args.encoding,
        aligned_inputs: args.aligned_inputs,
        account_offset: args.account_offset,
        publishers: args.publishers,
        publish_per_sec: args.publish_rate,
        accounts: args.accounts,
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let report = runtime()?.block_on(crate::loadgen::run(options))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    // The report is printed either way; the exit status says whether the run held.
    if report.clients_connected < report.clients_requested as u64 {
        anyhow::bail!(
            "{} of {} clients connected",
            report.clients_connected,
            report.clients_requested
        );
    }
    if report.errors > args.max_errors {
        anyhow::bail!(
            "the clients saw {} errors (at most {} allowed: --max-errors)",
            report.errors,
            args.max_errors
        );
    }
    Ok(())
}

fn wallet(command: WalletCommand) -> anyhow::Result<()> {
    use crate::services::wallet;
    let _log = init_logging("warn");
    let data = match &command {
        WalletCommand::Grant { data, .. } | WalletCommand::Check { data } => data.clone(),
    };
    let config = data.existing_config()?;
    runtime()?.block_on(async move {
        let store = open_store(&config)?;
        let outcome = match command {
            WalletCommand::Grant {
                username, amount, ..
            } => {
                let accounts = accounts_of(&store, &config)?;
                match accounts.find_by_username(&username).await? {
                    None => Err(anyhow::anyhow!("no user named {username:?}")),
                    Some(account) => {
                        let balance = wallet::grant(&store, account.user_id, amount).await?;
                        println!(
                            "granted {amount} to {}; balance {balance}",
                            account.username
                        );
                        Ok(())
                    }
                }
            }
            WalletCommand::Check { .. } => {
                let audit = store.read_now(wallet::audit)?;
                println!(
                    "minted {}, users {}, pots {}, moves {}",
                    audit.total_minted, audit.users, audit.pots, audit.moves
                );
                for violation in &audit.violations {
                    println!("VIOLATION: {violation}");
                }
                if audit.holds() {
                    println!("ok: the ledger balances");
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("the ledger does not balance"))
                }
            }
        };
        store.close();
        outcome
    })
}
