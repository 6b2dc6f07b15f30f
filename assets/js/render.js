// Draws a World's view on a canvas, centred on the player's ship: zones coloured by risk
// (with their names), stations, other ships, projectiles, and the own ship on top.

export const OWN_SHIP_COLOUR = "#4fd1ff";
const PLAYER_COLOUR = "#9be37a";
const PIRATE_COLOUR = "#ff6b5b";
const STATION_COLOUR = "#f0c94a";
const HIT_COLOUR = "#ffffff";

/** Risk 0-100 → a colour from green (safe) through amber to red. */
function riskColour(risk, alpha) {
  const hue = 120 - Math.min(Math.max(risk, 0), 100) * 1.2;
  return `hsla(${hue}, 80%, 50%, ${alpha})`;
}

export class Renderer {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.centre = { x: 0, y: 0 };
  }

  /** Matches the canvas to its displayed size (and the screen's pixel density). */
  #fit() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(this.canvas.clientWidth * ratio);
    const height = Math.round(this.canvas.clientHeight * ratio);
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    return ratio;
  }

  draw(view) {
    const ratio = this.#fit();
    const { ctx, canvas } = this;
    if (view.own) this.centre = view.own;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#05070d";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    // World units are pixels at ratio 1; the own ship is at the centre.
    ctx.setTransform(ratio, 0, 0, ratio, canvas.width / 2 - this.centre.x * ratio, canvas.height / 2 - this.centre.y * ratio);
    this.#grid(ratio);
    for (const zone of view.zones) this.#zone(zone);
    for (const station of view.stations) this.#station(station);
    ctx.fillStyle = "#ffe9a8";
    for (const p of view.projectiles) ctx.fillRect(p.x - 2, p.y - 2, 4, 4);
    // One path per colour: a crowd costs a few fills, not one per ship.
    const byColour = { [PLAYER_COLOUR]: [], [PIRATE_COLOUR]: [], [HIT_COLOUR]: [] };
    for (const ship of view.ships) {
      byColour[ship.hit ? HIT_COLOUR : ship.kind === "pirate" ? PIRATE_COLOUR : PLAYER_COLOUR].push(ship);
    }
    for (const [colour, ships] of Object.entries(byColour)) this.#ships(ships, colour, 12);
    if (view.own) this.#ships([view.own], view.own.hit ? HIT_COLOUR : OWN_SHIP_COLOUR, 14);
  }

  #grid(ratio) {
    const { ctx, canvas } = this;
    const step = 200;
    const halfW = canvas.width / ratio / 2;
    const halfH = canvas.height / ratio / 2;
    const x0 = Math.floor((this.centre.x - halfW) / step) * step;
    const y0 = Math.floor((this.centre.y - halfH) / step) * step;
    ctx.strokeStyle = "#111a2b";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let x = x0; x < this.centre.x + halfW; x += step) {
      ctx.moveTo(x, this.centre.y - halfH);
      ctx.lineTo(x, this.centre.y + halfH);
    }
    for (let y = y0; y < this.centre.y + halfH; y += step) {
      ctx.moveTo(this.centre.x - halfW, y);
      ctx.lineTo(this.centre.x + halfW, y);
    }
    ctx.stroke();
  }

  #zone(zone) {
    const { ctx } = this;
    ctx.beginPath();
    ctx.arc(zone.center.x, zone.center.y, zone.radius, 0, Math.PI * 2);
    ctx.fillStyle = riskColour(zone.risk_level, 0.07);
    ctx.fill();
    ctx.strokeStyle = riskColour(zone.risk_level, 0.5);
    ctx.lineWidth = 2;
    ctx.stroke();
    ctx.fillStyle = riskColour(zone.risk_level, 0.8);
    ctx.font = "14px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(`${zone.zone_id} · risk ${zone.risk_level}`, zone.center.x, zone.center.y - zone.radius + 20);
  }

  #station(station) {
    if (station.x === undefined) return;
    const { ctx } = this;
    ctx.save();
    ctx.translate(station.x, station.y);
    ctx.strokeStyle = STATION_COLOUR;
    ctx.lineWidth = 3;
    ctx.strokeRect(-18, -18, 36, 36);
    ctx.beginPath();
    ctx.arc(0, 0, 160, 0, Math.PI * 2); // the docking radius
    ctx.setLineDash([6, 10]);
    ctx.lineWidth = 1;
    ctx.stroke();
    ctx.restore();
    ctx.fillStyle = STATION_COLOUR;
    ctx.font = "13px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(station.name ?? station.station_id, station.x, station.y + 36);
  }

  /** Ships as arrowheads pointing along their heading, all in one path. */
  #ships(ships, colour, size) {
    if (ships.length === 0) return;
    const { ctx } = this;
    // The outline in the ship's frame: nose, right wing, notch, left wing.
    const outline = [
      [size, 0],
      [-size * 0.7, size * 0.6],
      [-size * 0.4, 0],
      [-size * 0.7, -size * 0.6],
    ];
    ctx.beginPath();
    for (const ship of ships) {
      const cos = Math.cos(ship.r);
      const sin = Math.sin(ship.r);
      for (let i = 0; i < outline.length; i++) {
        const [u, v] = outline[i];
        const x = ship.x + u * cos - v * sin;
        const y = ship.y + u * sin + v * cos;
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      }
      ctx.closePath();
    }
    ctx.fillStyle = colour;
    ctx.fill();
  }
}
