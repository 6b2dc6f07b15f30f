// A client of comms-ws.md (`/ws`): messages {type, data, id?}, topics, direct messages and
// presence. A browser cannot set headers, so the token goes in the query (`?token=`).

export class CommsConnection {
  #ws;
  #handlers = new Map();
  #nextId = 0;

  static open(url, token) {
    const comms = new CommsConnection();
    comms.#ws = new WebSocket(`${url}?token=${encodeURIComponent(token)}`);
    comms.#ws.addEventListener("message", (event) => comms.#receive(event.data));
    comms.#ws.addEventListener("close", (event) => comms.#emit("close", { code: event.code, reason: event.reason }));
    return new Promise((resolve, reject) => {
      // The welcome Status comes first on an accepted connection.
      comms.on("Status", (data) => data.status === "connected" && resolve(comms));
      comms.#ws.addEventListener("error", () => reject(new Error("cannot reach the comms server")), { once: true });
    });
  }

  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, []);
    this.#handlers.get(type).push(handler);
  }

  send(type, data) {
    this.#nextId += 1;
    const id = `web_${this.#nextId}`;
    this.#ws.send(JSON.stringify({ type, data, id, timestamp: Date.now() }));
    return id;
  }

  subscribe(topics) {
    return this.send("Subscribe", { topics });
  }

  broadcast(topic, payload) {
    return this.send("Broadcast", { topic, payload });
  }

  direct(targetUser, payload) {
    return this.send("DirectMessage", { target_user: targetUser, payload });
  }

  close() {
    this.#ws.close(1000, "bye");
  }

  #receive(text) {
    if (typeof text !== "string") return; // binary frames are not shown
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    this.#emit(message.type, message.data ?? {});
  }

  #emit(type, data) {
    for (const handler of this.#handlers.get(type) ?? []) handler(data);
  }
}
