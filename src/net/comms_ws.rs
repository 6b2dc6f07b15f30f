//! `GET /ws`: comms-ws.md over WebSocket.
//!
//! The token is checked before the upgrade (query `token`, `Authorization: Bearer`, or the
//! subprotocol `access_token.<JWT>`, which the handshake then names); without a valid one
//! the answer is HTTP 401. After the upgrade the welcome `Status` comes first, then any
//! direct messages that waited in the mailbox. Per connection: a token bucket (429), pings
//! to quiet connections (closed when silent too long), and the token's expiry
//! (`AuthStatus token_expiring`, then close 4001 unless `Refresh` brought a new token).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::AppState;
use super::ws::{self, Ending, EndpointRules, Lifecycle, Next, Ping, Status, WsOut};
use crate::bridge::{ByteBudget, Command, Outbound};
use crate::protocol::close;
use crate::protocol::comms::{self as wire, ClientMessage, Details, codes};
use crate::services::accounts::{Identity, Role};
use crate::services::{DomainError, mailbox};
use crate::sim::comms::{self, CommsCommand, CommsLink, CommsOut, DirectOutcome, ExtensionCall};

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(wire::unauthorized(message)),
    )
        .into_response()
}

pub async fn upgrade(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (token, subprotocol) = super::handshake_token(&headers, &query);
    let Some(token) = token else {
        return unauthorized(
            "a token is required: ?token=, Authorization: Bearer, or subprotocol access_token.<JWT>",
        );
    };
    let identity = match state.accounts.verify(&token) {
        Ok(identity) => identity,
        Err(e) => return unauthorized(&e.to_string()),
    };
    let ws = match (ws, subprotocol) {
        (Err(rejection), _) => return rejection.into_response(),
        (Ok(ws), Some(p)) => ws.protocols([p]),
        (Ok(ws), None) => ws,
    };
    let limit = state.config.limits.ws_message_bytes;
    let tasks = state.tasks.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(super::ws::READ_BUFFER)
        .on_upgrade(move |socket| tasks.track_future(run(socket, state, identity)))
}

/// What a connection task holds.
struct Conn {
    state: AppState,
    link: CommsLink,
    conn: u64,
    identity: Identity,
}

impl Conn {
    fn text(&self, frame: Bytes) {
        self.link.send(CommsOut::Text(frame));
    }

    fn error(&self, code: u16, message: &str, details: Value) {
        self.text(wire::error(code, message, details));
    }

    fn refuse(&self, code: u16, message: &str, details: Details) {
        self.text(wire::error_with(code, message, details));
    }

    fn domain_error(&self, e: &DomainError, details: Details) {
        self.refuse(wire::code_for(e), &e.to_string(), details);
    }

    fn hub(&self, cmd: CommsCommand) -> bool {
        if self.state.inbox.send(Command::to(cmd)).is_err() {
            self.error(
                codes::UNAVAILABLE,
                "the server is busy; try again shortly",
                Value::Null,
            );
            return false;
        }
        true
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> CommsCommand) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        if !self.hub(make(tx)) {
            return None;
        }
        match rx.await {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(codes::INTERNAL, "the hub did not answer", Value::Null);
                None
            }
        }
    }
}

/// How long a publication's answer waits for the other nodes' counts of deliveries.
const COUNTS_WAIT: Duration = Duration::from_millis(500);

/// Publishes `frame` on `topic` (kept in the topic's history as `record`); how many
/// connections it reached: with `everywhere`, on every node of a cluster (each counts its
/// own back, which the answer waits for), else on this one.
pub(crate) async fn publish(
    state: &AppState,
    topic: String,
    (frame, record): (CommsOut, Option<Value>),
    everywhere: bool,
) -> Result<usize, DomainError> {
    let mut elsewhere =
        (everywhere && state.cluster.is_clustered()).then(|| state.cluster.expect_counts());
    let published = state
        .inbox
        .ask(|reply| {
            Command::to(CommsCommand::Publish {
                topic,
                frame,
                record,
                count_remote: elsewhere.as_ref().map(|e| e.id().to_owned()),
                reply: Some(reply),
            })
        })
        .await?;
    let remote = match &mut elsewhere {
        Some(counts) => counts.sum(published.nodes_asked, COUNTS_WAIT).await,
        None => 0,
    };
    Ok(published.here + remote)
}

/// What the lifecycle needs of `/ws`: its close, and its pings (a WebSocket ping; the
/// pong, or anything else heard, counts as hearing back).
fn rules(cfg: &crate::config::CommsConfig) -> EndpointRules<CommsOut> {
    EndpointRules {
        endpoint: ws::Endpoint::Comms,
        close: CommsOut::Close,
        farewell: |_| None,
        ping: Some(Ping {
            every: Duration::from_secs(cfg.ping_interval_secs.max(1)),
            silence: Duration::from_secs(cfg.pong_timeout_secs),
            frame: || CommsOut::Ping,
        }),
    }
}

async fn run(socket: WebSocket, state: AppState, identity: Identity) {
    let connection_id = uuid::Uuid::new_v4().to_string();
    let (outbound, rx) = Outbound::<CommsOut>::bounded(state.config.limits.outbound_queue);
    // A reader that falls behind is closed once this many bytes wait for it, whatever
    // their number.
    let budget = ByteBudget::new(state.config.comms.outbound_bytes);
    let outbound = outbound.with_byte_budget(budget.clone(), CommsOut::weight);
    let queue = (outbound, rx);
    let window = Some(state.config.comms.coalesce_window()).filter(|w| !w.is_zero());
    let connection = ws::WsConnection::open_coalescing(
        socket,
        &state,
        ws::Endpoint::Comms,
        queue,
        window,
        move |out| {
            budget.give_back(out.weight());
            match out {
                CommsOut::Text(bytes) => WsOut::SharedText(bytes),
                CommsOut::Binary(bytes) => WsOut::Binary(bytes),
                CommsOut::Ping => WsOut::Ping,
                CommsOut::Close(ending, reason) => {
                    WsOut::Close(close::code(ws::Endpoint::Comms, ending), reason)
                }
            }
        },
    );
    let cfg = state.config.comms.clone();
    let mut life = Lifecycle::start(connection, rules(&cfg), &state).await;
    let conn = life.conn();
    let link = life.link().clone();
    let mut c = Conn {
        state: state.clone(),
        link,
        conn,
        identity,
    };
    welcome(&c, connection_id).await;

    let mut bucket = super::RateBucket::new(cfg.messages_per_second, cfg.message_burst);
    let mut warned = false;
    loop {
        let (warn_at, expire_at) =
            expiry_deadlines(c.identity.expires_at, cfg.token_expiry_lead_secs);
        // The token's end is this endpoint's own timer: a warning first, then the close.
        let status = Status {
            session: Some(c.identity.session_id),
            authenticated: true,
            timer: Some(if warned {
                expire_at
            } else {
                warn_at.min(expire_at)
            }),
        };
        let Some(input) = life.next(&status).await else {
            break;
        };
        match input {
            Next::Timer if tokio::time::Instant::now() >= expire_at => {
                life.end(Ending::TokenExpired);
                break;
            }
            Next::Timer => {
                warned = true;
                c.text(wire::auth_expiring(c.identity.expires_at));
            }
            Next::Text(text) => {
                if !bucket.take() {
                    c.refuse(
                        codes::RATE_LIMITED,
                        "too many messages; slow down",
                        Details::LimitPerSecond(cfg.messages_per_second),
                    );
                    continue;
                }
                match wire::decode(&text) {
                    Ok(frame) => {
                        if let Some(fresh) = handle(&c, frame).await {
                            // The connection now lives on the new token's session.
                            c.identity.expires_at = fresh.expires_at;
                            c.identity.session_id = fresh.session_id;
                            warned = false;
                        }
                    }
                    Err(e) => c.error(codes::BAD_REQUEST, &e.message, e.details),
                }
            }
            Next::Binary(bytes) => {
                if !bucket.take() {
                    c.error(
                        codes::RATE_LIMITED,
                        "too many messages; slow down",
                        Value::Null,
                    );
                    continue;
                }
                binary(&c, bytes).await;
            }
        }
    }
    let _ = state.inbox.send(Command::to(CommsCommand::Close { conn }));
    drop(c);
    life.finish().await;
}

/// The spec's `connected` status, the connection registered with the hub, and the direct
/// messages that waited in the mailbox.
async fn welcome(c: &Conn, connection_id: String) {
    c.text(wire::connected(
        &connection_id,
        chrono::Utc::now().timestamp_millis(),
    ));
    let opened = c.hub(CommsCommand::Open {
        conn: c.conn,
        connection_id: connection_id.clone(),
        user: c.identity.username.clone(),
        link: c.link.clone(),
    });
    if opened {
        match mailbox::collect(&c.state.store, &c.identity.username).await {
            Ok(frames) => {
                for frame in frames {
                    c.text(Bytes::from(frame));
                }
            }
            Err(e) => tracing::error!("mailbox for {}: {e}", c.identity.username),
        }
    }
}

/// When to warn about, and when to act on, a token's expiry (unix seconds → instants).
fn expiry_deadlines(
    expires_at: i64,
    lead_secs: u64,
) -> (tokio::time::Instant, tokio::time::Instant) {
    let now_unix = chrono::Utc::now().timestamp();
    let now = tokio::time::Instant::now();
    let until = Duration::from_secs(u64::try_from(expires_at - now_unix).unwrap_or(0));
    (
        now + until.saturating_sub(Duration::from_secs(lead_secs)),
        now + until,
    )
}

/// Handles one message; returns the new token's identity after a successful `Refresh`.
async fn handle(c: &Conn, frame: wire::ClientFrame) -> Option<Identity> {
    let id = frame.id.clone();
    let ttl = frame.meta.ttl_secs;
    match frame.message {
        ClientMessage::Ping { timestamp } => c.text(wire::pong(timestamp)),
        ClientMessage::Subscribe { topics } => {
            if let Some(e) = topics
                .iter()
                .find_map(|t| wire::validate_topic(t, true).err())
            {
                c.error(codes::BAD_REQUEST, &e.message, e.details);
                return None;
            }
            let conn = c.conn;
            let shown = topics.clone();
            match c
                .ask(|reply| CommsCommand::Subscribe {
                    conn,
                    topics,
                    reply,
                })
                .await
            {
                Some(Ok(comms::Subscribed { active, online })) => {
                    c.text(wire::subscriptions("subscribed", &shown, active));
                    acknowledge(c, id, "subscribed", active);
                    let now = chrono::Utc::now().timestamp_millis();
                    for user in online {
                        c.text(wire::presence(&user, true, now));
                    }
                }
                Some(Err(e)) => c.domain_error(&e, Details::Field("topics")),
                None => {}
            }
        }
        ClientMessage::Unsubscribe { topics } => {
            let conn = c.conn;
            let shown = topics.clone();
            if let Some(active) = c
                .ask(|reply| CommsCommand::Unsubscribe {
                    conn,
                    topics,
                    reply,
                })
                .await
            {
                c.text(wire::subscriptions("unsubscribed", &shown, active));
                acknowledge(c, id, "unsubscribed", active);
            }
        }
        ClientMessage::Broadcast { topic, payload } => broadcast(c, id, topic, payload).await,
        ClientMessage::DirectMessage {
            target_user,
            payload,
        } => direct(c, id, target_user, payload, ttl).await,
        ClientMessage::History { topic, limit } => {
            let limit = limit.clamp(1, 100);
            let shown = topic.clone();
            if let Some(messages) = c
                .ask(|reply| CommsCommand::History {
                    topic,
                    limit,
                    reply,
                })
                .await
            {
                c.text(wire::history(&shown, &messages));
            }
        }
        ClientMessage::Refresh { token } => match c.state.accounts.verify(&token) {
            Ok(fresh) if fresh.user_id == c.identity.user_id => {
                c.text(wire::token_refreshed(fresh.expires_at));
                return Some(fresh);
            }
            Ok(_) => c.error(
                codes::UNAUTHORIZED,
                "the token belongs to another user",
                Value::Null,
            ),
            Err(e) => c.domain_error(&e, Details::None),
        },
        ClientMessage::Extension { kind, data } => {
            let call = ExtensionCall {
                conn: c.conn,
                user: c.identity.username.clone(),
                kind: kind.clone(),
                data,
            };
            match c.ask(|reply| CommsCommand::Extension { call, reply }).await {
                Some(Ok(answer)) => c.text(wire::raw(&kind, answer)),
                Some(Err(DomainError::InvalidInput(m))) => {
                    c.refuse(codes::BAD_REQUEST, &m, Details::Type(&kind));
                }
                Some(Err(e)) => c.domain_error(&e, Details::Type(&kind)),
                None => {}
            }
        }
    }
    None
}

/// A `Broadcast`: published to the topic's subscribers on every node, acknowledged (with
/// its recipients counted everywhere) when it carried an `id`.
async fn broadcast(c: &Conn, id: Option<String>, topic: String, payload: Value) {
    if !may_publish(c, &topic) {
        return;
    }
    let message_id = id
        .clone()
        .unwrap_or_else(|| format!("broadcast_{}", uuid::Uuid::new_v4().simple()));
    let sent_at = chrono::Utc::now().timestamp_millis();
    // Who published it, as the server knows them (beyond the spec's metadata).
    let record =
        wire::broadcast_record(&topic, &payload, sent_at, &message_id, &c.identity.username);
    let frame = wire::broadcast_of(&record);
    // An acknowledged broadcast counts its recipients on every node.
    let message = (CommsOut::Text(frame), Some(record));
    let published = publish(&c.state, topic, message, id.is_some()).await;
    match (published, id) {
        (Ok(recipients), Some(id)) => c.text(wire::broadcast_ack(&id, recipients)),
        (Ok(_), None) => {}
        (Err(e), _) => c.domain_error(&e, Details::None),
    }
}

/// A `DirectMessage`: to every connection of the user on any node, or into their mailbox.
async fn direct(
    c: &Conn,
    id: Option<String>,
    target_user: String,
    payload: Value,
    ttl: Option<u64>,
) {
    let message_id = id
        .clone()
        .unwrap_or_else(|| format!("dm_{}", uuid::Uuid::new_v4().simple()));
    let frame = wire::direct(
        &c.identity.username,
        &payload,
        chrono::Utc::now().timestamp_millis(),
        &message_id,
    );
    let out = CommsOut::Text(frame.clone());
    match ask_direct(c, target_user.clone(), out).await {
        Some(DirectOutcome::Delivered(to)) => {
            if let Some(id) = id {
                c.text(wire::direct_ack(&id, &to));
            }
        }
        Some(DirectOutcome::Offline) => {
            offline_direct(c, &target_user, frame, &message_id, ttl).await;
        }
        None => {}
    }
}

/// Hands a direct message to the hub: delivered to the target's connections on any node,
/// or the target is offline (`None`: the hub did not answer).
async fn ask_direct(c: &Conn, target: String, frame: CommsOut) -> Option<DirectOutcome> {
    c.ask(|reply| CommsCommand::Direct {
        target,
        frame,
        reply,
    })
    .await
}

/// Whether the caller may publish to `topic` (a valid name, and the hub's rule for
/// `system.`); answers the error itself when not.
fn may_publish(c: &Conn, topic: &str) -> bool {
    if let Err(e) = wire::validate_topic(topic, false) {
        c.error(codes::BAD_REQUEST, &e.message, e.details);
        return false;
    }
    if let Err(e) = comms::check_publish(topic, c.identity.has_role(Role::Admin)) {
        c.domain_error(&e, Details::Topic(topic));
        return false;
    }
    true
}

/// A request that carried an `id` is also acknowledged by that id (after the spec's
/// `Status`), as the spec's own client waits for an `Ack` to every request it tracks.
fn acknowledge(c: &Conn, id: Option<String>, status: &str, active: usize) {
    if let Some(id) = id {
        c.text(wire::subscription_ack(&id, status, active));
    }
}

/// A direct message for a user with no open connection: kept in their mailbox if the
/// account exists (404 with `queued: true`), refused otherwise (`queued: false`).
async fn offline_direct(c: &Conn, target: &str, frame: Bytes, message_id: &str, ttl: Option<u64>) {
    let message = format!("User {target} not found or not connected");
    let exists = match c.state.accounts.find_by_username(target).await {
        Ok(found) => found.is_some(),
        Err(e) => {
            c.domain_error(&e, Details::None);
            return;
        }
    };
    if !exists {
        c.refuse(
            codes::NOT_FOUND,
            &message,
            Details::Queued {
                message_id: Some(message_id),
                queued: false,
            },
        );
        return;
    }
    let expires = ttl.map(|secs| chrono::Utc::now().timestamp_millis() + (secs as i64) * 1000);
    let text = String::from_utf8_lossy(&frame).into_owned();
    let per_user = c.state.config.comms.mailbox_per_user;
    match mailbox::post(&c.state.store, target, text, expires, per_user).await {
        Ok(dropped) => {
            c.state.metrics.mailbox_dropped.inc_by(dropped as u64);
            c.refuse(
                codes::NOT_FOUND,
                &message,
                Details::Queued {
                    message_id: Some(message_id),
                    queued: true,
                },
            );
        }
        Err(e) => c.domain_error(&DomainError::from(e), Details::None),
    }
}

/// A binary frame: broadcast (0x01) and direct message (0x02) are delivered as the same
/// bytes; file transfer (0x03) and stream data (0x04) are acknowledged. Every accepted frame
/// is answered with `Status binary_received`.
async fn binary(c: &Conn, bytes: Bytes) {
    let frame = match wire::decode_binary(bytes.clone()) {
        Ok(frame) => frame,
        Err(e) => {
            c.error(codes::BAD_REQUEST, &e.message, e.details);
            return;
        }
    };
    match frame.kind {
        0x01 | 0x02 => {
            let header = match frame.header() {
                Ok((header, _)) => header,
                Err(e) => {
                    c.error(codes::BAD_REQUEST, &e.message, e.details);
                    return;
                }
            };
            let key = if frame.kind == 0x01 {
                "topic"
            } else {
                "target_user"
            };
            let Some(name) = header.get(key).and_then(Value::as_str).map(str::to_owned) else {
                c.refuse(
                    codes::BAD_REQUEST,
                    &format!("the binary header needs {key:?}"),
                    Details::Field(key),
                );
                return;
            };
            let out = CommsOut::Binary(bytes);
            if frame.kind == 0x01 {
                if !may_publish(c, &name) {
                    return;
                }
                let published = c
                    .ask(|reply| CommsCommand::Publish {
                        topic: name,
                        frame: out,
                        record: None,
                        count_remote: None,
                        reply: Some(reply),
                    })
                    .await;
                if published.is_none() {
                    return;
                }
            } else {
                match ask_direct(c, name.clone(), out).await {
                    Some(DirectOutcome::Delivered(_)) => {}
                    Some(DirectOutcome::Offline) => {
                        c.refuse(
                            codes::NOT_FOUND,
                            &format!("User {name} not found or not connected"),
                            Details::Queued {
                                message_id: None,
                                queued: false,
                            },
                        );
                        return;
                    }
                    None => return,
                }
            }
        }
        _ => {}
    }
    c.text(wire::binary_received(
        frame.payload.len(),
        frame.kind_name(),
        &hex::encode(Sha256::digest(&frame.payload)),
    ));
}
