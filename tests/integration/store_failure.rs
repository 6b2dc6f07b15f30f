//! The answer is the truth when the database fails: a write that cannot commit (here,
//! another process holds the database's write lock past the busy timeout) is answered with
//! an error, and nothing of it shows afterwards, in memory, on disk or after a restart.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::garp::{GRANT, Garp, dev_call, dev_game, register};
use crate::common::{GameClient, TestServer, database, token_for};

pub use crate::common::database::DbLock;

/// A server whose writes give up after 100 ms of waiting for a lock.
pub async fn impatient_server() -> TestServer {
    TestServer::start_with(|config| config.store.busy_timeout_ms = 100).await
}

fn you(snapshot: &Value) -> &Value {
    &snapshot["payload"]["you"]
}

fn market<'a>(snapshot: &'a Value, station: &str) -> &'a Value {
    snapshot["payload"]["markets"]
        .as_array()
        .expect("markets")
        .iter()
        .find(|m| m["station_id"] == station)
        .expect("station market")
}

fn pilot_on_disk(data_dir: &Path, username: &str) -> (i64, String, i64) {
    let store = database::open_store(data_dir);
    let pilot = store
        .read_now(|conn| {
            conn.query_row(
                "SELECT p.credits, p.cargo, p.hull FROM pilots p
                 JOIN accounts a ON a.user_id = p.user_id WHERE a.username = ?1",
                [username],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
        })
        .expect("the pilot is saved");
    store.close();
    pilot
}

/// Gives `username`'s pilot a damaged hull, as if saved after a fight.
fn damage_on_disk(data_dir: &Path, username: &str, hull: i64) {
    let store = database::open_store(data_dir);
    let username = username.to_owned();
    database::write_now(&store, move |conn| {
        conn.execute(
            "INSERT INTO pilots (user_id, system_id, credits, cargo, hull, fuel, updated_at)
             SELECT user_id, 'sol-1', 5000, '[]', ?2, 100.0, 0 FROM accounts WHERE username = ?1",
            ecliptic::params![username, hull],
        )
    });
    store.close();
}

const EARTH: &str = "earth-orbit-station";

#[tokio::test]
async fn a_trade_or_repair_that_cannot_be_saved_leaves_no_trace() {
    let server = impatient_server().await;
    let token = token_for(&server, "unlucky").await;
    damage_on_disk(server.dir.path(), "unlucky", 40);
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    let (_, before) = client.join("sol-1").await;
    assert_eq!(you(&before)["credits"], 5000);
    assert_eq!(you(&before)["hull"], 40);
    let prices = market(&before, EARTH).clone();

    let lock = DbLock::take(server.dir.path());
    // Ten of the station's sixty ore would move its price.
    client
        .send(
            "trade.buy",
            json!({"station_id": EARTH, "commodity_id": "ore", "quantity": 10}),
        )
        .await;
    let failed = client.recv_reply().await;
    assert_eq!(failed["type"], "error", "{failed}");
    assert_eq!(failed["payload"]["code"], "SERVER_ERROR", "{failed}");
    client
        .send("ship.repair_request", json!({"station_id": EARTH}))
        .await;
    let failed = client.recv_reply().await;
    assert_eq!(failed["payload"]["code"], "SERVER_ERROR", "{failed}");
    lock.release();

    // Memory: joining the same system again sends a fresh snapshot of the same ship.
    let (_, after) = client.join("sol-1").await;
    assert_eq!(you(&after)["credits"], 5000, "{after}");
    assert_eq!(you(&after)["cargo"], json!([]), "{after}");
    assert_eq!(you(&after)["hull"], 40, "{after}");
    assert_eq!(market(&after, EARTH), &prices, "the stock did not move");
    // Disk, once the periodic save has had its chance: a working trade now commits after
    // everything queued before it.
    client
        .send(
            "trade.sell",
            json!({"station_id": EARTH, "commodity_id": "food", "quantity": 1}),
        )
        .await;
    let refused = client.recv_reply().await;
    assert_eq!(
        refused["payload"]["code"], "INSUFFICIENT_CARGO",
        "{refused}"
    );
    let (credits, cargo, hull) = pilot_on_disk(server.dir.path(), "unlucky");
    assert_eq!((credits, cargo.as_str(), hull), (5000, "[]", 40));

    // The same requests succeed once the database is free, and their answers hold.
    client
        .send(
            "trade.buy",
            json!({"station_id": EARTH, "commodity_id": "food", "quantity": 10}),
        )
        .await;
    let bought = client.recv_reply().await;
    assert_eq!(bought["type"], "trade.result", "{bought}");
    let credits_after_buy = bought["payload"]["credits"].as_i64().expect("credits");
    client
        .send("ship.repair_request", json!({"station_id": EARTH}))
        .await;
    let repaired = client.recv_reply().await;
    assert_eq!(repaired["type"], "trade.result", "{repaired}");
    assert_eq!(repaired["payload"]["details"]["repaired_hp"], 60);
    assert_eq!(
        repaired["payload"]["credits"],
        credits_after_buy - 60 * 3,
        "{repaired}"
    );
    let credits = repaired["payload"]["credits"].clone();
    drop(client);

    let server = server.restart().await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    let (_, restarted) = client.join("sol-1").await;
    assert_eq!(you(&restarted)["credits"], credits, "{restarted}");
    assert_eq!(
        you(&restarted)["cargo"],
        json!([{"commodity_id": "food", "qty": 10}])
    );
    assert_eq!(you(&restarted)["hull"], 100);
}

#[tokio::test]
async fn a_second_trade_waits_for_the_first_to_be_saved() {
    let server = impatient_server().await;
    let token = token_for(&server, "eager").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    client.join("sol-1").await;
    let lock = DbLock::take(server.dir.path());
    let buy = json!({"station_id": EARTH, "commodity_id": "food", "quantity": 5});
    client.send("trade.buy", buy.clone()).await;
    client.send("trade.buy", buy.clone()).await;
    let second = client.recv_reply().await;
    assert_eq!(second["payload"]["code"], "COOLDOWN", "{second}");
    let first = client.recv_reply().await;
    assert_eq!(first["payload"]["code"], "SERVER_ERROR", "{first}");
    lock.release();
    client.send("trade.buy", buy).await;
    let bought = client.recv_reply().await;
    assert_eq!(bought["type"], "trade.result", "{bought}");
    assert_eq!(
        bought["payload"]["cargo"],
        json!([{"commodity_id": "food", "qty": 5}])
    );
}

#[tokio::test]
async fn moving_to_another_system_keeps_what_was_bought() {
    let server = TestServer::start().await;
    let token = token_for(&server, "mover").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    client.join("sol-1").await;
    client
        .send(
            "trade.buy",
            json!({"station_id": EARTH, "commodity_id": "food", "quantity": 3}),
        )
        .await;
    let bought = client.recv_reply().await;
    assert_eq!(bought["type"], "trade.result", "{bought}");
    let (_, moved) = client.join("vega-2").await;
    assert_eq!(you(&moved)["credits"], bought["payload"]["credits"]);
    assert_eq!(
        you(&moved)["cargo"],
        json!([{"commodity_id": "food", "qty": 3}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_or_catalog_change_that_cannot_be_saved_leaves_no_trace() {
    use base64::Engine;
    use sha2::Digest;
    let server = impatient_server().await;
    let mut game = dev_game(server.handle().dev_tcp_addr).await;
    let token = game.token.clone();
    let build = b"a build that never was".to_vec();
    let checksum = hex::encode(sha2::Sha256::digest(&build));
    let begin = dev_call(
        &mut game.dev,
        "UPLOAD_BEGIN",
        Some(&token),
        json!({"game_id": game.keys.game_id, "version": "1.0",
               "size_bytes": build.len(), "checksum": checksum}),
    )
    .await;
    let upload_id = begin["upload_id"].clone();
    let data = base64::engine::general_purpose::STANDARD.encode(&build);
    dev_call(
        &mut game.dev,
        "UPLOAD_CHUNK",
        Some(&token),
        json!({"upload_id": upload_id, "seq": 0, "data_b64": data}),
    )
    .await;

    let lock = DbLock::take(server.dir.path());
    let end = game
        .dev
        .call("UPLOAD_END", Some(&token), json!({"upload_id": upload_id}))
        .await;
    assert_eq!(end["status"], "error", "{end}");
    let meta = game
        .dev
        .call(
            "UPDATE_GAME_META",
            Some(&token),
            json!({"game_id": game.keys.game_id, "description": "never saved"}),
        )
        .await;
    assert_eq!(meta["status"], "error", "{meta}");
    lock.release();

    let check = |server: &TestServer| {
        let version_dir = server
            .dir
            .path()
            .join("uploadedGame")
            .join(&game.keys.game_id);
        assert!(!version_dir.join("1.0").exists(), "no files of the version");
    };
    check(&server);
    let versions = dev_call(
        &mut game.dev,
        "LIST_VERSIONS",
        Some(&token),
        json!({"game_id": game.keys.game_id}),
    )
    .await;
    assert_eq!(versions["versions"], json!([]), "{versions}");
    let detail = dev_call(&mut game.dev, "LIST_MY_GAMES", Some(&token), json!({})).await;
    assert_eq!(detail["games"][0]["description"], "roll high", "{detail}");

    let server = server.restart().await;
    check(&server);
    let mut game = game.reconnect(server.handle().dev_tcp_addr).await;
    let versions = dev_call(
        &mut game.dev,
        "LIST_VERSIONS",
        Some(&game.token.clone()),
        json!({"game_id": game.keys.game_id}),
    )
    .await;
    assert_eq!(versions["versions"], json!([]), "{versions}");
    // The same version can be published now, not "104 already exists".
    game.publish("1.0", &build).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wage_that_cannot_be_saved_takes_nothing() {
    let server = TestServer::start_with(|config| {
        config.store.busy_timeout_ms = 100;
        config.wagers.signup_grant = GRANT;
    })
    .await;
    let game = dev_game(server.handle().dev_tcp_addr).await;
    register(&server, "punter").await;
    let mut garp = Garp::connect(server.handle().http_addr, &game).await;
    let punter = garp.authenticate(&game, "punter").await;

    let lock = DbLock::take(server.dir.path());
    let refused = garp.wage(&game, &punter, "10").await;
    assert!(refused.get("error").is_some(), "{refused}");
    lock.release();
    assert_eq!(garp.balance(&punter).await, GRANT);
    let placed = garp.wage(&game, &punter, "10").await;
    assert_eq!(placed["status"], "OK", "{placed}");
    assert_eq!(placed["value"], GRANT - 10);
    drop(garp);

    let server = server.restart().await;
    let mut garp = Garp::connect(server.handle().http_addr, &game).await;
    let punter = garp.authenticate(&game, "punter").await;
    assert_eq!(garp.balance(&punter).await, GRANT - 10);
}
