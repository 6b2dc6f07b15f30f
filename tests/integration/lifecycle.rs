//! One connection lifecycle for every WebSocket endpoint: the same rules end a
//! connection on each (no authentication in time, its session ended, the server shutting
//! down), with the code `protocol::close` gives that ending there, after what each
//! protocol tells first.

use crate::common;

use common::garp::Garp;
use common::{GameClient, TestServer, close_code, ws_connect, ws_next};
use serde_json::{Value, json};

/// The next message that is not a world update.
async fn next_told(ws: &mut common::Ws) -> Value {
    loop {
        let message = ws_next(ws).await.expect("a message before the close");
        let kind = message["type"].as_str().unwrap_or("");
        if !kind.starts_with("world.") {
            return message;
        }
    }
}

/// `/game`, `/ws` and `/raos` connections on `token`'s session.
async fn logged_in(server: &TestServer, token: &str) -> (GameClient, common::Ws, common::Ws) {
    let http = server.handle().http_addr;
    let mut game = GameClient::connect(server).await;
    game.login(token).await;
    let mut comms = ws_connect(&format!("ws://{http}/ws?token={token}")).await;
    let welcome = ws_next(&mut comms).await.expect("welcome");
    assert_eq!(welcome["type"], "Status");
    let raos = ws_connect(&format!("ws://{http}/raos?token={token}")).await;
    (game, comms, raos)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_websocket_endpoint_ends_connections_by_the_same_rules() {
    let server = TestServer::start_with(|c| c.limits.unauthenticated_timeout_secs = 1).await;
    let http = server.handle().http_addr;
    let game_keys = common::garp::dev_game(server.handle().dev_tcp_addr)
        .await
        .keys
        .clone();

    // Not authenticated in time: `/game` and `/raos` are told in their own shapes, GARP's
    // unanswered handshake is not; each is closed with 1008. (GARP's redirect, followed on
    // the way, is done with 1000; `/ws` takes no connection without a token.)
    let mut game = ws_connect(&format!("ws://{http}/game")).await;
    let mut raos = ws_connect(&format!("ws://{http}/raos")).await;
    let (mut garp, challenge) = common::garp::open(http, &game_keys.api_key).await;
    assert!(challenge["nonce"].is_string(), "{challenge}");
    let told = next_told(&mut game).await;
    assert_eq!(told["type"], "error", "{told}");
    assert_eq!(told["payload"]["code"], "NOT_AUTHENTICATED");
    let told = next_told(&mut raos).await;
    assert_eq!(
        (told["success"].clone(), told["error_code"].clone()),
        (json!(false), json!(1001))
    );
    for (name, ws) in [
        ("game", &mut game),
        ("raos", &mut raos),
        ("garp", &mut garp),
    ] {
        assert_eq!(close_code(ws).await, Some(1008), "{name}");
    }
    let no_token = tokio_tungstenite::connect_async(format!("ws://{http}/ws")).await;
    assert!(no_token.is_err(), "/ws takes no connection without a token");

    // A session ended (a logout elsewhere): `/game` is told `INVALID_TOKEN`, `/raos` an
    // unauthorized failure, then both close with 1008; `/ws` closes with its 4001.
    let login = server.register_and_login("ender", "pw-secret").await;
    let token = login["access_token"].as_str().expect("a token").to_owned();
    let (mut game, mut comms, mut raos) = logged_in(&server, &token).await;
    let (status, _) = server
        .post_auth("/api/v1/auth/logout", &token, &json!({}))
        .await;
    assert_eq!(status, 200);
    let told = next_told(&mut game.ws).await;
    assert_eq!(told["payload"]["code"], "INVALID_TOKEN", "{told}");
    let told = next_told(&mut raos).await;
    assert_eq!(told["error_code"], 1001, "{told}");
    assert_eq!(close_code(&mut game.ws).await, Some(1008));
    assert_eq!(close_code(&mut raos).await, Some(1008));
    assert_eq!(close_code(&mut comms).await, Some(4001));

    // The server shutting down: every endpoint's connections close with 1001.
    let token = common::token_for_existing(&server, "ender").await;
    let (mut game, mut comms, mut raos) = logged_in(&server, &token).await;
    let mut garp = Garp::connect(http, &game_keys).await;
    let stopping = tokio::spawn(server.shutdown());
    for (name, ws) in [
        ("game", &mut game.ws),
        ("comms", &mut comms),
        ("raos", &mut raos),
        ("garp", &mut garp.ws),
    ] {
        assert_eq!(close_code(ws).await, Some(1001), "{name}");
    }
    stopping.await.expect("the server stops");
}
