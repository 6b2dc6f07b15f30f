//! `/game` in its binary encoding: a client that offers the subprotocol gets binary frames
//! carrying the same messages, steers with compact inputs, and gets the protocol's `error`
//! for bad binary input like for bad JSON.

use ecliptic::protocol::game::Input;
use ecliptic::protocol::game::binary::{self, Decoder, tag};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::*;

/// A `/game` client speaking the binary encoding.
struct BinaryClient {
    ws: Ws,
    decoder: Decoder,
    seq: u64,
    /// Bytes of `world.delta` frames received, and how many.
    delta_bytes: usize,
    deltas: usize,
}

impl BinaryClient {
    async fn connect(server: &TestServer) -> Self {
        let url = format!("ws://{}/game", server.handle().http_addr);
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            format!("{}, json", binary::SUBPROTOCOL).parse().unwrap(),
        );
        let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect within the wait")
            .expect("handshake");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            binary::SUBPROTOCOL
        );
        Self {
            ws,
            decoder: Decoder::default(),
            seq: 0,
            delta_bytes: 0,
            deltas: 0,
        }
    }

    async fn send_frame(&mut self, frame: Vec<u8>) {
        self.ws
            .send(Message::Binary(frame.into()))
            .await
            .expect("send");
    }

    /// A JSON message behind tag 0.
    async fn send_json(&mut self, kind: &str, payload: Value) {
        self.seq += 1;
        let text = json!({"type": kind, "seq": self.seq, "payload": payload}).to_string();
        self.send_frame(binary::json_frame(&text)).await;
    }

    async fn input(&mut self, thrust: f64, turn: f64) {
        self.seq += 1;
        let input = Input {
            thrust,
            turn,
            fire_primary: false,
            dock_request: false,
        };
        self.send_frame(binary::input_frame(self.seq, &input)).await;
    }

    /// The next message, decoded; every frame must be binary.
    async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait");
            match next {
                Some(Ok(Message::Binary(frame))) => {
                    if frame[0] == tag::DELTA {
                        self.delta_bytes += frame.len();
                        self.deltas += 1;
                    }
                    let msg = self
                        .decoder
                        .decode(&frame)
                        .expect("a frame this client decodes");
                    assert!(msg["seq"].is_u64() && msg["ts"].is_i64(), "{msg}");
                    return msg;
                }
                Some(Ok(Message::Text(text))) => panic!("a text frame in binary mode: {text}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let msg = self.recv().await;
            if msg["type"] == kind {
                return msg;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_offers_the_binary_encoding_plays_in_it() {
    let server = TestServer::start().await;
    let token = token_for(&server, "compact").await;
    let mut client = BinaryClient::connect(&server).await;
    client
        .send_json("auth.login", json!({"token": token, "protocol_version": 1}))
        .await;
    assert_eq!(client.recv().await["type"], "auth.ok");
    // Text frames are still understood.
    let join = json!({"type": "session.join_system", "seq": 50, "payload": {"system_id": "sol-1"}});
    client
        .ws
        .send(Message::Text(join.to_string().into()))
        .await
        .unwrap();
    let joined = client.recv_type("session.joined").await;
    let ship = joined["payload"]["ship_id"].as_str().unwrap().to_owned();
    let snapshot = client.recv_type("world.snapshot").await;
    let start = entity(&snapshot, "entities", &ship)
        .expect("the own ship in the snapshot")
        .clone();
    let keys: Vec<&str> = start
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in ["id", "kind", "x", "y", "vx", "vy", "r", "hp"] {
        assert!(keys.contains(&key), "{start}");
    }
    assert_eq!(start["kind"], "player_ship");
    assert!(snapshot["payload"]["you"]["credits"].is_i64(), "{snapshot}");
    assert!(snapshot["payload"]["markets"].is_array(), "{snapshot}");

    // Compact inputs steer the ship: full thrust moves it away from the station.
    client.seq = 100;
    client.input(1.0, 0.0).await;
    let moved = loop {
        let delta = client.recv_type("world.delta").await;
        if let Some(e) = entity(&delta, "entity_updates", &ship)
            && distance(e, &start) > 5.0
        {
            break e.clone();
        }
    };
    // Whole entities come out of the decoder, however few fields changed.
    assert_eq!(moved["kind"], "player_ship");
    assert_eq!(moved["hp"], start["hp"]);
    assert!(client.deltas > 0);

    // Bad binary input: the protocol's error, as for bad JSON, and play goes on.
    for (frame, code) in [
        (vec![], "BAD_MESSAGE"),
        (vec![tag::INPUT, 0x05], "BAD_MESSAGE"),
        (vec![tag::INPUT, 0x05, 0, 0, 0, 0xff], "BAD_MESSAGE"),
        (vec![0x7e, 1, 2, 3], "UNKNOWN_TYPE"),
        (binary::json_frame("{not json"), "BAD_MESSAGE"),
        (vec![tag::JSON, 0xc3, 0x28], "BAD_MESSAGE"),
        (
            binary::json_frame(r#"{"type":"warp.now","seq":1,"payload":{}}"#),
            "UNKNOWN_TYPE",
        ),
    ] {
        client.send_frame(frame).await;
        let error = client.recv_type("error").await;
        assert_eq!(error["payload"]["code"], code, "{error}");
        assert!(
            error["payload"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    client.input(0.0, 1.0).await;
    client
        .send_json(
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
        )
        .await;
    let answer = loop {
        let msg = client.recv().await;
        if msg["type"] == "trade.result" || msg["type"] == "error" {
            break msg;
        }
    };
    // Flying away undocked the ship: the trade is refused by the rules, in JSON's shape.
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["payload"]["code"], "NOT_DOCKED", "{answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_client_is_not_spoken_to_in_binary() {
    let server = TestServer::start().await;
    let token = token_for(&server, "plain").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    client
        .ws
        .send(Message::Binary(
            binary::input_frame(
                1,
                &Input {
                    thrust: 1.0,
                    turn: 0.0,
                    fire_primary: false,
                    dock_request: false,
                },
            )
            .into(),
        ))
        .await
        .unwrap();
    let error = client.recv_reply().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["payload"]["code"], "BAD_MESSAGE");
    server.shutdown().await;
}
