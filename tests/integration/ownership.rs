//! One owner at a time: a pilot is played on one node, a star system too, whatever NATS
//! says or fails to say. Nodes share one PostgreSQL database; some tests give them NATS
//! subjects of their own, so they cannot hear each other at all (a partition), and the
//! database alone must keep them apart.

use crate::common;

use common::nats::NatsServer;
use common::{GameClient, TestServer};
use serde_json::{Value, json};

/// A node on `database`, hearing the cluster on `prefix`, with `pinned` systems.
async fn node(
    nats: &NatsServer,
    prefix: &str,
    database: &str,
    id: &str,
    pinned: &[&str],
    lease_ms: u64,
) -> TestServer {
    TestServer::start_with(|c| {
        c.store.database = Some(database.to_owned());
        c.cluster.nats = Some(nats.url.clone());
        c.cluster.subject_prefix = prefix.to_owned();
        c.cluster.node_id = Some(id.to_owned());
        c.cluster.heartbeat_ms = 200;
        c.cluster.node_timeout_ms = lease_ms;
        c.cluster.lease_ms = lease_ms;
        c.cluster.systems = pinned.iter().map(|s| (*s).to_owned()).collect();
    })
    .await
}

fn food(you: &Value) -> i64 {
    crate::cluster_crash::food_in(&you["cargo"])
}

/// The close code the connection ends with, past whatever world updates come first.
async fn closed(client: &mut GameClient) -> Option<u16> {
    loop {
        if let Err(code) = common::ws_next(&mut client.ws).await {
            return code;
        }
    }
}

async fn buy(client: &mut GameClient, station: &str, quantity: i64) -> Value {
    client
        .send(
            "trade.buy",
            json!({"station_id": station, "commodity_id": "food", "quantity": quantity}),
        )
        .await;
    client.recv_reply().await
}

/// Finding 1, with the note between the nodes lost: they hear nothing of each other. The
/// older connection's next write is refused by the database, so B's trades survive.
#[tokio::test(flavor = "multi_thread")]
async fn a_pilot_taken_by_a_login_on_another_node_cannot_be_written_by_the_older_one() {
    let nats = NatsServer::start().await;
    let database = common::database::fresh_postgres();
    let a = node(
        &nats,
        &common::nats::prefix(),
        &database,
        "node-a",
        &["sol-1"],
        1_000,
    )
    .await;
    let b = node(
        &nats,
        &common::nats::prefix(),
        &database,
        "node-b",
        &["vega-2"],
        1_000,
    )
    .await;
    let token = common::token_for(&a, "ann").await;

    let mut on_a = GameClient::connect(&a).await;
    on_a.login(&token).await;
    on_a.join("sol-1").await;
    let mut on_b = GameClient::connect(&b).await;
    on_b.login(&token).await;
    on_b.join("vega-2").await;
    let bought = buy(&mut on_b, "vega-highport", 10).await;
    assert_eq!(bought["payload"]["ok"], true, "{bought}");

    let refused = buy(&mut on_a, "earth-orbit-station", 1).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"]["code"], "SESSION_REPLACED", "{refused}");
    assert_eq!(
        closed(&mut on_a).await,
        Some(4001),
        "the older connection is closed"
    );

    let mut again = GameClient::connect(&b).await;
    again.login(&token).await;
    let (_, snapshot) = again.join("vega-2").await;
    let you = &snapshot["payload"]["you"];
    assert_eq!(you["credits"], bought["payload"]["credits"], "{you}");
    assert_eq!(food(you), 10, "{you}");
}

/// Finding 1, as it happens when NATS works: the older connection is told at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_on_another_node_ends_the_older_game_session_at_once() {
    let nats = NatsServer::start().await;
    let (prefix, database) = (common::nats::prefix(), common::database::fresh_postgres());
    let a = node(&nats, &prefix, &database, "node-a", &["sol-1"], 1_000).await;
    let b = node(&nats, &prefix, &database, "node-b", &["vega-2"], 1_000).await;
    let token = common::token_for(&a, "bob").await;

    let mut on_a = GameClient::connect(&a).await;
    on_a.login(&token).await;
    on_a.join("sol-1").await;
    let mut on_b = GameClient::connect(&b).await;
    on_b.login(&token).await;
    let replaced = on_a.recv_reply().await;
    assert_eq!(
        replaced["payload"]["code"], "SESSION_REPLACED",
        "{replaced}"
    );
}

/// Finding 2: with the nodes cut off from each other, a node that does not hold a
/// system's lease never plays it, however alone it believes it is.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_hears_nobody_does_not_play_a_system_another_node_holds() {
    let nats = NatsServer::start().await;
    let database = common::database::fresh_postgres();
    let a = node(
        &nats,
        &common::nats::prefix(),
        &database,
        "node-a",
        &["sol-1"],
        1_000,
    )
    .await;
    let b = node(
        &nats,
        &common::nats::prefix(),
        &database,
        "node-b",
        &[],
        1_000,
    )
    .await;
    let ann = common::token_for(&a, "ann").await;
    let cy = common::token_for(&a, "cyd").await;

    let mut on_a = GameClient::connect(&a).await;
    on_a.login(&ann).await;
    on_a.join("sol-1").await;
    let mut on_b = GameClient::connect(&b).await;
    on_b.login(&cy).await;
    on_b.send("session.join_system", json!({"system_id": "sol-1"}))
        .await;
    let answer = on_b.recv_reply().await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["payload"]["code"], "SERVER_BUSY", "{answer}");
    // A still plays it.
    assert_eq!(on_a.recv_type("world.delta").await["type"], "world.delta");
}

/// The rendezvous score the server gives `node` for `system` (SHA-256 of both, first 8
/// bytes): to start a late node the hash prefers.
fn score(node: &str, system: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(node.as_bytes())
        .chain_update([0])
        .chain_update(system.as_bytes())
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Finding 3: a node that starts late, and that hashing prefers for a system, sends its
/// players to the node that plays it instead of playing it too.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_node_does_not_take_a_system_another_node_plays() {
    let nats = NatsServer::start().await;
    let (prefix, database) = (common::nats::prefix(), common::database::fresh_postgres());
    let early = "node-early";
    let late = (0..)
        .map(|i| format!("node-late-{i}"))
        .find(|id| score(id, "sol-1") > score(early, "sol-1"))
        .expect("a late node the hash prefers");
    let a = node(&nats, &prefix, &database, early, &[], 1_000).await;
    let ann = common::token_for(&a, "ann").await;
    let mut on_a = GameClient::connect(&a).await;
    on_a.login(&ann).await;
    on_a.join("sol-1").await;

    let b = node(&nats, &prefix, &database, &late, &[], 1_000).await;
    let cy = common::token_for(&b, "cyd").await;
    let mut on_b = GameClient::connect(&b).await;
    on_b.login(&cy).await;
    on_b.send("session.join_system", json!({"system_id": "sol-1"}))
        .await;
    let answer = on_b.recv_reply().await;
    assert_eq!(answer["payload"]["code"], "WRONG_NODE", "{answer}");
    assert_eq!(answer["payload"]["node"], early, "{answer}");
    assert_eq!(on_a.recv_type("world.delta").await["type"], "world.delta");
}

/// Finding 7: a node stopped with SIGTERM releases its systems and says so, so another
/// node plays them at once, long before its lease (30 s here) would have run out.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_stopped_with_sigterm_hands_its_systems_over_at_once() {
    let nats = NatsServer::start().await;
    let (prefix, database) = (common::nats::prefix(), common::database::fresh_postgres());
    let b = node(&nats, &prefix, &database, "node-b", &[], 30_000).await;
    let admin = common::admin_token(&b, "root", "root-password").await;
    let ann = common::token_for(&b, "ann").await;
    let (_a_dir, a_data) = common::temp_data_dir();
    let a = common::ChildServer::spawn_with_env(
        &a_data,
        &[
            ("ECLIPTIC_DATABASE", database.as_str()),
            ("ECLIPTIC_NATS", nats.url.as_str()),
            ("ECLIPTIC_CLUSTER__SUBJECT_PREFIX", prefix.as_str()),
            ("ECLIPTIC_CLUSTER__NODE_ID", "node-a"),
            ("ECLIPTIC_CLUSTER__HEARTBEAT_MS", "200"),
            ("ECLIPTIC_CLUSTER__NODE_TIMEOUT_MS", "30000"),
            ("ECLIPTIC_CLUSTER__LEASE_MS", "30000"),
            ("ECLIPTIC_CLUSTER__SYSTEMS", r#"["sol-1"]"#),
        ],
    );
    let mut on_a = GameClient::connect_to(a.http).await;
    on_a.login(&ann).await;
    on_a.join("sol-1").await;
    // Bea, on B, watches who is online; Ann is also on A's comms.
    let bea = common::token_for(&b, "bea").await;
    let mut watcher =
        common::ws_connect(&format!("ws://{}/ws?token={bea}", b.handle().http_addr)).await;
    common::ws_send(
        &mut watcher,
        &json!({"type": "Subscribe", "data": {"topics": ["presence"]}, "id": "p"}),
    )
    .await;
    let _ann_comms = common::ws_connect(&format!("ws://{}/ws?token={ann}", a.http)).await;
    presence_of(&mut watcher, "ann", "online").await;

    let (status, _) = a.signal_and_wait("TERM");
    assert!(status.success(), "{status}");
    // B has heard A leave (it no longer lists it): joins now go by the lease alone.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let overview = b.get_auth("/api/v1/admin/overview", &admin).await;
        if overview["nodes"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{overview}");
    }
    let mut on_b = GameClient::connect(&b).await;
    on_b.login(&ann).await;
    let (joined, _) = on_b.join("sol-1").await;
    assert_eq!(joined["payload"]["system_id"], "sol-1");
    // And Ann's comms connection on A went with it, for everyone, at once.
    presence_of(&mut watcher, "ann", "offline").await;
}

/// Waits for a `Presence` message saying `user` is `status`.
async fn presence_of(ws: &mut common::Ws, user: &str, status: &str) {
    loop {
        let message = common::ws_next(ws)
            .await
            .unwrap_or_else(|code| panic!("closed ({code:?})"));
        if message["type"] == "Presence"
            && message["data"]["user_id"] == user
            && message["data"]["status"] == status
        {
            return;
        }
    }
}

/// Finding 4: a login the database could not check is the server's failure, not the
/// player's: it is answered 503 (RaOS's 1006), and the throttle does not count it.
#[tokio::test(flavor = "multi_thread")]
async fn logins_while_the_database_is_down_are_503_and_count_against_nobody() {
    let pg = common::pg::PrivatePostgres::start();
    let server = TestServer::start_with(|c| c.store.database = Some(pg.url())).await;
    common::token_for(&server, "ann").await;
    pg.down();
    let login = json!({"username": "ann", "password": "pw-secret"});
    for _ in 0..server.config.auth.login_failures_per_account + 2 {
        let (status, body) = server.post("/api/v1/auth/login", &login).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["success"], false, "{body}");
        assert_eq!(body["error_code"], 1006, "{body}");
    }
    pg.up();
    let (status, body) = server.post("/api/v1/auth/login", &login).await;
    assert_eq!(status, 200, "{body}");
}

/// Finding 5: after the database restarts under an idle node, its pooled connections are
/// dead; they are replaced before they can fail the node's first requests.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_node_answers_its_first_requests_after_the_database_restarts() {
    let pg = common::pg::PrivatePostgres::start();
    let server = TestServer::start_with(|c| c.store.database = Some(pg.url())).await;
    common::token_for(&server, "ann").await;
    let (status, _) = server.get_json("/readyz").await;
    assert_eq!(status, 200);
    pg.down();
    pg.up();
    // The node stays idle for a moment, as a quiet node would: the case that failed.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let login = json!({"username": "ann", "password": "pw-secret"});
    let (status, body) = server.post("/api/v1/auth/login", &login).await;
    assert_eq!(status, 200, "{body}");
}
