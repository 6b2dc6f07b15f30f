//! The WebSocket transport: one action per message, one response per request, and the
//! events the connection subscribed to.

use super::*;
use crate::net::ws::{Ending, EndpointRules, Lifecycle, Next, Ping, Status};
use crate::protocol::close;

/// `GET /raos`.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    budget: Option<axum::Extension<crate::net::listener::ReadBudget>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let budget = budget.map(|b| b.0).unwrap_or_default();
    // A browser cannot set headers: the token may also come as `?token=` or a subprotocol.
    let (token, subprotocol) = crate::net::handshake_token(&headers, &query);
    let ws = match subprotocol {
        Some(p) => ws.protocols([p]),
        None => ws,
    };
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
        .on_upgrade(move |socket| {
            tasks.track_future(run(socket, state, headers, token, peer.0, budget))
        })
}

/// What the lifecycle needs of `/raos`: its frames, and a failure in its shape before
/// the server ends a connection whose session ended or that never authenticated.
fn rules(ping_every: Duration) -> EndpointRules<Outgoing> {
    EndpointRules {
        endpoint: ws::Endpoint::Raos,
        close: Outgoing::Close,
        farewell: |ending| {
            let message = match ending {
                Ending::SessionEnded => "the session was ended; closing",
                Ending::NotAuthenticated => "no valid token within the time allowed; closing",
                _ => return None,
            };
            let failure = raos::failure(ErrorCode::Unauthorized, message);
            Some(Outgoing::Reply(failure.to_string()))
        },
        ping: Some(Ping {
            every: ping_every,
            silence: ping_every * 3,
            frame: || Outgoing::Ping,
        }),
    }
}

async fn run(
    socket: WebSocket,
    state: AppState,
    headers: HeaderMap,
    handshake_token: Option<String>,
    peer: SocketAddr,
    budget: crate::net::listener::ReadBudget,
) {
    let queue = Outbound::<Outgoing>::bounded(state.config.limits.outbound_queue.max(8));
    let connection =
        ws::WsConnection::open(socket, &state, ws::Endpoint::Raos, queue, |out| match out {
            Outgoing::Reply(text) => WsOut::Text(text),
            Outgoing::Event(bytes) => WsOut::SharedText(bytes),
            Outgoing::Ping => WsOut::Ping,
            Outgoing::Close(ending, reason) => {
                WsOut::Close(close::code(ws::Endpoint::Raos, ending), reason)
            }
        });
    let cfg = state.config.raos.clone();
    let ping_every = Duration::from_secs(cfg.ping_interval_secs.max(1));
    let mut life = Lifecycle::start(connection, rules(ping_every), &state).await;
    let (conn, link) = (life.conn(), life.link().clone());
    let mut ctx = Context::new(&state, &headers, Some(peer));
    ctx.events = Some((conn, link.clone()));
    let mut bucket = RateBucket::new(cfg.requests_per_second, cfg.request_burst);
    // After `authenticate` (or `refresh_token`) on this socket, actions without an
    // `auth_token` use the token it returned.
    // A valid token from the handshake counts as that.
    let handshake_identity = handshake_token
        .as_deref()
        .and_then(|token| state.accounts.verify(token).ok());
    // The session of the last valid token the socket used: when it is ended (logout, a
    // reused refresh token), the socket closes. One that never shows a valid token is
    // closed after the unauthenticated timeout.
    let session = handshake_identity
        .as_ref()
        .map(|identity| identity.session_id);
    let mut socket = Socket {
        status: Status {
            session,
            authenticated: session.is_some(),
            timer: None,
        },
        session_token: handshake_token.filter(|_| handshake_identity.is_some()),
        budget,
    };
    // Until it shows a valid token, the socket may send only a little: a client that never
    // authenticates cannot make the server hold large messages for it.
    if !socket.status.authenticated {
        socket
            .budget
            .limit(state.config.limits.unauthenticated_read_bytes);
    }
    while let Some(input) = life.next(&socket.status).await {
        let text = match input {
            Next::Text(text) => text,
            Next::Binary(_) => {
                let failure = raos::failure(
                    ErrorCode::InvalidRequest,
                    "binary frames are not part of this protocol: send JSON text",
                );
                link.send(Outgoing::Reply(failure.to_string()));
                continue;
            }
            Next::Timer => continue,
        };
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
        let reply = socket.act(&ctx, request).await;
        link.send(Outgoing::Reply(reply));
    }
    let _ = state.inbox.send(Command::to(EventsCommand::Drop { conn }));
    drop(ctx);
    drop(link);
    life.finish().await;
}

/// What one `/raos` socket knows of who it is: its session (for the lifecycle), the token
/// actions without an `auth_token` use, and how much it may send before it authenticates.
struct Socket {
    status: Status,
    session_token: Option<String>,
    budget: crate::net::listener::ReadBudget,
}

impl Socket {
    /// Performs one request and returns its response; learns from it the socket's token
    /// and session (an `authenticate`, a `refresh_token`, a logout of its own session).
    async fn act(&mut self, ctx: &Context<'_>, request: Request) -> String {
        let state = ctx.state;
        let Request {
            request_id,
            auth_token,
            action,
        } = request;
        let remembers = matches!(
            action,
            Action::Authenticate { .. } | Action::RefreshToken { .. }
        );
        let token = auth_token.or_else(|| self.session_token.clone());
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
            self.status.authenticated = true;
            self.budget.lift();
            self.status.session = Some(identity.session_id);
        }
        let result = perform(ctx, token.as_deref(), action).await;
        if remembers
            && let Ok(fields) = &result
            && let Some(access) = fields.get("access_token").and_then(Value::as_str)
        {
            if let Ok(identity) = state.accounts.verify(access) {
                self.status.session = Some(identity.session_id);
            }
            self.session_token = Some(access.to_owned());
            self.status.authenticated = true;
            self.budget.lift();
        }
        if logs_out.is_some() && logs_out == self.status.session && result.is_ok() {
            // The socket that logged out of its own session stays open (it may log in
            // again); the session's other connections close.
            self.status.session = None;
            self.session_token = None;
        }
        respond(result, request_id).to_string()
    }
}
