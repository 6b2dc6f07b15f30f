//! Scripts in the tick: server mods (`<data-dir>/mods/<name>/`) and the room scripts of
//! uploaded games, each in its own sandboxed Luau VM (`crate::scripting`).
//!
//! Once per tick, after every gameplay set (`FixedLast`), the gameplay facts of the tick
//! and the client messages scripts take are gathered, then each VM runs: a mod's hooks
//! hear the facts, a room's `join`/`leave` and `loop` hear its players and their inputs.
//! Each VM has a time budget per tick and a memory limit; one that errors, overruns or
//! runs out of memory is stopped (a mod is disabled until its files change; a room ends,
//! its players told why), counted in `ecliptic_script_stops_total` and logged with its
//! script position, and the tick goes on.
//!
//! The VMs are not `Send`: they live in a non-send resource, on the simulation thread.

pub mod api;
pub mod host;
mod mods;
pub(crate) mod rooms;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use serde_json::json;

use super::extend::FromClient;
use super::facts::{
    PlayerJoined, PlayerLeft, ProjectileHit, ShipDestroyed, ShipDocked, ShipUndocked, TradeDone,
    ZoneEntered, ZoneLeft,
};
use super::instances::{InInstance, Instance};
use super::replication::Replicated;
use super::stations::Station;
use super::{Pending, SimServices, Tick};
use crate::scripting::package::{ModChange, Permission};
use crate::scripting::{Fault, Vm, VmLimits};
use host::{Hooks, WorldHost};
use mlua::{Function, Lua};

pub use rooms::RoomOutcome;

/// A `/game` message of a type a script takes, as the world receives it.
#[derive(Debug, Clone)]
pub struct ScriptMessage {
    pub kind: String,
    pub payload: serde_json::Value,
}

/// Whose script it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScriptOwner {
    Mod(String),
    Room { room_id: String, game_id: String },
}

impl ScriptOwner {
    /// Where its stored values live: a mod's own space, or its game's (shared by the
    /// game's rooms).
    fn store_space(&self) -> String {
        match self {
            ScriptOwner::Mod(name) => format!("mod:{name}"),
            ScriptOwner::Room { game_id, .. } => format!("game:{game_id}"),
        }
    }

    /// Who owns the message types it takes: a mod itself, or its game for all the
    /// game's rooms.
    pub(crate) fn message_owner(&self) -> String {
        match self {
            ScriptOwner::Mod(name) => format!("mod {name}"),
            ScriptOwner::Room { game_id, .. } => format!("the rooms of game {game_id}"),
        }
    }
}

/// The room game (other than `except`) whose uploaded versions declare message type
/// `kind`: a room game's types are reserved for its rooms.
pub(crate) fn declared_by_room_game(
    world: &World,
    kind: &str,
    except: Option<&str>,
) -> Option<String> {
    let catalog = world.get_resource::<crate::services::catalog::Catalog>()?;
    catalog
        .games()
        .iter()
        .filter(|g| Some(g.game_id.as_str()) != except)
        .find(|g| {
            g.versions.iter().any(|v| {
                v.room
                    .as_ref()
                    .is_some_and(|r| r.manifest.messages.iter().any(|m| m == kind))
            })
        })
        .map(|g| g.game_id.clone())
}

/// Settings every VM runs under.
#[derive(Resource, Debug, Clone, Copy)]
pub struct ScriptSettings {
    pub limits: VmLimits,
}

impl crate::bridge::InboxCommand for ModChange {}

/// A fact of the tick as scripts hear it: the event's name, the instance it happened in,
/// and its fields.
#[derive(Debug, Clone)]
pub(crate) struct Happening {
    pub event: &'static str,
    pub instance: Option<Entity>,
    pub data: serde_json::Value,
}

/// The tick's facts and script messages, gathered for the scripts.
#[derive(Resource, Default)]
pub(crate) struct Happenings {
    facts: Vec<Happening>,
    messages: Vec<FromClient<ScriptMessage>>,
}

/// A result for a script's callback (a read or a saved write).
pub(crate) struct Answer {
    owner: ScriptOwner,
    generation: u64,
    callback: u64,
    value: Result<serde_json::Value, String>,
}

#[derive(Resource, Default)]
pub(crate) struct Answers(Vec<Answer>);

fn net_id(ids: &Query<&Replicated>, entity: Entity) -> Option<String> {
    ids.get(entity).ok().map(|r| r.net_id.to_string())
}

type FactReaders<'w, 's> = (
    MessageReader<'w, 's, ShipDestroyed>,
    MessageReader<'w, 's, ProjectileHit>,
    MessageReader<'w, 's, TradeDone>,
    MessageReader<'w, 's, ShipDocked>,
    MessageReader<'w, 's, ShipUndocked>,
    MessageReader<'w, 's, PlayerJoined>,
    MessageReader<'w, 's, PlayerLeft>,
    MessageReader<'w, 's, ZoneEntered>,
    MessageReader<'w, 's, ZoneLeft>,
);

/// Gathers the tick's facts, with the ids clients know things by (when a script is
/// running to hear them).
#[allow(clippy::too_many_arguments)]
fn gather(
    runtimes: Option<NonSend<Runtimes>>,
    mut out: ResMut<Happenings>,
    (
        mut destroyed,
        mut hits,
        mut trades,
        mut docked,
        mut undocked,
        mut joined,
        mut left,
        mut entered,
        mut exited,
    ): FactReaders,
    mut messages: MessageReader<FromClient<ScriptMessage>>,
    ids: Query<&Replicated>,
    located: Query<&InInstance>,
    stations: Query<&Station>,
    instances: Query<&Instance>,
) {
    for m in messages.read() {
        out.messages.push(FromClient {
            caller: m.caller.clone(),
            seq: m.seq,
            message: m.message.clone(),
        });
    }
    if runtimes.is_none_or(|r| r.mods.is_empty() && r.rooms.is_empty()) {
        return;
    }
    let instance_of = |e: Entity| located.get(e).ok().map(|i| i.0);
    let station_id = |e: Entity| stations.get(e).ok().map(|s| s.station_id.clone());
    let instance_id =
        |e: Option<Entity>| e.and_then(|e| instances.get(e).ok()).map(|i| i.id.clone());
    let mut push = |event: &'static str, instance: Option<Entity>, mut data: serde_json::Value| {
        if let Some(id) = instance_id(instance) {
            data["instance"] = json!(id);
        }
        out.facts.push(Happening {
            event,
            instance,
            data,
        });
    };
    for d in destroyed.read() {
        let instance = instance_of(d.killer).or_else(|| instance_of(d.victim));
        push(
            "ship_destroyed",
            instance,
            json!({"victim": &*d.victim_id, "victim_kind": d.victim_kind,
                   "victim_user": d.victim_user.map(|u| u.to_string()),
                   "killer": net_id(&ids, d.killer),
                   "killer_user": d.killer_user.map(|u| u.to_string())}),
        );
    }
    for h in hits.read() {
        push(
            "hit",
            instance_of(h.target),
            json!({"source": net_id(&ids, h.source), "target": net_id(&ids, h.target),
                   "damage": h.damage, "hull_left": h.hull_left}),
        );
    }
    for t in trades.read() {
        push(
            "trade",
            instance_of(t.ship),
            json!({"ship": net_id(&ids, t.ship), "user": t.user_id.to_string(),
                   "station": station_id(t.station), "commodity": t.commodity_id,
                   "quantity": t.quantity, "credits_delta": t.credits_delta,
                   "credits": t.credits}),
        );
    }
    for (event, ship, station, user) in docked
        .read()
        .map(|d| ("dock", d.ship, d.station, d.user_id))
        .chain(
            undocked
                .read()
                .map(|d| ("undock", d.ship, d.station, d.user_id)),
        )
    {
        push(
            event,
            instance_of(ship),
            json!({"ship": net_id(&ids, ship), "station": station_id(station),
                   "user": user.map(|u| u.to_string())}),
        );
    }
    for (event, user, ship, instance) in joined
        .read()
        .map(|j| ("join", j.user_id, j.ship, j.instance))
        .chain(
            left.read()
                .map(|l| ("leave", l.user_id, l.ship, l.instance)),
        )
    {
        push(
            event,
            Some(instance),
            json!({"ship": net_id(&ids, ship), "user": user.to_string()}),
        );
    }
    for (event, ship, user, zone) in entered
        .read()
        .map(|z| ("zone_entered", z.ship, z.user_id, &z.zone_id))
        .chain(
            exited
                .read()
                .map(|z| ("zone_left", z.ship, z.user_id, &z.zone_id)),
        )
    {
        push(
            event,
            instance_of(ship),
            json!({"ship": net_id(&ids, ship), "user": user.to_string(), "zone": zone}),
        );
    }
}

/// Messages one connection may send scripts in one tick; more are refused with
/// `COOLDOWN`, so no player can spend a script's budget (and end a room) by flooding it.
const MESSAGES_PER_TICK: usize = 16;

fn within_rate(messages: Vec<FromClient<ScriptMessage>>) -> Vec<FromClient<ScriptMessage>> {
    let mut sent: std::collections::HashMap<crate::bridge::ConnId, usize> = Default::default();
    let mut dropped: Vec<(super::extend::Caller, usize)> = Vec::new();
    let kept = messages
        .into_iter()
        .filter(|m| {
            let count = sent.entry(m.caller.conn).or_default();
            *count += 1;
            if *count <= MESSAGES_PER_TICK {
                return true;
            }
            match dropped.iter_mut().find(|(c, _)| c.conn == m.caller.conn) {
                Some((_, n)) => *n += 1,
                None => dropped.push((m.caller.clone(), 1)),
            }
            false
        })
        .collect();
    // One error a tick for each flooding connection, not one per dropped message.
    for (caller, n) in dropped {
        caller.error(
            "COOLDOWN",
            &format!("at most {MESSAGES_PER_TICK} script messages a tick; {n} were dropped"),
        );
    }
    kept
}

/// Runs every VM for this tick.
fn run_scripts(world: &mut World) {
    let Some(mut runtimes) = world.remove_non_send::<Runtimes>() else {
        return;
    };
    let tick = world.resource::<Tick>().0;
    let Happenings { facts, messages } = std::mem::take(&mut *world.resource_mut::<Happenings>());
    let messages = within_rate(messages);
    let answers = std::mem::take(&mut world.resource_mut::<Answers>().0);
    let changes = std::mem::take(&mut world.resource_mut::<Pending<ModChange>>().0);
    let metrics = world.resource::<SimServices>().metrics.clone();
    for change in changes {
        mods::apply_change(world, &mut runtimes, change);
    }
    let began = Instant::now();
    let taken = mods::run(world, &mut runtimes, tick, &facts, &messages, &answers);
    // Each message gets one answer: what a mod took is not the rooms' to answer.
    let messages: Vec<_> = messages
        .into_iter()
        .filter(|m| !taken.contains(&(m.caller.conn, m.seq)))
        .collect();
    let mods_done = Instant::now();
    if !runtimes.mods.is_empty() {
        metrics
            .script_seconds
            .with_label_values(&["mod"])
            .observe((mods_done - began).as_secs_f64());
    }
    let ended = rooms::run(world, &mut runtimes, tick, &facts, messages, &answers);
    if !runtimes.rooms.is_empty() || !ended.is_empty() {
        metrics
            .script_seconds
            .with_label_values(&["room"])
            .observe(mods_done.elapsed().as_secs_f64());
    }
    world.insert_non_send(runtimes);
    for (room_id, outcome) in ended {
        rooms::end(world, &room_id, outcome);
    }
}

/// Server mods and room scripts. Mods arrive as [`ModChange`] commands (the mods folder
/// is watched off the simulation thread); rooms start from the lobby.
pub struct ScriptsPlugin {
    pub settings: ScriptSettings,
}

impl Plugin for ScriptsPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.settings)
            .insert_non_send(Runtimes::default())
            .init_resource::<Happenings>()
            .init_resource::<Answers>()
            .init_resource::<Pending<ModChange>>()
            .add_message::<FromClient<ScriptMessage>>()
            .add_systems(bevy_app::FixedLast, (gather, run_scripts).chain());
    }
}

/// The scripts running now, for the admin API: `(kind, name, state)`.
pub fn running(world: &World) -> Vec<(&'static str, String, String)> {
    world
        .get_non_send::<Runtimes>()
        .map(|r| r.describe())
        .unwrap_or_default()
}

/// A shared, cheap handle to a compiled room script.
pub type RoomScriptRef = Arc<crate::scripting::package::RoomScript>;

/// Every running script: mods by name, rooms by room id.
#[derive(Default)]
pub(crate) struct Runtimes {
    mods: BTreeMap<String, mods::ModRuntime>,
    rooms: BTreeMap<String, rooms::RoomRuntime>,
    next_generation: u64,
}

impl Runtimes {
    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    fn describe(&self) -> Vec<(&'static str, String, String)> {
        let mods = self.mods.iter().map(|(name, m)| {
            let state = match &m.stopped {
                Some(fault) => format!("stopped: {fault}"),
                None => format!("running {}", m.version),
            };
            ("mod", name.clone(), state)
        });
        let rooms = self.rooms.iter().map(|(id, r)| {
            (
                "room",
                id.clone(),
                format!("running {} {}", r.game_id, r.version),
            )
        });
        mods.chain(rooms).collect()
    }
}

/// One VM and what its script registered.
pub(crate) struct Script {
    vm: Vm,
    hooks: Hooks,
    generation: u64,
    /// Message types it took, given back when it stops.
    claimed: Vec<String>,
}

impl Script {
    /// Makes the VM and runs the entry script.
    fn start(
        world: &mut World,
        owner: &ScriptOwner,
        generation: u64,
        compiled: &crate::scripting::Compiled,
        grants: &[Permission],
        room: Option<&host::RoomScope>,
    ) -> Result<Script, Fault> {
        let limits = world.resource::<ScriptSettings>().limits;
        let mut hooks = Hooks::default();
        let mut host = WorldHost {
            world,
            owner,
            generation,
            grants,
            room,
            hooks: &mut hooks,
            claimed: Vec::new(),
            finished: None,
        };
        let name = owner.to_string();
        let vm = Vm::start(
            compiled,
            limits,
            &api::names(),
            move |line| tracing::info!(script = %name, "{line}"),
            &mut host,
        );
        let claimed = std::mem::take(&mut host.claimed);
        match vm {
            Ok(vm) => Ok(Script {
                vm,
                hooks,
                generation,
                claimed,
            }),
            Err(fault) => {
                release(world, &claimed);
                Err(fault)
            }
        }
    }

    /// Calls into the script (`f`) with the world lent to the API; what a room's script
    /// finished with, if it did.
    fn run(
        &mut self,
        world: &mut World,
        owner: &ScriptOwner,
        grants: &[Permission],
        room: Option<&host::RoomScope>,
        f: impl FnOnce(&Lua) -> mlua::Result<()>,
    ) -> Result<Option<Vec<(uuid::Uuid, i64)>>, Fault> {
        let mut host = WorldHost {
            world,
            owner,
            generation: self.generation,
            grants,
            room,
            hooks: &mut self.hooks,
            claimed: Vec::new(),
            finished: None,
        };
        let result = self.vm.call_with_host(&mut host, f);
        let (claimed, finished) = (std::mem::take(&mut host.claimed), host.finished.take());
        self.claimed.extend(claimed);
        result.map(|()| finished)
    }

    /// The callbacks `answers` are for, with their values, taken out of the hooks.
    fn take_answers(&mut self, owner: &ScriptOwner, answers: &[Answer]) -> Vec<(Function, Answer)> {
        answers
            .iter()
            .filter(|a| &a.owner == owner && a.generation == self.generation)
            .filter_map(|a| {
                let f = self.hooks.callbacks.remove(&a.callback)?;
                Some((
                    f,
                    Answer {
                        owner: a.owner.clone(),
                        generation: a.generation,
                        callback: a.callback,
                        value: a.value.clone(),
                    },
                ))
            })
            .collect()
    }

    fn stop(self, world: &mut World) {
        release(world, &self.claimed);
    }
}

/// Calls each callback with `(true, value)` or `(false, error)`.
fn deliver_answers(lua: &Lua, answers: Vec<(Function, Answer)>) -> mlua::Result<()> {
    for (f, answer) in answers {
        match answer.value {
            Ok(value) => f.call::<()>((true, crate::scripting::to_lua(lua, &value)?))?,
            Err(e) => f.call::<()>((false, e))?,
        }
    }
    Ok(())
}

/// Gives back message types a script took.
fn release(world: &World, kinds: &[String]) {
    let types = world.resource::<super::extend::GameMessageTypes>();
    for kind in kinds {
        types.release_for_script(kind);
    }
}

/// Sets `ecliptic_scripts_running{kind}`.
fn count_running(world: &World, kind: &'static str, running: usize) {
    world
        .resource::<SimServices>()
        .metrics
        .scripts_running
        .with_label_values(&[kind])
        .set(running as i64);
}

/// Counts and logs a stopped script.
fn report_stop(world: &World, kind: &'static str, owner: &ScriptOwner, fault: &Fault) {
    world
        .resource::<SimServices>()
        .metrics
        .script_stops
        .with_label_values(&[kind, fault.reason.as_str()])
        .inc();
    tracing::error!(script = %owner, reason = fault.reason.as_str(), "script stopped: {fault}");
}

impl std::fmt::Display for ScriptOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptOwner::Mod(name) => write!(f, "mod {name}"),
            ScriptOwner::Room { room_id, .. } => write!(f, "room {room_id}"),
        }
    }
}
