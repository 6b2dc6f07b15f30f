//! What every WebSocket endpoint shares: the connection skeleton ([`Connection`]: id,
//! gauge, bounded queue and writer task), what a read amounts to ([`incoming`]), the
//! writer loop and the close codes. Each endpoint writes only its own loop around them.
//!
//! A connection's writer owns the socket's sending half and drains its bounded queue,
//! batching whatever is waiting into one flush. It closes the socket with 1001 when the
//! server shuts down, and with 1008 when the connection is kicked (its queue overflowed
//! with messages that must not be dropped). The reader side closes with 1009 for a message
//! over the size limit and 1007 for a text frame that is not UTF-8.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AppState, ConnectionGauge};
use crate::bridge::{ConnId, Link, Outbound, next_conn_id};
use crate::metrics::Metrics;

/// One WebSocket connection's common parts. The endpoint's loop reads `stream` (through
/// [`incoming`]), queues replies on `link`, and ends with [`Connection::finish`].
pub struct Connection<T> {
    pub conn: ConnId,
    pub link: Link<T>,
    /// Cancelled when the connection must close at once (its queue overflowed).
    pub kick: CancellationToken,
    pub stream: SplitStream<WebSocket>,
    writer: tokio::task::JoinHandle<()>,
    _gauge: ConnectionGauge,
}

impl<T: Send + 'static> Connection<T> {
    /// Counts the connection open, and starts its writer draining `queue` through
    /// `encode`.
    pub fn open(
        socket: WebSocket,
        state: &AppState,
        protocol: &'static str,
        queue: (Outbound<T>, mpsc::Receiver<T>),
        encode: impl FnMut(T) -> WsOut + Send + 'static,
    ) -> Self {
        Self::open_coalescing(socket, state, protocol, queue, None, encode)
    }

    /// [`Connection::open`], with a writer that coalesces: what arrives within `window`
    /// of its last write waits for the window's end and goes out with everything else
    /// that arrived meanwhile, in one write. A connection receiving a message now and then
    /// gets each at once; a busy one gets a write per window instead of one per message.
    pub fn open_coalescing(
        socket: WebSocket,
        state: &AppState,
        protocol: &'static str,
        queue: (Outbound<T>, mpsc::Receiver<T>),
        window: Option<std::time::Duration>,
        encode: impl FnMut(T) -> WsOut + Send + 'static,
    ) -> Self {
        let gauge = ConnectionGauge::open(&state.metrics, protocol);
        let conn = next_conn_id();
        let (outbound, rx) = queue;
        let kick = CancellationToken::new();
        let (sink, stream) = socket.split();
        let writer = tokio::spawn(write_loop(
            sink,
            rx,
            encode,
            kick.clone(),
            state.clone(),
            protocol,
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
    /// The connection is over. Close with this code and reason first, if one is given
    /// (1009 for a message over the size limit, 1007 for text that is not UTF-8).
    Ended(Option<(u16, &'static str)>),
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

/// Close codes, in one table.
pub mod close {
    /// The server is shutting down; reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke a rule (too slow to read, never authenticated).
    pub const POLICY: u16 = 1008;
    /// A message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
}

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

/// The close a failed read calls for: 1009 for a message over the size limit, 1007 for a
/// text frame that is not UTF-8; `None` for anything else (the connection just ends).
pub fn close_for(e: &axum::Error) -> Option<(u16, &'static str)> {
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit") {
        Some((close::TOO_BIG, "message too big"))
    } else if text.contains("UTF-8") {
        Some((close::INVALID_DATA, "text frames must be UTF-8"))
    } else {
        None
    }
}

/// Drains `rx` into the socket until the queue ends, a close is queued, the connection is
/// kicked, or the server shuts down. `encode` turns a queued item into what to send. At
/// shutdown what is already queued (a trade's result, the shutdown notice) is sent before
/// the close. With a coalescing `window`, see [`Connection::open_coalescing`].
pub async fn write_loop<T>(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<T>,
    mut encode: impl FnMut(T) -> WsOut,
    kick: CancellationToken,
    state: AppState,
    protocol: &'static str,
    window: Option<std::time::Duration>,
) {
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
                break Some((close::POLICY, "outbound queue full: reading too slowly".to_owned()));
            }
            n = rx.recv_many(&mut batch, 64) => {
                if n == 0 {
                    break None;
                }
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
            break Some((close::GOING_AWAY, "server shutting down".to_owned()));
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
