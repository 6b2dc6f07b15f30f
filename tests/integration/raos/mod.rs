//! raos-integration.md over real sockets: every action on `GET /raos`, every REST route,
//! the error codes, events from the game, assets, and concurrent project saves.

mod assets;
mod events;
mod games;
mod limits;
mod projects;
mod routes;
mod websocket;

use routes::rest;

use crate::common;

use std::collections::VecDeque;

use common::{TestServer, Ws, ws_connect};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

/// A RaOS WebSocket client: requests with ids, and the events that arrive meanwhile.
pub(super) struct Raos {
    ws: Ws,
    next: u64,
    events: VecDeque<Value>,
    /// Adds fields from a newer client to every request and to its `asset`.
    future_fields: bool,
}

impl Raos {
    async fn connect(server: &TestServer) -> Self {
        let ws = ws_connect(&format!("ws://{}/raos", server.handle().http_addr)).await;
        Self {
            ws,
            next: 0,
            events: VecDeque::new(),
            future_fields: false,
        }
    }

    async fn read(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(common::WAIT, self.ws.next())
                .await
                .expect("a message within the wait")
                .expect("the socket is open")
                .expect("a frame");
            if let Message::Text(text) = next {
                return serde_json::from_str(&text).expect("JSON");
            }
        }
    }

    /// Sends `action` with `fields` and a fresh request_id; returns the response to it.
    async fn call(&mut self, action: &str, fields: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut request = fields;
        request["action"] = json!(action);
        request["request_id"] = json!(id);
        if self.future_fields {
            common::add_future_fields(&mut request, &["asset"]);
        }
        self.send_text(&request.to_string()).await;
        loop {
            let message = self.read().await;
            if message.get("event_type").is_some() {
                self.events.push_back(message);
                continue;
            }
            assert_eq!(message["request_id"], id, "{message}");
            assert!(message["timestamp"].is_string(), "{message}");
            return message;
        }
    }

    async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    async fn ok(&mut self, action: &str, fields: Value) -> Value {
        let answer = self.call(action, fields).await;
        assert_eq!(answer["success"], true, "{action}: {answer}");
        answer
    }

    async fn fail(&mut self, action: &str, fields: Value, code: u64) -> String {
        let answer = self.call(action, fields).await;
        assert_eq!(answer["success"], false, "{action}: {answer}");
        assert_eq!(answer["error_code"], code, "{action}: {answer}");
        answer["error"].as_str().expect("a message").to_owned()
    }

    /// The next event of `event_type`; others stay queued.
    async fn event(&mut self, event_type: &str) -> Value {
        if let Some(i) = self
            .events
            .iter()
            .position(|e| e["event_type"] == event_type)
        {
            return self.events.remove(i).unwrap();
        }
        loop {
            let event = self.read().await;
            assert!(event["timestamp"].is_string(), "{event}");
            if event["event_type"] == event_type {
                return event;
            }
            self.events.push_back(event);
        }
    }

    /// Registers `name` and authenticates on this socket; the access token.
    async fn sign_in(&mut self, server: &TestServer, name: &str) -> String {
        let (status, body) = server
            .post(
                "/api/v1/auth/register",
                &json!({"username": name, "password": "pw-secret"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let answer = self
            .ok(
                "authenticate",
                json!({"username": name, "password_hash": sha256_hex(b"pw-secret")}),
            )
            .await;
        answer["access_token"].as_str().unwrap().to_owned()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}
