//! What browsers need beyond the pages themselves (those run in Chromium, in
//! `tests/browser`): the pages served right, CORS, WebSocket tokens without headers, the
//! admin endpoints the console uses, and the game messages' station and own-ship fields.

use crate::common;

use common::{GameClient, TestServer, admin_token, token_for, ws_next};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test]
async fn the_pages_are_served_typed_and_revalidated() {
    let server = TestServer::start().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/console", "text/html"),
        ("/web/js/app.js", "text/javascript"),
        ("/web/style.css", "text/css"),
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], kind, "{path}");
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self';")
        );
        // The same file again, by its tag: 304 and no body.
        let again = server
            .http
            .get(server.url(path))
            .header("if-none-match", headers["etag"].clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
    }
    let page = server.get_text("/").await;
    assert!(page.contains(r#"<script type="module" src="/web/js/app.js">"#));
    // Nothing outside the folder, however the path is spelled.
    for path in [
        "/web/nope.js",
        "/web/../Cargo.toml",
        "/web/%2e%2e/Cargo.toml",
        "/web/js/..%2f..%2fCargo.toml",
        "/web//etc/passwd",
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}

async fn preflight(server: &TestServer, origin: &str) -> reqwest::Response {
    server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/api/v1/auth/login"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_is_same_origin_only_unless_configured() {
    let closed = TestServer::start().await;
    let response = preflight(&closed, "https://play.example.com").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let open =
        TestServer::start_with(|c| c.cors_origins = vec!["https://play.example.com".into()]).await;
    let response = preflight(&open, "https://play.example.com").await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://play.example.com"
    );
    assert!(
        response.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    // A real request from that origin is answered with the header; another origin is not.
    let login = open
        .http
        .get(open.url("/api/v1/games"))
        .header("origin", "https://play.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        login.headers()["access-control-allow-origin"],
        "https://play.example.com"
    );
    let response = preflight(&open, "https://evil.example.com").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A WebSocket request to `path` offering `subprotocol`.
fn offering(
    url: &str,
    subprotocol: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(subprotocol).unwrap(),
    );
    request
}

#[tokio::test]
async fn websockets_take_the_token_in_the_query_or_a_subprotocol() {
    let server = TestServer::start().await;
    let token = token_for(&server, "browser").await;
    let http = server.handle().http_addr;

    // /game: a token in the query logs in at once; play goes on as after auth.login.
    let (mut game, _) = tokio_tungstenite::connect_async(format!("ws://{http}/game?token={token}"))
        .await
        .unwrap();
    let ok = ws_next(&mut game).await.unwrap();
    assert_eq!(ok["type"], "auth.ok");
    assert!(ok["payload"]["player_id"].is_string());
    common::ws_send(
        &mut game,
        &json!({"type": "session.join_system", "seq": 1, "payload": {"system_id": "sol-1"}}),
    )
    .await;
    assert_eq!(ws_next(&mut game).await.unwrap()["type"], "session.joined");
    // auth.login on it now is the protocol's own error.
    common::ws_send(
        &mut game,
        &json!({"type": "auth.login", "seq": 2, "payload": {"token": token}}),
    )
    .await;
    let refused = loop {
        let msg = ws_next(&mut game).await.unwrap();
        if msg["type"] == "error" {
            break msg;
        }
    };
    assert_eq!(refused["payload"]["code"], "ALREADY_AUTHENTICATED");
    drop(game);

    // /game through the subprotocol (a second connection replaces the first one's session
    // of play, so the first is closed above).
    let (mut game, response) = tokio_tungstenite::connect_async(offering(
        &format!("ws://{http}/game"),
        &format!("access_token.{token}"),
    ))
    .await
    .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        format!("access_token.{token}").as_str()
    );
    assert_eq!(ws_next(&mut game).await.unwrap()["type"], "auth.ok");

    // A bad token is refused before the upgrade, in the protocol's own shape.
    let refused = server
        .http
        .get(server.url("/game?token=junk"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "auth.error");
    assert_eq!(body["payload"]["code"], "INVALID_TOKEN");

    // /raos: actions without auth_token use the handshake's token, either way it came.
    for request in [
        format!("ws://{http}/raos?token={token}")
            .into_client_request()
            .unwrap(),
        offering(
            &format!("ws://{http}/raos"),
            &format!("access_token.{token}"),
        ),
    ] {
        let (mut raos, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        common::ws_send(
            &mut raos,
            &json!({"action": "get_player_profile", "request_id": "p1"}),
        )
        .await;
        let profile = ws_next(&mut raos).await.unwrap();
        assert_eq!(profile["success"], true, "{profile}");
        assert_eq!(profile["request_id"], "p1");
        assert_eq!(profile["profile"]["username"], "browser", "{profile}");
    }
}

#[tokio::test]
async fn admin_endpoints_show_the_server_and_disable_accounts() {
    let server = TestServer::start().await;
    let admin = admin_token(&server, "root", "root-password").await;
    let player = token_for(&server, "mallory").await;
    let get = |path: &str, token: &str| {
        let request = server.http.get(server.url(path)).bearer_auth(token);
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    // Admins only, every one.
    for path in ["/api/v1/admin/overview", "/api/v1/admin/accounts/root"] {
        let (status, body) = get(path, &player).await;
        assert_eq!((status, &body["error_code"]), (403, &json!(1002)), "{path}");
    }
    for path in [
        "/api/v1/admin/accounts/root/disable",
        "/api/v1/admin/ledger/check",
    ] {
        let (status, _) = server.post_auth(path, &player, &json!({})).await;
        assert_eq!(status, 403, "{path}");
    }

    // A player in sol-1 shows in the overview.
    let mut game = GameClient::connect(&server).await;
    game.login(&player).await;
    game.join("sol-1").await;
    let (status, o) = get("/api/v1/admin/overview", &admin).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["success"], true);
    assert_eq!(o["tick"]["tick_hz"], 20);
    for field in ["tick", "p50_us", "p99_us", "max_us", "overruns"] {
        assert!(o["tick"][field].is_u64(), "{field}: {o}");
    }
    assert_eq!(o["connections"]["game"], 1, "{o}");
    assert!(o["inbox_depth"].is_i64() && o["store_queue_depth"].is_i64());
    assert!(o["resident_bytes"].as_i64().unwrap() > 0);
    let sol = o["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance_id"] == "sol-1")
        .unwrap();
    assert_eq!(sol["system_id"], "sol-1");
    assert_eq!(sol["players"], 1);
    assert!(sol["ships"].as_u64().unwrap() >= 1);
    assert_eq!(
        o["players"],
        json!([{"username": "mallory", "instance_id": "sol-1", "credits": 5000, "hull": 100, "docked": true}])
    );
    assert_eq!(o["rooms"], json!([]));
    assert!(o["recent_errors"].is_array() && o["slow_consumers"].is_array());

    // Look the player up, then disable the account: its live connection ends, it cannot
    // log in (told so only with the right password), and enabling it undoes that.
    let (status, account) = get("/api/v1/admin/accounts/MALLORY", &admin).await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["user_profile"]["username"], "mallory");
    assert_eq!(account["roles"], json!(["player"]));
    assert_eq!(account["disabled"], false);
    assert_eq!(account["disabled_at"], Value::Null);
    assert_eq!(account["open_sessions"], 1);
    let (status, _) = get("/api/v1/admin/accounts/nobody", &admin).await;
    assert_eq!(status, 404);

    let (status, disabled) = server
        .post_auth("/api/v1/admin/accounts/mallory/disable", &admin, &json!({}))
        .await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["disabled"], true);
    assert!(disabled["disabled_at"].is_i64());
    assert_eq!(disabled["open_sessions"], 0);
    let ended = game.recv_type("error").await;
    assert_eq!(ended["payload"]["code"], "INVALID_TOKEN");
    assert_eq!(common::close_code(&mut game.ws).await, Some(1008));
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "mallory", "password": "pw-secret"}),
        )
        .await;
    assert_eq!((status, &body["error_code"]), (403, &json!(1002)), "{body}");
    assert_eq!(
        body["error"],
        "forbidden: this account is disabled; ask an operator"
    );
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "mallory", "password": "wrong"}),
        )
        .await;
    assert_eq!((status, &body["error_code"]), (401, &json!(1001)), "{body}");
    let (status, _) = get("/api/v1/profile", &player).await;
    assert_eq!(status, 401);

    let (status, enabled) = server
        .post_auth("/api/v1/admin/accounts/mallory/enable", &admin, &json!({}))
        .await;
    assert_eq!((status, &enabled["disabled"]), (200, &json!(false)));
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "mallory", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The ledger check.
    let (status, ledger) = server
        .post_auth("/api/v1/admin/ledger/check", &admin, &json!({}))
        .await;
    assert_eq!(status, 200, "{ledger}");
    assert_eq!(ledger["holds"], true);
    assert_eq!(ledger["audit"]["violations"], json!([]));
}

#[tokio::test]
async fn stations_and_the_players_own_state_travel_with_the_world() {
    let server = TestServer::start().await;
    let token = token_for(&server, "trader").await;
    let mut game = GameClient::connect(&server).await;
    game.login(&token).await;
    let (_, snapshot) = game.join("sol-1").await;
    let payload = &snapshot["payload"];
    assert_eq!(payload["you"]["docked_at"], "earth-orbit-station");
    let earth = &payload["markets"][0];
    assert_eq!(earth["station_id"], "earth-orbit-station");
    assert_eq!(earth["name"], "Earth Orbit");
    assert_eq!(
        (earth["x"].as_f64(), earth["y"].as_f64()),
        (Some(1200.0), Some(400.0))
    );
    assert_eq!(
        earth["prices"][0],
        json!({"commodity_id": "food", "buy": 12, "sell": 10, "stock": 800})
    );

    // Nothing of its own changed: deltas carry no `you`.
    for _ in 0..3 {
        let delta = game.recv_type("world.delta").await;
        assert!(delta["payload"].get("you").is_none(), "{delta}");
    }
    // A trade changes credits and cargo: the next delta says so, once.
    game.send(
        "trade.buy",
        json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 4}),
    )
    .await;
    let result = game.recv_type("trade.result").await;
    let credits = result["payload"]["credits"].clone();
    let you = loop {
        let delta = game.recv_type("world.delta").await;
        if let Some(you) = delta["payload"].get("you") {
            break you.clone();
        }
    };
    assert_eq!(
        you,
        json!({"ship_id": snapshot["payload"]["you"]["ship_id"], "credits": credits, "hull": 100,
               "fuel": 100.0, "cargo": [{"commodity_id": "food", "qty": 4}],
               "docked_at": "earth-orbit-station"})
    );
    let next = game.recv_type("world.delta").await;
    assert!(next["payload"].get("you").is_none(), "{next}");
    // Undocking shows too.
    game.send(
        "input.command",
        json!({"thrust": 1.0, "turn": 0.0, "fire_primary": false, "dock_request": false}),
    )
    .await;
    let you = loop {
        let delta = game.recv_type("world.delta").await;
        if let Some(you) = delta["payload"].get("you") {
            break you.clone();
        }
    };
    assert_eq!(you["docked_at"], Value::Null);
}
