//! The operator's HTTP answers: liveness (`/healthz`), readiness (`/readyz`) and the admin
//! API (`/admin/v1`). Not one of the game's protocols, but a wire all the same: dashboards
//! and scripts read these shapes.

use serde_json::{Value, json};

use crate::bridge::SimStatus;
use crate::journal::Entry;
use crate::metrics::Metrics;
use crate::services::accounts::AccountRecord;
use crate::services::rooms::RoomView;
use crate::services::wallet::Audit;

/// `POST /admin/v1/accounts/{name}/password`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewPassword {
    pub password: String,
}

/// `POST /admin/v1/accounts/{name}/roles`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewRoles {
    pub roles: Vec<String>,
}

/// `/healthz` when the simulation answered.
pub fn alive(status: &SimStatus) -> Value {
    json!({
        "status": "ok",
        "tick": status.tick,
        "tick_hz": status.tick_hz,
        "tick_p50_us": status.tick_p50_us,
        "tick_p99_us": status.tick_p99_us,
        "tick_max_us": status.tick_max_us,
        "overruns": status.overruns,
    })
}

/// `/healthz` when the simulation did not answer.
pub fn busy() -> Value {
    json!({"status": "busy"})
}

/// `/readyz`: overall, then each part.
pub fn readiness(sim: bool, store: bool) -> Value {
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let overall = if sim && store { "ready" } else { "not ready" };
    json!({"status": overall, "sim": word(sim), "store": word(store)})
}

/// `GET /admin/v1/overview`: the tick, the connections and queues, and the world's
/// members (`instances`, `rooms`, `players`, `nodes`, `scripts`) beside them.
pub fn overview(
    status: &SimStatus,
    world: &impl serde::Serialize,
    metrics: &Metrics,
    recent_errors: &[Entry],
) -> Value {
    let mut overview = json!({
        "server_time": chrono::Utc::now().timestamp_millis(),
        "tick": {
            "tick": status.tick,
            "tick_hz": status.tick_hz,
            "p50_us": status.tick_p50_us,
            "p99_us": status.tick_p99_us,
            "max_us": status.tick_max_us,
            "overruns": status.overruns,
        },
        "connections": metrics.connections_by_protocol(),
        "inbox_depth": metrics.inbox_depth.get(),
        "store_queue_depth": metrics.store_queue_depth.get(),
        "resident_bytes": metrics.resident_bytes(),
        "recent_errors": recent_errors,
        "slow_consumers": metrics.slow_consumer_log.recent(),
    });
    if let (Value::Object(overview), Ok(Value::Object(world))) =
        (&mut overview, serde_json::to_value(world))
    {
        overview.extend(world);
    }
    overview
}

/// An account as the admin API shows it.
pub fn account(record: &AccountRecord) -> Value {
    json!({
        "user_profile": super::raos::user_profile(&record.account),
        "roles": record.account.roles,
        "created_at": record.created_at,
        "disabled": record.disabled_at.is_some(),
        "disabled_at": record.disabled_at,
        "open_sessions": record.open_sessions,
    })
}

/// `GET /admin/v1/accounts`: a page, and how many there are in all.
pub fn accounts(records: &[AccountRecord], total: u64) -> Value {
    let list: Vec<Value> = records.iter().map(account).collect();
    json!({ "accounts": list, "total": total })
}

/// `GET /admin/v1/ledger`: the audit, and the coins held in open wagers.
pub fn ledger(audit: &Audit) -> Value {
    json!({ "holds": audit.holds(), "audit": audit })
}

/// `POST /admin/v1/rooms/{id}/end`.
pub fn room_ended(room: &RoomView) -> Value {
    json!({ "room_id": room.room_id, "game_id": room.game_id })
}
