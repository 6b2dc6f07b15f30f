//! Backups, restores and the move to PostgreSQL, as an operator runs them: `ecliptic admin
//! backup | restore | move-to` against a server filled over real sockets, and the result
//! served again over real sockets.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use common::garp::{GRANT, GameKeys, Garp};
use common::nats::NatsServer;
use common::{GameClient, TestServer, token_for_existing, ws_connect, ws_next, ws_send};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `ecliptic <args>`, waited for off the test's runtime.
async fn ecliptic(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"))
            .args(&args)
            .env_remove("ECLIPTIC_DATABASE")
            .env_remove("ECLIPTIC_DATA_DIR")
            .output()
            .expect("ecliptic runs")
    })
    .await
    .expect("the command's thread")
}

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A refused command: its exit status and what it said on stderr.
fn refused(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "should have been refused: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Bytes that differ from seed to seed.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Everything a filled server acknowledged, to look for after a restore or a move.
struct Filled {
    game: GameKeys,
    developer: String,
    versions: Vec<(String, Vec<u8>)>,
    /// Player, and the wallet balance GARP last told them.
    balances: Vec<(String, i64)>,
    project_id: String,
    /// Asset id, and its bytes.
    assets: Vec<(String, Vec<u8>)>,
    /// Who has a direct message waiting, and its payload.
    mailbox: (String, Value),
    trader: String,
    /// A token issued before the backup or move.
    old_token: String,
}

/// Fills `server` over its sockets: accounts, a wallet grant (the command line), wages, a
/// game with two uploaded versions, a studio project with assets, a queued DM, and an
/// achievement from a trade.
async fn fill(server: &TestServer) -> Filled {
    let http = server.handle().http_addr;
    let mut dev = common::garp::dev_game(server.handle().dev_tcp_addr).await;
    let versions = vec![
        ("1.0.0".to_owned(), bytes(200_000, 1)),
        ("1.1.0".to_owned(), bytes(300_000, 7)),
    ];
    for (version, build) in &versions {
        dev.publish(version, build).await;
    }
    dev.set_status("ONLINE").await;
    for name in ["ana", "ben", "cleo", "dana"] {
        common::garp::register(server, name).await;
    }
    let data_dir = path(&server.config.data_dir).to_owned();
    let granted =
        succeeded(&ecliptic(&["wallet", "grant", "ana", "50", "--data-dir", &data_dir]).await);
    assert_eq!(
        granted.trim(),
        format!("granted 50 to ana; balance {}", GRANT + 50)
    );

    let mut garp = Garp::connect(http, &dev).await;
    let ana = garp.authenticate(&dev, "ana").await;
    let ben = garp.authenticate(&dev, "ben").await;
    let play = garp.wage(&dev, &ana, "10").await;
    assert_eq!(play["status"], "OK", "{play}");
    assert_eq!(
        garp.finish(&ana, &play["playid"], 500).await["status"],
        "OK"
    );
    assert_eq!(garp.wage(&dev, &ben, "5").await["status"], "OK");
    let balances = vec![
        ("ana".to_owned(), garp.balance(&ana).await),
        ("ben".to_owned(), garp.balance(&ben).await),
    ];
    assert_eq!(balances[0].1, GRANT + 50 - 10);

    let token = token_for_existing(server, "ana").await;
    let (status, project) = rest(
        server,
        "POST",
        "/projects",
        &token,
        json!({"name": "Nebula"}),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let project_id = project["project_id"]
        .as_str()
        .expect("project_id")
        .to_owned();
    let text = b"a level: ###..###".to_vec();
    let (status, added) = rest(
        server,
        "POST",
        &format!("/projects/{project_id}/assets"),
        &token,
        json!({"asset_name": "level.txt", "asset_type": "data", "asset_data": B64.encode(&text)}),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let image = bytes(50_000, 3);
    let (status, uploaded) = rest(
        server,
        "POST",
        "/assets",
        &token,
        json!({"asset_type": "data", "filename": "blob.bin", "file_data": B64.encode(&image)}),
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    let assets = vec![
        (added["asset_id"].as_str().expect("id").to_owned(), text),
        (uploaded["asset_id"].as_str().expect("id").to_owned(), image),
    ];

    // Cleo is offline: ben's message waits for her.
    let ben_token = token_for_existing(server, "ben").await;
    let mut comms = ws_connect(&format!("ws://{http}/ws?token={ben_token}")).await;
    assert_eq!(
        ws_next(&mut comms).await.expect("welcome")["type"],
        "Status"
    );
    let payload = json!({"text": "see you at the station"});
    ws_send(
        &mut comms,
        &json!({"type": "DirectMessage", "id": "dm-1",
                "data": {"target_user": "cleo", "payload": payload}}),
    )
    .await;
    let queued = ws_next(&mut comms).await.expect("an answer");
    assert_eq!(
        queued["data"]["details"],
        json!({"message_id": "dm-1", "queued": true}),
        "{queued}"
    );

    // Dana's first trade unlocks an achievement; a studio subscriber hears it.
    let dana = token_for_existing(server, "dana").await;
    let mut studio = ws_connect(&format!("ws://{http}/raos?token={dana}")).await;
    ws_send(
        &mut studio,
        &json!({"action": "subscribe_events", "request_id": 1,
                "event_types": ["achievement_unlocked"]}),
    )
    .await;
    let subscribed = ws_next(&mut studio).await.expect("the subscription");
    assert_eq!(subscribed["success"], true, "{subscribed}");
    let mut game = GameClient::connect(server).await;
    game.login(&dana).await;
    game.join("sol-1").await;
    trade(&mut game, "trade.buy").await;
    achievement_saved(server, &mut studio, &dana).await;

    Filled {
        game: dev.keys.clone(),
        developer: dev.username.clone(),
        versions,
        balances,
        project_id,
        assets,
        mailbox: ("cleo".to_owned(), payload),
        trader: "dana".to_owned(),
        old_token: token,
    }
}

async fn rest(
    server: &TestServer,
    method: &str,
    route: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let response = server
        .http
        .request(method, server.url(&format!("/api/v1{route}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

async fn get_bytes(server: &TestServer, route: &str, token: &str) -> Vec<u8> {
    let response = server
        .http
        .get(server.url(route))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 200, "{route}");
    response.bytes().await.expect("the body").to_vec()
}

async fn achievements(server: &TestServer, token: &str) -> Value {
    server.get_auth("/api/v1/achievements", token).await
}

fn unlocked(list: &Value, id: &str) -> bool {
    list["achievements"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["achievement_id"] == id && a["unlocked"] == true)
}

/// The achievement is saved a moment after the trade that earned it is answered: its save
/// is queued to the store's one writer before its event goes out, so once the event is
/// heard, a write acknowledged after it commits after the save.
async fn achievement_saved(server: &TestServer, studio: &mut common::Ws, token: &str) {
    loop {
        let event = ws_next(studio).await.expect("the achievement's event");
        if event["event_type"] == "achievement_unlocked" {
            assert_eq!(event["data"]["achievement_id"], "first-trade", "{event}");
            break;
        }
    }
    let (status, body) = rest(
        server,
        "PATCH",
        "/profile",
        token,
        json!({"region": "eu-west"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(unlocked(&achievements(server, token).await, "first-trade"));
}

/// A pilot as a trade's answer or a snapshot shows it: credits, and food in the hold.
fn pilot(you: &Value) -> (i64, i64) {
    let food = you["cargo"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["commodity_id"] == "food")
        .map(|c| c["qty"].as_i64().unwrap_or(0))
        .sum();
    (you["credits"].as_i64().expect("credits"), food)
}

/// One unit of food bought or sold; the pilot as the answer shows it, or `None` if the
/// trade was refused (a cooldown), which leaves no trace.
async fn trade(game: &mut GameClient, kind: &str) -> Option<(i64, i64)> {
    let unit = json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1});
    game.send(kind, unit).await;
    loop {
        let reply = game.recv_reply().await;
        match reply["type"].as_str() {
            Some("trade.result") => return Some(pilot(&reply["payload"])),
            Some("error") => {
                assert_eq!(reply["payload"]["code"], "COOLDOWN", "{reply}");
                return None;
            }
            _ => {}
        }
    }
}

/// Whether the queued direct message is still to be delivered.
#[derive(PartialEq)]
enum Mail {
    Waiting,
    Delivered,
}

/// What `filled` acknowledged, served by `server` (a restore, or a node after the move).
async fn check_served(server: &TestServer, filled: &Filled, mail: Mail) {
    let http = server.handle().http_addr;
    for name in ["ana", "ben", "cleo", "dana", filled.developer.as_str()] {
        token_for_existing(server, name).await;
    }
    let token = token_for_existing(server, "ana").await;
    // Balances, over GARP with the game's own keys (carried in the database).
    let mut garp = Garp::connect(http, &filled.game).await;
    for (name, balance) in &filled.balances {
        let player = garp.authenticate(&filled.game, name).await;
        assert_eq!(garp.balance(&player).await, *balance, "{name}'s balance");
    }
    for (version, build) in &filled.versions {
        let route = format!("/downloads/{}/{version}", filled.game.game_id);
        assert!(
            get_bytes(server, &route, &token).await == *build,
            "{route} byte for byte"
        );
    }
    let project = server
        .get_auth(&format!("/api/v1/projects/{}", filled.project_id), &token)
        .await;
    assert_eq!(project["project"]["name"], "Nebula", "{project}");
    for (asset_id, content) in &filled.assets {
        let served = get_bytes(server, &format!("/assets/{asset_id}"), &token).await;
        assert!(served == *content, "asset {asset_id} byte for byte");
    }
    let dana = token_for_existing(server, &filled.trader).await;
    assert!(unlocked(&achievements(server, &dana).await, "first-trade"));
    if mail == Mail::Delivered {
        return;
    }
    let (name, payload) = &filled.mailbox;
    let waiting = token_for_existing(server, name).await;
    let mut comms = ws_connect(&format!("ws://{http}/ws?token={waiting}")).await;
    let message = loop {
        let next = ws_next(&mut comms).await.expect("the queued message");
        if next["type"] == "DirectMessage" {
            break next;
        }
    };
    assert_eq!(message["data"]["from_user"], "ben");
    assert_eq!(message["data"]["payload"], *payload);
}

/// `ecliptic wallet check` on a data directory or database: the ledger balances.
async fn ledger_balances(args: &[&str]) {
    let mut command = vec!["wallet", "check"];
    command.extend_from_slice(args);
    let out = succeeded(&ecliptic(&command).await);
    assert!(out.contains("ok: the ledger balances"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_players_trade_restores_everything_acknowledged_before_it() {
    let server = TestServer::start_on_sqlite(|c| c.wagers.signup_grant = GRANT).await;
    let filled = fill(&server).await;
    let work = tempfile::tempdir().expect("a temp dir");
    let archive = work.path().join("night.ecliptic-backup");

    // Dana trades on; every answer is logged with whether the backup had begun.
    let began = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let dana = token_for_existing(&server, "dana").await;
    let mut game = GameClient::connect(&server).await;
    game.login(&dana).await;
    let (_, snapshot) = game.join("sol-1").await;
    let start = pilot(&snapshot["payload"]["you"]);
    let (ready, some_answered) = tokio::sync::oneshot::channel();
    let load = tokio::spawn({
        let (began, stop) = (began.clone(), stop.clone());
        async move {
            let mut acks = Vec::new();
            let mut ready = Some(ready);
            let mut food = start.1;
            while !stop.load(Ordering::SeqCst) {
                let before = !began.load(Ordering::SeqCst);
                let kind = if food < 5 { "trade.buy" } else { "trade.sell" };
                if let Some(state) = trade(&mut game, kind).await {
                    food = state.1;
                    acks.push((before, state));
                }
                if acks.len() >= 3
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
            acks
        }
    });
    // Some trades are answered before the backup begins.
    tokio::time::timeout(common::WAIT, some_answered)
        .await
        .expect("three trades within the wait")
        .expect("the trader trades");
    began.store(true, Ordering::SeqCst);
    let data_dir = path(&server.config.data_dir).to_owned();
    let out =
        succeeded(&ecliptic(&["admin", "backup", path(&archive), "--data-dir", &data_dir]).await);
    assert!(out.starts_with("backed up "), "{out}");
    assert!(out.contains("the ledger balances"), "{out}");
    stop.store(true, Ordering::SeqCst);
    let acks = load.await.expect("the trader");
    let acked_before = acks.iter().filter(|(before, _)| *before).count();
    assert!(
        acked_before >= 1,
        "no trade was answered before the backup: {acks:?}"
    );
    server.shutdown().await;

    let restored = work.path().join("restored");
    let out = succeeded(
        &ecliptic(&[
            "admin",
            "restore",
            path(&archive),
            "--data-dir",
            path(&restored),
        ])
        .await,
    );
    assert!(out.starts_with("restored "), "{out}");
    ledger_balances(&["--data-dir", path(&restored)]).await;

    let server = TestServer::start_on_sqlite(|c| {
        c.data_dir = restored.clone();
        c.wagers.signup_grant = GRANT;
    })
    .await;
    check_served(&server, &filled, Mail::Waiting).await;
    // Dana's pilot is as an answer at or after the last one before the backup left it.
    let mut game = GameClient::connect(&server).await;
    game.login(&token_for_existing(&server, "dana").await).await;
    let (_, snapshot) = game.join("sol-1").await;
    let found = pilot(&snapshot["payload"]["you"]);
    let possible: Vec<_> = acks[acked_before - 1..].iter().map(|(_, s)| *s).collect();
    assert!(
        possible.contains(&found),
        "dana restored as {found:?}; acknowledged {acks:?} ({acked_before} before the backup)"
    );
    // A token from before the backup is still good: the signing key and sessions came along.
    assert_eq!(
        server.get_auth("/api/v1/profile", &filled.old_token).await["success"],
        true
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_moved_to_postgres_serves_everything_from_two_nodes() {
    let source = tempfile::tempdir().expect("the node's data directory");
    let server = TestServer::start_on_sqlite(|c| {
        c.data_dir = source.path().to_owned();
        c.wagers.signup_grant = GRANT;
    })
    .await;
    let filled = fill(&server).await;
    // The node is stopped first.
    server.shutdown().await;
    let shared = tempfile::tempdir().expect("the shared volume");
    let database = common::database::fresh_postgres();
    let out = succeeded(
        &ecliptic(&[
            "admin",
            "move-to",
            &database,
            "--data-dir",
            path(source.path()),
            "--files-to",
            path(shared.path()),
        ])
        .await,
    );
    assert!(out.contains("the ledger balances"), "{out}");
    assert!(out.contains("the token signing key went with it"), "{out}");

    let nats = NatsServer::start().await;
    let prefix = common::nats::prefix();
    let node = |id: &'static str| {
        let (url, prefix, database, shared) = (
            nats.url.clone(),
            prefix.clone(),
            database.clone(),
            shared.path().to_owned(),
        );
        move |c: &mut ecliptic::Config| {
            c.data_dir = shared;
            c.store.database = Some(database);
            c.cluster.nats = Some(url);
            c.cluster.subject_prefix = prefix;
            c.cluster.node_id = Some(id.into());
            c.wagers.signup_grant = GRANT;
        }
    };
    let a = TestServer::start_with(node("node-a")).await;
    let b = TestServer::start_with(node("node-b")).await;
    check_served(&a, &filled, Mail::Waiting).await;
    // A delivered the message; B serves the rest, and a token from the SQLite node.
    check_served(&b, &filled, Mail::Delivered).await;
    assert_eq!(
        b.get_auth("/api/v1/profile", &filled.old_token).await["success"],
        true
    );
    // New ids go on after the copied ones: a new wage on B is a new move and play.
    let mut garp = Garp::connect(b.handle().http_addr, &filled.game).await;
    let ben = garp.authenticate(&filled.game, "ben").await;
    let play = garp.wage(&filled.game, &ben, "1").await;
    assert_eq!(play["status"], "OK", "{play}");
    ledger_balances(&["--database", &database]).await;
}

/// `archive` rewritten entry by entry, each through `edit` (name, bytes).
fn rewrite(archive: &[u8], edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut from = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("a zip");
    let mut to = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for index in 0..from.len() {
        let mut entry = from.by_index(index).expect("an entry");
        let name = entry.name().expect("a name").into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("the entry's bytes");
        to.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .expect("an entry");
        to.write_all(&edit(&name, bytes)).expect("written");
    }
    to.finish().expect("a zip").into_inner()
}

/// `archive` with an entry its manifest does not list.
fn with_extra_entry(archive: &[u8], name: &str) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new_append(std::io::Cursor::new(archive.to_vec()))
        .expect("an archive to append to");
    zip.start_file(name, zip::write::SimpleFileOptions::default())
        .expect("an entry");
    zip.write_all(b"not in the manifest").expect("written");
    zip.finish().expect("a zip").into_inner()
}

/// `archive` with one byte flipped halfway through the database's stored data.
fn flipped(archive: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("a zip");
    let entry = zip.by_name("ecliptic.db").expect("the database");
    let at = entry.data_start().expect("its offset") + entry.compressed_size() / 2;
    let mut damaged = archive.to_vec();
    damaged[usize::try_from(at).expect("an offset")] ^= 0x5a;
    damaged
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Runs `sql` on `database`, off the test's runtime.
async fn query_count(database: &str, sql: &str) -> i64 {
    let (database, sql) = (database.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&database, postgres::NoTls).expect("connect");
        client.query_one(&sql, &[]).expect(&sql).get(0)
    })
    .await
    .expect("the query's thread")
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_or_newer_backups_and_used_targets_are_refused_and_nothing_is_written() {
    let source = tempfile::tempdir().expect("the node's data directory");
    let server = TestServer::start_on_sqlite(|c| c.data_dir = source.path().to_owned()).await;
    common::garp::register(&server, "ana").await;
    let work = tempfile::tempdir().expect("a temp dir");
    let archive = work.path().join("good.zip");
    let data_dir = path(source.path()).to_owned();
    succeeded(&ecliptic(&["admin", "backup", path(&archive), "--data-dir", &data_dir]).await);
    let good = std::fs::read(&archive).expect("the backup");
    // A backup never overwrites a file.
    let said =
        refused(&ecliptic(&["admin", "backup", path(&archive), "--data-dir", &data_dir]).await);
    assert!(said.contains("already exists"), "{said}");
    assert!(std::fs::read(&archive).expect("the backup") == good);
    server.shutdown().await;

    let newer = rewrite(&good, |name, bytes| {
        if name != "manifest.json" {
            return bytes;
        }
        let mut manifest: Value = serde_json::from_slice(&bytes).expect("the manifest");
        manifest["schema_version"] = json!(999);
        manifest["server_version"] = json!("9.0.0");
        serde_json::to_vec(&manifest).expect("JSON")
    });
    let altered = rewrite(&good, |name, mut bytes| {
        if name == "files/jwt.key" {
            bytes[0] ^= 1;
        }
        bytes
    });
    let unlisted = with_extra_entry(&good, "files/../../escape");
    let missing = rewrite(&good, |name, bytes| {
        if name != "manifest.json" {
            return bytes;
        }
        let mut manifest: Value = serde_json::from_slice(&bytes).expect("the manifest");
        manifest["files"]["files/assets/deadbeef"] = json!({"size": 1, "sha256": "00"});
        serde_json::to_vec(&manifest).expect("JSON")
    });
    let cases = [
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "is not a readable backup",
        ),
        (
            "not-a-zip",
            b"{\"hello\": 1}".to_vec(),
            "is not a readable backup",
        ),
        (
            "flipped",
            flipped(&good),
            "ecliptic.db is damaged in the backup",
        ),
        (
            "altered",
            altered,
            "files/jwt.key is damaged in the backup: the manifest says",
        ),
        (
            "unlisted",
            unlisted,
            "holds files its manifest does not list",
        ),
        ("missing", missing, "is missing files its manifest lists"),
        (
            "newer",
            newer,
            "the backup is from a newer schema (version 999, made by ecliptic 9.0.0)",
        ),
    ];
    for (name, bytes, expected) in cases {
        let file = work.path().join(format!("{name}.zip"));
        std::fs::write(&file, bytes).expect("the damaged copy");
        let target = work.path().join(format!("{name}-restored"));
        let said = refused(
            &ecliptic(&["admin", "restore", path(&file), "--data-dir", path(&target)]).await,
        );
        assert!(said.contains(expected), "{name}: {said}");
        assert!(
            !target.exists(),
            "{name}: the refused restore made {}",
            target.display()
        );
    }
    // Nothing half-written beside the targets either.
    assert!(
        listing(work.path()).iter().all(|n| n.ends_with(".zip")),
        "{:?}",
        listing(work.path())
    );

    // A directory that holds something is not a restore's target.
    let used = work.path().join("used");
    std::fs::create_dir(&used).expect("a directory");
    std::fs::write(used.join("notes.txt"), "mine").expect("a file");
    let said = refused(
        &ecliptic(&[
            "admin",
            "restore",
            path(&archive),
            "--data-dir",
            path(&used),
        ])
        .await,
    );
    assert!(said.contains("is not empty"), "{said}");
    assert_eq!(listing(&used), ["notes.txt"]);
    assert_eq!(
        std::fs::read_to_string(used.join("notes.txt")).expect("kept"),
        "mine"
    );

    // A database that holds data, or another program's tables, is not a move's target.
    let database = common::database::fresh_postgres();
    let move_to = |database: String| {
        let data_dir = data_dir.clone();
        async move { ecliptic(&["admin", "move-to", &database, "--data-dir", &data_dir]).await }
    };
    succeeded(&move_to(database.clone()).await);
    let said = refused(&move_to(database.clone()).await);
    assert!(
        said.contains("the target database is not empty: table accounts holds 1 row(s)"),
        "{said}"
    );
    assert_eq!(
        query_count(&database, "SELECT COUNT(*) FROM accounts").await,
        1
    );
    let other = common::database::fresh_postgres();
    let (url, _) = (other.clone(), ());
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .batch_execute("CREATE TABLE invoices (id BIGINT)")
            .expect("a table");
    })
    .await
    .expect("the table's thread");
    let said = refused(&move_to(other.clone()).await);
    assert!(
        said.contains("tables that are not this server's (invoices)"),
        "{said}"
    );
    // A node on PostgreSQL is backed up with PostgreSQL's tools.
    let pg_backup = work.path().join("pg.zip");
    let said =
        refused(&ecliptic(&["admin", "backup", path(&pg_backup), "--database", &database]).await);
    assert!(said.contains("back it up with pg_dump"), "{said}");
    assert!(!pg_backup.exists());
    let tables = query_count(
        &other,
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()",
    )
    .await;
    assert_eq!(tables, 1, "only the other program's table");
}
