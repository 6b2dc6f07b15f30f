//! comms-ws.md on `/ws`, over real WebSockets.

use crate::common;

use bytes::Bytes;
use common::{TestServer, Ws, token_for, ws_connect, ws_next};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Comms {
    ws: Ws,
    welcome: Value,
    /// Adds fields from a newer client to every message and its `data`.
    future_fields: bool,
}

impl Comms {
    async fn connect(server: &TestServer, token: &str) -> Self {
        let url = format!("ws://{}/ws?token={token}", server.handle().http_addr);
        Self::welcome(ws_connect(&url).await).await
    }

    async fn welcome(mut ws: Ws) -> Self {
        let welcome = ws_next(&mut ws).await.expect("welcome");
        assert_eq!(welcome["type"], "Status", "{welcome}");
        assert_eq!(welcome["data"]["status"], "connected");
        Self {
            ws,
            welcome,
            future_fields: false,
        }
    }

    async fn send(&mut self, kind: &str, data: Value, id: Option<&str>) {
        let mut msg = json!({"type": kind, "data": data, "timestamp": 1});
        if let Some(id) = id {
            msg["id"] = json!(id);
        }
        if self.future_fields {
            common::add_future_fields(&mut msg, &["data"]);
        }
        self.send_text(&msg.to_string()).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    async fn recv(&mut self) -> Value {
        ws_next(&mut self.ws)
            .await
            .unwrap_or_else(|c| panic!("closed {c:?}"))
    }

    /// The next message of `kind`, skipping presence and others.
    async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let msg = self.recv().await;
            if msg["type"] == kind {
                return msg;
            }
        }
    }

    async fn subscribe(&mut self, topics: &[&str]) -> Value {
        self.send("Subscribe", json!({"topics": topics}), None)
            .await;
        self.recv_type("Status").await
    }

    async fn next_binary(&mut self) -> Bytes {
        loop {
            match tokio::time::timeout(common::WAIT, self.ws.next())
                .await
                .expect("a frame")
            {
                Some(Ok(Message::Binary(b))) => return b,
                Some(Ok(_)) => continue,
                other => panic!("no binary frame: {other:?}"),
            }
        }
    }
}

fn error_code(msg: &Value) -> u64 {
    assert_eq!(msg["type"], "Error", "{msg}");
    assert!(msg["data"]["message"].is_string(), "{msg}");
    msg["data"]["code"].as_u64().unwrap()
}

#[tokio::test]
async fn three_ways_to_authenticate_and_401_without() {
    let server = TestServer::start().await;
    let token = token_for(&server, "authy").await;
    let base = format!("ws://{}/ws", server.handle().http_addr);

    let by_query = Comms::connect(&server, &token).await;
    let details = &by_query.welcome["data"]["details"];
    assert_eq!(details["protocol_version"], "1.0");
    uuid::Uuid::parse_str(details["connection_id"].as_str().unwrap()).unwrap();
    assert!(details["server_time"].is_i64());
    assert!(
        details["features"]
            .as_array()
            .unwrap()
            .contains(&json!("history"))
    );

    let mut request = base.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("header auth");
    Comms::welcome(ws).await;

    let mut request = base.as_str().into_client_request().unwrap();
    let protocol = format!("access_token.{token}");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("subprotocol auth");
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        protocol.as_str()
    );
    Comms::welcome(ws).await;

    for url in [base.clone(), format!("{base}?token=forged")] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 401);
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ping_subscribe_broadcast_ack_and_wildcards() {
    let server = TestServer::start().await;
    let mut a = Comms::connect(&server, &token_for(&server, "alpha").await).await;
    let mut b = Comms::connect(&server, &token_for(&server, "bravo").await).await;

    a.send("Ping", json!({"timestamp": 1234567890}), None).await;
    assert_eq!(
        a.recv_type("Pong").await,
        json!({"type": "Pong", "data": {"timestamp": 1234567890}})
    );

    let status = a
        .subscribe(&["notifications", "chat.general", "updates.*"])
        .await;
    assert_eq!(
        status["data"],
        json!({"status": "subscribed", "details":
        {"topics": ["notifications", "chat.general", "updates.*"], "active_subscriptions": 3}})
    );
    b.subscribe(&["chat.*"]).await;

    a.send(
        "Broadcast",
        json!({"topic": "chat.general", "payload": {"message": "hi"}}),
        Some("msg_1"),
    )
    .await;
    // The sender is a subscriber too: its copy and its Ack, in either order.
    let (first, second) = (a.recv().await, a.recv().await);
    let (ack, own) = if first["type"] == "Ack" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        ack["data"],
        json!({"message_id": "msg_1", "status": "delivered", "recipients": 2})
    );
    assert_eq!(own["type"], "Broadcast");
    assert_eq!(own["data"]["payload"], json!({"message": "hi"}));
    for client in [&mut b] {
        let got = client.recv_type("Broadcast").await;
        assert_eq!(got["data"]["topic"], "chat.general");
        assert_eq!(got["data"]["payload"], json!({"message": "hi"}));
        assert_eq!(got["data"]["metadata"]["message_id"], "msg_1");
        assert!(got["data"]["metadata"]["sent_at"].is_i64());
    }
    b.send(
        "Broadcast",
        json!({"topic": "updates.v2.released", "payload": 1}),
        Some("u1"),
    )
    .await;
    assert_eq!(b.recv_type("Ack").await["data"]["recipients"], 1);
    assert_eq!(
        a.recv_type("Broadcast").await["data"]["topic"],
        "updates.v2.released"
    );

    a.send("Unsubscribe", json!({"topics": ["chat.general"]}), None)
        .await;
    let status = a.recv_type("Status").await;
    assert_eq!(
        status["data"],
        json!({"status": "unsubscribed", "details":
        {"topics": ["chat.general"], "active_subscriptions": 2}})
    );
    // No id, no Ack; and A no longer hears chat.general.
    b.send(
        "Broadcast",
        json!({"topic": "chat.general", "payload": 2}),
        None,
    )
    .await;
    a.send("Ping", json!({"timestamp": 5}), None).await;
    assert_eq!(a.recv().await["type"], "Pong");
}

#[tokio::test]
async fn error_table_codes() {
    let server = TestServer::start_full(
        |c| {
            c.comms.topics_per_connection = 2;
            c.comms.messages_per_second = 1.0;
            c.comms.message_burst = 30.0;
        },
        |s| s.add_plugin(Failing),
    )
    .await;
    let mut c = Comms::connect(&server, &token_for(&server, "errors").await).await;
    // 400: bad JSON, unknown type, bad topic, too many topics, bad data.
    c.send_text("{nope").await;
    assert_eq!(error_code(&c.recv().await), 400);
    c.send("Teleport", json!({}), None).await;
    let e = c.recv().await;
    assert_eq!(error_code(&e), 400);
    assert_eq!(e["data"]["details"]["type"], "Teleport");
    c.send("Subscribe", json!({"topics": ["bad topic!"]}), None)
        .await;
    let e = c.recv().await;
    assert_eq!(error_code(&e), 400);
    assert_eq!(e["data"]["details"]["field"], "topic");
    c.send("Subscribe", json!({"topics": ["a", "b", "c"]}), None)
        .await;
    assert_eq!(error_code(&c.recv().await), 400);
    c.send("Broadcast", json!({"topic": "a"}), None).await;
    assert_eq!(error_code(&c.recv().await), 400);
    // 401: a Refresh with a bad token.
    c.send("Refresh", json!({"token": "bad"}), None).await;
    assert_eq!(error_code(&c.recv().await), 401);
    // 403: reserved topics in any letter case, and the server's own.
    for topic in [
        "System.alerts",
        "SYSTEM",
        "notifications",
        "Presence.someone",
        "events.game_state_change",
        "room.room-1",
    ] {
        c.send("Broadcast", json!({"topic": topic, "payload": 1}), None)
            .await;
        assert_eq!(error_code(&c.recv().await), 403, "{topic}");
    }
    // 403: system topics need admin.
    c.send(
        "Broadcast",
        json!({"topic": "system.alerts", "payload": {}}),
        Some("s"),
    )
    .await;
    assert_eq!(error_code(&c.recv().await), 403);
    // 404: unknown user.
    c.send(
        "DirectMessage",
        json!({"target_user": "nobody-here", "payload": {}}),
        Some("d"),
    )
    .await;
    let e = c.recv().await;
    assert_eq!(error_code(&e), 404);
    assert_eq!(
        e["data"]["details"],
        json!({"message_id": "d", "queued": false})
    );
    // 500 and 503 as a handler reports them.
    c.send("X-Fail", json!({"as": "internal"}), None).await;
    assert_eq!(error_code(&c.recv().await), 500);
    c.send("X-Fail", json!({"as": "busy"}), None).await;
    assert_eq!(error_code(&c.recv().await), 503);
    // 429: past the burst.
    for _ in 0..40 {
        c.send("Ping", json!({"timestamp": 0}), None).await;
    }
    let mut limited = false;
    for _ in 0..40 {
        let msg = c.recv().await;
        if msg["type"] == "Error" {
            assert_eq!(error_code(&msg), 429);
            limited = true;
        }
    }
    assert!(limited);
}

struct Failing;

impl bevy_app::Plugin for Failing {
    fn build(&self, app: &mut bevy_app::App) {
        use ecliptic::services::DomainError;
        use ecliptic::sim::comms::CommsAppExt;
        app.add_comms_handler("X-Fail", |_, call| match call.data["as"].as_str() {
            Some("busy") => Err(DomainError::Busy),
            _ => Err(DomainError::Internal("handler failed".into())),
        });
    }
}

struct Echo;

impl bevy_app::Plugin for Echo {
    fn build(&self, app: &mut bevy_app::App) {
        use ecliptic::sim::comms::CommsAppExt;
        app.add_comms_handler("X-Echo", |world, call| {
            let tick = world.resource::<ecliptic::sim::Tick>().0;
            Ok(json!({"echo": call.data, "from": call.user, "tick": tick}))
        });
    }
}

#[tokio::test]
async fn extension_handlers_from_a_plugin() {
    let server = TestServer::start_full(|_| {}, |s| s.add_plugin(Echo)).await;
    let mut c = Comms::connect(&server, &token_for(&server, "extender").await).await;
    c.send(
        "X-Echo",
        json!({"action": "special_operation", "parameters": {}}),
        None,
    )
    .await;
    let reply = c.recv().await;
    assert_eq!(
        reply,
        json!({"type": "X-Echo", "data": {"echo": {"action": "special_operation", "parameters": {}}, "from": "extender", "tick": reply["data"]["tick"]}})
    );
    assert!(reply["data"]["tick"].is_u64());
    c.send("X-Unknown", json!({}), None).await;
    let e = c.recv().await;
    assert_eq!(error_code(&e), 400);
    assert!(e["data"]["message"].as_str().unwrap().contains("X-Unknown"));
}

#[tokio::test]
async fn direct_messages_reach_every_connection_or_wait_in_the_mailbox() {
    let server = TestServer::start().await;
    let sender_token = token_for(&server, "sender").await;
    let twin_token = token_for(&server, "twin").await;
    let mut sender = Comms::connect(&server, &sender_token).await;
    let mut one = Comms::connect(&server, &twin_token).await;
    let mut two = Comms::connect(&server, &twin_token).await;
    sender
        .send(
            "DirectMessage",
            json!({"target_user": "twin", "payload": {"message": "psst"}}),
            Some("dm_1"),
        )
        .await;
    let ack = sender.recv_type("Ack").await;
    assert_eq!(ack["data"]["status"], "delivered");
    let mut to: Vec<String> = ack["data"]["delivered_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    to.sort();
    let mut ids = vec![
        one.welcome["data"]["details"]["connection_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        two.welcome["data"]["details"]["connection_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    ids.sort();
    assert_eq!(to, ids);
    for c in [&mut one, &mut two] {
        let dm = c.recv_type("DirectMessage").await;
        assert_eq!(dm["data"]["from_user"], "sender");
        assert_eq!(dm["data"]["payload"], json!({"message": "psst"}));
        assert_eq!(dm["data"]["metadata"]["message_id"], "dm_1");
    }

    // Offline: queued, delivered at the next connect; a ttl-expired one is dropped.
    token_for(&server, "sleeper").await;
    sender
        .send(
            "DirectMessage",
            json!({"target_user": "sleeper", "payload": "first"}),
            Some("q1"),
        )
        .await;
    let e = sender.recv_type("Error").await;
    assert_eq!(error_code(&e), 404);
    assert_eq!(
        e["data"]["details"],
        json!({"message_id": "q1", "queued": true})
    );
    sender.send_text(&json!({"type": "DirectMessage", "data": {"target_user": "sleeper", "payload": "stale"},
        "id": "q2", "metadata": {"priority": "low", "ttl": 0}}).to_string()).await;
    assert_eq!(error_code(&sender.recv_type("Error").await), 404);
    sender
        .send(
            "DirectMessage",
            json!({"target_user": "sleeper", "payload": "after restart"}),
            Some("q3"),
        )
        .await;
    assert_eq!(error_code(&sender.recv_type("Error").await), 404);
    drop((sender, one, two));

    let server = server.restart().await;
    let login = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "sleeper", "password": "pw-secret"}),
        )
        .await
        .1;
    let mut sleeper = Comms::connect(&server, login["access_token"].as_str().unwrap()).await;
    let first = sleeper.recv_type("DirectMessage").await;
    assert_eq!(first["data"]["payload"], "first");
    let second = sleeper.recv_type("DirectMessage").await;
    assert_eq!(
        second["data"]["payload"], "after restart",
        "the ttl-0 message was dropped"
    );
}

#[tokio::test]
async fn presence_history_notifications_and_binary() {
    let server = TestServer::start().await;
    let mut watcher = Comms::connect(&server, &token_for(&server, "watcher").await).await;
    watcher
        .subscribe(&["presence", "notifications", "files"])
        .await;
    // Subscribing to presence tells who is online already: here, the watcher itself.
    let already = watcher.recv_type("Presence").await;
    assert_eq!(already["data"]["user_id"], "watcher");
    assert_eq!(already["data"]["status"], "online");
    let visitor_token = token_for(&server, "visitor").await;
    let mut visitor = Comms::connect(&server, &visitor_token).await;
    let online = watcher.recv_type("Presence").await;
    assert_eq!(online["data"]["user_id"], "visitor");
    assert_eq!(online["data"]["status"], "online");
    assert!(online["data"]["last_seen"].is_i64());
    assert!(online["data"]["metadata"].is_object());

    // History: the last broadcasts of a topic.
    for n in 1..=3 {
        visitor
            .send(
                "Broadcast",
                json!({"topic": "news", "payload": n}),
                Some(&format!("n{n}")),
            )
            .await;
        visitor.recv_type("Ack").await;
    }
    visitor
        .send("History", json!({"topic": "news", "limit": 2}), None)
        .await;
    let history = visitor.recv_type("History").await;
    let payloads: Vec<&Value> = history["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["payload"])
        .collect();
    assert_eq!(payloads, [&json!(2), &json!(3)]);

    // Binary: file transfer acknowledged with a checksum; a binary broadcast delivered as is.
    let body = b"some file bytes".to_vec();
    let mut frame = vec![0x03];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    visitor
        .ws
        .send(Message::Binary(frame.into()))
        .await
        .unwrap();
    let status = visitor.recv_type("Status").await;
    assert_eq!(
        status["data"],
        json!({"status": "binary_received", "details": {
        "size": body.len(), "type": "file_transfer",
        "checksum": format!("sha256:{}", hex::encode(Sha256::digest(&body)))}})
    );
    let header = br#"{"topic":"files"}"#;
    let mut payload = (header.len() as u16).to_be_bytes().to_vec();
    payload.extend_from_slice(header);
    payload.extend_from_slice(b"\x00\x01\x02");
    let mut frame = vec![0x01];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    visitor
        .ws
        .send(Message::Binary(frame.clone().into()))
        .await
        .unwrap();
    assert_eq!(
        visitor.recv_type("Status").await["data"]["details"]["type"],
        "broadcast"
    );
    assert_eq!(watcher.next_binary().await, Bytes::from(frame));
    let mut bad = vec![0x04, 0, 0, 0, 9];
    bad.extend_from_slice(b"short");
    visitor.ws.send(Message::Binary(bad.into())).await.unwrap();
    assert_eq!(error_code(&visitor.recv_type("Error").await), 400);

    // Notifications: admins only, delivered to subscribers of `notifications`.
    let (status, body) = server
        .post_auth(
            "/api/v1/notifications",
            &visitor_token,
            &json!({"level": "info", "title": "t", "message": "m"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let out = crate::common::database::ecliptic_command(server.dir.path())
        .args([
            "admin",
            "create-user",
            "root",
            "--password",
            "pw-secret",
            "--role",
            "admin",
            "--data-dir",
        ])
        .arg(server.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let admin = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "root", "password": "pw-secret"}),
        )
        .await
        .1;
    let (status, body) = server
        .post_auth(
            "/api/v1/notifications",
            admin["access_token"].as_str().unwrap(),
            &json!({"level": "info", "title": "Maintenance Notice", "message": "in 1 hour",
                "actions": [{"label": "Learn More", "url": "https://status.example.com"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recipients"], 1);
    let note = watcher.recv_type("Notification").await;
    assert_eq!(note["data"]["title"], "Maintenance Notice");
    assert_eq!(note["data"]["actions"][0]["label"], "Learn More");

    // The visitor's last connection closes: offline.
    drop(visitor);
    let offline = watcher.recv_type("Presence").await;
    assert_eq!(offline["data"]["status"], "offline");
}

#[tokio::test]
async fn token_expiry_warning_refresh_and_close() {
    let server = TestServer::start_with(|c| {
        c.auth.access_token_secs = 3;
        c.comms.token_expiry_lead_secs = 2;
    })
    .await;
    let token = token_for(&server, "expiring").await;
    let mut kept = Comms::connect(&server, &token).await;
    let mut lapsed = Comms::connect(&server, &token).await;
    let warning = kept.recv_type("AuthStatus").await;
    assert_eq!(warning["data"]["status"], "token_expiring");
    assert_eq!(warning["data"]["refresh_required"], true);
    assert!(warning["data"]["expires_at"].is_i64());
    let fresh = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "expiring", "password": "pw-secret"}),
        )
        .await
        .1;
    kept.send("Refresh", json!({"token": fresh["access_token"]}), None)
        .await;
    let refreshed = kept.recv_type("Status").await;
    assert_eq!(refreshed["data"]["status"], "token_refreshed");

    // Without a refresh: closed with 4001 at expiry.
    let code = common::close_code(&mut lapsed.ws).await;
    assert_eq!(code, Some(4001));
    // The refreshed one still answers.
    kept.send("Ping", json!({"timestamp": 9}), None).await;
    assert_eq!(kept.recv_type("Pong").await["data"]["timestamp"], 9);
}

#[tokio::test]
async fn oversized_frames_close_with_1009() {
    let server = TestServer::start().await;
    let mut c = Comms::connect(&server, &token_for(&server, "bulky").await).await;
    c.send(
        "Broadcast",
        json!({"topic": "t", "payload": "x".repeat(70 * 1024)}),
        None,
    )
    .await;
    let code = common::close_code(&mut c.ws).await;
    assert_eq!(code, Some(1009));
}

/// Publishes 60 KiB broadcasts to a reader and a subscriber that never reads, until the
/// sleeper is dropped from the recipients (at most `limit` of them); returns the sleeper and
/// how many were sent.
async fn flood_a_sleeper(server: &TestServer, limit: usize) -> (Comms, usize) {
    let mut publisher = Comms::connect(server, &token_for(server, "pub").await).await;
    let mut reader = Comms::connect(server, &token_for(server, "reader").await).await;
    let mut sleeper = Comms::connect(server, &token_for(server, "sleeper").await).await;
    reader.subscribe(&["firehose"]).await;
    sleeper.subscribe(&["firehose"]).await;
    // Big payloads fill the sleeper's socket buffers and then its queue.
    let payload = "y".repeat(60 * 1024);
    for n in 0..limit {
        publisher
            .send(
                "Broadcast",
                json!({"topic": "firehose", "payload": payload}),
                Some(&format!("f{n}")),
            )
            .await;
        let ack = publisher.recv_type("Ack").await;
        let got = reader.recv_type("Broadcast").await;
        assert_eq!(got["data"]["metadata"]["message_id"], format!("f{n}"));
        if ack["data"]["recipients"] == 1 {
            return (sleeper, n + 1);
        }
    }
    panic!("the sleeper was still a recipient after {limit} broadcasts");
}

#[tokio::test]
async fn a_slow_readers_queue_is_bounded_in_bytes() {
    // 1,024 messages may queue, but only 256 KiB: the sleeper goes long before the count
    // bound (over 60 MiB of these messages) could be reached.
    let server = TestServer::start_with(|c| c.comms.outbound_bytes = 256 * 1024).await;
    let (mut sleeper, sent) = flood_a_sleeper(&server, 400).await;
    assert!(sent < 400, "{sent}");
    assert_eq!(common::close_code(&mut sleeper.ws).await, Some(1008));
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_dropped_without_delaying_others() {
    let server = TestServer::start_with(|c| c.limits.outbound_queue = 16).await;
    let (mut sleeper, _) = flood_a_sleeper(&server, 400).await;
    let code = common::close_code(&mut sleeper.ws).await;
    assert_eq!(code, Some(1008));
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("ecliptic_slow_consumer_disconnects_total{protocol=\"comms\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn shutdown_notifies_then_closes_with_1001() {
    let mut server = TestServer::start().await;
    let mut c = Comms::connect(&server, &token_for(&server, "stayer").await).await;
    c.subscribe(&["notifications"]).await;
    let handle = server.handle.take().unwrap();
    let shutdown = tokio::spawn(handle.shutdown());
    let note = c.recv_type("Notification").await;
    assert_eq!(note["data"]["title"], "Server shutting down");
    let code = common::close_code(&mut c.ws).await;
    assert_eq!(code, Some(1001));
    shutdown.await.unwrap();
}

#[tokio::test]
async fn a_full_mailbox_drops_the_oldest_and_counts_it() {
    let server = TestServer::start_with(|c| c.comms.mailbox_per_user = 2).await;
    let mut sender = Comms::connect(&server, &token_for(&server, "chatty").await).await;
    let away = token_for(&server, "away").await;
    for n in 1..=3 {
        sender
            .send(
                "DirectMessage",
                json!({"target_user": "away", "payload": n}),
                Some(&format!("m{n}")),
            )
            .await;
        let e = sender.recv_type("Error").await;
        assert_eq!(e["data"]["details"]["queued"], true, "{e}");
    }
    let mut reader = Comms::connect(&server, &away).await;
    let first = reader.recv_type("DirectMessage").await;
    let second = reader.recv_type("DirectMessage").await;
    assert_eq!(
        (
            first["data"]["payload"].clone(),
            second["data"]["payload"].clone()
        ),
        (json!(2), json!(3))
    );
    // Nothing else waited: the next message is the answer to a ping.
    reader.send("Ping", json!({"timestamp": 1}), None).await;
    assert_eq!(reader.recv().await["type"], "Pong");
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("ecliptic_mailbox_dropped_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn platform_events_reach_comms_subscribers_of_events_topics() {
    let server = TestServer::start().await;
    let token = token_for(&server, "reader").await;
    let mut reader = Comms::connect(&server, &token).await;
    reader.subscribe(&["events.*"]).await;
    let (status, body) = server
        .post_auth(
            "/api/v1/content",
            &token,
            &json!({"asset_type": "blog", "title": "Launch day", "content": "We are live"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let message = reader.recv_type("Broadcast").await;
    assert_eq!(message["data"]["topic"], "events.content_published");
    assert_eq!(message["data"]["payload"]["title"], "Launch day");
    // Nobody publishes under events. themselves.
    reader
        .send(
            "Broadcast",
            json!({"topic": "events.content_published", "payload": {"fake": true}}),
            Some("p1"),
        )
        .await;
    let refused = reader.recv_type("Error").await;
    assert_eq!(refused["data"]["code"], 403, "{refused}");
}

#[tokio::test]
async fn every_message_from_a_newer_client_gets_its_normal_answer() {
    let server = TestServer::start().await;
    let mut c = Comms::connect(&server, &token_for(&server, "newer").await).await;
    let mut peer = Comms::connect(&server, &token_for(&server, "peer").await).await;
    c.future_fields = true;

    c.send("Ping", json!({"timestamp": 7}), None).await;
    assert_eq!(c.recv_type("Pong").await["data"]["timestamp"], 7);
    c.send("Subscribe", json!({"topics": ["news"]}), Some("s1"))
        .await;
    assert_eq!(c.recv_type("Status").await["data"]["status"], "subscribed");
    assert_eq!(c.recv_type("Ack").await["data"]["message_id"], "s1");
    c.send(
        "Broadcast",
        json!({"topic": "news", "payload": {"n": 1}}),
        Some("b1"),
    )
    .await;
    let own = c.recv_type("Broadcast").await;
    assert_eq!(own["data"]["payload"], json!({"n": 1}), "{own}");
    c.send("History", json!({"topic": "news", "limit": 5}), None)
        .await;
    let history = c.recv_type("History").await;
    assert_eq!(history["data"]["messages"].as_array().unwrap().len(), 1);
    c.send(
        "DirectMessage",
        json!({"target_user": "peer", "payload": "hi"}),
        Some("d1"),
    )
    .await;
    assert_eq!(
        peer.recv_type("DirectMessage").await["data"]["payload"],
        "hi"
    );

    // Unsubscribe with an id is acknowledged like Subscribe.
    c.send("Unsubscribe", json!({"topics": ["news"]}), Some("u1"))
        .await;
    let ack = loop {
        let ack = c.recv_type("Ack").await;
        if ack["data"]["message_id"] == "u1" {
            break ack;
        }
    };
    assert_eq!(
        ack["data"],
        json!({"message_id": "u1", "status": "unsubscribed", "active_subscriptions": 0})
    );

    let (status, fresh) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "newer", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 200, "{fresh}");
    c.send("Refresh", json!({"token": fresh["access_token"]}), None)
        .await;
    assert_eq!(
        c.recv_type("Status").await["data"]["status"],
        "token_refreshed"
    );
}
