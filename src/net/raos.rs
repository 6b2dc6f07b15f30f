//! raos-integration.md: every action, performed once for both transports. The WebSocket
//! (`GET /raos`) sends one action per message and gets one response per request (echoing
//! `request_id`), plus the events it subscribed to; REST routes under `/api/v1` turn each
//! call into the same action (see `rest.rs`).
//!
//! Projects, assets and content are store-backed services used from here directly (like
//! accounts); games, launches and the event bus are the simulation's, reached through the
//! inbox.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::listener::PeerAddr;
use super::ws::{self, WsOut};
use super::{AppState, ConnectionGauge, RateBucket};
use crate::bridge::{Command, ConnId, Link, Outbound, next_conn_id};
use crate::protocol::raos::{self, Action, ErrorCode, Outgoing, Request};
use crate::services::accounts::{Credential, Identity, Role, Scope};
use crate::services::catalog::Game;
use crate::services::progress::{self, Board};
use crate::services::studio::{self, AssetRecord, ContentUpdate};
use crate::services::{DomainError, assets};
use crate::sim::events::{EVENT_TYPES, Event, EventsCommand};
use crate::sim::lobby::{Caller, LobbyOp, LobbyReply, LobbyRequest};

const PROTOCOL: &str = "raos";
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
    let state = ctx.state;
    let caller = if action.needs_auth() {
        let token = auth_token.ok_or(DomainError::InvalidToken)?;
        Some(state.accounts.verify(token)?)
    } else {
        None
    };
    let me = || caller.clone().ok_or(DomainError::InvalidToken);
    match action {
        Action::Authenticate {
            username,
            password_hash,
            password,
        } => {
            let credential = credential(password, password_hash)?;
            let ip = ctx.peer.map(|p| p.ip());
            let grant = state
                .accounts
                .login(&username, credential, ip, Scope::Web)
                .await?;
            Ok(raos::grant_fields(&grant))
        }
        Action::RefreshToken { refresh_token } => {
            let grant = state.accounts.refresh(&refresh_token).await?;
            Ok(json!({
                "access_token": grant.access_token,
                "refresh_token": grant.refresh_token,
                "expires_in": grant.expires_in,
            }))
        }
        Action::Logout { access_token } => {
            let token = access_token
                .as_deref()
                .or(auth_token)
                .ok_or(DomainError::InvalidToken)?;
            let identity = state.accounts.verify(token)?;
            state.accounts.logout(&identity).await?;
            Ok(json!({}))
        }
        Action::CreateGameProject { name, description } => {
            let me = me()?;
            let project = write(state, move |c| {
                studio::create_project(c, me.user_id, &name, &description)
            })
            .await?;
            Ok(json!({
                "project_id": project.project_id,
                "created_date": project.created_date,
            }))
        }
        Action::LoadGameProject { project_id } => {
            let me = me()?;
            let project = read(state, move |c| {
                studio::load_project(c, me.user_id, &project_id)
            })
            .await?;
            Ok(json!({ "project": project }))
        }
        Action::SaveGameProject {
            project,
            expected_modified_date,
        } => {
            let me = me()?;
            let expected = expected_modified_date
                .map(|d| parse_date("expected_modified_date", &d))
                .transpose()?;
            let project_id = project
                .get("project_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let max = state.config.raos.project_max_bytes;
            let modified = write(state, move |c| {
                studio::save_project(c, me.user_id, project, expected, max)
            })
            .await?;
            let modified_date = raos::rfc3339(modified);
            publish(
                state,
                "project_modified",
                Some(me.user_id),
                json!({"project_id": project_id, "modified_date": modified_date,
                       "modified_by": me.username}),
            );
            Ok(json!({ "modified_date": modified_date }))
        }
        Action::ListGameProjects {} => {
            let me = me()?;
            let projects = state
                .store
                .read(move |c| studio::list_projects(c, me.user_id))
                .await?;
            Ok(json!({ "projects": projects }))
        }
        Action::SyncAssets { project_id } => {
            let me = me()?;
            let assets = read(state, move |c| {
                Ok(studio::check_owner(c, me.user_id, &project_id)?
                    .and_then(|()| Ok(studio::project_assets(c, &project_id)?)))
            })
            .await?;
            let assets: Vec<Value> = assets.iter().map(|a| asset_line(ctx, a)).collect();
            Ok(json!({ "assets": assets }))
        }
        Action::AddAsset {
            project_id,
            asset_name,
            asset_type,
            asset_data,
            compressed,
        } => {
            let me = me()?;
            let owner_check = project_id.clone();
            read(state, move |c| {
                studio::check_owner(c, me.user_id, &owner_check)
            })
            .await?;
            let record = store_asset(
                ctx,
                &me,
                Some(project_id),
                asset_name,
                asset_type,
                None,
                asset_data,
                compressed,
            )
            .await?;
            Ok(stored_reply(ctx, &record))
        }
        Action::UploadBinaryAsset {
            asset_type,
            filename,
            file_data,
            compressed,
            format,
        } => {
            let me = me()?;
            let record = store_asset(
                ctx, &me, None, filename, asset_type, format, file_data, compressed,
            )
            .await?;
            Ok(stored_reply(ctx, &record))
        }
        Action::AnalyzeAsset { asset_id } => {
            me()?;
            let record = find_asset(state, &asset_id).await?;
            let path = state.assets.path(&record.sha256);
            let analysis = tokio::task::spawn_blocking(move || {
                let bytes = std::fs::read(&path)
                    .map_err(|e| DomainError::Internal(format!("reading the asset: {e}")))?;
                assets::analyze(&bytes)
            })
            .await
            .map_err(|e| DomainError::Internal(format!("analysis task: {e}")))??;
            Ok(json!({ "analysis": analysis }))
        }
        Action::ListGames {} => {
            let me = me()?;
            let games = match lobby(state, &me, LobbyOp::ListGames).await? {
                LobbyReply::Games(games) => games,
                _ => Vec::new(),
            };
            let games: Vec<Value> = games
                .iter()
                .filter(|g| g.status == crate::services::catalog::GameStatus::Online)
                .map(game_line)
                .collect();
            Ok(json!({ "games": games }))
        }
        Action::LaunchGame { game_id, mode } => launch(ctx, me()?, game_id, &mode).await,
        Action::DownloadGame { game_id } => launch(ctx, me()?, game_id, "download").await,
        Action::StopGame { session_id } => {
            let me = me()?;
            let op = LobbyOp::StopStream {
                session_id: session_id.clone(),
            };
            if let LobbyReply::Stopped { game_id } = lobby(state, &me, op).await? {
                publish(
                    state,
                    "game_state_change",
                    None,
                    json!({"session_id": session_id, "game_id": game_id, "state": "stopped",
                           "player": me.username}),
                );
            }
            Ok(json!({}))
        }
        Action::GetPlayerProfile {} => {
            let me = me()?;
            let account = state
                .accounts
                .find_by_username(&me.username)
                .await?
                .ok_or_else(|| DomainError::NotFound("no such account".into()))?;
            let user_id = me.user_id;
            let (record, region) = state
                .store
                .read(move |c| Ok((progress::load(c, user_id)?, progress::region(c, user_id)?)))
                .await?;
            let stats = record.stats;
            Ok(json!({
                "profile": {
                    "user_id": user_id.to_string(),
                    "username": account.username,
                    "display_name": account.display_name,
                    "level": stats.level(),
                    "experience": stats.experience(),
                    "region": region,
                    "stats": stats,
                }
            }))
        }
        Action::UpdatePlayerProfile { region } => {
            let me = me()?;
            progress::validate_region(&region)?;
            let stored = region.clone();
            state
                .store
                .write(move |c| progress::set_region(c, me.user_id, &stored))
                .await?;
            Ok(json!({ "region": region }))
        }
        Action::GetAchievements { game_id } => {
            let me = me()?;
            let user_id = me.user_id;
            let unlocked = state
                .store
                .read(move |c| progress::unlocked_at(c, user_id))
                .await?;
            let list: Vec<Value> = state
                .achievements
                .achievements
                .iter()
                .filter(|a| game_id.as_ref().is_none_or(|g| *g == a.game_id))
                .map(|a| {
                    let at = unlocked
                        .iter()
                        .find(|(id, _)| *id == a.achievement_id)
                        .map(|(_, at)| raos::rfc3339(*at));
                    json!({
                        "achievement_id": a.achievement_id,
                        "game_id": a.game_id,
                        "name": a.name,
                        "description": a.description,
                        "unlocked": at.is_some(),
                        "unlock_date": at,
                    })
                })
                .collect();
            Ok(json!({ "achievements": list }))
        }
        Action::GetLeaderboard { game_id, category } => {
            let me = me()?;
            let board = match category.as_str() {
                "global" => Board::Global,
                "friends" => Board::Friends,
                "regional" => Board::Regional,
                other => {
                    return Err(DomainError::InvalidInput(format!(
                        "category {other:?}: it is global, friends or regional"
                    )));
                }
            };
            let op = LobbyOp::GameDetail {
                game_id: game_id.clone(),
            };
            lobby(state, &me, op).await?;
            let ranks = read(state, move |c| {
                progress::leaderboard(c, &game_id, board, me.user_id, LIST_LIMIT)
            })
            .await?;
            let lines: Vec<Value> = ranks
                .iter()
                .map(|r| json!({"rank": r.rank, "player_name": r.player_name, "score": r.score}))
                .collect();
            Ok(json!({ "leaderboard": lines, "category": category }))
        }
        Action::AddFriend { username } => {
            let me = me()?;
            let name = username.clone();
            write(state, move |c| progress::add_friend(c, me.user_id, &name)).await?;
            Ok(json!({ "friend": username }))
        }
        Action::RemoveFriend { username } => {
            let me = me()?;
            write(state, move |c| {
                progress::remove_friend(c, me.user_id, &username)
            })
            .await?;
            Ok(json!({}))
        }
        Action::ListContent { content_type } => {
            me()?;
            let list = state
                .store
                .read(move |c| studio::list_content(c, content_type.as_deref(), LIST_LIMIT))
                .await?;
            let lines: Vec<Value> = list
                .iter()
                .map(|c| {
                    json!({"asset_id": c.asset_id, "asset_type": c.asset_type, "title": c.title,
                           "author": c.author, "created_date": c.created_date,
                           "modified_date": c.modified_date})
                })
                .collect();
            Ok(json!({ "content_list": lines }))
        }
        Action::FetchContent { asset_id } => {
            me()?;
            let id = asset_id.clone();
            let found = state
                .store
                .read(move |c| studio::fetch_content(c, &id))
                .await?
                .ok_or_else(|| DomainError::NotFound(format!("no content {asset_id:?}")))?;
            Ok(json!({ "asset": found }))
        }
        Action::CreateContent {
            asset_type,
            title,
            content,
            metadata,
        } => {
            let me = me()?;
            let metadata = metadata.unwrap_or_else(|| json!({}));
            let created = write(state, move |c| {
                studio::create_content(c, me.user_id, &asset_type, &title, &content, &metadata)
            })
            .await?;
            publish(
                state,
                "content_published",
                None,
                json!({"asset_id": created.asset_id, "asset_type": created.asset_type,
                       "title": created.title, "author": created.author}),
            );
            Ok(json!({ "asset_id": created.asset_id, "created_date": created.created_date }))
        }
        Action::UpdateContent { asset } => {
            let me = me()?;
            let admin = me.has_role(Role::Admin);
            let update = ContentUpdate {
                asset_type: asset.asset_type,
                title: asset.title,
                content: asset.content,
                metadata: asset.metadata,
            };
            let modified = write(state, move |c| {
                studio::update_content(c, me.user_id, admin, &asset.asset_id, update)
            })
            .await?;
            Ok(json!({ "modified_date": raos::rfc3339(modified) }))
        }
        Action::DeleteContent { asset_id } => {
            let me = me()?;
            let admin = me.has_role(Role::Admin);
            write(state, move |c| {
                studio::delete_content(c, me.user_id, admin, &asset_id)
            })
            .await?;
            Ok(json!({}))
        }
        Action::SubscribeEvents { event_types } => {
            let me = me()?;
            let Some((conn, link)) = ctx.events.clone() else {
                return Err(DomainError::InvalidInput(
                    "events are delivered over the WebSocket (GET /raos): subscribe there".into(),
                ));
            };
            let mut types = Vec::new();
            for wanted in &event_types {
                match EVENT_TYPES.iter().find(|t| **t == wanted.as_str()) {
                    Some(t) => types.push(*t),
                    None => {
                        return Err(DomainError::InvalidInput(format!(
                            "unknown event type {wanted:?}; the types are {}",
                            EVENT_TYPES.join(", ")
                        )));
                    }
                }
            }
            if types.is_empty() {
                return Err(DomainError::InvalidInput(
                    "event_types must name at least one event type".into(),
                ));
            }
            let subscription_id = state
                .inbox
                .ask(|reply| {
                    Command::to(EventsCommand::Subscribe {
                        conn,
                        user_id: me.user_id,
                        event_types: types,
                        link,
                        reply,
                    })
                })
                .await?;
            Ok(json!({ "subscription_id": subscription_id, "event_types": event_types }))
        }
    }
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
    op: impl FnOnce(&rusqlite::Connection) -> studio::Outcome<T> + Send + 'static,
) -> Result<T, DomainError> {
    state.store.write(op).await?
}

async fn read<T: Send + 'static>(
    state: &AppState,
    op: impl FnOnce(&rusqlite::Connection) -> studio::Outcome<T> + Send + 'static,
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
    let caller = Caller {
        user_id: me.user_id,
        username: me.username.clone(),
        conn: next_conn_id(),
    };
    state
        .inbox
        .ask(|reply| Command::to(LobbyRequest { caller, op, reply }))
        .await?
}

fn game_line(game: &Game) -> Value {
    let players = if game.max_players <= 1 {
        "1".to_owned()
    } else {
        format!("1-{}", game.max_players)
    };
    json!({
        "game_id": game.game_id,
        "name": game.name,
        "description": game.description,
        "genre": game.game_type,
        "players": players,
        "rating": game.avg_score().map(|s| format!("{}/5", (s * 10.0).round() / 10.0)),
        "latest_version": game.latest_version(),
    })
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
                json!({"session_id": session_id, "game_id": game_id, "state": "started",
                       "player": me.username}),
            );
            Ok(json!({
                "session_id": session_id,
                "stream_url": format!("{}/game", ctx.ws_base),
                "system_id": session_id,
                "mode": "stream",
            }))
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
            Ok(json!({
                "session_id": Uuid::new_v4().to_string(),
                "download_url": format!(
                    "{}/downloads/{}/{}", ctx.http_base, game.game_id, version.version
                ),
                "version": version.version,
                "size": version.size_bytes,
                "hash": version.sha256,
                "mode": "download",
            }))
        }
        other => Err(DomainError::InvalidInput(format!(
            "mode {other:?}: it is \"stream\" or \"download\""
        ))),
    }
}

fn asset_url(ctx: &Context<'_>, asset: &AssetRecord) -> String {
    format!("{}/assets/{}", ctx.http_base, asset.asset_id)
}

/// What `add_asset` and `upload_binary_asset` answer.
fn stored_reply(ctx: &Context<'_>, record: &AssetRecord) -> Value {
    json!({
        "asset_id": record.asset_id,
        "asset_url": asset_url(ctx, record),
        "size": record.size_bytes,
        "hash": record.sha256,
    })
}

fn asset_line(ctx: &Context<'_>, asset: &AssetRecord) -> Value {
    json!({
        "asset_id": asset.asset_id,
        "name": asset.name,
        "type": asset.asset_type,
        "url": asset_url(ctx, asset),
        "size": asset.size_bytes,
        "hash": asset.sha256,
    })
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
        json!({"asset_id": record.asset_id, "name": record.name, "project_id": record.project_id,
               "url": asset_url(ctx, &record), "hash": record.sha256}),
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

/// `GET /raos`.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    budget: Option<axum::Extension<super::listener::ReadBudget>>,
    headers: HeaderMap,
) -> Response {
    let budget = budget.map(|b| b.0).unwrap_or_default();
    // Assets travel inside messages as base64: room for the largest one.
    let limit = state
        .config
        .limits
        .ws_message_bytes
        .max(state.config.raos.asset_max_bytes / 3 * 4 + 64 * 1024);
    let tasks = state.tasks.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(ws::READ_BUFFER)
        .on_upgrade(move |socket| tasks.track_future(run(socket, state, headers, peer.0, budget)))
}

async fn run(
    socket: WebSocket,
    state: AppState,
    headers: HeaderMap,
    peer: SocketAddr,
    budget: super::listener::ReadBudget,
) {
    let _gauge = ConnectionGauge::open(&state.metrics, PROTOCOL);
    let conn = next_conn_id();
    let (outbound, rx) = Outbound::<Outgoing>::bounded(state.config.limits.outbound_queue.max(8));
    let kick = CancellationToken::new();
    let link = Link::new(conn, outbound, kick.clone());
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(ws::write_loop(
        sink,
        rx,
        |out| match out {
            Outgoing::Reply(text) => WsOut::Text(text),
            Outgoing::Event(bytes) => WsOut::SharedText(bytes),
            Outgoing::Ping => WsOut::Ping,
            Outgoing::Close(code, reason) => WsOut::Close(code, reason),
        },
        kick.clone(),
        state.clone(),
        PROTOCOL,
    ));
    let mut ctx = Context::new(&state, &headers, Some(peer));
    ctx.events = Some((conn, link.clone()));
    let cfg = state.config.raos.clone();
    let mut bucket = RateBucket::new(cfg.requests_per_second, cfg.request_burst);
    let interval = Duration::from_secs(cfg.ping_interval_secs.max(1));
    let mut ping = tokio::time::interval(interval);
    ping.tick().await;
    let mut heard = tokio::time::Instant::now();
    // After `authenticate` (or `refresh_token`) on this socket, actions without an
    // `auth_token` use the token it returned.
    let mut session_token: Option<String> = None;
    // A socket that never shows a valid token is closed after the unauthenticated timeout.
    // The session of the last valid token the socket used: when it is ended (logout, a
    // reused refresh token), the socket closes.
    let mut session = super::bearer(&headers)
        .and_then(|token| state.accounts.verify(token).ok())
        .map(|identity| identity.session_id);
    let mut authenticated = session.is_some();
    // Until it shows a valid token, the socket may send only a little: a client that never
    // authenticates cannot make the server hold large messages for it.
    if !authenticated {
        budget.limit(state.config.limits.unauthenticated_read_bytes);
    }
    let mut watch = state.accounts.watch_ended();
    let deadline = tokio::time::Instant::now() + state.config.limits.unauthenticated_timeout();
    loop {
        let next = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = kick.cancelled() => break,
            _ = watch.ended(&state.accounts, session.unwrap_or_default()), if session.is_some() => {
                let failure = raos::failure(ErrorCode::Unauthorized, "the session was ended; closing");
                link.send(Outgoing::Reply(failure.to_string()));
                link.send(Outgoing::Close(ws::close::POLICY, "session ended".into()));
                break;
            }
            _ = tokio::time::sleep_until(deadline), if !authenticated => {
                let failure = raos::failure(
                    ErrorCode::Unauthorized,
                    "no valid token within the time allowed; closing",
                );
                link.send(Outgoing::Reply(failure.to_string()));
                link.send(Outgoing::Close(ws::close::POLICY, "not authenticated in time".into()));
                break;
            }
            _ = ping.tick() => {
                if heard.elapsed() > interval * 3 {
                    link.send(Outgoing::Close(ws::close::POLICY, "no pong".into()));
                    break;
                }
                link.send(Outgoing::Ping);
                continue;
            }
            next = stream.next() => next,
        };
        heard = tokio::time::Instant::now();
        let text = match next {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(bytes))) => {
                state.metrics.received(PROTOCOL, bytes.len());
                let failure = raos::failure(
                    ErrorCode::InvalidRequest,
                    "binary frames are not part of this protocol: send JSON text",
                );
                link.send(Outgoing::Reply(failure.to_string()));
                continue;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                if let Some((code, reason)) = ws::close_for(&e) {
                    link.send(Outgoing::Close(code, reason.into()));
                }
                break;
            }
        };
        state.metrics.received(PROTOCOL, text.len());
        let request = match raos::decode(&text) {
            Ok(request) => request,
            Err(bad) => {
                let failure = raos::failure(ErrorCode::InvalidRequest, &bad.message);
                let reply = raos::with_request_id(failure, bad.request_id);
                link.send(Outgoing::Reply(reply.to_string()));
                continue;
            }
        };
        if !bucket.take() {
            let failure = raos::failure(
                ErrorCode::RateLimited,
                &format!(
                    "rate limited: at most {} requests per second",
                    cfg.requests_per_second
                ),
            );
            let reply = raos::with_request_id(failure, request.request_id);
            link.send(Outgoing::Reply(reply.to_string()));
            continue;
        }
        let Request {
            request_id,
            auth_token,
            action,
        } = request;
        let remembers = matches!(
            action,
            Action::Authenticate { .. } | Action::RefreshToken { .. }
        );
        let token = auth_token.or_else(|| session_token.clone());
        // Which session a logout ends (its `access_token`, else the request's token).
        let logs_out = match &action {
            Action::Logout { access_token } => access_token
                .as_deref()
                .or(token.as_deref())
                .and_then(|t| state.accounts.verify(t).ok())
                .map(|identity| identity.session_id),
            _ => None,
        };
        if let Some(identity) = token
            .as_deref()
            .and_then(|token| state.accounts.verify(token).ok())
        {
            authenticated = true;
            budget.lift();
            session = Some(identity.session_id);
        }
        let result = perform(&ctx, token.as_deref(), action).await;
        if remembers
            && let Ok(fields) = &result
            && let Some(access) = fields.get("access_token").and_then(Value::as_str)
        {
            if let Ok(identity) = state.accounts.verify(access) {
                session = Some(identity.session_id);
            }
            session_token = Some(access.to_owned());
            authenticated = true;
            budget.lift();
        }
        if logs_out.is_some() && logs_out == session && result.is_ok() {
            // The socket that logged out of its own session stays open (it may log in
            // again); the session's other connections close.
            session = None;
            session_token = None;
        }
        link.send(Outgoing::Reply(respond(result, request_id).to_string()));
    }
    let _ = state.inbox.send(Command::to(EventsCommand::Drop { conn }));
    drop(ctx);
    drop(link);
    let _ = writer.await;
}
