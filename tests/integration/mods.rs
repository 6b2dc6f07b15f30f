//! The example mods, each run as its own server binary with the stock command line, and
//! driven over real sockets like any client would.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::{self, ChildServer, GameClient, hunt};

/// A config file that loads the arena (one weak pirate beside the home station).
fn arena_config(dir: &Path) -> std::path::PathBuf {
    game_config(dir, hunt::arena)
}

/// A config file that loads a copy of the game data changed by `edit`.
fn game_config(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, Value>),
) -> std::path::PathBuf {
    let data = dir.join("game-data");
    common::game_data_copy(&data, edit);
    let config = dir.join("ecliptic.toml");
    std::fs::write(
        &config,
        format!("[game]\ndata_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    config
}

/// Logs a new (or, with `existing`, a known) player in over `/game`.
async fn player(server: &ChildServer, name: &str, existing: bool) -> GameClient {
    let http = reqwest::Client::new();
    let base = server.url("");
    let login = if existing {
        common::login_at(&http, &base, name, "pw-secret").await
    } else {
        common::register_and_login_at(&http, &base, name, "pw-secret").await
    };
    let mut game = GameClient::connect_to(server.http).await;
    game.login(login["access_token"].as_str().unwrap()).await;
    game
}

/// The next `error`, skipping the world's stream.
async fn next_error(game: &mut GameClient) -> Value {
    game.recv_type("error").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mods_message_is_unknown_without_the_mod_and_answered_with_it() {
    let (_tmp, data) = common::temp_data_dir();

    // The stock server does not know the type.
    let stock = ChildServer::spawn(&data, &[]);
    let mut game = player(&stock, "hunter", false).await;
    game.send("bounty.board", json!({})).await;
    let error = next_error(&mut game).await;
    assert_eq!(error["payload"]["code"], "UNKNOWN_TYPE", "{error}");
    assert_eq!(
        error["payload"]["message"],
        "unknown message type \"bounty.board\""
    );
    drop(game);
    let (status, _) = stock.signal_and_wait("TERM");
    assert!(status.success());

    // The same data, served by the modded binary.
    let program = ChildServer::example("bounty_hunting");
    let modded = ChildServer::spawn_program(&program, &data, &[]);
    let mut anonymous = GameClient::connect_to(modded.http).await;
    anonymous.send("bounty.board", json!({})).await;
    let error = next_error(&mut anonymous).await;
    assert_eq!(error["payload"]["code"], "NOT_AUTHENTICATED", "{error}");

    let mut game = player(&modded, "hunter", true).await;
    // Pirates go on the board as they spawn, in the server's first ticks: ask until they
    // are there (each answer is a round trip; the wait is bounded).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let board = loop {
        game.send("bounty.board", json!({"limit": 5, "added_later": true}))
            .await;
        let board = game.recv_type("bounty.board").await;
        if board["payload"]["bounties"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
        {
            break board;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no bounties posted: {board}"
        );
    };
    // The stock world's pirates, all at their opening bounty, none claimed yet.
    assert_eq!(board["payload"]["earned"], 0, "{board}");
    let bounties = board["payload"]["bounties"].as_array().unwrap();
    assert!(!bounties.is_empty() && bounties.len() <= 5, "{board}");
    for entry in bounties {
        let id = entry["id"].as_str().unwrap();
        assert!(id.starts_with("npc_"), "{board}");
        assert_eq!(entry, &json!({"id": id, "bounty": 100}));
    }
    game.send("bounty.board", json!({"limit": 1})).await;
    let board = game.recv_type("bounty.board").await;
    assert_eq!(board["payload"]["bounties"].as_array().unwrap().len(), 1);

    // Bad input to the mod's message gets the protocol's own error shape.
    for (payload, message) in [
        (
            json!({"limit": "ten"}),
            "bounty.board: invalid payload: invalid type: string \"ten\", expected u32",
        ),
        (
            json!({"limit": -1}),
            "bounty.board: invalid payload: invalid value: integer `-1`, expected u32",
        ),
        (json!({"limit": 0}), "bounty.board: limit must be 1 to 50"),
        (json!({"limit": 51}), "bounty.board: limit must be 1 to 50"),
    ] {
        game.send("bounty.board", payload.clone()).await;
        let error = next_error(&mut game).await;
        assert_eq!(
            error["payload"],
            json!({"code": "BAD_MESSAGE", "message": message}),
            "{payload}"
        );
    }
    game.send_text(r#"{"type":"bounty.board","seq":99}"#).await;
    let error = next_error(&mut game).await;
    assert_eq!(error["payload"]["code"], "BAD_MESSAGE", "{error}");
    // Still serving.
    game.send("bounty.board", json!({})).await;
    game.recv_type("bounty.board").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_bounty_is_sent_in_deltas_and_survives_sigkill() {
    let (tmp, data) = common::temp_data_dir();
    let config = arena_config(tmp.path());
    let config = config.to_str().unwrap();
    let program = ChildServer::example("bounty_hunting");
    let server = ChildServer::spawn_program(&program, &data, &["--config", config]);
    let mut game = player(&server, "hunter", false).await;
    let (joined, snapshot) = game.join("arena-1").await;
    let mut hunting = hunt::Hunt::new(&joined, &snapshot);

    // Pirates carry their bounty in every update; the hunter is paid once one is saved.
    let mut bounties_seen = Vec::new();
    let paid = hunting
        .until(&mut game, |msg| {
            let updates = match msg["type"].as_str() {
                Some("world.delta") => &msg["payload"]["entity_updates"],
                Some("world.snapshot") => &msg["payload"]["entities"],
                _ => return msg["type"] == "bounty.paid",
            };
            for pirate in updates.as_array().unwrap() {
                if pirate["kind"] == "pirate" {
                    bounties_seen.push(pirate["bounty"].clone());
                }
            }
            false
        })
        .await;
    assert!(!bounties_seen.is_empty(), "no pirate update was seen");
    assert!(
        bounties_seen.iter().all(|b| b == &json!(100)),
        "{bounties_seen:?}"
    );
    let target = paid["payload"]["target_id"].as_str().unwrap().to_owned();
    assert!(target.starts_with("npc_"), "{paid}");
    assert_eq!(
        paid["payload"],
        json!({"target_id": target, "amount": 100, "earned": 100})
    );

    // The payment was acknowledged after COMMIT: it is there after kill -9.
    drop(game);
    server.kill_hard();
    let server = ChildServer::spawn_program(&program, &data, &["--config", config]);
    let mut game = player(&server, "hunter", true).await;
    game.send("bounty.board", json!({})).await;
    let board = game.recv_type("bounty.board").await;
    assert_eq!(board["payload"]["earned"], 100, "{board}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pirates_bounty_grows_with_each_ship_it_destroys() {
    let (tmp, data) = common::temp_data_dir();
    // The arena's pirate, made unkillable and deadly, and the player easy to hit.
    let config = game_config(tmp.path(), |files| {
        hunt::arena(files);
        let ships = files.get_mut("ships.json").unwrap();
        for class in ships["ship_classes"].as_array_mut().unwrap() {
            if class["class_id"] == "raider" {
                class["hull"] = json!(1_000_000);
                class["weapon"] = json!({"cooldown_ms": 100, "damage": 1_000,
                    "projectile_speed": 1_500, "lifetime_ms": 1_000});
            } else {
                // The player's shuttle: hard to miss.
                class["radius"] = json!(80);
            }
        }
    });
    let program = ChildServer::example("bounty_hunting");
    let server =
        ChildServer::spawn_program(&program, &data, &["--config", config.to_str().unwrap()]);
    let mut game = player(&server, "prey", false).await;
    let (joined, snapshot) = game.join("arena-1").await;
    let mut hunting = hunt::Hunt::new(&joined, &snapshot);
    let me = hunting.me.clone();
    let killed = hunting
        .until(&mut game, |msg| {
            msg["type"] == "combat.event"
                && msg["payload"]["kind"] == "destroyed"
                && msg["payload"]["target_id"] == me.as_str()
        })
        .await;
    let pirate = killed["payload"]["source_id"].as_str().unwrap().to_owned();
    // Top of the board, above every other system's pirates at their opening 100.
    game.send("bounty.board", json!({"limit": 1})).await;
    let board = game.recv_type("bounty.board").await;
    assert_eq!(
        board["payload"],
        json!({"bounties": [{"id": pirate, "bounty": 150}], "earned": 0})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn traders_fly_in_place_of_the_pirates() {
    let (_tmp, data) = common::temp_data_dir();
    let program = ChildServer::example("custom_npcs");
    let server = ChildServer::spawn_program(&program, &data, &["--tick-hz", "30"]);
    let health: Value = reqwest::get(server.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["tick_hz"], 30);
    let mut game = player(&server, "watcher", false).await;
    let (_, snapshot) = game.join("sol-1").await;

    // Watch until a trader has been seen in two places; no pirate may appear meanwhile.
    let mut first_seen: std::collections::HashMap<String, (f64, f64)> = Default::default();
    let mut updates = snapshot["payload"]["entities"].clone();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    'watch: loop {
        for entity in updates.as_array().unwrap() {
            assert_ne!(entity["kind"], "pirate", "{entity}");
            if entity["kind"] != "trader" {
                continue;
            }
            let id = entity["id"].as_str().unwrap().to_owned();
            assert!(id.starts_with("trader_"), "{entity}");
            let at = (entity["x"].as_f64().unwrap(), entity["y"].as_f64().unwrap());
            if *first_seen.entry(id).or_insert(at) != at {
                break 'watch;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no trader seen moving: {first_seen:?}"
        );
        updates = game.recv_type("world.delta").await["payload"]["entity_updates"].clone();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_commands_list_a_players_kills_on_comms_and_game() {
    let (tmp, data) = common::temp_data_dir();
    let config = arena_config(tmp.path());
    let program = ChildServer::example("chat_commands");
    let server =
        ChildServer::spawn_program(&program, &data, &["--config", config.to_str().unwrap()]);
    let http = reqwest::Client::new();
    let login = common::register_and_login_at(&http, &server.url(""), "ace", "pw-secret").await;
    let token = login["access_token"].as_str().unwrap();
    let mut game = GameClient::connect_to(server.http).await;
    game.login(token).await;
    let mut comms = common::ws_connect(&format!("ws://{}/ws?token={token}", server.http)).await;
    let welcome = common::ws_next(&mut comms).await.unwrap();
    assert_eq!(welcome["type"], "Status", "{welcome}");

    // Nothing yet, on either protocol.
    game.send("kills.recent", json!({})).await;
    let none = game.recv_type("kills.recent").await;
    assert_eq!(none["payload"], json!({"kills": [], "total": 0}));
    common::ws_send(&mut comms, &json!({"type": "X-Kills", "data": null})).await;
    let none = common::ws_next(&mut comms).await.unwrap();
    assert_eq!(none["type"], "X-Kills", "{none}");
    assert_eq!(none["data"], json!({"kills": [], "total": 0}));

    // One pirate down.
    let (joined, snapshot) = game.join("arena-1").await;
    let mut hunting = hunt::Hunt::new(&joined, &snapshot);
    let me = hunting.me.clone();
    let destroyed = hunting
        .until(&mut game, |msg| {
            msg["type"] == "combat.event"
                && msg["payload"]["kind"] == "destroyed"
                && msg["payload"]["source_id"] == me.as_str()
        })
        .await;
    let target = destroyed["payload"]["target_id"].clone();

    game.send("kills.recent", json!({"limit": 3})).await;
    let kills = game.recv_type("kills.recent").await;
    let tick = kills["payload"]["kills"][0]["tick"].clone();
    assert!(tick.as_u64().is_some_and(|t| t > 0), "{kills}");
    let listed =
        json!({"kills": [{"target_id": target, "kind": "pirate", "tick": tick}], "total": 1});
    assert_eq!(kills["payload"], listed);
    common::ws_send(
        &mut comms,
        &json!({"type": "X-Kills", "data": {"limit": 3, "added_later": 1}, "id": "k1"}),
    )
    .await;
    let kills = common::ws_next(&mut comms).await.unwrap();
    assert_eq!(kills["type"], "X-Kills", "{kills}");
    assert_eq!(kills["data"], listed);

    // Bad input, in each protocol's own shape.
    game.send("kills.recent", json!({"limit": 0})).await;
    let error = game.recv_type("error").await;
    assert_eq!(
        error["payload"],
        json!({"code": "BAD_MESSAGE", "message": "kills.recent: limit must be 1 to 20"})
    );
    game.send("kills.recent", json!([1])).await;
    let error = game.recv_type("error").await;
    assert_eq!(error["payload"]["code"], "BAD_MESSAGE", "{error}");
    for data in [json!({"limit": 99}), json!({"limit": "five"}), json!([1])] {
        common::ws_send(&mut comms, &json!({"type": "X-Kills", "data": data})).await;
        let error = common::ws_next(&mut comms).await.unwrap();
        assert_eq!(error["type"], "Error", "{error}");
        assert_eq!(error["data"]["code"], 400, "{error}");
        assert!(
            error["data"]["message"]
                .as_str()
                .unwrap()
                .starts_with("X-Kills: "),
            "{error}"
        );
    }
}

/// A plugin with its own tables: `migrations` under `namespace`.
struct Tables {
    namespace: &'static str,
    migrations: &'static [&'static str],
}

impl bevy_app::Plugin for Tables {
    fn build(&self, app: &mut bevy_app::App) {
        use ecliptic::prelude::GameAppExt;
        app.add_store_tables(self.namespace, self.migrations);
    }
}

async fn start_with_tables(
    dir: &Path,
    namespace: &'static str,
    migrations: &'static [&'static str],
) -> anyhow::Result<ecliptic::ServerHandle> {
    let mut config = ecliptic::Config::ephemeral(dir);
    config.store.database = crate::common::database::url_for(dir);
    ecliptic::Server::new(config)
        .add_plugin(Tables {
            namespace,
            migrations,
        })
        .start()
        .await
}

fn tables_in(dir: &Path) -> Vec<String> {
    let store = crate::common::database::open_store(dir);
    let tables = store.read_now(|conn| conn.tables()).unwrap();
    store.close();
    tables
        .into_iter()
        .filter(|t| t.starts_with("mine"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugins_tables_are_namespaced_and_migrated_once() {
    const V1: &[&str] = &["CREATE TABLE mine_scores (user_id TEXT PRIMARY KEY, n INTEGER)"];
    const V2: &[&str] = &[
        "CREATE TABLE mine_scores (user_id TEXT PRIMARY KEY, n INTEGER)",
        "CREATE TABLE mine_badges (user_id TEXT, badge TEXT)",
    ];
    let dir = tempfile::tempdir().unwrap();
    // Applied once: a second start would fail on CREATE TABLE if it ran again.
    for migrations in [V1, V1, V2] {
        let server = start_with_tables(dir.path(), "mine", migrations)
            .await
            .expect("starts");
        server.shutdown().await;
    }
    assert_eq!(tables_in(dir.path()), ["mine_badges", "mine_scores"]);

    // A migration that touches a name outside its namespace is rolled back, and the
    // server does not start.
    const STRAY: &[&str] = &["CREATE TABLE mine_ok (x TEXT); CREATE TABLE scores (x TEXT)"];
    let other = tempfile::tempdir().unwrap();
    let e = start_with_tables(other.path(), "mine", STRAY)
        .await
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains(r#"creates or drops "scores""#),
        "{e}"
    );
    assert!(tables_in(other.path()).is_empty());
    const DROPS: &[&str] = &["DROP TABLE pilots"];
    let e = start_with_tables(other.path(), "mine", DROPS)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains(r#""pilots""#), "{e}");
    let store = crate::common::database::open_store(other.path());
    let tables = store.read_now(|conn| conn.tables()).unwrap();
    store.close();
    assert!(
        tables.iter().any(|t| t == "pilots"),
        "the server's table is still there"
    );

    // Failing SQL, a bad namespace, and fewer migrations than already applied.
    let e = start_with_tables(other.path(), "mine", &["CREATE TABLE mine_x ("])
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("tables of mine"), "{e}");
    let e = start_with_tables(other.path(), "Bad-Name", V1)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("namespace"), "{e}");
    let e = start_with_tables(dir.path(), "mine", V1)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("version 2"), "{e}");
}

/// A plugin with a bug: its system panics at tick 5.
struct Buggy;

fn crash_at_tick_5(tick: bevy_ecs::prelude::Res<ecliptic::sim::Tick>) {
    assert!(tick.0 < 5, "a plugin's bug");
}

impl bevy_app::Plugin for Buggy {
    fn build(&self, app: &mut bevy_app::App) {
        app.add_systems(bevy_app::FixedUpdate, crash_at_tick_5);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_system_stops_the_server_instead_of_leaving_it_frozen() {
    let server = common::TestServer::start_full(|_| {}, |s| s.add_plugin(Buggy)).await;
    tokio::time::timeout(common::WAIT, server.handle().failed())
        .await
        .expect("the failure is reported");
    let (status, body) = server.get_json("/healthz").await;
    assert_eq!(status, 503, "{body}");
    server.shutdown().await;
}
