//! Players in the space game: connections, sessions, ships, inputs, and saving.
//!
//! The connection task verifies the token and loads the pilot before anything reaches the
//! simulation, so commands here carry an authenticated user. One game session per account:
//! a second login takes the ship over and the first connection is told `SESSION_REPLACED`
//! and closed. Inputs are buffered on the ship (the latest wins within a tick; a `seq` not
//! above the last accepted one is ignored). Trades and repairs reach the world only once
//! they are saved ([`super::trades`]), so `trade.result` leaves only after COMMIT.

use std::collections::HashMap;
use std::sync::Arc;

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use uuid::Uuid;

use super::data::ShipClass;
use super::instances::{Data, InInstance, Instance, Instances};
use super::markets::{self, TradeRequest};
use super::physics::{Body, Kinematics, PhysicsSpace, Steering};
use super::replication::Replicated;
use super::ships::{Controls, Docked, Fuel, Hull, OutOfPlay, Ship};
use super::stations;
use super::trades::{self, Settlement};
use super::weapons::Weapon;
use super::{HandleCommands, Pending, SimServices, Tick, TickRate};
use crate::bridge::ConnId;
use crate::services::pilots::{self, CargoHold, SavedPilot};
use crate::services::play::{CargoItem, GameOut, Input, Refusal, TradeSide};
pub use crate::services::play::{ClientLink, GameError};

/// Commands from `/game` connections.
#[derive(Debug)]
pub enum GameCommand {
    /// A connection authenticated as `user_id`; `saved` is its stored pilot, if any.
    Connect {
        conn: ConnId,
        user_id: Uuid,
        username: String,
        saved: Option<SavedPilot>,
        link: ClientLink,
    },
    Join {
        conn: ConnId,
        system_id: String,
    },
    Input {
        conn: ConnId,
        seq: u64,
        input: Input,
    },
    Trade {
        conn: ConnId,
        side: TradeSide,
        station_id: String,
        commodity_id: String,
        quantity: i64,
    },
    Repair {
        conn: ConnId,
        station_id: String,
    },
    Disconnect {
        conn: ConnId,
    },
    /// A message of a type a plugin added ([`super::extend::GameAppExt::add_game_message`]).
    Extra {
        conn: ConnId,
        seq: u64,
        arrival: super::extend::Arrival,
    },
}

impl crate::bridge::InboxCommand for GameCommand {}

/// WebSocket close code for a connection whose session another login took over.
pub const CLOSE_SESSION_REPLACED: u16 = 4001;

/// A player's lasting state, on their ship.
#[derive(Component, Debug, Clone)]
pub struct Pilot {
    pub user_id: Uuid,
    pub username: String,
    pub credits: i64,
    pub cargo: Vec<CargoHold>,
}

impl Pilot {
    pub fn cargo_units(&self) -> u32 {
        self.cargo.iter().map(|c| c.qty).sum()
    }

    pub fn held(&self, commodity_id: &str) -> u32 {
        self.cargo
            .iter()
            .find(|c| c.commodity_id == commodity_id)
            .map_or(0, |c| c.qty)
    }

    /// Adds (or with a negative `delta`, removes) units; empty holds disappear.
    pub fn stow(&mut self, commodity_id: &str, delta: i64) {
        stow(&mut self.cargo, commodity_id, delta);
    }

    pub fn cargo_view(&self) -> Vec<CargoItem> {
        self.cargo
            .iter()
            .map(|c| CargoItem {
                commodity_id: c.commodity_id.clone(),
                qty: c.qty,
            })
            .collect()
    }
}

/// Trades and repairs allowed per second: refilled continuously, with a burst of twice the
/// rate so a client doing a quick series of legitimate actions is not refused.
#[derive(Debug, Clone)]
pub struct ActionBucket {
    tokens: f32,
    capacity: f32,
    last_tick: u64,
}

impl ActionBucket {
    pub fn new(per_second: u32) -> Self {
        Self {
            tokens: 2.0 * per_second as f32,
            capacity: 2.0 * per_second as f32,
            last_tick: 0,
        }
    }

    /// Takes one action's token at `tick`; false when the player must wait.
    pub fn take(&mut self, tick: u64, tick_hz: u32) -> bool {
        let elapsed = tick.saturating_sub(self.last_tick) as f32 / tick_hz.max(1) as f32;
        self.last_tick = tick;
        self.tokens = (self.tokens + elapsed * self.capacity / 2.0).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The connection steering a player's ship, and what it has been sent.
#[derive(Component, Debug)]
pub struct Client {
    pub link: ClientLink,
    /// Receiving snapshots and deltas (after `session.join_system`).
    pub streaming: bool,
    pub last_input_seq: u64,
    pub needs_snapshot: bool,
    pub last_snapshot_tick: u64,
    /// Entities this client currently knows, and what it has been sent of each.
    pub known: Known,
    /// Replication's work between full scans of a crowded area (see `replication`).
    pub interest: super::replication::Interest,
    pub actions: ActionBucket,
}

impl Client {
    /// Sends this player a message of type `kind` (a plugin's push); it must arrive, so a
    /// client too slow to take it is disconnected.
    pub fn push<T: serde::Serialize>(&self, kind: &'static str, payload: &T) {
        self.link.send(GameOut::message(kind, payload));
    }
}

/// What a client has been sent of one entity.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The id the client knows it by (kept to name it in `entity_removed`).
    pub id: Arc<str>,
    /// The tick of the state last sent; newer changes are pending.
    pub sent_tick: u64,
    /// Grows every tick a pending change waits; the highest go out first.
    pub priority: f32,
}

/// The entities a client knows, sorted by entity.
///
/// Sorted rather than hashed because replication's full scan of an area of interest is a
/// merge of two sorted lists (what the grid holds there, what the client knows): one
/// sequential pass instead of a hash probe, and usually a cache miss, per entity in view.
/// With a thousand clients each knowing hundreds of entities, those probes were most of a
/// crowded tick.
#[derive(Debug, Default)]
pub struct Known {
    pub(crate) entries: Vec<(Entity, Seen)>,
}

impl Known {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Where `entity` is in the list, if known; valid until the list next changes.
    pub fn index_of(&self, entity: Entity) -> Option<usize> {
        self.entries.binary_search_by_key(&entity, |(e, _)| *e).ok()
    }

    pub fn get(&self, entity: Entity) -> Option<&Seen> {
        self.index_of(entity).map(|i| &self.entries[i].1)
    }

    pub fn contains(&self, entity: Entity) -> bool {
        self.index_of(entity).is_some()
    }

    /// The entry at `index` if it is still `entity`'s: a lookup without a search, for
    /// indexes taken since the list last changed.
    pub fn at(&self, index: usize, entity: Entity) -> Option<&Seen> {
        match self.entries.get(index) {
            Some((e, seen)) if *e == entity => Some(seen),
            _ => None,
        }
    }

    pub fn at_mut(&mut self, index: usize, entity: Entity) -> Option<&mut Seen> {
        match self.entries.get_mut(index) {
            Some((e, seen)) if *e == entity => Some(seen),
            _ => None,
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &Seen> {
        self.entries.iter().map(|(_, seen)| seen)
    }

    /// Replaces what is known with `entries`, in any order.
    pub fn replace(&mut self, mut entries: Vec<(Entity, Seen)>) {
        entries.sort_unstable_by_key(|(e, _)| *e);
        self.entries = entries;
    }
}

/// An authenticated game connection.
#[derive(Debug)]
pub struct Session {
    pub user_id: Uuid,
    pub username: String,
    pub link: ClientLink,
    pub saved: Option<SavedPilot>,
    pub ship: Option<Entity>,
}

/// Game connections by id and by account.
#[derive(Resource, Default)]
pub struct Connections {
    sessions: HashMap<ConnId, Session>,
    by_user: HashMap<Uuid, ConnId>,
}

impl Connections {
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Hands out the ids clients know entities by.
#[derive(Resource, Default)]
pub struct NetIds {
    next: u64,
}

impl NetIds {
    pub fn next(&mut self, prefix: &str) -> Arc<str> {
        self.next += 1;
        Arc::from(format!("{prefix}{}", self.next))
    }
}

/// Adds (or with a negative `delta`, removes) units of a commodity in `cargo`; empty holds
/// disappear.
pub fn stow(cargo: &mut Vec<CargoHold>, commodity_id: &str, delta: i64) {
    match cargo.iter_mut().find(|c| c.commodity_id == commodity_id) {
        Some(hold) => hold.qty = (i64::from(hold.qty) + delta).max(0) as u32,
        None if delta > 0 => cargo.push(CargoHold {
            commodity_id: commodity_id.to_owned(),
            qty: u32::try_from(delta).unwrap_or(u32::MAX),
        }),
        None => {}
    }
    cargo.retain(|c| c.qty > 0);
}

/// The record saved for a ship's pilot.
pub fn pilot_record(world: &World, ship: Entity) -> Option<SavedPilot> {
    let pilot = world.get::<Pilot>(ship)?;
    let hull = world.get::<Hull>(ship)?;
    let fuel = world.get::<Fuel>(ship)?;
    let instance = world.get::<InInstance>(ship)?;
    let system_id = world.get::<Instance>(instance.0)?.id.clone();
    Some(SavedPilot {
        user_id: pilot.user_id,
        system_id,
        credits: pilot.credits,
        cargo: pilot.cargo.clone(),
        hull: hull.hp,
        fuel: fuel.level,
    })
}

/// Saves a ship's pilot. A ship whose trade is being saved is saved once it settles, so
/// this save cannot write the state from before the trade over it.
pub fn persist(world: &mut World, ship: Entity) {
    if super::trades::Settling::defer_save(world, ship) {
        return;
    }
    save_now(world, ship);
}

/// Saves a ship's pilot as the world has it now; for a ship about to leave the world (any
/// trade still being saved is then cancelled: this save, queued after it, undoes it).
fn save_now(world: &World, ship: Entity) {
    let Some(record) = pilot_record(world, ship) else {
        return;
    };
    let store = world.resource::<SimServices>().store.clone();
    store.submit(
        move |conn| pilots::save(conn, &record),
        |result| {
            if let Err(e) = result {
                tracing::error!("saving a pilot failed: {e}");
            }
        },
    );
}

/// Spawns a ship of `class` in `instance`, docked at `station` if one is given.
#[allow(clippy::too_many_arguments)]
pub fn spawn_ship(
    world: &mut World,
    instance: Entity,
    class: Arc<ShipClass>,
    net_id: Arc<str>,
    kind: &'static str,
    pos: glam::Vec2,
    rot: f32,
    hull: u32,
    fuel: f32,
) -> Option<Entity> {
    let entity = world.spawn_empty().id();
    let handle = {
        let mut space = world.get_mut::<PhysicsSpace>(instance)?;
        space.add_ship(entity, pos, rot)
    };
    world.entity_mut(entity).insert((
        Ship {
            class: class.clone(),
        },
        Hull {
            hp: hull.min(class.hull),
            max: class.hull,
        },
        Fuel {
            level: fuel.clamp(0.0, class.fuel),
            max: class.fuel,
        },
        Controls::default(),
        Kinematics {
            pos,
            vel: glam::Vec2::ZERO,
            rot,
        },
        Steering::default(),
        Body(handle),
        InInstance(instance),
        Weapon::default(),
        Replicated::new(net_id, kind),
    ));
    Some(entity)
}

/// Removes a ship from the world, body and all.
pub fn despawn_ship(world: &mut World, ship: Entity) {
    let body = world.get::<Body>(ship).copied();
    let instance = world.get::<InInstance>(ship).copied();
    if let (Some(body), Some(instance)) = (body, instance)
        && let Some(mut space) = world.get_mut::<PhysicsSpace>(instance.0)
    {
        space.remove(body.0);
    }
    world.despawn(ship);
}

fn handle_game_commands(world: &mut World) {
    let pending = std::mem::take(&mut world.resource_mut::<Pending<GameCommand>>().0);
    for cmd in pending {
        match cmd {
            GameCommand::Connect {
                conn,
                user_id,
                username,
                saved,
                link,
            } => connect(world, conn, user_id, username, saved, link),
            GameCommand::Join { conn, system_id } => join(world, conn, &system_id),
            GameCommand::Input { conn, seq, input } => buffer_input(world, conn, seq, input),
            GameCommand::Trade {
                conn,
                side,
                station_id,
                commodity_id,
                quantity,
            } => {
                if let Some(ship) = joined_ship(world, conn) {
                    let request = TradeRequest {
                        side,
                        station_id,
                        commodity_id,
                        quantity,
                    };
                    let quote = trades::ensure_idle(world, ship)
                        .and_then(|()| take_action(world, ship))
                        .and_then(|()| markets::quote_trade(world, ship, &request));
                    settle_or_refuse(world, ship, quote);
                }
            }
            GameCommand::Repair { conn, station_id } => {
                if let Some(ship) = joined_ship(world, conn) {
                    let quote = trades::ensure_idle(world, ship)
                        .and_then(|()| take_action(world, ship))
                        .and_then(|()| stations::quote_repair(world, ship, &station_id));
                    settle_or_refuse(world, ship, quote);
                }
            }
            GameCommand::Disconnect { conn } => disconnect(world, conn),
            GameCommand::Extra { conn, seq, arrival } => {
                let caller = world
                    .resource::<Connections>()
                    .sessions
                    .get(&conn)
                    .map(|s| {
                        super::extend::Caller::new(
                            conn,
                            s.user_id,
                            s.username.clone(),
                            s.ship,
                            s.link.clone(),
                        )
                    });
                if let Some(caller) = caller {
                    arrival.deliver(world, caller, seq);
                }
            }
        }
    }
}

/// Starts saving a trade or repair that passed the rules, or answers the rule it broke.
fn settle_or_refuse(world: &mut World, ship: Entity, quote: Result<Settlement, GameError>) {
    match quote {
        Ok(settlement) => trades::begin(world, ship, settlement),
        Err(e) => {
            if let Some(client) = world.get::<Client>(ship) {
                client.link.send(GameOut::Refused(e));
            }
        }
    }
}

fn take_action(world: &mut World, ship: Entity) -> Result<(), GameError> {
    let tick = world.resource::<Tick>().0;
    let hz = world.resource::<TickRate>().0;
    let mut client = world
        .get_mut::<Client>(ship)
        .ok_or_else(|| GameError::new(Refusal::NotJoined, "join a system first"))?;
    if client.actions.take(tick, hz) {
        Ok(())
    } else {
        Err(GameError::new(
            Refusal::Cooldown,
            "too many actions; wait a moment",
        ))
    }
}

/// The ship of a joined connection; answers `NOT_JOINED` otherwise.
fn joined_ship(world: &World, conn: ConnId) -> Option<Entity> {
    let session = world.resource::<Connections>().sessions.get(&conn)?;
    match session.ship {
        Some(ship) if world.get::<Client>(ship).is_some_and(|c| c.streaming) => Some(ship),
        _ => {
            session.link.refuse(
                Refusal::NotJoined,
                "join a system first: session.join_system",
            );
            None
        }
    }
}

fn connect(
    world: &mut World,
    conn: ConnId,
    user_id: Uuid,
    username: String,
    saved: Option<SavedPilot>,
    link: ClientLink,
) {
    let mut ship = None;
    let previous = world
        .resource::<Connections>()
        .by_user
        .get(&user_id)
        .copied();
    if let Some(old_conn) = previous
        && let Some(old) = world
            .resource_mut::<Connections>()
            .sessions
            .remove(&old_conn)
    {
        old.link.refuse(
            Refusal::SessionReplaced,
            "another login took this session over",
        );
        old.link.close(CLOSE_SESSION_REPLACED, "session replaced");
        ship = old.ship;
    }
    // The new connection takes the ship over; it streams again once it joins.
    if let Some(entity) = ship
        && let Some(mut client) = world.get_mut::<Client>(entity)
    {
        client.link = link.clone();
        client.streaming = false;
        client.last_input_seq = 0;
        client.needs_snapshot = true;
        client.known.clear();
        client.interest = Default::default();
    }
    link.send(GameOut::LoggedIn { player_id: user_id });
    let mut connections = world.resource_mut::<Connections>();
    connections.by_user.insert(user_id, conn);
    connections.sessions.insert(
        conn,
        Session {
            user_id,
            username,
            link,
            saved,
            ship,
        },
    );
}

fn join(world: &mut World, conn: ConnId, system_id: &str) {
    let Some(session) = world.resource::<Connections>().sessions.get(&conn) else {
        return;
    };
    let link = session.link.clone();
    let user_id = session.user_id;
    let Some(instance) = world.resource::<Instances>().get(system_id) else {
        link.refuse(
            Refusal::UnknownSystem,
            format!("no system or room named {system_id:?}"),
        );
        return;
    };
    if let Err(refused) = super::lobby::may_enter(world, system_id, user_id) {
        link.refuse(Refusal::NotInRoom, refused.to_string());
        return;
    }
    // A ship taken over in the same instance is kept; one elsewhere is saved and moved.
    let mut keep = None;
    if let Some(existing) = session.ship {
        if world.get::<InInstance>(existing).map(|i| i.0) == Some(instance) {
            keep = Some(existing);
        } else {
            // The new ship starts from this one's state, not from the one loaded at login.
            let record = pilot_record(world, existing);
            if let Some(session) = world.resource_mut::<Connections>().sessions.get_mut(&conn) {
                session.saved = record;
            }
            save_now(world, existing);
            left_instance(world, existing);
            despawn_ship(world, existing);
        }
    }
    let ship = match keep {
        Some(ship) => ship,
        None => match spawn_player(world, conn, instance) {
            Some(ship) => {
                world.write_message(super::facts::PlayerJoined {
                    user_id,
                    ship,
                    instance,
                    system_id: system_id.to_owned(),
                });
                ship
            }
            None => {
                link.refuse(Refusal::ServerError, "could not place your ship");
                return;
            }
        },
    };
    if let Some(session) = world.resource_mut::<Connections>().sessions.get_mut(&conn) {
        session.ship = Some(ship);
    }
    let Some(kin) = world.get::<Kinematics>(ship).copied() else {
        return;
    };
    let ship_id = world
        .get::<Replicated>(ship)
        .map(|r| r.net_id.clone())
        .unwrap_or_else(|| Arc::from(""));
    link.send(GameOut::Joined {
        system_id: system_id.to_owned(),
        ship_id,
        x: round2(kin.pos.x),
        y: round2(kin.pos.y),
        rotation: round3(kin.rot),
    });
    if let Some(mut client) = world.get_mut::<Client>(ship) {
        client.streaming = true;
        client.needs_snapshot = true;
    }
    // The snapshot goes out now, not at the next tick, so it directly follows the join.
    super::replication::send_snapshot(world, ship);
}

fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

/// A new ship for a connection's pilot, docked at the instance's home station.
fn spawn_player(world: &mut World, conn: ConnId, instance: Entity) -> Option<Entity> {
    let data = world.resource::<Data>().0.clone();
    let class = Arc::new(data.ship_class(&data.ships.player_class)?.clone());
    let (user_id, username, saved, link) = {
        let session = world.resource::<Connections>().sessions.get(&conn)?;
        (
            session.user_id,
            session.username.clone(),
            session.saved.clone(),
            session.link.clone(),
        )
    };
    let (station, station_pos) = stations::home_station(world, instance)?;
    let (credits, cargo, hull, fuel) = match &saved {
        Some(s) => (s.credits, s.cargo.clone(), s.hull.max(1), s.fuel),
        None => (
            data.rules.starting_credits,
            Vec::new(),
            class.hull,
            class.fuel,
        ),
    };
    let net_id = world.resource_mut::<NetIds>().next("s_");
    let ship = spawn_ship(
        world,
        instance,
        class,
        net_id,
        "player_ship",
        station_pos,
        0.0,
        hull,
        fuel,
    )?;
    world.entity_mut(ship).insert((
        Docked(station),
        Pilot {
            user_id,
            username,
            credits,
            cargo,
        },
        Client {
            link,
            streaming: false,
            last_input_seq: 0,
            needs_snapshot: true,
            last_snapshot_tick: 0,
            known: Known::default(),
            interest: Default::default(),
            actions: ActionBucket::new(data.rules.actions_per_second),
        },
    ));
    Some(ship)
}

fn buffer_input(world: &mut World, conn: ConnId, seq: u64, input: Input) {
    let Some(ship) = joined_ship(world, conn) else {
        return;
    };
    let Some(mut client) = world.get_mut::<Client>(ship) else {
        return;
    };
    if seq <= client.last_input_seq {
        return; // stale or duplicate
    }
    client.last_input_seq = seq;
    let input = input.clamped();
    if let Some(mut controls) = world.get_mut::<Controls>(ship) {
        *controls = Controls {
            thrust: input.thrust as f32,
            turn: input.turn as f32,
            fire: input.fire_primary,
            dock: input.dock_request,
        };
    }
}

fn disconnect(world: &mut World, conn: ConnId) {
    let Some(session) = world.resource_mut::<Connections>().sessions.remove(&conn) else {
        return;
    };
    {
        let mut connections = world.resource_mut::<Connections>();
        if connections.by_user.get(&session.user_id) == Some(&conn) {
            connections.by_user.remove(&session.user_id);
        }
    }
    if let Some(ship) = session.ship
        && world
            .get::<Client>(ship)
            .is_some_and(|c| c.link.conn == conn)
    {
        save_now(world, ship);
        left_instance(world, ship);
        despawn_ship(world, ship);
    }
}

/// Tells whoever listens that a player's ship is leaving its instance.
fn left_instance(world: &mut World, ship: Entity) {
    let (Some(pilot), Some(instance)) = (world.get::<Pilot>(ship), world.get::<InInstance>(ship))
    else {
        return;
    };
    let (user_id, instance) = (pilot.user_id, instance.0);
    let system_id = world
        .get::<Instance>(instance)
        .map(|i| i.id.clone())
        .unwrap_or_default();
    world.write_message(super::facts::PlayerLeft {
        user_id,
        ship,
        instance,
        system_id,
    });
}

/// Saves every pilot now and then, so a crash loses little hull and fuel (credits and
/// cargo are saved with every trade already).
fn save_pilots_periodically(world: &mut World) {
    let tick = world.resource::<Tick>().0;
    let every = u64::from(world.resource::<TickRate>().0) * 10;
    if every == 0 || !tick.is_multiple_of(every) {
        return;
    }
    let ships: Vec<Entity> = world
        .query_filtered::<Entity, (With<Pilot>, Without<OutOfPlay>)>()
        .iter(world)
        .collect();
    for ship in ships {
        persist(world, ship);
    }
}

pub struct PlayersPlugin;

impl Plugin for PlayersPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Connections>()
            .init_resource::<NetIds>()
            .init_resource::<Pending<GameCommand>>()
            .add_systems(HandleCommands, handle_game_commands)
            .add_systems(bevy_app::FixedLast, save_pilots_periodically);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_entities_are_found_by_search_and_by_a_checked_index() {
        let mut world = World::new();
        let entities: Vec<Entity> = (0..50).map(|_| world.spawn_empty().id()).collect();
        let seen = |tick| Seen {
            id: Arc::from("s"),
            sent_tick: tick,
            priority: 0.0,
        };
        let mut known = Known::default();
        // Any order in, sorted inside.
        known.replace(
            entities
                .iter()
                .rev()
                .step_by(2)
                .map(|e| (*e, seen(7)))
                .collect(),
        );
        assert_eq!(known.len(), 25);
        for (i, entity) in entities.iter().enumerate() {
            assert_eq!(known.contains(*entity), i % 2 == 1, "entity {i}");
        }
        let entity = entities[11];
        let index = known.index_of(entity).unwrap();
        assert_eq!(known.at(index, entity).map(|s| s.sent_tick), Some(7));
        known.at_mut(index, entity).unwrap().sent_tick = 9;
        assert_eq!(known.get(entity).map(|s| s.sent_tick), Some(9));
        // An index that no longer holds the entity finds nothing rather than another's.
        assert!(known.at(index, entities[13]).is_none());
        assert!(known.at(1000, entity).is_none());
    }
}
