//! # ecliptic
//!
//! An authoritative game simulation server. One thread owns a bevy ECS world stepped at a
//! fixed rate; tokio tasks speak five wire protocols around it and hand it typed commands
//! through a bounded inbox; SQLite keeps what must survive, written by one group-committing
//! thread. See `docs/operating.md` for the operator's view, `docs/architecture.md` for
//! the design, and the notes at the top of each module.
//!
//! ## Starting a server in-process
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = ecliptic::Config::ephemeral("./var-demo");
//! let server = ecliptic::Server::new(config).start().await?;
//! println!("HTTP on {}", server.http_addr);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Adding gameplay
//!
//! The whole modding surface, from an empty crate to a modded server, is the guide in
//! [`modding`] (`docs/modding.md`); what follows is the short version.
//!
//! A feature is a bevy `Plugin`; its systems go into `FixedUpdate` in one of the
//! [`sim::TickSet`]s, which fix the order of a tick. [`prelude`] has what a mod usually
//! needs:
//!
//! ```
//! use ecliptic::prelude::*;
//!
//! #[derive(Resource, Default)]
//! struct TicksSeen(u64);
//!
//! fn count_ticks(mut seen: ResMut<TicksSeen>) {
//!     seen.0 += 1;
//! }
//!
//! struct CounterPlugin;
//!
//! impl Plugin for CounterPlugin {
//!     fn build(&self, app: &mut App) {
//!         app.init_resource::<TicksSeen>()
//!             .add_systems(FixedUpdate, count_ticks.in_set(TickSet::Zones));
//!     }
//! }
//!
//! let server = ecliptic::Server::new(ecliptic::Config::default()).add_plugin(CounterPlugin);
//! # drop(server);
//! ```
//!
//! ## Reading what happens in play
//!
//! Gameplay facts ([`sim::facts`]) are bevy messages: a plugin reads them like any other.
//!
//! ```
//! use ecliptic::prelude::*;
//!
//! #[derive(Resource, Default)]
//! struct Kills(u64);
//!
//! fn count_kills(mut destroyed: MessageReader<ShipDestroyed>, mut kills: ResMut<Kills>) {
//!     kills.0 += destroyed.read().filter(|d| d.killer_user.is_some()).count() as u64;
//! }
//!
//! struct KillCounter;
//!
//! impl Plugin for KillCounter {
//!     fn build(&self, app: &mut App) {
//!         app.init_resource::<Kills>()
//!             .add_systems(FixedLast, count_kills);
//!     }
//! }
//!
//! // Without the built-in pirates, and with the counter.
//! let server = ecliptic::Server::new(ecliptic::Config::default())
//!     .game_plugins(|game| game.disable::<NpcPlugin>())
//!     .add_plugin(KillCounter);
//! # drop(server);
//! ```

#[cfg(test)]
mod architecture;
pub mod bridge;
pub mod cli;
pub mod client;
pub mod cluster;

/// What a gameplay mod usually needs, in one import: `use ecliptic::prelude::*;`.
pub mod prelude {
    /// The bevy crates ecliptic is built on, at the versions it uses. Through these, bevy's
    /// derives (`#[derive(Component)]`, `Resource`, `Message`) work in a mod crate that
    /// depends on `ecliptic` alone: they name `bevy_ecs`, which this import provides.
    pub use bevy_app;
    pub use bevy_ecs;

    pub use crate::bridge::{ConnId, InboxCommand, Pending};
    pub use crate::params;
    pub use crate::protocol::tolerant;
    pub use crate::services::DomainError;
    pub use crate::sim::comms::{CommsAppExt, ExtensionCall};
    pub use crate::sim::data::{Commodity, StationDef, SystemDef};
    pub use crate::sim::extend::{Caller, FromClient, GameAppExt};
    pub use crate::sim::facts::{
        AchievementUnlocked, PlayerJoined, PlayerLeft, ProjectileHit, ShipDestroyed, ShipDocked,
        ShipUndocked, TradeDone, ZoneEntered, ZoneLeft,
    };
    pub use crate::sim::instances::{Data, InInstance, Instance};
    pub use crate::sim::markets::Market;
    pub use crate::sim::npc::{NpcPlugin, Pirate};
    pub use crate::sim::physics::Kinematics;
    pub use crate::sim::players::{Client, NetIds, Pilot, spawn_ship};
    pub use crate::sim::replication::Replicated;
    pub use crate::sim::ships::{Controls, Hull, Ship};
    pub use crate::sim::stations::Station;
    pub use crate::sim::{HandleCommands, SimServices, SpaceGamePlugins, Tick, TickRate, TickSet};
    pub use crate::store::StoreError;
    pub use crate::store::{Connection, OptionalExtension, Row, ToValue};
    pub use crate::{Config, Server, ServerHandle};
    pub use bevy_app::{App, FixedLast, FixedUpdate, Plugin, PluginGroup};
    pub use bevy_ecs::prelude::*;
    pub use uuid::Uuid;
}
pub mod config;
pub mod encoding;
pub mod journal;
pub mod loadgen;

#[doc = include_str!("../docs/modding.md")]
pub mod modding {}

pub mod metrics;
pub mod net;
pub mod protocol;
pub mod scripting;
pub mod services;
pub mod sim;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bevy_app::{App, Plugin, PluginGroupBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::bridge::Inbox;
use crate::metrics::Metrics;
use crate::net::AppState;
use crate::net::listener::{AcceptConfig, ConnLimiter, Refusal};
use crate::net::ndjson::TcpServer;
use crate::services::Accounts;
use crate::sim::{LoopConfig, Sim, SimServices};
use crate::store::Store;

type PluginFn = Box<dyn FnOnce(&mut App) + Send>;

/// Builds and starts a server.
pub struct Server {
    config: Config,
    plugins: Vec<PluginFn>,
    game: GameCustomizer,
}

/// Changes the space game's plugin group before it is added.
type GameCustomizer = Box<dyn FnOnce(PluginGroupBuilder) -> PluginGroupBuilder + Send>;

/// A running server: its bound addresses, and the way to stop it.
pub struct ServerHandle {
    pub http_addr: SocketAddr,
    pub dev_tcp_addr: SocketAddr,
    pub lobby_tcp_addr: SocketAddr,
    /// The admin listener (`--admin`), when there is one.
    pub admin_addr: Option<SocketAddr>,
    /// Whether the listeners speak TLS.
    pub tls: bool,
    pub metrics: Arc<Metrics>,
    inbox: Inbox,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    stop_sim: Arc<AtomicBool>,
    sim_thread: Option<std::thread::JoinHandle<()>>,
    /// Cancelled if the simulation thread panics.
    sim_failed: CancellationToken,
    store: Store,
    cluster: cluster::Cluster,
    /// The lease keeper, stopped before this node's leases are released at shutdown.
    lease_keeper: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            plugins: Vec::new(),
            game: Box::new(|group| group),
        }
    }

    /// Changes the space game's features ([`sim::SpaceGamePlugins`]): leave one out, or put
    /// another in its place.
    ///
    /// ```
    /// use ecliptic::sim::npc::NpcPlugin;
    /// let server = ecliptic::Server::new(ecliptic::Config::default())
    ///     .game_plugins(|game| game.disable::<NpcPlugin>());
    /// # drop(server);
    /// ```
    pub fn game_plugins(
        mut self,
        change: impl FnOnce(PluginGroupBuilder) -> PluginGroupBuilder + Send + 'static,
    ) -> Self {
        let before = self.game;
        self.game = Box::new(move |group| change(before(group)));
        self
    }

    /// Adds a gameplay plugin to the simulation.
    pub fn add_plugin(mut self, plugin: impl Plugin) -> Self {
        self.plugins.push(Box::new(move |app: &mut App| {
            app.add_plugins(plugin);
        }));
        self
    }

    /// Opens the store, starts the simulation thread and binds every listener.
    pub async fn start(self) -> anyhow::Result<ServerHandle> {
        let config = self.config;
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .and_then(|()| store::make_private(&config.data_dir, 0o700))
            .map_err(|e| {
                anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
            })?;
        let metrics = Arc::new(Metrics::new());
        let store = Store::connect(
            &config.store.database(&config.data_dir),
            metrics.clone(),
            config.store.busy_timeout(),
        )?;
        let cluster = cluster::Cluster::new(&config.cluster);
        let accounts = Arc::new(
            Accounts::open(
                store.clone(),
                &config.data_dir,
                &config.auth,
                cluster.clone(),
            )?
            .with_signup_grant(config.wagers.signup_grant),
        );
        let (inbox, inbox_rx) = Inbox::bounded(config.limits.inbox_capacity, metrics.clone());
        let garp_players = Arc::new(services::garp_players::GarpPlayers::new(
            config.wagers.player_token_lifetime(),
            cluster.clone(),
        ));
        let shutdown = CancellationToken::new();
        let lease_wake = Arc::new(tokio::sync::Notify::new());
        sim::hear_cluster(&cluster, &inbox, &store, lease_wake.clone());
        cluster.connect(shutdown.clone()).await?;

        // Bound first: rooms tell clients where the game endpoint is.
        let http = bind("http", config.http).await?;
        let dev = bind("dev-tcp", config.dev_tcp).await?;
        let lobby = bind("lobby-tcp", config.lobby_tcp).await?;
        let admin = match config.admin {
            Some(addr) => Some(bind("admin", addr).await?),
            None => None,
        };
        let admin_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;
        let (http_addr, dev_tcp_addr, lobby_tcp_addr) =
            (http.local_addr()?, dev.local_addr()?, lobby.local_addr()?);
        let endpoint = game_endpoint(&config, http_addr);
        let catalog = services::catalog::Catalog::load(&store, &config.data_dir)?;
        let wager_book = sim::wagers::WagerBook::load(&store)?;
        let achievements = Arc::new(services::progress::Achievements::load(
            config.game.data_dir.as_deref(),
        )?);
        let data = Arc::new(match &config.game.data_dir {
            Some(dir) => sim::data::GameData::from_dir(dir)?,
            None => sim::data::GameData::embedded()?,
        });
        let keeper = services::leases::Keeper {
            store: store.clone(),
            me: services::leases::ThisNode {
                id: cluster.node_id().to_owned(),
                host: endpoint.host.clone(),
                port: endpoint.port,
                pinned: cluster.pinned_systems().to_vec(),
            },
            systems: data.systems.iter().map(|s| s.system_id.clone()).collect(),
            ttl: config.cluster.lease(),
            wake: lease_wake,
        };
        let lease_keeper = cluster
            .is_clustered()
            .then(|| spawn_lease_keeper(keeper, inbox.clone(), shutdown.clone()));
        let mut plugins = self.plugins;
        let game = sim::SpaceGamePlugins {
            data: data.clone(),
            replication: sim::replication::ReplicationSettings {
                aoi_radius: config.game.aoi_radius,
                budget_per_tick: config.game.client_bytes_per_sec / config.tick_hz.max(1) as usize,
                snapshot_interval_ticks: (config.game.snapshot_interval_secs
                    * config.tick_hz as f32)
                    .ceil()
                    .max(1.0) as u64,
            },
        };
        let (comms_plugin, progress_plugin, scripts_plugin, leases_plugin) =
            configured_plugins(&config, &achievements);
        let lobby_plugin = sim::lobby::LobbyPlugin {
            catalog: Arc::new(parking_lot::Mutex::new(Some(catalog))),
            endpoint,
        };
        let wagers_plugin = sim::wagers::WagersPlugin {
            book: Arc::new(parking_lot::Mutex::new(Some(wager_book))),
        };
        let game = (self.game)(bevy_app::PluginGroup::build(game));
        let sim_cluster = cluster.clone();
        plugins.insert(
            0,
            Box::new(move |app: &mut App| {
                app.add_plugins((
                    game,
                    lobby_plugin,
                    comms_plugin,
                    wagers_plugin,
                    sim::events::EventsPlugin,
                    progress_plugin,
                    sim::admin::AdminPlugin,
                    sim::nodes::NodesPlugin,
                    leases_plugin,
                    scripts_plugin,
                ))
                .insert_resource(sim_cluster);
            }),
        );
        let stop_sim = Arc::new(AtomicBool::new(false));
        let sim_failed = CancellationToken::new();
        let (sim_thread, sim_ready) = spawn_sim(
            &config,
            SimServices::new(store.clone(), metrics.clone()),
            inbox_rx,
            plugins,
            (stop_sim.clone(), sim_failed.clone()),
        )?;

        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(net::listener::tls_acceptor(cert, key)?),
            _ => None,
        };
        let accept = AcceptConfig {
            tls: tls.clone(),
            limiter: ConnLimiter::new(config.limits.connections_per_ip),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        };

        let tasks = TaskTracker::new();
        let uploads = Arc::new(
            services::uploads::Uploads::new(
                &config.data_dir,
                config.uploads.max_bytes,
                config.uploads.chunk_bytes,
                Duration::from_secs(config.uploads.idle_timeout_secs.max(1)),
            )
            .with_open_limits(config.uploads.open_per_account, config.uploads.open_total),
        );
        let assets =
            services::assets::AssetFiles::new(&config.data_dir, config.raos.asset_max_bytes);
        let rest_limits = Arc::new(net::rest_guard::RestLimits::new(&config.raos));
        let state = AppState {
            config: Arc::new(config),
            accounts,
            inbox,
            metrics: metrics.clone(),
            store: store.clone(),
            uploads,
            assets,
            achievements,
            garp_players,
            cluster: cluster.clone(),
            rest_limits,
            game_messages: sim_ready.game_messages,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        net::store_server::spawn_upload_expiry(state.clone());
        spawn_mod_watcher(&state);
        net::rest_guard::RestLimits::spawn_forgetting(state.clone());
        let mut http_listeners = vec![(http, net::http::router(state.clone()))];
        if let Some(admin) = admin {
            http_listeners.push((admin, net::http::admin_router(state.clone())));
        }
        for (listener, router) in http_listeners {
            let conns =
                net::listener::spawn_acceptor(listener, "http", Refusal::Http, accept.clone());
            tasks.spawn(net::http::serve(
                conns,
                router,
                shutdown.clone(),
                tasks.clone(),
                state.config.limits.header_read_timeout(),
            ));
        }
        for (listener, server) in [(dev, TcpServer::Dev), (lobby, TcpServer::Lobby)] {
            let conns = net::listener::spawn_acceptor(
                listener,
                server.protocol(),
                Refusal::Ndjson,
                accept.clone(),
            );
            tasks.spawn(net::ndjson::serve(conns, server, state.clone()));
        }
        tasks.close();

        Ok(ServerHandle {
            http_addr,
            dev_tcp_addr,
            lobby_tcp_addr,
            admin_addr,
            tls: tls.is_some(),
            metrics,
            inbox: state.inbox.clone(),
            shutdown,
            tasks,
            stop_sim,
            sim_thread: Some(sim_thread),
            sim_failed,
            store,
            cluster,
            lease_keeper,
        })
    }
}

/// The platform plugins whose settings come from the config alone.
fn configured_plugins(
    config: &Config,
    achievements: &services::progress::Achievements,
) -> (
    sim::comms::CommsPlugin,
    sim::progress::ProgressPlugin,
    sim::scripts::ScriptsPlugin,
    sim::leases::LeasesPlugin,
) {
    let comms = sim::comms::CommsPlugin {
        limits: sim::comms::HubLimits {
            topics_per_connection: config.comms.topics_per_connection,
            history_per_topic: config.comms.history_per_topic,
        },
    };
    let progress = sim::progress::ProgressPlugin {
        achievements: achievements.clone(),
        save_every_ticks: (config.game.progress_save_secs * config.tick_hz as f32)
            .ceil()
            .max(1.0) as u64,
    };
    let scripts = sim::scripts::ScriptsPlugin {
        settings: sim::scripts::ScriptSettings {
            limits: scripting::Limits::of(&config.scripts),
        },
    };
    let leases = sim::leases::LeasesPlugin {
        clustered: config.cluster.nats.is_some(),
        ttl: config.cluster.lease(),
    };
    (comms, progress, scripts, leases)
}

/// Where this node serves `/game`, as rooms and `WRONG_NODE` tell clients.
fn game_endpoint(config: &Config, http_addr: SocketAddr) -> sim::lobby::GameEndpoint {
    let host = config.game.public_host.clone().unwrap_or_else(|| {
        if http_addr.ip().is_unspecified() {
            "127.0.0.1".into()
        } else {
            http_addr.ip().to_string()
        }
    });
    sim::lobby::GameEndpoint {
        host,
        port: http_addr.port(),
    }
}

/// Runs the lease keeper, handing each round to the simulation through the inbox.
fn spawn_lease_keeper(
    keeper: services::leases::Keeper,
    inbox: Inbox,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let report = move |round| {
        let _ = inbox.send(bridge::Command::to(sim::leases::LeasesCommand::Round(
            round,
        )));
    };
    tokio::spawn(keeper.run(report, shutdown))
}

/// Reads the mods folder for changes and hands each to the simulation; a change the inbox
/// has no room for is read again at the next look.
fn spawn_mod_watcher(state: &AppState) {
    let config = &state.config;
    let dir = config
        .scripts
        .mods_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("mods"));
    let every = Duration::from_millis(config.scripts.reload_ms.max(50));
    let inbox = state.inbox.clone();
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        let watching = scripting::package::watch_mods(dir, every, move |change| {
            inbox.send(bridge::Command::to(change)).is_ok()
        });
        tokio::select! {
            () = watching => {}
            () = shutdown.cancelled() => {}
        }
    });
}

async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {name} on {addr}: {e}"))
}

/// What the network side takes from the simulation once every plugin is built.
struct SimReady {
    game_messages: Arc<sim::extend::GameMessageTypes>,
}

fn spawn_sim(
    config: &Config,
    services: SimServices,
    inbox: crossbeam_channel::Receiver<bridge::Command>,
    plugins: Vec<PluginFn>,
    (stop, failed): (Arc<AtomicBool>, CancellationToken),
) -> anyhow::Result<(std::thread::JoinHandle<()>, SimReady)> {
    let loop_config = LoopConfig::from(config);
    // The App is built on its own thread: it never leaves it.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SimReady, String>>();
    let handle = std::thread::Builder::new()
        .name("ecliptic-sim".into())
        .spawn(move || {
            let sim = Sim::new(loop_config, services, inbox, move |app| {
                for plugin in plugins {
                    plugin(app);
                }
            });
            let world = sim.world();
            if let Some(errors) = world.get_resource::<sim::extend::StartupErrors>()
                && !errors.0.is_empty()
            {
                let _ = ready_tx.send(Err(errors.0.join("; ")));
                return;
            }
            let ready = SimReady {
                game_messages: Arc::new(world.resource::<sim::extend::GameMessageTypes>().clone()),
            };
            let _ = ready_tx.send(Ok(ready));
            // A panic in a system must not leave a server that accepts players and never
            // ticks: it is reported, and the server stops (see `ServerHandle::failed`).
            let run = std::panic::AssertUnwindSafe(|| sim.run(stop));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!("the simulation thread panicked; the server stops");
                failed.cancel();
            }
        })?;
    let ready = ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the simulation failed to start"))?
        .map_err(|e| anyhow::anyhow!("the simulation failed to start: {e}"))?;
    Ok((handle, ready))
}

impl ServerHandle {
    /// The HTTP base URL (`http://` or `https://`).
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// The simulation's inbox, for code of a mod's own that runs beside the server (an
    /// admin task, a route of its own): it sends the commands its plugin registered
    /// with `add_inbox_command`, and is told `Busy` when the simulation is behind.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// A token cancelled when shutdown begins.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Resolves if the simulation thread dies (a system panicked). The server cannot go
    /// on without it: call [`ServerHandle::shutdown`] and exit with an error, so that a
    /// supervisor restarts it. `ecliptic serve` does this, exiting with status 1.
    pub async fn failed(&self) {
        self.sim_failed.cancelled().await
    }

    /// Stops accepting, closes connections (WebSockets with 1001), stops the simulation,
    /// and lets the store commit everything queued. Bounded to a few seconds.
    pub async fn shutdown(mut self) {
        // Tell comms subscribers first, then close everything.
        let (frame, data) = shutdown_notice();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let published = self
            .inbox
            .send(bridge::Command::to(sim::comms::CommsCommand::Publish {
                topic: "notifications".into(),
                frame: sim::comms::CommsOut::Text(frame),
                record: Some(data),
                count_remote: None,
                reply: Some(done_tx),
            }));
        if published.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), done_rx).await;
        }
        // Writes already asked for commit and their answers are queued before connections
        // close; their writers send what is queued, then close.
        let (flushed_tx, flushed_rx) = tokio::sync::oneshot::channel();
        if self
            .inbox
            .send(bridge::Command::Flush { reply: flushed_tx })
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), flushed_rx).await;
        }
        self.shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(3), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after 3 s; closing anyway");
        }
        self.stop_sim.store(true, Ordering::Relaxed);
        let sim = self.sim_thread.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(sim) = sim {
                let _ = sim.join();
            }
        })
        .await;
        // Nothing is played here any more: hand the systems over at once.
        if let Some(keeper) = self.lease_keeper.take() {
            let _ = keeper.await;
            match services::leases::Keeper::release(&self.store, self.cluster.node_id().into())
                .await
            {
                Ok(released) => tracing::info!(released, "leases released"),
                Err(e) => tracing::warn!("leases not released (they expire on their own): {e}"),
            }
            self.cluster.announce_leaving().await;
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

/// The notification comms subscribers get when the server stops.
fn shutdown_notice() -> (bytes::Bytes, serde_json::Value) {
    let data = serde_json::json!({
        "level": "warning",
        "title": "Server shutting down",
        "message": "The server is shutting down; reconnect in a moment.",
        "actions": [],
    });
    (protocol::comms::notification(&data), data)
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.stop_sim.store(true, Ordering::Relaxed);
    }
}
