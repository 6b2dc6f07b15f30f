//! raos-integration.md: every action, performed once for both transports. The WebSocket
//! (`GET /raos`) sends one action per message and gets one response per request (echoing
//! `request_id`), plus the events it subscribed to; REST routes under `/api/v1` turn each
//! call into the same action (see `rest.rs`).
//!
//! Projects, assets and content are store-backed services used from here directly (like
//! accounts); games, launches and the event bus are the simulation's, reached through the
//! inbox.
//!
//! [`perform`] routes each action to the file of its group (`identity`, `projects`,
//! `games`, `player`, `content`, `events`); `socket` is the WebSocket transport, and
//! `rest.rs` beside this directory the REST one.

mod content;
mod events;
mod games;
mod identity;
mod player;
mod projects;
mod socket;

pub use socket::upgrade;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use uuid::Uuid;

use super::listener::PeerAddr;
use super::ws::{self, WsOut};
use super::{AppState, RateBucket};
use crate::bridge::{Command, ConnId, Link, Outbound, next_conn_id};
use crate::protocol::raos::{self, Action, ErrorCode, Outgoing, Request, answers};
use crate::services::accounts::{Credential, Identity, Role, Scope};
use crate::services::progress::{self, Board};
use crate::services::studio::{self, AssetRecord, ContentUpdate};
use crate::services::{DomainError, assets};
use crate::sim::events::{EVENT_TYPES, Event, EventsCommand};
use crate::sim::lobby::{LobbyCaller, LobbyOp, LobbyReply, LobbyRequest};

/// Most lines a leaderboard or content list returns.
const LIST_LIMIT: usize = 100;

/// Who and where an action comes from.
pub struct Context<'a> {
    pub state: &'a AppState,
    pub peer: Option<SocketAddr>,
    /// `http(s)://host` as the client reached us, for asset and download URLs.
    pub http_base: String,
    /// `ws(s)://host`, for stream URLs.
    pub ws_base: String,
    /// The WebSocket connection, for event subscriptions (REST has none).
    pub events: Option<(ConnId, Link<Outgoing>)>,
}

impl<'a> Context<'a> {
    pub fn new(state: &'a AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> Self {
        Self {
            state,
            peer,
            http_base: super::public_base(state, headers, false),
            ws_base: super::public_base(state, headers, true),
            events: None,
        }
    }
}

/// Performs one action: the fields of its success response, or the error.
pub async fn perform(
    ctx: &Context<'_>,
    auth_token: Option<&str>,
    action: Action,
) -> Result<Value, DomainError> {
    let caller = if action.needs_auth() {
        let token = auth_token.ok_or(DomainError::InvalidToken)?;
        Some(ctx.state.accounts.verify(token)?)
    } else {
        None
    };
    match action {
        Action::Authenticate { .. } | Action::RefreshToken { .. } | Action::Logout { .. } => {
            identity::perform(ctx, auth_token, action).await
        }
        Action::CreateGameProject { .. }
        | Action::LoadGameProject { .. }
        | Action::SaveGameProject { .. }
        | Action::ListGameProjects { .. }
        | Action::SyncAssets { .. }
        | Action::AddAsset { .. }
        | Action::UploadBinaryAsset { .. }
        | Action::AnalyzeAsset { .. } => projects::perform(ctx, caller, action).await,
        Action::ListGames { .. }
        | Action::LaunchGame { .. }
        | Action::DownloadGame { .. }
        | Action::StopGame { .. } => games::perform(ctx, caller, action).await,
        Action::GetPlayerProfile { .. }
        | Action::UpdatePlayerProfile { .. }
        | Action::GetAchievements { .. }
        | Action::GetLeaderboard { .. }
        | Action::AddFriend { .. }
        | Action::RemoveFriend { .. } => player::perform(ctx, caller, action).await,
        Action::ListContent { .. }
        | Action::FetchContent { .. }
        | Action::CreateContent { .. }
        | Action::UpdateContent { .. }
        | Action::DeleteContent { .. } => content::perform(ctx, caller, action).await,
        Action::SubscribeEvents { .. } => events::perform(ctx, caller, action).await,
    }
}

/// An action handed to a group that does not perform it: a bug in the router above.
/// (Never formats the action: an `authenticate` carries a password.)
fn misrouted(_action: &Action) -> DomainError {
    DomainError::Internal("an action reached the wrong handler".into())
}

/// `password` or `password_hash`, exactly one.
pub fn credential(
    password: Option<String>,
    password_hash: Option<String>,
) -> Result<Credential, DomainError> {
    match (password, password_hash) {
        (Some(p), None) => Ok(Credential::Password(p)),
        (None, Some(h)) => Ok(Credential::PasswordHash(h)),
        (Some(_), Some(_)) => Err(DomainError::InvalidInput(
            "send either password or password_hash, not both".into(),
        )),
        (None, None) => Err(DomainError::InvalidInput(
            "password or password_hash is required".into(),
        )),
    }
}

fn parse_date(field: &str, text: &str) -> Result<i64, DomainError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.timestamp_millis())
        .map_err(|e| DomainError::InvalidInput(format!("{field} is not an ISO 8601 time: {e}")))
}

/// Runs a studio write whose refusal is a domain error.
async fn write<T: Send + 'static>(
    state: &AppState,
    op: impl FnOnce(&crate::store::Connection) -> studio::Outcome<T> + Send + 'static,
) -> Result<T, DomainError> {
    state.store.write(op).await?
}

async fn read<T: Send + 'static>(
    state: &AppState,
    op: impl FnOnce(&crate::store::Connection) -> studio::Outcome<T> + Send + 'static,
) -> Result<T, DomainError> {
    state.store.read(op).await?
}

fn publish(state: &AppState, event_type: &'static str, audience: Option<Uuid>, data: Value) {
    let event = Event {
        event_type,
        audience,
        data,
    };
    if state
        .inbox
        .send(Command::to(EventsCommand::Publish(event)))
        .is_err()
    {
        tracing::warn!(event_type, "event dropped: the simulation is busy");
    }
}

pub async fn lobby(
    state: &AppState,
    me: &Identity,
    op: LobbyOp,
) -> Result<LobbyReply, DomainError> {
    let caller = LobbyCaller {
        user_id: me.user_id,
        username: me.username.clone(),
        conn: next_conn_id(),
    };
    state
        .inbox
        .ask(|reply| Command::to(LobbyRequest { caller, op, reply }))
        .await?
}

async fn launch(
    ctx: &Context<'_>,
    me: Identity,
    game_id: String,
    mode: &str,
) -> Result<Value, DomainError> {
    let state = ctx.state;
    match mode {
        "stream" => {
            let op = LobbyOp::LaunchStream { game_id };
            let LobbyReply::Launched {
                session_id,
                game_id,
                ..
            } = lobby(state, &me, op).await?
            else {
                return Err(DomainError::Internal("unexpected launch reply".into()));
            };
            publish(
                state,
                "game_state_change",
                None,
                answers::game_state_change(&session_id, &game_id, "started", &me.username),
            );
            let stream_url = format!("{}/game", ctx.ws_base);
            Ok(answers::stream_launched(&session_id, &stream_url))
        }
        "download" => {
            let op = LobbyOp::Version {
                game_id: game_id.clone(),
                version: None,
            };
            let LobbyReply::Version { game, version } = lobby(state, &me, op).await? else {
                return Err(DomainError::Internal("unexpected version reply".into()));
            };
            game.downloadable_by(me.user_id)?;
            let Some(version) = version else {
                return Err(DomainError::InvalidInput(if game.builtin {
                    format!(
                        "{} is played on the server: launch it with mode \"stream\"",
                        game.name
                    )
                } else {
                    format!("{} has no version to download yet", game.name)
                }));
            };
            let url = format!(
                "{}/downloads/{}/{}",
                ctx.http_base, game.game_id, version.version
            );
            let session_id = Uuid::new_v4().to_string();
            Ok(answers::download_ready(&session_id, &url, &version))
        }
        other => Err(DomainError::InvalidInput(format!(
            "mode {other:?}: it is \"stream\" or \"download\""
        ))),
    }
}

fn asset_url(ctx: &Context<'_>, asset: &AssetRecord) -> String {
    format!("{}/assets/{}", ctx.http_base, asset.asset_id)
}

pub async fn find_asset(state: &AppState, asset_id: &str) -> Result<AssetRecord, DomainError> {
    let id = asset_id.to_owned();
    state
        .store
        .read(move |c| studio::asset(c, &id))
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("no asset {asset_id:?}")))
}

/// Decodes, stores and records an asset; `asset_updated` goes to its owner.
#[allow(clippy::too_many_arguments)]
async fn store_asset(
    ctx: &Context<'_>,
    me: &Identity,
    project_id: Option<String>,
    name: String,
    asset_type: String,
    format: Option<String>,
    data: String,
    compressed: bool,
) -> Result<AssetRecord, DomainError> {
    let state = ctx.state;
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(DomainError::InvalidInput(
            "the asset name must be 1 to 200 characters".into(),
        ));
    }
    if asset_type.trim().is_empty() || asset_type.len() > 32 {
        return Err(DomainError::InvalidInput(
            "asset_type must be 1 to 32 characters".into(),
        ));
    }
    let files = state.assets.clone();
    let (sha256, size) = tokio::task::spawn_blocking(move || {
        let bytes = files.decode(&data, compressed)?;
        let sha256 = files
            .store(&bytes)
            .map_err(|e| DomainError::Internal(format!("storing the asset: {e}")))?;
        Ok::<_, DomainError>((sha256, bytes.len() as u64))
    })
    .await
    .map_err(|e| DomainError::Internal(format!("asset task: {e}")))??;
    let record = AssetRecord {
        asset_id: Uuid::new_v4().to_string(),
        owner: me.user_id,
        project_id,
        content_type: assets::content_type(&name, format.as_deref()),
        name,
        asset_type,
        size_bytes: size,
        sha256,
        created_at: chrono::Utc::now().timestamp_millis(),
    };
    let row = record.clone();
    state
        .store
        .write(move |c| studio::insert_asset(c, &row))
        .await?;
    publish(
        state,
        "asset_updated",
        Some(me.user_id),
        answers::asset_updated(&record, &asset_url(ctx, &record)),
    );
    Ok(record)
}

/// A response: the raos success or failure shape, echoing `request_id`.
pub fn respond(result: Result<Value, DomainError>, request_id: Option<Value>) -> Value {
    let body = match result {
        Ok(fields) => raos::success(fields),
        Err(e) => raos::failure_for(&e),
    };
    raos::with_request_id(body, request_id)
}
