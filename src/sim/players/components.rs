//! What a player's ship carries: the pilot's lasting state, the client steering it, and
//! the rate of their actions.

use bevy_ecs::prelude::*;
use uuid::Uuid;

use super::*;
use crate::services::pilots::CargoHold;
use crate::services::play::ClientLink;
use crate::services::play::{CargoItem, GameOut};

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
    /// The connection's latest input, taken at the start of each tick.
    pub inputs: crate::services::play::InputSlot,
    /// Receiving snapshots and deltas (after `session.join_system`).
    pub streaming: bool,
    pub last_input_seq: u64,
    pub needs_snapshot: bool,
    pub last_snapshot_tick: u64,
    /// Entities this client currently knows, and what it has been sent of each.
    pub known: Known,
    /// Replication's work between full scans of a crowded area (see `replication`).
    pub interest: crate::sim::replication::Interest,
    pub actions: ActionBucket,
    /// The player's own state as last sent, so a delta carries `you` only when it changed.
    pub you_sent: Option<crate::sim::replication::YouSent>,
}

impl Client {
    /// Sends this player a message of type `kind` (a plugin's push); it must arrive, so a
    /// client too slow to take it is disconnected.
    pub fn push<T: serde::Serialize>(&self, kind: &'static str, payload: &T) {
        self.link.send(GameOut::message(kind, payload));
    }

    /// [`Client::push`] of a type named at run time (a script's).
    pub fn push_named(&self, kind: String, payload: &serde_json::Value) {
        self.link.send(GameOut::message(kind, payload));
    }
}

pub use crate::services::pilots::stow;
