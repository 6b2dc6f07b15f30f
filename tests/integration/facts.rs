//! Gameplay facts reach any plugin as bevy messages: a plugin written like a mod reads
//! them while a real client plays over `/game`.

use bevy_app::{App, FixedLast, Plugin};
use bevy_ecs::prelude::*;
use ecliptic::sim::facts::{
    AchievementUnlocked, PlayerJoined, PlayerLeft, ShipUndocked, TradeDone, ZoneEntered,
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::common::{self, GameClient, TestServer, token_for};

/// Writes one line per fact it reads to the test.
struct FactLog(mpsc::UnboundedSender<String>);

#[derive(Resource)]
struct Log(mpsc::UnboundedSender<String>);

#[allow(clippy::too_many_arguments)]
fn log_facts(
    log: Res<Log>,
    mut joined: MessageReader<PlayerJoined>,
    mut left: MessageReader<PlayerLeft>,
    mut trades: MessageReader<TradeDone>,
    mut undocked: MessageReader<ShipUndocked>,
    mut zones: MessageReader<ZoneEntered>,
    mut achievements: MessageReader<AchievementUnlocked>,
) {
    let send = |line: String| {
        let _ = log.0.send(line);
    };
    joined
        .read()
        .for_each(|m| send(format!("joined {}", m.system_id)));
    left.read()
        .for_each(|m| send(format!("left {}", m.system_id)));
    trades.read().for_each(|m| {
        send(format!(
            "traded {} {} for {}",
            m.quantity, m.commodity_id, -m.credits_delta
        ))
    });
    undocked.read().for_each(|_| send("undocked".into()));
    zones
        .read()
        .for_each(|m| send(format!("entered {}", m.zone_id)));
    achievements
        .read()
        .for_each(|m| send(format!("unlocked {} for {}", m.achievement_id, m.username)));
}

impl Plugin for FactLog {
    fn build(&self, app: &mut App) {
        app.insert_resource(Log(self.0.clone()))
            .add_systems(FixedLast, log_facts);
    }
}

/// Waits for the fact `line` (skipping others); fails after the wait.
async fn expect(log: &mut mpsc::UnboundedReceiver<String>, line: &str) {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        match tokio::time::timeout_at(deadline, log.recv()).await {
            Ok(Some(seen)) if seen == line => return,
            Ok(Some(_)) => continue,
            _ => panic!("no fact {line:?} within the wait"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_reads_gameplay_facts_as_messages() {
    let (tx, mut log) = mpsc::unbounded_channel();
    let server = TestServer::start_full(|_| {}, |s| s.add_plugin(FactLog(tx))).await;
    let token = token_for(&server, "observed").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    client.join("sol-1").await;
    expect(&mut log, "joined sol-1").await;
    expect(&mut log, "entered z_earth_approach").await;
    client
        .send(
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 2}),
        )
        .await;
    let bought = client.recv_reply().await;
    let total = bought["payload"]["details"]["total"].as_i64().unwrap();
    expect(&mut log, &format!("traded 2 food for {total}")).await;
    expect(&mut log, "unlocked first-trade for observed").await;
    client.input(1.0, 0.0, false, false).await;
    expect(&mut log, "undocked").await;
    drop(client);
    expect(&mut log, "left sol-1").await;
}

/// Reports, at tick 20, how many pirates the world holds (they spawn in its first ticks).
struct PirateCensus(mpsc::UnboundedSender<usize>);

#[derive(Resource)]
struct Census(mpsc::UnboundedSender<usize>);

fn count_pirates(
    tick: Res<ecliptic::sim::Tick>,
    census: Res<Census>,
    ships: Query<&ecliptic::sim::replication::Replicated>,
) {
    if tick.0 == 20 {
        let _ = census
            .0
            .send(ships.iter().filter(|r| r.kind == "pirate").count());
    }
}

impl Plugin for PirateCensus {
    fn build(&self, app: &mut App) {
        app.insert_resource(Census(self.0.clone()))
            .add_systems(FixedLast, count_pirates);
    }
}

/// Pirates in a server's world at tick 20, without pirates if `peaceful`.
async fn pirates(peaceful: bool) -> usize {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _server = TestServer::start_full(
        |_| {},
        |s| {
            let s = s.add_plugin(PirateCensus(tx));
            if peaceful {
                s.game_plugins(|game| game.disable::<ecliptic::sim::npc::NpcPlugin>())
            } else {
                s
            }
        },
    )
    .await;
    tokio::time::timeout(common::WAIT, rx.recv())
        .await
        .expect("tick 20 within the wait")
        .expect("a census")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_can_leave_a_built_in_feature_out() {
    assert!(pirates(false).await > 0, "the stock game has pirates");
    assert_eq!(pirates(true).await, 0, "without NpcPlugin, none");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modded_binary_keeps_the_whole_command_line() {
    let (_tmp, data) = common::temp_data_dir();
    let program = common::ChildServer::example("peaceful");
    // A flag of the stock command line, and the three listening lines.
    let server = common::ChildServer::spawn_program(&program, &data, &["--tick-hz", "30"]);
    let health: serde_json::Value = reqwest::get(server.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["tick_hz"], 30);
    // The mod took the pirates out.
    let login = common::register_and_login_at(
        &reqwest::Client::new(),
        &server.url(""),
        "modder",
        "pw-secret",
    )
    .await;
    let mut game = GameClient::connect_to(server.http).await;
    game.login(login["access_token"].as_str().unwrap()).await;
    let (_, snapshot) = game.join("sol-1").await;
    let kinds: Vec<&str> = snapshot["payload"]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert!(!kinds.contains(&"pirate"), "{kinds:?}");
    // A subcommand of the stock command line works on the modded binary too.
    let (status, _) = server.signal_and_wait("TERM");
    assert!(status.success());
    let made = std::process::Command::new(&program)
        .args([
            "admin",
            "create-user",
            "root",
            "--password",
            "pw-secret",
            "--role",
            "admin",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
}
