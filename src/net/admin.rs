//! The admin endpoints under `/api/v1/admin`: what the operator console at `/console`
//! shows and does, as JSON for scripts too. Every one needs an access token with the
//! admin role, and answers in the raos format (`{success, ..., timestamp}`).

use crate::protocol::ops;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{MethodRouter, get, post};

use super::AppState;
use super::rest::{RestReply, caller};
use crate::bridge::Command;
use crate::services::DomainError;
use crate::services::accounts::Role;
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
    Ok(RestReply::ok(ops::overview(
        &status,
        &world,
        &state.metrics,
        &crate::journal::logged().recent(),
    )))
}

async fn account(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let record = state.accounts.lookup(&username).await?;
    Ok(RestReply::ok(ops::account(&record)))
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
    Ok(RestReply::ok(ops::accounts(&records, total)))
}

async fn reset_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    super::rest::JsonBody(body): super::rest::JsonBody<ops::NewPassword>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let credential = crate::services::accounts::Credential::Password(body.password);
    let record = state.accounts.set_password(&username, credential).await?;
    tracing::info!("admin: reset the password of {}", record.account.username);
    Ok(RestReply::ok(ops::account(&record)))
}

async fn set_roles(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    super::rest::JsonBody(body): super::rest::JsonBody<ops::NewRoles>,
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
    Ok(RestReply::ok(ops::account(&record)))
}

async fn disable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let record = state.accounts.set_disabled(&username, true).await?;
    tracing::info!("admin: disabled account {}", record.account.username);
    Ok(RestReply::ok(ops::account(&record)))
}

async fn enable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<RestReply, RestReply> {
    admin(&state, &headers)?;
    let record = state.accounts.set_disabled(&username, false).await?;
    tracing::info!("admin: enabled account {}", record.account.username);
    Ok(RestReply::ok(ops::account(&record)))
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
    Ok(RestReply::ok(ops::ledger(&audit)))
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
    Ok(RestReply::ok(ops::room_ended(&room)))
}
