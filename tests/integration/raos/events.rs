//! Events from the game and the platform reaching RaOS subscribers.

use crate::common;

use base64::Engine;
use common::{GameClient, TestServer, token_for, token_for_existing};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

use super::*;

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
    let out = crate::common::database::ecliptic_command(server.dir.path())
        .args([
            "admin",
            "create-user",
            "ops",
            "--password",
            "pw-secret",
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
