//! A client controls how fast its own replies come: one that sends requests faster than it
//! reads their answers is not read from until it catches up (as TCP would do), and is
//! never disconnected for it. Each test floods a socket with requests before reading a
//! single answer, far past what the connection's queue and the kernel's buffers hold.

use crate::common;

use std::time::Duration;

use common::{TestServer, ws_connect};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Sends `frames` on `url` without reading, and only then (or once the server stops
/// taking them: the backpressure under test) reads every answer; the answers, or the
/// close code that ended the connection first.
async fn flood(url: &str, frames: Vec<String>) -> Result<Vec<Value>, Option<u16>> {
    let ws = ws_connect(url).await;
    let (mut sink, mut stream) = ws.split();
    let count = frames.len();
    let (stalled_tx, stalled) = tokio::sync::oneshot::channel::<()>();
    let sender = tokio::spawn(async move {
        let mut stalled_tx = Some(stalled_tx);
        for frame in frames {
            let send = sink.send(Message::Text(frame.into()));
            tokio::pin!(send);
            // A send that does not complete for a while is the server not reading: the
            // client starts reading its answers, as a real one would.
            if tokio::time::timeout(Duration::from_millis(500), &mut send)
                .await
                .is_err()
            {
                if let Some(tx) = stalled_tx.take() {
                    let _ = tx.send(());
                }
                if send.await.is_err() {
                    return;
                }
            }
        }
        if let Some(tx) = stalled_tx.take() {
            let _ = tx.send(());
        }
        // Keep the sink (and so the connection) open while the answers are read.
        std::future::pending::<()>().await;
        drop(sink);
    });
    let _ = stalled.await;
    let mut answers = Vec::with_capacity(count);
    while answers.len() < count {
        let next = tokio::time::timeout(common::WAIT, stream.next())
            .await
            .expect("an answer within the wait");
        match next {
            Some(Ok(Message::Text(text))) => {
                answers.push(serde_json::from_str(&text).expect("JSON"));
            }
            Some(Ok(Message::Close(frame))) => {
                sender.abort();
                return Err(frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            _ => {
                sender.abort();
                return Err(None);
            }
        }
    }
    sender.abort();
    Ok(answers)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_game_client_that_floods_requests_is_slowed_down_not_disconnected() {
    let server = TestServer::start_with(|c| c.game.outbound_queue = 8).await;
    let url = format!("ws://{}/game", server.handle().http_addr);
    // Each is refused (no login yet, then an unknown type): one answer each.
    let kind = format!("flood.{}", "x".repeat(56));
    let frames: Vec<String> = (0..60_000)
        .map(|seq| json!({"type": kind, "seq": seq, "ts": 0, "payload": {}}).to_string())
        .collect();
    let answers = flood(&url, frames)
        .await
        .unwrap_or_else(|code| panic!("the connection was closed ({code:?})"));
    assert_eq!(answers.len(), 60_000);
    assert!(
        answers.iter().all(|a| a["type"] == "error"),
        "{:?}",
        answers.iter().find(|a| a["type"] != "error")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_studio_client_that_floods_requests_is_slowed_down_not_disconnected() {
    let server = TestServer::start_with(|c| c.limits.outbound_queue = 8).await;
    let token = common::token_for(&server, "studio").await;
    let url = format!("ws://{}/raos?token={token}", server.handle().http_addr);
    let frames: Vec<String> = (0..60_000)
        .map(|id| {
            json!({"action": "list_games", "request_id": id, "padding": "p".repeat(64)}).to_string()
        })
        .collect();
    let answers = flood(&url, frames)
        .await
        .unwrap_or_else(|code| panic!("the connection was closed ({code:?})"));
    assert_eq!(answers.len(), 60_000);
    // Every request answered, in order (most of them refused by the rate limit).
    for (id, answer) in answers.iter().enumerate() {
        assert_eq!(answer["request_id"], id, "{answer}");
    }
}
