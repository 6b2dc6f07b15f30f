//! The `ecliptic` API as the world answers it: each function a script calls arrives here
//! by name, with the world lent for the length of the call. Reads see the world as it is;
//! actions happen at once, except those that must be saved first (credits, the store),
//! whose callback runs in a later tick once the write has committed.

use std::collections::HashMap;

use bevy_ecs::prelude::*;
use mlua::{FromLuaMulti, Function, IntoLuaMulti, Lua, MultiValue, Table, Value};
use uuid::Uuid;

use super::api::{self, Access};
use super::{Answer, Answers, ScriptOwner};
use crate::scripting::package::Permission;
use crate::scripting::{self, Host};
use crate::sim::instances::{Data, InInstance, Instance, Instances};
use crate::sim::npc::Pirate;
use crate::sim::physics::Kinematics;
use crate::sim::players::{Client, NetIds, Pilot, despawn_ship, spawn_ship};
use crate::sim::replication::Replicated;
use crate::sim::ships::{Docked, Hull, Ship};
use crate::sim::stations::Station;
use crate::sim::{SimServices, Tick};

/// The most an API call may move: credits, damage, a score.
const MAX_AMOUNT: i64 = 1_000_000_000;
/// The largest stored value (JSON bytes) and key.
const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_KEY_BYTES: usize = 256;

/// What a script registered: hooks by event, message handlers by type, and callbacks
/// waiting for a write or a read.
#[derive(Default)]
pub struct Hooks {
    pub on: HashMap<String, Vec<Function>>,
    pub messages: HashMap<String, Function>,
    pub callbacks: HashMap<u64, Function>,
    next_callback: u64,
}

/// The events a script may hook with `ecliptic.on`.
pub const EVENTS: &[&str] = &[
    "tick",
    "ship_destroyed",
    "hit",
    "trade",
    "dock",
    "undock",
    "join",
    "leave",
    "zone_entered",
    "zone_left",
];

/// A room's part of the world, for the room's script.
pub struct RoomScope {
    pub instance: Entity,
    pub players: Vec<Uuid>,
}

/// One script's view of the world for one call.
pub struct WorldHost<'w> {
    pub world: &'w mut World,
    pub owner: &'w ScriptOwner,
    pub generation: u64,
    pub grants: &'w [Permission],
    pub room: Option<&'w RoomScope>,
    pub hooks: &'w mut Hooks,
    /// Message types the script asked for during this call.
    pub claimed: Vec<String>,
    /// A room's results, once its script called `ecliptic.finish`.
    pub finished: Option<Vec<(Uuid, i64)>>,
}

fn runtime(message: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(message.into())
}

fn args<T: FromLuaMulti>(lua: &Lua, op: &str, args: MultiValue) -> mlua::Result<T> {
    T::from_lua_multi(args, lua).map_err(|e| runtime(format!("ecliptic.{op}: bad arguments: {e}")))
}

impl Host for WorldHost<'_> {
    fn call(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let function =
            api::find(op).ok_or_else(|| runtime(format!("ecliptic.{op} is not available")))?;
        match function.access {
            Access::Anyone => {}
            Access::Needs(permission) => self.need(permission, op)?,
            Access::Rooms if self.room.is_some() => {}
            Access::Rooms => {
                return Err(runtime(format!(
                    "ecliptic.{op}: only a room's script may call it"
                )));
            }
        }
        match op {
            "on" => self.api_on(lua, op, a),
            "on_message" => self.api_on_message(lua, op, a),
            "tick" => self.api_tick(lua),
            "now" => self.api_now(lua),
            "ships" => self.api_ships(lua, op, a),
            "ship" => self.api_ship(lua, op, a),
            "stations" => self.api_stations(lua, op, a),
            "zones" => self.api_zones(lua, op, a),
            "spawn_npc" => self.api_spawn_npc(lua, op, a),
            "remove_npc" => self.api_remove_npc(lua, op, a),
            "damage" | "repair" => self.api_damage_or_repair(lua, op, a),
            "grant" | "charge" => self.api_grant_or_charge(lua, op, a),
            "send" => self.api_send(lua, op, a),
            "broadcast" => self.api_broadcast(lua, op, a),
            "publish" => self.api_publish(lua, op, a),
            "store_get" => self.api_store_get(lua, op, a),
            "store_set" => self.api_store_set(lua, op, a),
            "finish" => self.api_finish(lua, op, a),
            other => Err(runtime(format!(
                "ecliptic.{other} is declared but not answered"
            ))),
        }
    }
}

/// The functions of [`api::API`], each after its access was checked.
impl WorldHost<'_> {
    fn api_on(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let (event, f): (String, Function) = args(lua, op, a)?;
        if !EVENTS.contains(&event.as_str()) {
            return Err(runtime(format!(
                "ecliptic.on: no event {event:?} (events: {})",
                EVENTS.join(", ")
            )));
        }
        self.hooks.on.entry(event).or_default().push(f);
        ().into_lua_multi(lua)
    }

    fn api_on_message(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        if self.room.is_some() {
            return Err(runtime(
                "ecliptic.on_message: a room's messages arrive in its loop; list them in ecliptic-room.toml",
            ));
        }
        let (kind, f): (String, Function) = args(lua, op, a)?;
        if !self.hooks.messages.contains_key(&kind) {
            self.claim_message(&kind)?;
        }
        self.hooks.messages.insert(kind, f);
        ().into_lua_multi(lua)
    }

    fn api_tick(&mut self, lua: &Lua) -> mlua::Result<MultiValue> {
        self.world.resource::<Tick>().0.into_lua_multi(lua)
    }

    fn api_now(&mut self, lua: &Lua) -> mlua::Result<MultiValue> {
        chrono::Utc::now().timestamp_millis().into_lua_multi(lua)
    }

    fn api_ships(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let instance: Option<String> = args(lua, op, a)?;
        let instance = self.instance(instance.as_deref(), op)?;
        self.ships(lua, instance)?.into_lua_multi(lua)
    }

    fn api_ship(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let id: String = args(lua, op, a)?;
        match self.find(&id) {
            Some(ship) => self.ship_table(lua, ship)?.into_lua_multi(lua),
            None => Value::Nil.into_lua_multi(lua),
        }
    }

    fn api_stations(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let instance: Option<String> = args(lua, op, a)?;
        let instance = self.instance(instance.as_deref(), op)?;
        self.stations(lua, instance)?.into_lua_multi(lua)
    }

    fn api_zones(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let instance: Option<String> = args(lua, op, a)?;
        let instance = self.instance(instance.as_deref(), op)?;
        let zones = match self.world.get::<Instance>(instance) {
            Some(i) => serde_json::to_value(&i.def.zones).map_err(runtime_of)?,
            None => serde_json::Value::Array(Vec::new()),
        };
        scripting::to_lua(lua, &zones)?.into_lua_multi(lua)
    }

    fn api_spawn_npc(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let spec: Table = args(lua, op, a)?;
        self.spawn_npc(spec)?.into_lua_multi(lua)
    }

    fn api_remove_npc(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let id: String = args(lua, op, a)?;
        let removed = match self.find(&id) {
            Some(ship) if self.world.get::<Pilot>(ship).is_none() => {
                despawn_ship(self.world, ship);
                true
            }
            Some(_) => return Err(runtime("ecliptic.remove_npc: that is a player's ship")),
            None => false,
        };
        removed.into_lua_multi(lua)
    }

    fn api_damage_or_repair(
        &mut self,
        lua: &Lua,
        op: &str,
        a: MultiValue,
    ) -> mlua::Result<MultiValue> {
        let (id, amount): (String, i64) = args(lua, op, a)?;
        let amount = amount_in_range(op, amount)?;
        let ship = self
            .find(&id)
            .ok_or_else(|| runtime(format!("ecliptic.{op}: no ship {id:?}")))?;
        let mut hull = self
            .world
            .get_mut::<Hull>(ship)
            .ok_or_else(|| runtime(format!("ecliptic.{op}: {id} has no hull")))?;
        // Scripts wear ships down or mend them; destruction is combat's to decide.
        hull.hp = if op == "damage" {
            hull.hp.saturating_sub(amount as u32).max(1)
        } else {
            hull.hp.saturating_add(amount as u32).min(hull.max)
        };
        hull.hp.into_lua_multi(lua)
    }

    fn api_grant_or_charge(
        &mut self,
        lua: &Lua,
        op: &str,
        a: MultiValue,
    ) -> mlua::Result<MultiValue> {
        let (user, amount, callback): (String, i64, Option<Function>) = args(lua, op, a)?;
        let amount = amount_in_range(op, amount)?;
        let ship = self
            .player_ship(&user)
            .ok_or_else(|| runtime(format!("ecliptic.{op}: {user} is not playing")))?;
        let delta = if op == "grant" { amount } else { -amount };
        let answer = self.answer_later(callback);
        crate::sim::trades::adjust_credits(
            self.world,
            ship,
            delta,
            Box::new(move |world, outcome| {
                if let Some(answer) = answer {
                    answer.send(world, outcome.map(serde_json::Value::from));
                }
            }),
        );
        ().into_lua_multi(lua)
    }

    fn api_send(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let (user, kind, payload): (String, String, Value) = args(lua, op, a)?;
        let kind = outgoing_kind(op, kind)?;
        let payload = scripting::from_lua(lua, payload)?;
        let sent = match self.player_ship(&user) {
            Some(ship) => match self.world.get::<Client>(ship) {
                Some(client) => {
                    client.push_named(kind, &payload);
                    true
                }
                None => false,
            },
            None => false,
        };
        sent.into_lua_multi(lua)
    }

    fn api_broadcast(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let (kind, payload, instance): (String, Value, Option<String>) = args(lua, op, a)?;
        let kind = outgoing_kind(op, kind)?;
        let instance = self.instance(instance.as_deref(), op)?;
        let payload = scripting::from_lua(lua, payload)?;
        let mut clients = self.world.query::<(&Client, &InInstance)>();
        let mut count = 0;
        for (client, _) in clients.iter(self.world).filter(|(_, i)| i.0 == instance) {
            client.push_named(kind.clone(), &payload);
            count += 1;
        }
        count.into_lua_multi(lua)
    }

    fn api_publish(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let (topic, payload): (String, Value) = args(lua, op, a)?;
        // Without comms (and the protocols' encoders) nobody hears it.
        let Some(encode) = self
            .world
            .get_resource::<crate::sim::encoders::Encoders>()
            .copied()
        else {
            return 0.into_lua_multi(lua);
        };
        if let Some(why) = (encode.comms_topic_refused)(&topic) {
            return Err(runtime(format!("ecliptic.publish: {why}")));
        }
        crate::sim::comms::check_publish(&topic, false)
            .map_err(|e| runtime(format!("ecliptic.publish: {e}")))?;
        let payload = scripting::from_lua(lua, payload)?;
        let delivered = match self.world.get_resource_mut::<crate::sim::comms::Hub>() {
            Some(mut hub) => {
                let frame = (encode.comms_broadcast)(
                    &topic,
                    &payload,
                    chrono::Utc::now().timestamp_millis(),
                    &Uuid::new_v4().to_string(),
                );
                hub.publish(&topic, &crate::sim::comms::CommsOut::Text(frame))
            }
            None => 0,
        };
        delivered.into_lua_multi(lua)
    }

    fn api_store_get(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let (key, callback): (String, Function) = args(lua, op, a)?;
        check_key(&key)?;
        let space = self.owner.store_space();
        let answer = self.answer_later(Some(callback));
        self.world.resource::<SimServices>().read_then(
            move |conn| crate::services::script_store::get(conn, &space, &key),
            move |world, read| {
                if let Some(answer) = answer {
                    answer.send(world, read.map_err(|e| e.to_string()));
                }
            },
        );
        ().into_lua_multi(lua)
    }

    fn api_store_set(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let (key, value, callback): (String, Value, Option<Function>) = args(lua, op, a)?;
        check_key(&key)?;
        let value = scripting::from_lua(lua, value)?;
        let text = serde_json::to_string(&value).map_err(runtime_of)?;
        if text.len() > MAX_VALUE_BYTES {
            return Err(runtime(format!(
                "ecliptic.store_set: a value is at most {MAX_VALUE_BYTES} bytes as JSON"
            )));
        }
        let space = self.owner.store_space();
        let answer = self.answer_later(callback);
        self.world.resource::<SimServices>().write_then(
            move |conn| crate::services::script_store::set(conn, &space, &key, &text),
            move |world, written| {
                if let Some(answer) = answer {
                    answer.send(
                        world,
                        written
                            .map(|()| serde_json::Value::Bool(true))
                            .map_err(|e| e.to_string()),
                    );
                }
            },
        );
        ().into_lua_multi(lua)
    }

    fn api_finish(&mut self, lua: &Lua, op: &str, a: MultiValue) -> mlua::Result<MultiValue> {
        let Some(room) = self.room else {
            return Err(runtime(
                "ecliptic.finish: only a room's script finishes a match",
            ));
        };
        let scores: HashMap<String, f64> = args(lua, op, a)?;
        let mut results = Vec::new();
        for (player, score) in scores {
            let user = Uuid::parse_str(&player)
                .ok()
                .filter(|u| room.players.contains(u))
                .ok_or_else(|| {
                    runtime(format!("ecliptic.finish: {player:?} is not in this room"))
                })?;
            if !score.is_finite() || score.abs() > MAX_AMOUNT as f64 {
                return Err(runtime(format!(
                    "ecliptic.finish: a score is a number within ±{MAX_AMOUNT}"
                )));
            }
            results.push((user, score.round() as i64));
        }
        results.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.finished = Some(results);
        ().into_lua_multi(lua)
    }
}

fn runtime_of(e: impl std::fmt::Display) -> mlua::Error {
    runtime(e.to_string())
}

fn amount_in_range(op: &str, amount: i64) -> mlua::Result<i64> {
    if (1..=MAX_AMOUNT).contains(&amount) {
        Ok(amount)
    } else {
        Err(runtime(format!(
            "ecliptic.{op}: the amount must be 1 to {MAX_AMOUNT}"
        )))
    }
}

fn check_key(key: &str) -> mlua::Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(runtime(format!(
            "a store key is 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn outgoing_kind(op: &str, kind: String) -> mlua::Result<String> {
    if !crate::scripting::package::is_script_message_type(&kind) {
        return Err(runtime(format!(
            "ecliptic.{op}: message type {kind:?} must look like \"mygame.news\" and not use the server's own namespaces"
        )));
    }
    Ok(kind)
}

/// A callback to run with a result once work elsewhere has finished.
pub struct Later {
    owner: ScriptOwner,
    generation: u64,
    id: u64,
}

impl Later {
    fn send(self, world: &mut World, value: Result<serde_json::Value, String>) {
        world.resource_mut::<Answers>().0.push(Answer {
            owner: self.owner,
            generation: self.generation,
            callback: self.id,
            value,
        });
    }
}

impl WorldHost<'_> {
    fn need(&self, permission: Permission, op: &str) -> mlua::Result<()> {
        if self.grants.contains(&permission) {
            return Ok(());
        }
        Err(runtime(match self.owner {
            ScriptOwner::Mod(_) => format!(
                "ecliptic.{op} needs the {:?} permission in mod.toml",
                permission.as_str()
            ),
            ScriptOwner::Room { .. } => {
                format!("ecliptic.{op} is not available to a room's script")
            }
        }))
    }

    fn answer_later(&mut self, callback: Option<Function>) -> Option<Later> {
        let callback = callback?;
        self.hooks.next_callback += 1;
        let id = self.hooks.next_callback;
        self.hooks.callbacks.insert(id, callback);
        Some(Later {
            owner: self.owner.clone(),
            generation: self.generation,
            id,
        })
    }

    /// The instance a call is about: named (a mod), or the room's own.
    fn instance(&self, named: Option<&str>, op: &str) -> mlua::Result<Entity> {
        let instances = self.world.resource::<Instances>();
        match (self.room, named) {
            (Some(room), None) => Ok(room.instance),
            (Some(room), Some(id)) => match instances.get(id) {
                Some(e) if e == room.instance => Ok(e),
                _ => Err(runtime(format!(
                    "ecliptic.{op}: a room's script sees its own room only"
                ))),
            },
            (None, Some(id)) => instances
                .get(id)
                .ok_or_else(|| runtime(format!("ecliptic.{op}: no system or room {id:?}"))),
            (None, None) => Err(runtime(format!(
                "ecliptic.{op}: name the system or room (ecliptic.{op}(\"sol\"))"
            ))),
        }
    }

    /// The ship a client knows as `id`, if this script may see it.
    fn find(&mut self, id: &str) -> Option<Entity> {
        let room = self.room.map(|r| r.instance);
        let mut ships = self
            .world
            .query_filtered::<(Entity, &Replicated, &InInstance), With<Ship>>();
        ships
            .iter(self.world)
            .find(|(_, r, i)| &*r.net_id == id && room.is_none_or(|room| i.0 == room))
            .map(|(e, _, _)| e)
    }

    fn player_ship(&mut self, user: &str) -> Option<Entity> {
        let user = Uuid::parse_str(user).ok()?;
        if let Some(room) = self.room
            && !room.players.contains(&user)
        {
            return None;
        }
        let room = self.room.map(|r| r.instance);
        let mut pilots = self.world.query::<(Entity, &Pilot, &InInstance)>();
        pilots
            .iter(self.world)
            .find(|(_, p, i)| p.user_id == user && room.is_none_or(|room| i.0 == room))
            .map(|(e, _, _)| e)
    }

    fn ships(&mut self, lua: &Lua, instance: Entity) -> mlua::Result<Table> {
        let mut ships = self
            .world
            .query_filtered::<(Entity, &InInstance), With<Ship>>();
        let inside: Vec<Entity> = ships
            .iter(self.world)
            .filter(|(_, i)| i.0 == instance)
            .map(|(e, _)| e)
            .collect();
        let list = lua.create_table_with_capacity(inside.len(), 0)?;
        for (n, ship) in inside.into_iter().enumerate() {
            list.raw_set(n + 1, self.ship_table(lua, ship)?)?;
        }
        Ok(list)
    }

    fn ship_table(&self, lua: &Lua, ship: Entity) -> mlua::Result<Table> {
        let world = &*self.world;
        let t = lua.create_table_with_capacity(0, 16)?;
        if let Some(r) = world.get::<Replicated>(ship) {
            t.raw_set("id", &*r.net_id)?;
            t.raw_set("kind", r.kind)?;
        }
        if let Some(k) = world.get::<Kinematics>(ship) {
            t.raw_set("x", k.pos.x)?;
            t.raw_set("y", k.pos.y)?;
            t.raw_set("vx", k.vel.x)?;
            t.raw_set("vy", k.vel.y)?;
            t.raw_set("rot", k.rot)?;
        }
        if let Some(h) = world.get::<Hull>(ship) {
            t.raw_set("hull", h.hp)?;
            t.raw_set("max_hull", h.max)?;
        }
        if let Some(p) = world.get::<Pilot>(ship) {
            t.raw_set("user", p.user_id.to_string())?;
            t.raw_set("name", p.username.as_str())?;
            t.raw_set("credits", p.credits)?;
            let cargo = lua.create_table()?;
            for hold in &p.cargo {
                cargo.raw_set(hold.commodity_id.as_str(), hold.qty)?;
            }
            t.raw_set("cargo", cargo)?;
        }
        if let Some(&Docked(station)) = world.get::<Docked>(ship)
            && let Some(s) = world.get::<Station>(station)
        {
            t.raw_set("docked_at", s.station_id.as_str())?;
        }
        if let Some(i) = world.get::<InInstance>(ship)
            && let Some(instance) = world.get::<Instance>(i.0)
        {
            t.raw_set("instance", instance.id.as_str())?;
        }
        Ok(t)
    }

    fn stations(&mut self, lua: &Lua, instance: Entity) -> mlua::Result<Table> {
        let list = lua.create_table()?;
        let mut stations = self.world.query::<(&Station, &InInstance)>();
        for (n, (station, _)) in stations
            .iter(self.world)
            .filter(|(_, i)| i.0 == instance)
            .enumerate()
        {
            let t = lua.create_table()?;
            t.raw_set("id", station.station_id.as_str())?;
            t.raw_set("x", station.pos.x)?;
            t.raw_set("y", station.pos.y)?;
            list.raw_set(n + 1, t)?;
        }
        Ok(list)
    }

    fn spawn_npc(&mut self, spec: Table) -> mlua::Result<String> {
        let named: Option<String> = spec.get("instance")?;
        let instance = self.instance(named.as_deref(), "spawn_npc")?;
        let x: f32 = spec.get("x")?;
        let y: f32 = spec.get("y")?;
        if !(x.is_finite() && y.is_finite()) || x.abs() > 1e6 || y.abs() > 1e6 {
            return Err(runtime(
                "ecliptic.spawn_npc: x and y are numbers within ±1e6",
            ));
        }
        let data = self.world.resource::<Data>().0.clone();
        let class_id: Option<String> = spec.get("class")?;
        let class_id = class_id.unwrap_or_else(|| data.ships.pirate_class.clone());
        let class = data
            .ship_class(&class_id)
            .cloned()
            .ok_or_else(|| runtime(format!("ecliptic.spawn_npc: no ship class {class_id:?}")))?;
        let net_id = self.world.resource_mut::<NetIds>().next("npc_");
        let (hull, fuel) = (class.hull, class.fuel);
        let ship = spawn_ship(
            self.world,
            instance,
            std::sync::Arc::new(class),
            net_id.clone(),
            "pirate",
            glam::Vec2::new(x, y),
            0.0,
            hull,
            fuel,
        )
        .ok_or_else(|| runtime("ecliptic.spawn_npc: the instance has no space for ships"))?;
        // A pirate with no zone of its own: it hunts what comes near and stays put otherwise.
        self.world.entity_mut(ship).insert(Pirate {
            zone: usize::MAX,
            fleeing: false,
        });
        Ok(net_id.to_string())
    }
}

impl WorldHost<'_> {
    /// Takes `/game` messages of type `kind` for this mod: refused when a room game
    /// declares it or another script holds it (one owner per type).
    fn claim_message(&mut self, kind: &str) -> mlua::Result<()> {
        if let Some(game) = super::declared_by_room_game(self.world, kind, None) {
            return Err(runtime(format!(
                "ecliptic.on_message: message type {kind:?} is reserved for the rooms of game {game}"
            )));
        }
        self.world
            .resource::<crate::sim::extend::GameMessageTypes>()
            .claim_for_script(kind, &self.owner.message_owner())
            .map_err(|e| runtime(format!("ecliptic.on_message: {e}")))?;
        self.claimed.push(kind.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripting::package::Permission;

    /// Calls `op` with no arguments as a mod holding `grants`; the error, if any.
    fn probe(world: &mut World, grants: &[Permission], op: &str) -> Option<String> {
        let lua = Lua::new();
        let owner = ScriptOwner::Mod("probe".into());
        let mut hooks = Hooks::default();
        let mut host = WorldHost {
            world,
            owner: &owner,
            generation: 0,
            grants,
            room: None,
            hooks: &mut hooks,
            claimed: Vec::new(),
            finished: None,
        };
        host.call(&lua, op, MultiValue::new())
            .err()
            .map(|e| e.to_string())
    }

    /// Each function of the one declaration is answered, and only after the access it
    /// declares is checked: without its permission a mod is refused before anything runs.
    #[test]
    fn every_declared_function_is_answered_behind_its_declared_access() {
        let mut world = World::new();
        world.insert_resource(Tick(7));
        world.insert_resource(Instances::default());
        let all = [
            Permission::Ships,
            Permission::Credits,
            Permission::Messages,
            Permission::Comms,
            Permission::Store,
        ];
        for function in api::API {
            let name = function.name;
            let refused = probe(&mut world, &[], name);
            match function.access {
                Access::Needs(permission) => {
                    let expected = format!(
                        "ecliptic.{name} needs the {:?} permission in mod.toml",
                        permission.as_str()
                    );
                    assert!(
                        refused.as_deref().is_some_and(|e| e.contains(&expected)),
                        "{name}: {refused:?}"
                    );
                }
                Access::Rooms => {
                    let refused = refused.unwrap_or_default();
                    assert!(
                        refused.contains("only a room's script may call it"),
                        "{name}: {refused}"
                    );
                }
                Access::Anyone => {}
            }
            let granted = probe(&mut world, &all, name).unwrap_or_default();
            for unanswered in [
                "is not available",
                "declared but not answered",
                "permission",
            ] {
                assert!(!granted.contains(unanswered), "{name}: {granted}");
            }
        }
        let undeclared = probe(&mut world, &all, "teleport").unwrap_or_default();
        assert!(
            undeclared.contains("ecliptic.teleport is not available"),
            "{undeclared}"
        );
    }

    #[test]
    fn amounts_keys_and_message_types_have_their_limits() {
        assert_eq!(amount_in_range("grant", 1).unwrap(), 1);
        assert_eq!(amount_in_range("grant", MAX_AMOUNT).unwrap(), MAX_AMOUNT);
        for bad in [0, -5, MAX_AMOUNT + 1] {
            let e = amount_in_range("grant", bad).unwrap_err().to_string();
            assert!(e.contains("ecliptic.grant: the amount must be 1 to"), "{e}");
        }
        assert!(check_key("visits").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert_eq!(
            outgoing_kind("send", "ambush.warning".into()).unwrap(),
            "ambush.warning"
        );
        for bad in [
            "warning",
            "world.delta",
            "trade.result",
            "error",
            "room.ended",
            "é.x",
        ] {
            assert!(outgoing_kind("send", bad.into()).is_err(), "{bad}");
        }
        assert!(outgoing_kind("send", format!("a.{}", "b".repeat(64))).is_err());
    }
}
