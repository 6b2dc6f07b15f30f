//! GARP as the public JavaScript module 0.3.0 speaks it: the `echo-protocol`
//! subprotocol, the handshake's extra fields, `protocolId` on every request, a reconnect
//! that goes on with the old `authToken` and `sessionId`, and rooms with chat shared with
//! the lobby.

use crate::common;

use common::garp::{
    GRANT, Garp, Player, Resume, details, dev_game, open, register, send, sign,
    wager_server as server, ws_connect_as_module,
};
use common::{LineClient, TestServer, assert_line_error, close_code, ws_next};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_module_plays_reconnects_and_goes_on_with_its_token() {
    let server = server().await;
    let game = dev_game(server.handle().dev_tcp_addr).await;
    let http = server.handle().http_addr;
    register(&server, "ines").await;

    let mut garp = Garp::connect_as_module(http, &game, None).await;
    let ines = garp.authenticate(&game, "ines").await;
    assert_eq!(garp.balance(&ines).await, GRANT);
    let placed = garp.wage(&game, &ines, "7").await;
    assert_eq!(placed["status"], "OK", "{placed}");
    assert_eq!(placed["currency"], "ATH");
    let info = garp
        .call(".GameInfoRequest", json!({"apikey": game.api_key}))
        .await;
    assert_eq!(info["player1"], "50", "{info}");
    assert_eq!(info["sessionId"], garp.session_id.as_str());
    // Another currency is refused, and nothing is debited.
    let answer = garp
        .call(
            ".SetWageRequest",
            json!({"authToken": ines.token, "gameId": game.game_id, "userId": ines.user_id,
                   "wage": "1", "currency": "EUR"}),
        )
        .await;
    assert_eq!(details(&answer), "Error: Currency not supported.");
    assert_eq!(answer["authToken"], ines.token.as_str());
    assert_eq!(garp.balance(&ines).await, GRANT - 7);

    // The socket drops; the module reconnects with what it holds and never authenticates
    // again.
    let session_id = garp.session_id.clone();
    drop(garp);
    let resume = Resume {
        session_id: &session_id,
        auth_token: &ines.token,
    };
    let mut garp = Garp::connect_as_module(http, &game, Some(resume)).await;
    assert_eq!(garp.session_id, session_id, "a live session is resumed");
    assert_eq!(garp.balance(&ines).await, GRANT - 7);
    let play = garp.wage(&game, &ines, "3").await;
    assert_eq!(play["status"], "OK", "{play}");
    let finished = garp.finish(&ines, &play["playid"], 42).await;
    assert_eq!(finished["status"], "OK", "{finished}");
    let ladder = garp.ladder(&game, &ines).await;
    assert_eq!(ladder["authToken"], ines.token.as_str(), "{ladder}");
    assert_eq!(ladder["ladder"][0]["score"], "42", "{ladder}");
    assert_eq!(ladder["inPlay"], 10);

    // An unknown session id gets a new session; the token still works in it.
    let resume = Resume {
        session_id: "not-a-session",
        auth_token: &ines.token,
    };
    let mut other = Garp::connect_as_module(http, &game, Some(resume)).await;
    assert_ne!(other.session_id, session_id);
    assert_eq!(other.balance(&ines).await, GRANT - 10);

    // Authenticating again replaces the old token.
    let renewed = other.authenticate(&game, "ines").await;
    assert_ne!(renewed.token, ines.token);
    let answer = garp
        .call(
            ".AccountDetailsRequest",
            json!({"authToken": ines.token, "userId": ines.user_id}),
        )
        .await;
    assert_eq!(details(&answer), "Athentication not successful.");
    assert_eq!(garp.balance(&renewed).await, GRANT - 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_handshake_refuses_another_games_apikey() {
    let server = server().await;
    let game = dev_game(server.handle().dev_tcp_addr).await;
    let other = dev_game(server.handle().dev_tcp_addr).await;
    let http = server.handle().http_addr;
    let mut ws = ws_connect_as_module(&format!("ws://{http}/fs/{}/4", game.api_key)).await;
    let challenge = ws_next(&mut ws).await.unwrap();
    let nonce = challenge["nonce"].as_str().unwrap();
    send(
        &mut ws,
        json!({"@class": ".AuthenticatedConnectRequest", "protocolId": 4,
               "apikey": other.api_key, "hmac": sign(&game.secret, nonce),
               "platform": "Chrome", "os": "Linux"}),
    )
    .await;
    let answer = ws_next(&mut ws).await.unwrap();
    assert_eq!(answer["@class"], ".AuthenticatedConnectResponse");
    assert_eq!(answer["error"], "Unknown GameID", "{answer}");
    assert_eq!(close_code(&mut ws).await, Some(4000));
    // A client that offers no subprotocol still connects (and is given none).
    let (_, first) = open(http, &game.api_key).await;
    assert!(first["nonce"].is_string(), "{first}");
}

/// A lobby connection of a new player: (connection, token).
async fn lobby_player(
    server: &TestServer,
    name: &str,
) -> (LineClient<tokio::net::TcpStream>, String) {
    common::line_session(server.handle().lobby_tcp_addr, "REGISTER_PLAYER", name).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_and_chat_are_shared_with_the_lobby() {
    let server = server().await;
    let mut game = dev_game(server.handle().dev_tcp_addr).await;
    game.publish("1.0.0", b"a build").await;
    let http = server.handle().http_addr;
    register(&server, "host").await;
    register(&server, "stranger").await;
    let mut garp = Garp::connect_as_module(http, &game, None).await;
    let host = garp.authenticate(&game, "host").await;
    let stranger = garp.authenticate(&game, "stranger").await;

    // A room of two seats, made over GARP, is the lobby's room too.
    let created = garp
        .call(
            ".CreateRoomRequest",
            json!({"authToken": host.token, "userId": host.user_id, "gameId": game.game_id,
                   "roomSeats": 2}),
        )
        .await;
    assert!(created.get("error").is_none(), "{created}");
    assert_eq!(created["roomSerial"], 1, "{created}");
    assert_eq!(created["roomSeats"], 2);
    assert_eq!(created["players"], json!(["host"]));
    assert_eq!(created["status"], "WAITING");
    assert_eq!(created["authToken"], host.token.as_str());
    let room_id = created["roomId"].as_str().unwrap().to_owned();
    let (mut lobby, token) = lobby_player(&server, "guest").await;
    let rooms = lobby.call("LIST_ROOMS", Some(&token), json!({})).await;
    assert_eq!(
        rooms["payload"]["rooms"],
        json!([{"room_id": room_id, "game_id": game.game_id, "version": "1.0.0",
                "host": "host", "players": ["host"], "status": "WAITING"}])
    );

    // A lobby player joins; the room is then full.
    let joined = lobby
        .call("JOIN_ROOM", Some(&token), json!({"room_id": room_id}))
        .await;
    assert_eq!(joined["status"], "ok", "{joined}");
    let full = garp
        .call(
            ".JoinRoomRequest",
            json!({"authToken": stranger.token, "userId": stranger.user_id,
                   "gameId": game.game_id, "roomSerial": 1}),
        )
        .await;
    assert!(details(&full).contains("full"), "{full}");
    let queried = garp
        .call(
            ".QueryRoomRequest",
            json!({"authToken": stranger.token, "gameId": game.game_id}),
        )
        .await;
    assert_eq!(queried["rooms"][0]["players"], json!(["host", "guest"]));

    // Chat from GARP reaches the lobby; chat from the lobby reaches GARP.
    let sent = garp
        .call(
            ".SendChatRequest",
            json!({"authToken": host.token, "userId": host.user_id, "roomId": room_id,
                   "meta": {"color": "red"}, "msg": "ready?"}),
        )
        .await;
    assert_eq!(sent["status"], "OK", "{sent}");
    let heard = lobby.recv_push("ROOM_CHAT").await;
    assert_eq!(heard["status"], "ok");
    assert_eq!(heard["payload"]["room_id"], room_id.as_str());
    assert_eq!(heard["payload"]["from"], "host");
    assert_eq!(heard["payload"]["message"], "ready?");
    assert_eq!(heard["payload"]["meta"], json!({"color": "red"}));
    let said = lobby
        .call(
            "SEND_CHAT",
            Some(&token),
            json!({"room_id": room_id, "message": "go!"}),
        )
        .await;
    assert_eq!(said["status"], "ok", "{said}");
    // The host's own message came back to its socket first, then the guest's.
    let own = garp.chat_event().await;
    assert_eq!(own["msg"], "ready?", "{own}");
    let event = garp.chat_event().await;
    assert_eq!(event["roomId"], room_id.as_str());
    assert_eq!(event["username"], "guest");
    assert_eq!(event["msg"], "go!");
    assert!(event.get("requestId").is_none(), "{event}");

    // Refusals: a non-member's chat, a non-host's lock, an unknown room.
    let answer = garp
        .call(
            ".SendChatRequest",
            json!({"authToken": stranger.token, "userId": stranger.user_id,
                   "roomId": room_id, "msg": "let me in"}),
        )
        .await;
    assert!(details(&answer).contains("only members"), "{answer}");
    let non_member = lobby_player(&server, "lurker").await;
    let (mut lurker, lurker_token) = non_member;
    let answer = lurker
        .call(
            "SEND_CHAT",
            Some(&lurker_token),
            json!({"room_id": room_id, "message": "hi"}),
        )
        .await;
    assert_line_error(&answer, 102);
    let answer = garp
        .call(
            ".LockRoomRequest",
            json!({"authToken": stranger.token, "roomId": room_id}),
        )
        .await;
    assert!(details(&answer).contains("only the host"), "{answer}");
    let answer = garp
        .call(
            ".LeaveRoomRequest",
            json!({"authToken": host.token, "userId": host.user_id, "roomId": "room-nope"}),
        )
        .await;
    assert!(details(&answer).contains("no room"), "{answer}");
    let answer = garp
        .call(
            ".JoinRoomRequest",
            json!({"authToken": stranger.token, "userId": stranger.user_id,
                   "gameId": game.game_id, "roomSerial": 9}),
        )
        .await;
    assert!(details(&answer).contains("no room number 9"), "{answer}");

    // The host locks (starts) the room, as START_ROOM does, then leaves it.
    let locked = garp
        .call(
            ".LockRoomRequest",
            json!({"authToken": host.token, "roomId": room_id}),
        )
        .await;
    assert_eq!(locked["status"], "PLAYING", "{locked}");
    assert_eq!(locked["locked"], true);
    assert!(locked["gamePort"].is_u64(), "{locked}");
    let left = garp
        .call(
            ".LeaveRoomRequest",
            json!({"authToken": host.token, "userId": host.user_id, "roomId": room_id}),
        )
        .await;
    assert_eq!(left["status"], "OK", "{left}");
    let rooms = lobby.call("LIST_ROOMS", Some(&token), json!({})).await;
    assert_eq!(rooms["payload"]["rooms"][0]["players"], json!(["guest"]));
    assert_eq!(rooms["payload"]["rooms"][0]["host"], "guest");
    let player = Player {
        token: host.token.clone(),
        user_id: host.user_id.clone(),
    };
    assert_eq!(garp.balance(&player).await, GRANT);
}
