//! realtime-game.md: the space game on `GET /game`.
//!
//! Every message is `{type, seq, ts, payload}`. Client messages are decoded in two steps
//! under the decoding rule of [`crate::protocol`]: the envelope, then the payload by
//! `type`, so an unknown type and a malformed payload get different codes (`UNKNOWN_TYPE`,
//! `BAD_MESSAGE`). Server
//! messages leave the simulation as a `type` and an encoded payload; the connection's writer
//! adds its own increasing `seq` and the server's `ts`, so a payload is never re-encoded.

pub mod binary;
pub mod world;

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::services::DomainError;

/// The protocol version this server speaks (`auth.login`'s optional `protocol_version`).
pub const PROTOCOL_VERSION: u64 = 1;

/// Error codes of the game protocol.
pub mod codes {
    pub const INVALID_TOKEN: &str = "INVALID_TOKEN";
    pub const EXPIRED_TOKEN: &str = "EXPIRED_TOKEN";
    pub const UNSUPPORTED_VERSION: &str = "UNSUPPORTED_VERSION";
    pub const NOT_DOCKED: &str = "NOT_DOCKED";
    pub const UNKNOWN_STATION: &str = "UNKNOWN_STATION";
    pub const UNKNOWN_COMMODITY: &str = "UNKNOWN_COMMODITY";
    pub const UNKNOWN_SYSTEM: &str = "UNKNOWN_SYSTEM";
    /// The world asked for runs on another node of the cluster (named in the payload).
    pub const WRONG_NODE: &str = "WRONG_NODE";
    pub const INSUFFICIENT_CREDITS: &str = "INSUFFICIENT_CREDITS";
    pub const INSUFFICIENT_CARGO: &str = "INSUFFICIENT_CARGO";
    pub const CARGO_FULL: &str = "CARGO_FULL";
    pub const INVALID_QUANTITY: &str = "INVALID_QUANTITY";
    pub const COOLDOWN: &str = "COOLDOWN";
    pub const NOT_JOINED: &str = "NOT_JOINED";
    /// A room's (or launched session's) instance entered by someone not in it.
    pub const NOT_IN_ROOM: &str = "NOT_IN_ROOM";
    pub const NOT_AUTHENTICATED: &str = "NOT_AUTHENTICATED";
    pub const ALREADY_AUTHENTICATED: &str = "ALREADY_AUTHENTICATED";
    pub const BAD_MESSAGE: &str = "BAD_MESSAGE";
    pub const UNKNOWN_TYPE: &str = "UNKNOWN_TYPE";
    pub const SESSION_REPLACED: &str = "SESSION_REPLACED";
    pub const SERVER_BUSY: &str = "SERVER_BUSY";
    pub const SERVER_ERROR: &str = "SERVER_ERROR";
}

/// The `auth.error` code for a token that did not verify.
pub fn auth_code_for(e: &DomainError) -> &'static str {
    match e {
        DomainError::ExpiredToken => codes::EXPIRED_TOKEN,
        _ => codes::INVALID_TOKEN,
    }
}

pub use crate::services::play::{Input, TradeSide};

/// A decoded client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Login {
        token: String,
        protocol_version: Option<u64>,
    },
    JoinSystem {
        system_id: String,
    },
    Input(Input),
    Trade {
        side: TradeSide,
        station_id: String,
        commodity_id: String,
        quantity: i64,
    },
    Repair {
        station_id: String,
    },
    /// A type a plugin added to the protocol; its payload is decoded by the plugin's type.
    Extra {
        kind: String,
        payload: Value,
    },
}

impl ClientMessage {
    /// The frame a client sends for this message (what [`decode`] reads back), with its
    /// `seq`; clients such as the load generator write their messages with it.
    pub fn encode(&self, seq: u64) -> String {
        use serde_json::json;
        let (kind, payload) = match self {
            ClientMessage::Login {
                token,
                protocol_version,
            } => (
                "auth.login",
                json!({"token": token, "protocol_version": protocol_version}),
            ),
            ClientMessage::JoinSystem { system_id } => {
                ("session.join_system", json!({"system_id": system_id}))
            }
            ClientMessage::Input(input) => (
                "input.command",
                json!({"thrust": input.thrust, "turn": input.turn,
                       "fire_primary": input.fire_primary, "dock_request": input.dock_request}),
            ),
            ClientMessage::Trade {
                side,
                station_id,
                commodity_id,
                quantity,
            } => (
                match side {
                    TradeSide::Buy => "trade.buy",
                    TradeSide::Sell => "trade.sell",
                },
                json!({"station_id": station_id, "commodity_id": commodity_id,
                       "quantity": quantity}),
            ),
            ClientMessage::Repair { station_id } => {
                ("ship.repair_request", json!({"station_id": station_id}))
            }
            ClientMessage::Extra { kind, payload } => (kind.as_str(), payload.clone()),
        };
        json!({"type": kind, "seq": seq, "ts": 0, "payload": payload}).to_string()
    }
}

/// The message types the protocol itself defines; a plugin cannot take these over.
pub const BUILT_IN_TYPES: &[&str] = &[
    "auth.login",
    "session.join_system",
    "input.command",
    "trade.buy",
    "trade.sell",
    "ship.repair_request",
];

/// One decoded frame: the client's `seq` and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub seq: u64,
    pub message: ClientMessage,
}

/// Why a frame could not be decoded: the code and message of the `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: &'static str,
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    seq: u64,
    #[serde(default)]
    #[allow(dead_code)]
    ts: Option<Value>,
    payload: Value,
}

#[derive(Deserialize)]
struct LoginPayload {
    token: String,
    #[serde(default)]
    protocol_version: Option<u64>,
}

#[derive(Deserialize)]
struct JoinPayload {
    system_id: String,
}

#[derive(Deserialize)]
struct TradePayload {
    station_id: String,
    commodity_id: String,
    quantity: i64,
}

#[derive(Deserialize)]
struct RepairPayload {
    station_id: String,
}

fn bad(message: impl Into<String>) -> DecodeError {
    DecodeError {
        code: codes::BAD_MESSAGE,
        message: message.into(),
    }
}

/// Decodes a payload of type `kind` under the decoding rule; `BAD_MESSAGE` when it does not fit.
pub fn decode_payload<T: serde::de::DeserializeOwned>(
    kind: &str,
    value: Value,
) -> Result<T, DecodeError> {
    // serde would also read a struct from an array of its fields: not this protocol.
    if !value.is_object() {
        return Err(bad(format!("{kind}: the payload must be a JSON object")));
    }
    super::tolerant(value).map_err(|e| bad(format!("{kind}: invalid payload: {e}")))
}

/// Decodes one text frame of the protocol's own types.
pub fn decode(text: &str) -> Result<ClientFrame, DecodeError> {
    decode_with(text, |_| false)
}

/// Decodes one text frame; a type `is_extra` knows becomes [`ClientMessage::Extra`] with
/// its payload left for the plugin that added it.
pub fn decode_with(
    text: &str,
    is_extra: impl Fn(&str) -> bool,
) -> Result<ClientFrame, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad("a message must be a JSON object"));
    }
    let envelope: Envelope =
        super::tolerant(value).map_err(|e| bad(format!("invalid envelope: {e}")))?;
    let kind = envelope.kind.as_str();
    let message = match kind {
        "auth.login" => {
            let p: LoginPayload = decode_payload(kind, envelope.payload)?;
            ClientMessage::Login {
                token: p.token,
                protocol_version: p.protocol_version,
            }
        }
        "session.join_system" => {
            let p: JoinPayload = decode_payload(kind, envelope.payload)?;
            ClientMessage::JoinSystem {
                system_id: p.system_id,
            }
        }
        "input.command" => ClientMessage::Input(decode_payload(kind, envelope.payload)?),
        "trade.buy" | "trade.sell" => {
            let p: TradePayload = decode_payload(kind, envelope.payload)?;
            ClientMessage::Trade {
                side: if kind == "trade.buy" {
                    TradeSide::Buy
                } else {
                    TradeSide::Sell
                },
                station_id: p.station_id,
                commodity_id: p.commodity_id,
                quantity: p.quantity,
            }
        }
        "ship.repair_request" => {
            let p: RepairPayload = decode_payload(kind, envelope.payload)?;
            ClientMessage::Repair {
                station_id: p.station_id,
            }
        }
        other if is_extra(other) => ClientMessage::Extra {
            kind: other.to_owned(),
            payload: envelope.payload,
        },
        other => {
            return Err(DecodeError {
                code: codes::UNKNOWN_TYPE,
                message: format!("unknown message type {other:?}"),
            });
        }
    };
    Ok(ClientFrame {
        seq: envelope.seq,
        message,
    })
}

pub use crate::services::play::{CargoItem, GameOut};
use crate::services::play::{CombatEvent, Refusal, TradeDetails};

/// The `error` code for a rule's refusal.
pub fn code_for(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::NotJoined => codes::NOT_JOINED,
        Refusal::NotInRoom => codes::NOT_IN_ROOM,
        Refusal::NotDocked => codes::NOT_DOCKED,
        Refusal::UnknownStation => codes::UNKNOWN_STATION,
        Refusal::UnknownCommodity => codes::UNKNOWN_COMMODITY,
        Refusal::UnknownSystem => codes::UNKNOWN_SYSTEM,
        Refusal::InsufficientCredits => codes::INSUFFICIENT_CREDITS,
        Refusal::InsufficientCargo => codes::INSUFFICIENT_CARGO,
        Refusal::CargoFull => codes::CARGO_FULL,
        Refusal::InvalidQuantity => codes::INVALID_QUANTITY,
        Refusal::Cooldown => codes::COOLDOWN,
        Refusal::SessionReplaced => codes::SESSION_REPLACED,
        Refusal::Unavailable => codes::SERVER_BUSY,
        Refusal::ServerError => codes::SERVER_ERROR,
    }
}

impl GameOut {
    /// A message of type `kind` with `payload` encoded now.
    pub fn message<T: Serialize>(kind: impl Into<Cow<'static, str>>, payload: &T) -> Self {
        GameOut::Message {
            kind: kind.into(),
            payload: Bytes::from(to_json(payload)),
        }
    }
}

fn to_json<T: Serialize>(payload: &T) -> Vec<u8> {
    serde_json::to_vec(payload).unwrap_or_else(|_| b"{}".to_vec())
}

/// What the connection's writer sends for one [`GameOut`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A message's `type` and encoded `payload`, for [`envelope`].
    Message(Cow<'static, str>, Bytes),
    /// A WebSocket close with this code and reason.
    Close(u16, String),
}

/// Encodes one [`GameOut`] for the client.
pub fn encode(out: GameOut) -> Frame {
    let (kind, payload) = match out {
        GameOut::LoggedIn { player_id } => (
            "auth.ok",
            to_json(&serde_json::json!({ "player_id": player_id.to_string() })),
        ),
        GameOut::Joined {
            system_id,
            ship_id,
            x,
            y,
            rotation,
        } => (
            "session.joined",
            to_json(&Joined {
                system_id: &system_id,
                ship_id: &ship_id,
                spawn: Spawn { x, y, rotation },
            }),
        ),
        GameOut::Traded {
            credits,
            cargo,
            details,
        } => (
            "trade.result",
            to_json(&TradeResult {
                ok: true,
                credits,
                cargo: &cargo,
                details: trade_details(&details),
            }),
        ),
        GameOut::Combat(event) => ("combat.event", to_json(&CombatPayload::from(&event))),
        GameOut::Refused(e) => (
            "error",
            to_json(&ErrorPayload {
                code: code_for(e.refusal),
                message: &e.message,
            }),
        ),
        GameOut::Elsewhere {
            system_id,
            node,
            host,
            port,
        } => (
            "error",
            to_json(&serde_json::json!({
                "code": codes::WRONG_NODE,
                "message": format!(
                    "{system_id} runs on node {node}: connect to {host}:{port} and join there"
                ),
                "node": node, "game_host": host, "game_port": port,
            })),
        ),
        GameOut::Error { code, message } => (
            "error",
            to_json(&ErrorPayload {
                code,
                message: &message,
            }),
        ),
        GameOut::Snapshot(json) => {
            return Frame::Message("world.snapshot".into(), Bytes::from(json));
        }
        GameOut::Delta(json) => return Frame::Message("world.delta".into(), Bytes::from(json)),
        GameOut::Message { kind, payload } => return Frame::Message(kind, payload),
        GameOut::Close { ending, reason } => {
            return Frame::Close(
                super::close::code(super::close::Endpoint::Game, ending),
                reason,
            );
        }
    };
    Frame::Message(kind.into(), Bytes::from(payload))
}

#[derive(Debug, Serialize)]
pub struct ErrorPayload<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// Wraps a payload in the envelope: `{"type":…,"seq":…,"ts":…,"payload":…}`.
/// The body of a `/game` upgrade refused for its token: an `auth.error` message.
pub fn auth_error(e: &DomainError, ts_ms: i64) -> String {
    let payload = serde_json::json!({"code": auth_code_for(e), "message": e.to_string()});
    envelope("auth.error", 0, ts_ms, payload.to_string().as_bytes())
}

pub fn envelope(kind: &str, seq: u64, ts_ms: i64, payload: &[u8]) -> String {
    let mut out = String::with_capacity(payload.len() + kind.len() + 48);
    out.push_str("{\"type\":\"");
    out.push_str(kind);
    out.push_str("\",\"seq\":");
    out.push_str(itoa::Buffer::new().format(seq));
    out.push_str(",\"ts\":");
    out.push_str(itoa::Buffer::new().format(ts_ms));
    out.push_str(",\"payload\":");
    out.push_str(std::str::from_utf8(payload).unwrap_or("{}"));
    out.push('}');
    out
}

#[derive(Debug, Serialize)]
struct Spawn {
    x: f32,
    y: f32,
    rotation: f32,
}

#[derive(Debug, Serialize)]
struct Joined<'a> {
    system_id: &'a str,
    ship_id: &'a str,
    spawn: Spawn,
}

/// `trade.result`'s `details`: what was traded at what price, or what a repair fixed.
fn trade_details(details: &TradeDetails) -> Value {
    match details {
        TradeDetails::Trade {
            station_id,
            commodity_id,
            quantity,
            unit_price,
            total,
        } => serde_json::json!({
            "station_id": station_id,
            "commodity_id": commodity_id,
            "quantity": quantity,
            "unit_price": unit_price,
            "total": total,
        }),
        TradeDetails::Repair {
            station_id,
            repaired_hp,
            cost,
            hull,
        } => serde_json::json!({
            "station_id": station_id,
            "repaired_hp": repaired_hp,
            "cost": cost,
            "hull": hull,
        }),
    }
}

#[derive(Debug, Serialize)]
struct TradeResult<'a> {
    ok: bool,
    credits: i64,
    cargo: &'a [CargoItem],
    details: Value,
}

#[derive(Debug, Serialize)]
struct CombatPayload<'a> {
    kind: &'a str,
    source_id: &'a str,
    target_id: &'a str,
    damage: u32,
    target_hp: u32,
}

impl<'a> From<&'a CombatEvent> for CombatPayload<'a> {
    fn from(event: &'a CombatEvent) -> Self {
        Self {
            kind: event.kind,
            source_id: &event.source_id,
            target_id: &event.target_id,
            damage: event.damage,
            target_hp: event.target_hp,
        }
    }
}

#[cfg(test)]
mod namespaces {
    /// Scripts keep out of the server's namespaces; every type the protocol defines is in one.
    #[test]
    fn every_built_in_type_is_in_a_server_namespace() {
        for kind in super::BUILT_IN_TYPES {
            assert!(
                !crate::scripting::package::is_script_message_type(kind),
                "{kind} would be free for scripts to take"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_spec_examples() {
        let frame = decode(r#"{"type":"input.command","seq":40,"ts":1700000000500,"payload":{"thrust":0.8,"turn":-0.4,"fire_primary":true,"dock_request":false}}"#).unwrap();
        assert_eq!(frame.seq, 40);
        assert_eq!(
            frame.message,
            ClientMessage::Input(Input {
                thrust: 0.8,
                turn: -0.4,
                fire_primary: true,
                dock_request: false
            })
        );
        let frame = decode(r#"{"type":"trade.sell","seq":56,"ts":1,"payload":{"station_id":"mars-orbit-station","commodity_id":"food","quantity":10}}"#).unwrap();
        assert!(matches!(
            frame.message,
            ClientMessage::Trade {
                side: TradeSide::Sell,
                quantity: 10,
                ..
            }
        ));
    }

    #[test]
    fn bad_frames_get_their_codes() {
        let code = |text: &str| decode(text).unwrap_err().code;
        assert_eq!(code("nope"), codes::BAD_MESSAGE);
        assert_eq!(code("[]"), codes::BAD_MESSAGE);
        assert_eq!(
            code(r#"{"type":"x.y","seq":1,"payload":{}}"#),
            codes::UNKNOWN_TYPE
        );
        assert_eq!(
            code(r#"{"type":"auth.login","payload":{"token":"t"}}"#),
            codes::BAD_MESSAGE
        );
        assert_eq!(
            code(
                r#"{"type":"input.command","seq":1,"payload":{"thrust":1,"turn":0,"fire_primary":"yes","dock_request":false}}"#
            ),
            codes::BAD_MESSAGE
        );
        assert_eq!(
            code(
                r#"{"type":"trade.buy","seq":1,"payload":{"station_id":"a","commodity_id":"b","quantity":1.5}}"#
            ),
            codes::BAD_MESSAGE
        );
        assert_eq!(
            code(r#"{"type":"session.join_system","seq":1,"payload":{"system_id":null}}"#),
            codes::BAD_MESSAGE
        );
        assert_eq!(
            code(r#"{"type":"input.command","seq":1,"payload":[1,0,false,false]}"#),
            codes::BAD_MESSAGE
        );
    }

    #[test]
    fn fields_a_message_does_not_use_are_ignored() {
        let frame = decode(
            r#"{"type":"session.join_system","seq":1,"ts":null,"client":"v9",
                "payload":{"system_id":"a","x":{"y":1}}}"#,
        )
        .unwrap();
        assert_eq!(
            frame.message,
            ClientMessage::JoinSystem {
                system_id: "a".into()
            }
        );
    }

    #[test]
    fn inputs_are_clamped() {
        let input = Input {
            thrust: 7.0,
            turn: -3.0,
            fire_primary: false,
            dock_request: false,
        }
        .clamped();
        assert_eq!((input.thrust, input.turn), (1.0, -1.0));
        let input = Input {
            thrust: -1.0,
            turn: 0.5,
            fire_primary: false,
            dock_request: false,
        }
        .clamped();
        assert_eq!((input.thrust, input.turn), (0.0, 0.5));
    }

    #[test]
    fn envelope_wraps_without_reencoding() {
        let text = envelope("auth.ok", 1, 1700, br#"{"player_id":"p"}"#);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "auth.ok");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["ts"], 1700);
        assert_eq!(v["payload"]["player_id"], "p");
    }
}
