// A client of realtime-game.md (`/game`): the envelope {type, seq, ts, payload}, the
// connection flow auth.login → auth.ok → session.join_system → session.joined, and the
// messages of play. Every server message is handed to `on(type, handler)` listeners.
// It offers the binary encoding (game-binary.js) and speaks it when the server selects it;
// otherwise JSON text.

import { BinaryDecoder, SUBPROTOCOL, encodeBinary } from "./game-binary.js";

export class GameConnection {
  #ws;
  #seq = 0;
  #handlers = new Map();
  /** Set when the server chose the binary encoding. */
  #decoder = null;

  /** Opens the socket; resolves once it is open. */
  static open(url) {
    const game = new GameConnection();
    game.#ws = new WebSocket(url, [SUBPROTOCOL]);
    game.#ws.binaryType = "arraybuffer";
    game.#ws.addEventListener("message", (event) => game.#receive(event.data));
    game.#ws.addEventListener("close", (event) => game.#emit("close", { code: event.code, reason: event.reason }));
    return new Promise((resolve, reject) => {
      game.#ws.addEventListener(
        "open",
        () => {
          if (game.#ws.protocol === SUBPROTOCOL) game.#decoder = new BinaryDecoder();
          resolve(game);
        },
        { once: true },
      );
      game.#ws.addEventListener("error", () => reject(new Error("cannot reach the game server")), { once: true });
    });
  }

  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, []);
    this.#handlers.get(type).push(handler);
  }

  /** Sends one message; returns its seq. */
  send(type, payload) {
    this.#seq += 1;
    const message = { type, seq: this.#seq, ts: Date.now(), payload };
    this.#ws.send(this.#decoder ? encodeBinary(message) : JSON.stringify(message));
    return this.#seq;
  }

  /** auth.login; resolves with auth.ok's payload, rejects with auth.error's. */
  login(token) {
    const answer = this.#next(["auth.ok", "auth.error"]);
    this.send("auth.login", { token, protocol_version: 1 });
    return answer.then(({ type, payload }) => {
      if (type === "auth.error") throw Object.assign(new Error(payload.message), { code: payload.code });
      return payload;
    });
  }

  /** session.join_system (a system id, or a room's or launched session's id). */
  join(systemId) {
    const answer = this.#next(["session.joined", "error"]);
    this.send("session.join_system", { system_id: systemId });
    return answer.then(({ type, payload }) => {
      if (type === "error") throw Object.assign(new Error(payload.message), { code: payload.code });
      return payload;
    });
  }

  input({ thrust, turn, fire, dock }) {
    this.send("input.command", { thrust, turn, fire_primary: fire, dock_request: dock });
  }

  buy(stationId, commodityId, quantity) {
    this.send("trade.buy", { station_id: stationId, commodity_id: commodityId, quantity });
  }

  sell(stationId, commodityId, quantity) {
    this.send("trade.sell", { station_id: stationId, commodity_id: commodityId, quantity });
  }

  repair(stationId) {
    this.send("ship.repair_request", { station_id: stationId });
  }

  close() {
    this.#ws.close(1000, "bye");
  }

  /** Which encoding the server speaks to this client: "binary" or "json". */
  get encoding() {
    return this.#decoder ? "binary" : "json";
  }

  #receive(data) {
    let message;
    try {
      message = typeof data === "string" ? JSON.parse(data) : this.#decoder.decode(data);
    } catch {
      return; // not this protocol
    }
    this.#emit(message.type, message.payload ?? {}, message);
  }

  #emit(type, payload, message) {
    for (const handler of this.#handlers.get(type) ?? []) handler(payload, message);
    for (const handler of this.#handlers.get("*") ?? []) handler(payload, message ?? { type });
  }

  /** The next message of one of `types`. */
  #next(types) {
    return new Promise((resolve, reject) => {
      const seen = (payload, message) => {
        if (!waiting) return;
        if (message.type === "close") {
          waiting = false;
          reject(new Error(`connection closed (${payload.code} ${payload.reason})`));
        } else if (types.includes(message.type)) {
          waiting = false;
          resolve({ type: message.type, payload });
        }
      };
      let waiting = true;
      this.on("*", seen);
    });
  }
}
