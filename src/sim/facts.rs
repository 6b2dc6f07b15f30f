//! Gameplay facts: what happened in the world, as bevy messages any plugin can read.
//!
//! The feature that decides a fact writes it; progress, the event bus and mods read it
//! with a `MessageReader`, none of them knowing who wrote it. Messages are swapped at the
//! end of every tick, so a fact written during tick N, or between ticks N-1 and N (a
//! trade settling), can be read in ticks N and N+1: a reader that runs every tick sees
//! each fact once.
//!
//! Facts carry user ids as well as entities: a destroyed NPC's entity is gone by the time
//! most readers run.

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use uuid::Uuid;

/// A projectile struck a ship.
#[derive(Message, Debug, Clone)]
pub struct ProjectileHit {
    pub source: Entity,
    pub target: Entity,
    pub damage: u32,
    /// The target's hull after the hit.
    pub hull_left: u32,
}

/// A ship's hull reached zero.
#[derive(Message, Debug, Clone)]
pub struct ShipDestroyed {
    pub victim: Entity,
    pub killer: Entity,
    /// The id clients knew the victim by (`npc_3`, `s_12`).
    pub victim_id: std::sync::Arc<str>,
    /// The victim's entity kind as clients saw it (`pirate`, `player_ship`).
    pub victim_kind: &'static str,
    /// The victim's pilot, if a player flew it.
    pub victim_user: Option<Uuid>,
    /// The killer's pilot, if a player flew it.
    pub killer_user: Option<Uuid>,
}

/// A trade was saved and applied.
#[derive(Message, Debug, Clone)]
pub struct TradeDone {
    pub ship: Entity,
    pub user_id: Uuid,
    pub station: Entity,
    pub commodity_id: String,
    /// Units taken aboard (positive, a buy) or sold (negative).
    pub quantity: i64,
    /// Credits gained (positive) or spent (negative).
    pub credits_delta: i64,
    /// The pilot's credits afterwards.
    pub credits: i64,
}

/// A ship docked at a station.
#[derive(Message, Debug, Clone)]
pub struct ShipDocked {
    pub ship: Entity,
    pub station: Entity,
    pub user_id: Option<Uuid>,
}

/// A ship left the station it was docked at.
#[derive(Message, Debug, Clone)]
pub struct ShipUndocked {
    pub ship: Entity,
    pub station: Entity,
    pub user_id: Option<Uuid>,
}

/// A player's ship entered an instance (a star system, a room, a launched session).
#[derive(Message, Debug, Clone)]
pub struct PlayerJoined {
    pub user_id: Uuid,
    pub ship: Entity,
    pub instance: Entity,
    /// The instance's id: what `session.join_system` named.
    pub system_id: String,
}

/// A player's ship left an instance (disconnected, or moved to another).
#[derive(Message, Debug, Clone)]
pub struct PlayerLeft {
    pub user_id: Uuid,
    pub ship: Entity,
    pub instance: Entity,
    pub system_id: String,
}

/// A player's ship entered a zone.
#[derive(Message, Debug, Clone)]
pub struct ZoneEntered {
    pub ship: Entity,
    pub user_id: Uuid,
    pub zone_id: String,
}

/// A player's ship left a zone.
#[derive(Message, Debug, Clone)]
pub struct ZoneLeft {
    pub ship: Entity,
    pub user_id: Uuid,
    pub zone_id: String,
}

/// A player unlocked an achievement.
#[derive(Message, Debug, Clone)]
pub struct AchievementUnlocked {
    pub user_id: Uuid,
    pub username: String,
    pub achievement_id: String,
}

/// Registers every fact, so writers and readers can rely on them whichever features run.
pub struct FactsPlugin;

impl Plugin for FactsPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<ProjectileHit>()
            .add_message::<ShipDestroyed>()
            .add_message::<TradeDone>()
            .add_message::<ShipDocked>()
            .add_message::<ShipUndocked>()
            .add_message::<PlayerJoined>()
            .add_message::<PlayerLeft>()
            .add_message::<ZoneEntered>()
            .add_message::<ZoneLeft>()
            .add_message::<AchievementUnlocked>();
    }
}
