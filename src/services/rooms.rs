//! Rooms as clients see them: plain data shared by the simulation, which owns the rooms,
//! and the protocol modules, which encode them (so no protocol module depends on the
//! simulation).

use uuid::Uuid;

/// A chat message in a room, as every member's connection receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomChat {
    pub room_id: String,
    pub from_user: Uuid,
    pub from: String,
    pub meta: serde_json::Value,
    pub message: String,
    pub sent_at_ms: i64,
}

/// A room as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    pub room_id: String,
    pub serial: u32,
    pub seats: u32,
    pub game_id: String,
    pub version: String,
    pub host: String,
    pub players: Vec<String>,
    pub status: &'static str,
}
