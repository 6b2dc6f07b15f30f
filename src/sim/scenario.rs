//! Ready-made worlds for benchmarks: a crowd of ships, connected players and projectiles in
//! one instance, stepped without any network. Used by `benches/`.

use std::sync::Arc;

use bevy_ecs::prelude::*;
use glam::Vec2;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::data::GameData;
use super::instances::{Data, InInstance, Instances};
use super::physics::Kinematics;
use super::players::{ActionBucket, Client, ClientLink, NetIds, Pilot, spawn_ship};
use super::replication::ReplicationSettings;
use super::replication::WorldEncoder;
use super::ships::Controls;
use super::weapons::Projectile;
use super::{LoopConfig, Sim, SimServices, SpaceGamePlugins, Tick, WorldPlugins};
use crate::bridge::Outbound;
use crate::services::play::GameOut;

/// A populated simulation and the receiving ends of its players' queues.
pub struct Crowd {
    pub sim: Sim,
    pub clients: Vec<mpsc::Receiver<GameOut>>,
    instance: Entity,
    projectiles: usize,
    spread: f32,
    rng: u64,
}

/// What to put in the crowd.
#[derive(Debug, Clone, Copy)]
pub struct CrowdSize {
    /// Ships in all, players included.
    pub ships: usize,
    /// How many of the ships have a connected client receiving deltas.
    pub players: usize,
    /// Projectiles kept in flight.
    pub projectiles: usize,
    /// Area of interest radius for the players.
    pub aoi_radius: f32,
    /// Ships are placed at random within this radius of the centre.
    pub spread: f32,
    /// Delta bytes per client per tick (0: no limit).
    pub budget_per_tick: usize,
}

impl CrowdSize {
    /// Ships spread over the whole system, no delta budget.
    pub fn spread_out(ships: usize, players: usize, projectiles: usize) -> Self {
        Self {
            ships,
            players,
            projectiles,
            aoi_radius: 1000.0,
            spread: 11_000.0,
            budget_per_tick: 0,
        }
    }

    /// `players` players at one station, all in each other's area of interest, with the
    /// default delta budget: the load generator's `game` scenario without the network.
    pub fn one_station(players: usize) -> Self {
        let defaults = crate::Config::default();
        Self {
            ships: players,
            players,
            projectiles: 0,
            aoi_radius: 2000.0,
            spread: 300.0,
            budget_per_tick: defaults.game.client_bytes_per_sec / defaults.tick_hz as usize,
        }
    }
}

impl Crowd {
    /// Builds `sol-1` from the embedded data and fills it; clients' views are written
    /// with `encoding` (the game protocol's).
    pub fn new(services: SimServices, size: CrowdSize, encoding: WorldEncoder) -> Self {
        Self::build(services, size, encoding, false)
    }

    /// The same crowd on a server that runs scripts (see [`Crowd::start_room_script`]).
    pub fn scripted(services: SimServices, size: CrowdSize, encoding: WorldEncoder) -> Self {
        Self::build(services, size, encoding, true)
    }

    /// Runs `source` as the room script of a room whose world is the crowd's instance.
    pub fn start_room_script(&mut self, source: &str) -> Result<(), String> {
        use crate::scripting::package::{RoomManifest, RoomSource};
        let entry = "server/main.luau";
        let script = RoomSource {
            manifest: RoomManifest {
                entry: entry.into(),
                messages: Vec::new(),
                system: None,
                settings: Default::default(),
            },
            sources: vec![(entry.into(), source.into())],
        }
        .compile()?;
        super::scripts::rooms::start(
            self.sim.world_mut(),
            "bench-room",
            "bench",
            "1",
            &script,
            self.instance,
            Vec::new(),
        )
    }

    fn build(
        services: SimServices,
        size: CrowdSize,
        encoding: WorldEncoder,
        scripts: bool,
    ) -> Self {
        let data = Arc::new(GameData::embedded().expect("embedded data is valid"));
        let (_inbox, rx) = crossbeam_channel::bounded(16);
        let worlds = WorldPlugins {
            data,
            encoding,
            replication: ReplicationSettings {
                aoi_radius: size.aoi_radius,
                budget_per_tick: size.budget_per_tick,
                snapshot_interval_ticks: 100,
            },
        };
        let sim = Sim::new(
            LoopConfig::from(&crate::Config::default()),
            services,
            rx,
            move |app| {
                app.add_plugins((worlds, SpaceGamePlugins));
                if scripts {
                    app.add_plugins(super::scripts::ScriptsPlugin {
                        settings: super::scripts::ScriptSettings {
                            limits: crate::scripting::VmLimits::of(
                                &crate::Config::default().scripts,
                            ),
                        },
                    });
                }
            },
        );
        let instance = sim
            .world()
            .resource::<Instances>()
            .get("sol-1")
            .expect("sol-1 exists");
        let mut crowd = Self {
            sim,
            clients: Vec::new(),
            instance,
            projectiles: size.projectiles,
            spread: size.spread,
            rng: 0x9e37_79b9_7f4a_7c15,
        };
        for i in 0..size.ships {
            crowd.add_ship(i < size.players);
        }
        crowd.refill_projectiles();
        crowd
    }

    fn random(&mut self) -> f32 {
        // xorshift: deterministic, so runs compare.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 40) as f32 / (1u64 << 24) as f32
    }

    fn random_point(&mut self, radius: f32) -> Vec2 {
        let angle = self.random() * std::f32::consts::TAU;
        Vec2::from_angle(angle) * radius * self.random().sqrt()
    }

    fn add_ship(&mut self, player: bool) {
        let pos = self.random_point(self.spread);
        let rot = self.random() * std::f32::consts::TAU;
        let controls = Controls {
            thrust: self.random(),
            turn: self.random() * 2.0 - 1.0,
            fire: false,
            dock: false,
        };
        let world = self.sim.world_mut();
        let data = world.resource::<Data>().0.clone();
        let class = Arc::new(
            data.ship_class(&data.ships.player_class)
                .expect("player class")
                .clone(),
        );
        let (hull, fuel) = (class.hull, 1.0e9);
        let net_id = world.resource_mut::<NetIds>().next("s_");
        let kind = if player { "player_ship" } else { "pirate" };
        let Some(ship) = spawn_ship(
            world,
            self.instance,
            class,
            net_id,
            kind,
            pos,
            rot,
            hull,
            fuel,
        ) else {
            return;
        };
        world.entity_mut(ship).insert(controls);
        if player {
            let (outbound, rx) = Outbound::bounded(256);
            let link = ClientLink::new(ship.to_bits(), outbound, CancellationToken::new());
            world.entity_mut(ship).insert((
                Pilot {
                    user_id: uuid::Uuid::new_v4(),
                    username: "bench".into(),
                    credits: 0,
                    cargo: Vec::new(),
                },
                Client {
                    link,
                    inputs: Default::default(),
                    streaming: true,
                    last_input_seq: 0,
                    needs_snapshot: false,
                    last_snapshot_tick: 0,
                    known: Default::default(),
                    interest: Default::default(),
                    you_sent: None,
                    actions: ActionBucket::new(10),
                },
            ));
            self.clients.push(rx);
        }
    }

    /// Tops projectiles back up to the configured count (hits remove them).
    pub fn refill_projectiles(&mut self) {
        let world = self.sim.world_mut();
        let alive = world.query::<&Projectile>().iter(world).count();
        let tick = world.resource::<Tick>().0;
        let owner = world
            .query_filtered::<Entity, With<Kinematics>>()
            .iter(world)
            .next();
        let Some(owner) = owner else { return };
        for _ in alive..self.projectiles {
            let pos = self.random_point(self.spread);
            let vel = Vec2::from_angle(self.random() * std::f32::consts::TAU) * 800.0;
            self.sim.world_mut().spawn((
                Projectile {
                    owner,
                    owner_id: Arc::from("bench"),
                    owner_is_player: false,
                    pos,
                    vel,
                    expires_tick: tick + 1_000_000,
                    damage: 0,
                },
                InInstance(self.instance),
            ));
        }
    }

    /// Empties the players' queues, as their writers would.
    pub fn drain(&mut self) -> usize {
        let mut bytes = 0;
        for rx in &mut self.clients {
            while let Ok(msg) = rx.try_recv() {
                bytes += match msg {
                    GameOut::Snapshot(json) | GameOut::Delta(json) => json.len(),
                    GameOut::Message { payload, .. } => payload.len(),
                    _ => 0,
                };
            }
        }
        bytes
    }

    /// Assembles and queues every player's delta for the current tick again, each from a
    /// full scan of its area of interest (the steady state: every moving entity changed,
    /// every visible one already known), then drains.
    pub fn deltas_again(&mut self) -> usize {
        let world = self.sim.world_mut();
        for mut client in world.query::<&mut Client>().iter_mut(world) {
            client.interest.rescan();
        }
        if let Err(e) = world.run_system_cached(super::replication::send_deltas) {
            tracing::error!("delta assembly failed: {e}");
        }
        self.drain()
    }

    /// One tick, then the queues drained; returns the bytes the players were sent.
    pub fn step(&mut self) -> usize {
        self.sim.step();
        self.drain()
    }
}
