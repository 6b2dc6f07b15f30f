//! Faults injected into a cluster while players trade and wager through every node, in the
//! manner of Jepsen: three nodes on a PostgreSQL and a NATS server of the test's own, so it
//! may kill them; every acknowledgement logged; a checker at the end of each iteration.
//!
//! Each of ten seeded iterations injects one fault, in turn: SIGKILL of the node playing
//! sol-1 (restarted later), SIGSTOP of it for longer than its lease (then SIGCONT), NATS
//! down and up, PostgreSQL down and up, a late fourth node, SIGTERM of the owner
//! (restarted later). Traders keep trading through random nodes, following `WRONG_NODE`
//! and retrying when told to. The checker proves:
//! - every acknowledged trade is in the database, and nothing acknowledged was written
//!   over: each time a trader joins again, and at the end, its pilot is exactly as its
//!   last acknowledged trade left it (or that plus the one trade whose answer never came);
//! - every acknowledged wage is in the database and the ledger balances;
//! - no node accepted a join for sol-1 under an epoch it did not hold, or after a newer
//!   epoch was taken (the nodes' `join accepted` lines against `lease_history`), and
//!   every trade a node wrote was under the pilot's checkout epoch and sol-1's lease epoch
//!   that node held (its `trade committed` lines against `pilot_checkout_history` and
//!   `lease_history`).

use crate::common;
use crate::garp_crash::{Acked, play, verify_store};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ChildServer;
use common::nats::NatsServer;
use common::pg::PrivatePostgres;
use ecliptic::store::{Database, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const ITERATIONS: u64 = 10;
const TRADERS: [&str; 3] = ["ann", "bob", "cyd"];
const LEASE_MS: u64 = 1_000;
/// How long traders trade in each iteration; the fault falls in its first half.
const TRADING: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Pause,
    NatsDown,
    PostgresDown,
    LateNode,
    Term,
}

const FAULTS: [Fault; 6] = [
    Fault::Kill,
    Fault::Pause,
    Fault::NatsDown,
    Fault::PostgresDown,
    Fault::LateNode,
    Fault::Term,
];

/// The servers, and what the gone nodes wrote in their logs.
struct Rig {
    pg: PrivatePostgres,
    nats: NatsServer,
    prefix: String,
    dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<ChildServer>>,
    /// (node id, log line) of every node process that has ended.
    logs: Vec<(String, Value)>,
}

fn node_id(index: usize) -> String {
    format!("node-{index}")
}

impl Rig {
    fn spawn(&mut self, index: usize) {
        while self.dirs.len() <= index {
            self.dirs.push(tempfile::tempdir().expect("a temp dir"));
            self.nodes.push(None);
        }
        let (database, id) = (self.pg.url(), node_id(index));
        let lease = LEASE_MS.to_string();
        let node = ChildServer::spawn_with_env(
            self.dirs[index].path(),
            &[
                ("ECLIPTIC_DATABASE", database.as_str()),
                ("ECLIPTIC_NATS", self.nats.url.as_str()),
                ("ECLIPTIC_CLUSTER__SUBJECT_PREFIX", self.prefix.as_str()),
                ("ECLIPTIC_CLUSTER__NODE_ID", id.as_str()),
                ("ECLIPTIC_CLUSTER__HEARTBEAT_MS", "200"),
                ("ECLIPTIC_CLUSTER__NODE_TIMEOUT_MS", lease.as_str()),
                ("ECLIPTIC_CLUSTER__LEASE_MS", lease.as_str()),
                ("ECLIPTIC_WAGERS__SIGNUP_GRANT", "100000"),
            ],
        );
        self.nodes[index] = Some(node);
    }

    fn live(&self) -> Vec<SocketAddr> {
        self.nodes.iter().flatten().map(|n| n.http).collect()
    }

    /// Takes node `index` out of the rig, keeping its log.
    fn take(&mut self, index: usize) -> Option<ChildServer> {
        let node = self.nodes.get_mut(index)?.take()?;
        let id = node_id(index);
        self.logs
            .extend(node.log_lines().into_iter().map(|l| (id.clone(), l)));
        Some(node)
    }

    /// Every log line so far, of ended and running nodes.
    fn all_logs(&self) -> Vec<(String, Value)> {
        let mut all = self.logs.clone();
        for (index, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                let id = node_id(index);
                all.extend(node.log_lines().into_iter().map(|l| (id.clone(), l)));
            }
        }
        all
    }

    fn signal(&self, index: usize, signal: &str) {
        let pid = self.nodes[index].as_ref().expect("a node").child.id();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }
}

/// A pilot as an acknowledgement or a snapshot shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pilot {
    credits: i64,
    food: i64,
}

fn pilot_of(you: &Value) -> Pilot {
    Pilot {
        credits: you["credits"].as_i64().expect("credits"),
        food: you["cargo"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["commodity_id"] == "food")
            .map(|c| c["qty"].as_i64().unwrap_or(0))
            .sum(),
    }
}

/// What a trader knows: its pilot as last acknowledged (or seen on joining), and the
/// food change of a trade it sent whose answer never came.
#[derive(Debug, Default)]
struct Trader {
    last: Option<Pilot>,
    pending: Option<i64>,
    /// The error that answered the last trade, if one did: named in a violation.
    refused_by: Option<String>,
    trades: usize,
    /// When each acknowledgement of this iteration arrived: the longest gap between two
    /// is how long the fault kept this trader from trading (printed, not asserted).
    acked_at: Vec<Instant>,
    violations: Vec<String>,
}

impl Trader {
    /// `seen` must be the last acknowledged state, or that plus the unanswered trade.
    fn observe(&mut self, seen: Pilot, when: &str) {
        if let Some(last) = self.last {
            let with_pending = self.pending.is_some_and(|d| seen.food == last.food + d);
            if seen != last && !with_pending {
                self.violations.push(format!(
                    "{when}: acknowledged {last:?} (unanswered {:?}, last refusal {:?}), found {seen:?}",
                    self.pending, self.refused_by
                ));
            }
        }
        self.last = Some(seen);
        self.pending = None;
        self.refused_by = None;
    }
}

type Ws = common::Ws;

async fn send(ws: &mut Ws, kind: &str, payload: Value) -> bool {
    use futures_util::SinkExt;
    let frame = json!({"type": kind, "seq": 1, "ts": 0, "payload": payload});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .is_ok()
}

/// The next answer that is not a world update, within `within`; `None` when the
/// connection ends or stays silent.
async fn answer(ws: &mut Ws, within: Duration) -> Option<Value> {
    use futures_util::StreamExt;
    let deadline = Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                return None;
            }
            continue;
        };
        let value: Value = serde_json::from_str(&text).ok()?;
        let kind = value["type"].as_str().unwrap_or("");
        if !matches!(kind, "world.delta" | "world.snapshot" | "combat.event") {
            return Some(value);
        }
    }
}

/// Trades food at Earth, one unit at a time, through whichever node plays sol-1, until
/// `until`.
async fn trade(
    live: Arc<Mutex<Vec<SocketAddr>>>,
    token: String,
    seed: u64,
    until: Instant,
    mut trader: Trader,
) -> Trader {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next: Option<SocketAddr> = None;
    let unit = json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1});
    while Instant::now() < until {
        let at = next.take().unwrap_or_else(|| {
            let live = live.lock().expect("live nodes");
            live[rng.random_range(0..live.len())]
        });
        let url = format!("ws://{at}/game");
        let connected = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(url),
        )
        .await;
        let Ok(Ok((mut ws, _))) = connected else {
            // A client's back-off, not the test waiting for the server.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        send(&mut ws, "auth.login", json!({"token": token})).await;
        let logged_in = answer(&mut ws, Duration::from_secs(3)).await;
        if logged_in.as_ref().is_none_or(|a| a["type"] != "auth.ok") {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        send(
            &mut ws,
            "session.join_system",
            json!({"system_id": "sol-1"}),
        )
        .await;
        let Some(joined) = answer(&mut ws, Duration::from_secs(5)).await else {
            continue;
        };
        if joined["type"] != "session.joined" {
            if joined["payload"]["code"] == "WRONG_NODE"
                && let Some(port) = joined["payload"]["game_port"].as_u64()
            {
                next = Some(SocketAddr::from((
                    [127, 0, 0, 1],
                    u16::try_from(port).expect("a port"),
                )));
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        }
        // The snapshot follows the join.
        let snapshot = loop {
            use futures_util::StreamExt;
            match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    if value["type"] == "world.snapshot" {
                        break Some(value);
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => break None,
            }
        };
        let Some(snapshot) = snapshot else { continue };
        trader.observe(pilot_of(&snapshot["payload"]["you"]), "on joining");
        while Instant::now() < until {
            let food = trader.last.map_or(0, |p| p.food);
            let (kind, change) = if food < 5 {
                ("trade.buy", 1)
            } else {
                ("trade.sell", -1)
            };
            if !send(&mut ws, kind, unit.clone()).await {
                break;
            }
            trader.pending = Some(change);
            // Shorter than a pause: a trader gives up on a stopped node and trades
            // elsewhere while the stopped one still holds its trade.
            match answer(&mut ws, Duration::from_secs(1)).await {
                Some(result) if result["type"] == "trade.result" => {
                    trader.last = Some(pilot_of(&result["payload"]));
                    trader.pending = None;
                    trader.refused_by = None;
                    trader.trades += 1;
                    trader.acked_at.push(Instant::now());
                }
                // Moved out of a system this node stops playing: that error is about
                // the session, not the trade, whose answer may still follow or never
                // come. Unanswered, then.
                Some(moved)
                    if matches!(
                        moved["payload"]["code"].as_str(),
                        Some("WRONG_NODE" | "SERVER_BUSY")
                    ) =>
                {
                    break;
                }
                Some(refused) => {
                    // Told "error": the trade left no trace.
                    trader.pending = None;
                    trader.refused_by = Some(refused["payload"].to_string());
                    if refused["payload"]["code"] == "COOLDOWN" {
                        continue;
                    }
                    break;
                }
                // No answer: it may or may not have happened.
                None => break,
            }
        }
    }
    trader
}

/// Wages through random live nodes until `until`; each stream ends when its node does.
async fn wager(
    live: Arc<Mutex<Vec<SocketAddr>>>,
    game: common::garp::GameKeys,
    name: &'static str,
    seed: u64,
    until: Instant,
    acked: Arc<Mutex<Vec<Acked>>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        let at = {
            let live = live.lock().expect("live nodes");
            live[rng.random_range(0..live.len())]
        };
        // A stream on a node that dies mid-connect panics in its task: a lost stream, as
        // a crash would leave it; what it had acknowledged is already logged.
        let stream = tokio::spawn(play(
            at,
            game.clone(),
            name,
            seed * 1_000 + round,
            acked.clone(),
            None,
        ));
        let _ = tokio::time::timeout_at(until, stream).await;
    }
}

/// Every `join accepted` line against the lease history: the node held that epoch, and
/// no newer epoch had been taken when it accepted.
async fn check_joins(store: &Store, logs: &[(String, Value)]) -> Vec<String> {
    let history: HashMap<i64, (String, i64)> = store
        .read(|conn| {
            conn.query_map(
                "SELECT epoch, owner, taken_at FROM lease_history WHERE kind = 'system' AND id = 'sol-1'",
                (),
                |r| Ok((r.get::<_, i64>(0)?, (r.get::<_, String>(1)?, r.get::<_, i64>(2)?))),
            )
        })
        .await
        .expect("the lease history")
        .into_iter()
        .collect();
    let mut violations = Vec::new();
    let mut joins = 0;
    for (node, line) in logs {
        if line["message"] != "join accepted" || line["system"] != "sol-1" {
            continue;
        }
        joins += 1;
        let epoch = line["epoch"].as_i64().expect("an epoch");
        let at = chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().expect("a time"))
            .expect("an RFC 3339 time")
            .timestamp_millis();
        match history.get(&epoch) {
            Some((owner, _)) if owner == node => {}
            other => violations.push(format!(
                "{node} accepted a join under epoch {epoch}, held by {other:?}"
            )),
        }
        if let Some((next_owner, taken_at)) = history.get(&(epoch + 1))
            && at > *taken_at
        {
            violations.push(format!(
                "{node} accepted a join under epoch {epoch} at {at}, after {next_owner} took epoch {} at {taken_at}",
                epoch + 1
            ));
        }
    }
    assert!(joins > 0, "no join was accepted at all");
    violations
}

/// Every `trade committed` line against the checkout and lease histories: each trade was
/// written by the node that held the pilot's checkout epoch, and sol-1's lease epoch.
async fn check_trades(store: &Store, logs: &[(String, Value)]) -> Vec<String> {
    let checkouts: HashMap<(String, i64), String> = store
        .read(|conn| {
            conn.query_map(
                "SELECT a.username_key, h.epoch, h.node FROM pilot_checkout_history h
                 JOIN accounts a ON a.user_id = h.user_id",
                (),
                |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, i64>(1)?),
                        r.get::<_, String>(2)?,
                    ))
                },
            )
        })
        .await
        .expect("the checkout history")
        .into_iter()
        .collect();
    let users: HashMap<String, String> = store
        .read(|conn| {
            conn.query_map("SELECT user_id, username_key FROM accounts", (), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
        })
        .await
        .expect("the accounts")
        .into_iter()
        .collect();
    let leases: HashMap<i64, String> = store
        .read(|conn| {
            conn.query_map(
                "SELECT epoch, owner FROM lease_history WHERE kind = 'system' AND id = 'sol-1'",
                (),
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
        })
        .await
        .expect("the lease history")
        .into_iter()
        .collect();
    let mut violations = Vec::new();
    let mut trades = 0;
    for (node, line) in logs {
        if line["message"] != "trade committed" {
            continue;
        }
        trades += 1;
        let user = &users[line["user"].as_str().expect("a user")];
        let epoch = line["epoch"].as_i64().expect("an epoch");
        if checkouts.get(&(user.clone(), epoch)) != Some(node) {
            violations.push(format!(
                "{node} wrote {user}'s pilot under checkout {epoch}, held by {:?}",
                checkouts.get(&(user.clone(), epoch))
            ));
        }
        // `system_epoch` is logged as `Some(n)`.
        let system_epoch = line["system_epoch"].as_str().and_then(|s| {
            s.strip_prefix("Some(")?
                .strip_suffix(')')?
                .parse::<i64>()
                .ok()
        });
        match system_epoch.map(|e| (e, leases.get(&e))) {
            Some((_, Some(owner))) if owner == node => {}
            other => violations.push(format!(
                "{node} traded in sol-1 under lease epoch {other:?}"
            )),
        }
    }
    assert!(trades > 0, "no trade was committed at all");
    violations
}

/// A pilot as stored.
async fn stored(store: &Store, user: &str) -> Pilot {
    let user = user.to_owned();
    let (credits, cargo): (i64, String) = store
        .read(move |conn| {
            conn.query_row(
                "SELECT p.credits, p.cargo FROM pilots p JOIN accounts a ON a.user_id = p.user_id
                 WHERE a.username_key = ?1",
                [user],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
        .expect("the pilot");
    let cargo: Value = serde_json::from_str(&cargo).expect("cargo JSON");
    pilot_of(&json!({"credits": credits, "cargo": cargo}))
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_injected_while_players_trade_and_wager_lose_and_overwrite_nothing() {
    let mut rig = Rig {
        pg: PrivatePostgres::start(),
        nats: NatsServer::start().await,
        prefix: common::nats::prefix(),
        dirs: Vec::new(),
        nodes: Vec::new(),
        logs: Vec::new(),
    };
    for index in 0..3 {
        rig.spawn(index);
    }
    let http = reqwest::Client::new();
    let first = rig.live()[0];
    let mut tokens = Vec::new();
    for name in TRADERS {
        let grant =
            common::register_and_login_at(&http, &format!("http://{first}"), name, "pw-secret")
                .await;
        tokens.push(grant["access_token"].as_str().expect("a token").to_owned());
    }
    let dev_tcp = rig.nodes[0].as_ref().expect("node 0").dev_tcp;
    let game = common::garp::dev_game(dev_tcp).await.keys;
    let store = Store::connect(
        &Database::Postgres { url: rig.pg.url() },
        Arc::new(ecliptic::metrics::Metrics::new()),
        Duration::from_secs(20),
    )
    .expect("the cluster's database");

    let wages: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut traders: Vec<Trader> = TRADERS.iter().map(|_| Trader::default()).collect();
    for iteration in 0..ITERATIONS {
        let fault = FAULTS[usize::try_from(iteration).expect("small") % FAULTS.len()];
        let mut rng = StdRng::seed_from_u64(7_000 + iteration);
        let live = Arc::new(Mutex::new(rig.live()));
        let until = Instant::now() + TRADING;
        let running: Vec<_> = tokens
            .iter()
            .zip(std::mem::take(&mut traders))
            .enumerate()
            .map(|(i, (token, trader))| {
                let seed = iteration * 10 + i as u64;
                tokio::spawn(trade(live.clone(), token.clone(), seed, until, trader))
            })
            .collect();
        let wagering: Vec<_> = TRADERS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let seed = iteration * 10 + i as u64;
                tokio::spawn(wager(
                    live.clone(),
                    game.clone(),
                    name,
                    seed,
                    until,
                    wages.clone(),
                ))
            })
            .collect();

        // The fault, at a seeded moment in the first half of the trading.
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
        let owner = store
            .read(|conn| {
                conn.query_row(
                    "SELECT owner FROM leases WHERE kind = 'system' AND id = 'sol-1'",
                    (),
                    |r| r.get::<_, String>(0),
                )
            })
            .await
            .ok();
        let victim = (0..rig.nodes.len())
            .find(|i| rig.nodes[*i].is_some() && owner.as_deref() == Some(node_id(*i).as_str()))
            .unwrap_or(0);
        eprintln!("iteration {iteration}: {fault:?} (sol-1 on {owner:?}, victim node-{victim})");
        let pause = Duration::from_millis(LEASE_MS * 5 / 2);
        match fault {
            Fault::Kill | Fault::Term => {
                let node = rig.take(victim).expect("the victim");
                live.lock().expect("live").retain(|a| *a != node.http);
                if fault == Fault::Kill {
                    node.kill_hard();
                } else {
                    node.signal_and_wait("TERM");
                }
                tokio::time::sleep(pause).await;
                rig.spawn(victim);
                *live.lock().expect("live") = rig.live();
            }
            Fault::Pause => {
                rig.signal(victim, "STOP");
                tokio::time::sleep(pause).await;
                rig.signal(victim, "CONT");
            }
            Fault::NatsDown => {
                rig.nats.down();
                tokio::time::sleep(pause).await;
                rig.nats.up().await;
            }
            Fault::PostgresDown => {
                rig.pg.down();
                tokio::time::sleep(pause).await;
                rig.pg.up();
            }
            Fault::LateNode => {
                let late = rig.nodes.len();
                rig.spawn(late);
                *live.lock().expect("live") = rig.live();
            }
        }

        for trader in running {
            traders.push(trader.await.expect("a trader"));
        }
        for stream in wagering {
            let _ = stream.await;
        }
        if fault == Fault::LateNode {
            let late = rig.nodes.len() - 1;
            if let Some(node) = rig.take(late) {
                node.signal_and_wait("TERM");
            }
        }

        let longest_gap = traders
            .iter_mut()
            .filter_map(|t| {
                let acked = std::mem::take(&mut t.acked_at);
                acked.windows(2).map(|w| w[1] - w[0]).max()
            })
            .max()
            .unwrap_or_default();
        eprintln!(
            "iteration {iteration}: {fault:?}: the longest wait between two acknowledged trades of one trader: {longest_gap:?}"
        );

        // The checker.
        for (name, trader) in TRADERS.iter().zip(traders.iter_mut()) {
            let now = stored(&store, name).await;
            trader.observe(now, &format!("iteration {iteration}, in the database"));
            assert!(
                trader.violations.is_empty(),
                "{name}: {:?}",
                trader.violations
            );
        }
        let logs = rig.all_logs();
        let mut violations = check_joins(&store, &logs).await;
        violations.extend(check_trades(&store, &logs).await);
        assert!(
            violations.is_empty(),
            "iteration {iteration}: {violations:?}"
        );
        let acked = wages.lock().expect("wages").clone();
        let checked = store.clone();
        tokio::task::spawn_blocking(move || verify_store(&checked, &acked, iteration))
            .await
            .expect("the store checks");
    }
    let trades: usize = traders.iter().map(|t| t.trades).sum();
    eprintln!(
        "{trades} trades and {} wages acknowledged",
        wages.lock().expect("wages").len()
    );
    assert!(trades > 50, "only {trades} trades were acknowledged");
    assert!(
        !wages.lock().expect("wages").is_empty(),
        "no wage was acknowledged"
    );
    store.close();
}
