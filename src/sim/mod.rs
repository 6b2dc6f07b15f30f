//! The simulation: one thread owns the bevy `App` and its `World`.
//!
//! The loop waits on the inbox with a deadline at the next tick. Whatever arrives is routed
//! into the world and the [`HandleCommands`] schedule runs at once, so a lobby request is
//! answered in microseconds rather than at the next tick. When the tick is due, `FixedMain`
//! runs once (bevy_app provides it and its sub-schedules; bevy_time is not used: this loop is
//! the clock). If the loop falls more than `max_catch_up_ticks` behind it skips ahead and
//! counts an overrun rather than spiralling.
//!
//! The order of a tick is declared once, in [`TickSet`]; a gameplay plugin puts its systems
//! `in_set(TickSet::…)` inside `FixedUpdate` and never orders itself against another plugin.

pub mod admin;
pub mod comms;
pub mod data;
pub mod encoders;
pub mod events;
pub mod extend;
pub mod facts;
pub mod instances;
pub mod leases;
pub mod lobby;
pub mod markets;
pub mod nodes;
pub mod npc;
pub mod physics;
pub mod players;
pub mod progress;
pub mod replication;
pub mod scenario;
pub mod scripts;
pub mod ships;
pub mod stations;
mod stats;
pub mod trades;
pub mod wagers;
pub mod weapons;
pub mod zones;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy_app::{App, FixedMain, FixedUpdate, Plugin};
use bevy_ecs::message::message_update_system;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::{ScheduleLabel, SingleThreadedExecutor};
use crossbeam_channel::{Receiver, Select, Sender};

use crate::bridge::{Command, SimStatus};
use crate::metrics::Metrics;
use crate::store::{Connection, Store, StoreError};

pub use stats::TickStats;

/// What the simulation's features hear from the other nodes of `cluster`, each
/// registered by the feature that owns its notes; before the node connects, so nothing
/// is missed. `leases_wake` rings the lease keeper when a node leaves.
pub fn hear_cluster(
    cluster: &crate::cluster::Cluster,
    inbox: &crate::bridge::Inbox,
    store: &Store,
    leases_wake: Arc<tokio::sync::Notify>,
) {
    comms::hear_cluster(cluster, inbox);
    events::hear_cluster(cluster, inbox);
    nodes::hear_cluster(cluster, inbox, leases_wake);
    lobby::hear_cluster(cluster, inbox, store);
}

/// Runs whenever commands have arrived, between ticks.
#[derive(ScheduleLabel, Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandleCommands;

/// Runs after each `FixedMain`: message buffers are swapped here, so a message written
/// during tick N is readable during ticks N and N+1.
#[derive(ScheduleLabel, Debug, Clone, PartialEq, Eq, Hash)]
pub struct TickEnd;

/// The order of a tick inside `FixedUpdate`.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TickSet {
    Input,
    Movement,
    Combat,
    Npc,
    Stations,
    Markets,
    Zones,
    Replication,
}

impl TickSet {
    /// Every set, in the order a tick runs them.
    pub const ALL: [TickSet; 8] = [
        TickSet::Input,
        TickSet::Movement,
        TickSet::Combat,
        TickSet::Npc,
        TickSet::Stations,
        TickSet::Markets,
        TickSet::Zones,
        TickSet::Replication,
    ];

    fn name(self) -> &'static str {
        match self {
            TickSet::Input => "input",
            TickSet::Movement => "movement",
            TickSet::Combat => "combat",
            TickSet::Npc => "npc",
            TickSet::Stations => "stations",
            TickSet::Markets => "markets",
            TickSet::Zones => "zones",
            TickSet::Replication => "replication",
        }
    }
}

/// When the set being timed began (see [`time_sets`]).
#[derive(Resource, Default)]
struct SetClock(Option<std::time::Instant>);

/// Times each `TickSet` into `ecliptic_tick_set_duration_seconds`: a marker runs before the
/// first set and after each, and gives the time since the last marker to the set before it.
fn time_sets(app: &mut App) {
    app.init_resource::<SetClock>();
    app.add_systems(
        FixedUpdate,
        (|mut clock: ResMut<SetClock>| clock.0 = Some(std::time::Instant::now()))
            .before(TickSet::Input),
    );
    for (i, set) in TickSet::ALL.into_iter().enumerate() {
        let lap = move |mut clock: ResMut<SetClock>, services: Option<Res<SimServices>>| {
            let now = std::time::Instant::now();
            if let (Some(began), Some(services)) = (clock.0, services) {
                services
                    .metrics
                    .tick_set_seconds
                    .with_label_values(&[set.name()])
                    .observe(now.duration_since(began).as_secs_f64());
            }
            clock.0 = Some(now);
        };
        match TickSet::ALL.get(i + 1) {
            Some(&next) => app.add_systems(FixedUpdate, lap.after(set).before(next)),
            None => app.add_systems(FixedUpdate, lap.after(set)),
        };
    }
}

/// The number of the tick being run (or last run); starts at 0.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick(pub u64);

/// Ticks per second.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickRate(pub u32);

impl TickRate {
    /// Seconds per tick.
    pub fn dt(&self) -> f32 {
        1.0 / self.0.max(1) as f32
    }
}

pub use crate::bridge::Pending;

/// Per-tick bookkeeping done first: last tick's events are dropped.
fn begin_tick(mut instances: Query<&mut instances::Instance>) {
    for mut instance in &mut instances {
        instance.events.clear();
    }
}

/// The worlds every game is played in: instances, the physics of ships, players' sessions
/// and ships on `/game`, and replication to their clients. Part of [`PlatformPlugins`]:
/// an uploaded game's rooms are played in these worlds with or without the space game.
pub struct WorldPlugins {
    pub data: Arc<data::GameData>,
    pub replication: replication::ReplicationSettings,
    /// How the world is written for clients: the game protocol's encoding.
    pub encoding: replication::WorldEncoder,
}

impl bevy_app::PluginGroup for WorldPlugins {
    fn build(self) -> bevy_app::PluginGroupBuilder {
        bevy_app::PluginGroupBuilder::start::<Self>()
            .add(instances::InstancesPlugin { data: self.data })
            .add(physics::PhysicsPlugin)
            .add(ships::ShipsPlugin)
            .add(players::PlayersPlugin)
            .add(replication::ReplicationPlugin {
                settings: self.replication,
                encoding: self.encoding,
            })
    }
}

/// The space game on top of the worlds: its star systems, weapons, pirates, stations,
/// markets and zones, in one group. A server can leave one out or put its own in its
/// place (`.disable::<npc::NpcPlugin>()`, `.set(...)`), or run without the group at all
/// (`Server::without_space_game`); the order of a tick stays declared once, by
/// [`TickSet`], whichever plugins run.
pub struct SpaceGamePlugins;

impl bevy_app::PluginGroup for SpaceGamePlugins {
    fn build(self) -> bevy_app::PluginGroupBuilder {
        bevy_app::PluginGroupBuilder::start::<Self>()
            .add(instances::StarSystemsPlugin)
            .add(weapons::WeaponsPlugin)
            .add(npc::NpcPlugin)
            .add(stations::StationsPlugin)
            .add(markets::MarketsPlugin)
            .add(zones::ZonesPlugin)
    }
}

/// The platform's features as one group, beside [`SpaceGamePlugins`] and added before it:
/// the worlds, the lobby and catalog, comms, wagers, the event bus, progress, the admin
/// view, the other nodes, leases and scripts. A server built in code can leave one out or
/// replace it (`Server::platform_plugins`).
pub struct PlatformPlugins {
    /// The protocols' encoders for the platform's pushes.
    pub encoders: encoders::Encoders,
    pub worlds: WorldPlugins,
    pub lobby: lobby::LobbyPlugin,
    pub comms: comms::CommsPlugin,
    pub wagers: wagers::WagersPlugin,
    pub progress: progress::ProgressPlugin,
    pub leases: leases::LeasesPlugin,
    pub scripts: scripts::ScriptsPlugin,
}

impl bevy_app::PluginGroup for PlatformPlugins {
    fn build(self) -> bevy_app::PluginGroupBuilder {
        let encoders = self.encoders;
        bevy_app::PluginGroupBuilder::start::<Self>()
            .add(move |app: &mut bevy_app::App| {
                app.insert_resource(encoders);
            })
            .add_group(self.worlds)
            .add(self.lobby)
            .add(self.comms)
            .add(self.wagers)
            .add(events::EventsPlugin)
            .add(self.progress)
            .add(admin::AdminPlugin)
            .add(nodes::NodesPlugin)
            .add(self.leases)
            .add(self.scripts)
    }
}

/// Shared services the simulation may hand work to.
#[derive(Resource, Clone)]
pub struct SimServices {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    completions: (Sender<Completion>, Receiver<Completion>),
    /// Where reads run, when the server was built inside a tokio runtime.
    runtime: Option<tokio::runtime::Handle>,
}

/// What to do in the world once work handed elsewhere has finished (a store commit).
pub type Completion = Box<dyn FnOnce(&mut World) + Send>;

impl SimServices {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            completions: crossbeam_channel::unbounded(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Runs a read on one of the store's read connections, off the simulation thread;
    /// `then` runs on the simulation thread with the result, before the next tick.
    pub fn read_then<T, F, D>(&self, op: F, then: D)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        D: FnOnce(&mut World, Result<T, StoreError>) + Send + 'static,
    {
        let completions = self.completions.0.clone();
        let finish = move |result| {
            // The simulation has stopped if this fails; nothing is left to update.
            let _ = completions.send(Box::new(move |world: &mut World| then(world, result)));
        };
        let store = self.store.clone();
        match &self.runtime {
            Some(runtime) => {
                runtime.spawn(async move { finish(store.read(op).await) });
            }
            None => {
                std::thread::spawn(move || finish(store.read_now(op)));
            }
        }
    }

    /// A handle for queueing work to run on the simulation thread before the next tick.
    pub fn completions(&self) -> Sender<Completion> {
        self.completions.0.clone()
    }

    /// Queues a write without blocking; once its transaction has committed (or failed),
    /// `then` runs on the simulation thread with the result, before the next tick. This is
    /// how a change reaches the world only after it is durable.
    pub fn write_then<T, F, D>(&self, op: F, then: D)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        D: FnOnce(&mut World, Result<T, StoreError>) + Send + 'static,
    {
        let completions = self.completions.0.clone();
        self.store.submit(op, move |result| {
            // The simulation has stopped if this fails; nothing is left to update.
            let _ = completions.send(Box::new(move |world: &mut World| then(world, result)));
        });
    }
}

/// Settings of the loop itself.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub tick_hz: u32,
    pub commands_per_wake: usize,
    pub max_catch_up_ticks: u32,
}

impl From<&crate::Config> for LoopConfig {
    fn from(config: &crate::Config) -> Self {
        Self {
            tick_hz: config.tick_hz,
            commands_per_wake: config.limits.commands_per_wake,
            max_catch_up_ticks: config.sim.max_catch_up_ticks,
        }
    }
}

/// Registers the schedules, the tick order and the core resources.
pub struct CorePlugin;

impl Plugin for CorePlugin {
    fn build(&self, app: &mut App) {
        let mut handle = Schedule::new(HandleCommands);
        handle.set_executor(SingleThreadedExecutor::new());
        let mut tick_end = Schedule::new(TickEnd);
        tick_end.set_executor(SingleThreadedExecutor::new());
        tick_end.add_systems(message_update_system);
        app.add_schedule(handle)
            .add_schedule(tick_end)
            .init_resource::<Tick>()
            .init_resource::<extend::GameMessageTypes>()
            .add_plugins(facts::FactsPlugin)
            .add_systems(bevy_app::FixedFirst, begin_tick);
        // The sets run one after another, in `TickSet::ALL`'s order.
        for pair in TickSet::ALL.windows(2) {
            app.configure_sets(FixedUpdate, pair[0].before(pair[1]));
        }
        time_sets(app);
    }
}

/// The simulation: an `App` plus the loop that drives it.
pub struct Sim {
    app: App,
    inbox: Receiver<Command>,
    completions: Receiver<Completion>,
    config: LoopConfig,
    stats: TickStats,
    metrics: Arc<Metrics>,
    batch: Vec<Command>,
}

impl Sim {
    /// Builds the world with the core plugin, then `plugins` (the gameplay features).
    pub fn new(
        config: LoopConfig,
        services: SimServices,
        inbox: Receiver<Command>,
        plugins: impl FnOnce(&mut App),
    ) -> Self {
        let mut app = App::new();
        app.insert_resource(TickRate(config.tick_hz.max(1)));
        app.add_plugins(CorePlugin);
        app.insert_resource(services.clone());
        plugins(&mut app);
        app.finish();
        app.cleanup();
        Self {
            app,
            inbox,
            completions: services.completions.1.clone(),
            batch: Vec::with_capacity(config.commands_per_wake),
            config,
            stats: TickStats::new(4096),
            metrics: services.metrics,
        }
    }

    pub fn world(&self) -> &World {
        self.app.world()
    }

    pub fn world_mut(&mut self) -> &mut World {
        self.app.world_mut()
    }

    /// The loop. Returns when `stop` is set (checked at least once a tick).
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        let period = Duration::from_secs_f64(1.0 / f64::from(self.config.tick_hz.max(1)));
        let mut start = Instant::now();
        let mut n: u64 = 1;
        while !stop.load(Ordering::Relaxed) {
            let next_tick = start + period.mul_f64(n as f64);
            let mut ready = Select::new();
            let inbox = ready.recv(&self.inbox);
            ready.recv(&self.completions);
            match ready.ready_deadline(next_tick) {
                Ok(index) if index == inbox => match self.inbox.try_recv() {
                    Ok(first) => {
                        self.batch.push(first);
                        self.drain_and_handle();
                    }
                    // Every sender is gone: nothing will ever arrive again.
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                    Err(crossbeam_channel::TryRecvError::Empty) => {}
                },
                Ok(_) => self.drain_and_handle(),
                Err(_timeout) => {}
            }
            let now = Instant::now();
            if now < next_tick {
                continue;
            }
            self.step();
            n += 1;
            let behind = now.saturating_duration_since(start + period.mul_f64(n as f64));
            let ticks_behind = (behind.as_secs_f64() / period.as_secs_f64()) as u64;
            if ticks_behind > u64::from(self.config.max_catch_up_ticks) {
                // Drop the time we cannot make up; count it so an operator sees it.
                self.stats.overruns += ticks_behind;
                self.metrics.tick_overruns.inc_by(ticks_behind);
                start = now - period.mul_f64(n as f64);
            }
        }
    }

    fn drain_inbox(&mut self) {
        while self.batch.len() < self.config.commands_per_wake {
            match self.inbox.try_recv() {
                Ok(cmd) => self.batch.push(cmd),
                Err(_) => break,
            }
        }
        self.metrics.inbox_depth.set(self.inbox.len() as i64);
    }

    /// Runs finished work's completions, routes the commands waiting in `batch` into the
    /// world and runs `HandleCommands`.
    fn handle_commands(&mut self) {
        while let Ok(complete) = self.completions.try_recv() {
            complete(self.app.world_mut());
        }
        let mut batch = std::mem::take(&mut self.batch);
        // Requests let go of the slots they hold for their replies once handled.
        let mut handled = Vec::new();
        for cmd in batch.drain(..) {
            if let Some(slot) = self.route(cmd) {
                handled.push(slot);
            }
        }
        self.batch = batch;
        self.app.world_mut().run_schedule(HandleCommands);
        drop(handled);
    }

    /// Hands one command to the part of the world that owns it; what a request holds
    /// until it has been handled.
    fn route(&mut self, cmd: Command) -> Option<crate::bridge::InFlight> {
        match cmd {
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Flush { reply } => {
                // The store commits in order and completions run in order, so this one's
                // runs after those of every write queued before it.
                self.app.world().resource::<SimServices>().write_then(
                    |_| Ok(()),
                    move |_, _: Result<(), StoreError>| {
                        let _ = reply.send(());
                    },
                );
            }
            Command::Deliver(delivery) => delivery.deliver(self.app.world_mut()),
            Command::Holding(delivery, slot) => {
                delivery.deliver(self.app.world_mut());
                return Some(slot);
            }
        }
        None
    }

    /// Takes whatever waits in the inbox and handles it, as one wake of the loop does;
    /// for benches and tests that drive the simulation by hand.
    pub fn drain_and_handle(&mut self) {
        self.drain_inbox();
        self.handle_commands();
    }

    /// Runs one tick: `FixedMain`, then the end-of-tick bookkeeping.
    pub fn step(&mut self) {
        let started = Instant::now();
        let world = self.app.world_mut();
        world.resource_mut::<Tick>().0 += 1;
        world.run_schedule(FixedMain);
        world.run_schedule(TickEnd);
        let tick = world.resource::<Tick>().0;
        let elapsed = started.elapsed();
        self.stats.record(elapsed);
        self.metrics.tick_seconds.observe(elapsed.as_secs_f64());
        self.metrics.tick.set(tick as i64);
        if tick.is_multiple_of(u64::from(self.config.tick_hz.max(1))) {
            let summary = self.stats.summary();
            self.metrics.tick_p50.set(summary.p50.as_secs_f64());
            self.metrics.tick_p99.set(summary.p99.as_secs_f64());
            self.metrics.tick_max.set(summary.max.as_secs_f64());
        }
    }

    pub fn status(&self) -> SimStatus {
        let summary = self.stats.summary();
        SimStatus {
            tick: self.app.world().resource::<Tick>().0,
            tick_hz: self.config.tick_hz,
            tick_p50_us: summary.p50.as_micros() as u64,
            tick_p99_us: summary.p99.as_micros() as u64,
            tick_max_us: summary.max.as_micros() as u64,
            overruns: self.stats.overruns,
        }
    }
}
