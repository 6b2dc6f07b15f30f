//! A developer's game in the catalog: listed, rated and downloadable.

use crate::common;

use common::TestServer;
use serde_json::{Value, json};

use super::*;

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
            "payload": {"username": name, "password": "pw-secret"}}))
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
            &json!({"username": dev.username, "password": "pw-secret"}),
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
