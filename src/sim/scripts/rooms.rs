//! Room scripts: a developer's game rules, run in the tick for each of its rooms, as an
//! authoritative match: `init(room)` when the room starts, `join(room, player)` and
//! `leave(room, player)` as players' ships enter and leave the room's world,
//! `loop(room, tick, inputs)` every tick with the messages that arrived, until the script
//! calls `ecliptic.finish(scores)`. The results are saved (finishing the players' open
//! GARP plays), then the players hear `room.ended`.

use bevy_ecs::prelude::*;
use mlua::{Function, Lua, Table, Value};
use serde::Serialize;
use uuid::Uuid;

use super::host::RoomScope;
use super::{
    Answer, Happening, RoomScriptRef, Runtimes, Script, ScriptMessage, ScriptOwner, SimServices,
    deliver_answers, report_stop,
};
use crate::scripting::package::Permission;
use crate::scripting::{self, Fault};
use crate::services::script_store::{self, RoomEnd};
use crate::sim::extend::FromClient;
use crate::sim::instances::InInstance;
use crate::sim::players::Client;

/// What a room's script may touch: its own world, its players, its game's store.
const ROOM_GRANTS: &[Permission] = &[Permission::Ships, Permission::Messages, Permission::Store];

/// One room's script.
pub(crate) struct RoomRuntime {
    pub game_id: String,
    pub version: String,
    owner: ScriptOwner,
    script: Script,
    scope: RoomScope,
    players: Vec<(Uuid, String)>,
    /// The table the script's entry returned: `init`, `join`, `leave`, `loop`.
    lifecycle: Table,
    /// The `room` argument of every lifecycle call.
    room: Table,
    messages: Vec<String>,
}

/// How a room's match ended.
#[derive(Debug)]
pub enum RoomOutcome {
    /// The script finished it: each player's score, best first.
    Finished(Vec<(Uuid, i64)>),
    /// The script was stopped.
    Failed(Fault),
}

/// Starts the script of room `room_id`, whose world (`instance`) has just been made:
/// runs its entry and `init`. The error is the script's fault, for `START_ROOM`'s answer.
pub(crate) fn start(
    world: &mut World,
    room_id: &str,
    game_id: &str,
    version: &str,
    script: &RoomScriptRef,
    instance: Entity,
    players: Vec<(Uuid, String)>,
) -> Result<(), String> {
    let Some(mut runtimes) = world.remove_non_send::<Runtimes>() else {
        return Err("scripts are not running on this server".into());
    };
    let started = start_in(
        world,
        &mut runtimes,
        room_id,
        game_id,
        version,
        script,
        instance,
        players,
    );
    let count = runtimes.rooms.len();
    world.insert_non_send(runtimes);
    super::count_running(world, "room", count);
    match started {
        Ok(None) => Ok(()),
        Ok(Some(scores)) => {
            end(world, room_id, RoomOutcome::Finished(scores));
            Ok(())
        }
        Err(fault) => Err(fault.message),
    }
}

#[allow(clippy::too_many_arguments)]
fn start_in(
    world: &mut World,
    runtimes: &mut Runtimes,
    room_id: &str,
    game_id: &str,
    version: &str,
    script: &RoomScriptRef,
    instance: Entity,
    players: Vec<(Uuid, String)>,
) -> Result<Option<Vec<(Uuid, i64)>>, Fault> {
    let owner = ScriptOwner::Room {
        room_id: room_id.to_owned(),
        game_id: game_id.to_owned(),
    };
    let scope = RoomScope {
        instance,
        players: players.iter().map(|p| p.0).collect(),
    };
    let generation = runtimes.generation();
    let mut vm = Script::start(
        world,
        &owner,
        generation,
        &script.compiled,
        ROOM_GRANTS,
        Some(&scope),
    )
    .inspect_err(|fault| report_stop(world, "room", &owner, fault))?;
    let types = world.resource::<crate::sim::extend::GameMessageTypes>();
    for kind in &script.manifest.messages {
        if let Err(e) = types.claim_for_script(kind, &owner.message_owner()) {
            vm.stop(world);
            return Err(Fault {
                reason: crate::scripting::FaultReason::Error,
                message: e,
            });
        }
        vm.claimed.push(kind.clone());
    }
    let made = (|| -> mlua::Result<(Table, Table)> {
        let lua = vm.vm.lua();
        let Value::Table(lifecycle) = vm.vm.exports().clone() else {
            return Err(mlua::Error::runtime(
                "a room's entry script must return its lifecycle: return { init = …, loop = … }",
            ));
        };
        let room = lua.create_table()?;
        room.raw_set("id", room_id)?;
        room.raw_set("game_id", game_id)?;
        room.raw_set("version", version)?;
        let list = lua.create_table()?;
        for (n, (user, name)) in players.iter().enumerate() {
            list.raw_set(n + 1, player_table(lua, *user, name)?)?;
        }
        room.raw_set("players", list)?;
        room.raw_set(
            "settings",
            scripting::to_lua(
                lua,
                &serde_json::Value::Object(script.manifest.settings.clone()),
            )?,
        )?;
        Ok((lifecycle, room))
    })();
    let (lifecycle, room) = match made {
        Ok(made) => made,
        Err(e) => {
            vm.stop(world);
            let fault = Fault {
                reason: crate::scripting::FaultReason::Error,
                message: e.to_string(),
            };
            report_stop(world, "room", &owner, &fault);
            return Err(fault);
        }
    };
    let init: Option<Function> = lifecycle.get("init").ok();
    vm.vm.begin_tick();
    let arg = room.clone();
    let finished = match vm.run(world, &owner, ROOM_GRANTS, Some(&scope), |_| match init {
        Some(init) => init.call::<()>(arg),
        None => Ok(()),
    }) {
        Ok(finished) => finished,
        Err(fault) => {
            report_stop(world, "room", &owner, &fault);
            vm.stop(world);
            return Err(fault);
        }
    };
    tracing::info!(script = %owner, game = %game_id, version = %version, "room script started");
    runtimes.rooms.insert(
        room_id.to_owned(),
        RoomRuntime {
            game_id: game_id.to_owned(),
            version: version.to_owned(),
            owner,
            script: vm,
            scope,
            players,
            lifecycle,
            room,
            messages: script.manifest.messages.clone(),
        },
    );
    Ok(finished)
}

fn player_table(lua: &Lua, user: Uuid, name: &str) -> mlua::Result<Table> {
    let player = lua.create_table()?;
    player.raw_set("id", user.to_string())?;
    player.raw_set("name", name)?;
    Ok(player)
}

/// Runs every room's script for this tick; the rooms whose match ended.
pub(super) fn run(
    world: &mut World,
    runtimes: &mut Runtimes,
    tick: u64,
    facts: &[Happening],
    messages: Vec<FromClient<ScriptMessage>>,
    answers: &[Answer],
) -> Vec<(String, RoomOutcome)> {
    let mut inputs: std::collections::HashMap<String, Vec<FromClient<ScriptMessage>>> =
        Default::default();
    for message in messages {
        let kind = &message.message.kind;
        if runtimes.mods.values().any(|m| m.takes(kind)) {
            continue;
        }
        let instance = message
            .caller
            .ship
            .and_then(|ship| world.get::<InInstance>(ship))
            .map(|i| i.0);
        let room = runtimes.rooms.iter().find(|(_, r)| {
            Some(r.scope.instance) == instance && r.messages.iter().any(|m| m == kind)
        });
        let some_room_takes = || runtimes.rooms.values().any(|r| r.messages.contains(kind));
        match room {
            Some((room_id, _)) => inputs.entry(room_id.clone()).or_default().push(message),
            None if some_room_takes() => message.caller.error(
                "NOT_IN_ROOM",
                &format!("{kind} is a room game's message: join a room of that game first"),
            ),
            // Its script stopped between the message's arrival and now.
            None => message
                .caller
                .error("UNKNOWN_TYPE", &format!("unknown message type {kind:?}")),
        }
    }
    let mut ended = Vec::new();
    for (room_id, runtime) in runtimes.rooms.iter_mut() {
        let owner = runtime.owner.clone();
        let answered = runtime.script.take_answers(&owner, answers);
        let mine: Vec<&Happening> = facts
            .iter()
            .filter(|f| f.instance == Some(runtime.scope.instance))
            .collect();
        let arrived = inputs.remove(room_id).unwrap_or_default();
        let lifecycle = runtime.lifecycle.clone();
        let room = runtime.room.clone();
        let hooks: Vec<(Function, &Happening)> = mine
            .iter()
            .flat_map(|fact| {
                runtime
                    .script
                    .hooks
                    .on
                    .get(fact.event)
                    .into_iter()
                    .flatten()
                    .map(move |f| (f.clone(), *fact))
            })
            .collect();
        let players = runtime.players.clone();
        runtime.script.vm.begin_tick();
        let result = runtime
            .script
            .run(world, &owner, ROOM_GRANTS, Some(&runtime.scope), |lua| {
                deliver_answers(lua, answered)?;
                for fact in &mine {
                    let phase = match fact.event {
                        "join" => "join",
                        "leave" => "leave",
                        _ => continue,
                    };
                    let user = fact.data["user"].as_str().unwrap_or_default();
                    let Some((id, name)) = players.iter().find(|p| p.0.to_string() == user) else {
                        continue;
                    };
                    if let Ok(f) = lifecycle.get::<Function>(phase) {
                        let player = player_table(lua, *id, name)?;
                        if let Some(ship) = fact.data["ship"].as_str() {
                            player.raw_set("ship", ship)?;
                        }
                        f.call::<()>((room.clone(), player))?;
                    }
                }
                for (f, fact) in hooks {
                    f.call::<()>(scripting::to_lua(lua, &fact.data)?)?;
                }
                if let Ok(step) = lifecycle.get::<Function>("loop") {
                    let list = lua.create_table()?;
                    for (n, input) in arrived.iter().enumerate() {
                        let t = lua.create_table()?;
                        t.raw_set("player", input.caller.user_id.to_string())?;
                        t.raw_set("type", input.message.kind.as_str())?;
                        t.raw_set("payload", scripting::to_lua(lua, &input.message.payload)?)?;
                        list.raw_set(n + 1, t)?;
                    }
                    step.call::<()>((room.clone(), tick, list))?;
                }
                Ok(())
            });
        match result {
            Ok(Some(scores)) => ended.push((room_id.clone(), RoomOutcome::Finished(scores))),
            Ok(None) => {}
            Err(fault) => {
                report_stop(world, "room", &owner, &fault);
                ended.push((room_id.clone(), RoomOutcome::Failed(fault)));
            }
        }
    }
    ended
}

/// One player's line in `room.ended`.
#[derive(Serialize)]
struct ResultLine {
    user_id: String,
    name: String,
    score: i64,
    /// The GARP play this score finished, if the player had one open.
    play_id: Option<i64>,
}

#[derive(Serialize)]
struct RoomEnded<'a> {
    room_id: &'a str,
    game_id: &'a str,
    results: Vec<ResultLine>,
}

/// Ends a room's match: its script stops; results are saved before anyone hears them; a
/// failed script ends the room with its reason.
pub(crate) fn end(world: &mut World, room_id: &str, outcome: RoomOutcome) {
    let Some(runtime) = stop(world, room_id) else {
        return;
    };
    match outcome {
        RoomOutcome::Failed(fault) => {
            let why = format!("room {room_id} ended: its script stopped: {fault}");
            crate::sim::lobby::close_room(world, room_id, &why, true);
        }
        RoomOutcome::Finished(scores) => {
            let names: std::collections::HashMap<Uuid, String> =
                runtime.players.iter().cloned().collect();
            let end = RoomEnd {
                room_id: room_id.to_owned(),
                game_id: runtime.game_id.clone(),
                version: runtime.version.clone(),
                scores: scores
                    .into_iter()
                    .map(|(user, score)| {
                        (user, names.get(&user).cloned().unwrap_or_default(), score)
                    })
                    .collect(),
            };
            let room_id = room_id.to_owned();
            let game_id = runtime.game_id.clone();
            let instance = runtime.scope.instance;
            let achievements = world
                .get_resource::<crate::sim::progress::Progress>()
                .map(|p| p.room_achievements(&game_id))
                .unwrap_or_default();
            world.resource::<SimServices>().clone().write_then(
                move |conn| script_store::record_room_end(conn, &end, &achievements),
                move |world, saved| match saved {
                    Ok(saved) => {
                        for (user_id, achievement_id) in saved.unlocked {
                            world.write_message(crate::sim::facts::AchievementUnlocked {
                                user_id,
                                username: names.get(&user_id).cloned().unwrap_or_default(),
                                achievement_id,
                            });
                        }
                        let results = saved.results;
                        let ended = RoomEnded {
                            room_id: &room_id,
                            game_id: &game_id,
                            results: results
                                .into_iter()
                                .map(|r| ResultLine {
                                    user_id: r.user_id.to_string(),
                                    name: r.display_name,
                                    score: r.score,
                                    play_id: r.play_id,
                                })
                                .collect(),
                        };
                        let mut clients = world.query::<(&Client, &InInstance)>();
                        for (client, _) in clients.iter(world).filter(|(_, i)| i.0 == instance) {
                            client.push("room.ended", &ended);
                        }
                        tracing::info!(room = %room_id, "room finished; results saved");
                        crate::sim::lobby::close_room(world, &room_id, "the match is over", false);
                    }
                    Err(e) => {
                        tracing::error!(room = %room_id, "saving a room's results failed: {e}");
                        let why =
                            format!("room {room_id} ended, but its results could not be saved");
                        crate::sim::lobby::close_room(world, &room_id, &why, true);
                    }
                },
            );
        }
    }
}

/// Stops a room's script, if it has one (the room ended or closed).
pub(crate) fn stop(world: &mut World, room_id: &str) -> Option<RoomRuntime> {
    let mut runtimes = world.remove_non_send::<Runtimes>()?;
    let runtime = runtimes.rooms.remove(room_id);
    let count = runtimes.rooms.len();
    world.insert_non_send(runtimes);
    let runtime = runtime?;
    super::count_running(world, "room", count);
    let RoomRuntime { script, .. } = &runtime;
    crate::sim::scripts::release(world, &script.claimed);
    Some(runtime)
}
