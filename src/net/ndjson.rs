//! Connection tasks for the TCP listeners (store-lobby-tcp.md framing): one JSON object per
//! line in, one per line out.
//!
//! The reader decodes a line at a time and answers in order; a writer task owns the socket's
//! write half and two bounded queues: replies and pushed messages (room updates, presence)
//! go first, and download chunks, a few at a time, fill the socket between them. So a
//! reply never waits behind a download, and a download to a slow reader holds a couple
//! of chunks in memory, not the whole build. Lines over the limit
//! and lines that are not UTF-8 get a code-100 error and the connection carries on. A
//! connection that has not authenticated within the configured time is closed.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::listener::Conn;
use super::{AppState, ConnectionGauge};
use crate::protocol::store::{self, Code, Response};

/// Which TCP server a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpServer {
    Dev,
    Lobby,
}

impl TcpServer {
    pub fn protocol(self) -> &'static str {
        match self {
            TcpServer::Dev => "dev",
            TcpServer::Lobby => "lobby",
        }
    }
}

/// Per-connection state the command handlers may change.
pub struct LineSession {
    pub server: TcpServer,
    pub conn: crate::bridge::ConnId,
    pub peer: std::net::SocketAddr,
    /// Set once the client has logged in or presented a valid token.
    pub authenticated: bool,
    /// The token of the last login on this connection.
    pub token: Option<String>,
    /// That login's session: when it is ended (logout elsewhere, a reused refresh token),
    /// the connection closes.
    pub session_id: Option<uuid::Uuid>,
    /// Set when a lobby login registered the connection for pushes.
    pub entered: Option<crate::services::accounts::Identity>,
    /// Queue to the writer, for messages pushed outside the request/response rhythm.
    pub push: mpsc::Sender<Bytes>,
    /// Queue to the writer for bulk lines (download chunks, and the line that ends each
    /// download, so it follows its chunks). Written only when `push` is empty.
    pub bulk: mpsc::Sender<Bytes>,
}

/// Bulk lines waiting for the writer: enough to keep the socket busy while the next
/// chunk is read and encoded, few enough that a slow reader costs little memory.
const BULK_QUEUE: usize = 2;

/// Serves every connection the acceptor hands over until it stops.
pub async fn serve(mut conns: mpsc::Receiver<Conn>, server: TcpServer, state: AppState) {
    let tracker = tokio_util::task::TaskTracker::new();
    while let Some(conn) = conns.recv().await {
        tracker.spawn(connection(conn, server, state.clone()));
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(conn: Conn, server: TcpServer, state: AppState) {
    let protocol = server.protocol();
    let _gauge = ConnectionGauge::open(&state.metrics, protocol);
    let peer = conn.peer;
    let (reader, writer) = tokio::io::split(conn);
    let (push, outbound) = mpsc::channel::<Bytes>(state.config.limits.outbound_queue);
    let (bulk, bulk_lines) = mpsc::channel::<Bytes>(BULK_QUEUE);
    let writer_task = tokio::spawn(write_lines(
        writer,
        outbound,
        bulk_lines,
        state.clone(),
        protocol,
    ));

    let max_line = state.config.limits.ndjson_line_bytes;
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = Vec::with_capacity(4096);
    let mut session = LineSession {
        server,
        conn: crate::bridge::next_conn_id(),
        peer,
        authenticated: false,
        token: None,
        session_id: None,
        entered: None,
        push: push.clone(),
        bulk,
    };
    let auth_deadline = tokio::time::Instant::now() + state.config.limits.unauthenticated_timeout();

    let mut watch = state.accounts.watch_ended();
    loop {
        let session_id = session.session_id;
        let next = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = watch.ended(&state.accounts, session_id.unwrap_or_default()), if session_id.is_some() => {
                let reply = Response::error(Code::Unauthorized, "your session was ended; closing");
                let _ = push.send(Bytes::from(reply.to_line())).await;
                break;
            }
            _ = tokio::time::sleep_until(auth_deadline), if !session.authenticated => {
                let reply = Response::error(Code::Unauthorized, "not authenticated in time; closing");
                let _ = push.send(Bytes::from(reply.to_line())).await;
                break;
            }
            next = read_line(&mut reader, &mut line, max_line) => next,
        };
        let reply = match next {
            Ok(LineRead::Eof) => break,
            Ok(LineRead::Line) => {
                state.metrics.received(protocol, line.len() + 1);
                match handle_line(&line, &mut session, &state).await {
                    Some(reply) => reply,
                    None => continue,
                }
            }
            Ok(LineRead::TooLong(len)) => {
                state.metrics.received(protocol, len);
                Response::error(
                    Code::InvalidRequest,
                    format!("line longer than {max_line} bytes"),
                )
            }
            Err(e) => {
                tracing::debug!(%peer, "{protocol}: read error: {e}");
                break;
            }
        };
        if push.send(Bytes::from(reply.to_line())).await.is_err() {
            break;
        }
    }
    super::store_server::leave(&session, &state).await;
    drop(session);
    drop(push);
    let _ = writer_task.await;
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A whole line is in the buffer, without its `\n`.
    Line,
    /// The line was longer than the limit and was skipped up to its end; its length.
    TooLong(usize),
    Eof,
}

/// Reads one `\n`-terminated line into `line`, never holding more than `max` bytes of it:
/// a longer line is consumed and discarded so the next one can be read. A final line
/// without `\n` counts as a line.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    let mut skipped = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (skipped, line.is_empty()) {
                (0, true) => LineRead::Eof,
                (0, false) => LineRead::Line,
                (n, _) => LineRead::TooLong(n),
            });
        }
        let (chunk, found) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        if skipped == 0 && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            skipped += line.len() + chunk.len();
            line.clear();
        }
        let consumed = found.unwrap_or(available.len());
        reader.consume(consumed);
        if found.is_some() {
            return Ok(if skipped == 0 {
                LineRead::Line
            } else {
                LineRead::TooLong(skipped)
            });
        }
    }
}

/// One line in, at most one reply out (`None` for blank lines).
async fn handle_line(line: &[u8], session: &mut LineSession, state: &AppState) -> Option<Response> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(Response::error(
            Code::InvalidRequest,
            "the line is not valid UTF-8",
        ));
    };
    let request = match store::decode(text) {
        Ok(request) => request,
        Err(reply) => return Some(reply),
    };
    super::store_server::dispatch(request, session, state).await
}

/// Writes queued lines: whatever replies and pushes are waiting, batched into one flush,
/// before each bulk line. Ends when both queues have closed.
async fn write_lines(
    mut writer: tokio::io::WriteHalf<Conn>,
    mut outbound: mpsc::Receiver<Bytes>,
    mut bulk: mpsc::Receiver<Bytes>,
    state: AppState,
    protocol: &'static str,
) {
    let metrics = Arc::clone(&state.metrics);
    loop {
        let first = tokio::select! {
            biased;
            Some(line) = outbound.recv() => line,
            Some(line) = bulk.recv() => line,
            else => break,
        };
        let mut batch = vec![first];
        while let Ok(more) = outbound.try_recv() {
            batch.push(more);
            if batch.len() >= 64 {
                break;
            }
        }
        for line in &batch {
            if writer.write_all(line).await.is_err() {
                return;
            }
            metrics.sent(protocol, line.len());
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_and_reading_goes_on() {
        let input: &[u8] = b"short\nthis line is too long\nok\ntail";
        let mut reader = BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line(&mut reader, &mut line, 8).await.unwrap() {
                LineRead::Eof => break,
                LineRead::Line => seen.push(String::from_utf8(line.clone()).unwrap()),
                LineRead::TooLong(n) => seen.push(format!("<{n}>")),
            }
        }
        assert_eq!(seen, ["short", "<21>", "ok", "tail"]);
    }
}
