//! realtime-game.md on `/game`: played over a real WebSocket.

use crate::common;

use common::{GameClient, TestServer, distance, entity, token_for};
use serde_json::{Value, json};

async fn joined_player(server: &TestServer, name: &str) -> (GameClient, String, Value) {
    let token = token_for(server, name).await;
    let mut client = GameClient::connect(server).await;
    let ok = client.login(&token).await;
    assert!(ok["payload"]["player_id"].is_string(), "{ok}");
    let (joined, snapshot) = client.join("sol-1").await;
    let ship_id = joined["payload"]["ship_id"].as_str().unwrap().to_owned();
    (client, ship_id, snapshot)
}

/// Waits for a delta in which `ship` appears, and returns its entity update.
async fn next_update_of(client: &mut GameClient, ship: &str) -> Value {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no update of {ship}"
        );
        let msg = client.recv().await;
        let field = match msg["type"].as_str() {
            Some("world.delta") => "entity_updates",
            Some("world.snapshot") => "entities",
            _ => continue,
        };
        if let Some(update) = entity(&msg, field, ship) {
            return update.clone();
        }
    }
}

/// Waits until `ship` is seen more than `distance` away from where it was.
async fn wait_moved(client: &mut GameClient, ship: &str, from: &Value, distance: f64) -> Value {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "{ship} never moved");
        let update = next_update_of(client, ship).await;
        if common::distance(&update, from) > distance {
            return update;
        }
    }
}

fn moved(a: &Value, b: &Value) -> bool {
    ["x", "y", "vx", "vy", "r"].iter().any(|f| a[f] != b[f])
}

#[tokio::test]
async fn join_then_snapshot_has_the_spec_shape() {
    let server = TestServer::start().await;
    let (_client, ship_id, snapshot) = joined_player(&server, "shape").await;
    let p = &snapshot["payload"];
    assert!(p["tick"].is_u64());
    assert_eq!(p["you"]["ship_id"], ship_id.as_str());
    assert_eq!(p["you"]["credits"], 5000);
    assert_eq!(p["you"]["hull"], 100);
    assert_eq!(p["you"]["cargo"], json!([]));
    let me = entity(&snapshot, "entities", &ship_id).expect("own ship in entities");
    assert_eq!(me["kind"], "player_ship");
    for field in ["x", "y", "vx", "vy", "r", "hp"] {
        assert!(me[field].is_number(), "{field} in {me}");
    }
    let stations: Vec<&str> = p["markets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["station_id"].as_str().unwrap())
        .collect();
    assert!(stations.contains(&"earth-orbit-station") && stations.contains(&"mars-orbit-station"));
    let price = &p["markets"][0]["prices"][0];
    assert!(price["commodity_id"].is_string() && price["buy"].is_i64() && price["sell"].is_i64());
    let zone = &p["zones"][0];
    for field in [
        "zone_id",
        "zone_type",
        "center",
        "radius",
        "risk_level",
        "security_level",
        "profit_multiplier",
        "pvp_allowed",
    ] {
        assert!(!zone[field].is_null(), "{field} in {zone}");
    }
}

#[tokio::test]
async fn deltas_flow_every_tick_with_zone_context() {
    let server = TestServer::start().await;
    let (mut client, _, _) = joined_player(&server, "ticker").await;
    let first = client.recv_type("world.delta").await;
    let second = client.recv_type("world.delta").await;
    let (t1, t2) = (
        first["payload"]["tick"].as_u64().unwrap(),
        second["payload"]["tick"].as_u64().unwrap(),
    );
    assert_eq!(t2, t1 + 1, "a delta every tick");
    assert!(second["seq"].as_u64() > first["seq"].as_u64());
    let ctx = &second["payload"]["you_zone_context"];
    assert_eq!(ctx["zone_ids"], json!(["z_earth_approach"]));
    for field in [
        "blended_risk",
        "blended_security",
        "blended_profit_multiplier",
    ] {
        assert!(ctx[field].is_number(), "{field}");
    }
    assert!(second["payload"]["entity_removed"].is_array());
    assert!(second["payload"]["events"].is_array());
}

#[tokio::test]
async fn flying_moves_the_ship_from_inputs_only() {
    let server = TestServer::start().await;
    let (mut client, ship, snapshot) = joined_player(&server, "pilot").await;
    let start = entity(&snapshot, "entities", &ship).unwrap().clone();
    // A client cannot place itself: fields an input does not use are ignored, and
    // positions are never read.
    client
        .send(
            "input.command",
            json!({"thrust": 1, "turn": 0, "fire_primary": false,
                                      "dock_request": false, "x": 9999, "y": {"set": 9999}}),
        )
        .await;
    let update = wait_moved(&mut client, &ship, &start, 20.0).await;
    assert!(
        update["vx"].as_f64().unwrap() > 0.0,
        "heading 0 flies along +x: {update}"
    );
    let dx = update["x"].as_f64().unwrap() - start["x"].as_f64().unwrap();
    assert!(dx < 1000.0, "flown, not placed: {update}");
}

#[tokio::test]
async fn inputs_are_clamped_and_stale_seq_ignored() {
    let server = TestServer::start().await;
    let (mut client, ship, snapshot) = joined_player(&server, "clamp").await;
    let start = entity(&snapshot, "entities", &ship).unwrap().clone();
    // seq 10 says "stay"; seq 5 (stale) says "full thrust" and must be ignored.
    client
        .send_seq(
            "input.command",
            10,
            json!({"thrust": 0.0, "turn": 0.0, "fire_primary": false, "dock_request": false}),
        )
        .await;
    client
        .send_seq(
            "input.command",
            5,
            json!({"thrust": 1.0, "turn": 0.0, "fire_primary": false, "dock_request": false}),
        )
        .await;
    client
        .send_seq(
            "input.command",
            10,
            json!({"thrust": 1.0, "turn": 0.0, "fire_primary": false, "dock_request": false}),
        )
        .await;
    let mut still = 0;
    while still < 10 {
        let delta = client.recv_type("world.delta").await;
        if let Some(update) = entity(&delta, "entity_updates", &ship) {
            assert!(
                !moved(update, &start),
                "the ship moved on a stale input: {update}"
            );
        }
        still += 1;
    }
    // Thrust 50 and turn -9 act as 1 and -1: one tick of full thrust is 360 × 0.05 = 18.
    client
        .send_seq(
            "input.command",
            11,
            json!({"thrust": 50.0, "turn": -9.0, "fire_primary": false, "dock_request": false}),
        )
        .await;
    let update = wait_moved(&mut client, &ship, &start, 0.0).await;
    let speed = update["vx"]
        .as_f64()
        .unwrap()
        .hypot(update["vy"].as_f64().unwrap());
    assert!(
        speed > 0.0 && speed <= 18.5,
        "speed after one tick: {speed} ({update})"
    );
    let r = update["r"].as_f64().unwrap();
    assert!(
        (-0.17..0.0).contains(&r),
        "one tick of full left turn is -0.16 rad: {r}"
    );
}

#[tokio::test]
async fn docked_trading_and_repair() {
    let server = TestServer::start().await;
    let (mut client, _, snapshot) = joined_player(&server, "trader").await;
    let earth = snapshot["payload"]["markets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["station_id"] == "earth-orbit-station")
        .unwrap()
        .clone();
    let food = earth["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["commodity_id"] == "food")
        .unwrap()
        .clone();
    let buy_price = food["buy"].as_i64().unwrap();

    client
        .send(
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 10}),
        )
        .await;
    let result = client.recv_reply().await;
    assert_eq!(result["type"], "trade.result", "{result}");
    let p = &result["payload"];
    assert_eq!(p["ok"], true);
    assert_eq!(p["details"]["unit_price"], buy_price);
    assert_eq!(p["details"]["total"], buy_price * 10);
    assert_eq!(p["details"]["quantity"], 10);
    assert_eq!(p["details"]["station_id"], "earth-orbit-station");
    assert_eq!(p["details"]["commodity_id"], "food");
    assert_eq!(p["credits"], 5000 - buy_price * 10);
    assert_eq!(p["cargo"], json!([{"commodity_id": "food", "qty": 10}]));

    client
        .send(
            "trade.sell",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 4}),
        )
        .await;
    let sold = client.recv_reply().await;
    assert_eq!(sold["type"], "trade.result", "{sold}");
    let unit = sold["payload"]["details"]["unit_price"].as_i64().unwrap();
    assert!(unit < buy_price, "selling pays less than buying");
    assert_eq!(sold["payload"]["credits"], 5000 - buy_price * 10 + unit * 4);
    assert_eq!(
        sold["payload"]["cargo"],
        json!([{"commodity_id": "food", "qty": 6}])
    );

    client
        .send(
            "ship.repair_request",
            json!({"station_id": "earth-orbit-station"}),
        )
        .await;
    let repaired = client.recv_reply().await;
    assert_eq!(repaired["type"], "trade.result", "{repaired}");
    assert_eq!(repaired["payload"]["details"]["cost"], 0);
    assert_eq!(repaired["payload"]["details"]["hull"], 100);

    // Rule errors.
    let cases = [
        (
            "trade.sell",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 7}),
            "INSUFFICIENT_CARGO",
        ),
        (
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 0}),
            "INVALID_QUANTITY",
        ),
        (
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": -3}),
            "INVALID_QUANTITY",
        ),
        (
            "trade.buy",
            json!({"station_id": "nowhere-station", "commodity_id": "food", "quantity": 1}),
            "UNKNOWN_STATION",
        ),
        (
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "spice", "quantity": 1}),
            "UNKNOWN_COMMODITY",
        ),
        (
            "trade.buy",
            json!({"station_id": "mars-orbit-station", "commodity_id": "food", "quantity": 1}),
            "NOT_DOCKED",
        ),
        (
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "electronics", "quantity": 50}),
            "INSUFFICIENT_CREDITS",
        ),
        (
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "water", "quantity": 55}),
            "CARGO_FULL",
        ),
    ];
    for (kind, payload, code) in cases {
        client.send(kind, payload.clone()).await;
        let reply = client.recv_reply().await;
        assert_eq!(reply["type"], "error", "{kind} {payload}: {reply}");
        assert_eq!(reply["payload"]["code"], code, "{kind} {payload}: {reply}");
        assert!(reply["payload"]["message"].as_str().unwrap().len() > 3);
    }
}

#[tokio::test]
async fn trading_requires_docking_and_docking_works_again() {
    let server = TestServer::start().await;
    let (mut client, ship, snapshot) = joined_player(&server, "undocker").await;
    let start = entity(&snapshot, "entities", &ship).unwrap().clone();
    client.input(1.0, 0.0, false, false).await;
    wait_moved(&mut client, &ship, &start, 5.0).await;
    client.input(0.0, 0.0, false, false).await;
    let buy = json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1});
    client.send("trade.buy", buy.clone()).await;
    let reply = client.recv_reply().await;
    assert_eq!(reply["payload"]["code"], "NOT_DOCKED", "{reply}");

    // Slow and close: a dock request docks again, and trading works.
    client.input(0.0, 0.0, false, true).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        client.recv_type("world.delta").await;
        client.send("trade.buy", buy.clone()).await;
        let reply = client.recv_reply().await;
        if reply["type"] == "trade.result" {
            break;
        }
        assert_eq!(reply["payload"]["code"], "NOT_DOCKED", "{reply}");
        assert!(tokio::time::Instant::now() < deadline, "never docked");
    }
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let mut client = GameClient::connect(&server).await;
    // Before login.
    client
        .send("session.join_system", json!({"system_id": "sol-1"}))
        .await;
    assert_eq!(
        client.recv_reply().await["payload"]["code"],
        "NOT_AUTHENTICATED"
    );
    client
        .send("auth.login", json!({"token": "not-a-jwt"}))
        .await;
    let reply = client.recv_reply().await;
    assert_eq!(reply["type"], "auth.error");
    assert_eq!(reply["payload"]["code"], "INVALID_TOKEN");
    let token = token_for(&server, "badinput").await;
    client
        .send(
            "auth.login",
            json!({"token": token, "protocol_version": 99}),
        )
        .await;
    assert_eq!(
        client.recv_reply().await["payload"]["code"],
        "UNSUPPORTED_VERSION"
    );
    client.login(&token).await;
    // Logged in, not joined.
    client
        .send(
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
        )
        .await;
    assert_eq!(client.recv_reply().await["payload"]["code"], "NOT_JOINED");
    client
        .send(
            "input.command",
            json!({"thrust": 1.0, "turn": 0.0, "fire_primary": false, "dock_request": false}),
        )
        .await;
    assert_eq!(client.recv_reply().await["payload"]["code"], "NOT_JOINED");
    client
        .send("session.join_system", json!({"system_id": "atlantis"}))
        .await;
    assert_eq!(
        client.recv_reply().await["payload"]["code"],
        "UNKNOWN_SYSTEM"
    );
    let (joined, snapshot) = client.join("sol-1").await;
    // The input refused before joining does not steer the ship once it is placed: it stays
    // docked where it started for the next ten deltas.
    let ship = joined["payload"]["ship_id"].as_str().unwrap().to_owned();
    let start = entity(&snapshot, "entities", &ship).unwrap().clone();
    for _ in 0..10 {
        let delta = client.recv_type("world.delta").await;
        if let Some(update) = entity(&delta, "entity_updates", &ship) {
            assert_eq!(distance(update, &start), 0.0, "{update}");
        }
    }

    let bad: &[(&str, &str)] = &[
        ("{not json", "BAD_MESSAGE"),
        ("[1]", "BAD_MESSAGE"),
        (
            r#"{"type":"warp.drive","seq":1,"payload":{}}"#,
            "UNKNOWN_TYPE",
        ),
        (r#"{"type":"input.command","payload":{}}"#, "BAD_MESSAGE"),
        (
            r#"{"type":"input.command","seq":"x","payload":{}}"#,
            "BAD_MESSAGE",
        ),
        (
            r#"{"type":"input.command","seq":99,"payload":{"thrust":1,"turn":0,"fire_primary":1,"dock_request":false}}"#,
            "BAD_MESSAGE",
        ),
        (
            r#"{"type":"trade.buy","seq":99,"payload":{"station_id":"earth-orbit-station","commodity_id":"food","quantity":"10"}}"#,
            "BAD_MESSAGE",
        ),
        (
            r#"{"type":"trade.buy","seq":99,"payload":{"station_id":"earth-orbit-station"}}"#,
            "BAD_MESSAGE",
        ),
    ];
    for (text, code) in bad {
        client.send_text(text).await;
        let reply = client.recv_reply().await;
        assert_eq!(reply["type"], "error", "{text}: {reply}");
        assert_eq!(reply["payload"]["code"], *code, "{text}: {reply}");
    }
    // Still open and working.
    client
        .send(
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
        )
        .await;
    assert_eq!(client.recv_reply().await["type"], "trade.result");
}

#[tokio::test]
async fn action_spam_gets_cooldown() {
    let server = TestServer::start().await;
    let (mut client, _, _) = joined_player(&server, "spammer").await;
    for _ in 0..40 {
        client
            .send(
                "ship.repair_request",
                json!({"station_id": "earth-orbit-station"}),
            )
            .await;
    }
    let mut codes = Vec::new();
    for _ in 0..40 {
        let reply = client.recv_reply().await;
        codes.push(reply["payload"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert!(codes.iter().any(|c| c == "COOLDOWN"), "{codes:?}");
    assert!(codes.iter().any(|c| c == "ok"), "{codes:?}");
}

#[tokio::test]
async fn a_second_login_takes_the_session_over() {
    let server = TestServer::start().await;
    let token = token_for(&server, "twice").await;
    let mut first = GameClient::connect(&server).await;
    first.login(&token).await;
    let (joined, _) = first.join("sol-1").await;
    let ship = joined["payload"]["ship_id"].as_str().unwrap().to_owned();

    let mut second = GameClient::connect(&server).await;
    second.login(&token).await;
    let error = first.recv_reply().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["payload"]["code"], "SESSION_REPLACED");
    let closed = common::close_code(&mut first.ws).await;
    assert_eq!(closed, Some(4001));
    let (joined, _) = second.join("sol-1").await;
    assert_eq!(
        joined["payload"]["ship_id"],
        ship.as_str(),
        "the same ship, taken over"
    );
}

#[tokio::test]
async fn two_players_see_each_other_in_range_and_lose_sight_out_of_range() {
    let server = TestServer::start_with(|c| c.game.aoi_radius = 250.0).await;
    let (mut a, ship_a, _) = joined_player(&server, "watcher").await;
    let (mut b, ship_b, snapshot_b) = joined_player(&server, "runner").await;
    assert!(
        entity(&snapshot_b, "entities", &ship_a).is_some(),
        "B sees A on join"
    );
    // A learns of B through its deltas.
    next_update_of(&mut a, &ship_b).await;
    // B flies away; A sees it move, then leave.
    b.input(1.0, 0.0, false, false).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never left A's view"
        );
        let delta = a.recv_type("world.delta").await;
        let removed = delta["payload"]["entity_removed"].as_array().unwrap();
        if removed.iter().any(|id| id == ship_b.as_str()) {
            break;
        }
    }
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_hold_up_the_others() {
    let server = TestServer::start_with(|c| c.game.outbound_queue = 4).await;
    let (mut reader, _, _) = joined_player(&server, "reader").await;
    let (mut sleeper, _, _) = joined_player(&server, "sleeper").await;
    // The sleeper keeps sending inputs and never reads another byte.
    for _ in 0..50 {
        sleeper.input(0.0, 0.3, false, false).await;
    }
    let mut last = reader.recv_type("world.delta").await["payload"]["tick"]
        .as_u64()
        .unwrap();
    let mut deltas = 0;
    while deltas < 60 {
        let msg = reader.recv().await;
        match msg["type"].as_str() {
            Some("world.delta") => {
                let tick = msg["payload"]["tick"].as_u64().unwrap();
                assert_eq!(tick, last + 1, "a delta every tick");
                last = tick;
                deltas += 1;
            }
            Some("world.snapshot") => last = msg["payload"]["tick"].as_u64().unwrap(),
            _ => {}
        }
    }
}

#[tokio::test]
async fn credits_and_cargo_survive_a_restart() {
    let server = TestServer::start().await;
    let (mut client, _, _) = joined_player(&server, "keeper").await;
    client
        .send(
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "water", "quantity": 7}),
        )
        .await;
    let result = client.recv_reply().await;
    assert_eq!(result["type"], "trade.result");
    let credits = result["payload"]["credits"].clone();
    drop(client);

    let server = server.restart().await;
    let (status, login) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "keeper", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 200);
    let mut client = GameClient::connect(&server).await;
    client.login(login["access_token"].as_str().unwrap()).await;
    let (_, snapshot) = client.join("sol-1").await;
    assert_eq!(snapshot["payload"]["you"]["credits"], credits);
    assert_eq!(
        snapshot["payload"]["you"]["cargo"],
        json!([{"commodity_id": "water", "qty": 7}])
    );
}

#[tokio::test]
async fn shutdown_closes_game_sockets_with_1001() {
    let mut server = TestServer::start().await;
    let (mut client, _, _) = joined_player(&server, "leaver").await;
    let handle = server.handle.take().unwrap();
    let shutdown = tokio::spawn(handle.shutdown());
    let code = common::close_code(&mut client.ws).await;
    assert_eq!(code, Some(1001));
    shutdown.await.unwrap();
}

#[tokio::test]
async fn fighting_a_pirate_until_it_is_destroyed() {
    let data = tempfile::tempdir().unwrap();
    common::game_data_copy(data.path(), common::hunt::arena);
    let dir = data.path().to_owned();
    let server = TestServer::start_with(move |c| c.game.data_dir = Some(dir)).await;
    let token = token_for(&server, "hunter").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    let (joined, snapshot) = client.join("arena-1").await;
    let mut hunt = common::hunt::Hunt::new(&joined, &snapshot);
    let me = hunt.me.clone();
    let destroyed = hunt
        .until(&mut client, |msg| {
            if msg["type"] != "combat.event" {
                return false;
            }
            let event = &msg["payload"];
            assert!(
                event["damage"].is_u64() && event["target_hp"].is_u64(),
                "{event}"
            );
            event["kind"] == "destroyed" && event["source_id"] == me.as_str()
        })
        .await;
    let event = &destroyed["payload"];
    assert!(event["target_id"].as_str().unwrap().starts_with("npc_"));
    assert_eq!(event["target_hp"], 0);
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let server = TestServer::start().await;
    let mut client = GameClient::connect(&server).await;
    let huge = format!(
        r#"{{"type":"auth.login","seq":1,"payload":{{"token":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    client.send_text(&huge).await;
    let code = common::close_code(&mut client.ws).await;
    assert_eq!(code, Some(1009));
    // The server is fine.
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_game_connection_that_never_logs_in_is_closed() {
    let server = TestServer::start_with(|c| c.limits.unauthenticated_timeout_secs = 1).await;
    let mut client = GameClient::connect(&server).await;
    let reply = client.recv_reply().await;
    assert_eq!(reply["payload"]["code"], "NOT_AUTHENTICATED");
    assert_eq!(
        common::ws_next(&mut client.ws).await.err(),
        Some(Some(1008))
    );
}

#[tokio::test]
async fn deltas_keep_to_the_bandwidth_budget_and_everyone_still_arrives() {
    // 16 KiB/s at 20 Hz: about 819 bytes per delta, envelope included.
    let server = TestServer::start_with(|c| c.game.client_bytes_per_sec = 16 * 1024).await;
    let mut others = Vec::new();
    let mut ids = Vec::new();
    for n in 0..7 {
        let (mut client, ship, _) = joined_player(&server, &format!("crowd{n}")).await;
        client
            .input(0.5, if n % 2 == 0 { 1.0 } else { -1.0 }, false, false)
            .await;
        ids.push(ship);
        others.push(client);
    }
    let (mut observer, me, _) = joined_player(&server, "observer").await;
    observer.input(0.2, 0.5, false, false).await;
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while seen.len() < ids.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw {:?}",
            ids.iter()
                .filter(|i| !seen.contains(*i))
                .collect::<Vec<_>>()
        );
        let msg = observer.recv().await;
        if msg["type"] != "world.delta" {
            continue;
        }
        let size = msg.to_string().len();
        let own = entity(&msg, "entity_updates", &me).map_or(0, |e| e.to_string().len());
        assert!(size <= 819 + own + 16, "a {size}-byte delta: {msg}");
        for e in msg["payload"]["entity_updates"].as_array().unwrap() {
            seen.insert(e["id"].as_str().unwrap().to_owned());
        }
    }
    drop(others);
}

#[tokio::test]
async fn every_message_from_a_newer_client_gets_its_normal_answer() {
    let server = TestServer::start().await;
    let token = token_for(&server, "newer").await;
    let mut client = GameClient::connect(&server).await;
    // Every message below carries an unknown top-level field and one inside its payload.
    client.future_fields = true;
    let ok = client.login(&token).await;
    assert!(ok["payload"]["player_id"].is_string(), "{ok}");
    let (joined, snapshot) = client.join("sol-1").await;
    let ship = joined["payload"]["ship_id"].as_str().unwrap().to_owned();

    let station = "earth-orbit-station";
    for (kind, quantity, cargo) in [("trade.buy", 10, 10), ("trade.sell", 4, 6)] {
        client
            .send(
                kind,
                json!({"station_id": station, "commodity_id": "food", "quantity": quantity}),
            )
            .await;
        let result = client.recv_reply().await;
        assert_eq!(result["type"], "trade.result", "{kind}: {result}");
        assert_eq!(result["payload"]["ok"], true, "{result}");
        let food = result["payload"]["cargo"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["commodity_id"] == "food")
            .cloned()
            .unwrap();
        assert_eq!(food["qty"], cargo, "{result}");
    }
    client
        .send("ship.repair_request", json!({"station_id": station}))
        .await;
    let repaired = client.recv_reply().await;
    assert_eq!(repaired["type"], "trade.result", "{repaired}");
    assert_eq!(repaired["payload"]["details"]["hull"], 100);

    let start = entity(&snapshot, "entities", &ship).unwrap().clone();
    client.input(1.0, 0.0, false, false).await;
    wait_moved(&mut client, &ship, &start, 20.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_flood_costs_the_inbox_nothing() {
    // An inbox this small overflows at once if inputs take places in it.
    let server = TestServer::start_with(|c| {
        c.limits.inbox_capacity = 32;
        c.game.outbound_queue = 16;
    })
    .await;
    let (mut client, ship, snapshot) = joined_player(&server, "flooder").await;
    let start = entity(&snapshot, "entities", &ship).unwrap().clone();
    // Thousands of "stay docked" inputs, then one to fly: the latest wins.
    let stay = r#"{"thrust": 0.0, "turn": 0.0, "fire_primary": false, "dock_request": false}"#;
    for seq in 1..=5000u64 {
        client
            .send_text(&format!(
                r#"{{"type":"input.command","seq":{seq},"payload":{stay}}}"#
            ))
            .await;
    }
    client
        .send_seq(
            "input.command",
            5001,
            json!({"thrust": 1.0, "turn": 0.0, "fire_primary": false, "dock_request": false}),
        )
        .await;
    // The connection survived (a busy answer per input would have overflowed its queue),
    // and the last input flew the ship.
    wait_moved(&mut client, &ship, &start, 1.0).await;
    client
        .send(
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
        )
        .await;
    let reply = client.recv_reply().await;
    assert!(
        reply["type"] == "error" || reply["type"] == "trade.result",
        "{reply}"
    );
    let busy = |m: &Value| m["type"] == "error" && m["payload"]["code"] == "SERVER_BUSY";
    assert!(!busy(&reply), "the inbox had room: {reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_sent_right_after_the_join_request_steers_the_new_ship() {
    let server = TestServer::start().await;
    let token = token_for(&server, "pipeliner").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    // Join and steer without waiting for session.joined, as a client pipelining its
    // requests does: the input counts once the ship is placed, and is not refused.
    client
        .send("session.join_system", json!({"system_id": "sol-1"}))
        .await;
    client.input(1.0, 0.0, false, false).await;
    let joined = client.recv_reply().await;
    assert_eq!(joined["type"], "session.joined", "{joined}");
    let ship = joined["payload"]["ship_id"].as_str().unwrap().to_owned();
    let snapshot = client.recv_type("world.snapshot").await;
    let start = entity(&snapshot, "entities", &ship).unwrap().clone();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "{ship} never moved");
        let msg = client.recv().await;
        assert_ne!(msg["type"], "error", "{msg}");
        if entity(&msg, "entity_updates", &ship).is_some_and(|e| distance(e, &start) > 5.0) {
            break;
        }
    }
    server.shutdown().await;
}
