//! What a gameplay plugin adds to the server beyond bevy's own plugins, systems and
//! messages: `/game` message types, fields in entity updates, tables in the store, and
//! command types on the inbox. Each is a method of [`GameAppExt`] on bevy's `App`.
//!
//! A client message type added here is decoded by the connection task (so a malformed
//! payload gets `BAD_MESSAGE` there, like any built-in type), reaches the world as a
//! [`FromClient`] message carrying its [`Caller`], and is answered through the caller.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use bevy_app::App;
use bevy_ecs::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::players::ClientLink;
use crate::bridge::{ConnId, InboxCommand, Pending};
use crate::protocol::game::{self, DecodeError, GameOut};

/// Ways a plugin extends the server, on bevy's `App`.
pub trait GameAppExt {
    /// Adds a client message type to `/game`: frames of type `kind` have their payload
    /// decoded as `T` (under the protocol's decoding rule) and arrive as
    /// [`FromClient<T>`] messages. Panics if `kind` is one of the protocol's own types.
    fn add_game_message<T>(&mut self, kind: &'static str) -> &mut Self
    where
        T: DeserializeOwned + Send + Sync + 'static;

    /// Sends component `C`, encoded with serde, as the member `name` of its entity in
    /// snapshots and deltas, whenever it changes. Panics if an update already has `name`.
    fn replicate_field<C: Component + Serialize>(&mut self, name: &'static str) -> &mut Self;

    /// Gives the plugin its own tables: `migrations` run in order, each once, and every
    /// name they create must start with `<namespace>_`. A failure stops the server from
    /// starting, with the reason.
    fn add_store_tables(
        &mut self,
        namespace: &'static str,
        migrations: &'static [&'static str],
    ) -> &mut Self;

    /// Lets the inbox carry commands of type `T` ([`crate::bridge::Command::to`]); they
    /// wait in [`Pending<T>`] for the plugin's `HandleCommands` system.
    fn add_inbox_command<T: InboxCommand>(&mut self) -> &mut Self;
}

impl GameAppExt for App {
    fn add_game_message<T>(&mut self, kind: &'static str) -> &mut Self
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        assert!(
            !game::BUILT_IN_TYPES.contains(&kind),
            "{kind:?} is one of the game protocol's own message types"
        );
        self.add_message::<FromClient<T>>();
        self.world_mut()
            .get_resource_or_init::<GameMessageTypes>()
            .decoders
            .insert(kind, decode_as::<T>);
        self
    }

    fn replicate_field<C: Component + Serialize>(&mut self, name: &'static str) -> &mut Self {
        super::replication::replicate_field::<C>(self, name);
        self
    }

    fn add_store_tables(
        &mut self,
        namespace: &'static str,
        migrations: &'static [&'static str],
    ) -> &mut Self {
        let store = self.world().resource::<super::SimServices>().store.clone();
        if let Err(e) = store.migrate_namespace(namespace, migrations) {
            self.world_mut()
                .get_resource_or_init::<StartupErrors>()
                .0
                .push(format!("tables of {namespace}: {e}"));
        }
        self
    }

    fn add_inbox_command<T: InboxCommand>(&mut self) -> &mut Self {
        self.init_resource::<Pending<T>>()
    }
}

/// What went wrong while plugins were being built; the server does not start if any.
#[derive(Resource, Debug, Default)]
pub struct StartupErrors(pub Vec<String>);

/// The `/game` message types plugins added, and how to decode each. The network side
/// gets a copy once every plugin is built.
#[derive(Resource, Clone, Default)]
pub struct GameMessageTypes {
    decoders: HashMap<&'static str, Decoder>,
    /// Types scripts take (a mod's `ecliptic.on_message`, a room game's `messages`): each
    /// has one owner (a mod, or one game's rooms), with how many of its scripts take it.
    /// They come and go as scripts load, so the network side shares this set rather than
    /// a copy.
    scripted: Arc<RwLock<HashMap<String, (String, usize)>>>,
}

type Decoder = fn(&str, Value) -> Result<Arrival, DecodeError>;

impl GameMessageTypes {
    pub fn contains(&self, kind: &str) -> bool {
        self.decoders.contains_key(kind) || self.scripted.read().contains_key(kind)
    }

    /// A script of `owner` (`mod pirates`, `game <id>` for all that game's rooms) takes
    /// messages of type `kind`: they arrive as `FromClient<ScriptMessage>`. A type has one
    /// owner: refused for the protocol's own types, a Rust plugin's, and another owner's.
    pub fn claim_for_script(&self, kind: &str, owner: &str) -> Result<(), String> {
        if !crate::scripting::package::is_script_message_type(kind) {
            return Err(format!(
                "message type {kind:?} must look like \"mygame.move\" (ASCII, at most 64 bytes, \
                 outside the server's own namespaces)"
            ));
        }
        if game::BUILT_IN_TYPES.contains(&kind) || self.decoders.contains_key(kind) {
            return Err(format!("message type {kind:?} is already the server's"));
        }
        let mut scripted = self.scripted.write();
        let (taker, count) = scripted
            .entry(kind.to_owned())
            .or_insert_with(|| (owner.to_owned(), 0));
        if taker != owner {
            return Err(format!("message type {kind:?} is taken by {taker}"));
        }
        *count += 1;
        Ok(())
    }

    /// Who takes messages of type `kind`, if a script does.
    pub fn script_owner(&self, kind: &str) -> Option<String> {
        self.scripted
            .read()
            .get(kind)
            .map(|(owner, _)| owner.clone())
    }

    /// A script no longer takes messages of type `kind`.
    pub fn release_for_script(&self, kind: &str) {
        let mut scripted = self.scripted.write();
        if let Some((_, count)) = scripted.get_mut(kind) {
            *count -= 1;
            if *count == 0 {
                scripted.remove(kind);
            }
        }
    }

    /// Decodes a payload of an added type; `BAD_MESSAGE` when it does not fit, and
    /// `UNKNOWN_TYPE` for a type no plugin added.
    pub fn decode(&self, kind: &str, payload: Value) -> Result<Arrival, DecodeError> {
        match self.decoders.get(kind) {
            Some(decode) => decode(kind, payload),
            None if self.scripted.read().contains_key(kind) => {
                let message = super::scripts::ScriptMessage {
                    kind: kind.to_owned(),
                    payload,
                };
                Ok(Arrival(Box::new(move |world, caller, seq| {
                    world.write_message(FromClient {
                        caller,
                        seq,
                        message,
                    });
                })))
            }
            None => Err(DecodeError {
                code: game::codes::UNKNOWN_TYPE,
                message: format!("unknown message type {kind:?}"),
            }),
        }
    }
}

fn decode_as<T: DeserializeOwned + Send + Sync + 'static>(
    kind: &str,
    payload: Value,
) -> Result<Arrival, DecodeError> {
    let message: T = game::decode_payload(kind, payload)?;
    Ok(Arrival(Box::new(move |world, caller, seq| {
        world.write_message(FromClient {
            caller,
            seq,
            message,
        });
    })))
}

/// A decoded message of a plugin's type, on its way to the world.
pub struct Arrival(Box<Deliver>);

type Deliver = dyn FnOnce(&mut World, Caller, u64) + Send + Sync;

impl Arrival {
    /// Writes the [`FromClient`] message, from `caller`, with the client's `seq`.
    pub(crate) fn deliver(self, world: &mut World, caller: Caller, seq: u64) {
        (self.0)(world, caller, seq)
    }
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Arrival")
    }
}

/// A `/game` message of a type a plugin added, as the world receives it. Messages are
/// readable from the tick after they arrive; read them in `FixedUpdate` like any other.
#[derive(Message, Debug)]
pub struct FromClient<T: Send + Sync + 'static> {
    pub caller: Caller,
    /// The client's `seq` for the message.
    pub seq: u64,
    pub message: T,
}

/// The authenticated connection a message came from, and the way to answer it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub conn: ConnId,
    pub user_id: Uuid,
    pub username: String,
    /// The player's ship, once they have joined a system.
    pub ship: Option<Entity>,
    link: ClientLink,
}

impl Caller {
    pub(crate) fn new(
        conn: ConnId,
        user_id: Uuid,
        username: String,
        ship: Option<Entity>,
        link: ClientLink,
    ) -> Self {
        Self {
            conn,
            user_id,
            username,
            ship,
            link,
        }
    }

    /// Sends the caller a message of type `kind`; the connection adds `seq` and `ts`.
    pub fn reply<T: Serialize>(&self, kind: &'static str, payload: &T) {
        self.link.send(GameOut::message(kind, payload));
    }

    /// Sends the caller a message of a type named at run time (a script's).
    pub fn reply_named(&self, kind: String, payload: &Value) {
        self.link.send(GameOut::message(kind, payload));
    }

    /// Sends the caller an `error` with `code`, the protocol's error shape.
    pub fn error(&self, code: &'static str, message: &str) {
        self.link.error(code, message);
    }
}
