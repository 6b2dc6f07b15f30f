//! What every WebSocket endpoint shares: the connection skeleton ([`WsConnection`]: id,
//! gauge, bounded queue and writer task) and its lifecycle ([`Lifecycle`]): the loop that
//! ends a connection when the server shuts down, when it is kicked, when its session
//! ends, when it has not authenticated in time or stopped answering pings, and that
//! reads only while the client reads its replies. Each endpoint handles its messages and
//! says what it learns (its session, that it authenticated); what code each ending closes
//! with is in [`crate::protocol::close`], one table for all.
//!
//! A connection's writer owns the socket's sending half and drains its bounded queue,
//! batching whatever is waiting into one flush. It closes the socket itself when the
//! server shuts down and when the connection is kicked (its queue overflowed with
//! messages that must not be dropped).

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AppState, ConnectionGauge};
pub use crate::bridge::Ending;
use crate::bridge::{ConnId, Link, Outbound, next_conn_id};
use crate::metrics::Metrics;
use crate::protocol::close;
pub use crate::protocol::close::Endpoint;
use crate::services::accounts::SessionWatch;

/// One WebSocket connection's common parts. The endpoint's loop reads `stream` (through
/// [`incoming`]), queues replies on `link`, and ends with [`WsConnection::finish`].
pub struct WsConnection<T> {
    pub conn: ConnId,
    pub link: Link<T>,
    /// Cancelled when the connection must close at once (its queue overflowed).
    pub kick: CancellationToken,
    pub stream: SplitStream<WebSocket>,
    writer: tokio::task::JoinHandle<()>,
    _gauge: ConnectionGauge,
}

impl<T: Send + 'static> WsConnection<T> {
    /// Counts the connection open, and starts its writer draining `queue` through
    /// `encode`.
    pub fn open(
        socket: WebSocket,
        state: &AppState,
        endpoint: Endpoint,
        queue: (Outbound<T>, mpsc::Receiver<T>),
        encode: impl FnMut(T) -> WsOut + Send + 'static,
    ) -> Self {
        Self::open_coalescing(socket, state, endpoint, queue, None, encode)
    }

    /// [`WsConnection::open`], with a writer that coalesces: what arrives within `window`
    /// of its last write waits for the window's end and goes out with everything else
    /// that arrived meanwhile, in one write. A connection receiving a message now and then
    /// gets each at once; a busy one gets a write per window instead of one per message.
    pub fn open_coalescing(
        socket: WebSocket,
        state: &AppState,
        endpoint: Endpoint,
        queue: (Outbound<T>, mpsc::Receiver<T>),
        window: Option<std::time::Duration>,
        encode: impl FnMut(T) -> WsOut + Send + 'static,
    ) -> Self {
        let gauge = ConnectionGauge::open(&state.metrics, endpoint.name());
        let conn = next_conn_id();
        let (outbound, rx) = queue;
        let kick = CancellationToken::new();
        let (sink, stream) = socket.split();
        let writer = tokio::spawn(write_loop(
            sink,
            (rx, outbound.room_signal()),
            encode,
            kick.clone(),
            state.clone(),
            endpoint,
            window,
        ));
        Self {
            conn,
            link: Link::new(conn, outbound, kick.clone()),
            kick,
            stream,
            writer,
            _gauge: gauge,
        }
    }

    /// Waits for the writer to send what is queued and close. Every other clone of
    /// `link` must be gone first: the writer ends when its queue has no sender left.
    pub async fn finish(self) {
        drop(self.link);
        let _ = self.writer.await;
    }
}

/// What one read from a socket amounts to.
#[derive(Debug)]
pub enum Incoming {
    Text(Utf8Bytes),
    Binary(bytes::Bytes),
    /// A ping or a pong: the peer is alive; nothing to handle.
    Control,
    /// The connection is over; end it this way first, if one is given (a message over
    /// the size limit, text that is not UTF-8).
    Ended(Option<Ending>),
}

/// Classifies a read (`stream.next()`), counting the bytes received for `protocol`.
pub fn incoming(
    read: Option<Result<Message, axum::Error>>,
    metrics: &Metrics,
    protocol: &'static str,
) -> Incoming {
    match read {
        None | Some(Ok(Message::Close(_))) => Incoming::Ended(None),
        Some(Ok(Message::Text(text))) => {
            metrics.received(protocol, text.len());
            Incoming::Text(text)
        }
        Some(Ok(Message::Binary(bytes))) => {
            metrics.received(protocol, bytes.len());
            Incoming::Binary(bytes)
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
        Some(Err(e)) => {
            tracing::debug!(protocol, "read error: {e}");
            Incoming::Ended(close_for(&e))
        }
    }
}

/// The most messages one coalesced write takes from the queue.
const COALESCED_MAX: usize = 1024;

/// Per-socket read buffer. tungstenite's default (128 KiB) is most of an idle
/// connection's memory; messages larger than this still arrive, in several reads.
pub const READ_BUFFER: usize = 8 * 1024;

/// What a writer sends.
#[derive(Debug)]
pub enum WsOut {
    Text(String),
    /// Text already encoded once and shared by many recipients.
    SharedText(bytes::Bytes),
    Binary(bytes::Bytes),
    /// A WebSocket ping (the peer answers with a pong).
    Ping,
    Close(u16, String),
}

/// Selects the first subprotocol the client offers, in the order it offered them (what
/// GARP's reference server does: the module offers `echo-protocol`, and a browser fails a
/// connection whose offered subprotocol is not selected). None when none is offered.
pub fn select_first_offered(
    mut ws: axum::extract::WebSocketUpgrade,
    headers: &axum::http::HeaderMap,
) -> axum::extract::WebSocketUpgrade {
    let first = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .find(|offered| !offered.is_empty())
        .and_then(|offered| axum::http::HeaderValue::from_bytes(offered).ok());
    if let Some(protocol) = first {
        ws.set_selected_protocol(protocol);
    }
    ws
}

/// The ending a failed read calls for: a message over the size limit, a text frame that
/// is not UTF-8; `None` for anything else (the connection just ends).
pub fn close_for(e: &axum::Error) -> Option<Ending> {
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit") {
        Some(Ending::TooBig)
    } else if text.contains("UTF-8") {
        Some(Ending::NotUtf8)
    } else {
        None
    }
}

/// Drains `rx` into the socket until the queue ends, a close is queued, the connection is
/// kicked, or the server shuts down. `encode` turns a queued item into what to send. At
/// shutdown what is already queued (a trade's result, the shutdown notice) is sent before
/// the close. With a coalescing `window`, see [`WsConnection::open_coalescing`].
async fn write_loop<T>(
    mut sink: SplitSink<WebSocket, Message>,
    (mut rx, room): (mpsc::Receiver<T>, crate::bridge::RoomSignal),
    mut encode: impl FnMut(T) -> WsOut,
    kick: CancellationToken,
    state: AppState,
    endpoint: Endpoint,
    window: Option<std::time::Duration>,
) {
    let protocol = endpoint.name();
    let metrics = state.metrics.clone();
    let mut batch: Vec<T> = Vec::with_capacity(64);
    let mut last_write: Option<tokio::time::Instant> = None;
    let close_with = loop {
        let shutting_down = tokio::select! {
            biased;
            _ = state.shutdown.cancelled() => true,
            _ = kick.cancelled() => {
                metrics.slow_consumers.with_label_values(&[protocol]).inc();
                tracing::info!(
                    protocol,
                    limit = "outbound_queue",
                    "disconnected a client that read too slowly"
                );
                metrics.slow_consumer_log.record(
                    "warn",
                    format!("a {protocol} connection was closed: its outbound queue was full"),
                );
                let ending = Ending::TooSlow;
                break Some((close::code(endpoint, ending), ending.reason().to_owned()));
            }
            n = rx.recv_many(&mut batch, 64) => {
                if n == 0 {
                    break None;
                }
                room.freed();
                false
            }
        };
        if let (Some(window), Some(at), false) = (window, last_write, shutting_down)
            && tokio::time::Instant::now() < at + window
        {
            // Busy: wait for the window's end and take what arrived meanwhile. (A shutdown
            // or a kick waits at most this long.)
            tokio::time::sleep_until(at + window).await;
            while batch.len() < COALESCED_MAX {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            room.freed();
        }
        if shutting_down {
            while let Ok(item) = rx.try_recv() {
                batch.push(item);
            }
        }
        let mut closed_by_queue = None;
        for item in batch.drain(..) {
            let out = match encode(item) {
                WsOut::Text(text) => {
                    metrics.sent(protocol, text.len());
                    Message::Text(text.into())
                }
                WsOut::SharedText(bytes) => {
                    metrics.sent(protocol, bytes.len());
                    match axum::extract::ws::Utf8Bytes::try_from(bytes) {
                        Ok(text) => Message::Text(text),
                        Err(_) => continue,
                    }
                }
                WsOut::Binary(bytes) => {
                    metrics.sent(protocol, bytes.len());
                    Message::Binary(bytes)
                }
                WsOut::Ping => Message::Ping(bytes::Bytes::new()),
                WsOut::Close(code, reason) => {
                    closed_by_queue = Some((code, reason));
                    break;
                }
            };
            if sink.feed(out).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        last_write = Some(tokio::time::Instant::now());
        if closed_by_queue.is_some() {
            break closed_by_queue;
        }
        if shutting_down {
            let ending = Ending::Shutdown;
            break Some((close::code(endpoint, ending), ending.reason().to_owned()));
        }
    };
    match close_with {
        Some((code, reason)) => send_close(&mut sink, code, &reason).await,
        None => {
            let _ = sink.close().await;
        }
    }
}

async fn send_close(sink: &mut SplitSink<WebSocket, Message>, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

/// How a protocol takes part in the lifecycle.
pub struct EndpointRules<T> {
    pub endpoint: Endpoint,
    /// The queued item that closes the socket for an ending, with a reason.
    pub close: fn(Ending, String) -> T,
    /// What the peer is told before the server ends it, if anything (an error in the
    /// protocol's own shape).
    pub farewell: fn(Ending) -> Option<T>,
    /// Pings, for protocols that send them.
    pub ping: Option<Ping<T>>,
}

/// Pings: how often, the frame, and how long without hearing anything ends the
/// connection ([`Ending::NoPong`]).
pub struct Ping<T> {
    pub every: std::time::Duration,
    pub silence: std::time::Duration,
    pub frame: fn() -> T,
}

/// What the endpoint has learnt about its connection, for the lifecycle to act on.
#[derive(Debug, Default)]
pub struct Status {
    /// The session whose end ends this connection.
    pub session: Option<uuid::Uuid>,
    /// Whether it has shown who it is; until then the unauthenticated deadline runs.
    pub authenticated: bool,
    /// When the endpoint's own timer is due (a token's expiry, inputs to ask about).
    pub timer: Option<tokio::time::Instant>,
}

/// What the lifecycle hands the endpoint.
#[derive(Debug)]
pub enum Next {
    Text(Utf8Bytes),
    Binary(bytes::Bytes),
    /// [`Status::timer`] is due.
    Timer,
}

/// A connection's life, the same on every endpoint.
pub struct Lifecycle<T> {
    connection: WsConnection<T>,
    rules: EndpointRules<T>,
    state: AppState,
    /// When a connection that has not authenticated is ended.
    deadline: tokio::time::Instant,
    watch: SessionWatch,
    ping: Option<tokio::time::Interval>,
    heard: tokio::time::Instant,
}

impl<T: Send + 'static> Lifecycle<T> {
    pub async fn start(
        connection: WsConnection<T>,
        rules: EndpointRules<T>,
        state: &AppState,
    ) -> Self {
        let ping = match &rules.ping {
            Some(ping) => {
                let mut interval = tokio::time::interval(ping.every);
                interval.tick().await;
                Some(interval)
            }
            None => None,
        };
        let now = tokio::time::Instant::now();
        Self {
            connection,
            rules,
            deadline: now + state.config.limits.unauthenticated_timeout(),
            watch: state.accounts.watch_ended(),
            state: state.clone(),
            ping,
            heard: now,
        }
    }

    pub fn conn(&self) -> ConnId {
        self.connection.conn
    }

    pub fn link(&self) -> &Link<T> {
        &self.connection.link
    }

    /// The next message (or the endpoint's timer); `None` once the connection is over,
    /// having told the peer why where there is something to tell.
    pub async fn next(&mut self, status: &Status) -> Option<Next> {
        loop {
            let Self {
                connection,
                state,
                watch,
                ping,
                ..
            } = self;
            let link = &connection.link;
            let session = status.session.unwrap_or_default();
            let read = tokio::select! {
                _ = state.shutdown.cancelled() => return None,
                _ = connection.kick.cancelled() => return None,
                _ = watch.ended(&state.accounts, session), if status.session.is_some() => {
                    self.end(Ending::SessionEnded);
                    return None;
                }
                _ = tokio::time::sleep_until(self.deadline), if !status.authenticated => {
                    self.end(Ending::NotAuthenticated);
                    return None;
                }
                _ = sleep_until(status.timer), if status.timer.is_some() => return Some(Next::Timer),
                _ = tick(ping), if ping.is_some() => {
                    if self.ping() { continue } else { return None }
                }
                // Requests wait in the socket while the client has not read their answers.
                open = link.room_for_replies(), if !link.has_room_for_replies() => {
                    if open { continue } else { return None }
                }
                read = connection.stream.next(), if link.has_room_for_replies() => read,
            };
            self.heard = tokio::time::Instant::now();
            match incoming(read, &self.state.metrics, self.rules.endpoint.name()) {
                Incoming::Text(text) => return Some(Next::Text(text)),
                Incoming::Binary(bytes) => return Some(Next::Binary(bytes)),
                Incoming::Control => {}
                Incoming::Ended(ending) => {
                    if let Some(ending) = ending {
                        self.close(ending, ending.reason());
                    }
                    return None;
                }
            }
        }
    }

    /// A ping; `false` (and the end) for a peer silent for too long.
    fn ping(&self) -> bool {
        let Some(ping) = &self.rules.ping else {
            return true;
        };
        if self.heard.elapsed() > ping.silence {
            self.end(Ending::NoPong);
            return false;
        }
        self.connection.link.send((ping.frame)());
        true
    }

    /// Ends the connection for `ending`: the peer is told why, if the protocol tells,
    /// then closed with the code [`crate::protocol::close`] gives it.
    pub fn end(&self, ending: Ending) {
        if let Some(farewell) = (self.rules.farewell)(ending) {
            self.connection.link.send(farewell);
        }
        self.close(ending, ending.reason());
    }

    /// Closes for `ending`, with a reason of the caller's.
    pub fn close(&self, ending: Ending, reason: &str) {
        self.connection
            .link
            .send((self.rules.close)(ending, reason.to_owned()));
    }

    /// Waits for the writer to send what is queued and close. Every other clone of the
    /// link must be gone first.
    pub async fn finish(self) {
        self.connection.finish().await;
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
