// The operator console: polls GET /api/v1/admin/overview once a second and draws it, and
// calls the other admin endpoints for its actions. The endpoints are documented in
// docs/admin-api.md; scripts use the same ones.

import { api, login } from "./api.js";

const $ = (id) => document.getElementById(id);
/** Two minutes of tick samples, one a second. */
const HISTORY = 120;

let token = null;
const history = [];

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    const grant = await login($("username").value.trim(), $("password").value);
    if (!grant.roles?.includes("admin")) {
      $("signin-error").textContent = "Refused: this console is for accounts with the admin role.";
      return;
    }
    token = grant.access_token;
    $("signed-in").textContent = `signed in as ${grant.user_profile?.username ?? ""}`;
  } catch (e) {
    $("signin-error").textContent = e.message;
    return;
  }
  $("signin").hidden = true;
  $("console").hidden = false;
  refresh();
  setInterval(refresh, 1000);
});

async function refresh() {
  let o;
  try {
    o = await api("GET", "/admin/overview", { token });
  } catch (e) {
    $("live").classList.add("stale");
    $("live").title = e.message;
    return;
  }
  $("live").classList.remove("stale");
  history.push(o.tick);
  if (history.length > HISTORY) history.shift();
  $("tick-now").textContent = `#${o.tick.tick} at ${o.tick.tick_hz} Hz`;
  $("tick-numbers").textContent = `p50 ${o.tick.p50_us} µs · p99 ${o.tick.p99_us} µs · max ${o.tick.max_us} µs · overruns ${o.tick.overruns}`;
  chart();
  list("server", {
    "inbox depth": o.inbox_depth,
    "store queue": o.store_queue_depth,
    memory: o.resident_bytes == null ? "n/a" : `${(o.resident_bytes / 1048576).toFixed(1)} MiB`,
  });
  list("connections", Object.keys(o.connections).length ? o.connections : { none: 0 });
  rows("instances", o.instances, (i) => [i.instance_id, i.system_id, i.players, i.ships]);
  rows("rooms", o.rooms, (r) => [r.room_id, r.game_id, r.status, r.players.join(", "), endButton(r.room_id)]);
  rows("players", o.players, (p) => [p.username, p.instance_id, p.credits, p.hull, p.docked ? "yes" : "no"]);
  entries("errors", o.recent_errors);
  entries("slow", o.slow_consumers);
}

/** The three percentiles on a log scale (100 µs to the largest seen), so a slow start-up
 * tick does not flatten the rest. */
function chart() {
  const canvas = $("tick-chart");
  const ctx = canvas.getContext("2d");
  canvas.width = canvas.clientWidth;
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const low = Math.log10(100);
  const high = Math.log10(Math.max(10_000, ...history.map((t) => t.max_us)) * 1.2);
  const yOf = (us) => height - ((Math.log10(Math.max(us, 100)) - low) / (high - low)) * height;
  ctx.fillStyle = "#7f8ca3";
  ctx.strokeStyle = "#172238";
  ctx.lineWidth = 1;
  for (let decade = 100; decade <= 10 ** high; decade *= 10) {
    const y = yOf(decade);
    ctx.beginPath();
    ctx.moveTo(0, y);
    ctx.lineTo(width, y);
    ctx.stroke();
    ctx.fillText(decade >= 1000 ? `${decade / 1000} ms` : `${decade} µs`, 4, y - 3);
  }
  const series = [["p50_us", "#9be37a"], ["p99_us", "#f0c94a"], ["max_us", "#ff7b6b"]];
  for (const [field, colour] of series) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    history.forEach((t, i) => {
      const x = width - (history.length - 1 - i) * (width / (HISTORY - 1));
      if (i === 0) ctx.moveTo(x, yOf(t[field]));
      else ctx.lineTo(x, yOf(t[field]));
    });
    ctx.stroke();
  }
}

function list(id, values) {
  $(id).replaceChildren(
    ...Object.entries(values).flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}

function rows(id, items, cells) {
  $(id).replaceChildren(
    ...items.map((item) => {
      const tr = document.createElement("tr");
      for (const cell of cells(item)) {
        const td = document.createElement("td");
        if (cell instanceof Node) td.append(cell);
        else td.textContent = cell;
        tr.append(td);
      }
      return tr;
    }),
  );
}

function entries(id, items) {
  $(id).replaceChildren(
    ...items.slice(0, 30).map((e) => {
      const li = document.createElement("li");
      li.textContent = `${new Date(e.at).toLocaleTimeString()} ${e.level} ${e.message}`;
      return li;
    }),
  );
}

function endButton(roomId) {
  const button = document.createElement("button");
  button.textContent = "End";
  button.addEventListener("click", async () => {
    if (!confirm(`End room ${roomId} for everyone in it?`)) return;
    try {
      await api("POST", `/admin/rooms/${encodeURIComponent(roomId)}/end`, { token });
    } catch (e) {
      alert(e.message);
    }
  });
  return button;
}

$("notify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { level: $("notify-level").value, title: $("notify-title").value, message: $("notify-message").value };
  try {
    const answer = await api("POST", "/notifications", { token, body });
    $("notify-result").textContent = `Sent to ${answer.recipients} subscriber(s).`;
  } catch (e) {
    $("notify-result").textContent = e.message;
  }
});

let account = null;

$("account-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await showAccount(() => api("GET", `/admin/accounts/${encodeURIComponent($("account-name").value.trim())}`, { token }));
});

$("account-toggle").addEventListener("click", async () => {
  const action = account.disabled ? "enable" : "disable";
  const name = encodeURIComponent(account.user_profile.username);
  await showAccount(() => api("POST", `/admin/accounts/${name}/${action}`, { token }));
  $("account-result").textContent = `${action}d ${account.user_profile.username}`;
});

async function showAccount(fetchIt) {
  $("account-result").textContent = "";
  try {
    account = await fetchIt();
  } catch (e) {
    account = null;
    $("account").replaceChildren();
    $("account-toggle").hidden = true;
    $("account-result").textContent = e.message;
    return;
  }
  list("account", {
    username: account.user_profile.username,
    "user id": account.user_profile.user_id ?? account.user_profile.id ?? "",
    roles: account.roles.join(", "),
    created: new Date(account.created_at * 1000).toISOString(),
    status: account.disabled ? "disabled" : "active",
    "open sessions": account.open_sessions,
  });
  $("account-toggle").hidden = false;
  $("account-toggle").textContent = account.disabled ? "Enable account" : "Disable account";
}

$("ledger-check").addEventListener("click", async () => {
  try {
    const answer = await api("POST", "/admin/ledger/check", { token });
    const a = answer.audit;
    $("ledger-result").textContent = answer.holds
      ? `The ledger balances: ${a.moves} moves, ${a.total_minted} coins minted, users ${a.users}, pots ${a.pots}.`
      : `The ledger does not balance: ${a.violations.join("; ")}`;
  } catch (e) {
    $("ledger-result").textContent = e.message;
  }
});
