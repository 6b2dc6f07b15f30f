//! Two nodes joined over a NATS server of the test's own, with a subject prefix of their
//! own, each with a data directory of its own (as on two machines) and one PostgreSQL
//! database between them, also the test's own.

use crate::common;

use common::nats::NatsServer;
use common::{
    GameClient, TestServer, Ws, close_code, token_for_existing, ws_connect, ws_next, ws_send,
};
use serde_json::{Value, json};

struct Pair {
    a: TestServer,
    b: TestServer,
    _nats: NatsServer,
}

async fn two_nodes() -> Pair {
    let nats = NatsServer::start().await;
    let prefix = common::nats::prefix();
    let database = common::database::fresh_postgres();
    let join = |node: &'static str| {
        let (url, prefix, database) = (nats.url.clone(), prefix.clone(), database.clone());
        move |c: &mut ecliptic::Config| {
            c.store.database = Some(database);
            c.cluster.nats = Some(url);
            c.cluster.subject_prefix = prefix;
            c.cluster.node_id = Some(node.into());
            c.cluster.heartbeat_ms = 200;
            c.cluster.node_timeout_ms = 1_000;
            c.cluster.lease_ms = 1_000;
            c.wagers.signup_grant = common::garp::GRANT;
            // Play on A in sol-1 wherever the hash would put it.
            if node == "node-a" {
                c.cluster.systems = vec!["sol-1".into()];
            }
        }
    };
    let a = TestServer::start_with(join("node-a")).await;
    let b = TestServer::start_with(join("node-b")).await;
    Pair { a, b, _nats: nats }
}

/// Node A in this process and node B in a process of its own, so it can die without a
/// word (SIGKILL). `b_env` adds to B's settings.
struct WithChild {
    a: TestServer,
    b: common::ChildServer,
    _b_dir: tempfile::TempDir,
    _nats: NatsServer,
}

async fn a_and_child_b(
    configure_a: impl FnOnce(&mut ecliptic::Config),
    b_env: &[(&str, &str)],
) -> WithChild {
    let nats = NatsServer::start().await;
    let prefix = common::nats::prefix();
    let database = common::database::fresh_postgres();
    let a = TestServer::start_with(|c| {
        c.store.database = Some(database.clone());
        c.cluster.nats = Some(nats.url.clone());
        c.cluster.subject_prefix = prefix.clone();
        c.cluster.heartbeat_ms = 200;
        c.cluster.node_timeout_ms = 1_000;
        c.cluster.lease_ms = 1_000;
        configure_a(c);
    })
    .await;
    let (b_dir, b_data) = common::temp_data_dir();
    let mut env = vec![
        ("ECLIPTIC_DATABASE", database.as_str()),
        ("ECLIPTIC_NATS", nats.url.as_str()),
        ("ECLIPTIC_CLUSTER__SUBJECT_PREFIX", prefix.as_str()),
        ("ECLIPTIC_CLUSTER__HEARTBEAT_MS", "200"),
        ("ECLIPTIC_CLUSTER__LEASE_MS", "1000"),
    ];
    env.extend_from_slice(b_env);
    let b = common::ChildServer::spawn_with_env(&b_data, &env);
    WithChild {
        a,
        b,
        _b_dir: b_dir,
        _nats: nats,
    }
}

async fn comms(server: &TestServer, token: &str) -> Ws {
    let url = format!("ws://{}/ws?token={token}", server.handle().http_addr);
    let mut ws = ws_connect(&url).await;
    let welcome = ws_next(&mut ws).await.expect("welcome");
    assert_eq!(welcome["data"]["status"], "connected", "{welcome}");
    ws
}

/// The next message of `kind` (others, such as Acks and Status lines, are passed over).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let message = ws_next(ws).await.unwrap_or_else(|e| panic!("closed {e:?}"));
        if message["type"] == kind {
            return message;
        }
    }
}

async fn register(server: &TestServer, name: &str) {
    server.register_and_login(name, "pw-secret").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn comms_reach_across_nodes_and_sessions_hold_on_both() {
    let Pair { a, b, _nats } = two_nodes().await;
    for name in ["alice", "bob", "carol"] {
        register(&a, name).await;
    }

    // Alice on A watches who is online; Bob connects to B (with a token B issued) and A
    // hears of him.
    let mut alice = comms(&a, &token_for_existing(&a, "alice").await).await;
    ws_send(
        &mut alice,
        &json!({"type": "Subscribe", "data": {"topics": ["presence"]}, "id": "s1"}),
    )
    .await;
    let mut bob = comms(&b, &token_for_existing(&b, "bob").await).await;
    loop {
        let presence = next_of(&mut alice, "Presence").await;
        if presence["data"]["user_id"] == "bob" {
            assert_eq!(presence["data"]["status"], "online", "{presence}");
            break;
        }
    }

    // A broadcast published on A reaches a subscriber on B, from Alice.
    ws_send(
        &mut bob,
        &json!({"type": "Subscribe", "data": {"topics": ["chat.lounge"]}, "id": "s2"}),
    )
    .await;
    let subscribed = next_of(&mut bob, "Ack").await;
    assert_eq!(subscribed["data"]["message_id"], "s2", "{subscribed}");
    ws_send(
        &mut alice,
        &json!({"type": "Broadcast", "data": {"topic": "chat.lounge", "payload": {"text": "hi from A"}}}),
    )
    .await;
    let heard = next_of(&mut bob, "Broadcast").await;
    assert_eq!(heard["data"]["topic"], "chat.lounge");
    assert_eq!(heard["data"]["payload"], json!({"text": "hi from A"}));
    assert_eq!(heard["data"]["metadata"]["from_user"], "alice");

    // A direct message from A to Bob on B: delivered to his connection there.
    ws_send(
        &mut alice,
        &json!({"type": "DirectMessage", "data": {"target_user": "bob", "payload": {"text": "psst"}}, "id": "d1"}),
    )
    .await;
    let ack = next_of(&mut alice, "Ack").await;
    assert_eq!(ack["data"]["message_id"], "d1", "{ack}");
    assert_eq!(ack["data"]["status"], "delivered", "{ack}");
    assert_eq!(
        ack["data"]["delivered_to"].as_array().map(Vec::len),
        Some(1)
    );
    let dm = next_of(&mut bob, "DirectMessage").await;
    assert_eq!(dm["data"]["from_user"], "alice", "{dm}");
    assert_eq!(dm["data"]["payload"], json!({"text": "psst"}));

    // One to Carol, online nowhere: she gets it when she connects to B, with a token A
    // issued.
    ws_send(
        &mut alice,
        &json!({"type": "DirectMessage", "data": {"target_user": "carol", "payload": {"text": "later"}}, "id": "d2"}),
    )
    .await;
    // The spec's answer for a user not connected, saying the message waits.
    let queued = next_of(&mut alice, "Error").await;
    assert_eq!(queued["data"]["code"], 404, "{queued}");
    assert_eq!(queued["data"]["details"]["queued"], true, "{queued}");
    let carol_token = token_for_existing(&a, "carol").await;
    let mut carol = comms(&b, &carol_token).await;
    let waited = next_of(&mut carol, "DirectMessage").await;
    assert_eq!(waited["data"]["from_user"], "alice", "{waited}");
    assert_eq!(waited["data"]["payload"], json!({"text": "later"}));

    // Logout on A ends the token on B: Carol's connection there closes, and B refuses it.
    let (status, body) = a
        .post_auth("/api/v1/auth/logout", &carol_token, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(close_code(&mut carol).await, Some(4001));
    let (status, _) = b
        .post_auth(
            "/api/v1/projects",
            &carol_token,
            &json!({"name": "after logout"}),
        )
        .await;
    assert_eq!(status, 401);

    // Bob leaves B: Alice on A sees him go.
    drop(bob);
    loop {
        let presence = next_of(&mut alice, "Presence").await;
        if presence["data"]["user_id"] == "bob" && presence["data"]["status"] == "offline" {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_achievement_unlocked_on_one_node_reaches_a_studio_subscriber_on_the_other() {
    let Pair { a, b, _nats } = two_nodes().await;
    register(&a, "watcher").await;
    register(&a, "trader").await;

    let mut studio = ws_connect(&format!("ws://{}/raos", b.handle().http_addr)).await;
    ws_send(
        &mut studio,
        &json!({"action": "subscribe_events", "request_id": "e",
                "auth_token": token_for_existing(&b, "watcher").await,
                "event_types": ["achievement_unlocked"]}),
    )
    .await;
    let subscribed = ws_next(&mut studio).await.unwrap();
    assert_eq!(subscribed["success"], true, "{subscribed}");

    let mut game = GameClient::connect(&a).await;
    game.login(&token_for_existing(&a, "trader").await).await;
    game.join("sol-1").await;
    game.send(
        "trade.buy",
        json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
    )
    .await;
    let result = game.recv_reply().await;
    assert_eq!(result["payload"]["ok"], true, "{result}");

    let event = ws_next(&mut studio).await.unwrap();
    assert_eq!(event["event_type"], "achievement_unlocked", "{event}");
    assert_eq!(event["data"]["achievement_id"], "first-trade");
    assert_eq!(event["data"]["username"], "trader");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_is_noticed_and_its_users_go_offline() {
    let WithChild {
        a,
        b,
        _b_dir,
        _nats,
    } = a_and_child_b(|_| {}, &[]).await;
    register(&a, "watcher").await;
    register(&a, "leaver").await;
    let mut watcher = comms(&a, &token_for_existing(&a, "watcher").await).await;
    ws_send(
        &mut watcher,
        &json!({"type": "Subscribe", "data": {"topics": ["presence.leaver"]}}),
    )
    .await;
    let url = format!(
        "{}?token={}",
        b.url("/ws").replace("http", "ws"),
        token_for_existing(&a, "leaver").await
    );
    let mut leaver = ws_connect(&url).await;
    assert_eq!(
        ws_next(&mut leaver).await.unwrap()["data"]["status"],
        "connected"
    );
    let online = next_of(&mut watcher, "Presence").await;
    assert_eq!(
        (&online["data"]["user_id"], &online["data"]["status"]),
        (&json!("leaver"), &json!("online"))
    );
    // SIGKILL: B says nothing more. A stops hearing its heartbeat and, after the node
    // timeout, takes its users for gone.
    b.kill_hard();
    let offline = next_of(&mut watcher, "Presence").await;
    assert_eq!(
        (&offline["data"]["user_id"], &offline["data"]["status"]),
        (&json!("leaver"), &json!("offline"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_lobby_login_on_one_node_ends_the_older_session_on_the_other() {
    let Pair { a, b, _nats } = two_nodes().await;
    register(&a, "dana").await;
    let credentials = json!({"username": "dana", "password": "pw-secret"});
    let mut on_a = common::LineClient::connect(a.handle().lobby_tcp_addr).await;
    let older = on_a.call("LOGIN_PLAYER", None, credentials.clone()).await;
    let older_token = older["payload"]["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = on_a.call("LIST_GAMES", Some(&older_token), json!({})).await;
    assert_eq!(listed["code"], 0, "{listed}");

    let mut on_b = common::LineClient::connect(b.handle().lobby_tcp_addr).await;
    let newer = on_b.call("LOGIN_PLAYER", None, credentials).await;
    assert_eq!(newer["code"], 0, "{newer}");

    // A has heard (the replacement is told before B answers the login, and A may take a
    // moment to apply it): the older session's next requests get 105.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let answer = on_a.call("LIST_GAMES", Some(&older_token), json!({})).await;
        if answer["code"] == 105 {
            assert_eq!(answer["message"], "session replaced by a newer login");
            break;
        }
        assert_eq!(answer["code"], 0, "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never replaced on A"
        );
    }
}

/// Asks `lobby` for the games it lists until `wanted` holds of the game's entry (`None`
/// when not listed), or fails after the wait: the change crosses over NATS, then the
/// database.
/// A lobby connection to `server` with `name` registered or logged in (`command`, with the
/// suite's password); returns it and the session token.
async fn lobby_session(
    server: &TestServer,
    command: &str,
    name: &str,
) -> (common::LineClient<tokio::net::TcpStream>, String) {
    let mut lobby = common::LineClient::connect(server.handle().lobby_tcp_addr).await;
    let answer = lobby
        .call(
            command,
            None,
            json!({"username": name, "password": "pw-secret"}),
        )
        .await;
    let token = answer["payload"]["session_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{command} {name}: {answer}"))
        .to_owned();
    (lobby, token)
}

async fn until_listed(
    lobby: &mut common::LineClient<tokio::net::TcpStream>,
    token: &str,
    game_id: &str,
    wanted: impl Fn(Option<&Value>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let games = lobby.call("LIST_GAMES", Some(token), json!({})).await;
        let games = games["payload"]["games"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if wanted(games.iter().find(|g| g["game_id"] == game_id)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node B never showed the change to {game_id}: {games:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_game_changed_on_one_node_is_seen_by_the_others_lobby_and_garp() {
    let Pair { a, b, _nats } = two_nodes().await;
    let mut game = common::garp::dev_game(a.handle().dev_tcp_addr).await;
    let (mut lobby_b, token) = lobby_session(&b, "REGISTER_PLAYER", "browser").await;
    let id = game.game_id.clone();

    // Created on A (without a version, listed with none), then published: B lists both.
    until_listed(&mut lobby_b, &token, &id, |g| {
        g.is_some_and(|g| g["latest_version"].is_null())
    })
    .await;
    game.publish("1.0.0", b"the build").await;
    until_listed(&mut lobby_b, &token, &id, |g| {
        g.is_some_and(|g| g["latest_version"] == "1.0.0")
    })
    .await;
    let latest = lobby_b
        .call("LATEST_VERSION", Some(&token), json!({"game_id": id}))
        .await;
    assert_eq!(latest["payload"]["version"], "1.0.0", "{latest}");

    // OFFLINE on A: B's lobby shows it so, and B's GARP refuses its players.
    game.set_status("OFFLINE").await;
    until_listed(&mut lobby_b, &token, &id, |g| {
        g.is_some_and(|g| g["status"] == "OFFLINE")
    })
    .await;
    let (mut garp, refusal) = common::garp::open(b.handle().http_addr, &game.api_key).await;
    assert_eq!(refusal["error"], "Unknown GameID", "{refusal}");
    assert_eq!(close_code(&mut garp).await, Some(4000));

    // And ONLINE again.
    game.set_status("ONLINE").await;
    until_listed(&mut lobby_b, &token, &id, |g| {
        g.is_some_and(|g| g["status"] == "ONLINE")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_started_on_a_busy_node_is_placed_on_a_quieter_one() {
    let Pair { a, b, _nats } = two_nodes().await;
    // A holds a player on /game; B holds none.
    let (admin, mut busy) = admin_and_busy_player(&a).await;
    let overview = until_another_node_heard(&a, &admin).await;
    assert_eq!(overview["nodes"][0]["node_id"], "node-b", "{overview}");
    assert_eq!(
        overview["nodes"][0]["game_port"],
        b.handle().http_addr.port()
    );
    assert_eq!(overview["nodes"][0]["players"], 0, "{overview}");
    assert!(overview["nodes"][0]["tick_p99_us"].is_u64(), "{overview}");

    // Hana starts a room in A's lobby.
    let (mut hana, hana_token, room_id) = lobby_with_room(&a, "hana").await;
    let started = hana
        .call("START_ROOM", Some(&hana_token), json!({"room_id": room_id}))
        .await;
    assert_eq!(started["code"], 0, "{started}");
    assert_eq!(
        started["payload"]["game_port"],
        b.handle().http_addr.port(),
        "placed on B: {started}"
    );
    assert_eq!(started["payload"]["game_host"], "127.0.0.1");

    // Hana plays it on B.
    let mut on_b = GameClient::connect(&b).await;
    on_b.login(&hana_token).await;
    let (joined, _snapshot) = on_b.join(&room_id).await;
    assert_eq!(joined["payload"]["system_id"], room_id, "{joined}");

    // Joining it through A is refused, naming where it runs.
    busy.send("session.join_system", json!({"system_id": room_id}))
        .await;
    let refused = busy.recv_type("error").await;
    assert_eq!(refused["payload"]["code"], "WRONG_NODE", "{refused}");
    assert_eq!(refused["payload"]["node"], "node-b");
    assert_eq!(refused["payload"]["game_host"], "127.0.0.1");
    assert_eq!(refused["payload"]["game_port"], b.handle().http_addr.port());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garp_player_reconnecting_to_another_node_goes_on_with_its_token_and_session() {
    let Pair { a, b, _nats } = two_nodes().await;
    let game = common::garp::dev_game(a.handle().dev_tcp_addr).await;
    register(&a, "gina").await;
    let mut on_a = common::garp::Garp::connect_as_module(a.handle().http_addr, &game, None).await;
    let gina = on_a.authenticate(&game, "gina").await;
    let session_id = on_a.session_id.clone();
    drop(on_a);

    // The module's reconnect lands on B, with the token and session A issued. B has heard
    // of both (the notes cross before the module could reconnect; a heartbeat-length
    // deadline covers a slow NATS).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let resume = common::garp::Resume {
            session_id: &session_id,
            auth_token: &gina.token,
        };
        let mut on_b =
            common::garp::Garp::connect_as_module(b.handle().http_addr, &game, Some(resume)).await;
        let details = on_b
            .call(
                ".AccountDetailsRequest",
                json!({"authToken": gina.token, "userId": gina.user_id}),
            )
            .await;
        if on_b.session_id == session_id && details.get("error").is_none() {
            assert_eq!(details["currency"], "ATH", "{details}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never took A's session and token: {details}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_whose_chosen_node_never_answers_starts_where_it_was_asked_for() {
    let WithChild {
        a,
        b,
        _b_dir,
        _nats,
    } = a_and_child_b(
        |c| {
            c.cluster.node_timeout_ms = 1_500;
            c.cluster.systems = vec!["sol-1".into()];
        },
        &[("ECLIPTIC_CLUSTER__NODE_ID", "node-b")],
    )
    .await;
    // A holds a player, so B (none) is where a room would go.
    let (admin, _busy) = admin_and_busy_player(&a).await;
    let (mut hana, hana_token, room_id) = lobby_with_room(&a, "hana").await;
    until_another_node_heard(&a, &admin).await;

    // B dies right after A heard it: A asks it to host the room, hears nothing, and
    // after the node timeout starts the room itself.
    b.kill_hard();
    let started = hana
        .call("START_ROOM", Some(&hana_token), json!({"room_id": room_id}))
        .await;
    assert_eq!(started["code"], 0, "{started}");
    assert_eq!(
        started["payload"]["game_port"],
        a.handle().http_addr.port(),
        "started on A: {started}"
    );
    let mut player = GameClient::connect(&a).await;
    player.login(&hana_token).await;
    let (joined, _) = player.join(&room_id).await;
    assert_eq!(joined["payload"]["system_id"], room_id);
}

/// An admin's token on `a`, and Busy, a player in sol-1 on `a` (which makes `a` the busier
/// node); Hana is registered too, for a room.
async fn admin_and_busy_player(a: &TestServer) -> (String, GameClient) {
    let admin = common::admin_token(a, "root", "root-password").await;
    for name in ["hana", "busy"] {
        register(a, name).await;
    }
    let mut busy = GameClient::connect(a).await;
    busy.login(&token_for_existing(a, "busy").await).await;
    busy.join("sol-1").await;
    (admin, busy)
}

/// Waits until `a`'s admin overview lists another node; returns that overview.
async fn until_another_node_heard(a: &TestServer, admin: &str) -> Value {
    until_overview(a, admin, |nodes| !nodes.is_empty()).await
}

/// Waits until `a`'s admin overview's list of other nodes is as `wanted` says.
async fn until_overview(a: &TestServer, admin: &str, wanted: impl Fn(&[Value]) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let overview = a.get_auth("/api/v1/admin/overview", admin).await;
        if overview["nodes"].as_array().is_some_and(|n| wanted(n)) {
            return overview;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other nodes are not as wanted: {overview}"
        );
    }
}

/// `host` logged in to `server`'s lobby with a room of a new game (with a version);
/// returns the lobby connection, the host's token and the room id.
async fn lobby_with_room(
    server: &TestServer,
    host: &str,
) -> (common::LineClient<tokio::net::TcpStream>, String, String) {
    let mut game = common::garp::dev_game(server.handle().dev_tcp_addr).await;
    game.publish("1.0.0", b"the build").await;
    let (mut lobby, token) = lobby_session(server, "LOGIN_PLAYER", host).await;
    let created = lobby
        .call(
            "CREATE_ROOM",
            Some(&token),
            json!({"game_id": game.game_id}),
        )
        .await;
    let room_id = created["payload"]["room_id"].as_str().unwrap().to_owned();
    (lobby, token, room_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_star_system_runs_on_one_node_and_moves_when_that_node_dies() {
    // B has vega-2 pinned to it; sol-1 goes where rendezvous hashing puts it.
    let WithChild {
        a,
        b,
        _b_dir,
        _nats,
    } = a_and_child_b(
        |c| c.cluster.node_id = Some("node-a".into()),
        &[
            ("ECLIPTIC_CLUSTER__NODE_ID", "node-b"),
            ("ECLIPTIC_CLUSTER__NODE_TIMEOUT_MS", "1000"),
            ("ECLIPTIC_CLUSTER__SYSTEMS", r#"["vega-2"]"#),
        ],
    )
    .await;
    let admin = common::admin_token(&a, "root", "root-password").await;
    register(&a, "vera").await;
    let token = token_for_existing(&a, "vera").await;
    until_another_node_heard(&a, &admin).await;

    // Vera plays vega-2 on B and buys a unit of food there, which is saved.
    let mut on_b = GameClient::connect_to(b.http).await;
    on_b.login(&token).await;
    on_b.join("vega-2").await;
    let station = "vega-highport";
    on_b.send(
        "trade.buy",
        json!({"station_id": station, "commodity_id": "food", "quantity": 1}),
    )
    .await;
    let bought = on_b.recv_reply().await;
    assert_eq!(bought["payload"]["ok"], true, "{bought}");
    let credits = bought["payload"]["credits"].clone();

    // A sends anyone asking for vega-2 to B; sol-1 runs on exactly one of the two.
    let mut on_a = GameClient::connect(&a).await;
    on_a.login(&token).await;
    on_a.send("session.join_system", json!({"system_id": "vega-2"}))
        .await;
    let refused = on_a.recv_reply().await;
    assert_eq!(refused["payload"]["code"], "WRONG_NODE", "{refused}");
    assert_eq!(refused["payload"]["node"], "node-b");
    assert_eq!(refused["payload"]["game_port"], b.http.port());
    // Her login on A took her pilot over: B's connection was told so.
    let replaced = on_b.recv_reply().await;
    assert_eq!(
        replaced["payload"]["code"], "SESSION_REPLACED",
        "{replaced}"
    );
    drop((on_a, on_b));
    let mut sol = Vec::new();
    for node in [a.handle().http_addr, b.http] {
        let mut client = GameClient::connect_to(node).await;
        client.login(&token).await;
        client
            .send("session.join_system", json!({"system_id": "sol-1"}))
            .await;
        let answer = client.recv_reply().await;
        sol.push(answer["type"] == "session.joined");
        if answer["type"] == "error" {
            assert_eq!(answer["payload"]["code"], "WRONG_NODE", "{answer}");
        }
    }
    assert_eq!(sol.iter().filter(|joined| **joined).count(), 1, "{sol:?}");

    // B dies. Once A takes it for gone, vega-2 runs on A, and Vera finds her pilot there
    // as it was saved.
    b.kill_hard();
    until_overview(&a, &admin, <[Value]>::is_empty).await;
    let mut again = GameClient::connect(&a).await;
    again.login(&token).await;
    let (joined, snapshot) = again.join("vega-2").await;
    assert_eq!(joined["payload"]["system_id"], "vega-2");
    let you = &snapshot["payload"]["you"];
    assert_eq!(you["credits"], credits, "{you}");
    let food: i64 = you["cargo"]
        .as_array()
        .expect("cargo")
        .iter()
        .filter(|c| c["commodity_id"] == "food")
        .map(|c| c["qty"].as_i64().unwrap_or(0))
        .sum();
    assert!(food >= 1, "{you}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_whose_node_dies_starts_again_where_it_was_placed_from() {
    let WithChild {
        a,
        b,
        _b_dir,
        _nats,
    } = a_and_child_b(
        |c| c.cluster.systems = vec!["sol-1".into()],
        &[
            ("ECLIPTIC_CLUSTER__NODE_ID", "node-b"),
            ("ECLIPTIC_CLUSTER__NODE_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    // A holds a player, so Hana's room is placed on B, where she plays it.
    let (admin, mut busy) = admin_and_busy_player(&a).await;
    until_another_node_heard(&a, &admin).await;
    let (mut hana, hana_token, room_id) = lobby_with_room(&a, "hana").await;
    let started = hana
        .call("START_ROOM", Some(&hana_token), json!({"room_id": room_id}))
        .await;
    assert_eq!(started["payload"]["game_port"], b.http.port(), "{started}");
    let mut on_b = GameClient::connect_to(b.http).await;
    on_b.login(&hana_token).await;
    on_b.join(&room_id).await;
    on_b.send(
        "trade.buy",
        json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 2}),
    )
    .await;
    let bought = on_b.recv_reply().await;
    assert_eq!(bought["payload"]["ok"], true, "{bought}");
    let credits = bought["payload"]["credits"].clone();
    drop(on_b);

    // B dies: once A takes it for gone, the room's world runs on A, and Hana, joining
    // again there, finds her pilot as saved.
    b.kill_hard();
    until_overview(&a, &admin, <[Value]>::is_empty).await;
    let mut on_a = GameClient::connect(&a).await;
    on_a.login(&hana_token).await;
    let (joined, snapshot) = on_a.join(&room_id).await;
    assert_eq!(joined["payload"]["system_id"], room_id, "{joined}");
    assert_eq!(snapshot["payload"]["you"]["credits"], credits);
    // And it is still hers alone: Busy is refused.
    busy.send("session.join_system", json!({"system_id": room_id}))
        .await;
    let refused = busy.recv_type("error").await;
    assert_eq!(refused["payload"]["code"], "NOT_IN_ROOM", "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wages_on_two_nodes_for_one_game_meet_in_one_pot() {
    let Pair { a, b, _nats } = two_nodes().await;
    let game = common::garp::dev_game(a.handle().dev_tcp_addr).await;
    for name in ["ann", "bob"] {
        common::garp::register(&a, name).await;
    }
    let mut on_a = common::garp::Garp::connect(a.handle().http_addr, &game).await;
    let ann = on_a.authenticate(&game, "ann").await;
    assert_eq!(on_a.wage(&game, &ann, "7").await["value"], 93);

    // Bob wagers on the same game through B (once B has heard of the game).
    let (mut lobby_b, token) = lobby_session(&b, "LOGIN_PLAYER", "bob").await;
    until_listed(&mut lobby_b, &token, &game.game_id, |g| g.is_some()).await;
    let mut on_b = common::garp::Garp::connect(b.handle().http_addr, &game).await;
    let bob = on_b.authenticate(&game, "bob").await;
    assert_eq!(on_b.wage(&game, &bob, "5").await["value"], 95);

    // Both nodes opened the same period: one pot, one ladder, read from either node.
    for (garp, player) in [(&mut on_a, &ann), (&mut on_b, &bob)] {
        let ladder = garp.ladder(&game, player).await;
        assert_eq!(ladder["totalGames"], 2, "{ladder}");
        assert_eq!(ladder["inPlay"], 12, "{ladder}");
    }
    let store = common::database::open_server_store(&a);
    let periods: Vec<i64> = store
        .read_now(|conn| {
            conn.query_map(
                "SELECT DISTINCT seq FROM plays WHERE game_id = ?1",
                [game.game_id.clone()],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(periods.len(), 1, "{periods:?}");

    // A game of one-second periods: Ann's period on A resolves; B, which saw none of it,
    // opens the period of the moment Bob wagers in, not one A has already resolved.
    let mut quick = common::garp::dev_game(a.handle().dev_tcp_addr).await;
    quick.update(json!({"period_hours": 1.0 / 3600.0})).await;
    until_listed(&mut lobby_b, &token, &quick.game_id, |g| {
        g.is_some_and(|g| g["status"] == "ONLINE")
    })
    .await;
    let mut on_a = common::garp::Garp::connect(a.handle().http_addr, &quick).await;
    let ann = on_a.authenticate(&quick, "ann").await;
    assert!(on_a.wage(&quick, &ann, "1").await["playid"].is_i64());
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let game_id = quick.game_id.clone();
    loop {
        let id = game_id.clone();
        let resolved: i64 = store
            .read_now(move |conn| {
                conn.query_row(
                    "SELECT COUNT(*) FROM wager_periods WHERE game_id = ?1 AND resolved_at IS NOT NULL",
                    [id],
                    |r| r.get(0),
                )
            })
            .unwrap();
        if resolved > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no period resolved");
    }
    let mut on_b = common::garp::Garp::connect(b.handle().http_addr, &quick).await;
    let bob = on_b.authenticate(&quick, "bob").await;
    let placed = on_b.wage(&quick, &bob, "1").await;
    assert!(placed["playid"].is_i64(), "{placed}");
    store.close();
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_starting_together_on_a_new_database_all_start() {
    let nats = NatsServer::start().await;
    let prefix = common::nats::prefix();
    let database = common::database::fresh_postgres();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Each races the others through the migrations, the signing key and the built-in game.
    let nodes: Vec<common::ChildServer> = std::thread::scope(|scope| {
        let starting: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let env = [
                    ("ECLIPTIC_DATABASE", database.as_str()),
                    ("ECLIPTIC_NATS", nats.url.as_str()),
                    ("ECLIPTIC_CLUSTER__SUBJECT_PREFIX", prefix.as_str()),
                ];
                scope.spawn(move || common::ChildServer::spawn_with_env(dir.path(), &env))
            })
            .collect();
        starting
            .into_iter()
            .map(|node| node.join().expect("a node starts"))
            .collect()
    });
    let http = reqwest::Client::new();
    let mut lists = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let ready = http.get(node.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        // A token from one node works on the next: they made one signing key between them.
        let grant =
            common::register_and_login_at(&http, &node.url(""), &format!("player{i}"), "pw-secret")
                .await;
        let next = &nodes[(i + 1) % nodes.len()];
        let games = http
            .get(next.url("/api/v1/games"))
            .bearer_auth(grant["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(games.status(), 200);
        lists.push(games.json::<Value>().await.unwrap()["games"].clone());
    }
    // One built-in game, the same on all.
    assert_eq!(lists[0].as_array().map(Vec::len), Some(1), "{lists:?}");
    assert!(lists.iter().all(|l| l == &lists[0]), "{lists:?}");
}

/// A broadcast's `Ack` counts its recipients on every node, not just the publisher's.
#[tokio::test(flavor = "multi_thread")]
async fn a_broadcasts_ack_counts_the_subscribers_on_every_node() {
    let nats = NatsServer::start().await;
    let (prefix, database) = (common::nats::prefix(), common::database::fresh_postgres());
    let mut nodes = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        let (url, prefix, database) = (nats.url.clone(), prefix.clone(), database.clone());
        nodes.push(
            TestServer::start_with(move |c| {
                c.store.database = Some(database);
                c.cluster.nats = Some(url);
                c.cluster.subject_prefix = prefix;
                c.cluster.node_id = Some(id.into());
                c.cluster.heartbeat_ms = 200;
                c.cluster.lease_ms = 1_000;
            })
            .await,
        );
    }
    let names = ["ann", "bob", "cyd", "pub"];
    for name in names {
        register(&nodes[0], name).await;
    }
    // The publisher, on A, sees the others come online: A has heard from B and C.
    let mut publisher = comms(&nodes[0], &token_for_existing(&nodes[0], "pub").await).await;
    ws_send(
        &mut publisher,
        &json!({"type": "Subscribe", "data": {"topics": ["presence"]}, "id": "p"}),
    )
    .await;
    let mut subscribers = Vec::new();
    for (node, name) in nodes.iter().zip(names) {
        let mut ws = comms(node, &token_for_existing(node, name).await).await;
        ws_send(
            &mut ws,
            &json!({"type": "Subscribe", "data": {"topics": ["chat.lounge"]}, "id": "s"}),
        )
        .await;
        assert_eq!(next_of(&mut ws, "Ack").await["data"]["message_id"], "s");
        subscribers.push(ws);
    }
    let mut online = std::collections::HashSet::new();
    while !(online.contains("bob") && online.contains("cyd")) {
        let presence = next_of(&mut publisher, "Presence").await;
        if presence["data"]["status"] == "online" {
            online.insert(
                presence["data"]["user_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            );
        }
    }

    ws_send(
        &mut publisher,
        &json!({"type": "Broadcast", "data": {"topic": "chat.lounge", "payload": {"n": 1}}, "id": "b1"}),
    )
    .await;
    let ack = next_of(&mut publisher, "Ack").await;
    assert_eq!(
        ack["data"],
        json!({"message_id": "b1", "status": "delivered", "recipients": 3}),
        "{ack}"
    );
    for ws in &mut subscribers {
        assert_eq!(
            next_of(ws, "Broadcast").await["data"]["payload"],
            json!({"n": 1})
        );
    }
}
