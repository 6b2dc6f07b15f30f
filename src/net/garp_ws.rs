//! GARP over WebSocket (garp.md, garp-notes.md).
//!
//! `GET /ws/{gametoken}/{protocolid}` only redirects: it answers the `connectUrl` of the node
//! that serves the game (this one unless `wagers.connect_base_url` says otherwise) and
//! closes. `GET /fs/{gametoken}/{protocolid}` is the session: the game token is checked, a
//! nonce is sent, and the client proves it holds the game's secret with
//! base64(HMAC-SHA256(secret, nonce)). After that it authenticates players with their
//! account passwords and places wages for them.
//!
//! GARP is strictly request/response, so one task reads a request, answers it and reads
//! the next. Player `authToken`s belong to the session (the connection): a reconnecting
//! client authenticates its players again. Wages go through the simulation (which decides
//! the period); balances, finishes and ladders go to the store directly.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::listener::PeerAddr;
use super::{AppState, ConnectionGauge, ws};
use crate::bridge::Command;
use crate::protocol::garp::{self, Frame, Request, texts};
use crate::services::DomainError;
use crate::services::accounts::Credential;
use crate::services::catalog::{alphanumeric, grouped_token};
use crate::services::{wagers, wallet};
use crate::sim::wagers::{WagerGame, WagerOp, WagerReply, WagerRequest};

const PROTOCOL: &str = "garp";
/// Close code for a refused game token or a failed HMAC (the reference's).
const CLOSE_REFUSED: u16 = 4000;
/// Ladder lines sent at most.
const LADDER_LINES: usize = 100;
const CURRENCY: &str = "ATH";

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
    let message = garp::response(
        garp::CONNECT_REQUEST,
        &json!("0"),
        json!({ "connectUrl": url }),
    );
    let tasks = state.tasks.clone();
    upgrade_with_limits(ws, &state).on_upgrade(move |mut socket| {
        tasks.track_future(async move {
            let _gauge = ConnectionGauge::open(&state.metrics, PROTOCOL);
            state.metrics.sent(PROTOCOL, message.len());
            if socket.send(Message::Text(message.into())).await.is_ok() {
                close(&mut socket, 1000, "connect to connectUrl").await;
            }
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
) -> Response {
    let tasks = state.tasks.clone();
    upgrade_with_limits(ws, &state)
        .on_upgrade(move |socket| tasks.track_future(run(socket, state, token, peer.0)))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// A player authenticated in this session.
#[derive(Debug, Clone)]
struct Player {
    user_id: Uuid,
    display_name: String,
}

/// One GARP session: its game and the players authenticated in it.
struct Session {
    state: AppState,
    peer: SocketAddr,
    game: WagerGame,
    session_id: String,
    players: HashMap<String, Player>,
}

/// What happened to the socket while waiting for a message.
enum Next {
    Text(String),
    Closed,
}

async fn next_text(socket: &mut WebSocket, state: &AppState) -> Next {
    loop {
        let message = tokio::select! {
            _ = state.shutdown.cancelled() => {
                close(socket, ws::close::GOING_AWAY, "server shutting down").await;
                return Next::Closed;
            }
            message = socket.recv() => message,
        };
        match message {
            None | Some(Ok(Message::Close(_))) => return Next::Closed,
            Some(Ok(Message::Text(text))) => {
                state.metrics.received(PROTOCOL, text.len());
                if !garp::is_keep_alive(&text) {
                    return Next::Text(text.to_string());
                }
            }
            Some(Ok(Message::Binary(bytes))) => {
                state.metrics.received(PROTOCOL, bytes.len());
                let answer = garp::error(
                    garp::ERROR_RESPONSE,
                    &Value::Null,
                    None,
                    "binary frames are not part of GARP: send JSON text",
                );
                if send(socket, state, answer).await.is_err() {
                    return Next::Closed;
                }
            }
            Some(Ok(_)) => {} // ping/pong
            Some(Err(e)) => {
                if ws::is_too_big(&e) {
                    close(socket, ws::close::TOO_BIG, "message too big").await;
                }
                return Next::Closed;
            }
        }
    }
}

async fn send(socket: &mut WebSocket, state: &AppState, text: String) -> Result<(), ()> {
    state.metrics.sent(PROTOCOL, text.len());
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

async fn ask(state: &AppState, op: WagerOp) -> Result<WagerReply, DomainError> {
    state
        .inbox
        .ask(|reply| Command::Wager(WagerRequest { op, reply }))
        .await
        .map_err(|_| DomainError::Busy)?
}

async fn run(mut socket: WebSocket, state: AppState, token: String, peer: SocketAddr) {
    let _gauge = ConnectionGauge::open(&state.metrics, PROTOCOL);
    let game = match ask(&state, WagerOp::Game { api_key: token }).await {
        Ok(WagerReply::Game(game)) if game.online => game,
        Err(DomainError::Busy) => {
            let _ = send(&mut socket, &state, garp::connect_error(texts::BUSY)).await;
            close(&mut socket, 1013, "server busy").await;
            return;
        }
        _ => {
            let refusal = garp::connect_error(texts::UNKNOWN_GAME_ID);
            let _ = send(&mut socket, &state, refusal).await;
            close(&mut socket, CLOSE_REFUSED, "unknown game").await;
            return;
        }
    };
    let Some(session_id) = handshake(&mut socket, &state, &game).await else {
        return;
    };
    let mut session = Session {
        state: state.clone(),
        peer,
        game,
        session_id,
        players: HashMap::new(),
    };
    let cfg = &state.config.wagers;
    let mut bucket = super::RateBucket::new(cfg.requests_per_second, cfg.request_burst);
    while let Next::Text(text) = next_text(&mut socket, &state).await {
        let answer = match garp::decode(&text) {
            Ok(frame) if !bucket.take() => {
                let class = garp::response_class(&frame.class);
                garp::error(&class, &frame.request_id, None, texts::RATE_LIMITED)
            }
            Ok(frame) => session.answer(frame).await,
            Err(e) => garp::error(&e.response_class, &e.request_id, None, &e.details),
        };
        if send(&mut socket, &state, answer).await.is_err() {
            break;
        }
    }
}

/// Sends the nonce and checks the answer; the session id on success. Anything else
/// before that gets an error; a wrong hmac closes the socket.
async fn handshake(socket: &mut WebSocket, state: &AppState, game: &WagerGame) -> Option<String> {
    let nonce = alphanumeric(32);
    let challenge = garp::response(
        garp::CONNECT_RESPONSE,
        &json!("0"),
        json!({ "nonce": nonce }),
    );
    send(socket, state, challenge).await.ok()?;
    let deadline = tokio::time::Instant::now() + state.config.limits.unauthenticated_timeout();
    loop {
        let next = tokio::select! {
            next = next_text(socket, state) => next,
            _ = tokio::time::sleep_until(deadline) => {
                close(socket, ws::close::POLICY, "no handshake in time").await;
                return None;
            }
        };
        let Next::Text(text) = next else {
            return None;
        };
        let frame = match garp::decode(&text) {
            Ok(frame) => frame,
            Err(e) => {
                let answer = garp::error(&e.response_class, &e.request_id, None, &e.details);
                send(socket, state, answer).await.ok()?;
                continue;
            }
        };
        match frame.request {
            Request::Connect { hmac } => {
                if hmac_matches(&game.api_secret, &nonce, &hmac) {
                    let session_id = grouped_token();
                    let welcome = garp::response(
                        garp::CONNECT_RESPONSE,
                        &frame.request_id,
                        json!({ "sessionId": session_id }),
                    );
                    send(socket, state, welcome).await.ok()?;
                    return Some(session_id);
                }
                let _ = send(socket, state, garp::connect_error(texts::HMAC_MISMATCH)).await;
                close(socket, CLOSE_REFUSED, "hmac mismatch").await;
                return None;
            }
            _ => {
                let class = garp::response_class(&frame.class);
                let answer = garp::error(&class, &frame.request_id, None, texts::NOT_CONNECTED);
                send(socket, state, answer).await.ok()?;
            }
        }
    }
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

impl Session {
    async fn answer(&mut self, frame: Frame) -> String {
        let class = garp::response_class(&frame.class);
        let id = &frame.request_id;
        let fail = |token: Option<&str>, details: &str| garp::error(&class, id, token, details);
        match frame.request {
            Request::Connect { .. } => fail(None, texts::ALREADY_CONNECTED),
            Request::Authentication {
                username,
                userpass,
                apikey,
            } => {
                if apikey != self.game.api_key {
                    return fail(None, texts::API_KEY_MISMATCH);
                }
                match self.authenticate(&username, userpass).await {
                    Ok(fields) => garp::response(&class, id, fields),
                    Err(details) => fail(None, details),
                }
            }
            Request::AccountDetails {
                auth_token,
                user_id,
            } => {
                let Some(player) = self.player(&auth_token, &user_id) else {
                    return fail(Some(&auth_token), texts::ACCOUNT_AUTH);
                };
                match self.balance(player.user_id).await {
                    Ok(value) => {
                        garp::response(&class, id, json!({ "value": value, "currency": CURRENCY }))
                    }
                    Err(e) => fail(Some(&auth_token), service_text(&e)),
                }
            }
            Request::SetWage {
                auth_token,
                game_id,
                user_id,
                api_key,
                wage,
            } => {
                let Some(player) = self.player(&auth_token, &user_id) else {
                    return fail(Some(&auth_token), texts::AUTH_FAILING);
                };
                if game_id != self.game.game_id {
                    return fail(Some(&auth_token), texts::NO_GAME);
                }
                if api_key.is_some_and(|k| k != self.game.api_key) {
                    return fail(Some(&auth_token), texts::API_KEY_MISMATCH);
                }
                let Some(amount) = wage.filter(|w| *w > 0) else {
                    return fail(Some(&auth_token), texts::INVALID_WAGE);
                };
                let op = WagerOp::Wage {
                    game_id,
                    user_id: player.user_id,
                    display_name: player.display_name,
                    amount,
                    session_id: self.session_id.clone(),
                    request_id: request_key(id),
                };
                match ask(&self.state, op).await {
                    Ok(WagerReply::Placed(receipt)) => garp::response(
                        &class,
                        id,
                        json!({
                            "authToken": auth_token,
                            "value": receipt.balance,
                            "playid": receipt.play_id,
                            "gameid": receipt.game_id,
                            "currency": CURRENCY,
                            "status": "OK",
                            "reason": "",
                        }),
                    ),
                    Ok(_) => fail(Some(&auth_token), texts::SERVER_ERROR),
                    Err(DomainError::NotFound(_)) => fail(Some(&auth_token), texts::NO_GAME),
                    Err(DomainError::BadState(_)) => {
                        fail(Some(&auth_token), texts::NOT_ENOUGH_COINS)
                    }
                    Err(e) => fail(Some(&auth_token), service_text(&e)),
                }
            }
            Request::GameInfo { apikey } => {
                if apikey != self.game.api_key {
                    return fail(None, texts::API_KEY_MISMATCH);
                }
                match self.refresh_game().await {
                    Ok(game) => {
                        let shares = game.terms.shares_permille;
                        garp::response(
                            &class,
                            id,
                            json!({
                                "sessionId": self.session_id,
                                "gameId": game.game_id,
                                "wage": game.terms.wage.to_string(),
                                "player1": shares[0],
                                "player2": shares[1],
                                "player3": shares[2],
                                "player4": shares[3],
                                "player5": shares[4],
                                "scheme": "ladder",
                                "description": game.description,
                            }),
                        )
                    }
                    Err(e) => fail(None, service_text(&e)),
                }
            }
            Request::FinishGame {
                auth_token,
                user_id,
                play_id,
                score,
            } => {
                let Some(auth_token) = auth_token else {
                    return fail(None, texts::AUTH_FAILING);
                };
                let Some(player) = self.player(&auth_token, &user_id) else {
                    return fail(Some(&auth_token), texts::AUTH_FAILING);
                };
                let Some(play_id) = play_id else {
                    return fail(Some(&auth_token), texts::PLAY_ID_MISSING);
                };
                let Some(score) = score else {
                    return fail(Some(&auth_token), texts::INVALID_SCORE);
                };
                let finished = self
                    .state
                    .store
                    .write(move |conn| wagers::finish_play(conn, player.user_id, play_id, score))
                    .await;
                match finished {
                    Ok(Ok(())) => garp::response(
                        &class,
                        id,
                        json!({ "authToken": auth_token, "status": "OK" }),
                    ),
                    Ok(Err(refused)) => {
                        let details = match refused {
                            DomainError::NotFound(_) => texts::NO_PLAY,
                            DomainError::Forbidden(_) => texts::NOT_YOUR_PLAY,
                            DomainError::Conflict(_) => texts::PLAY_FINISHED,
                            _ => texts::PERIOD_RESOLVED,
                        };
                        fail(Some(&auth_token), details)
                    }
                    Err(e) => fail(Some(&auth_token), service_text(&e.into())),
                }
            }
            Request::GameLadder {
                auth_token,
                user_id,
                game_id,
            } => {
                let Some(player) = self.player(&auth_token, &user_id) else {
                    return fail(Some(&auth_token), texts::AUTH_FAILING);
                };
                if game_id != self.game.game_id {
                    return fail(Some(&auth_token), texts::NO_GAME);
                }
                match self.ladder(player.user_id).await {
                    Ok(fields) => garp::response(&class, id, fields),
                    Err(e) => fail(Some(&auth_token), service_text(&e)),
                }
            }
        }
    }

    /// The player behind `auth_token`, if the token is this session's and names `user_id`.
    fn player(&self, auth_token: &str, user_id: &str) -> Option<Player> {
        self.players
            .get(auth_token)
            .filter(|p| p.user_id.to_string() == user_id)
            .cloned()
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
            Err(e) => return Err(service_text(&e)),
        };
        let (user_id, game_id) = (account.user_id, self.game.game_id.clone());
        let new_player = self
            .state
            .store
            .read(move |conn| wagers::is_new_player(conn, user_id, &game_id))
            .await
            .map_err(|e| service_text(&e.into()))?;
        let auth_token = alphanumeric(24);
        self.players.insert(
            auth_token.clone(),
            Player {
                user_id: account.user_id,
                display_name: account.display_name.clone(),
            },
        );
        Ok(json!({
            "authToken": auth_token,
            "displayName": account.display_name,
            "newPlayer": new_player,
            "userId": account.user_id.to_string(),
            "gameId": self.game.game_id,
            "wage": self.game.terms.wage.to_string(),
        }))
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

    async fn ladder(&mut self, user_id: Uuid) -> Result<Value, DomainError> {
        let game = self.refresh_game().await?;
        let Some(period) = game.period else {
            return Ok(json!({
                "totalGames": 0,
                "inPlay": 0,
                "timeLeft": game.terms.period_secs,
                "ladder": [],
            }));
        };
        let ends_at = period.ends_at;
        let ladder = self
            .state
            .store
            .read(move |conn| wagers::ladder(conn, &period, user_id, LADDER_LINES))
            .await?;
        let line = |s: &wagers::Standing| {
            json!({
                "position": s.position,
                "score": s.score,
                "displayname": s.display_name,
                "amount": s.wage,
                "date": chrono::DateTime::from_timestamp_millis(s.finished_at)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            })
        };
        let lines: Vec<Value> = ladder
            .mine
            .iter()
            .chain(ladder.standings.iter())
            .map(line)
            .collect();
        let time_left = ((ends_at - now_ms()).max(0) + 999) / 1000;
        Ok(json!({
            "totalGames": ladder.total_plays,
            "inPlay": ladder.in_play,
            "timeLeft": time_left,
            "ladder": lines,
        }))
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
fn service_text(e: &DomainError) -> &'static str {
    match e {
        DomainError::Busy => texts::BUSY,
        DomainError::RateLimited { .. } => texts::RATE_LIMITED,
        _ => texts::SERVER_ERROR,
    }
}
