// The binary encoding of `/game` (docs/protocols/game.md, "Binary encoding"): the same
// messages as JSON, in binary frames. world.delta and world.snapshot come compact (entity
// handles after first sight, quantized numbers, only the fields that changed); the decoder
// keeps the handle table and hands out the same envelopes the JSON encoding would.

export const SUBPROTOCOL = "ecliptic.game.binary.v1";

const TAG_JSON = 0x00;
const TAG_DELTA = 0x01;
const TAG_SNAPSHOT = 0x02;
const TAG_INPUT = 0x10;

const NEW = 1;
const KIND = 2;
const FIRST_NUMBER = 2;
const EXTRA = 1 << 8;
/** An entity's numeric members and their scales, in the order the record carries them. */
const NUMBERS = [["x", 100], ["y", 100], ["vx", 100], ["vy", 100], ["r", 1000], ["hp", 1]];
const HAS_ENTITIES = 1;
const HAS_REMOVED = 2;

const utf8 = new TextDecoder();
const toUtf8 = new TextEncoder();

/** Reads a frame front to back; throws when it ends early. */
class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.at = 0;
  }

  byte() {
    if (this.at >= this.bytes.length) throw new Error("the frame ends early");
    return this.bytes[this.at++];
  }

  /** A LEB128 varint, exact up to 2^53 (arithmetic, not 32-bit operators). */
  varint() {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      const byte = this.byte();
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
  }

  signed() {
    const v = this.varint();
    return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
  }

  text() {
    const len = this.varint();
    if (this.at + len > this.bytes.length) throw new Error("the frame ends early");
    const s = utf8.decode(this.bytes.subarray(this.at, this.at + len));
    this.at += len;
    return s;
  }
}

/** Turns one connection's binary frames back into envelopes {type, seq, ts, payload}. */
export class BinaryDecoder {
  #entities = new Map();
  /** Each compact message's other members as last received (delta, snapshot). */
  #lastRest = [{}, {}];

  decode(buffer) {
    const bytes = new Uint8Array(buffer);
    if (bytes.length === 0) throw new Error("an empty frame");
    const tag = bytes[0];
    if (tag === TAG_JSON) return JSON.parse(utf8.decode(bytes.subarray(1)));
    if (tag !== TAG_DELTA && tag !== TAG_SNAPSHOT) throw new Error(`unknown tag ${tag}`);
    const r = new Reader(bytes);
    r.at = 1;
    const seq = r.varint();
    const ts = r.signed();
    const payload = { tick: r.varint() };
    const present = r.byte();
    if (present & HAS_ENTITIES) {
      const list = [];
      for (let n = r.varint(); n > 0; n--) list.push(this.#entity(r));
      payload[tag === TAG_DELTA ? "entity_updates" : "entities"] = list;
    }
    if (present & HAS_REMOVED) {
      const list = [];
      for (let n = r.varint(); n > 0; n--) {
        const handle = r.varint();
        const gone = this.#entities.get(handle);
        if (!gone) throw new Error(`removal of unknown handle ${handle}`);
        this.#entities.delete(handle);
        list.push(gone.id);
      }
      payload.entity_removed = list;
    }
    // Members of the last message of this kind repeated unchanged (a bit each, in name
    // order), then the others as JSON.
    const slot = tag === TAG_SNAPSHOT ? 1 : 0;
    const repeated = r.varint();
    const changed = r.text();
    const rest = {};
    Object.keys(this.#lastRest[slot])
      .sort()
      .slice(0, 32)
      .forEach((name, i) => {
        if (Math.floor(repeated / 2 ** i) % 2 === 1) rest[name] = this.#lastRest[slot][name];
      });
    if (changed.length > 0) Object.assign(rest, JSON.parse(changed));
    this.#lastRest[slot] = rest;
    Object.assign(payload, rest);
    return { type: tag === TAG_DELTA ? "world.delta" : "world.snapshot", seq, ts, payload };
  }

  #entity(r) {
    const handle = r.varint();
    const mask = r.varint();
    let state;
    if (mask & NEW) {
      state = { id: r.text(), kind: "", numbers: [0, 0, 0, 0, 0, 0], extra: {} };
    } else {
      state = this.#entities.get(handle);
      if (!state) throw new Error(`an update of unknown handle ${handle}`);
    }
    if (mask & KIND) state.kind = r.text();
    for (let i = 0; i < NUMBERS.length; i++) {
      if (mask & (1 << (FIRST_NUMBER + i))) state.numbers[i] = r.signed();
    }
    if (mask & EXTRA) state.extra = JSON.parse(r.text());
    this.#entities.set(handle, state);
    const entity = { id: state.id, kind: state.kind };
    NUMBERS.forEach(([name, scale], i) => (entity[name] = state.numbers[i] / scale));
    return Object.assign(entity, state.extra);
  }
}

/** A message as a binary frame: a compact input.command, anything else as JSON behind tag 0. */
export function encodeBinary(message) {
  if (message.type === "input.command") {
    const p = message.payload;
    const clamp = (v, lo, hi) => (Number.isFinite(v) ? Math.min(Math.max(v, lo), hi) : 0);
    const bytes = [TAG_INPUT];
    for (let v = message.seq; ; v = Math.floor(v / 128)) {
      if (v < 128) {
        bytes.push(v);
        break;
      }
      bytes.push((v % 128) | 0x80);
    }
    bytes.push(Math.round(clamp(p.thrust, 0, 1) * 255));
    bytes.push(Math.round(clamp(p.turn, -1, 1) * 127) & 0xff);
    bytes.push((p.fire_primary ? 1 : 0) | (p.dock_request ? 2 : 0));
    return new Uint8Array(bytes);
  }
  const text = toUtf8.encode(JSON.stringify(message));
  const frame = new Uint8Array(text.length + 1);
  frame[0] = TAG_JSON;
  frame.set(text, 1);
  return frame;
}
