//! raos-integration.md over real sockets: every action on `GET /raos`, every REST route,
//! the error codes, events from the game, assets, and concurrent project saves.

use crate::common;

use std::collections::{HashSet, VecDeque};

use base64::Engine;
use common::{GameClient, TestServer, Ws, token_for, ws_connect};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A RaOS WebSocket client: requests with ids, and the events that arrive meanwhile.
struct Raos {
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
                &json!({"username": name, "password": "pw"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let answer = self
            .ok(
                "authenticate",
                json!({"username": name, "password_hash": sha256_hex(b"pw")}),
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

#[tokio::test(flavor = "multi_thread")]
async fn every_action_over_the_websocket() {
    every_action(false).await;
}

/// Every action again with a field the server does not know at the top level and in
/// `update_content`'s `asset`, as a client one release ahead sends them.
#[tokio::test(flavor = "multi_thread")]
async fn every_action_from_a_newer_client() {
    every_action(true).await;
}

async fn every_action(future_fields: bool) {
    // This test sends far more than the default burst; the limit has its own test.
    let server = TestServer::start_with(|c| c.raos.request_burst = 1000.0).await;
    let mut raos = Raos::connect(&server).await;
    raos.future_fields = future_fields;
    let mut other = Raos::connect(&server).await;
    let token = raos.sign_in(&server, "studio").await;
    let other_token = other.sign_in(&server, "rival").await;
    let t = |fields: Value| {
        let mut fields = fields;
        fields["auth_token"] = json!(token);
        fields
    };

    // Auth: authenticate (above), a wrong password, refresh, and 1001 without a token.
    raos.fail(
        "authenticate",
        json!({"username": "studio", "password_hash": sha256_hex(b"nope")}),
        1001,
    )
    .await;
    // A second session on a socket of its own: reusing its refresh token ends it, and
    // with it that socket (the first session lives on).
    let mut studio = Raos::connect(&server).await;
    let login = studio
        .ok(
            "authenticate",
            json!({"username": "studio", "password_hash": sha256_hex(b"pw")}),
        )
        .await;
    assert_eq!(login["expires_in"], 3600);
    assert_eq!(login["user_profile"]["username"], "studio");
    assert_eq!(login["roles"], json!(["player"]));
    let refreshed = studio
        .ok(
            "refresh_token",
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    assert!(refreshed["access_token"].is_string());
    assert_eq!(refreshed["expires_in"], 3600);
    studio
        .fail(
            "refresh_token",
            json!({"refresh_token": login["refresh_token"]}),
            1001,
        )
        .await;
    assert_eq!(studio.read().await["error_code"], 1001, "the session ended");
    let mut anonymous = Raos::connect(&server).await;
    anonymous.fail("list_games", json!({}), 1001).await;
    anonymous
        .fail("list_games", json!({"auth_token": "not-a-token"}), 1001)
        .await;

    // 1000: malformed JSON, unknown action, missing fields and wrong types. A field the
    // action does not use is ignored.
    raos.send_text("{oops").await;
    let bad = raos.read().await;
    assert_eq!(
        (bad["success"].clone(), bad["error_code"].clone()),
        (json!(false), json!(1000))
    );
    raos.fail("teleport", json!({}), 1000).await;
    raos.ok("list_games", t(json!({"extra": {"added": "later"}})))
        .await;
    raos.fail("fetch_content", t(json!({"asset_id": 7})), 1000)
        .await;
    raos.fail("fetch_content", t(json!({})), 1000).await;

    // Projects.
    raos.fail("create_game_project", t(json!({"name": ""})), 1000)
        .await;
    let created = raos
        .ok(
            "create_game_project",
            t(json!({"name": "Star Miner", "description": "mine the stars"})),
        )
        .await;
    let project_id = created["project_id"].as_str().unwrap().to_owned();
    assert!(created["created_date"].is_string());
    let list = raos.ok("list_game_projects", t(json!({}))).await;
    assert_eq!(list["projects"][0]["project_id"], project_id.as_str());
    assert_eq!(list["projects"][0]["name"], "Star Miner");
    let loaded = raos
        .ok("load_game_project", t(json!({"project_id": project_id})))
        .await;
    let project = &loaded["project"];
    assert_eq!(project["description"], "mine the stars");
    assert_eq!(project["scenes"], json!([]));
    let base = project["modified_date"].as_str().unwrap().to_owned();
    other
        .fail(
            "load_game_project",
            json!({"auth_token": other_token, "project_id": project_id}),
            1002,
        )
        .await;
    raos.fail(
        "load_game_project",
        t(json!({"project_id": "no-such-project"})),
        1003,
    )
    .await;
    let saved = raos
        .ok(
            "save_game_project",
            t(json!({
                "project": {"project_id": project_id, "name": "Star Miner 2",
                            "scenes": [{"name": "intro"}], "scripts": [], "assets": [],
                            "settings": {"fps": 60}},
                "expected_modified_date": base,
            })),
        )
        .await;
    assert!(saved["modified_date"].as_str().unwrap() > base.as_str());

    // Assets: add, sync, upload (gzip), analyze.
    let text = b"level data".to_vec();
    let added = raos
        .ok(
            "add_asset",
            t(json!({"project_id": project_id, "asset_name": "level1.txt",
                     "asset_type": "data", "asset_data": B64.encode(&text)})),
        )
        .await;
    let text_asset = added["asset_id"].as_str().unwrap().to_owned();
    assert!(added["asset_url"].as_str().unwrap().ends_with(&text_asset));
    raos.fail(
        "add_asset",
        t(
            json!({"project_id": project_id, "asset_name": "x", "asset_type": "data",
                 "asset_data": "***"}),
        ),
        1000,
    )
    .await;
    let synced = raos
        .ok("sync_assets", t(json!({"project_id": project_id})))
        .await;
    let line = &synced["assets"][0];
    assert_eq!(line["asset_id"], text_asset.as_str());
    assert_eq!(line["name"], "level1.txt");
    assert_eq!(line["type"], "data");
    assert_eq!(line["size"], text.len());
    assert_eq!(line["hash"], sha256_hex(&text));
    let image = png(40, 30);
    let uploaded = raos
        .ok(
            "upload_binary_asset",
            t(json!({"asset_type": "image", "filename": "ship.png",
                     "file_data": B64.encode(gzip(&image)), "compressed": true, "format": "png"})),
        )
        .await;
    let image_asset = uploaded["asset_id"].as_str().unwrap().to_owned();
    let analysis = raos
        .ok("analyze_asset", t(json!({"asset_id": image_asset})))
        .await;
    assert_eq!(analysis["analysis"]["format"], "PNG");
    assert_eq!(analysis["analysis"]["dimensions"], "40x30");
    assert_eq!(analysis["analysis"]["size"], image.len());
    let message = raos
        .fail("analyze_asset", t(json!({"asset_id": text_asset})), 1000)
        .await;
    assert!(message.contains("not an image"), "{message}");
    raos.fail("analyze_asset", t(json!({"asset_id": "nope"})), 1003)
        .await;

    // Games: list, launch (stream and download), stop.
    let games = raos.ok("list_games", t(json!({}))).await;
    let space = games["games"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["game_id"] == "ecliptic-space")
        .expect("the space game is listed")
        .clone();
    assert_eq!(space["genre"], "multi");
    assert_eq!(space["players"], "1-64");
    assert!(space["rating"].is_null());
    let launched = raos
        .ok(
            "launch_game",
            t(json!({"game_id": "ecliptic-space", "mode": "stream"})),
        )
        .await;
    let session_id = launched["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        launched["stream_url"],
        format!("ws://{}/game", server.handle().http_addr)
    );
    raos.fail(
        "launch_game",
        t(json!({"game_id": "ecliptic-space", "mode": "download"})),
        1000,
    )
    .await;
    raos.fail(
        "launch_game",
        t(json!({"game_id": "ecliptic-space", "mode": "teleport"})),
        1000,
    )
    .await;
    raos.fail(
        "launch_game",
        t(json!({"game_id": "no-game", "mode": "stream"})),
        1003,
    )
    .await;
    other
        .fail(
            "stop_game",
            json!({"auth_token": other_token, "session_id": session_id}),
            1002,
        )
        .await;
    raos.ok("stop_game", t(json!({"session_id": session_id})))
        .await;
    raos.fail("stop_game", t(json!({"session_id": session_id})), 1003)
        .await;

    // Player: profile, region, achievements, friends, leaderboards.
    let profile = raos.ok("get_player_profile", t(json!({}))).await;
    assert_eq!(profile["profile"]["username"], "studio");
    assert_eq!(profile["profile"]["level"], 1);
    assert_eq!(profile["profile"]["experience"], 0);
    assert_eq!(profile["profile"]["stats"]["trades"], 0);
    raos.fail(
        "get_leaderboard",
        t(json!({"game_id": "ecliptic-space", "category": "regional"})),
        1000,
    )
    .await;
    raos.ok("update_player_profile", t(json!({"region": "eu-west"})))
        .await;
    raos.fail("update_player_profile", t(json!({"region": "!"})), 1000)
        .await;
    let achievements = raos
        .ok("get_achievements", t(json!({"game_id": "ecliptic-space"})))
        .await;
    let first_trade = achievements["achievements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["achievement_id"] == "first-trade")
        .unwrap()
        .clone();
    assert_eq!(first_trade["unlocked"], false);
    assert!(first_trade["unlock_date"].is_null());
    raos.ok("add_friend", t(json!({"username": "rival"}))).await;
    raos.fail("add_friend", t(json!({"username": "ghost"})), 1003)
        .await;
    for category in ["global", "friends", "regional"] {
        let board = raos
            .ok(
                "get_leaderboard",
                t(json!({"game_id": "ecliptic-space", "category": category})),
            )
            .await;
        assert!(board["leaderboard"].is_array(), "{board}");
    }
    raos.fail(
        "get_leaderboard",
        t(json!({"game_id": "ecliptic-space", "category": "galactic"})),
        1000,
    )
    .await;
    raos.ok("remove_friend", t(json!({"username": "rival"})))
        .await;
    raos.fail("remove_friend", t(json!({"username": "rival"})), 1003)
        .await;

    // Events: a subscription, and content published by someone else.
    let subscribed = raos
        .ok(
            "subscribe_events",
            t(json!({"event_types": ["content_published", "project_modified"]})),
        )
        .await;
    assert!(subscribed["subscription_id"].is_string());
    raos.fail(
        "subscribe_events",
        t(json!({"event_types": ["weather"]})),
        1000,
    )
    .await;

    // Content: create, list, fetch, update, delete; only the author changes it.
    let created = other
        .ok(
            "create_content",
            json!({"auth_token": other_token, "asset_type": "blog", "title": "Hello",
                   "content": "First post", "metadata": {"tags": ["news"]}}),
        )
        .await;
    let post = created["asset_id"].as_str().unwrap().to_owned();
    let event = raos.event("content_published").await;
    assert_eq!(event["data"]["asset_id"], post.as_str());
    assert_eq!(event["data"]["title"], "Hello");
    let listed = raos
        .ok("list_content", t(json!({"content_type": "blog"})))
        .await;
    assert_eq!(listed["content_list"][0]["asset_id"], post.as_str());
    assert_eq!(listed["content_list"][0]["asset_type"], "blog");
    let none = raos
        .ok("list_content", t(json!({"content_type": "video"})))
        .await;
    assert_eq!(none["content_list"], json!([]));
    let fetched = raos.ok("fetch_content", t(json!({"asset_id": post}))).await;
    assert_eq!(fetched["asset"]["content"], "First post");
    assert_eq!(fetched["asset"]["metadata"]["tags"][0], "news");
    raos.fail(
        "update_content",
        t(json!({"asset": {"asset_id": post, "title": "Mine now"}})),
        1002,
    )
    .await;
    raos.fail("delete_content", t(json!({"asset_id": post})), 1002)
        .await;
    let updated = other
        .ok(
            "update_content",
            json!({"auth_token": other_token, "asset": {"asset_id": post, "title": "Hello again"}}),
        )
        .await;
    assert!(updated["modified_date"].is_string());
    // The studio client's shape: the whole asset, with dates that are the server's to set.
    let studio = other
        .ok(
            "update_content",
            json!({"auth_token": other_token, "asset": {"asset_id": post, "asset_type": "post",
                   "title": "From the studio", "content": "Body", "metadata": null,
                   "created_date": "2020-01-01", "modified_date": "2020-01-01"}}),
        )
        .await;
    assert_ne!(studio["modified_date"], "2020-01-01", "{studio}");
    let fetched = other
        .ok(
            "fetch_content",
            json!({"auth_token": other_token, "asset_id": post, "content_type": null}),
        )
        .await;
    assert_eq!(fetched["asset"]["title"], "From the studio", "{fetched}");
    assert_eq!(fetched["asset"]["content"], "Body");
    other
        .ok(
            "delete_content",
            json!({"auth_token": other_token, "asset_id": post}),
        )
        .await;
    raos.fail("fetch_content", t(json!({"asset_id": post})), 1003)
        .await;

    // Logout ends the token at once.
    raos.ok("logout", json!({"access_token": token})).await;
    raos.fail("list_games", t(json!({})), 1001).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_limit_get_1004() {
    let server = TestServer::start_with(|c| {
        c.raos.requests_per_second = 0.5;
        c.raos.request_burst = 3.0;
    })
    .await;
    let token = token_for(&server, "hasty").await;
    let mut raos = Raos::connect(&server).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let answer = raos.call("list_games", json!({"auth_token": token})).await;
        codes.push(answer["error_code"].as_u64().unwrap_or(0));
    }
    assert_eq!(codes[..3], [0, 0, 0], "{codes:?}");
    assert!(codes[3..].iter().all(|c| *c == 1004), "{codes:?}");

    let url = server.url("/api/v1/games");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = server
            .http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error_code"], 1004);
        }
    }
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_the_query_is_limited_by_its_account() {
    let server = TestServer::start_with(|c| {
        c.raos.requests_per_second = 0.5;
        c.raos.request_burst = 3.0;
    })
    .await;
    let token = token_for(&server, "querying").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let url = server.url(&format!("/api/v1/games?auth_token={token}"));
        statuses.push(
            server
                .http
                .get(&url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_tokens_are_limited_by_address() {
    let server = TestServer::start_with(|c| {
        c.raos.address_requests_per_second = 0.5;
        c.raos.address_request_burst = 5.0;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let response = server
            .http
            .get(server.url("/api/v1/games"))
            .bearer_auth(format!("junk-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        let body: Value = response.json().await.unwrap();
        let code = if i < 5 { 1001 } else { 1004 };
        assert_eq!(body["error_code"], code, "{body}");
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // Another address is not held back by this one's flood.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap();
    let response = elsewhere.get(server.url("/api/v1/games")).send().await;
    assert_ne!(response.unwrap().status(), 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_errors_always_have_the_json_shape() {
    let server = TestServer::start().await;
    let token = token_for(&server, "shaped").await;
    let check = |status: u16, body: &Value, code: u64| {
        assert_eq!(body["success"], false, "{status} {body}");
        assert_eq!(body["error_code"], code, "{status} {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        assert!(body["timestamp"].is_string(), "{body}");
    };
    // A method the route does not take.
    let response = server
        .http
        .delete(server.url("/api/v1/auth/register"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"));
    check(405, &response.json().await.unwrap(), 1000);
    // Without a valid token, a body over 64 KiB is refused before it is read.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024));
    // (A fresh client each time: the server closes a connection whose body it refused
    // unread, and a pooled client may try to reuse it.)
    for bearer in [None, Some("junk")] {
        let mut request = reqwest::Client::new()
            .post(server.url("/api/v1/projects"))
            .header("content-type", "application/json")
            .body(big.clone());
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 413);
        check(413, &response.json().await.unwrap(), 1000);
    }
    // With one, the same body reaches the action (which judges it on its merits).
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/projects"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), 413);
    // Over even the authenticated limit: 413 in the same shape, answered from the
    // declared length alone (the body is never sent).
    let mut socket = tokio::net::TcpStream::connect(server.handle().http_addr)
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        12 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut socket, head.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let body = loop {
        let n = tokio::time::timeout(
            common::WAIT,
            tokio::io::AsyncReadExt::read(&mut socket, &mut buf),
        )
        .await
        .expect("an answer")
        .unwrap();
        assert!(
            n > 0,
            "closed without an answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && let Ok(body) = serde_json::from_str::<Value>(body)
        {
            assert!(head.starts_with("HTTP/1.1 413"), "{head}");
            break body;
        }
    };
    check(413, &body, 1000);
}

/// Calls a REST route; returns (status, body).
async fn rest(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = server.url(&format!("/api/v1{path}"));
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server.http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rest_route() {
    rest_routes(false).await;
}

/// Every route again with an unknown query parameter, and unknown fields in every body
/// (top level and in `asset`).
#[tokio::test(flavor = "multi_thread")]
async fn every_rest_route_from_a_newer_client() {
    rest_routes(true).await;
}

async fn rest_routes(future_fields: bool) {
    let server = TestServer::start_with(|c| c.raos.request_burst = 1000.0).await;
    let mut visited: HashSet<(&str, &str)> = HashSet::new();
    let mut call = async |method: &'static str,
                          template: &'static str,
                          path: String,
                          token: Option<&str>,
                          body: Option<Value>,
                          status: u16|
           -> Value {
        visited.insert((method, template));
        let (path, body) = if future_fields {
            let separator = if path.contains('?') { '&' } else { '?' };
            let body = body.map(|mut b| {
                common::add_future_fields(&mut b, &["asset"]);
                b
            });
            (format!("{path}{separator}client_build=v99"), body)
        } else {
            (path, body)
        };
        let (got, answer) = rest(&server, method, &path, token, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["success"], status < 300, "{method} {path}: {answer}");
        answer
    };
    for name in ["rest-user", "rest-friend"] {
        let (status, body) = server
            .post(
                "/api/v1/auth/register",
                &json!({"username": name, "password": "pw"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let login = call(
        "POST",
        "/auth/login",
        "/auth/login".into(),
        None,
        Some(json!({"username": "rest-user", "password": "pw"})),
        200,
    )
    .await;
    let refreshed = call(
        "POST",
        "/auth/refresh",
        "/auth/refresh".into(),
        None,
        Some(json!({"refresh_token": login["refresh_token"]})),
        200,
    )
    .await;
    let token = refreshed["access_token"].as_str().unwrap().to_owned();
    let tk = Some(token.as_str());
    call("GET", "/projects", "/projects".into(), None, None, 401).await;

    let created = call(
        "POST",
        "/projects",
        "/projects".into(),
        tk,
        Some(json!({"name": "Rest Game"})),
        201,
    )
    .await;
    let project = created["project_id"].as_str().unwrap().to_owned();
    let listed = call("GET", "/projects", "/projects".into(), tk, None, 200).await;
    assert_eq!(listed["projects"][0]["project_id"], project.as_str());
    let loaded = call(
        "GET",
        "/projects/{project_id}",
        format!("/projects/{project}"),
        tk,
        None,
        200,
    )
    .await;
    let base = loaded["project"]["modified_date"].clone();
    call(
        "PUT",
        "/projects/{project_id}",
        format!("/projects/{project}"),
        tk,
        Some(json!({"project": {"scenes": [1]}, "expected_modified_date": base})),
        200,
    )
    .await;
    // The same base again: someone (this client) saved since.
    call(
        "PUT",
        "/projects/{project_id}",
        format!("/projects/{project}"),
        tk,
        Some(json!({"project": {"scenes": [2]}, "expected_modified_date": base})),
        409,
    )
    .await;
    let added = call(
        "POST",
        "/projects/{project_id}/assets",
        format!("/projects/{project}/assets"),
        tk,
        Some(json!({"asset_name": "a.txt", "asset_type": "data", "asset_data": B64.encode("x")})),
        201,
    )
    .await;
    assert!(added["asset_id"].is_string());
    let synced = call(
        "GET",
        "/projects/{project_id}/assets",
        format!("/projects/{project}/assets"),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(synced["assets"].as_array().unwrap().len(), 1);
    let uploaded = call(
        "POST",
        "/assets",
        "/assets".into(),
        tk,
        Some(
            json!({"asset_type": "image", "filename": "p.png", "file_data": B64.encode(png(8, 8))}),
        ),
        201,
    )
    .await;
    let image = uploaded["asset_id"].as_str().unwrap().to_owned();
    let analysis = call(
        "GET",
        "/assets/{asset_id}/analysis",
        format!("/assets/{image}/analysis"),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(analysis["analysis"]["dimensions"], "8x8");
    let games = call("GET", "/games", "/games".into(), tk, None, 200).await;
    assert!(
        games["games"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["game_id"] == "ecliptic-space")
    );
    let launched = call(
        "POST",
        "/games/{game_id}/launch",
        "/games/ecliptic-space/launch".into(),
        tk,
        Some(json!({"mode": "stream"})),
        200,
    )
    .await;
    let session = launched["session_id"].as_str().unwrap().to_owned();
    // The built-in game is played on the server: there is nothing to download.
    call(
        "POST",
        "/games/{game_id}/download",
        "/games/ecliptic-space/download".into(),
        tk,
        None,
        400,
    )
    .await;
    call(
        "POST",
        "/games/sessions/{session_id}/stop",
        format!("/games/sessions/{session}/stop"),
        tk,
        None,
        200,
    )
    .await;
    call(
        "PATCH",
        "/profile",
        "/profile".into(),
        tk,
        Some(json!({"region": "us-east"})),
        200,
    )
    .await;
    let profile = call("GET", "/profile", "/profile".into(), tk, None, 200).await;
    assert_eq!(profile["profile"]["region"], "us-east");
    let achievements = call(
        "GET",
        "/achievements",
        "/achievements?game_id=ecliptic-space".into(),
        tk,
        None,
        200,
    )
    .await;
    assert!(!achievements["achievements"].as_array().unwrap().is_empty());
    call(
        "POST",
        "/friends",
        "/friends".into(),
        tk,
        Some(json!({"username": "rest-friend"})),
        201,
    )
    .await;
    let board = call(
        "GET",
        "/leaderboards/{game_id}",
        "/leaderboards/ecliptic-space?category=friends".into(),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(board["category"], "friends");
    call(
        "DELETE",
        "/friends/{username}",
        "/friends/rest-friend".into(),
        tk,
        None,
        200,
    )
    .await;
    let content = call(
        "POST",
        "/content",
        "/content".into(),
        tk,
        Some(json!({"asset_type": "post", "title": "T", "content": "C"})),
        201,
    )
    .await;
    let id = content["asset_id"].as_str().unwrap().to_owned();
    let list = call(
        "GET",
        "/content",
        "/content?content_type=post".into(),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(list["content_list"][0]["asset_id"], id.as_str());
    call(
        "PUT",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        Some(json!({"title": "T2"})),
        200,
    )
    .await;
    let fetched = call(
        "GET",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(fetched["asset"]["title"], "T2");
    // The studio client's shape: the whole asset, with dates that are the server's to set.
    call(
        "PUT",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        Some(
            json!({"asset": {"asset_id": id, "asset_type": "post", "title": "T3",
                    "content": "C3", "metadata": null, "created_date": "2020-01-01",
                    "modified_date": "2020-01-01"}}),
        ),
        200,
    )
    .await;
    let fetched = call(
        "GET",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(fetched["asset"]["title"], "T3");
    assert_eq!(fetched["asset"]["content"], "C3");
    assert_ne!(fetched["asset"]["modified_date"], "2020-01-01");
    call(
        "DELETE",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        None,
        200,
    )
    .await;
    call(
        "GET",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        None,
        404,
    )
    .await;
    call(
        "POST",
        "/content",
        "/content".into(),
        tk,
        Some(json!({"asset_type": "post", "title": 5, "content": "C"})),
        400,
    )
    .await;
    call("POST", "/auth/logout", "/auth/logout".into(), tk, None, 200).await;
    call("GET", "/profile", "/profile".into(), tk, None, 401).await;

    let all: HashSet<(&str, &str)> = ecliptic::net::rest::ACTION_ROUTES
        .iter()
        .map(|r| (r.method, r.path))
        .collect();
    let missed: Vec<_> = all.difference(&visited).collect();
    assert!(missed.is_empty(), "routes not called: {missed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_achievement_unlocked_in_the_game_reaches_a_subscriber() {
    let server = TestServer::start().await;
    let mut watcher = Raos::connect(&server).await;
    let watcher_token = watcher.sign_in(&server, "watcher").await;
    watcher
        .ok(
            "subscribe_events",
            json!({"auth_token": watcher_token, "event_types": ["achievement_unlocked"]}),
        )
        .await;

    let pilot_token = token_for(&server, "merchant").await;
    let mut game = GameClient::connect(&server).await;
    game.login(&pilot_token).await;
    game.join("sol-1").await;
    game.send(
        "trade.buy",
        json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
    )
    .await;
    let result = game.recv_reply().await;
    assert_eq!(result["payload"]["ok"], true, "{result}");

    let event = watcher.event("achievement_unlocked").await;
    assert_eq!(event["data"]["achievement_id"], "first-trade", "{event}");
    assert_eq!(event["data"]["username"], "merchant");
    assert_eq!(event["data"]["game_id"], "ecliptic-space");
    assert!(event["data"]["unlock_date"].is_string());

    // The unlock is saved: the merchant's achievements show it.
    let mut merchant = Raos::connect(&server).await;
    // The unlock's save was queued to the store's single writer before the event went
    // out; a write acknowledged now commits after it, so the read that follows sees it.
    merchant
        .ok(
            "update_player_profile",
            json!({"auth_token": pilot_token, "region": "eu-west"}),
        )
        .await;
    let list = merchant
        .ok("get_achievements", json!({"auth_token": pilot_token}))
        .await;
    let first_trade = list["achievements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["achievement_id"] == "first-trade")
        .unwrap()
        .clone();
    assert_eq!(first_trade["unlocked"], true, "{list}");
    assert!(first_trade["unlock_date"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_png_round_trip_with_ranges() {
    let server = TestServer::start().await;
    let mut raos = Raos::connect(&server).await;
    let token = raos.sign_in(&server, "artist").await;
    let image = png(320, 200);
    let uploaded = raos
        .ok(
            "upload_binary_asset",
            json!({"auth_token": token, "asset_type": "image", "filename": "nebula.png",
                   "file_data": B64.encode(&image), "compressed": false, "format": "png"}),
        )
        .await;
    let asset_id = uploaded["asset_id"].as_str().unwrap().to_owned();
    let url = uploaded["asset_url"].as_str().unwrap().to_owned();
    assert_eq!(
        url,
        format!("http://{}/assets/{asset_id}", server.handle().http_addr)
    );
    let analysis = raos
        .ok(
            "analyze_asset",
            json!({"auth_token": token, "asset_id": asset_id}),
        )
        .await;
    let a = &analysis["analysis"];
    assert_eq!(a["format"], "PNG");
    assert_eq!(a["dimensions"], "320x200");
    assert_eq!(a["color_space"], "RGBA");
    assert_eq!(a["size"], image.len());
    let score = a["quality_score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{score}");

    let response = server.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&image)));
    assert_eq!(response.bytes().await.unwrap().as_ref(), image.as_slice());

    let response = server
        .http
        .get(&url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 100-199/{}", image.len()).as_str()
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), &image[100..200]);
    let response = server
        .http
        .get(&url)
        .header("Range", format!("bytes={}-", image.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    let response = server
        .http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    let missing = server
        .http
        .get(server.url("/assets/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_saves_from_one_base_the_second_conflicts_and_nothing_is_lost() {
    let server = TestServer::start().await;
    let mut alice = Raos::connect(&server).await;
    let token = alice.sign_in(&server, "editor").await;
    let mut second = Raos::connect(&server).await;
    let created = alice
        .ok(
            "create_game_project",
            json!({"auth_token": token, "name": "Shared"}),
        )
        .await;
    let project_id = created["project_id"].as_str().unwrap().to_owned();
    let load = json!({"auth_token": token, "project_id": project_id});
    let first_copy = alice.ok("load_game_project", load.clone()).await;
    let second_copy = second.ok("load_game_project", load.clone()).await;
    let base = first_copy["project"]["modified_date"].clone();
    assert_eq!(base, second_copy["project"]["modified_date"]);

    let saved = alice
        .ok(
            "save_game_project",
            json!({"auth_token": token, "expected_modified_date": base,
                   "project": {"project_id": project_id, "scenes": [{"name": "from alice"}]}}),
        )
        .await;
    let message = second
        .fail(
            "save_game_project",
            json!({"auth_token": token, "expected_modified_date": base,
                   "project": {"project_id": project_id, "scenes": [{"name": "from bob"}]}}),
            1000,
        )
        .await;
    assert!(message.contains("modified"), "{message}");

    let now = second.ok("load_game_project", load).await;
    assert_eq!(now["project"]["scenes"], json!([{"name": "from alice"}]));
    assert_eq!(now["project"]["modified_date"], saved["modified_date"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_event_type_reaches_its_subscribers() {
    let server = TestServer::start_with(|c| c.game.progress_save_secs = 0.1).await;
    let mut raos = Raos::connect(&server).await;
    let token = raos.sign_in(&server, "listener").await;
    let mut stranger = Raos::connect(&server).await;
    let stranger_token = stranger.sign_in(&server, "stranger").await;
    let all = json!([
        "asset_updated",
        "project_modified",
        "game_state_change",
        "achievement_unlocked",
        "leaderboard_updated",
        "content_published",
        "system_notification"
    ]);
    for (client, token) in [(&mut raos, &token), (&mut stranger, &stranger_token)] {
        client
            .ok(
                "subscribe_events",
                json!({"auth_token": token, "event_types": all}),
            )
            .await;
    }
    let t = |fields: Value| {
        let mut fields = fields;
        fields["auth_token"] = json!(token);
        fields
    };

    // A project saved and an asset added: events for their owner only.
    let project = raos
        .ok("create_game_project", t(json!({"name": "Evented"})))
        .await["project_id"]
        .as_str()
        .unwrap()
        .to_owned();
    raos.ok(
        "save_game_project",
        t(json!({"project": {"project_id": project, "scripts": ["main.lua"]}})),
    )
    .await;
    let event = raos.event("project_modified").await;
    assert_eq!(event["data"]["project_id"], project.as_str());
    raos.ok(
        "add_asset",
        t(
            json!({"project_id": project, "asset_name": "a.bin", "asset_type": "data",
                 "asset_data": B64.encode([1, 2, 3])}),
        ),
    )
    .await;
    let event = raos.event("asset_updated").await;
    assert_eq!(event["data"]["name"], "a.bin");

    // A launch: everyone subscribed hears of the game's state.
    raos.ok(
        "launch_game",
        t(json!({"game_id": "ecliptic-space", "mode": "stream"})),
    )
    .await;
    let event = stranger.event("game_state_change").await;
    assert_eq!(event["data"]["state"], "started");
    assert_eq!(event["data"]["game_id"], "ecliptic-space");

    // Content and a system notification.
    raos.ok(
        "create_content",
        t(json!({"asset_type": "news", "title": "Patch notes", "content": "..."})),
    )
    .await;
    assert_eq!(
        stranger.event("content_published").await["data"]["title"],
        "Patch notes"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"))
        .args([
            "admin",
            "create-user",
            "ops",
            "--password",
            "pw",
            "--role",
            "admin",
        ])
        .arg("--data-dir")
        .arg(server.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let admin = token_for_existing(&server, "ops").await;
    let (status, body) = server
        .post_auth(
            "/api/v1/notifications",
            &admin,
            &json!({"level": "warning", "title": "Restart", "message": "in 5 minutes"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stranger.event("system_notification").await["data"]["title"],
        "Restart"
    );

    // Play: a trade unlocks an achievement and, once saved, moves the leaderboard.
    let mut game = GameClient::connect(&server).await;
    game.login(&token).await;
    game.join("sol-1").await;
    game.send(
        "trade.buy",
        json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
    )
    .await;
    assert_eq!(game.recv_reply().await["payload"]["ok"], true);
    assert_eq!(
        stranger.event("achievement_unlocked").await["data"]["username"],
        "listener"
    );
    let event = stranger.event("leaderboard_updated").await;
    assert_eq!(event["data"]["game_id"], "ecliptic-space");
    // The saved stats behind it: one trade is 10 experience.
    let profile = raos.ok("get_player_profile", t(json!({}))).await;
    assert_eq!(profile["profile"]["stats"]["trades"], 1, "{profile}");
    assert!(profile["profile"]["experience"].as_i64().unwrap() >= 10);
    let board = raos
        .ok(
            "get_leaderboard",
            t(json!({"game_id": "ecliptic-space", "category": "global"})),
        )
        .await;
    assert_eq!(
        board["leaderboard"][0]["player_name"], "listener",
        "{board}"
    );

    // The stranger never heard of the listener's project or asset.
    let heard: Vec<String> = stranger
        .events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        !heard
            .iter()
            .any(|t| t == "project_modified" || t == "asset_updated"),
        "{heard:?}"
    );
}

async fn token_for_existing(server: &TestServer, name: &str) -> String {
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": name, "password": "pw"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_developers_game_is_listed_rated_and_downloadable() {
    use common::LineClient;
    use common::garp::dev_game;
    let server = TestServer::start().await;
    let mut dev = dev_game(server.handle().dev_tcp_addr).await;
    let game = dev.keys.clone();
    let build: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    dev.publish("1.0", &build).await;
    // Two players review it: 4 and 5. (Lobby pushes carry a `type`; replies do not.)
    for (name, score) in [("critic-a", 4), ("critic-b", 5)] {
        let mut lobby = LineClient::connect(server.handle().lobby_tcp_addr).await;
        let mut call = async |request: Value| {
            lobby.send(&request).await;
            loop {
                let line = lobby.recv().await.expect("a reply");
                if line.get("type").is_none() {
                    assert_eq!(line["status"], "ok", "{line}");
                    return line["payload"].clone();
                }
            }
        };
        let registered = call(json!({"type": "REGISTER_PLAYER",
            "payload": {"username": name, "password": "pw"}}))
        .await;
        call(
            json!({"type": "ADD_REVIEW", "token": registered["session_token"],
            "payload": {"game_id": game.game_id, "score": score, "comment": "fun"}}),
        )
        .await;
    }

    let mut raos = Raos::connect(&server).await;
    let token = raos.sign_in(&server, "downloader").await;
    let games = raos.ok("list_games", json!({"auth_token": token})).await;
    let line = games["games"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["game_id"] == game.game_id.as_str())
        .expect("the developer's game is listed")
        .clone();
    assert_eq!(line["name"], "Dice");
    assert_eq!(line["genre"], "cli");
    assert_eq!(line["players"], "1-4");
    assert_eq!(line["rating"], "4.5/5", "{line}");
    let launched = raos
        .ok(
            "launch_game",
            json!({"auth_token": token, "game_id": game.game_id, "mode": "download"}),
        )
        .await;
    assert_eq!(launched["version"], "1.0");
    assert_eq!(launched["hash"], sha256_hex(&build));
    let url = launched["download_url"].as_str().unwrap();
    let bytes = server
        .http
        .get(url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), build.as_slice());
    // A download needs a token (in the header or the query).
    let anonymous = server.http.get(url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error_code"], 1001, "{body}");
    let by_query = server
        .http
        .get(format!("{url}?auth_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    // An offline game's builds go to its developer only.
    dev.set_status("OFFLINE").await;
    let refused = server
        .http
        .get(url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let developer = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": dev.username, "password": "pw"}),
        )
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let owners = server
        .http
        .get(url)
        .bearer_auth(&developer)
        .send()
        .await
        .unwrap();
    assert_eq!(owners.status(), 200);
    assert_eq!(owners.bytes().await.unwrap().as_ref(), build.as_slice());
    raos.fail(
        "launch_game",
        json!({"auth_token": token, "game_id": game.game_id, "mode": "download"}),
        1002,
    )
    .await;
    dev.set_status("ONLINE").await;

    // The studio client's `download_game` is the same, over the socket and over REST;
    // its absent optional fields come as null.
    let studio = raos
        .ok(
            "download_game",
            json!({"auth_token": token, "game_id": game.game_id, "format": null,
                   "client_build": {"studio": "2.1"}}),
        )
        .await;
    let (status, rest_answer) = rest(
        &server,
        "POST",
        &format!("/games/{}/download", game.game_id),
        Some(&token),
        Some(json!({"content_type": null, "client_build": {"studio": "2.1"}})),
    )
    .await;
    assert_eq!(status, 200, "{rest_answer}");
    for answer in [&studio, &rest_answer] {
        assert_eq!(answer["success"], true, "{answer}");
        assert_eq!(answer["download_url"], launched["download_url"], "{answer}");
        assert_eq!(answer["version"], "1.0");
        assert_eq!(answer["size"], build.len());
        assert_eq!(answer["hash"], sha256_hex(&build));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_pings_every_interval() {
    let server = TestServer::start_with(|c| c.raos.ping_interval_secs = 1).await;
    let mut raos = Raos::connect(&server).await;
    let ping = tokio::time::timeout(common::WAIT, async {
        loop {
            match raos.ws.next().await {
                Some(Ok(Message::Ping(_))) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await
    .expect("a ping within the wait");
    assert!(ping, "the socket closed before a ping");
    // The client's pong (sent by tungstenite) keeps the connection alive: it still answers.
    let answer = raos.call("list_games", json!({})).await;
    assert_eq!(answer["error_code"], 1001);
}
