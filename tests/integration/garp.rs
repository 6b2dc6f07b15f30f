//! GARP (garp.md, garp-notes.md) over real WebSockets, as a GARP client plays it: the
//! redirect, the nonce and HMAC, players, wages into pots, finishes, the ladder, and a
//! period resolving.

use crate::common;

use common::garp::{
    GRANT, Garp, Player, details, dev_game, open, register, send, sign, wager_server as server,
};
use common::{TestServer, close_code, ws_next};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_flow_as_a_garp_client() {
    let server = server().await;
    let mut game = dev_game(server.handle().dev_tcp_addr).await;
    register(&server, "lars").await;
    register(&server, "mia").await;
    let mut garp = Garp::connect(server.handle().http_addr, &game).await;

    // Authentication: ok, wrong password, wrong API key.
    let answer = garp
        .call(
            ".AuthenticationRequest",
            json!({"username": "lars", "userpass": "pw-secret", "apikey": game.api_key}),
        )
        .await;
    assert_eq!(answer["displayName"], "The lars", "{answer}");
    assert_eq!(answer["newPlayer"], true);
    assert_eq!(answer["gameId"], game.game_id.as_str());
    assert_eq!(answer["wage"], "1");
    assert!(answer["userId"].is_string());
    assert!(answer["authToken"].as_str().unwrap().len() >= 16);
    let lars = Player {
        token: answer["authToken"].as_str().unwrap().to_owned(),
        user_id: answer["userId"].as_str().unwrap().to_owned(),
    };
    let answer = garp
        .call(
            ".AuthenticationRequest",
            json!({"username": "lars", "userpass": "nope", "apikey": game.api_key}),
        )
        .await;
    assert_eq!(details(&answer), "User password unrecognized .");
    let answer = garp
        .call(
            ".AuthenticationRequest",
            json!({"username": "lars", "userpass": "pw-secret", "apikey": "KpcxJ-mkxhV-nunAs-KbItV-FbNTV"}),
        )
        .await;
    assert_eq!(details(&answer), "API key not matching.");
    let mia = garp.authenticate(&game, "mia").await;

    // A keep-alive gets no answer: the next message is the answer to the next request.
    garp.ws.send(Message::Text(" ".into())).await.unwrap();

    // Account details, and a token that is not this user's.
    assert_eq!(garp.balance(&lars).await, GRANT);
    let answer = garp
        .call(
            ".AccountDetailsRequest",
            json!({"authToken": mia.token, "userId": lars.user_id}),
        )
        .await;
    assert_eq!(details(&answer), "Athentication not successful.");

    // A wage: the balance drops, a play opens.
    let placed = garp.wage(&game, &lars, "10").await;
    assert_eq!(placed["status"], "OK", "{placed}");
    assert_eq!(placed["value"], GRANT - 10);
    assert_eq!(placed["currency"], "ATH");
    assert_eq!(placed["reason"], "");
    assert_eq!(placed["gameid"], game.game_id.as_str());
    assert_eq!(placed["authToken"], lars.token.as_str());
    let lars_play = placed["playid"].clone();
    assert!(lars_play.is_i64(), "{placed}");

    // The same requestId again: the same answer, nothing more debited.
    let repeat = json!({"authToken": lars.token, "gameId": game.game_id, "userId": lars.user_id,
                        "apiKey": game.api_key, "wage": "10"});
    let first = garp
        .call_with_id(".SetWageRequest", repeat.clone(), "wage-once")
        .await;
    let again = garp
        .call_with_id(".SetWageRequest", repeat, "wage-once")
        .await;
    assert_eq!(first, again);
    assert_eq!(garp.balance(&lars).await, GRANT - 20);

    // Refusals: not enough coins, another game, bad auth.
    let answer = garp.wage(&game, &mia, "1000").await;
    assert_eq!(details(&answer), "Error: Not enough coins available.");
    assert_eq!(garp.balance(&mia).await, GRANT);
    let answer = garp
        .call(
            ".SetWageRequest",
            json!({"authToken": mia.token, "gameId": "no-such-game", "userId": mia.user_id,
                   "apiKey": game.api_key, "wage": "1"}),
        )
        .await;
    assert_eq!(details(&answer), "Game doesn't exist.");
    let answer = garp
        .call(
            ".SetWageRequest",
            json!({"authToken": "forged", "gameId": game.game_id, "userId": mia.user_id,
                   "apiKey": game.api_key, "wage": "1"}),
        )
        .await;
    assert_eq!(details(&answer), "Authentication is failing.");

    // Finishing plays: ok, someone else's, twice, missing id.
    let mia_play = garp.wage(&game, &mia, "5").await["playid"].clone();
    let answer = garp.finish(&lars, &lars_play, 700).await;
    assert_eq!(answer["status"], "OK", "{answer}");
    assert_eq!(answer["authToken"], lars.token.as_str());
    assert_eq!(
        details(&garp.finish(&lars, &mia_play, 1).await),
        "Play doesn't belong to this user."
    );
    assert_eq!(
        details(&garp.finish(&lars, &lars_play, 5).await),
        "Play already finished."
    );
    let answer = garp
        .call(
            ".FinishGameRequest",
            json!({"authToken": lars.token, "userId": lars.user_id, "scoreValue": 3}),
        )
        .await;
    assert_eq!(details(&answer), "Play id missing.");
    assert_eq!(garp.finish(&mia, &mia_play, 900).await["status"], "OK");

    // The ladder: the caller's latest finished play first, then by score.
    let ladder = garp.ladder(&game, &lars).await;
    assert_eq!(ladder["totalGames"], 3, "{ladder}");
    assert_eq!(ladder["inPlay"], 25);
    let time_left = ladder["timeLeft"].as_i64().unwrap();
    assert!(time_left > 0 && time_left <= 24 * 3600, "{ladder}");
    let lines = ladder["ladder"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{ladder}");
    // Values as the reference sends them: strings, and the date as YYYY-MM-DD.
    assert_eq!(ladder["authToken"], lars.token.as_str());
    assert_eq!(lines[0]["displayname"], "The lars");
    assert_eq!(lines[0]["position"], "2");
    assert_eq!(lines[1]["displayname"], "The mia");
    assert_eq!(lines[1]["position"], "1");
    assert_eq!(lines[1]["score"], "900");
    assert_eq!(lines[1]["amount"], "5");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(lines[1]["date"], today.as_str());
    assert_eq!(lines[2]["position"], "2");

    // Game info: the terms as the developer set them.
    game.update(json!({"wage": 3, "payout_shares": [60, 30, 10, 0, 0]}))
        .await;
    let info = garp
        .call(
            ".GameInfoRequest",
            json!({"apikey": game.api_key, "protocolId": "1"}),
        )
        .await;
    assert_eq!(info["sessionId"], garp.session_id.as_str(), "{info}");
    assert_eq!(info["gameId"], game.game_id.as_str());
    assert_eq!(info["wage"], "3");
    assert_eq!(
        [
            &info["player1"],
            &info["player2"],
            &info["player3"],
            &info["player4"],
            &info["player5"]
        ],
        [
            &json!("60"),
            &json!("30"),
            &json!("10"),
            &json!("0"),
            &json!("0")
        ]
    );
    assert_eq!(info["description"], "roll high");
    assert!(info["scheme"].is_string());
    let answer = garp
        .call(
            ".GameInfoRequest",
            json!({"apikey": "nope", "protocolId": "1"}),
        )
        .await;
    assert_eq!(details(&answer), "API key not matching.");

    // Offline: wages are refused, and new sessions get "Unknown GameID" and 4000.
    game.set_status("OFFLINE").await;
    let answer = garp.wage(&game, &mia, "1").await;
    assert_eq!(details(&answer), "Game doesn't exist.");
    let (mut refused, first) = open(server.handle().http_addr, &game.api_key).await;
    assert_eq!(first["@class"], ".AuthenticatedConnectResponse");
    assert_eq!(first["error"], "Unknown GameID");
    assert_eq!(first["requestId"], "0");
    assert_eq!(close_code(&mut refused).await, Some(4000));

    let audit = audit(&server);
    assert!(audit.holds(), "{:?}", audit.violations);
    assert_eq!(audit.pots, 25);
}

fn audit(server: &TestServer) -> ecliptic::services::wallet::Audit {
    crate::common::database::open_store(&server.config.data_dir)
        .read_now(ecliptic::services::wallet::audit)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_tokens_and_wrong_hmacs_are_refused_with_4000() {
    let server = server().await;
    let game = dev_game(server.handle().dev_tcp_addr).await;

    let (mut ws, first) = open(server.handle().http_addr, "Nope0-Nope0-Nope0-Nope0-Nope0").await;
    assert_eq!(first["error"], "Unknown GameID", "{first}");
    assert_eq!(close_code(&mut ws).await, Some(4000));

    // Before the handshake, any other request gets an error and the socket stays open.
    let (mut ws, challenge) = open(server.handle().http_addr, &game.api_key).await;
    let nonce = challenge["nonce"].as_str().unwrap().to_owned();
    send(
        &mut ws,
        json!({"@class": ".AccountDetailsRequest", "authToken": "x", "userId": "1", "requestId": "7"}),
    )
    .await;
    let answer = ws_next(&mut ws).await.unwrap();
    assert_eq!(answer["@class"], ".AccountDetailsResponse");
    assert_eq!(answer["requestId"], "7");
    assert!(details(&answer).contains("Not connected"), "{answer}");

    // The HMAC of another nonce (or with another key) does not match.
    let wrong = sign(&game.secret, &format!("{nonce}x"));
    send(
        &mut ws,
        json!({"@class": ".AuthenticatedConnectRequest", "hmac": wrong}),
    )
    .await;
    let answer = ws_next(&mut ws).await.unwrap();
    assert_eq!(answer["@class"], ".AuthenticatedConnectResponse");
    assert!(answer["error"].is_string(), "{answer}");
    assert!(answer.get("sessionId").is_none());
    assert_eq!(close_code(&mut ws).await, Some(4000));

    let (mut ws, _) = open(server.handle().http_addr, &game.api_key).await;
    send(
        &mut ws,
        json!({"@class": ".AuthenticatedConnectRequest", "hmac": "not base64!"}),
    )
    .await;
    assert!(ws_next(&mut ws).await.unwrap()["error"].is_string());
    assert_eq!(close_code(&mut ws).await, Some(4000));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_garp_errors_and_the_session_goes_on() {
    let server = server().await;
    let game = dev_game(server.handle().dev_tcp_addr).await;
    register(&server, "olga").await;
    let mut garp = Garp::connect(server.handle().http_addr, &game).await;
    let olga = garp.authenticate(&game, "olga").await;

    let cases: [(&str, &str, &str); 6] = [
        ("{not json", ".ErrorResponse", "malformed JSON"),
        ("[1,2]", ".ErrorResponse", "JSON object"),
        (r#"{"requestId":"1"}"#, ".ErrorResponse", "@class"),
        (
            r#"{"@class":".DanceRequest","requestId":"1"}"#,
            ".DanceResponse",
            "unknown request class",
        ),
        (
            r#"{"@class":".AccountDetailsRequest","userId":"1","requestId":"1"}"#,
            ".AccountDetailsResponse",
            "authToken",
        ),
        // A field the request does not use is ignored: the answer is about the token.
        (
            r#"{"@class":".AccountDetailsRequest","authToken":"a","userId":"1","requestId":"1","extra":true}"#,
            ".AccountDetailsResponse",
            "Athentication not successful.",
        ),
    ];
    for (text, class, needle) in cases {
        garp.ws.send(Message::Text(text.into())).await.unwrap();
        let answer = ws_next(&mut garp.ws).await.unwrap();
        assert_eq!(answer["@class"], class, "{text} -> {answer}");
        assert!(details(&answer).contains(needle), "{text} -> {answer}");
    }
    // Wrong types: a wage that is not a whole number, a userId that is an object.
    let answer = garp.wage(&game, &olga, "ten").await;
    assert!(details(&answer).contains("Invalid wage"), "{answer}");
    let answer = garp
        .call(
            ".AccountDetailsRequest",
            json!({"authToken": olga.token, "userId": {"id": 1}}),
        )
        .await;
    assert!(answer["error"]["details"].is_string(), "{answer}");
    garp.ws
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut garp.ws).await.unwrap()["@class"],
        ".ErrorResponse"
    );
    // Still a working session, nothing debited.
    assert_eq!(garp.balance(&olga).await, GRANT);

    // A frame over the limit closes the socket with 1009; the server keeps serving.
    let huge = "x".repeat(server.config.limits.ws_message_bytes + 1);
    let _ = garp.ws.send(Message::Text(huge.into())).await;
    assert_eq!(close_code(&mut garp.ws).await, Some(1009));
    let mut again = Garp::connect(server.handle().http_addr, &game).await;
    let olga = again.authenticate(&game, "olga").await;
    assert_eq!(again.balance(&olga).await, GRANT);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_wages_that_one_balance_covers_once() {
    let server = server().await;
    let game = dev_game(server.handle().dev_tcp_addr).await;
    register(&server, "twin").await;
    let mut a = Garp::connect(server.handle().http_addr, &game).await;
    let mut b = Garp::connect(server.handle().http_addr, &game).await;
    // One player's token, used from two sockets at once (a login replaces the token).
    let pa = a.authenticate(&game, "twin").await;
    let pb = Player {
        token: pa.token.clone(),
        user_id: pa.user_id.clone(),
    };
    let (ra, rb) = tokio::join!(a.wage(&game, &pa, "60"), b.wage(&game, &pb, "60"));
    let ok = [&ra, &rb].iter().filter(|r| r["status"] == "OK").count();
    assert_eq!(ok, 1, "{ra} {rb}");
    let refused = if ra["status"] == "OK" { &rb } else { &ra };
    assert_eq!(details(refused), "Error: Not enough coins available.");
    assert_eq!(a.balance(&pa).await, GRANT - 60);
    assert!(audit(&server).holds());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_period_resolves_once_pays_the_ladder_and_carries_the_rest() {
    let server = server().await;
    let mut game = dev_game(server.handle().dev_tcp_addr).await;
    // A three-second period.
    game.update(json!({"period_hours": 3.0 / 3600.0})).await;
    let mut garp = Garp::connect(server.handle().http_addr, &game).await;
    let mut players = Vec::new();
    for name in ["gold", "silver", "bronze"] {
        register(&server, name).await;
        players.push(garp.authenticate(&game, name).await);
    }
    for (player, score) in players.iter().zip([30, 20, 10]) {
        let placed = garp.wage(&game, player, "10").await;
        assert_eq!(placed["status"], "OK", "{placed}");
        assert_eq!(
            garp.finish(player, &placed["playid"], score).await["status"],
            "OK"
        );
    }
    // Pot 30: 50% = 15, 25% = 7, 15% = 4; 4 is carried into the next period.
    let expected = [GRANT - 10 + 15, GRANT - 10 + 7, GRANT - 10 + 4];
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let mut balances = Vec::new();
        for player in &players {
            balances.push(garp.balance(player).await);
        }
        if balances == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the period never resolved: {balances:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ladder = garp.ladder(&game, &players[0]).await;
    assert_eq!(ladder["inPlay"], 4, "{ladder}");
    assert_eq!(ladder["totalGames"], 0);
    let audit = audit(&server);
    assert!(audit.holds(), "{:?}", audit.violations);
    assert_eq!(audit.pots, 4);
    // Four accounts were granted coins: the developer and the three players.
    assert_eq!(audit.total_minted, 4 * GRANT);
    assert_eq!(audit.users, 4 * GRANT - 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_requests_is_refused_in_the_request_class() {
    let server = TestServer::start_with(|c| {
        c.wagers.signup_grant = GRANT;
        c.wagers.requests_per_second = 0.5;
        c.wagers.request_burst = 2.0;
    })
    .await;
    let game = dev_game(server.handle().dev_tcp_addr).await;
    let mut garp = Garp::connect(server.handle().http_addr, &game).await;
    let mut refused = 0;
    for _ in 0..5 {
        let answer = garp
            .call(
                ".GameInfoRequest",
                json!({"apikey": game.api_key, "protocolId": "1"}),
            )
            .await;
        if answer.get("error").is_some() {
            assert_eq!(details(&answer), "Too many attempts: try again later.");
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "two fit the burst, the rest are refused");
}
