//! Server mods: loaded, reloaded and unloaded as the mods folder changes, and run each
//! tick on the tick's facts, their message types and their callbacks.

use bevy_ecs::prelude::*;
use mlua::{Lua, Value};
use std::collections::HashSet;

use crate::bridge::ConnId;

use super::{
    Answer, Happening, Runtimes, Script, ScriptMessage, ScriptOwner, deliver_answers, report_stop,
};
use crate::scripting::package::{ModChange, Permission};
use crate::scripting::{self, Fault};
use crate::sim::extend::FromClient;

/// One mod: its script while it runs, or why it stopped.
pub(crate) struct ModRuntime {
    pub version: String,
    grants: Vec<Permission>,
    script: Option<Script>,
    pub stopped: Option<Fault>,
}

impl ModRuntime {
    /// Whether the mod takes client messages of type `kind`.
    pub fn takes(&self, kind: &str) -> bool {
        self.script
            .as_ref()
            .is_some_and(|s| s.hooks.messages.contains_key(kind))
    }
}

fn count_running(world: &World, runtimes: &Runtimes) {
    let running = runtimes
        .mods
        .values()
        .filter(|m| m.script.is_some())
        .count();
    super::count_running(world, "mod", running);
}

/// Starts, restarts or removes a mod.
pub(super) fn apply_change(world: &mut World, runtimes: &mut Runtimes, change: ModChange) {
    match change {
        ModChange::Unload(name) => {
            if let Some(old) = runtimes.mods.remove(&name)
                && let Some(script) = old.script
            {
                script.stop(world);
                tracing::info!(script = %ScriptOwner::Mod(name), "mod unloaded: its folder is gone");
            }
        }
        ModChange::Load(package) => {
            let name = package.name.clone();
            let owner = ScriptOwner::Mod(name.clone());
            if let Some(old) = runtimes.mods.remove(&name)
                && let Some(script) = old.script
            {
                script.stop(world);
            }
            let generation = runtimes.generation();
            let grants = package.manifest.permissions.clone();
            let started =
                Script::start(world, &owner, generation, &package.compiled, &grants, None);
            let (script, stopped) = match started {
                Ok(script) => {
                    tracing::info!(
                        script = %owner,
                        version = %package.manifest.version,
                        "mod loaded"
                    );
                    (Some(script), None)
                }
                Err(fault) => {
                    report_stop(world, "mod", &owner, &fault);
                    (None, Some(fault))
                }
            };
            runtimes.mods.insert(
                name,
                ModRuntime {
                    version: package.manifest.version.clone(),
                    grants,
                    script,
                    stopped,
                },
            );
        }
    }
    count_running(world, runtimes);
}

/// Runs every mod for this tick. Messages of a type no mod takes are left for the rooms;
/// the ones a mod took (answered, or refused because it stopped) are returned by their
/// connection and `seq`, so that each gets one answer.
pub(super) fn run(
    world: &mut World,
    runtimes: &mut Runtimes,
    tick: u64,
    facts: &[Happening],
    messages: &[FromClient<ScriptMessage>],
    answers: &[Answer],
) -> HashSet<(ConnId, u64)> {
    let mut taken = HashSet::new();
    let mut stopped = false;
    for (name, runtime) in runtimes.mods.iter_mut() {
        let Some(script) = runtime.script.as_mut() else {
            continue;
        };
        let owner = ScriptOwner::Mod(name.clone());
        let answered = script.take_answers(&owner, answers);
        let hooked: Vec<(mlua::Function, &Happening)> = facts
            .iter()
            .flat_map(|fact| {
                script
                    .hooks
                    .on
                    .get(fact.event)
                    .into_iter()
                    .flatten()
                    .map(move |f| (f.clone(), fact))
            })
            .collect();
        let handled: Vec<(mlua::Function, &FromClient<ScriptMessage>)> = messages
            .iter()
            .filter_map(|m| Some((script.hooks.messages.get(&m.message.kind)?.clone(), m)))
            .collect();
        let ticks = script.hooks.on.get("tick").cloned().unwrap_or_default();
        if answered.is_empty() && hooked.is_empty() && handled.is_empty() && ticks.is_empty() {
            continue;
        }
        taken.extend(handled.iter().map(|(_, m)| (m.caller.conn, m.seq)));
        let mine: Vec<&FromClient<ScriptMessage>> = handled.iter().map(|(_, m)| *m).collect();
        script.vm.begin_tick();
        let grants = runtime.grants.clone();
        let mut done = 0;
        let result = script.run(world, &owner, &grants, None, |lua| {
            deliver_answers(lua, answered)?;
            for (f, fact) in hooked {
                f.call::<()>(scripting::to_lua(lua, &fact.data)?)?;
            }
            for (f, message) in handled {
                answer_message(lua, &f, message)?;
                done += 1;
            }
            for f in ticks {
                f.call::<()>(tick)?;
            }
            Ok(())
        });
        if let Err(fault) = result {
            // The message it stopped on, and those it had not reached: one answer each.
            for message in mine.into_iter().skip(done) {
                message.caller.error(
                    "SERVER_ERROR",
                    &format!("the mod taking {} stopped", message.message.kind),
                );
            }
            report_stop(world, "mod", &owner, &fault);
            if let Some(script) = runtime.script.take() {
                script.stop(world);
            }
            runtime.stopped = Some(fault);
            stopped = true;
        }
    }
    if stopped {
        count_running(world, runtimes);
    }
    taken
}

/// Calls a message handler with `(player, payload)`: what it returns is sent back as a
/// message of the same type; `nil, "why"` becomes a `BAD_MESSAGE` error.
fn answer_message(
    lua: &Lua,
    f: &mlua::Function,
    message: &FromClient<ScriptMessage>,
) -> mlua::Result<()> {
    let caller = &message.caller;
    let player = lua.create_table()?;
    player.raw_set("user", caller.user_id.to_string())?;
    player.raw_set("name", caller.username.as_str())?;
    player.raw_set("seq", message.seq)?;
    let payload = scripting::to_lua(lua, &message.message.payload)?;
    let (reply, refusal): (Value, Option<String>) = f.call((player, payload))?;
    match (reply, refusal) {
        (Value::Nil, Some(why)) => caller.error("BAD_MESSAGE", &why),
        (Value::Nil, None) => {}
        (reply, _) => {
            let reply = scripting::from_lua(lua, reply)?;
            if reply.is_object() {
                caller.reply_named(message.message.kind.clone(), &reply);
            } else {
                // A payload is a JSON object: the protocol's rule, not the mod's choice.
                let kind = &message.message.kind;
                tracing::warn!(%kind, "a mod's reply is not a table with named fields; refused");
                caller.error(
                    "SERVER_ERROR",
                    &format!("the mod taking {kind} answered with something other than an object"),
                );
            }
        }
    }
    Ok(())
}
