//! GARP over WebSocket (garp.md, garp-notes.md).
//!
//! `GET /ws/{gametoken}/{protocolid}` only redirects: it answers the `connectUrl` of the node
//! that serves the game (this one unless `wagers.connect_base_url` says otherwise) and
//! closes. `GET /fs/{gametoken}/{protocolid}` is the session: the game token is checked, a
//! nonce is sent, and the client proves it holds the game's secret with
//! base64(HMAC-SHA256(secret, nonce)). After that it authenticates players with their
//! account passwords and places wages for them.
//!
//! One task per socket reads a request, answers it and reads the next; between requests it
//! also forwards room chat for the players this socket speaks for. Player `authToken`s
//! belong to the game, not the socket ([`GarpPlayers`]), so the module's automatic
//! reconnect goes on with the tokens and `sessionId` it had. Wages and rooms go through the
//! simulation (which decides periods and owns the lobby's rooms); balances, finishes and
//! ladders go to the store directly.

use std::collections::HashSet;
use std::net::SocketAddr;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::AppState;
use super::listener::PeerAddr;
use super::ws::{self, Ending, Endpoint, EndpointRules, Lifecycle, Next, Status, WsOut};
use crate::bridge::{Command, ConnId, Outbound};
use crate::protocol::close;
use crate::protocol::garp::{self, Frame, Request, texts};
use crate::services::DomainError;
use crate::services::accounts::Credential;
use crate::services::catalog::{alphanumeric, grouped_token};
use crate::services::garp_players::{GarpPlayer, GarpPlayers};
use crate::services::{wagers, wallet};
use crate::sim::lobby::{LobbyCaller, LobbyOp, LobbyReply, LobbyRequest, RoomChat};
use crate::sim::wagers::{WagerGame, WagerOp, WagerReply, WagerRequest};

/// Ladder lines sent at most.
const LADDER_LINES: usize = 100;

fn upgrade_with_limits(ws: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let limit = state.config.limits.ws_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(ws::READ_BUFFER)
}

/// `GET /ws/{gametoken}/{protocolid}`: one `connectUrl` message, then close.
pub async fn redirect(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Path((token, protocol)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let base = match &state.config.wagers.connect_base_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => super::public_base(&state, &headers, true),
    };
    let url = format!(
        "{base}/fs/{}/{}",
        path_segment(&token),
        path_segment(&protocol)
    );
    let message = garp::connect_url(&url);
    let tasks = state.tasks.clone();
    let ws = ws::select_first_offered(ws, &headers);
    upgrade_with_limits(ws, &state).on_upgrade(move |socket| {
        tasks.track_future(async move {
            let life = open(socket, &state).await;
            life.link().send(WsOut::Text(message));
            life.close(Ending::Done, "connect to connectUrl");
            life.finish().await;
        })
    })
}

/// Percent-encodes what is not safe in a path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `GET /fs/{gametoken}/{protocolid}`: a GARP session.
pub async fn session(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Path((token, _protocol)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
) -> Response {
    let tasks = state.tasks.clone();
    let ws = ws::select_first_offered(ws, &headers);
    upgrade_with_limits(ws, &state)
        .on_upgrade(move |socket| tasks.track_future(run(socket, state, token, peer.0)))
}

/// What the lifecycle needs of GARP: its frames are plain text; it tells nobody why it
/// closes (the reference server does not) and does not ping.
const RULES: EndpointRules<WsOut> = EndpointRules {
    endpoint: Endpoint::Garp,
    close: |ending, reason| WsOut::Close(close::code(Endpoint::Garp, ending), reason),
    farewell: |_| None,
    ping: None,
};

/// A GARP socket on the one lifecycle: its queue and writer, and its endings.
async fn open(socket: WebSocket, state: &AppState) -> Lifecycle<WsOut> {
    let queue = Outbound::<WsOut>::bounded(state.config.limits.outbound_queue.max(8));
    let connection = ws::WsConnection::open(socket, state, Endpoint::Garp, queue, |out| out);
    Lifecycle::start(connection, RULES, state).await
}

/// The fields of a `.SetWageRequest`.
struct SetWage {
    auth_token: String,
    game_id: String,
    user_id: String,
    api_key: Option<String>,
    wage: Option<i64>,
    currency: Option<String>,
}

/// One GARP socket: its game, its session, and the players it has spoken for.
struct GarpSocket {
    state: AppState,
    conn: ConnId,
    peer: SocketAddr,
    game: WagerGame,
    session_id: String,
    /// Players whose room chat the simulation pushes to this socket.
    listening: HashSet<Uuid>,
    chat: mpsc::Sender<RoomChat>,
}

/// Room chat waiting to be written to one socket; more than this and it is dropped.
const CHAT_QUEUE: usize = 64;

/// The next GARP request's text (keep-alives and binary frames answered here); `None`
/// once the connection is over.
async fn next_text(life: &mut Lifecycle<WsOut>, status: &Status) -> Option<String> {
    loop {
        match life.next(status).await? {
            Next::Text(text) if garp::is_keep_alive(&text) => {}
            Next::Text(text) => return Some(text.to_string()),
            Next::Binary(_) => {
                let answer = garp::error(
                    garp::ERROR_RESPONSE,
                    &Value::Null,
                    None,
                    "binary frames are not part of GARP: send JSON text",
                );
                life.link().send(WsOut::Text(answer));
            }
            Next::Timer => {}
        }
    }
}

async fn ask(state: &AppState, op: WagerOp) -> Result<WagerReply, DomainError> {
    state
        .inbox
        .ask(|reply| Command::to(WagerRequest { op, reply }))
        .await
        .map_err(|_| DomainError::Busy)?
}

async fn run(socket: WebSocket, state: AppState, token: String, peer: SocketAddr) {
    let mut life = open(socket, &state).await;
    let link = life.link().clone();
    let game = match ask(&state, WagerOp::Game { api_key: token }).await {
        Ok(WagerReply::Game(game)) if game.online => game,
        Err(DomainError::Busy) => {
            link.send(WsOut::Text(garp::connect_error(texts::BUSY)));
            life.end(Ending::Busy);
            drop(link);
            return life.finish().await;
        }
        _ => {
            link.send(WsOut::Text(garp::connect_error(texts::UNKNOWN_GAME_ID)));
            life.close(Ending::Refused, "unknown game");
            drop(link);
            return life.finish().await;
        }
    };
    let Some(session_id) = handshake(&mut life, &state, &game).await else {
        drop(link);
        return life.finish().await;
    };
    let (chat, mut chat_rx) = mpsc::channel(CHAT_QUEUE);
    let mut session = GarpSocket {
        state: state.clone(),
        conn: life.conn(),
        peer,
        game,
        session_id,
        listening: HashSet::new(),
        chat,
    };
    // Room chat the simulation pushes goes out between answers, in the order it came.
    let forwarding = tokio_util::sync::CancellationToken::new();
    let forwarder = tokio::spawn({
        let (link, stop) = (link.clone(), forwarding.clone());
        async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    chat = chat_rx.recv() => match chat {
                        Some(chat) => link.send(WsOut::Text(garp::room_chat(&chat))),
                        None => break,
                    },
                }
            }
        }
    });
    let cfg = &state.config.wagers;
    let mut bucket = super::RateBucket::new(cfg.requests_per_second, cfg.request_burst);
    let status = Status {
        authenticated: true,
        ..Status::default()
    };
    while let Some(text) = next_text(&mut life, &status).await {
        let answer = match garp::decode(&text) {
            Ok(frame) if !bucket.take() => {
                let class = garp::response_class(&frame.class);
                garp::error(&class, &frame.request_id, None, texts::RATE_LIMITED)
            }
            Ok(frame) => session.answer(frame).await,
            Err(e) => garp::error(&e.response_class, &e.request_id, None, &e.details),
        };
        link.send(WsOut::Text(answer));
    }
    if let Some(&user_id) = session.listening.iter().next() {
        let caller = LobbyCaller {
            user_id,
            username: String::new(),
            conn: session.conn,
        };
        let _ = state.inbox.send(Command::to(LobbyRequest {
            caller,
            op: LobbyOp::Unlisten,
            reply: tokio::sync::oneshot::channel().0,
        }));
    }
    forwarding.cancel();
    let _ = forwarder.await;
    drop(session);
    drop(link);
    life.finish().await;
}

/// Sends the nonce and checks the answer; the session id on success. Anything else
/// before that gets an error; a wrong hmac closes the socket, and so does no answer
/// within the unauthenticated timeout.
async fn handshake(
    life: &mut Lifecycle<WsOut>,
    state: &AppState,
    game: &WagerGame,
) -> Option<String> {
    let link = life.link().clone();
    let nonce = alphanumeric(32);
    let challenge = garp::challenge(&nonce);
    link.send(WsOut::Text(challenge));
    let waiting = Status::default();
    loop {
        let text = next_text(life, &waiting).await?;
        let frame = match garp::decode(&text) {
            Ok(frame) => frame,
            Err(e) => {
                let answer = garp::error(&e.response_class, &e.request_id, None, &e.details);
                link.send(WsOut::Text(answer));
                continue;
            }
        };
        match frame.request {
            Request::Connect {
                hmac,
                apikey,
                session_id,
            } => {
                if apikey.is_some_and(|key| key != game.api_key) {
                    link.send(WsOut::Text(garp::connect_error(texts::UNKNOWN_GAME_ID)));
                    life.close(Ending::Refused, "unknown game");
                    return None;
                }
                if hmac_matches(&game.api_secret, &nonce, &hmac) {
                    let players = &state.garp_players;
                    let session_id = resumed_or_new(players, &game.game_id, session_id);
                    let welcome = garp::connected(&frame.request_id, &session_id);
                    link.send(WsOut::Text(welcome));
                    return Some(session_id);
                }
                link.send(WsOut::Text(garp::connect_error(texts::HMAC_MISMATCH)));
                life.close(Ending::Refused, "hmac mismatch");
                return None;
            }
            _ => {
                let class = garp::response_class(&frame.class);
                let answer = garp::error(&class, &frame.request_id, None, texts::NOT_CONNECTED);
                link.send(WsOut::Text(answer));
            }
        }
    }
}

/// The session a reconnecting client presents, if it is a live one of this game; else a
/// new one.
fn resumed_or_new(players: &GarpPlayers, game_id: &str, presented: Option<String>) -> String {
    if let Some(id) = presented.filter(|id| players.resume_session(game_id, id)) {
        return id;
    }
    let id = grouped_token();
    players.open_session(game_id, id.clone());
    id
}

/// base64(HMAC-SHA256(key = secret, message = nonce)) == `hmac`, in constant time.
fn hmac_matches(secret: &str, nonce: &str, hmac: &str) -> bool {
    let Ok(claimed) = base64::engine::general_purpose::STANDARD.decode(hmac.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(nonce.as_bytes());
    mac.verify_slice(&claimed).is_ok()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl GarpSocket {
    async fn answer(&mut self, frame: Frame) -> String {
        let class = garp::response_class(&frame.class);
        let id = &frame.request_id;
        let token = frame.request.auth_token().map(str::to_owned);
        match self.outcome(frame.request, id).await {
            Ok(fields) => garp::response(&class, id, fields),
            Err(details) => garp::error(&class, id, token.as_deref(), &details),
        }
    }

    /// The answer's fields, or the error's details.
    async fn outcome(&mut self, request: Request, id: &Value) -> Result<Value, String> {
        match request {
            Request::Connect { .. } => Err(texts::ALREADY_CONNECTED.into()),
            Request::Authentication {
                username,
                userpass,
                apikey,
            } => {
                if apikey != self.game.api_key {
                    return Err(texts::API_KEY_MISMATCH.into());
                }
                self.authenticate(&username, userpass)
                    .await
                    .map_err(Into::into)
            }
            request @ (Request::AccountDetails { .. }
            | Request::SetWage { .. }
            | Request::GameInfo { .. }
            | Request::FinishGame { .. }
            | Request::GameLadder { .. }) => self.wager_outcome(request, id).await,
            request => self.room_outcome(request).await,
        }
    }

    /// The answer to a request about coins: balances, wages, plays and the ladder.
    async fn wager_outcome(&mut self, request: Request, id: &Value) -> Result<Value, String> {
        match request {
            Request::AccountDetails {
                auth_token,
                user_id,
            } => {
                let player = self
                    .signed(&auth_token, &user_id, texts::ACCOUNT_AUTH)
                    .await?;
                let value = self.balance(player.user_id).await.map_err(service_text)?;
                Ok(garp::balance(value))
            }
            Request::SetWage {
                auth_token,
                game_id,
                user_id,
                api_key,
                wage,
                currency,
            } => {
                let wage = SetWage {
                    auth_token,
                    game_id,
                    user_id,
                    api_key,
                    wage,
                    currency,
                };
                self.set_wage(wage, id).await
            }
            Request::GameInfo { apikey } => {
                if apikey != self.game.api_key {
                    return Err(texts::API_KEY_MISMATCH.into());
                }
                let game = self.refresh_game().await.map_err(service_text)?;
                Ok(garp::game_info(&self.session_id, &terms(&game)))
            }
            Request::FinishGame {
                auth_token,
                user_id,
                play_id,
                score,
            } => {
                let auth_token = auth_token.ok_or(texts::AUTH_FAILING)?;
                let player = self
                    .signed(&auth_token, &user_id, texts::AUTH_FAILING)
                    .await?;
                let play_id = play_id.ok_or(texts::PLAY_ID_MISSING)?;
                let score = score.ok_or(texts::INVALID_SCORE)?;
                let finished = self
                    .state
                    .store
                    .write(move |conn| wagers::finish_play(conn, player.user_id, play_id, score))
                    .await;
                match finished {
                    Ok(Ok(())) => Ok(garp::play_finished(&auth_token)),
                    Ok(Err(refused)) => Err(match refused {
                        DomainError::NotFound(_) => texts::NO_PLAY,
                        DomainError::Forbidden(_) => texts::NOT_YOUR_PLAY,
                        DomainError::Conflict(_) => texts::PLAY_FINISHED,
                        _ => texts::PERIOD_RESOLVED,
                    }
                    .into()),
                    Err(e) => Err(service_text(e.into()).into()),
                }
            }
            Request::GameLadder {
                auth_token,
                user_id,
                game_id,
            } => {
                let player = self
                    .signed(&auth_token, &user_id, texts::AUTH_FAILING)
                    .await?;
                self.check_game(&game_id)?;
                let (ladder, time_left) =
                    self.ladder(player.user_id).await.map_err(service_text)?;
                Ok(garp::ladder(&auth_token, ladder.as_ref(), time_left))
            }
            _ => Err(texts::SERVER_ERROR.into()),
        }
    }

    /// The answer to a request about rooms: making, joining, leaving, starting, listing
    /// them, and their chat.
    async fn room_outcome(&mut self, request: Request) -> Result<Value, String> {
        match request {
            Request::CreateRoom {
                auth_token,
                user_id,
                game_id,
                seats,
            } => {
                let player = self
                    .signed(&auth_token, &user_id, texts::AUTH_FAILING)
                    .await?;
                self.check_game(&game_id)?;
                let op = LobbyOp::CreateRoom { game_id, seats };
                self.room_answer(&player, &auth_token, op).await
            }
            Request::JoinRoom {
                auth_token,
                user_id,
                game_id,
                serial,
            } => {
                let player = self
                    .signed(&auth_token, &user_id, texts::AUTH_FAILING)
                    .await?;
                self.check_game(&game_id)?;
                let serial = serial.ok_or(texts::ROOM_SERIAL_MISSING)?;
                let op = LobbyOp::JoinRoomBySerial { game_id, serial };
                self.room_answer(&player, &auth_token, op).await
            }
            Request::LeaveRoom {
                auth_token,
                user_id,
                room_id,
            } => {
                let player = self
                    .signed(&auth_token, &user_id, texts::AUTH_FAILING)
                    .await?;
                let op = LobbyOp::LeaveRoom {
                    room_id: room_id.clone(),
                };
                self.lobby(&player, op).await?;
                Ok(garp::room_left(&auth_token, &room_id))
            }
            Request::LockRoom {
                auth_token,
                room_id,
            } => {
                let player = self.signed_by_token(&auth_token).await?;
                match self.lobby(&player, LobbyOp::StartRoom { room_id }).await? {
                    LobbyReply::Started { room, host, port } => {
                        Ok(garp::room_locked(&auth_token, &room, &host, port))
                    }
                    _ => Err(texts::SERVER_ERROR.into()),
                }
            }
            Request::QueryRoom {
                auth_token,
                game_id,
            } => {
                let player = self.signed_by_token(&auth_token).await?;
                self.check_game(&game_id)?;
                match self.lobby(&player, LobbyOp::ListRooms).await? {
                    LobbyReply::Rooms(rooms) => {
                        let of_game = rooms.iter().filter(|r| r.game_id == game_id);
                        Ok(garp::rooms(&auth_token, &game_id, of_game))
                    }
                    _ => Err(texts::SERVER_ERROR.into()),
                }
            }
            Request::SendChat {
                auth_token,
                user_id,
                room_id,
                meta,
                msg,
            } => {
                let player = self
                    .signed(&auth_token, &user_id, texts::AUTH_FAILING)
                    .await?;
                let op = LobbyOp::Chat {
                    room_id: room_id.clone(),
                    meta,
                    message: msg,
                };
                match self.lobby(&player, op).await? {
                    LobbyReply::Chatted(delivered) => {
                        Ok(garp::chat_sent(&auth_token, &room_id, delivered))
                    }
                    _ => Err(texts::SERVER_ERROR.into()),
                }
            }
            _ => Err(texts::SERVER_ERROR.into()),
        }
    }

    /// A wage: coins from the player into the pot of the game's current period, and a
    /// play opened; the same `requestId` again is answered as the first time.
    async fn set_wage(&mut self, request: SetWage, id: &Value) -> Result<Value, String> {
        let SetWage {
            auth_token,
            game_id,
            user_id,
            api_key,
            wage,
            currency,
        } = request;
        let player = self
            .signed(&auth_token, &user_id, texts::AUTH_FAILING)
            .await?;
        self.check_game(&game_id)?;
        if api_key.is_some_and(|k| k != self.game.api_key) {
            return Err(texts::API_KEY_MISMATCH.into());
        }
        if currency.is_some_and(|c| c != garp::CURRENCY) {
            return Err(texts::CURRENCY_UNSUPPORTED.into());
        }
        let amount = wage.filter(|w| *w > 0).ok_or(texts::INVALID_WAGE)?;
        let op = WagerOp::Wage {
            game_id,
            user_id: player.user_id,
            display_name: player.display_name,
            amount,
            session_id: self.session_id.clone(),
            request_id: request_key(id),
        };
        match ask(&self.state, op).await {
            Ok(WagerReply::Placed(receipt)) => {
                tracing::info!(
                    game = %receipt.game_id,
                    play = %receipt.play_id,
                    amount,
                    "wager placed"
                );
                self.state.metrics.wagers.inc();
                self.state
                    .metrics
                    .coins_wagered
                    .inc_by(u64::try_from(amount).unwrap_or(0));
                Ok(garp::wage_placed(&auth_token, &receipt))
            }
            Ok(_) => Err(texts::SERVER_ERROR.into()),
            Err(DomainError::NotFound(_)) => Err(texts::NO_GAME.into()),
            Err(DomainError::BadState(_)) => Err(texts::NOT_ENOUGH_COINS.into()),
            Err(e) => Err(service_text(e).into()),
        }
    }

    /// Refuses a request about another game than this socket's.
    fn check_game(&self, game_id: &str) -> Result<(), String> {
        if game_id == self.game.game_id {
            Ok(())
        } else {
            Err(texts::NO_GAME.into())
        }
    }

    /// The player behind `auth_token`, if the token is live for this game and names
    /// `user_id`; else `refusal`.
    async fn signed(
        &mut self,
        auth_token: &str,
        user_id: &str,
        refusal: &str,
    ) -> Result<GarpPlayer, String> {
        self.player_by_token(auth_token)
            .await
            .filter(|p| p.user_id.to_string() == user_id)
            .ok_or_else(|| refusal.to_owned())
    }

    /// The player behind a live `auth_token` of this game, for requests without `userId`.
    async fn signed_by_token(&mut self, auth_token: &str) -> Result<GarpPlayer, String> {
        self.player_by_token(auth_token)
            .await
            .ok_or_else(|| texts::AUTH_FAILING.to_owned())
    }

    /// The player behind a live `auth_token` of this game. The first time this socket
    /// speaks for a player, room chat for them starts coming here.
    async fn player_by_token(&mut self, auth_token: &str) -> Option<GarpPlayer> {
        let player = self
            .state
            .garp_players
            .player(&self.game.game_id, auth_token)?;
        if self.listening.insert(player.user_id) {
            let push = self.chat.clone();
            // Best effort: if the simulation is busy, chat waits for the next request.
            if self.lobby(&player, LobbyOp::Listen { push }).await.is_err() {
                self.listening.remove(&player.user_id);
            }
        }
        Some(player)
    }

    /// Asks the lobby in the simulation, as `player` on this socket.
    async fn lobby(&self, player: &GarpPlayer, op: LobbyOp) -> Result<LobbyReply, String> {
        let caller = LobbyCaller {
            user_id: player.user_id,
            username: player.username.clone(),
            conn: self.conn,
        };
        let answer = self
            .state
            .inbox
            .ask(|reply| Command::to(LobbyRequest { caller, op, reply }))
            .await
            .map_err(|_| texts::BUSY.to_owned())?;
        answer.map_err(|e| match e {
            DomainError::Busy
            | DomainError::Unavailable
            | DomainError::Internal(_)
            | DomainError::RateLimited { .. } => service_text(e).to_owned(),
            refused => refused.to_string(),
        })
    }

    /// A room request's answer: the room as GARP shows it.
    async fn room_answer(
        &self,
        player: &GarpPlayer,
        auth_token: &str,
        op: LobbyOp,
    ) -> Result<Value, String> {
        match self.lobby(player, op).await? {
            LobbyReply::Room(room) => Ok(garp::room(auth_token, &room)),
            _ => Err(texts::SERVER_ERROR.into()),
        }
    }

    async fn authenticate(
        &mut self,
        username: &str,
        userpass: String,
    ) -> Result<Value, &'static str> {
        let checked = self
            .state
            .accounts
            .check_password(
                username,
                Credential::Password(userpass),
                Some(self.peer.ip()),
            )
            .await;
        let account = match checked {
            Ok(account) => account,
            Err(DomainError::InvalidCredentials | DomainError::InvalidInput(_)) => {
                return Err(texts::USER_PASSWORD);
            }
            // Only said to who knows the password, as on every protocol.
            Err(DomainError::Forbidden(_)) => return Err(texts::ACCOUNT_DISABLED),
            Err(e) => return Err(service_text(e)),
        };
        let (user_id, game_id) = (account.user_id, self.game.game_id.clone());
        let new_player = self
            .state
            .store
            .read(move |conn| wagers::is_new_player(conn, user_id, &game_id))
            .await
            .map_err(|e| service_text(e.into()))?;
        let auth_token = alphanumeric(24);
        self.state.garp_players.issue(
            &self.game.game_id,
            auth_token.clone(),
            GarpPlayer {
                user_id: account.user_id,
                username: account.username.clone(),
                display_name: account.display_name.clone(),
            },
        );
        Ok(garp::authenticated(
            &auth_token,
            &account,
            new_player,
            &terms(&self.game),
        ))
    }

    async fn balance(&self, user_id: Uuid) -> Result<i64, DomainError> {
        let account = wallet::user_account(user_id);
        Ok(self
            .state
            .store
            .read(move |conn| wallet::balance(conn, &account))
            .await?)
    }

    /// The game as the simulation sees it now (terms and current period may have moved).
    async fn refresh_game(&mut self) -> Result<WagerGame, DomainError> {
        let op = WagerOp::Game {
            api_key: self.game.api_key.clone(),
        };
        match ask(&self.state, op).await? {
            WagerReply::Game(game) => {
                self.game = game.clone();
                Ok(game)
            }
            WagerReply::Placed(_) => Err(DomainError::Internal("unexpected reply".into())),
        }
    }

    /// The current period's ladder as the caller sees it (none while no period is open),
    /// and the seconds left in the period.
    async fn ladder(
        &mut self,
        user_id: Uuid,
    ) -> Result<(Option<wagers::Ladder>, i64), DomainError> {
        let game = self.refresh_game().await?;
        let Some(period) = game.period else {
            return Ok((None, game.terms.period_secs));
        };
        let ends_at = period.ends_at;
        let ladder = self
            .state
            .store
            .read(move |conn| wagers::ladder(conn, &period, user_id, LADDER_LINES))
            .await?;
        let time_left = ((ends_at - now_ms()).max(0) + 999) / 1000;
        Ok((Some(ladder), time_left))
    }
}

/// A game's terms as GARP answers tell them.
fn terms(game: &WagerGame) -> garp::GameTerms<'_> {
    garp::GameTerms {
        game_id: &game.game_id,
        description: &game.description,
        wage: game.terms.wage,
        shares_permille: &game.terms.shares_permille,
    }
}

/// The request id as the key of an idempotent request (`"7"` and `7` are the same).
fn request_key(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The text for a failure that is the server's, not the client's.
fn service_text(e: DomainError) -> &'static str {
    match e {
        DomainError::Busy => texts::BUSY,
        DomainError::Unavailable => texts::UNAVAILABLE,
        DomainError::RateLimited { .. } => texts::RATE_LIMITED,
        _ => texts::SERVER_ERROR,
    }
}
