//! `ecliptic loadgen`: many real clients against a running server, with a report.
//!
//! Scenarios: `game` (log in, join `sol-1`, send inputs at the tick rate, read deltas;
//! latency is input → the first delta that shows it: each client flips its turn direction
//! every half second and times until its ship turns the new way), `comms-fanout`
//! (subscribers and publishers on one topic; latency is publish → deliver), and `lobby`
//! (TCP: log in, then `LIST_GAMES` and `LIST_ROOMS` back to back), and `idle` (comms
//! connections that stay quiet; reports the server memory each costs), and `trade` (docked
//! players trading one unit at a time; latency is a trade's round trip to COMMIT). Accounts are created by
//! the scenario itself (`lg-<scenario>-<n>`). Runs are bounded in clients and time, and
//! only loopback targets are accepted.

mod comms;
mod game;
mod idle;
mod lobby;
mod report;
mod server;
mod trade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;

pub use report::Report;

pub const MAX_CLIENTS: usize = 20_000;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
const PASSWORD: &str = "loadgen-password";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Game,
    CommsFanout,
    Lobby,
    /// Idle comms connections: the server memory each one costs.
    Idle,
    /// Docked players trading one unit at a time: a trade's round trip.
    Trade,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Game => "game",
            Scenario::CommsFanout => "comms-fanout",
            Scenario::Lobby => "lobby",
            Scenario::Idle => "idle",
            Scenario::Trade => "trade",
        }
    }
}

/// How the game scenario's players speak `/game`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    Json,
    /// The compact binary encoding (docs/protocols/game.md, "Binary encoding").
    Binary,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    pub clients: usize,
    /// Clients started per second.
    pub ramp_per_sec: f64,
    pub duration: Duration,
    /// The server's HTTP listener (game and comms).
    pub http: SocketAddr,
    /// The server's lobby listener (accounts, and the lobby scenario).
    pub lobby: SocketAddr,
    /// comms-fanout: another node of a cluster for the publishers to connect to (the
    /// subscribers stay on `http`), to measure fan-out across nodes.
    pub publish_http: Option<SocketAddr>,
    /// game: the star system the players join.
    pub system: String,
    pub encoding: Encoding,
    /// game: inputs on one beat shared by every player, not each player's own.
    pub aligned_inputs: bool,
    /// Client n uses account n + this.
    pub account_offset: usize,
    /// comms-fanout: how many of the clients publish, and how often each.
    pub publishers: usize,
    pub publish_per_sec: f64,
    /// Accounts the clients share (client `n` uses account `n % accounts`); `None`: one
    /// each. Sharing lets a run reach thousands of connections without thousands of
    /// password hashes.
    pub accounts: Option<usize>,
    pub progress: bool,
}

/// Counters every client adds to.
#[derive(Default)]
pub struct RunStats {
    pub connected: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub errors: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl RunStats {
    pub fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn sent(&self) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, what: &str) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            tracing::warn!("loadgen: {what}");
        }
    }

    pub fn latency(&self, took: Duration) {
        let mut samples = self.latencies_us.lock();
        if samples.len() < 2_000_000 {
            samples.push(took.as_micros() as u64);
        }
    }
}

/// The name and password of client `n` of a scenario.
fn account(scenario: Scenario, n: usize) -> String {
    format!("lg-{}-{n}", scenario.name())
}

/// Tokens of accounts already logged in, when clients share accounts.
fn shared_tokens() -> &'static tokio::sync::Mutex<std::collections::HashMap<usize, String>> {
    static TOKENS: std::sync::OnceLock<
        tokio::sync::Mutex<std::collections::HashMap<usize, String>>,
    > = std::sync::OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// Client `n`'s access token: its account's, logged in once when accounts are shared.
async fn token_for(options: &Options, n: usize) -> anyhow::Result<String> {
    let Some(accounts) = options.accounts else {
        return log_in(options, n).await;
    };
    let account = n % accounts.max(1);
    let mut tokens = shared_tokens().lock().await;
    if let Some(token) = tokens.get(&account) {
        return Ok(token.clone());
    }
    let token = log_in(options, account).await?;
    tokens.insert(account, token.clone());
    Ok(token)
}

/// Registers (or logs in) account `n` on the lobby server and returns its access token.
async fn log_in(options: &Options, n: usize) -> anyhow::Result<String> {
    let mut client = crate::client::LineClient::connect(&options.lobby.to_string()).await?;
    let name = account(options.scenario, n + options.account_offset);
    let credentials = crate::protocol::store::Credentials {
        username: name.clone(),
        password: PASSWORD.to_owned(),
    };
    let registered = client.request("REGISTER_PLAYER", &credentials).await;
    let reply = match registered {
        Ok(reply) => reply,
        Err(_) => client.request("LOGIN_PLAYER", &credentials).await?,
    };
    reply["session_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no session_token in {reply}"))
}

fn check_target(addr: &SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "loadgen only targets loopback addresses (got {addr})"
    );
    Ok(())
}

/// Runs a scenario and returns its report.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        (1..=MAX_CLIENTS).contains(&options.clients),
        "--clients must be 1 to {MAX_CLIENTS}"
    );
    anyhow::ensure!(
        options.duration <= MAX_DURATION && !options.duration.is_zero(),
        "--duration must be 1 s to 1 h"
    );
    check_target(&options.http)?;
    check_target(&options.lobby)?;
    if let Some(other_node) = &options.publish_http {
        check_target(other_node)?;
    }
    anyhow::ensure!(
        options.accounts.is_none() || options.scenario != Scenario::Game,
        "--accounts does not apply to game: a second login takes the ship over"
    );
    anyhow::ensure!(options.accounts != Some(0), "--accounts must be at least 1");
    let stats = Arc::new(RunStats::default());
    let started = Instant::now();
    if options.scenario == Scenario::Idle {
        let memory = idle::run(&options, &stats).await?;
        let mut report = Report::from_stats(&options, &stats, started.elapsed());
        report.idle_memory = Some(memory);
        return Ok(report);
    }
    let deadline = tokio::time::Instant::now() + options.duration;
    let stop = tokio_util::sync::CancellationToken::new();
    let progress = progress_bar(&options);
    let mut tasks = tokio::task::JoinSet::new();
    let ramp = Duration::from_secs_f64(1.0 / options.ramp_per_sec.max(0.1));
    for n in 0..options.clients {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let (task_options, task_stats, task_stop) = (options.clone(), stats.clone(), stop.clone());
        tasks.spawn(async move {
            let (options, stats, stop) = (task_options, task_stats, task_stop);
            let outcome = match options.scenario {
                Scenario::Game => game::client(&options, n, &stats, stop).await,
                Scenario::CommsFanout => comms::client(&options, n, &stats, stop).await,
                Scenario::Lobby => lobby::client(&options, n, &stats, stop).await,
                Scenario::Idle => Ok(()), // runs on its own, above
                Scenario::Trade => trade::client(&options, n, &stats, stop).await,
            };
            if let Err(e) = outcome {
                stats.error(&format!("client {n}: {e:#}"));
            }
        });
        if let Some(bar) = &progress {
            bar.set_message(describe(&stats, started));
        }
        tokio::time::sleep(ramp).await;
    }
    // Steady state starts once every client is connected: read the server's tick
    // histogram then, and again at the end.
    let mut steady: Option<(server::TickHistogram, Instant)> = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(bar) = &progress {
            bar.set_message(describe(&stats, started));
        }
        if steady.is_none() && stats.connected.load(Ordering::Relaxed) >= options.clients as u64 {
            steady = tick_histogram(&options)
                .await
                .map(|histogram| (histogram, Instant::now()));
        }
        tokio::time::sleep_until(
            (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline),
        )
        .await;
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let end = tick_histogram(&options).await;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut report = Report::from_stats(&options, &stats, started.elapsed());
    if let (Some((from, at)), Some(to)) = (steady, end) {
        report.server_ticks = Some(to.since(&from, at.elapsed().as_secs_f64()));
    }
    Ok(report)
}

/// The server's tick histogram now, if its `/metrics` can be read (a run goes on without).
async fn tick_histogram(options: &Options) -> Option<server::TickHistogram> {
    match server::metrics(options).await {
        Ok(text) => server::TickHistogram::parse(&text),
        Err(e) => {
            tracing::debug!("reading the server's /metrics: {e}");
            None
        }
    }
}

fn describe(stats: &RunStats, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    format!(
        "{} connected, {:.0} msg/s in, {} errors",
        stats.connected.load(Ordering::Relaxed),
        stats.messages_in.load(Ordering::Relaxed) as f64 / secs,
        stats.errors.load(Ordering::Relaxed)
    )
}

fn progress_bar(options: &Options) -> Option<ProgressBar> {
    if !options.progress {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}
