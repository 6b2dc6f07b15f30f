//! Players in the space game: connections, sessions, ships, inputs, and saving.
//!
//! The connection task verifies the token and loads the pilot before anything reaches the
//! simulation, so commands here carry an authenticated user. One game session per account:
//! a second login takes the ship over and the first connection is told `SESSION_REPLACED`
//! and closed. Inputs wait in the connection's [`InputSlot`] and each tick takes the latest
//! (a `seq` not above the last accepted one is ignored). Trades and repairs reach the world only once
//! they are saved ([`super::trades`]), so `trade.result` leaves only after COMMIT.
//!
//! This file routes `/game` commands to the rest: `sessions` (login, join, inputs,
//! leaving), `components` (a player's ship: `Pilot`, `Client`), `known` (what each client
//! has been sent, for replication), `factory` (making and removing ships, net ids) and
//! `saving` (pilot records to the store).

mod components;
mod factory;
mod known;
mod saving;
mod sessions;

pub use components::*;
pub use factory::*;
pub use known::*;
pub use saving::*;
pub use sessions::*;

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;

use super::markets::{self, TradeRequest};
use super::stations;
use super::trades::{self, Settlement};
use super::{HandleCommands, Pending, Tick, TickRate};
use crate::bridge::ConnId;
pub use crate::services::play::{ClientLink, GameError};
use crate::services::play::{GameOut, Refusal, TradeSide};

/// Commands from `/game` connections.
#[derive(Debug)]
pub enum GameCommand {
    /// A connection authenticated, with the pilot it checked out.
    Connect(Login),
    Join {
        conn: ConnId,
        system_id: String,
    },
    /// Inputs up to `seq` arrived before the connection's ship was in a system: refused
    /// with `NOT_JOINED` (and dropped from the slot) unless a join that came before them
    /// has placed the ship meanwhile.
    InputBeforeJoin {
        conn: ConnId,
        seq: u64,
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

fn handle_game_commands(world: &mut World) {
    let pending = std::mem::take(&mut world.resource_mut::<Pending<GameCommand>>().0);
    for cmd in pending {
        match cmd {
            GameCommand::Connect(login) => connect(world, login),
            GameCommand::Join { conn, system_id } => join(world, conn, &system_id),
            GameCommand::InputBeforeJoin { conn, seq } => {
                if joined_ship(world, conn).is_none()
                    && let Some(session) = world.resource::<Connections>().sessions.get(&conn)
                {
                    // Refused: it must not steer the ship once one is placed.
                    session.inputs.discard_up_to(seq);
                }
            }
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

/// What a request that needs a ship in a system is told before the player joins one.
pub const NOT_JOINED: &str = "join a system first: session.join_system";

/// The ship of a joined connection; answers `NOT_JOINED` otherwise.
fn joined_ship(world: &World, conn: ConnId) -> Option<Entity> {
    let session = world.resource::<Connections>().sessions.get(&conn)?;
    match session.ship {
        Some(ship) if world.get::<Client>(ship).is_some_and(|c| c.streaming) => Some(ship),
        _ => {
            session.link.refuse(Refusal::NotJoined, NOT_JOINED);
            None
        }
    }
}

pub struct PlayersPlugin;

impl Plugin for PlayersPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Connections>()
            .init_resource::<NetIds>()
            .init_resource::<Pending<GameCommand>>()
            .add_systems(HandleCommands, handle_game_commands)
            .add_systems(bevy_app::FixedPreUpdate, take_inputs)
            .add_systems(bevy_app::FixedLast, save_pilots_periodically);
    }
}
