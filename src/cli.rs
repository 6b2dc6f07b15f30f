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

use crate::Config;
use crate::services::Accounts;
use crate::services::accounts::{Credential, NewAccount, Role};
use clap::{Args, Parser, Subcommand};

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
}

#[derive(Args, Clone)]
struct Login {
    /// Account name.
    #[arg(long, env = "ECLIPTIC_USER")]
    user: String,
    /// Account password.
    #[arg(long, env = "ECLIPTIC_PASSWORD", hide_env_values = true)]
    password: String,
}

#[derive(Subcommand)]
enum DevCommand {
    /// Upload a build of one of your games as a new version.
    Upload {
        #[arg(long)]
        game: String,
        #[arg(long)]
        version: String,
        file: PathBuf,
        /// The developer server.
        #[arg(long, env = "ECLIPTIC_DEV_SERVER", default_value = "127.0.0.1:7001")]
        server: String,
        #[command(flatten)]
        login: Login,
    },
}

#[derive(Subcommand)]
enum PlayCommand {
    /// Download a game's build (the latest, or --version).
    Download {
        game: String,
        #[arg(long)]
        version: Option<String>,
        /// Where downloads go: <dir>/<player>/<game>/<version>/build.bin.
        #[arg(long, default_value = "./downloads")]
        dir: PathBuf,
        /// The lobby/store server.
        #[arg(long, env = "ECLIPTIC_LOBBY_SERVER", default_value = "127.0.0.1:7002")]
        server: String,
        #[command(flatten)]
        login: Login,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account, e.g. the first admin.
    CreateUser {
        username: String,
        #[arg(long, env = "ECLIPTIC_ADMIN_PASSWORD")]
        password: String,
        #[arg(long, value_enum, default_value = "player")]
        role: RoleArg,
        #[command(flatten)]
        data: DataArgs,
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
}

impl DataArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
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
        if let Some(v) = &self.tls_cert {
            config.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            config.tls_key = Some(v.clone());
        }
        if let Some(v) = &self.log {
            config.log = v.clone();
        }
        Ok(config)
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // Logs go to stderr: stdout carries only the `listening` lines scripts read. Warnings
    // and errors are also kept for the operator console.
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(crate::journal::JournalLayer)
        .init();
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
    init_logging(&config.log);
    runtime()?.block_on(async move {
        // Handlers go in before the listening lines: a script may signal as soon as it reads them.
        let stop = ShutdownSignal::install()?;
        let server = customize(crate::Server::new(config)).start().await?;
        for (name, addr) in [
            ("http", server.http_addr),
            ("dev-tcp", server.dev_tcp_addr),
            ("lobby-tcp", server.lobby_tcp_addr),
        ] {
            println!("listening {name} {addr}");
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
    init_logging("warn");
    match command {
        AdminCommand::CreateUser {
            username,
            password,
            role,
            data,
        } => {
            let config = data.config()?;
            runtime()?.block_on(async move {
                let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
                let store = crate::store::Store::open(&config.data_dir, metrics)?;
                let accounts = Accounts::open(store.clone(), &config.data_dir, &config.auth)?;
                let role = match role {
                    RoleArg::Player => Role::Player,
                    RoleArg::Developer => Role::Developer,
                    RoleArg::Admin => Role::Admin,
                };
                let mut roles = vec![Role::Player, role];
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
    }
}

fn dev(command: DevCommand) -> anyhow::Result<()> {
    init_logging("warn");
    let DevCommand::Upload {
        game,
        version,
        file,
        server,
        login,
    } = command;
    let uploaded = runtime()?.block_on(crate::client::upload(
        &server,
        &login.user,
        &login.password,
        &game,
        &version,
        &file,
    ))?;
    println!(
        "uploaded {game} {version}: {:.1} MiB in {:.2} s ({:.0} MiB/s), sha256 {}",
        uploaded.size_bytes as f64 / (1 << 20) as f64,
        uploaded.elapsed.as_secs_f64(),
        uploaded.mib_per_sec(),
        uploaded.checksum
    );
    Ok(())
}

fn play(command: PlayCommand) -> anyhow::Result<()> {
    init_logging("warn");
    let PlayCommand::Download {
        game,
        version,
        dir,
        server,
        login,
    } = command;
    let path = runtime()?.block_on(crate::client::download(
        &server,
        &login.user,
        &login.password,
        &game,
        version.as_deref(),
        &dir,
    ))?;
    println!("downloaded {}", path.display());
    Ok(())
}

fn loadgen(args: LoadgenArgs) -> anyhow::Result<()> {
    init_logging("warn");
    let options = crate::loadgen::Options {
        scenario: args.scenario,
        clients: args.clients,
        ramp_per_sec: args.ramp,
        duration: std::time::Duration::from_secs_f64(args.duration.max(0.0)),
        http: args.http,
        lobby: args.lobby_tcp,
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
    Ok(())
}

fn wallet(command: WalletCommand) -> anyhow::Result<()> {
    use crate::services::wallet;
    init_logging("warn");
    let data = match &command {
        WalletCommand::Grant { data, .. } | WalletCommand::Check { data } => data.clone(),
    };
    let config = data.config()?;
    runtime()?.block_on(async move {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let store = crate::store::Store::open(&config.data_dir, metrics)?;
        let outcome = match command {
            WalletCommand::Grant {
                username, amount, ..
            } => {
                let accounts = Accounts::open(store.clone(), &config.data_dir, &config.auth)?;
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
