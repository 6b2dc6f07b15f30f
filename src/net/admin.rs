//! The admin endpoints under `/api/v1/admin`: what the operator console at `/console`
//! shows and does, as JSON for scripts too. Every one needs an access token with the
//! admin role, and answers in the raos format (`{success, ..., timestamp}`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{MethodRouter, get, post};
use serde_json::json;

use super::AppState;
use super::rest::{RestReply, caller};
use crate::bridge::Command;
use crate::services::DomainError;
use crate::services::accounts::{AccountRecord, Role};
use crate::sim::admin::AdminCommand;

/// The admin routes: method, path under `/api/v1`, handler.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("GET", "/admin/overview", get(overview)),
        ("GET", "/admin/accounts", get(accounts)),
        ("GET", "/admin/accounts/{username}", get(account)),
        (
            "POST",
            "/admin/accounts/{username}/password",
            post(reset_password),
        ),
        ("POST", "/admin/accounts/{username}/roles", post(set_roles)),
        ("POST", "/admin/accounts/{username}/disable", post(disable)),
        ("POST", "/admin/accounts/{username}/enable", post(enable)),
        ("POST", "/admin/ledger/check", post(ledger_check)),
        ("POST", "/admin/rooms/{room_id}/end", post(end_room)),
    ]
}

/// The caller, if an admin.
fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), RestReply> {
    let identity = caller(state, headers)?;
    if !identity.has_role(Role::Admin) {
        return Err(DomainError::Forbidden("this needs the admin role".into()).into());
    }
    Ok(())
}

/// Everything the console's live view shows, at one moment.
async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let status = state
        .inbox
        .ask(|reply| Command::Status { reply })
        .await
        .map_err(DomainError::from)?;
    let world = state
        .inbox
        .ask(|reply| Command::to(AdminCommand::Overview { reply }))
        .await
        .map_err(DomainError::from)?;
    let m = &state.metrics;
    Ok(RestReply::ok(json!({
        "server_time": chrono::Utc::now().timestamp_millis(),
        "tick": {
            "tick": status.tick,
            "tick_hz": status.tick_hz,
            "p50_us": status.tick_p50_us,
            "p99_us": status.tick_p99_us,
            "max_us": status.tick_max_us,
            "overruns": status.overruns,
        },
        "connections": m.connections_by_protocol(),
        "inbox_depth": m.inbox_depth.get(),
        "store_queue_depth": m.store_queue_depth.get(),
        "resident_bytes": m.resident_bytes(),
        "instances": world.instances,
        "rooms": world.rooms,
        "players": world.players,
        "nodes": world.nodes,
        "scripts": world.scripts,
        "recent_errors": crate::journal::logged().recent(),
        "slow_consumers": m.slow_consumer_log.recent(),
    })))
}

fn account_json(record: &AccountRecord) -> serde_json::Value {
    json!({
        "user_profile": crate::protocol::raos::user_profile(&record.account),
        "roles": record.account.roles,
        "created_at": record.created_at,
        "disabled": record.disabled_at.is_some(),
        "disabled_at": record.disabled_at,
        "open_sessions": record.open_sessions,
    })
}

async fn account(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let record = state.accounts.lookup(&username).await?;
    Ok(RestReply::ok(account_json(&record)))
}

#[derive(serde::Deserialize)]
struct Page {
    offset: Option<u64>,
    limit: Option<u64>,
}

/// Accounts in name order, 100 at a time by default (`?offset=&limit=`, limit at most
/// 1000).
async fn accounts(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(page): axum::extract::Query<Page>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let (records, total) = state.accounts.list(page.offset.unwrap_or(0), limit).await?;
    let list: Vec<_> = records.iter().map(account_json).collect();
    Ok(RestReply::ok(json!({ "accounts": list, "total": total })))
}

#[derive(serde::Deserialize)]
struct NewPassword {
    password: String,
}

async fn reset_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    super::rest::JsonBody(body): super::rest::JsonBody<NewPassword>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let credential = crate::services::accounts::Credential::Password(body.password);
    let record = state.accounts.set_password(&username, credential).await?;
    tracing::info!("admin: reset the password of {}", record.account.username);
    Ok(RestReply::ok(account_json(&record)))
}

#[derive(serde::Deserialize)]
struct NewRoles {
    roles: Vec<String>,
}

async fn set_roles(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    super::rest::JsonBody(body): super::rest::JsonBody<NewRoles>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let roles = body
        .roles
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                DomainError::InvalidInput(format!(
                    "unknown role {r:?}: roles are player, developer and admin"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let record = state.accounts.set_roles(&username, roles).await?;
    let names: Vec<_> = record.account.roles.iter().map(|r| r.as_str()).collect();
    tracing::info!(
        "admin: set the roles of {} to {}",
        record.account.username,
        names.join(",")
    );
    Ok(RestReply::ok(account_json(&record)))
}

async fn disable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let record = state.accounts.set_disabled(&username, true).await?;
    tracing::info!("admin: disabled account {}", record.account.username);
    Ok(RestReply::ok(account_json(&record)))
}

async fn enable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let record = state.accounts.set_disabled(&username, false).await?;
    tracing::info!("admin: enabled account {}", record.account.username);
    Ok(RestReply::ok(account_json(&record)))
}

async fn ledger_check(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let audit = state
        .store
        .read(crate::services::wallet::audit)
        .await
        .map_err(DomainError::from)?;
    Ok(RestReply::ok(json!({
        "holds": audit.holds(),
        "audit": audit,
    })))
}

async fn end_room(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room_id): Path<String>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let room = state
        .inbox
        .ask(|reply| Command::to(AdminCommand::EndRoom { room_id, reply }))
        .await
        .map_err(DomainError::from)??;
    tracing::info!("admin: ended room {}", room.room_id);
    Ok(RestReply::ok(
        json!({ "room_id": room.room_id, "game_id": room.game_id }),
    ))
}
