//! `GET /game`: realtime-game.md over WebSocket.
//!
//! The connection task decodes frames (answering `BAD_MESSAGE`/`UNKNOWN_TYPE` itself),
//! verifies the `auth.login` token and loads the pilot before the simulation hears of the
//! player, and forwards everything else as commands. Messages before login get
//! `NOT_AUTHENTICATED`; a connection that does not log in within the configured time is
//! closed.
//!
//! Inputs do not go through the inbox: the connection leaves the latest in its
//! [`InputSlot`] and the next tick takes it, which is all the simulation would have used.
//! An input therefore never wakes the simulation, and a client flooding inputs costs a
//! lock per input and nothing else. Before the ship is in a system, an input also asks the
//! simulation (at most once a tick, through the inbox, so after a join sent before it)
//! whether to refuse it with `NOT_JOINED`.

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::ws::{self, Ending, EndpointRules, Lifecycle, Next, Status, WsOut};
use crate::bridge::{Command, ConnId, Outbound};
use crate::protocol::game::binary::{self, ClientBinary};
use crate::protocol::game::{self, ClientMessage, Frame, GameOut, PROTOCOL_VERSION, codes};
use crate::services::pilots;
use crate::services::play::InputSlot;
use crate::sim::players::{ClientLink, GameCommand};

/// `GET /game`. A client logs in with `auth.login`; one that cannot send that first (or
/// prefers not to) may bring its token in the handshake instead (`?token=`, `Authorization:
/// Bearer`, or the subprotocol `access_token.<JWT>`): a bad one is refused with HTTP 401
/// and an `auth.error` body, a good one logs the connection in at once (`auth.ok` comes
/// unasked).
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let (token, subprotocol) = super::handshake_token(&headers, &query);
    if let Some(token) = &token
        && let Err(e) = state.accounts.verify(token)
    {
        let body = game::auth_error(&e, now_ms());
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    // The binary encoding when offered; otherwise the token's subprotocol, if it came in
    // one (a browser fails a connection whose offered subprotocols none was selected).
    let binary = offers(&headers, binary::SUBPROTOCOL);
    let ws = match subprotocol {
        _ if binary => ws.protocols([binary::SUBPROTOCOL]),
        Some(p) => ws.protocols([p]),
        None => ws,
    };
    let limit = state.config.limits.ws_message_bytes;
    let tasks = state.tasks.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(super::ws::READ_BUFFER)
        .on_upgrade(move |socket| tasks.track_future(run(socket, state, token, binary)))
}

/// Whether the handshake offers `subprotocol`.
fn offers(headers: &axum::http::HeaderMap, subprotocol: &str) -> bool {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == subprotocol)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the lifecycle needs of `/game`: its close, and an `error` before the server ends a
/// connection whose session ended or that never logged in.
const RULES: EndpointRules<GameOut> = EndpointRules {
    endpoint: ws::Endpoint::Game,
    close: |ending, reason| GameOut::Close { ending, reason },
    farewell: |ending| match ending {
        Ending::SessionEnded => Some(GameOut::Error {
            code: codes::INVALID_TOKEN,
            message: "your session was ended (logged out); closing".into(),
        }),
        Ending::NotAuthenticated => Some(GameOut::Error {
            code: codes::NOT_AUTHENTICATED,
            message: "log in with auth.login first; closing".into(),
        }),
        _ => None,
    },
    ping: None,
};

async fn run(socket: WebSocket, state: AppState, handshake_token: Option<String>, binary: bool) {
    let queue = Outbound::<GameOut>::bounded(state.config.game.outbound_queue.max(4));
    let mut seq = 0u64;
    let mut encoder = binary.then(binary::Encoder::default);
    let connection =
        ws::WsConnection::open(socket, &state, ws::Endpoint::Game, queue, move |out| {
            match game::encode(out) {
                Frame::Message(kind, payload) => {
                    seq += 1;
                    match &mut encoder {
                        Some(encoder) => {
                            WsOut::Binary(encoder.encode(&kind, seq, now_ms(), &payload).into())
                        }
                        None => WsOut::Text(game::envelope(&kind, seq, now_ms(), &payload)),
                    }
                }
                Frame::Close(code, reason) => WsOut::Close(code, reason),
            }
        });
    let mut life = Lifecycle::start(connection, RULES, &state).await;
    let (conn, link) = (life.conn(), life.link().clone());

    let inputs = InputSlot::default();
    let mut unjoined = Unjoined {
        tick: std::time::Duration::from_secs_f64(1.0 / f64::from(state.config.tick_hz.max(1))),
        asked: None,
        unasked: None,
    };
    // The session the login's token belongs to: a logout ends this connection too (the
    // token merely expiring does not).
    let mut status = Status::default();
    if let Some(token) = handshake_token {
        status.session = login(&state, &link, conn, &token, None, &inputs).await;
        status.authenticated = status.session.is_some();
    }
    loop {
        status.timer = unjoined.timer();
        let Some(input) = life.next(&status).await else {
            break;
        };
        let extra = |kind: &str| state.game_messages.contains(kind);
        let decoded = match input {
            Next::Timer => {
                if let Some(seq) = unjoined.due(inputs.is_joined()) {
                    send_game(&state, &link, GameCommand::InputBeforeJoin { conn, seq });
                }
                continue;
            }
            Next::Text(text) => game::decode_with(&text, extra),
            Next::Binary(bytes) if binary => match binary::decode_client(&bytes) {
                Ok(ClientBinary::Json(text)) => game::decode_with(text, extra),
                Ok(ClientBinary::Frame(frame)) => Ok(frame),
                Err(e) => Err(e),
            },
            Next::Binary(_) => {
                link.error(
                    codes::BAD_MESSAGE,
                    "binary frames are not part of this protocol (offer the subprotocol \
                     ecliptic.game.binary.v1 to speak its binary encoding)",
                );
                continue;
            }
        };
        let frame = match decoded {
            Ok(frame) => frame,
            Err(e) => {
                link.error(e.code, &e.message);
                continue;
            }
        };
        match frame.message {
            ClientMessage::Login {
                token,
                protocol_version,
            } => {
                if status.authenticated {
                    link.error(codes::ALREADY_AUTHENTICATED, "already logged in");
                } else if let Some(id) =
                    login(&state, &link, conn, &token, protocol_version, &inputs).await
                {
                    status.authenticated = true;
                    status.session = Some(id);
                }
            }
            _ if !status.authenticated => {
                link.error(codes::NOT_AUTHENTICATED, "log in with auth.login first");
            }
            ClientMessage::Input(input) => {
                if !inputs.offer(frame.seq, input)
                    && let Some(seq) = unjoined.arrived(frame.seq)
                {
                    send_game(&state, &link, GameCommand::InputBeforeJoin { conn, seq });
                }
            }
            ClientMessage::Extra { kind, payload } => {
                match state.game_messages.decode(&kind, payload) {
                    Ok(arrival) => {
                        let seq = frame.seq;
                        send_game(&state, &link, GameCommand::Extra { conn, seq, arrival });
                    }
                    Err(e) => link.error(e.code, &e.message),
                }
            }
            message => forward(&state, &link, conn, message),
        }
    }
    if status.authenticated {
        disconnect(&state, conn).await;
    }
    drop(link);
    life.finish().await;
}

/// Inputs sent before the player joined: the simulation is asked about them (to refuse
/// them with `NOT_JOINED`) at most once a tick, in order after any join sent before;
/// inputs in between are asked about when the tick is over.
struct Unjoined {
    tick: std::time::Duration,
    /// When the simulation was last asked.
    asked: Option<tokio::time::Instant>,
    /// The highest `seq` sent since, not asked about yet.
    unasked: Option<u64>,
}

impl Unjoined {
    /// When the inputs not asked about yet are due.
    fn timer(&self) -> Option<tokio::time::Instant> {
        self.unasked.map(|_| {
            self.asked
                .map_or_else(tokio::time::Instant::now, |at| at + self.tick)
        })
    }

    /// Input `seq` found the player not joined: the `seq` to ask about now, if it is time.
    fn arrived(&mut self, seq: u64) -> Option<u64> {
        let now = tokio::time::Instant::now();
        if self.asked.is_none_or(|at| now >= at + self.tick) {
            self.asked = Some(now);
            Some(seq.max(self.unasked.take().unwrap_or(0)))
        } else {
            self.unasked = self.unasked.max(Some(seq));
            None
        }
    }

    /// The timer is due: the `seq` to ask about, unless the player has joined since.
    fn due(&mut self, joined: bool) -> Option<u64> {
        let seq = self.unasked.take()?;
        if joined {
            return None;
        }
        self.asked = Some(tokio::time::Instant::now());
        Some(seq)
    }
}

/// Verifies the token and hands the player to the simulation; the token's session on
/// success.
async fn login(
    state: &AppState,
    link: &ClientLink,
    conn: ConnId,
    token: &str,
    protocol_version: Option<u64>,
    inputs: &InputSlot,
) -> Option<uuid::Uuid> {
    let auth_error = |code: &str, message: &str| {
        link.send(GameOut::message(
            "auth.error",
            &game::ErrorPayload { code, message },
        ));
    };
    if let Some(version) = protocol_version
        && version != PROTOCOL_VERSION
    {
        auth_error(
            codes::UNSUPPORTED_VERSION,
            &format!(
                "protocol_version {version} is not supported; this server speaks {PROTOCOL_VERSION}"
            ),
        );
        return None;
    }
    let identity = match state.accounts.verify(token) {
        Ok(identity) => identity,
        Err(e) => {
            auth_error(game::auth_code_for(&e), &e.to_string());
            return None;
        }
    };
    let node = state.cluster.node_id().to_owned();
    let checked_out = match pilots::check_out(&state.store, identity.user_id, node).await {
        Ok(checked_out) => checked_out,
        Err(e) => {
            tracing::error!("checking out pilot {}: {e}", identity.user_id);
            let (code, message) = if e.is_unavailable() {
                (
                    codes::SERVER_BUSY,
                    "the database is unavailable; try again shortly",
                )
            } else {
                (codes::SERVER_ERROR, "could not load your pilot; try again")
            };
            auth_error(code, message);
            return None;
        }
    };
    state.cluster.tell(crate::sim::nodes::NodeNote::PilotTaken {
        user_id: identity.user_id,
        epoch: checked_out.epoch,
    });
    let session_id = identity.session_id;
    let command = Command::to(GameCommand::Connect(crate::sim::players::Login {
        conn,
        user_id: identity.user_id,
        username: identity.username,
        saved: checked_out.saved,
        epoch: checked_out.epoch,
        link: link.clone(),
        inputs: inputs.clone(),
    }));
    if state.inbox.send(command).is_err() {
        auth_error(codes::SERVER_BUSY, "the server is busy; try again shortly");
        return None;
    }
    Some(session_id)
}

fn forward(state: &AppState, link: &ClientLink, conn: ConnId, message: ClientMessage) {
    let command = match message {
        ClientMessage::Login { .. } | ClientMessage::Input(_) | ClientMessage::Extra { .. } => {
            return;
        }
        ClientMessage::JoinSystem { system_id } => GameCommand::Join { conn, system_id },
        ClientMessage::Trade {
            side,
            station_id,
            commodity_id,
            quantity,
        } => GameCommand::Trade {
            conn,
            side,
            station_id,
            commodity_id,
            quantity,
        },
        ClientMessage::Repair { station_id } => GameCommand::Repair { conn, station_id },
    };
    send_game(state, link, command);
}

fn send_game(state: &AppState, link: &ClientLink, command: GameCommand) {
    // Its replies have a slot in the queue before the next request is read.
    let command = Command::to(command).holding(link.in_flight());
    if state.inbox.send(command).is_err() {
        link.error(codes::SERVER_BUSY, "the server is busy; try again shortly");
    }
}

/// Tells the simulation the connection is gone; waits for room in the inbox rather than
/// lose the message (a lost disconnect would leave a ship behind).
async fn disconnect(state: &AppState, conn: ConnId) {
    let mut wait = std::time::Duration::from_millis(1);
    for _ in 0..50 {
        if state
            .inbox
            .send(Command::to(GameCommand::Disconnect { conn }))
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_millis(100));
    }
    tracing::error!(conn, "could not deliver a game disconnect: inbox full");
}
