//! The developer and lobby/store servers' commands (store-lobby-tcp.md): authentication on
//! the shared accounts, catalog and room requests through the simulation, uploads through
//! the upload service, and downloads streamed from disk by a task of the connection.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::AppState;
use super::ndjson::{LineSession, TcpServer};
use crate::bridge::Command;
use crate::protocol::store::{self as wire, Code, DevCommand, LobbyCommand, Request, Response};
use crate::services::DomainError;
use crate::services::accounts::{Credential, Identity, NewAccount, Role, Scope};
use crate::services::catalog::{self, GameStatus, MetaUpdate, NewGame, Version};
use crate::sim::lobby::{LobbyCaller, LobbyOp, LobbyReply, LobbyRequest};

fn scope(server: TcpServer) -> Scope {
    match server {
        TcpServer::Dev => Scope::Dev,
        TcpServer::Lobby => Scope::Lobby,
    }
}

/// One request, one reply (`None` when the reply was already queued, as for downloads).
pub async fn dispatch(
    mut request: Request,
    session: &mut LineSession,
    state: &AppState,
) -> Option<Response> {
    let outcome = match session.server {
        TcpServer::Dev => match wire::decode_dev(&mut request) {
            Ok(cmd) => dev(cmd, request.token.as_deref(), session, state).await,
            Err(reply) => return Some(reply),
        },
        TcpServer::Lobby => match wire::decode_lobby(&mut request) {
            Ok(cmd) => lobby(cmd, request.token.as_deref(), session, state).await,
            Err(reply) => return Some(reply),
        },
    };
    match outcome {
        Ok(Some(payload)) => Some(Response::ok(payload)),
        Ok(None) => None,
        Err(e) => Some(Response::from_domain(&e)),
    }
}

/// The caller behind `token`, which must be a session of this server.
fn identify(
    token: Option<&str>,
    session: &mut LineSession,
    state: &AppState,
) -> Result<Identity, DomainError> {
    let token = token.ok_or(DomainError::InvalidToken)?;
    let identity = state.accounts.verify(token)?;
    if identity.scope != scope(session.server) {
        return Err(DomainError::InvalidToken);
    }
    session.authenticated = true;
    Ok(identity)
}

async fn ask(
    state: &AppState,
    identity: &Identity,
    session: &LineSession,
    op: LobbyOp,
) -> Result<LobbyReply, DomainError> {
    let caller = LobbyCaller {
        user_id: identity.user_id,
        username: identity.username.clone(),
        conn: session.conn,
    };
    state
        .inbox
        .ask(|reply| Command::to(LobbyRequest { caller, op, reply }))
        .await?
}

/// Logs in (registering first with `register_roles`); an account without the `required`
/// role is refused, and its new session ended, before the connection's own session
/// changes, so a refused login costs the connection nothing.
async fn log_in(
    creds: wire::Credentials,
    register_roles: Option<Vec<Role>>,
    required: Option<(Role, &str)>,
    session: &mut LineSession,
    state: &AppState,
) -> Result<Identity, DomainError> {
    if let Some(roles) = register_roles {
        state
            .accounts
            .register(NewAccount {
                username: creds.username.clone(),
                credential: Credential::Password(creds.password.clone()),
                display_name: None,
                roles,
            })
            .await?;
    }
    let grant = state
        .accounts
        .login(
            &creds.username,
            Credential::Password(creds.password),
            Some(session.peer.ip()),
            scope(session.server),
        )
        .await?;
    if let Some((role, refusal)) = required
        && !grant.identity.has_role(role)
    {
        state.accounts.logout(&grant.identity).await?;
        return Err(DomainError::Forbidden(refusal.into()));
    }
    session.authenticated = true;
    session.token = Some(grant.access_token.clone());
    session.session_id = Some(grant.identity.session_id);
    Ok(grant.identity)
}

fn token_payload(session: &LineSession) -> Value {
    wire::session_token(session.token.as_deref().unwrap_or_default())
}

async fn dev(
    cmd: DevCommand,
    token: Option<&str>,
    session: &mut LineSession,
    state: &AppState,
) -> Result<Option<Value>, DomainError> {
    let identity = match cmd {
        DevCommand::Register(creds) => {
            log_in(
                creds,
                Some(vec![Role::Player, Role::Developer]),
                None,
                session,
                state,
            )
            .await?;
            return Ok(Some(token_payload(session)));
        }
        DevCommand::Login(creds) => {
            let developer = (Role::Developer, "this account is not a developer account");
            log_in(creds, None, Some(developer), session, state).await?;
            return Ok(Some(token_payload(session)));
        }
        _ => identify(token, session, state)?,
    };
    if !identity.has_role(Role::Developer) {
        return Err(DomainError::Forbidden("developer role required".into()));
    }
    let reply = match cmd {
        upload @ (DevCommand::UploadBegin(_)
        | DevCommand::UploadChunk(_)
        | DevCommand::UploadEnd(_)
        | DevCommand::CancelUpload(_)) => dev_upload(upload, &identity, session, state).await?,
        DevCommand::Register(_) | DevCommand::Login(_) => return Ok(None),
        DevCommand::CreateGame(g) => {
            let op = LobbyOp::CreateGame(NewGame {
                name: g.name,
                description: g.description,
                game_type: g.game_type,
                max_players: g.max_players,
            });
            match ask(state, &identity, session, op).await? {
                LobbyReply::Game(game) => wire::game_created(&game),
                _ => wire::done(),
            }
        }
        DevCommand::ListMyGames => {
            match ask(state, &identity, session, LobbyOp::ListMyGames).await? {
                LobbyReply::Games(games) => wire::my_games(&games),
                _ => wire::done(),
            }
        }
        DevCommand::UpdateGameMeta(m) => {
            let game_id = m.game_id.clone();
            let update = MetaUpdate {
                description: m.description,
                max_players: m.max_players,
                game_type: m.game_type,
                wage: m.wage,
                period_hours: m.period_hours,
                payout_shares: m.payout_shares,
            };
            ask(
                state,
                &identity,
                session,
                LobbyOp::UpdateMeta {
                    game_id: m.game_id,
                    update,
                },
            )
            .await?;
            wire::game_updated(&game_id)
        }
        DevCommand::SetGameStatus(s) => {
            let status = GameStatus::parse(&s.status).ok_or_else(|| {
                DomainError::InvalidInput("status must be \"ONLINE\" or \"OFFLINE\"".into())
            })?;
            let game_id = s.game_id.clone();
            ask(
                state,
                &identity,
                session,
                LobbyOp::SetStatus {
                    game_id: s.game_id,
                    status,
                },
            )
            .await?;
            wire::status_set(&game_id, status)
        }
        DevCommand::ListVersions(g) => {
            match ask(
                state,
                &identity,
                session,
                LobbyOp::ListVersions { game_id: g.game_id },
            )
            .await?
            {
                LobbyReply::Game(game) => wire::versions(&game),
                _ => wire::done(),
            }
        }
    };
    Ok(Some(reply))
}

/// A developer's upload: begun, a chunk, ended (published, or nothing of it kept), or
/// cancelled.
async fn dev_upload(
    cmd: DevCommand,
    identity: &Identity,
    session: &mut LineSession,
    state: &AppState,
) -> Result<Value, DomainError> {
    let reply = match cmd {
        DevCommand::UploadBegin(b) => {
            state.uploads.check_begin(
                &b.game_id,
                &b.version,
                b.size_bytes,
                b.checksum.as_deref(),
            )?;
            let op = LobbyOp::CheckUpload {
                game_id: b.game_id.clone(),
                version: b.version.clone(),
            };
            ask(state, identity, session, op).await?;
            let upload_id = state.uploads.begin(
                identity.user_id,
                &identity.username,
                &b.game_id,
                &b.version,
                b.size_bytes,
                b.checksum,
            )?;
            wire::upload_begun(&upload_id, state.uploads.chunk_size())
        }
        DevCommand::UploadChunk(c) => {
            let ack = state
                .uploads
                .chunk(identity.user_id, &c.upload_id, c.seq, c.data_b64)
                .await?;
            wire::chunk_acked(&c.upload_id, ack.seq, ack.received_bytes)
        }
        DevCommand::UploadEnd(u) => {
            let published = state.uploads.finish(identity.user_id, &u.upload_id).await?;
            let version = Version {
                version: published.version.clone(),
                size_bytes: published.size_bytes,
                sha256: published.sha256.clone(),
                uploader: published.uploader.clone(),
                uploaded_at: published.uploaded_at_ms,
                room: published.room.clone(),
            };
            let op = LobbyOp::Publish {
                game_id: published.game_id.clone(),
                version,
                files: published.files.clone(),
            };
            // Every error here is a decision not to publish (the store answers only after
            // its transaction's fate is known): nothing of the build may remain.
            let recorded = ask(state, identity, session, op).await;
            if recorded.is_err() {
                published.files.discard();
            }
            state.uploads.released(&published);
            recorded?;
            tracing::info!(
                game = %published.game_id,
                version = %published.version,
                bytes = published.size_bytes,
                developer = %identity.username,
                "upload published"
            );
            state.metrics.uploads.inc();
            state.metrics.upload_bytes.inc_by(published.size_bytes);
            wire::published(&published.version, &published.sha256)
        }
        DevCommand::CancelUpload(u) => {
            state.uploads.cancel(identity.user_id, &u.upload_id)?;
            wire::upload_cancelled(&u.upload_id)
        }
        _ => return Err(DomainError::InvalidInput("not an upload command".into())),
    };
    Ok(reply)
}

async fn lobby(
    cmd: LobbyCommand,
    token: Option<&str>,
    session: &mut LineSession,
    state: &AppState,
) -> Result<Option<Value>, DomainError> {
    let identity = match cmd {
        LobbyCommand::Register(creds) => {
            let identity = log_in(creds, Some(vec![Role::Player]), None, session, state).await?;
            enter(&identity, session, state).await?;
            return Ok(Some(token_payload(session)));
        }
        LobbyCommand::Login(creds) => {
            let identity = log_in(creds, None, None, session, state).await?;
            enter(&identity, session, state).await?;
            return Ok(Some(token_payload(session)));
        }
        _ => identify(token, session, state)?,
    };
    let op = match cmd {
        LobbyCommand::Register(_) | LobbyCommand::Login(_) => return Ok(None),
        LobbyCommand::DownloadBegin(d) => {
            state.metrics.downloads.inc();
            download(d, &identity, session, state).await?;
            return Ok(None);
        }
        LobbyCommand::ListGames => LobbyOp::ListGames,
        LobbyCommand::GetGameDetail(g) => LobbyOp::GameDetail { game_id: g.game_id },
        LobbyCommand::LatestVersion(g) => LobbyOp::Version {
            game_id: g.game_id,
            version: None,
        },
        LobbyCommand::ListReviews(g) => LobbyOp::ListReviews { game_id: g.game_id },
        LobbyCommand::AddReview(r) => LobbyOp::AddReview {
            game_id: r.game_id,
            score: r.score,
            comment: r.comment,
        },
        LobbyCommand::ListPlayers => LobbyOp::ListPlayers,
        LobbyCommand::ListRooms => LobbyOp::ListRooms,
        LobbyCommand::CreateRoom(g) => LobbyOp::CreateRoom {
            game_id: g.game_id,
            seats: None,
        },
        LobbyCommand::JoinRoom(r) => LobbyOp::JoinRoom { room_id: r.room_id },
        LobbyCommand::LeaveRoom(r) => LobbyOp::LeaveRoom { room_id: r.room_id },
        LobbyCommand::StartRoom(r) => LobbyOp::StartRoom { room_id: r.room_id },
        LobbyCommand::SendChat(c) => LobbyOp::Chat {
            room_id: c.room_id,
            meta: c.meta.unwrap_or(Value::Null),
            message: c.message,
        },
    };
    let detail = matches!(op, LobbyOp::GameDetail { .. });
    let reply = match ask(state, &identity, session, op).await? {
        LobbyReply::Games(games) => wire::games(&games),
        LobbyReply::Game(game) if detail => wire::game_detail(&game),
        LobbyReply::Game(game) => wire::reviews(&game),
        LobbyReply::Version { game, version } => wire::latest_version(&game, version.as_ref()),
        LobbyReply::Players(names) => wire::players(&names),
        LobbyReply::Rooms(rooms) => wire::rooms(&rooms),
        LobbyReply::Room(room) => wire::room_entered(&room),
        LobbyReply::Started { room, host, port } => wire::room_started(&room, &host, port),
        LobbyReply::Chatted(delivered) => wire::chatted(delivered),
        LobbyReply::Done | LobbyReply::Launched { .. } | LobbyReply::Stopped { .. } => wire::done(),
    };
    Ok(Some(reply))
}

/// Registers the connection for lobby pushes (once).
async fn enter(
    identity: &Identity,
    session: &mut LineSession,
    state: &AppState,
) -> Result<(), DomainError> {
    if session.entered.is_some() {
        return Ok(());
    }
    ask(
        state,
        identity,
        session,
        LobbyOp::Enter {
            push: session.push.clone(),
        },
    )
    .await?;
    session.entered = Some(identity.clone());
    Ok(())
}

/// Tells the lobby a connection left.
pub async fn leave(session: &LineSession, state: &AppState) {
    if let Some(identity) = &session.entered {
        let _ = ask(state, identity, session, LobbyOp::Exit).await;
    }
}

/// DOWNLOAD_BEGIN: answers at once, then streams the build from disk in its own task, so
/// the connection keeps answering other requests meanwhile.
async fn download(
    d: wire::DownloadBegin,
    identity: &Identity,
    session: &LineSession,
    state: &AppState,
) -> Result<(), DomainError> {
    catalog::validate_game_id(&d.game_id)?;
    if let Some(v) = &d.version {
        catalog::validate_version(v)?;
    }
    let op = LobbyOp::Version {
        game_id: d.game_id.clone(),
        version: d.version.clone(),
    };
    let LobbyReply::Version { game, version } = ask(state, identity, session, op).await? else {
        return Err(DomainError::Internal("unexpected reply".into()));
    };
    game.downloadable_by(identity.user_id)?;
    let Some(version) = version else {
        return Err(DomainError::NotFound(format!(
            "{} is played on this server: there is nothing to download",
            game.name
        )));
    };
    let path = catalog::version_dir(&state.config.data_dir, &game.game_id, &version.version)
        .join(catalog::BUILD_FILE);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| DomainError::Internal(format!("build file: {e}")))?;
    let download_id = uuid::Uuid::new_v4().to_string();
    let chunk_size = state.config.uploads.chunk_bytes;
    let begin = Response::ok(wire::download_begun(
        &download_id,
        &version.version,
        version.size_bytes,
        chunk_size,
    ));
    session
        .push
        .send(Bytes::from(begin.to_line()))
        .await
        .map_err(|_| DomainError::Busy)?;
    let bulk = session.bulk.clone();
    let shutdown = state.shutdown.clone();
    tokio::spawn(stream_file(
        file,
        download_id,
        version,
        chunk_size,
        bulk,
        shutdown,
    ));
    Ok(())
}

async fn stream_file(
    mut file: tokio::fs::File,
    download_id: String,
    version: Version,
    chunk_size: usize,
    bulk: tokio::sync::mpsc::Sender<Bytes>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut buf = vec![0u8; chunk_size];
    let mut seq = 0u64;
    let mut sent = 0u64;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    let line =
                        wire::download_error(&download_id, Code::ServerError, &e.to_string());
                    let _ = bulk.send(line).await;
                    return;
                }
            }
        }
        if filled == 0 {
            break;
        }
        sent += filled as u64;
        let chunk = wire::download_chunk(&download_id, seq, &buf[..filled]);
        if bulk.send(chunk).await.is_err() {
            return;
        }
        seq += 1;
    }
    let last = if sent == version.size_bytes {
        wire::download_end(&download_id, &version.version, &version.sha256)
    } else {
        wire::download_error(
            &download_id,
            Code::ServerError,
            "the build file changed size",
        )
    };
    let _ = bulk.send(last).await;
}

/// Drops abandoned uploads now and then.
pub fn spawn_upload_expiry(state: AppState) {
    let every = std::time::Duration::from_secs(state.config.uploads.idle_timeout_secs.clamp(1, 60));
    let uploads: Arc<crate::services::uploads::Uploads> = state.uploads.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = interval.tick() => { uploads.expire_idle(); }
            }
        }
    });
}
