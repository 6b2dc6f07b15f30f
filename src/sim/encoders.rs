//! How the platform's pushes are written on the wire. The server hands the simulation
//! the protocols' encoders (`protocol::encoders`), so a push that goes to many
//! connections is encoded once, and no module of the simulation builds a wire message or
//! names a protocol (a test holds it to that).

use bevy_ecs::prelude::Resource;
use bytes::Bytes;
use serde_json::Value;

use uuid::Uuid;

use crate::services::progress::AchievementDef;
use crate::services::rooms::{RoomChat, RoomView};

/// The encoders, as a resource of the simulation.
#[derive(Resource, Clone, Copy)]
pub struct Encoders {
    /// A comms `Broadcast` on a topic: topic, payload, sent at (Unix ms), message id.
    pub comms_broadcast: fn(&str, &Value, i64, &str) -> Bytes,
    /// A comms `Presence`: user, online, last seen (Unix ms).
    pub comms_presence: fn(&str, bool, i64) -> Bytes,
    /// Why a topic name is not one comms takes, if it is not.
    pub comms_topic_refused: fn(&str) -> Option<String>,
    /// A lobby push of who came online and who went offline.
    pub lobby_presence: fn(&[String], &[String]) -> Bytes,
    /// A lobby push of a room as it is now (and whether it closed).
    pub lobby_room: fn(&RoomView, bool) -> Bytes,
    /// A lobby push of a room's chat message.
    pub lobby_chat: fn(&RoomChat) -> Bytes,
    /// A room's chat message as a comms `Broadcast` on `room.<id>`, with its message id.
    pub comms_room_chat: fn(&RoomChat, &str) -> Bytes,
    /// A platform event as RaOS subscribers get it: its type and data.
    pub raos_event: fn(&str, &Value) -> Bytes,
    /// `achievement_unlocked`'s data: who, which, when (RFC 3339).
    pub achievement_unlocked: fn(Uuid, &str, &AchievementDef, &str) -> Value,
    /// `leaderboard_updated`'s data: the game and the board.
    pub leaderboard_updated: fn(&str, &str) -> Value,
}
