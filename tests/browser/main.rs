//! The server's web pages in a real browser: Debian's Chromium, headless, driven by
//! Playwright (`tests/node/browser/*.mjs`) against a real server on port 0. Screenshots
//! of each page land in `target/browser-artifacts/`.
//!
//! A test binary of its own, so the frame-rate check does not share the cores with the
//! integration suite; inside it the tests take turns for the same reason.

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{GameClient, TestServer, WAIT, ws_connect, ws_next, ws_send};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("browser-artifacts")
}

/// Chromium and Playwright, installed the first time (as `.ci/run` does).
fn chromium() -> PathBuf {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            let status = std::process::Command::new(root().join(".ci/install-browser"))
                .status()
                .expect(".ci/install-browser runs");
            assert!(
                status.success(),
                "Chromium and Playwright are needed for the browser tests: see .ci/install-browser"
            );
            std::env::var_os("CHROMIUM")
                .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
        })
        .clone()
}

/// One browser test at a time: the frame-rate check needs the cores to itself.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `tests/node/browser/<script>` against `server`; fails the test if it fails.
async fn run_script(server: &TestServer, script: &str, env: &[(&str, String)]) -> String {
    let chromium = chromium();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(format!("browser/{script}"))
        .current_dir(root().join("tests/node"))
        .env("BASE_URL", server.url(""))
        .env("ARTIFACTS", artifacts())
        .env("CHROMIUM", chromium)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the browser script finishes within three minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn play_fly_trade_repair_and_chat_in_the_browser() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start().await;
    let out = run_script(&server, "game.mjs", &[]).await;
    assert!(out.contains("· done"), "{out}");
    assert!(artifacts().join("game-docked-market.png").exists());
    assert!(artifacts().join("game-bob-chat.png").exists());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_for_admins_and_shows_the_server_live() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start().await;
    common::admin_token(&server, "root", "root-password").await;
    let player = server.register_and_login("carol", "carol-password").await;
    let carol_token = player["access_token"].as_str().unwrap().to_owned();

    // The admin endpoints refuse a player outright, whatever the page does.
    let overview = server
        .http
        .get(server.url("/api/v1/admin/overview"))
        .bearer_auth(&carol_token)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 403);
    let body: Value = overview.json().await.unwrap();
    assert_eq!(body["error_code"], 1002, "{body}");

    // A player in sol-1, for the console to show.
    let mut pilot = GameClient::connect(&server).await;
    pilot.login(&carol_token).await;
    pilot.join("sol-1").await;
    let reading = tokio::spawn(async move { while ws_next(&mut pilot.ws).await.is_ok() {} });

    // A /ws client subscribed to notifications, for the one the console sends.
    let watcher = server
        .register_and_login("watcher", "watcher-password")
        .await;
    let url = format!(
        "ws://{}/ws?token={}",
        server.handle().http_addr,
        watcher["access_token"].as_str().unwrap()
    );
    let mut comms = ws_connect(&url).await;
    assert_eq!(
        ws_next(&mut comms).await.unwrap()["data"]["status"],
        "connected"
    );
    ws_send(
        &mut comms,
        &json!({"type": "Subscribe", "data": {"topics": ["notifications"]}}),
    )
    .await;
    assert_eq!(
        ws_next(&mut comms).await.unwrap()["data"]["status"],
        "subscribed"
    );

    let title = format!("Maintenance {}", uuid_like());
    run_script(
        &server,
        "console.mjs",
        &[
            ("PLAYER", "carol".into()),
            ("PLAYER_PASSWORD", "carol-password".into()),
            ("ADMIN", "root".into()),
            ("ADMIN_PASSWORD", "root-password".into()),
            ("CONNECTED_PLAYER", "carol".into()),
            ("NOTE_TITLE", title.clone()),
        ],
    )
    .await;

    let note = ws_next(&mut comms).await.unwrap();
    assert_eq!(
        note,
        json!({"type": "Notification", "data": {"level": "warning", "title": title,
               "message": "the server restarts in 10 minutes", "actions": []}})
    );
    assert!(artifacts().join("console.png").exists());
    reading.abort();
    server.shutdown().await;
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Bot `n` in sol-1: it undocks with a push, turns for a while, pushes once more (so the
/// crowd spreads out a little), then coasts to a stop near the home station and keeps
/// turning: a crowd that stays in view and changes every tick.
async fn bot(
    n: usize,
    http: std::net::SocketAddr,
    token: String,
    stop: tokio_util::sync::CancellationToken,
) {
    // The token in the handshake, as a browser may send it: auth.ok comes unasked.
    let mut ws = ws_connect(&format!("ws://{http}/game?token={token}")).await;
    let ok = ws_next(&mut ws).await.expect("auth.ok");
    assert_eq!(ok["type"], "auth.ok", "{ok}");
    ws_send(
        &mut ws,
        &json!({"type": "session.join_system", "seq": 1, "payload": {"system_id": "sol-1"}}),
    )
    .await;
    let mut seq = 1u64;
    let mut inputs = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = inputs.tick() => {
                seq += 1;
                let second_push = 3 + (n as u64 % 9);
                let thrust = if seq == 2 || seq == second_push { 0.5 } else { 0.0 };
                let turn = if n.is_multiple_of(2) { 1.0 } else { -1.0 };
                let input = json!({"type": "input.command", "seq": seq, "payload":
                    {"thrust": thrust, "turn": turn, "fire_primary": false, "dock_request": false}});
                ws_send(&mut ws, &input).await;
            }
            next = ws.next() => if next.is_none() { break },
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_game_page_keeps_50_fps_with_200_ships_in_view() {
    const SHIPS: usize = 200;
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_with(|c| {
        // Two hundred logins at once from one address.
        c.auth.hash_concurrency = 2;
        c.auth.login_failures_per_ip = 10_000;
        c.raos.address_requests_per_second = 10_000.0;
        c.raos.address_request_burst = 10_000.0;
    })
    .await;
    let http = server.handle().http_addr;
    let stop = tokio_util::sync::CancellationToken::new();
    let logins = futures_util::future::join_all((0..SHIPS).map(|n| {
        let server = &server;
        async move {
            let grant = server
                .register_and_login(&format!("bot{n}"), "bot-password")
                .await;
            grant["access_token"].as_str().unwrap().to_owned()
        }
    }))
    .await;
    let bots: Vec<_> = logins
        .into_iter()
        .enumerate()
        .map(|(n, token)| tokio::spawn(bot(n, http, token, stop.clone())))
        .collect();
    server
        .register_and_login("spectator", "spectator-password")
        .await;
    let out = run_script(
        &server,
        "fps.mjs",
        &[
            ("SHIPS", SHIPS.to_string()),
            ("PLAYER", "spectator".into()),
            ("PLAYER_PASSWORD", "spectator-password".into()),
        ],
    )
    .await;
    assert!(out.contains("· done"), "{out}");
    stop.cancel();
    for bot in bots {
        tokio::time::timeout(WAIT, bot)
            .await
            .expect("bots stop")
            .expect("a bot ran");
    }
    server.shutdown().await;
}
