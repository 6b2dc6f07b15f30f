// The game page: log in or register over REST, join a star system (or a room) on /game,
// fly and trade, and chat on /ws. Everything it does goes through the public protocols.

import { login, register, socketUrl } from "./api.js";
import { GameConnection } from "./game-protocol.js";
import { CommsConnection } from "./comms.js";
import { World } from "./world.js";
import { Renderer } from "./render.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** Frame times and the game's encoding, for whoever wants to know (the browser tests). */
export const stats = { frames: [], shipsOnScreen: 0, ownShipAt: null, encoding: null };
window.eclipticStats = stats;

let grant = null;

// ---- Signing in -------------------------------------------------------------------

$("account-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(login);
});
$("register").addEventListener("click", () => signIn(register));

async function signIn(how) {
  $("account-error").textContent = "";
  try {
    grant = await how($("username").value.trim(), $("password").value);
  } catch (e) {
    $("account-error").textContent = e.message;
    return;
  }
  $("who").textContent = grant.user_profile?.username ?? $("username").value;
  $("account-form").hidden = true;
  $("join-form").hidden = false;
  const target = params.get("room") ?? params.get("session") ?? params.get("system");
  if (target) {
    $("room").value = params.get("system") ? "" : target;
    if (params.get("system")) $("system").value = target;
  }
}

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  play($("room").value.trim() || $("system").value);
});

// ---- Playing ----------------------------------------------------------------------

async function play(systemId) {
  $("join-error").textContent = "";
  const world = new World();
  let game;
  try {
    game = await GameConnection.open(socketUrl("/game"));
    stats.encoding = game.encoding;
    await game.login(grant.access_token);
    const joined = game.join(systemId);
    // The snapshot follows session.joined at once: listen before it can arrive.
    game.on("session.joined", (p) => world.joined(p));
    game.on("world.snapshot", (p) => world.snapshot(p));
    game.on("world.delta", (p) => world.delta(p));
    await joined;
  } catch (e) {
    $("join-error").textContent = e.code ? `${e.code}: ${e.message}` : e.message;
    game?.close();
    return;
  }
  $("welcome").hidden = true;
  $("play").hidden = false;
  game.on("trade.result", (p) => {
    world.traded(p);
    showTrade(p.details);
  });
  game.on("error", (p) => {
    $("trade-result").className = "error";
    $("trade-result").textContent = `${p.code}: ${p.message}`;
    log(`error ${p.code}: ${p.message}`, "error");
  });
  game.on("combat.event", (p) => {
    world.combat(p);
    combatLog(world, p);
  });
  game.on("close", ({ code, reason }) => log(`disconnected (${code}${reason ? ` ${reason}` : ""})`, "error"));
  controls(game, world);
  const renderer = new Renderer($("view"));
  const frame = (now) => {
    const view = world.view(now);
    renderer.draw(view);
    countFrame(now, view, renderer);
    hud(world);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  market(game, world);
  chat(world.systemId ?? systemId).catch((e) => log(`chat unavailable: ${e.message}`, "error"));
}

function countFrame(now, view, renderer) {
  stats.frames.push(now);
  if (stats.frames.length > 600) stats.frames.splice(0, stats.frames.length - 600);
  const { width, height } = renderer.canvas;
  const ratio = window.devicePixelRatio || 1;
  const halfW = width / ratio / 2;
  const halfH = height / ratio / 2;
  const c = renderer.centre;
  stats.shipsOnScreen = view.ships.filter((s) => Math.abs(s.x - c.x) <= halfW && Math.abs(s.y - c.y) <= halfH).length;
  stats.ownShipAt = view.own ? { x: view.own.x, y: view.own.y } : null;
}

/** Keyboard and touch: thrust, turn, fire, dock. Sent when they change, and twice a second. */
function controls(game, world) {
  const held = new Set();
  const keys = {
    KeyW: "thrust", ArrowUp: "thrust", KeyA: "left", ArrowLeft: "left", KeyD: "right",
    ArrowRight: "right", Space: "fire", KeyE: "dock",
  };
  let last = "";
  const send = (force) => {
    const input = {
      thrust: held.has("thrust") ? 1 : 0,
      turn: (held.has("right") ? 1 : 0) - (held.has("left") ? 1 : 0),
      fire: held.has("fire"),
      dock: held.has("dock"),
    };
    const key = JSON.stringify(input);
    if (force || key !== last) game.input(input);
    last = key;
  };
  const typing = (event) => event.target instanceof HTMLInputElement;
  addEventListener("keydown", (event) => {
    const control = keys[event.code];
    if (!control || typing(event)) return;
    event.preventDefault();
    held.add(control);
    send(false);
  });
  addEventListener("keyup", (event) => {
    const control = keys[event.code];
    if (!control) return;
    held.delete(control);
    send(false);
  });
  for (const button of document.querySelectorAll("#touch button")) {
    const control = button.dataset.control;
    button.addEventListener("pointerdown", () => { held.add(control); send(false); });
    for (const end of ["pointerup", "pointerleave", "pointercancel"]) {
      button.addEventListener(end, () => { held.delete(control); send(false); });
    }
  }
  setInterval(() => held.size && send(true), 500);
  void world;
}

// ---- HUD and market ---------------------------------------------------------------

function hud(world) {
  const you = world.you;
  setText("hud-credits", you.credits);
  setText("hud-hull", you.hull);
  setText("hud-fuel", `${Math.round(you.fuel)}%`);
  const cargo = you.cargo.filter((c) => c.qty > 0);
  setText("hud-cargo", cargo.length ? cargo.map((c) => `${c.commodity_id} ${c.qty}`).join(", ") : "empty");
  setText("hud-docked", you.docked_at ?? "no");
  const z = world.zoneContext;
  setText(
    "hud-zone",
    z && z.zone_ids.length
      ? `${z.zone_ids.join(", ")} · risk ${pct(z.blended_risk)} · security ${pct(z.blended_security)} · ×${z.blended_profit_multiplier.toFixed(2)}`
      : "open space",
  );
  const docked = you.docked_at;
  $("market").hidden = !docked;
  if (docked) renderMarket(world, docked);
}

const pct = (v) => `${Math.round(v * 100)}%`;

function setText(id, value) {
  const el = $(id);
  const text = String(value);
  if (el.textContent !== text) el.textContent = text;
}

let marketKey = "";

/** The docked station's prices (as of the last snapshot) and the hold; redrawn on change. */
function renderMarket(world, stationId) {
  const market = world.market(stationId);
  const key = JSON.stringify([stationId, market?.prices, world.you.cargo]);
  if (key === marketKey) return;
  marketKey = key;
  $("market-title").textContent = `Market · ${market?.name ?? stationId}`;
  const rows = (market?.prices ?? []).map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.commodity = p.commodity_id;
    for (const text of [p.commodity_id, p.buy, p.sell, p.stock ?? "", world.held(p.commodity_id)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const actions = document.createElement("td");
    for (const side of ["buy", "sell"]) {
      const button = document.createElement("button");
      button.textContent = side === "buy" ? "Buy" : "Sell";
      button.dataset.side = side;
      actions.append(button);
    }
    tr.append(actions);
    return tr;
  });
  $("market-rows").replaceChildren(...rows);
}

function market(game, world) {
  $("market-rows").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const commodity = button.closest("tr").dataset.commodity;
    const quantity = Number($("trade-qty").value);
    const station = world.you.docked_at;
    if (button.dataset.side === "buy") game.buy(station, commodity, quantity);
    else game.sell(station, commodity, quantity);
  });
  $("repair").addEventListener("click", () => game.repair(world.you.docked_at));
}

function showTrade(details) {
  const el = $("trade-result");
  el.className = "ok";
  if (details.repaired_hp !== undefined) {
    el.textContent = `Repaired ${details.repaired_hp} hp for ${details.cost} credits; hull ${details.hull}`;
  } else {
    el.textContent = `${details.quantity} ${details.commodity_id} at ${details.unit_price} = ${details.total} credits`;
  }
  log(el.textContent);
}

function combatLog(world, p) {
  const name = (id) => (id === world.shipId ? "you" : id);
  if (p.kind === "hit") log(`${name(p.source_id)} hit ${name(p.target_id)} for ${p.damage} (hull ${p.target_hp})`);
  if (p.kind === "destroyed") log(`${name(p.source_id)} destroyed ${name(p.target_id)}`, "error");
  if (p.kind === "respawned") log(`${name(p.target_id)} respawned`);
  if (p.target_id === world.shipId) {
    if (p.kind === "destroyed") $("destroyed").hidden = false;
    if (p.kind === "respawned") $("destroyed").hidden = true;
  }
}

function log(text, kind = "") {
  const line = document.createElement("div");
  line.className = kind;
  line.textContent = text;
  $("log").append(line);
  while ($("log").childElementCount > 50) $("log").firstElementChild.remove();
  $("log").scrollTop = $("log").scrollHeight;
}

// ---- Chat (comms-ws.md) -----------------------------------------------------------

async function chat(systemId) {
  const comms = await CommsConnection.open(socketUrl("/ws"), grant.access_token);
  const channel = `chat.${systemId}`;
  const me = (grant.user_profile?.username ?? "").toLowerCase();
  const online = new Set();
  $("chat-channel").textContent = `#${systemId}`;
  const showOnline = () => ($("chat-online").textContent = `online: ${[...online].sort().join(", ")}`);
  const say = (text, kind = "") => {
    const line = document.createElement("div");
    line.className = kind;
    line.textContent = text;
    $("chat-messages").append(line);
    $("chat-messages").scrollTop = $("chat-messages").scrollHeight;
  };
  comms.on("Broadcast", (d) => {
    // The server names the publisher; a payload's own `sender` is only a claim.
    const from = d.metadata?.from_user ?? d.payload?.sender ?? "?";
    const text = d.payload?.message ?? JSON.stringify(d.payload);
    say(d.topic === channel ? `${from}: ${text}` : `[${d.topic}] ${text}`, d.topic === channel ? "" : "notice");
  });
  comms.on("DirectMessage", (d) => say(`${d.from_user} → you: ${d.payload?.message ?? JSON.stringify(d.payload)}`, "dm"));
  comms.on("Notification", (d) => say(`[${d.level}] ${d.title}: ${d.message}`, "notice"));
  comms.on("Presence", (d) => {
    if (d.status === "online") online.add(d.user_id);
    else online.delete(d.user_id);
    showOnline();
  });
  comms.on("Error", (d) => say(`error ${d.code}: ${d.message}`, "error"));
  comms.on("close", ({ code }) => say(`chat disconnected (${code})`, "error"));
  comms.subscribe([channel, "presence", "notifications", "system"]);
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("chat-input").value.trim();
    $("chat-input").value = "";
    if (!text) return;
    const whisper = text.match(/^\/w\s+(\S+)\s+(.+)$/);
    if (whisper) {
      comms.direct(whisper[1], { message: whisper[2], sender: me });
      say(`you → ${whisper[1]}: ${whisper[2]}`, "dm");
    } else {
      comms.broadcast(channel, { message: text, sender: grant.user_profile?.username ?? me });
    }
  });
}
