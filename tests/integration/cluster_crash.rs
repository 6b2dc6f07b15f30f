//! Three nodes on one PostgreSQL database and one NATS server. In each iteration one of
//! them, chosen by the seed, is SIGKILLed while players trade in the star system it plays
//! and wager through its GARP (and another node's). Then the system must come back on a
//! live node with each pilot as last saved (no acknowledged trade lost, at most the one in
//! flight added), every acknowledged wage must be in the database, and the ledger must
//! balance.

use crate::common;
use crate::garp_crash::{Acked, play, verify_store};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::nats::NatsServer;
use common::{ChildServer, GameClient, Ws, ws_next};
use ecliptic::store::{Database, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const ITERATIONS: u64 = 10;
const PLAYERS: [&str; 3] = ["ann", "bob", "cyd"];
const NODES: usize = 3;

/// What every node of the cluster shares.
struct Shared {
    nats: NatsServer,
    prefix: String,
    database: String,
}

impl Shared {
    /// Node `index`, on a data directory of its own, with `sol-1` pinned to it when
    /// `plays_sol` (so the players' system runs there while it lives).
    fn node(&self, index: usize, dir: &std::path::Path, plays_sol: bool) -> ChildServer {
        let id = format!("node-{index}");
        let systems = if plays_sol { r#"["sol-1"]"# } else { "[]" };
        ChildServer::spawn_with_env(
            dir,
            &[
                ("ECLIPTIC_DATABASE", self.database.as_str()),
                ("ECLIPTIC_NATS", self.nats.url.as_str()),
                ("ECLIPTIC_CLUSTER__SUBJECT_PREFIX", self.prefix.as_str()),
                ("ECLIPTIC_CLUSTER__NODE_ID", id.as_str()),
                ("ECLIPTIC_CLUSTER__HEARTBEAT_MS", "200"),
                ("ECLIPTIC_CLUSTER__NODE_TIMEOUT_MS", "1000"),
                ("ECLIPTIC_CLUSTER__LEASE_MS", "1000"),
                ("ECLIPTIC_CLUSTER__SYSTEMS", systems),
                ("ECLIPTIC_WAGERS__SIGNUP_GRANT", "100000"),
            ],
        )
    }
}

/// A pilot's state as its last acknowledged trade left it.
#[derive(Debug, Clone, Copy, Default)]
struct Pilot {
    credits: i64,
    food: i64,
    trades: usize,
}

pub(crate) fn food_in(cargo: &Value) -> i64 {
    cargo
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["commodity_id"] == "food")
        .map(|c| c["qty"].as_i64().unwrap_or(0))
        .sum()
}

/// The food the next trade of a pilot holding `food` adds: it buys up to a few units, then
/// sells them, so the hold never fills over the iterations.
fn next_change(food: i64) -> i64 {
    if food < 5 { 1 } else { -1 }
}

/// Trades food one unit at a time until the node dies, telling `joined` once it is in
/// sol-1 and `acks` of each acknowledged trade; returns what was acknowledged last.
async fn trade(
    node: SocketAddr,
    token: String,
    joined: tokio::sync::mpsc::UnboundedSender<()>,
    acks: tokio::sync::mpsc::UnboundedSender<()>,
) -> Pilot {
    let mut client = GameClient::connect_to(node).await;
    client.login(&token).await;
    let (_, snapshot) = client.join("sol-1").await;
    let _ = joined.send(());
    let you = &snapshot["payload"]["you"];
    let mut pilot = Pilot {
        credits: you["credits"].as_i64().expect("credits"),
        food: food_in(&you["cargo"]),
        trades: 0,
    };
    let unit = json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1});
    loop {
        let kind = if next_change(pilot.food) > 0 {
            "trade.buy"
        } else {
            "trade.sell"
        };
        client.send(kind, unit.clone()).await;
        let Some(answer) = next_answer(&mut client.ws).await else {
            return pilot;
        };
        if answer["type"] == "trade.result" && answer["payload"]["ok"] == true {
            pilot = Pilot {
                credits: answer["payload"]["credits"].as_i64().expect("credits"),
                food: food_in(&answer["payload"]["cargo"]),
                trades: pilot.trades + 1,
            };
            let _ = acks.send(());
        }
    }
}

/// The next answer (not a world update); `None` once the connection is gone.
async fn next_answer(ws: &mut Ws) -> Option<Value> {
    loop {
        let message = ws_next(ws).await.ok()?;
        let kind = message["type"].as_str().unwrap_or("");
        if !matches!(kind, "world.delta" | "world.snapshot" | "combat.event") {
            return Some(message);
        }
    }
}

/// Joins sol-1 through `node`, following `WRONG_NODE` to the live node that plays it;
/// returns the pilot as the snapshot shows it.
async fn rejoin(node: SocketAddr, token: &str) -> Pilot {
    let mut at = node;
    for _ in 0..NODES {
        let mut client = GameClient::connect_to(at).await;
        client.login(token).await;
        client
            .send("session.join_system", json!({"system_id": "sol-1"}))
            .await;
        let answer = next_answer(&mut client.ws).await.expect("an answer");
        if answer["type"] == "session.joined" {
            let snapshot = client.recv_type("world.snapshot").await;
            let you = &snapshot["payload"]["you"];
            return Pilot {
                credits: you["credits"].as_i64().expect("credits"),
                food: food_in(&you["cargo"]),
                trades: 0,
            };
        }
        assert_eq!(answer["payload"]["code"], "WRONG_NODE", "{answer}");
        let port = answer["payload"]["game_port"].as_u64().expect("a port");
        at = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).expect("a port")));
    }
    panic!("sol-1 is not played anywhere");
}

/// Waits until `node` lists exactly `others` as the other live nodes.
async fn until_nodes(http: &reqwest::Client, node: &ChildServer, admin: &str, others: &[String]) {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let overview: Value = http
            .get(node.url("/api/v1/admin/overview"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("the overview")
            .json()
            .await
            .expect("JSON");
        let mut listed: Vec<String> = overview["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["node_id"].as_str().map(str::to_owned))
            .collect();
        listed.sort();
        if listed == others {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} lists {listed:?}, not {others:?}",
            node.http
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_while_players_trade_and_wager_loses_nothing_acknowledged() {
    let shared = Shared {
        nats: NatsServer::start().await,
        prefix: common::nats::prefix(),
        database: common::database::fresh_postgres(),
    };
    let dirs: Vec<tempfile::TempDir> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let http = reqwest::Client::new();

    // Once: the operator, the players and a game to wager on.
    let setup = shared.node(0, dirs[0].path(), false);
    let made = common::database::ecliptic_command(dirs[0].path())
        .env("ECLIPTIC_DATABASE", &shared.database)
        .args([
            "admin",
            "create-user",
            "root",
            "--password",
            "root-password",
        ])
        .args(["--role", "admin", "--data-dir"])
        .arg(dirs[0].path())
        .output()
        .expect("ecliptic runs");
    assert!(made.status.success(), "{made:?}");
    for name in PLAYERS {
        common::register_and_login_at(&http, &setup.url(""), name, "pw-secret").await;
    }
    let game = common::garp::dev_game(setup.dev_tcp).await;
    drop(setup);
    let store = Store::connect(
        &Database::Postgres {
            url: shared.database.clone(),
        },
        Arc::new(ecliptic::metrics::Metrics::new()),
        Duration::from_secs(20),
    )
    .expect("the cluster's database");

    let mut acked: Vec<Acked> = Vec::new();
    let mut trades = 0;
    for iteration in 0..ITERATIONS {
        let mut rng = StdRng::seed_from_u64(1_000 + iteration);
        let victim = rng.random_range(0..NODES);
        let mut nodes: Vec<Option<ChildServer>> = (0..NODES)
            .map(|i| Some(shared.node(i, dirs[i].path(), i == victim)))
            .collect();
        let survivors: Vec<usize> = (0..NODES).filter(|i| *i != victim).collect();
        let victim_addr = nodes[victim].as_ref().expect("the victim").http;
        let survivor_addr = nodes[survivors[0]].as_ref().expect("a survivor").http;
        let admin = common::login_at(
            &http,
            &format!("http://{survivor_addr}"),
            "root",
            "root-password",
        )
        .await["access_token"]
            .as_str()
            .expect("a token")
            .to_owned();
        let mut tokens = Vec::new();
        for name in PLAYERS {
            let grant =
                common::login_at(&http, &format!("http://{victim_addr}"), name, "pw-secret").await;
            tokens.push(grant["access_token"].as_str().expect("a token").to_owned());
        }

        // Players trade in sol-1 on the victim and wager through its GARP; one of them
        // also wagers through a survivor's.
        let this_run = Arc::new(Mutex::new(Vec::new()));
        let (acks, mut acknowledged) = tokio::sync::mpsc::unbounded_channel();
        // Each stream says when it has started (a trader in sol-1, a player authenticated):
        // one still connecting when the node dies has nothing to check afterwards, and
        // would fail on its way in.
        let (starts, mut started) = tokio::sync::mpsc::unbounded_channel();
        let traders: Vec<_> = tokens
            .iter()
            .map(|token| {
                tokio::spawn(trade(
                    victim_addr,
                    token.clone(),
                    starts.clone(),
                    acks.clone(),
                ))
            })
            .collect();
        drop(acks);
        let mut wagers: Vec<_> = PLAYERS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let seed = iteration * 10 + i as u64;
                tokio::spawn(play(
                    victim_addr,
                    game.keys.clone(),
                    name,
                    seed,
                    this_run.clone(),
                    Some(starts.clone()),
                ))
            })
            .collect();
        let elsewhere = tokio::spawn(play(
            survivor_addr,
            game.keys.clone(),
            PLAYERS[0],
            iteration * 10 + 9,
            this_run.clone(),
            Some(starts.clone()),
        ));
        drop(starts);
        for _ in 0..traders.len() + wagers.len() + 1 {
            tokio::time::timeout(common::WAIT, started.recv())
                .await
                .expect("every stream starts")
                .expect("a stream started");
        }
        // The moment of the crash: after a seeded number of acknowledged trades, with the
        // wages going on meanwhile.
        let crash_after = rng.random_range(3..40);
        for _ in 0..crash_after {
            tokio::time::timeout(common::WAIT, acknowledged.recv())
                .await
                .expect("trades go on")
                .expect("a trader is trading");
        }
        nodes[victim].take().expect("the victim").kill_hard();
        let mut last = Vec::new();
        for trader in traders {
            last.push(
                tokio::time::timeout(common::WAIT, trader)
                    .await
                    .expect("a trader notices the crash")
                    .expect("the trader"),
            );
        }
        for stream in wagers.drain(..) {
            tokio::time::timeout(common::WAIT, stream)
                .await
                .expect("a player notices the crash")
                .expect("the player");
        }
        elsewhere.abort();
        let _ = elsewhere.await;
        acked.extend(this_run.lock().unwrap().drain(..));

        // The survivors take the victim for gone; sol-1 comes back on one of them, with
        // each pilot as saved.
        for &s in &survivors {
            let others: Vec<String> = survivors
                .iter()
                .filter(|o| **o != s)
                .map(|o| format!("node-{o}"))
                .collect();
            let node = nodes[s].as_ref().expect("a survivor");
            until_nodes(&http, node, &admin, &others).await;
        }
        for (token, acknowledged) in tokens.iter().zip(&last) {
            let saved = rejoin(survivor_addr, token).await;
            trades += acknowledged.trades;
            // One trade may have been saved without its answer arriving; none acknowledged
            // may be missing.
            assert!(
                saved.food == acknowledged.food
                    || saved.food == acknowledged.food + next_change(acknowledged.food),
                "iteration {iteration}: acknowledged {acknowledged:?}, saved {saved:?}"
            );
            assert!(
                (saved.food == acknowledged.food) == (saved.credits == acknowledged.credits),
                "iteration {iteration}: acknowledged {acknowledged:?}, saved {saved:?}"
            );
        }
        verify_store(&store, &acked, iteration);
    }
    store.close();
    assert!(trades > 10, "only {trades} trades were acknowledged");
    assert!(
        acked.len() > 10,
        "only {} wages were acknowledged",
        acked.len()
    );
}
