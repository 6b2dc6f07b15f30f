//! The space game as a player hears of it. The simulation decides what happens (a trade
//! done, a rule refused, a hit) and queues it for the player's connection as a
//! [`GameOut`] value; `protocol::game` chooses the message type, the payload and the error
//! code. The simulation never builds a wire message, with one exception: world
//! snapshots and deltas, whose entity fragments replication encodes once per tick for
//! every client that sees them.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bridge::Link;

/// A connection's latest input, waiting for the next tick. The connection task overwrites
/// it as inputs arrive and the tick takes it, so an input costs no wake-up of the
/// simulation: only the latest of a tick would be used anyway.
#[derive(Debug, Clone, Default)]
pub struct InputSlot(Arc<InputSlotInner>);

#[derive(Debug, Default)]
struct InputSlotInner {
    held: std::sync::Mutex<Option<(u64, Input)>>,
    /// Set by the simulation while the connection's ship is in a system.
    joined: std::sync::atomic::AtomicBool,
}

impl InputSlot {
    /// Holds `input` unless an input with a higher `seq` is already waiting. False when
    /// the connection's ship is not in a system (yet: a join may be on its way): the
    /// input waits for it, and the connection asks the simulation whether to refuse it.
    pub fn offer(&self, seq: u64, input: Input) -> bool {
        let mut held = self.held();
        if held.as_ref().is_none_or(|(waiting, _)| seq > *waiting) {
            *held = Some((seq, input));
        }
        self.is_joined()
    }

    /// Whether the connection's ship is in a system.
    pub fn is_joined(&self) -> bool {
        self.0.joined.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Drops the waiting input if its `seq` is `seq` or lower (it was refused).
    pub fn discard_up_to(&self, seq: u64) {
        let mut held = self.held();
        if held.as_ref().is_some_and(|(waiting, _)| *waiting <= seq) {
            *held = None;
        }
    }

    /// The waiting input, if any, leaving the slot empty.
    pub fn take(&self) -> Option<(u64, Input)> {
        self.held().take()
    }

    /// The tick takes inputs from this slot from now on (the connection's ship is in a
    /// system); one that waited for the join counts.
    pub fn set_joined(&self) {
        self.0
            .joined
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The ship left its system (moved off this node): inputs wait for a join again.
    pub fn set_left(&self) {
        self.0
            .joined
            .store(false, std::sync::atomic::Ordering::Release);
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<(u64, Input)>> {
        // Nothing panics while holding it; a poisoned slot still holds a whole input.
        self.0
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A player's controls, as sent.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct Input {
    pub thrust: f64,
    pub turn: f64,
    pub fire_primary: bool,
    pub dock_request: bool,
}

impl Input {
    /// Out-of-range controls are clamped, never trusted; non-finite ones count as zero.
    pub fn clamped(self) -> Self {
        let clamp = |v: f64, lo: f64, hi: f64| if v.is_finite() { v.clamp(lo, hi) } else { 0.0 };
        Self {
            thrust: clamp(self.thrust, 0.0, 1.0),
            turn: clamp(self.turn, -1.0, 1.0),
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeSide {
    Buy,
    Sell,
}

/// Why a game rule refused what a player asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotJoined,
    NotInRoom,
    NotDocked,
    UnknownStation,
    UnknownCommodity,
    UnknownSystem,
    InsufficientCredits,
    InsufficientCargo,
    CargoFull,
    InvalidQuantity,
    Cooldown,
    SessionReplaced,
    /// The system is moving between nodes (or its node lost touch with the database):
    /// nothing happened; join again in a moment.
    Unavailable,
    /// The server failed (a save that did not commit); nothing changed.
    ServerError,
}

/// A refusal, with the reason in words for the player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameError {
    pub refusal: Refusal,
    pub message: String,
}

impl GameError {
    pub fn new(refusal: Refusal, message: impl Into<String>) -> Self {
        Self {
            refusal,
            message: message.into(),
        }
    }
}

/// Units of a commodity aboard, as the player is told.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CargoItem {
    pub commodity_id: String,
    pub qty: u32,
}

/// A hit or a kill, told to the ships involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CombatEvent {
    /// `hit` or `destroyed`.
    pub kind: &'static str,
    pub source_id: Arc<str>,
    pub target_id: Arc<str>,
    pub damage: u32,
    pub target_hp: u32,
}

/// What a trade or repair did: `trade.result`'s `details`.
#[derive(Debug, Clone, PartialEq)]
pub enum TradeDetails {
    Trade {
        station_id: String,
        commodity_id: String,
        quantity: i64,
        unit_price: i64,
        total: i64,
    },
    Repair {
        station_id: String,
        repaired_hp: i64,
        cost: i64,
        hull: u32,
    },
}

/// What the simulation (or the connection task) queues for a game connection.
#[derive(Debug, Clone)]
pub enum GameOut {
    /// The login was accepted.
    LoggedIn {
        player_id: Uuid,
    },
    /// The player's ship is in `system_id`.
    Joined {
        system_id: String,
        ship_id: Arc<str>,
        x: f32,
        y: f32,
        rotation: f32,
    },
    /// A trade or repair was saved and applied.
    Traded {
        credits: i64,
        cargo: Vec<CargoItem>,
        details: TradeDetails,
    },
    Combat(CombatEvent),
    /// A rule refused a request.
    Refused(GameError),
    /// The world asked for runs on another node of the cluster: join it there.
    Elsewhere {
        system_id: String,
        node: String,
        host: String,
        port: u16,
    },
    /// An error of the protocol itself (a frame it could not decode, no login yet) or a
    /// plugin's, with the protocol's code.
    Error {
        code: &'static str,
        message: String,
    },
    /// The player's view of the world, encoded by replication.
    Snapshot(String),
    /// What changed in it this tick, encoded by replication.
    Delta(String),
    /// A message of another type, encoded already: a plugin's, or `auth.error`.
    Message {
        kind: std::borrow::Cow<'static, str>,
        payload: Bytes,
    },
    /// Close the connection, for this ending (its code is the protocol's), with a reason.
    Close {
        ending: crate::bridge::Ending,
        reason: String,
    },
}

/// The simulation's handle on one game connection.
pub type ClientLink = Link<GameOut>;

impl Link<GameOut> {
    /// Tells the player a rule refused their request.
    pub fn refuse(&self, refusal: Refusal, message: impl Into<String>) {
        self.send(GameOut::Refused(GameError::new(refusal, message)));
    }

    /// An `error` with one of the protocol's codes.
    pub fn error(&self, code: &'static str, message: impl Into<String>) {
        self.send(GameOut::Error {
            code,
            message: message.into(),
        });
    }

    /// Asks the connection to close, for `ending`.
    pub fn close(&self, ending: crate::bridge::Ending, reason: &str) {
        self.send(GameOut::Close {
            ending,
            reason: reason.to_owned(),
        });
    }
}

// What a client's view of the world is made of, and the trait that writes it. The
// simulation decides what each client sees; the game protocol implements the encoding.

/// How the world is written for clients: the game protocol's encoding, handed to the
/// worlds by the server (`WorldPlugins`). Replication decides what each client sees, in
/// what order and within what budget; the encoding writes it. An entity's update is
/// written once per change and copied into every client's delta that carries it.
pub trait WorldEncoding: Send + Sync + 'static {
    /// An entity's update (`out` is cleared first): its quantized state
    /// (`[x, y, vx, vy]` in hundredths, `r` in thousandths, hp) and plugins' fields.
    fn entity(
        &self,
        out: &mut String,
        id: &str,
        kind: &str,
        q: &[i32; 6],
        fields: &[(&'static str, serde_json::Value)],
    );
    /// A snapshot: the player's own state, the updates of the entities it carries (each
    /// written by [`WorldEncoding::entity`], listed with [`WorldEncoding::append_update`]),
    /// the markets and the zones.
    fn snapshot(
        &self,
        out: &mut String,
        tick: u64,
        you: &YouView,
        entities: &str,
        markets: &[MarketView],
        zones: &[ZoneDef],
    );
    /// A delta's start, before its updates.
    fn delta_head(&self, out: &mut String, tick: u64);
    /// Appends an update to a list of them: a delta's, begun with
    /// [`WorldEncoding::delta_head`], or a snapshot's.
    fn append_update(&self, out: &mut String, update: &str, first: bool);
    /// A delta's end, after its updates (`out` is cleared first): the entities that left
    /// the client's view, the events near it, its zone context, and its own state when
    /// that changed.
    fn delta_tail(
        &self,
        out: &mut String,
        removed: &[Arc<str>],
        events: &mut dyn Iterator<Item = &str>,
        context: &ZoneContext,
        you: Option<&YouView>,
    );
    /// A `projectile_fired` event, as the deltas of clients near it carry it.
    fn projectile_fired(
        &self,
        source_id: &str,
        projectile_id: &str,
        pos: glam::Vec2,
        vel: glam::Vec2,
    ) -> String;
}

/// The player's own state: `world.snapshot`'s `you`, and `world.delta`'s when it changed.
#[derive(Serialize)]
pub struct YouView<'a> {
    pub ship_id: &'a str,
    pub credits: i64,
    pub hull: u32,
    pub fuel: f32,
    pub cargo: Vec<CargoItem>,
    /// The station the ship is docked at, or null (beyond the spec's example).
    pub docked_at: Option<&'a str>,
}

/// A station's market, and where the station is (beyond the spec's example: a client
/// draws stations from these).
#[derive(Serialize)]
pub struct MarketView<'a> {
    pub station_id: &'a str,
    pub name: &'a str,
    pub x: f32,
    pub y: f32,
    pub prices: Vec<PriceView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PriceView {
    pub commodity_id: String,
    pub buy: i64,
    pub sell: i64,
    /// Units for sale now (beyond the spec's example, which has no stock).
    pub stock: u32,
}

/// The blended zone context at a position (`world.delta`'s `you_zone_context`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneContext {
    pub zone_ids: Vec<String>,
    /// 0-1, from the zones' 0-100 risk levels.
    pub blended_risk: f32,
    /// 0-1, from the zones' 0-100 security levels.
    pub blended_security: f32,
    pub blended_profit_multiplier: f32,
    #[serde(skip)]
    pub pvp_allowed: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// A zone; serialized as is into `world.snapshot`'s `zones`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneDef {
    pub zone_id: String,
    pub zone_type: String,
    pub center: Point,
    pub radius: f32,
    /// 0-100: how many pirates the zone holds.
    pub risk_level: u32,
    /// 0-100.
    pub security_level: u32,
    pub profit_multiplier: f32,
    pub pvp_allowed: bool,
}
