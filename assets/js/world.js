// What the client knows of its star system, built from world.snapshot and world.delta.
//
// Entities are drawn a little in the past (INTERPOLATION_MS), between the two updates
// around that moment, so motion is smooth at any display rate although updates arrive at
// the server's tick rate and only for what changed.

const INTERPOLATION_MS = 100;
/** An entity not updated for this long is held still until its next update. */
const STALE_MS = 150;
/** Projectiles are not entities: they are drawn from `projectile_fired` for this long. */
const PROJECTILE_MS = 1200;
/**
 * A periodic snapshot lists only the nearest entities that fit the client's budget; the
 * server sends the rest again through deltas, the nearer and the busier first, within a
 * few seconds in a crowd. Until then they are kept where they were, so the crowd does not
 * blink. One not heard of for this long is dropped: the server sends a removal only for
 * what it knows the client has, so one that left (mostly beyond the screen: the area the
 * server reports is wider) or was destroyed meanwhile is never removed otherwise.
 */
const UNLISTED_GRACE_MS = 8000;

class Track {
  constructor(id, kind) {
    this.id = id;
    this.kind = kind;
    this.hp = 0;
    /** [{t, x, y, r}], oldest first; a few are kept. */
    this.samples = [];
  }

  push(now, update) {
    const last = this.samples.at(-1);
    const x = update.x ?? last?.x ?? 0;
    const y = update.y ?? last?.y ?? 0;
    const r = update.r ?? last?.r ?? 0;
    if (last && now - last.t > STALE_MS) {
      // It was still meanwhile: move from where it stood, not from long ago.
      this.samples.push({ ...last, t: now - 50 });
    }
    this.samples.push({ t: now, x, y, r });
    if (this.samples.length > 8) this.samples.splice(0, this.samples.length - 8);
    if (update.hp !== undefined) this.hp = update.hp;
    if (update.kind !== undefined) this.kind = update.kind;
  }

  /** Where it is drawn at `renderTime`. */
  at(renderTime) {
    const s = this.samples;
    if (s.length === 0) return null;
    if (renderTime <= s[0].t) return s[0];
    for (let i = s.length - 1; i > 0; i--) {
      const a = s[i - 1];
      const b = s[i];
      if (renderTime >= a.t && renderTime <= b.t) {
        const f = b.t === a.t ? 1 : (renderTime - a.t) / (b.t - a.t);
        return { x: a.x + (b.x - a.x) * f, y: a.y + (b.y - a.y) * f, r: lerpAngle(a.r, b.r, f) };
      }
    }
    return s.at(-1);
  }
}

function lerpAngle(a, b, f) {
  let d = b - a;
  while (d > Math.PI) d -= 2 * Math.PI;
  while (d < -Math.PI) d += 2 * Math.PI;
  return a + d * f;
}

export class World {
  constructor() {
    this.systemId = null;
    this.shipId = null;
    this.tick = 0;
    this.entities = new Map();
    this.projectiles = [];
    /** world.snapshot's `you`, kept current by deltas, trade results and combat. */
    this.you = { credits: 0, hull: 0, fuel: 0, cargo: [], docked_at: null };
    this.markets = [];
    this.zones = [];
    this.zoneContext = null;
  }

  joined(payload) {
    this.systemId = payload.system_id;
    this.shipId = payload.ship_id;
    this.entities.clear();
    this.projectiles = [];
  }

  snapshot(payload, now = performance.now()) {
    this.tick = payload.tick;
    Object.assign(this.you, payload.you);
    this.markets = payload.markets ?? [];
    this.zones = payload.zones ?? [];
    const listed = new Set();
    for (const e of payload.entities ?? []) {
      listed.add(e.id);
      this.#update(e, now);
    }
    for (const [id, track] of this.entities) {
      if (!listed.has(id)) track.unlistedSince ??= now;
    }
  }

  delta(payload, now = performance.now()) {
    this.tick = payload.tick;
    for (const e of payload.entity_updates ?? []) this.#update(e, now);
    for (const id of payload.entity_removed ?? []) this.entities.delete(id);
    for (const event of payload.events ?? []) {
      if (event.kind === "projectile_fired") {
        this.projectiles.push({ ...event, born: now });
      }
    }
    if (payload.you_zone_context) this.zoneContext = payload.you_zone_context;
    if (payload.you) Object.assign(this.you, payload.you);
  }

  traded(payload) {
    if (payload.credits !== undefined) this.you.credits = payload.credits;
    if (payload.cargo) this.you.cargo = payload.cargo.filter((c) => c.qty > 0);
    if (payload.details?.hull !== undefined) this.you.hull = payload.details.hull;
  }

  combat(payload) {
    if (payload.target_id === this.shipId && payload.target_hp !== undefined) {
      this.you.hull = payload.target_hp;
    }
    const target = this.entities.get(payload.target_id);
    if (target) {
      target.hp = payload.target_hp;
      target.hitAt = performance.now();
    }
  }

  #update(e, now) {
    let track = this.entities.get(e.id);
    if (!track) {
      track = new Track(e.id, e.kind);
      this.entities.set(e.id, track);
    }
    track.push(now, e);
    track.unlistedSince = undefined;
  }

  /** Everything to draw at display time `now`. */
  view(now = performance.now()) {
    const renderTime = now - INTERPOLATION_MS;
    const ships = [];
    let own = null;
    for (const [id, track] of this.entities) {
      if (track.unlistedSince !== undefined && now - track.unlistedSince > UNLISTED_GRACE_MS) {
        this.entities.delete(id);
        continue;
      }
      const at = track.at(renderTime);
      if (!at) continue;
      const ship = { id: track.id, kind: track.kind, hp: track.hp, hit: now - (track.hitAt ?? -1e9) < 150, ...at };
      if (track.id === this.shipId) own = ship;
      else ships.push(ship);
    }
    this.projectiles = this.projectiles.filter((p) => now - p.born < PROJECTILE_MS);
    const projectiles = this.projectiles.map((p) => {
      const s = (now - p.born) / 1000;
      return { x: p.x + p.vx * s, y: p.y + p.vy * s };
    });
    return { own, ships, projectiles, zones: this.zones, stations: this.markets };
  }

  market(stationId) {
    return this.markets.find((m) => m.station_id === stationId);
  }

  held(commodityId) {
    return this.you.cargo.find((c) => c.commodity_id === commodityId)?.qty ?? 0;
  }
}
