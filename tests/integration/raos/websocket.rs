//! Every action over `GET /raos`, from today's client and from one a release ahead, and
//! the server's pings.

use crate::common;

use base64::Engine;
use common::TestServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

use super::*;

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

pub(super) async fn every_action(future_fields: bool) {
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
            json!({"username": "studio", "password_hash": sha256_hex(b"pw-secret")}),
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
