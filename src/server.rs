//! The server as one value: what it runs on (the store, the cluster port, the services,
//! the inbox), the simulation's plugins (the platform's, the space game's, a mod's), the
//! listeners and the endpoints on them, started in that order, and stopped in the
//! reverse one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bevy_app::{App, Plugin, PluginGroupBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bridge::{self, Inbox};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::AppState;
use crate::net::listener::{AcceptConfig, ConnLimiter, RefuseWith};
use crate::net::ndjson::TcpServer;
use crate::services::Accounts;
use crate::sim::{LoopConfig, Sim, SimServices};
use crate::store::Store;
use crate::{cluster, net, protocol, scripting, services, sim, store};

type PluginFn = Box<dyn FnOnce(&mut App) + Send>;

/// Builds and starts a server.
pub struct Server {
    config: Config,
    plugins: Vec<PluginFn>,
    game: GroupCustomizer,
    platform: GroupCustomizer,
    /// Whether the space game runs beside the platform.
    space_game: bool,
}

/// Changes a plugin group (the space game's, the platform's) before it is added.
type GroupCustomizer = Box<dyn FnOnce(PluginGroupBuilder) -> PluginGroupBuilder + Send>;

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
            platform: Box::new(|group| group),
            space_game: true,
        }
    }

    /// Runs the platform alone, without [`sim::SpaceGamePlugins`]: the lobby and catalog,
    /// uploaded games' rooms (played in arenas), GARP, comms and RaOS; no star systems.
    /// The same as `space_game = false` in the config's `[game]`.
    ///
    /// ```
    /// let rooms_only = ecliptic::Server::new(ecliptic::Config::default()).without_space_game();
    /// # drop(rooms_only);
    /// ```
    pub fn without_space_game(mut self) -> Self {
        self.space_game = false;
        self
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

    /// Changes the platform's features ([`sim::PlatformPlugins`]) the same way.
    pub fn platform_plugins(
        mut self,
        change: impl FnOnce(PluginGroupBuilder) -> PluginGroupBuilder + Send + 'static,
    ) -> Self {
        let before = self.platform;
        self.platform = Box::new(move |group| change(before(group)));
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
        let core = Core::open(&config).await?;
        // Bound first: rooms tell clients where the game endpoint is.
        let listeners = Listeners::bind(&config).await?;
        let endpoint = game_endpoint(&config, listeners.http.local_addr()?);
        let data = Arc::new(match &config.game.data_dir {
            Some(dir) => sim::data::GameData::from_dir(dir)?,
            None => sim::data::GameData::embedded()?,
        });
        let achievements = Arc::new(services::progress::Achievements::load(
            config.game.data_dir.as_deref(),
        )?);
        let space_game = self.space_game && config.game.space_game;
        let systems = match space_game {
            true => data.systems.iter().map(|s| s.system_id.clone()).collect(),
            false => Vec::new(),
        };
        let lease_keeper = core.keep_leases(&config, &endpoint, systems);
        let platform = platform_plugins(&config, &core.store, endpoint, &achievements, data)?;
        let mut plugins = self.plugins;
        let game = space_game.then_some(self.game);
        plugins.insert(0, features(&core, platform, self.platform, game));
        let stop_sim = Arc::new(AtomicBool::new(false));
        let sim_failed = CancellationToken::new();
        let (sim_thread, sim_ready) = spawn_sim(
            &config,
            SimServices::new(core.store.clone(), core.metrics.clone()),
            core.inbox_rx.clone(),
            plugins,
            (stop_sim.clone(), sim_failed.clone()),
        )?;
        let state = core.app_state(config, achievements, sim_ready.game_messages);
        let served = listeners.serve(&state)?;
        Ok(ServerHandle {
            http_addr: served.http,
            dev_tcp_addr: served.dev_tcp,
            lobby_tcp_addr: served.lobby_tcp,
            admin_addr: served.admin,
            tls: served.tls,
            metrics: core.metrics,
            inbox: state.inbox.clone(),
            shutdown: core.shutdown,
            tasks: state.tasks.clone(),
            stop_sim,
            sim_thread: Some(sim_thread),
            sim_failed,
            store: core.store,
            cluster: core.cluster,
            lease_keeper,
        })
    }
}

/// What the server runs on, made before anything is bound: the store, the cluster port
/// (connected once the services and features that hear it have registered), the
/// services and the inbox.
struct Core {
    metrics: Arc<Metrics>,
    store: Store,
    cluster: cluster::Cluster,
    accounts: Arc<Accounts>,
    garp_players: Arc<services::garp_players::GarpPlayers>,
    inbox: Inbox,
    inbox_rx: crossbeam_channel::Receiver<bridge::Command>,
    shutdown: CancellationToken,
    /// Rings the lease keeper for a round now (a node left).
    lease_wake: Arc<tokio::sync::Notify>,
}

impl Core {
    async fn open(config: &Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let store = Store::connect(
            &config.store.database(&config.data_dir),
            metrics.clone(),
            config.store.busy_timeout(),
        )?;
        let cluster = cluster::Cluster::new(&config.cluster);
        let accounts = Accounts::open(
            store.clone(),
            &config.data_dir,
            &config.auth,
            cluster.clone(),
        )?
        .with_signup_grant(config.wagers.signup_grant);
        let garp_players = services::garp_players::GarpPlayers::new(
            config.wagers.player_token_lifetime(),
            cluster.clone(),
        );
        let (inbox, inbox_rx) = Inbox::bounded(config.limits.inbox_capacity, metrics.clone());
        let shutdown = CancellationToken::new();
        let lease_wake = Arc::new(tokio::sync::Notify::new());
        sim::hear_cluster(&cluster, &inbox, &store, lease_wake.clone());
        cluster.connect(shutdown.clone()).await?;
        Ok(Self {
            metrics,
            store,
            cluster,
            accounts: Arc::new(accounts),
            garp_players: Arc::new(garp_players),
            inbox,
            inbox_rx,
            shutdown,
            lease_wake,
        })
    }

    /// On a cluster, the lease keeper: it takes and renews this node's star systems and
    /// hands each round to the simulation.
    fn keep_leases(
        &self,
        config: &Config,
        endpoint: &sim::lobby::GameEndpoint,
        systems: Vec<String>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.cluster.is_clustered() {
            return None;
        }
        let keeper = services::leases::Keeper {
            store: self.store.clone(),
            me: services::leases::ThisNode {
                id: self.cluster.node_id().to_owned(),
                host: endpoint.host.clone(),
                port: endpoint.port,
                pinned: self.cluster.pinned_systems().to_vec(),
            },
            systems,
            ttl: config.cluster.lease(),
            wake: self.lease_wake.clone(),
        };
        Some(spawn_lease_keeper(
            keeper,
            self.inbox.clone(),
            self.shutdown.clone(),
        ))
    }

    /// What every endpoint shares.
    fn app_state(
        &self,
        config: Config,
        achievements: Arc<services::progress::Achievements>,
        game_messages: Arc<sim::extend::GameMessageTypes>,
    ) -> AppState {
        let uploads = services::uploads::Uploads::new(
            &config.data_dir,
            config.uploads.max_bytes,
            config.uploads.chunk_bytes,
            Duration::from_secs(config.uploads.idle_timeout_secs.max(1)),
        )
        .with_open_limits(config.uploads.open_per_account, config.uploads.open_total);
        AppState {
            assets: services::assets::AssetFiles::new(
                &config.data_dir,
                config.raos.asset_max_bytes,
            ),
            rest_limits: Arc::new(net::rest_guard::RestLimits::new(&config.raos)),
            config: Arc::new(config),
            accounts: self.accounts.clone(),
            inbox: self.inbox.clone(),
            metrics: self.metrics.clone(),
            store: self.store.clone(),
            uploads: Arc::new(uploads),
            achievements,
            garp_players: self.garp_players.clone(),
            cluster: self.cluster.clone(),
            game_messages,
            shutdown: self.shutdown.clone(),
            tasks: TaskTracker::new(),
        }
    }
}

/// The listeners, bound before the simulation starts.
struct Listeners {
    http: TcpListener,
    dev: TcpListener,
    lobby: TcpListener,
    admin: Option<TcpListener>,
}

/// Where the listeners ended up.
struct Served {
    http: SocketAddr,
    dev_tcp: SocketAddr,
    lobby_tcp: SocketAddr,
    admin: Option<SocketAddr>,
    tls: bool,
}

impl Listeners {
    async fn bind(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            http: bind("http", config.http).await?,
            dev: bind("dev-tcp", config.dev_tcp).await?,
            lobby: bind("lobby-tcp", config.lobby_tcp).await?,
            admin: match config.admin {
                Some(addr) => Some(bind("admin", addr).await?),
                None => None,
            },
        })
    }

    /// Accepts on every listener (TLS where configured) and serves each its endpoints,
    /// with the background tasks the endpoints need.
    fn serve(self, state: &AppState) -> anyhow::Result<Served> {
        let config = &state.config;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(net::listener::tls_acceptor(cert, key)?),
            _ => None,
        };
        let served = Served {
            http: self.http.local_addr()?,
            dev_tcp: self.dev.local_addr()?,
            lobby_tcp: self.lobby.local_addr()?,
            admin: self
                .admin
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?,
            tls: tls.is_some(),
        };
        let accept = AcceptConfig {
            tls,
            limiter: ConnLimiter::new(config.limits.connections_per_ip),
            metrics: state.metrics.clone(),
            shutdown: state.shutdown.clone(),
        };
        net::store_server::spawn_upload_expiry(state.clone());
        spawn_mod_watcher(state);
        net::rest_guard::RestLimits::spawn_forgetting(state.clone());
        let tasks = &state.tasks;
        let mut http_listeners = vec![(self.http, net::http::router(state.clone()))];
        if let Some(admin) = self.admin {
            http_listeners.push((admin, net::http::admin_router(state.clone())));
        }
        for (listener, router) in http_listeners {
            let conns =
                net::listener::spawn_acceptor(listener, "http", RefuseWith::Http, accept.clone());
            tasks.spawn(net::http::serve(
                conns,
                router,
                state.shutdown.clone(),
                tasks.clone(),
                config.limits.header_read_timeout(),
            ));
        }
        for (listener, server) in [(self.dev, TcpServer::Dev), (self.lobby, TcpServer::Lobby)] {
            let conns = net::listener::spawn_acceptor(
                listener,
                server.protocol(),
                RefuseWith::Line(protocol::store::TOO_MANY_CONNECTIONS),
                accept.clone(),
            );
            tasks.spawn(net::ndjson::serve(conns, server, state.clone()));
        }
        tasks.close();
        Ok(served)
    }
}

/// The simulation's features: the cluster port, the platform's plugins, then the space
/// game's (when it runs), each group as the server's builder changed it.
fn features(
    core: &Core,
    platform: sim::PlatformPlugins,
    change_platform: GroupCustomizer,
    game: Option<GroupCustomizer>,
) -> PluginFn {
    let platform = change_platform(bevy_app::PluginGroup::build(platform));
    let game = game.map(|change| change(bevy_app::PluginGroup::build(sim::SpaceGamePlugins)));
    let cluster = core.cluster.clone();
    Box::new(move |app: &mut App| {
        app.insert_resource(cluster).add_plugins(platform);
        if let Some(game) = game {
            app.add_plugins(game);
        }
    })
}

/// The worlds' plugins as the config sets them.
fn worlds(config: &Config, data: Arc<sim::data::GameData>) -> sim::WorldPlugins {
    sim::WorldPlugins {
        data,
        encoding: sim::replication::WorldEncoder(&protocol::game::world::JSON_WORLD),
        replication: sim::replication::ReplicationSettings {
            aoi_radius: config.game.aoi_radius,
            budget_per_tick: config.game.client_bytes_per_sec / config.tick_hz.max(1) as usize,
            snapshot_interval_ticks: (config.game.snapshot_interval_secs * config.tick_hz as f32)
                .ceil()
                .max(1.0) as u64,
        },
    }
}

/// The protocols' encoders of the platform's pushes, for the simulation.
fn encoders() -> sim::encoders::Encoders {
    use crate::protocol::{comms, raos, store};
    sim::encoders::Encoders {
        comms_broadcast: comms::broadcast,
        comms_presence: comms::presence,
        comms_topic_refused: |topic| comms::validate_topic(topic, false).err().map(|e| e.message),
        lobby_presence: store::presence_push,
        lobby_room: store::room_push,
        lobby_chat: store::room_chat_push,
        comms_room_chat: comms::room_chat,
        raos_event: raos::event,
        achievement_unlocked: raos::answers::achievement_unlocked,
        leaderboard_updated: raos::answers::leaderboard_updated,
    }
}

/// The platform's plugins as the config and the database set them.
fn platform_plugins(
    config: &Config,
    store: &Store,
    endpoint: sim::lobby::GameEndpoint,
    achievements: &services::progress::Achievements,
    data: Arc<sim::data::GameData>,
) -> anyhow::Result<sim::PlatformPlugins> {
    let catalog = services::catalog::Catalog::load(store, &config.data_dir)?;
    let wager_book = sim::wagers::WagerBook::load(store)?;
    Ok(sim::PlatformPlugins {
        encoders: encoders(),
        worlds: worlds(config, data),
        lobby: sim::lobby::LobbyPlugin {
            catalog: Arc::new(parking_lot::Mutex::new(Some(catalog))),
            endpoint,
        },
        comms: sim::comms::CommsPlugin {
            limits: sim::comms::HubLimits {
                topics_per_connection: config.comms.topics_per_connection,
                history_per_topic: config.comms.history_per_topic,
            },
        },
        wagers: sim::wagers::WagersPlugin {
            book: Arc::new(parking_lot::Mutex::new(Some(wager_book))),
        },
        progress: sim::progress::ProgressPlugin {
            achievements: achievements.clone(),
            save_every_ticks: (config.game.progress_save_secs * config.tick_hz as f32)
                .ceil()
                .max(1.0) as u64,
        },
        leases: sim::leases::LeasesPlugin {
            clustered: config.cluster.nats.is_some(),
            ttl: config.cluster.lease(),
        },
        scripts: sim::scripts::ScriptsPlugin {
            settings: sim::scripts::ScriptSettings {
                limits: scripting::VmLimits::of(&config.scripts),
            },
        },
    })
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
    let data = protocol::comms::notification_data::<serde_json::Value>(
        "warning",
        "Server shutting down",
        "The server is shutting down; reconnect in a moment.",
        &[],
    );
    (protocol::comms::notification(&data), data)
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.stop_sim.store(true, Ordering::Relaxed);
    }
}
