//! comms-ws.md: real-time messaging on `GET /ws`.
//!
//! Text frames are `{type, data, id?, timestamp?, metadata?}`. Client messages decode into
//! [`ClientMessage`]; bad ones become an `Error` 400 naming what is wrong. Binary frames are
//! `[1 byte type][4 bytes big-endian length][payload]`; broadcast (0x01) and direct message
//! (0x02) payloads start with a 2-byte big-endian header length and a JSON header
//! (`{"topic": …}` or `{"target_user": …}`), then the bytes. Server messages are encoded
//! here once and shared as `Bytes` by every recipient.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::services::DomainError;
use crate::services::rooms::RoomChat;

pub const PROTOCOL_VERSION: &str = "1.0";
pub const FEATURES: &[&str] = &[
    "broadcast",
    "direct_message",
    "presence",
    "history",
    "notifications",
    "binary",
    "refresh",
];

/// Error codes of the spec's table.
pub mod codes {
    pub const BAD_REQUEST: u16 = 400;
    pub const UNAUTHORIZED: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const RATE_LIMITED: u16 = 429;
    pub const INTERNAL: u16 = 500;
    pub const UNAVAILABLE: u16 = 503;
}

/// Close codes beyond the standard ones.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
pub const CLOSE_PONG_TIMEOUT: u16 = 4002;

/// The code for a domain error.
pub fn code_for(e: &DomainError) -> u16 {
    match e {
        DomainError::InvalidInput(_)
        | DomainError::Conflict(_)
        | DomainError::BadState(_)
        | DomainError::ChunkOutOfOrder { .. }
        | DomainError::ChecksumMismatch { .. } => codes::BAD_REQUEST,
        DomainError::InvalidCredentials
        | DomainError::InvalidToken
        | DomainError::ExpiredToken
        | DomainError::SessionReplaced
        | DomainError::RefreshReused => codes::UNAUTHORIZED,
        DomainError::Forbidden(_) => codes::FORBIDDEN,
        DomainError::NotFound(_) => codes::NOT_FOUND,
        DomainError::RateLimited { .. } => codes::RATE_LIMITED,
        DomainError::Internal(_) => codes::INTERNAL,
        DomainError::Busy | DomainError::Unavailable => codes::UNAVAILABLE,
    }
}

/// Message metadata (`priority`, `ttl` seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub ttl_secs: Option<u64>,
    pub raw: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Ping {
        timestamp: Value,
    },
    Subscribe {
        topics: Vec<String>,
    },
    Unsubscribe {
        topics: Vec<String>,
    },
    Broadcast {
        topic: String,
        payload: Value,
    },
    DirectMessage {
        target_user: String,
        payload: Value,
    },
    History {
        topic: String,
        limit: usize,
    },
    Refresh {
        token: String,
    },
    /// An `X-` extension message: its type and data.
    Extension {
        kind: String,
        data: Value,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub id: Option<String>,
    pub meta: Meta,
    pub message: ClientMessage,
}

/// A refusal to decode: the 400 `Error` to send.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub message: String,
    pub details: Value,
}

fn bad(message: impl Into<String>, details: Value) -> DecodeError {
    DecodeError {
        message: message.into(),
        details,
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    timestamp: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct Topics {
    topics: Vec<String>,
}

#[derive(Deserialize)]
struct BroadcastData {
    topic: String,
    payload: Value,
}

#[derive(Deserialize)]
struct DirectData {
    target_user: String,
    payload: Value,
}

#[derive(Deserialize)]
struct HistoryData {
    topic: String,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct RefreshData {
    token: String,
}

fn data<T: serde::de::DeserializeOwned>(kind: &str, value: Value) -> Result<T, DecodeError> {
    super::tolerant(value).map_err(|e| {
        bad(
            format!("{kind}: invalid data: {e}"),
            json!({"type": kind, "field": "data"}),
        )
    })
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<ClientFrame, DecodeError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("invalid JSON: {e}"), json!({"field": "message"})))?;
    if !value.is_object() {
        return Err(bad(
            "a message must be a JSON object",
            json!({"field": "message"}),
        ));
    }
    let envelope: Envelope = super::tolerant(value)
        .map_err(|e| bad(format!("invalid message: {e}"), json!({"field": "message"})))?;
    let id = match envelope.id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(bad("id must be a string", json!({"field": "id"}))),
    };
    let meta = Meta {
        ttl_secs: envelope
            .metadata
            .as_ref()
            .and_then(|m| m.get("ttl"))
            .and_then(Value::as_u64),
        raw: envelope.metadata,
    };
    let kind = envelope.kind.as_str();
    let d = envelope.data;
    let message = match kind {
        "Ping" => ClientMessage::Ping {
            timestamp: d.get("timestamp").cloned().unwrap_or(Value::Null),
        },
        "Subscribe" => ClientMessage::Subscribe {
            topics: data::<Topics>(kind, d)?.topics,
        },
        "Unsubscribe" => ClientMessage::Unsubscribe {
            topics: data::<Topics>(kind, d)?.topics,
        },
        "Broadcast" => {
            let b: BroadcastData = data(kind, d)?;
            ClientMessage::Broadcast {
                topic: b.topic,
                payload: b.payload,
            }
        }
        "DirectMessage" => {
            let m: DirectData = data(kind, d)?;
            ClientMessage::DirectMessage {
                target_user: m.target_user,
                payload: m.payload,
            }
        }
        "History" => {
            let h: HistoryData = data(kind, d)?;
            ClientMessage::History {
                topic: h.topic,
                limit: h.limit.unwrap_or(50),
            }
        }
        "Refresh" => ClientMessage::Refresh {
            token: data::<RefreshData>(kind, d)?.token,
        },
        other if other.starts_with("X-") => ClientMessage::Extension {
            kind: other.to_owned(),
            data: d,
        },
        other => {
            return Err(bad(
                format!("unknown message type {other:?}"),
                json!({"type": other}),
            ));
        }
    };
    Ok(ClientFrame { id, meta, message })
}

/// Topic names: 1-200 characters of letters, digits and `_ - :`, in dot-separated
/// segments; a pattern may use `*` as a whole segment.
pub fn validate_topic(topic: &str, pattern: bool) -> Result<(), DecodeError> {
    let ok = !topic.is_empty()
        && topic.len() <= 200
        && topic.split('.').all(|segment| {
            (pattern && segment == "*")
                || (!segment.is_empty()
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':')))
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            format!("invalid topic {topic:?}"),
            json!({"field": "topic", "topic": topic,
                   "rule": "1-200 characters; dot-separated segments of letters, digits, _ - :; * as a whole segment in subscriptions"}),
        ))
    }
}

fn frame(kind: &str, data: Value) -> Bytes {
    Bytes::from(json!({"type": kind, "data": data}).to_string())
}

pub fn status(status: &str, details: Value) -> Bytes {
    frame("Status", json!({"status": status, "details": details}))
}

pub fn error(code: u16, message: &str, details: Value) -> Bytes {
    let mut data = Map::new();
    data.insert("code".into(), json!(code));
    data.insert("message".into(), json!(message));
    if !details.is_null() {
        data.insert("details".into(), details);
    }
    frame("Error", Value::Object(data))
}

pub fn pong(timestamp: Value) -> Bytes {
    frame("Pong", json!({"timestamp": timestamp}))
}

pub fn ack(data: Value) -> Bytes {
    frame("Ack", data)
}

pub fn broadcast(topic: &str, payload: &Value, sent_at: i64, message_id: &str) -> Bytes {
    frame(
        "Broadcast",
        json!({"topic": topic, "payload": payload,
               "metadata": {"sent_at": sent_at, "message_id": message_id}}),
    )
}

/// A `Broadcast` whose `data` is already built (as history keeps it).
pub fn broadcast_of(data: &Value) -> Bytes {
    frame("Broadcast", data.clone())
}

pub fn direct(from_user: &str, payload: &Value, sent_at: i64, message_id: &str) -> Bytes {
    frame(
        "DirectMessage",
        json!({"from_user": from_user, "payload": payload,
               "metadata": {"sent_at": sent_at, "message_id": message_id}}),
    )
}

pub fn presence(user: &str, online: bool, last_seen: i64) -> Bytes {
    frame(
        "Presence",
        json!({"user_id": user, "status": if online {"online"} else {"offline"},
               "last_seen": last_seen, "metadata": {}}),
    )
}

pub fn notification(data: &Value) -> Bytes {
    frame("Notification", data.clone())
}

pub fn auth_expiring(expires_at: i64) -> Bytes {
    frame(
        "AuthStatus",
        json!({"status": "token_expiring", "expires_at": expires_at, "refresh_required": true}),
    )
}

/// A lobby room's chat message as a `Broadcast` on its topic, `room.<id>`.
pub fn room_chat(chat: &RoomChat, message_id: &str) -> Bytes {
    broadcast(
        &format!("room.{}", chat.room_id),
        &json!({
            "room_id": chat.room_id, "from": chat.from, "meta": chat.meta,
            "message": chat.message,
        }),
        chat.sent_at_ms,
        message_id,
    )
}

/// A client's `Subscribe` frame.
pub fn subscribe_request(topics: &[&str]) -> String {
    json!({"type": "Subscribe", "data": {"topics": topics}}).to_string()
}

/// A client's `Broadcast` frame.
pub fn broadcast_request(topic: &str, payload: &Value) -> String {
    json!({"type": "Broadcast", "data": {"topic": topic, "payload": payload}}).to_string()
}

/// A `Notification`'s data: a system message for every subscriber of `notifications`.
pub fn notification_data<A: serde::Serialize>(
    level: &str,
    title: &str,
    message: &str,
    actions: &[A],
) -> Value {
    json!({ "level": level, "title": title, "message": message, "actions": actions })
}

/// The answer to `POST /api/v1/notifications`: how many connections it reached.
pub fn notified(recipients: usize) -> Value {
    json!({ "recipients": recipients })
}

/// What an `Error`'s `details` say, beyond its code and message.
#[derive(Debug, Clone, Copy)]
pub enum Details<'a> {
    None,
    /// The field of the request that was wrong.
    Field(&'a str),
    /// The message type that was refused.
    Type(&'a str),
    /// The topic that was refused.
    Topic(&'a str),
    /// The rate a connection was held to.
    LimitPerSecond(f64),
    /// A direct message that reached no one: whether it was kept for later.
    Queued {
        message_id: Option<&'a str>,
        queued: bool,
    },
}

impl Details<'_> {
    fn encode(self) -> Value {
        match self {
            Details::None => Value::Null,
            Details::Field(field) => json!({ "field": field }),
            Details::Type(kind) => json!({ "type": kind }),
            Details::Topic(topic) => json!({ "topic": topic }),
            Details::LimitPerSecond(limit) => json!({ "limit_per_second": limit }),
            Details::Queued {
                message_id: Some(id),
                queued,
            } => json!({ "message_id": id, "queued": queued }),
            Details::Queued {
                message_id: None,
                queued,
            } => json!({ "queued": queued }),
        }
    }
}

/// An `Error` with its details.
pub fn error_with(code: u16, message: &str, details: Details) -> Bytes {
    error(code, message, details.encode())
}

/// The body of an HTTP 401 before the upgrade: the `Error` message itself.
pub fn unauthorized(message: &str) -> Value {
    json!({"type": "Error", "data": {"code": codes::UNAUTHORIZED, "message": message}})
}

/// The `connected` status that opens every connection.
pub fn connected(connection_id: &str, server_time: i64) -> Bytes {
    status(
        "connected",
        json!({
            "connection_id": connection_id,
            "server_time": server_time,
            "protocol_version": PROTOCOL_VERSION,
            "features": FEATURES,
        }),
    )
}

/// `subscribed` or `unsubscribed`: the topics asked for and the connection's count now.
pub fn subscriptions(status_name: &str, topics: &[String], active: usize) -> Bytes {
    status(
        status_name,
        json!({"topics": topics, "active_subscriptions": active}),
    )
}

/// The `Ack` of a subscription change.
pub fn subscription_ack(message_id: &str, status_name: &str, active: usize) -> Bytes {
    ack(json!({"message_id": message_id, "status": status_name, "active_subscriptions": active}))
}

/// The `Ack` of a broadcast: how many subscribers it reached.
pub fn broadcast_ack(message_id: &str, recipients: usize) -> Bytes {
    ack(json!({"message_id": message_id, "status": "delivered", "recipients": recipients}))
}

/// The `Ack` of a direct message: who it reached.
pub fn direct_ack(message_id: &str, delivered_to: &[String]) -> Bytes {
    ack(json!({"message_id": message_id, "status": "delivered", "delivered_to": delivered_to}))
}

/// `History`: a topic's kept broadcasts.
pub fn history(topic: &str, messages: &[Value]) -> Bytes {
    raw("History", json!({"topic": topic, "messages": messages}))
}

/// `token_refreshed`.
pub fn token_refreshed(expires_at: i64) -> Bytes {
    status("token_refreshed", json!({"expires_at": expires_at}))
}

/// `binary_received`: what arrived, and its sha256.
pub fn binary_received(size: usize, kind: &str, sha256_hex: &str) -> Bytes {
    status(
        "binary_received",
        json!({"size": size, "type": kind, "checksum": format!("sha256:{sha256_hex}")}),
    )
}

/// A broadcast as history keeps it: the spec's fields, plus who published it.
pub fn broadcast_record(
    topic: &str,
    payload: &Value,
    sent_at: i64,
    message_id: &str,
    from_user: &str,
) -> Value {
    json!({"topic": topic, "payload": payload,
           "metadata": {"sent_at": sent_at, "message_id": message_id, "from_user": from_user}})
}

pub fn raw(kind: &str, data: Value) -> Bytes {
    frame(kind, data)
}

/// A decoded binary frame.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryFrame {
    pub kind: u8,
    pub payload: Bytes,
}

impl BinaryFrame {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            0x01 => "broadcast",
            0x02 => "direct_message",
            0x03 => "file_transfer",
            _ => "stream_data",
        }
    }

    /// For 0x01 and 0x02: the JSON header and the bytes after it.
    pub fn header(&self) -> Result<(Value, Bytes), DecodeError> {
        if self.payload.len() < 2 {
            return Err(bad(
                "binary payload too short for its header",
                json!({"field": "header"}),
            ));
        }
        let len = usize::from(u16::from_be_bytes([self.payload[0], self.payload[1]]));
        if self.payload.len() < 2 + len {
            return Err(bad(
                "binary header length past the payload",
                json!({"field": "header"}),
            ));
        }
        let header: Value = serde_json::from_slice(&self.payload[2..2 + len]).map_err(|e| {
            bad(
                format!("binary header is not JSON: {e}"),
                json!({"field": "header"}),
            )
        })?;
        Ok((header, self.payload.slice(2 + len..)))
    }
}

/// Splits `[type][len u32 BE][payload]`, checking the length.
pub fn decode_binary(frame: Bytes) -> Result<BinaryFrame, DecodeError> {
    if frame.len() < 5 {
        return Err(bad(
            "binary frame shorter than its 5-byte prefix",
            json!({"field": "length"}),
        ));
    }
    let kind = frame[0];
    if !(0x01..=0x04).contains(&kind) {
        return Err(bad(
            format!("unknown binary type 0x{kind:02x}"),
            json!({"field": "type"}),
        ));
    }
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    if len != frame.len() - 5 {
        return Err(bad(
            format!("binary length says {len} bytes, {} follow", frame.len() - 5),
            json!({"field": "length"}),
        ));
    }
    Ok(BinaryFrame {
        kind,
        payload: frame.slice(5..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_lengths_are_checked() {
        let mut frame = vec![0x03, 0, 0, 0, 3];
        frame.extend_from_slice(b"abc");
        assert_eq!(
            decode_binary(Bytes::from(frame.clone())).unwrap().payload,
            Bytes::from_static(b"abc")
        );
        frame[4] = 4;
        assert!(decode_binary(Bytes::from(frame)).is_err());
        assert!(decode_binary(Bytes::from_static(&[0x09, 0, 0, 0, 0])).is_err());
    }

    #[test]
    fn topics_are_validated() {
        assert!(validate_topic("chat.general", false).is_ok());
        assert!(validate_topic("updates.*", true).is_ok());
        assert!(validate_topic("updates.*", false).is_err());
        assert!(validate_topic("a..b", true).is_err());
        assert!(validate_topic("bad topic", true).is_err());
        assert!(validate_topic(&"x".repeat(201), true).is_err());
    }
}
