//! The compact binary encoding of `/game`, chosen by a client that offers the WebSocket
//! subprotocol [`SUBPROTOCOL`] (docs/protocols/game.md, "Binary encoding", is the
//! reference, message by message).
//!
//! The messages are the same as in JSON; every frame is a binary frame whose first byte
//! is a [`tag`]. The two high-rate messages have a compact form: in `world.delta` and
//! `world.snapshot` an entity gets a small integer handle the first time this client hears
//! of it, positions, velocities and angles travel as the integers the JSON already
//! quantizes them to (hundredths, thousandths of a radian), and a record carries only the
//! fields that changed since this client was last sent that entity. Every other message,
//! and any payload the compact form could not carry exactly, travels as its JSON envelope
//! behind [`tag::JSON`]. A client sends `input.command` compactly ([`tag::INPUT`]) and
//! anything else as JSON behind [`tag::JSON`] (or as a text frame).
//!
//! Integers are LEB128 varints; signed ones are zigzag-encoded first. The [`Encoder`] (one
//! per connection, in its writer) and the client's [`Decoder`] each keep the handle table;
//! the writer encodes in the order it sends, so the two always agree.

use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{ClientFrame, ClientMessage, DecodeError, Input, codes};

/// The WebSocket subprotocol a client offers to be spoken to in this encoding.
pub const SUBPROTOCOL: &str = "ecliptic.game.binary.v1";

/// The first byte of every frame.
pub mod tag {
    /// The rest of the frame is a JSON envelope, exactly as a text frame would carry it.
    pub const JSON: u8 = 0x00;
    /// `world.delta` in compact form (server to client).
    pub const DELTA: u8 = 0x01;
    /// `world.snapshot` in compact form (server to client).
    pub const SNAPSHOT: u8 = 0x02;
    /// `input.command` in compact form (client to server).
    pub const INPUT: u8 = 0x10;
}

/// Bits of an entity record's field mask, in the order the fields follow it.
mod field {
    /// First sight: the entity's `id` follows, and the record's handle is now that id's.
    pub const NEW: u32 = 1 << 0;
    pub const KIND: u32 = 1 << 1;
    /// `x`, `y`, `vx`, `vy`, `r`, `hp`: bit `2 + i` for the i-th of [`super::NUMBERS`].
    pub const FIRST_NUMBER: u32 = 2;
    /// A JSON object of the fields plugins add, replacing the last one sent.
    pub const EXTRA: u32 = 1 << 8;
}

/// An entity's numeric members and the scale each is quantized with.
const NUMBERS: [(&str, i64); 6] = [
    ("x", 100),
    ("y", 100),
    ("vx", 100),
    ("vy", 100),
    ("r", 1000),
    ("hp", 1),
];

/// Members of a compact message's payload that are not carried in its JSON rest.
const HAS_ENTITIES: u8 = 1 << 0;
const HAS_REMOVED: u8 = 1 << 1;

/// The largest magnitude a quantized number may have: its zigzag form stays an exact
/// integer in JavaScript.
const MAX_QUANTIZED: i64 = (1 << 51) - 1;

/// Which compact message `kind` is, and the payload member listing its entities.
fn compact_kind(kind: &str) -> Option<(u8, &'static str)> {
    match kind {
        "world.delta" => Some((tag::DELTA, "entity_updates")),
        "world.snapshot" => Some((tag::SNAPSHOT, "entities")),
        _ => None,
    }
}

/// One entity as the decoder last got it.
#[derive(Debug, Clone, PartialEq)]
struct EntityState {
    id: String,
    kind: String,
    numbers: [i64; 6],
    /// The plugins' fields, as a JSON object.
    extra: Map<String, Value>,
}

impl EntityState {
    /// The entity as JSON, as the JSON encoding sends it.
    fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("id".into(), Value::from(self.id.as_str()));
        object.insert("kind".into(), Value::from(self.kind.as_str()));
        for (&q, (name, scale)) in self.numbers.iter().zip(NUMBERS) {
            object.insert(name.into(), unquantize(q, scale));
        }
        for (name, value) in &self.extra {
            object.insert(name.clone(), value.clone());
        }
        Value::Object(object)
    }
}

/// A JSON object's members, borrowed from the text they were read from.
type RawMembers<'a> = BTreeMap<&'a str, &'a RawValue>;

/// An entity update as the encoder reads it, borrowed from the payload.
struct EntityIn<'a> {
    id: &'a str,
    kind: &'a str,
    numbers: [i64; 6],
    /// The plugins' fields as a JSON object's text; empty when there are none.
    extra: String,
}

impl<'a> EntityIn<'a> {
    /// `None` when it is not an update the compact form carries exactly.
    fn read(mut members: RawMembers<'a>) -> Option<Self> {
        let text = |raw: &'a RawValue| serde_json::from_str::<&'a str>(raw.get()).ok();
        let id = text(members.remove("id")?)?;
        let kind = text(members.remove("kind")?)?;
        let mut numbers = [0; 6];
        for (slot, (name, scale)) in numbers.iter_mut().zip(NUMBERS) {
            *slot = quantize(members.remove(name)?.get(), scale)?;
        }
        Some(Self {
            id,
            kind,
            numbers,
            extra: object_text(members.iter().map(|(name, raw)| (*name, raw.get()))),
        })
    }
}

/// `{"name":value,…}` from members whose values are JSON text already; empty for none.
fn object_text<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in members {
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(&Value::from(name).to_string());
        out.push(':');
        out.push_str(value);
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

/// One entity as the encoder last sent it to this client.
#[derive(Debug)]
struct EntitySent {
    kind: String,
    numbers: [i64; 6],
    extra: String,
}

/// The JSON number `text` × `scale` as an integer, when that integer gives the number
/// back exactly.
fn quantize(text: &str, scale: i64) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return n.checked_mul(scale).filter(|q| q.abs() <= MAX_QUANTIZED);
    }
    let v: f64 = text.parse().ok()?;
    let q = (v * scale as f64).round();
    if !q.is_finite() || q.abs() > MAX_QUANTIZED as f64 {
        return None;
    }
    let q = q as i64;
    (unquantize(q, scale).as_f64() == Some(v)).then_some(q)
}

/// The JSON number `q / scale`: an integer when it is whole, as the JSON encoding writes it.
fn unquantize(q: i64, scale: i64) -> Value {
    if q % scale == 0 {
        Value::from(q / scale)
    } else {
        Value::from(q as f64 / scale as f64)
    }
}

/// A compact message's other members (`you`, `events`, `markets`, …) as last sent, by
/// name: a member sent again unchanged costs a bit of the next message's repeat mask.
/// The encoder keeps each member's JSON text, the decoder its value.
type Rest<V> = BTreeMap<String, V>;

/// The index of a compact message's tag among the compact tags (each keeps its own rest).
fn rest_slot(tag: u8) -> usize {
    usize::from(tag == tag::SNAPSHOT)
}

/// Turns one connection's messages into binary frames.
#[derive(Debug, Default)]
pub struct Encoder {
    handles: HashMap<String, u32>,
    sent: HashMap<u32, EntitySent>,
    next_handle: u32,
    last_rest: [Rest<String>; 2],
}

impl Encoder {
    /// The frame for one message (its `type`, the writer's `seq` and `ts`, and its encoded
    /// payload).
    pub fn encode(&mut self, kind: &str, seq: u64, ts_ms: i64, payload: &[u8]) -> Vec<u8> {
        self.compact(kind, seq, ts_ms, payload)
            .unwrap_or_else(|| json_frame(&super::envelope(kind, seq, ts_ms, payload)))
    }

    /// The compact form, if the message has one and it carries this payload exactly.
    /// Nothing of the connection's state changes unless it does. The payload is read
    /// without building JSON values: members stay borrowed text.
    fn compact(&mut self, kind: &str, seq: u64, ts_ms: i64, payload: &[u8]) -> Option<Vec<u8>> {
        let (tag, entities_member) = compact_kind(kind)?;
        let mut rest: RawMembers<'_> = serde_json::from_slice(payload).ok()?;
        let tick: u64 = rest.remove("tick")?.get().parse().ok()?;
        let entities = match rest.remove(entities_member) {
            None => None,
            Some(raw) => Some(
                serde_json::from_str::<Vec<RawMembers<'_>>>(raw.get())
                    .ok()?
                    .into_iter()
                    .map(EntityIn::read)
                    .collect::<Option<Vec<_>>>()?,
            ),
        };
        let removed = match rest.remove("entity_removed") {
            None => None,
            Some(raw) => Some(serde_json::from_str::<Vec<&str>>(raw.get()).ok()?),
        };
        // Every removed entity must be one the client has a handle for, once.
        let listed = entities.iter().flatten().map(|e| e.id);
        let known = |id: &str| self.handles.contains_key(id) || listed.clone().any(|l| l == id);
        let mut gone = std::collections::HashSet::new();
        if !removed
            .iter()
            .flatten()
            .all(|id| known(id) && gone.insert(*id))
        {
            return None;
        }
        let last_rest = &self.last_rest[rest_slot(tag)];
        let mut repeated = 0u64;
        for (i, (name, text)) in last_rest.iter().take(32).enumerate() {
            if rest.get(name.as_str()).is_some_and(|raw| raw.get() == text) {
                repeated |= 1 << i;
            }
        }
        let changed = object_text(
            rest.iter()
                .filter(|(name, raw)| last_rest.get(**name).is_none_or(|t| t != raw.get()))
                .map(|(name, raw)| (*name, raw.get())),
        );

        let mut out = Vec::with_capacity(64 + payload.len() / 8);
        out.push(tag);
        put_varint(&mut out, seq);
        put_varint(&mut out, zigzag(ts_ms));
        put_varint(&mut out, tick);
        out.push(
            if entities.is_some() { HAS_ENTITIES } else { 0 }
                | if removed.is_some() { HAS_REMOVED } else { 0 },
        );
        if let Some(entities) = entities {
            put_varint(&mut out, entities.len() as u64);
            for entity in entities {
                self.put_entity(&mut out, entity);
            }
        }
        if let Some(removed) = removed {
            put_varint(&mut out, removed.len() as u64);
            for id in removed {
                let handle = self.handles.remove(id).unwrap_or_default();
                self.sent.remove(&handle);
                put_varint(&mut out, u64::from(handle));
            }
        }
        put_varint(&mut out, repeated);
        put_bytes(&mut out, changed.as_bytes());
        self.last_rest[rest_slot(tag)] = rest
            .into_iter()
            .map(|(name, raw)| (name.to_owned(), raw.get().to_owned()))
            .collect();
        Some(out)
    }

    fn put_entity(&mut self, out: &mut Vec<u8>, entity: EntityIn<'_>) {
        let handle = match self.handles.get(entity.id) {
            Some(&handle) => handle,
            None => {
                let handle = self.next_handle;
                self.next_handle = self.next_handle.wrapping_add(1);
                self.handles.insert(entity.id.to_owned(), handle);
                self.sent.remove(&handle);
                handle
            }
        };
        let last = self.sent.get(&handle);
        let mut mask = 0;
        if last.is_none() {
            mask |= field::NEW | field::KIND;
        }
        if last.is_some_and(|l| l.kind != entity.kind) {
            mask |= field::KIND;
        }
        for i in 0..NUMBERS.len() {
            if last.is_none_or(|l| l.numbers[i] != entity.numbers[i]) {
                mask |= 1 << (field::FIRST_NUMBER + i as u32);
            }
        }
        if last.map_or(!entity.extra.is_empty(), |l| l.extra != entity.extra) {
            mask |= field::EXTRA;
        }
        put_varint(out, u64::from(handle));
        put_varint(out, u64::from(mask));
        if mask & field::NEW != 0 {
            put_bytes(out, entity.id.as_bytes());
        }
        if mask & field::KIND != 0 {
            put_bytes(out, entity.kind.as_bytes());
        }
        for (i, &q) in entity.numbers.iter().enumerate() {
            if mask & (1 << (field::FIRST_NUMBER + i as u32)) != 0 {
                put_varint(out, zigzag(q));
            }
        }
        if mask & field::EXTRA != 0 {
            let text = if entity.extra.is_empty() {
                "{}"
            } else {
                &entity.extra
            };
            put_bytes(out, text.as_bytes());
        }
        match self.sent.get_mut(&handle) {
            Some(sent) => {
                if sent.kind != entity.kind {
                    entity.kind.clone_into(&mut sent.kind);
                }
                sent.numbers = entity.numbers;
                sent.extra = entity.extra;
            }
            None => {
                self.sent.insert(
                    handle,
                    EntitySent {
                        kind: entity.kind.to_owned(),
                        numbers: entity.numbers,
                        extra: entity.extra,
                    },
                );
            }
        }
    }
}

/// A JSON envelope behind [`tag::JSON`].
pub fn json_frame(envelope: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope.len() + 1);
    out.push(tag::JSON);
    out.extend_from_slice(envelope.as_bytes());
    out
}

/// What a client's binary frame holds.
#[derive(Debug, PartialEq)]
pub enum ClientBinary<'a> {
    /// A JSON envelope, to decode as a text frame is.
    Json(&'a str),
    /// A compact `input.command`.
    Frame(ClientFrame),
}

/// Decodes a client's binary frame; the error is the protocol's `error` reply.
pub fn decode_client(frame: &[u8]) -> Result<ClientBinary<'_>, DecodeError> {
    let bad = |message: &str| DecodeError {
        code: codes::BAD_MESSAGE,
        message: message.to_owned(),
    };
    let (&tag, body) = frame
        .split_first()
        .ok_or_else(|| bad("an empty binary frame"))?;
    match tag {
        tag::JSON => std::str::from_utf8(body)
            .map(ClientBinary::Json)
            .map_err(|_| bad("the JSON behind tag 0 is not UTF-8")),
        tag::INPUT => {
            let mut reader = Reader(body);
            let truncated = || bad("input.command (binary): the frame ends early");
            let seq = reader.varint().ok_or_else(truncated)?;
            let [thrust, turn, flags] = reader.take::<3>().ok_or_else(truncated)?;
            if !reader.0.is_empty() {
                return Err(bad("input.command (binary): bytes after the end"));
            }
            Ok(ClientBinary::Frame(ClientFrame {
                seq,
                message: ClientMessage::Input(Input {
                    thrust: f64::from(thrust) / 255.0,
                    turn: f64::from((turn as i8).max(-127)) / 127.0,
                    fire_primary: flags & 1 != 0,
                    dock_request: flags & 2 != 0,
                }),
            }))
        }
        other => Err(DecodeError {
            code: codes::UNKNOWN_TYPE,
            message: format!("unknown binary message tag 0x{other:02x}"),
        }),
    }
}

/// A compact `input.command`: thrust in 255ths, turn in 127ths (both clamped to their
/// ranges), fire and dock as bits.
pub fn input_frame(seq: u64, input: &Input) -> Vec<u8> {
    let mut out = vec![tag::INPUT];
    put_varint(&mut out, seq);
    let input = input.clamped();
    out.push((input.thrust * 255.0).round() as u8);
    out.push(((input.turn * 127.0).round() as i8) as u8);
    out.push(u8::from(input.fire_primary) | u8::from(input.dock_request) << 1);
    out
}

/// Reads a connection's binary frames back into the JSON envelopes they stand for (the
/// browser client does the same in JavaScript); for tests and the load generator.
#[derive(Debug, Default)]
pub struct Decoder {
    entities: HashMap<u32, EntityState>,
    last_rest: [Rest<Value>; 2],
}

impl Decoder {
    /// The envelope (`{type, seq, ts, payload}`) a frame carries.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Value, String> {
        let (&tag, body) = frame.split_first().ok_or("an empty frame")?;
        let entities_member = match tag {
            tag::JSON => return serde_json::from_slice(body).map_err(|e| e.to_string()),
            tag::DELTA => "entity_updates",
            tag::SNAPSHOT => "entities",
            other => return Err(format!("unknown tag 0x{other:02x}")),
        };
        let mut reader = Reader(body);
        let ended = || "the frame ends early".to_owned();
        let seq = reader.varint().ok_or_else(ended)?;
        let ts = unzigzag(reader.varint().ok_or_else(ended)?);
        let tick = reader.varint().ok_or_else(ended)?;
        let [present] = reader.take::<1>().ok_or_else(ended)?;
        let mut payload = Map::new();
        payload.insert("tick".into(), Value::from(tick));
        if present & HAS_ENTITIES != 0 {
            let count = reader.varint().ok_or_else(ended)?;
            let mut list = Vec::new();
            for _ in 0..count {
                list.push(self.entity(&mut reader)?);
            }
            payload.insert(entities_member.into(), Value::Array(list));
        }
        if present & HAS_REMOVED != 0 {
            let count = reader.varint().ok_or_else(ended)?;
            let mut list = Vec::new();
            for _ in 0..count {
                let handle = handle(reader.varint().ok_or_else(ended)?)?;
                let gone = self
                    .entities
                    .remove(&handle)
                    .ok_or_else(|| format!("removal of unknown handle {handle}"))?;
                list.push(Value::from(gone.id));
            }
            payload.insert("entity_removed".into(), Value::Array(list));
        }
        let repeated = reader.varint().ok_or_else(ended)?;
        let changed = reader.bytes().ok_or_else(ended)?;
        let last = &mut self.last_rest[rest_slot(tag)];
        let mut rest: Rest<Value> = last
            .iter()
            .take(32)
            .enumerate()
            .filter(|(i, _)| repeated & (1 << i) != 0)
            .map(|(_, (name, value))| (name.clone(), value.clone()))
            .collect();
        if !changed.is_empty() {
            let changed: Rest<Value> =
                serde_json::from_slice(changed).map_err(|e| e.to_string())?;
            rest.extend(changed);
        }
        if !reader.0.is_empty() {
            return Err("bytes after the end".into());
        }
        payload.extend(rest.iter().map(|(k, v)| (k.clone(), v.clone())));
        *last = rest;
        let kind = if tag == tag::DELTA {
            "world.delta"
        } else {
            "world.snapshot"
        };
        Ok(serde_json::json!({"type": kind, "seq": seq, "ts": ts, "payload": payload}))
    }

    fn entity(&mut self, reader: &mut Reader<'_>) -> Result<Value, String> {
        let ended = || "an entity record ends early".to_owned();
        let handle = handle(reader.varint().ok_or_else(ended)?)?;
        let mask = reader.varint().ok_or_else(ended)?;
        let text = |reader: &mut Reader<'_>| -> Result<String, String> {
            let bytes = reader.bytes().ok_or_else(ended)?;
            String::from_utf8(bytes.to_vec()).map_err(|_| "text that is not UTF-8".to_owned())
        };
        let mut state = if mask & u64::from(field::NEW) != 0 {
            EntityState {
                id: text(reader)?,
                kind: String::new(),
                numbers: [0; 6],
                extra: Map::new(),
            }
        } else {
            self.entities
                .get(&handle)
                .cloned()
                .ok_or_else(|| format!("an update of unknown handle {handle}"))?
        };
        if mask & u64::from(field::KIND) != 0 {
            state.kind = text(reader)?;
        }
        for i in 0..NUMBERS.len() {
            if mask & (1 << (field::FIRST_NUMBER + i as u32)) != 0 {
                state.numbers[i] = unzigzag(reader.varint().ok_or_else(ended)?);
            }
        }
        if mask & u64::from(field::EXTRA) != 0 {
            state.extra = serde_json::from_slice(reader.bytes().ok_or_else(ended)?)
                .map_err(|e| e.to_string())?;
        }
        let json = state.to_json();
        self.entities.insert(handle, state);
        Ok(json)
    }
}

fn handle(value: u64) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("handle {value} out of range"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads a frame's body front to back; `None` when it ends early.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A number as the simulation writes it: `q / scale`, whole numbers as integers.
    fn number(q: i64, scale: i64) -> Value {
        unquantize(q, scale)
    }

    fn entity_json(id: &str, kind: &str, q: [i64; 6], extra: Option<i64>) -> Value {
        let mut e = json!({"id": id, "kind": kind});
        for (&v, (name, scale)) in q.iter().zip(NUMBERS) {
            e[name] = number(v, scale);
        }
        if let Some(bounty) = extra {
            e["bounty"] = json!(bounty);
        }
        e
    }

    /// One step of a session: entities updated (by index into a pool of ids) and removed.
    #[derive(Debug, Clone)]
    struct Step {
        snapshot: bool,
        updates: Vec<(usize, [i64; 6], Option<i64>, bool)>,
        removed: Vec<usize>,
        /// Other members: `events` (or none), and a `you_zone_context` from a few values
        /// (or none), so that members repeat, change and go away between messages.
        events: bool,
        zone: Option<u8>,
    }

    fn step() -> impl Strategy<Value = Step> {
        let numbers = [
            -2_000_000i64..2_000_000,
            -2_000_000i64..2_000_000,
            -50_000i64..50_000,
            -50_000i64..50_000,
            -7000i64..7000,
            0i64..500,
        ];
        (
            any::<bool>(),
            prop::collection::vec(
                (
                    0usize..12,
                    numbers,
                    prop::option::of(0i64..1000),
                    any::<bool>(),
                ),
                0..8,
            ),
            prop::collection::vec(0usize..12, 0..3),
            any::<bool>(),
            prop::option::of(0u8..3),
        )
            .prop_map(|(snapshot, updates, removed, events, zone)| Step {
                snapshot,
                updates,
                removed,
                events,
                zone,
            })
    }

    proptest! {
        /// Any sequence of snapshots and deltas, encoded and decoded on one connection,
        /// gives back exactly the JSON envelopes, and deltas come out smaller.
        #[test]
        fn binary_frames_carry_the_same_information_as_json(steps in prop::collection::vec(step(), 1..30)) {
            let mut encoder = Encoder::default();
            let mut decoder = Decoder::default();
            let mut known = std::collections::HashSet::new();
            for (n, step) in steps.into_iter().enumerate() {
                let kind = if step.snapshot { "world.snapshot" } else { "world.delta" };
                let member = if step.snapshot { "entities" } else { "entity_updates" };
                let mut seen = std::collections::HashSet::new();
                let updates: Vec<Value> = step
                    .updates
                    .iter()
                    .filter(|(i, ..)| seen.insert(*i))
                    .map(|&(i, q, extra, pirate)| {
                        known.insert(i);
                        entity_json(&format!("s_{i}"), if pirate { "pirate" } else { "player_ship" }, q, extra)
                    })
                    .collect();
                let removed: Vec<Value> = step
                    .removed
                    .iter()
                    .filter(|i| !seen.contains(i) && known.remove(i))
                    .map(|i| json!(format!("s_{i}")))
                    .collect();
                let mut payload = json!({"tick": 100 + n, member: updates});
                if !step.snapshot {
                    payload["entity_removed"] = json!(removed);
                }
                if step.events {
                    payload["events"] = json!([{"kind": "projectile_fired", "x": 1.5}]);
                }
                if let Some(zone) = step.zone {
                    payload["you_zone_context"] = json!({"zone_ids": [format!("z_{zone}")], "blended_risk": 0.1});
                }
                let text = payload.to_string();
                let seq = n as u64 + 1;
                let frame = encoder.encode(kind, seq, 1_700_000_000_000 + n as i64, text.as_bytes());
                prop_assert_ne!(frame[0], tag::JSON, "{} fell back to JSON", text);
                let decoded = decoder.decode(&frame).map_err(TestCaseError::fail)?;
                let expected: Value = serde_json::from_str(&super::super::envelope(
                    kind, seq, 1_700_000_000_000 + n as i64, text.as_bytes()
                )).unwrap();
                prop_assert_eq!(&decoded, &expected);
                prop_assert!(frame.len() < text.len() + 40);
            }
        }

        /// Compact inputs decode to the controls they were made from, within their steps.
        #[test]
        fn compact_inputs_round_trip(seq in 0u64..u64::MAX, thrust in -1.0f64..2.0, turn in -2.0f64..2.0, fire: bool, dock: bool) {
            let input = Input { thrust, turn, fire_primary: fire, dock_request: dock };
            let frame = input_frame(seq, &input);
            let Ok(ClientBinary::Frame(decoded)) = decode_client(&frame) else {
                return Err(TestCaseError::fail("not an input frame"));
            };
            prop_assert_eq!(decoded.seq, seq);
            let ClientMessage::Input(got) = decoded.message else {
                return Err(TestCaseError::fail("not an input"));
            };
            let want = input.clamped();
            prop_assert!((got.thrust - want.thrust).abs() <= 0.5 / 255.0 + 1e-9);
            prop_assert!((got.turn - want.turn).abs() <= 0.5 / 127.0 + 1e-9);
            prop_assert_eq!((got.fire_primary, got.dock_request), (fire, dock));
        }

        /// No byte string makes the client decoder panic.
        #[test]
        fn any_client_bytes_decode_or_error(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_client(&bytes);
        }
    }

    #[test]
    fn an_unchanged_entity_costs_its_handle_and_mask() {
        let mut encoder = Encoder::default();
        let delta = |x: i64| {
            json!({"tick": 1, "entity_updates": [entity_json("s_1", "player_ship", [x, 0, 0, 0, 0, 100], None)], "entity_removed": []})
                .to_string()
        };
        let first = encoder.encode("world.delta", 1, 0, delta(1234).as_bytes());
        let moved = encoder.encode("world.delta", 2, 0, delta(1250).as_bytes());
        // tag, seq, ts, tick, presence, count, handle, mask, x (2 bytes), removed count,
        // repeat mask, changed members
        assert_eq!(moved.len(), 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1);
        assert!(first.len() > moved.len());
    }

    #[test]
    fn payloads_the_compact_form_cannot_carry_exactly_travel_as_json() {
        let mut encoder = Encoder::default();
        for payload in [
            json!({"tick": 1, "entity_updates": [{"id": "s_1", "kind": "k", "x": 0.001, "y": 0, "vx": 0, "vy": 0, "r": 0, "hp": 1}]}),
            json!({"tick": 1, "entity_updates": [{"id": "s_1", "x": 1}]}),
            json!({"tick": 1, "entity_removed": ["never_sent"]}),
            json!({"tick": 1, "entity_updates": [entity_json("s_9", "pirate", [0; 6], None)],
                   "entity_removed": ["s_9", "s_9"]}),
            json!({"tick": "soon"}),
        ] {
            let text = payload.to_string();
            let frame = encoder.encode("world.delta", 7, 9, text.as_bytes());
            assert_eq!(frame[0], tag::JSON);
            assert_eq!(
                &frame[1..],
                super::super::envelope("world.delta", 7, 9, text.as_bytes()).as_bytes()
            );
        }
        let frame = encoder.encode("trade.result", 3, 4, br#"{"ok":true}"#);
        assert_eq!(
            &frame[1..],
            br#"{"type":"trade.result","seq":3,"ts":4,"payload":{"ok":true}}"#
        );
    }

    #[test]
    fn bad_client_frames_get_the_protocols_codes() {
        let code = |bytes: &[u8]| decode_client(bytes).unwrap_err().code;
        assert_eq!(code(&[]), codes::BAD_MESSAGE);
        assert_eq!(code(&[tag::INPUT]), codes::BAD_MESSAGE);
        assert_eq!(code(&[tag::INPUT, 1, 255, 0]), codes::BAD_MESSAGE);
        assert_eq!(code(&[tag::INPUT, 1, 255, 0, 0, 9]), codes::BAD_MESSAGE);
        assert_eq!(code(&[tag::JSON, 0xff, 0xfe]), codes::BAD_MESSAGE);
        assert_eq!(code(&[0x7f, 1, 2]), codes::UNKNOWN_TYPE);
        assert_eq!(
            decode_client(b"\0{\"type\":\"x\"}").unwrap(),
            ClientBinary::Json("{\"type\":\"x\"}")
        );
    }
}
