//! The server binary as an operator runs it: listening lines, signals, and crashes.

use crate::common;

use common::{ChildServer, temp_data_dir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn prints_three_listening_lines_and_answers_healthz() {
    let (_tmp, data) = temp_data_dir();
    let server = ChildServer::spawn(&data, &[]);
    let names: Vec<&str> = server
        .lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["http", "dev-tcp", "lobby-tcp"],
        "{:?}",
        server.lines
    );
    for line in &server.lines {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[0], "listening");
        let addr: std::net::SocketAddr = parts[2].parse().expect("a socket address");
        assert_ne!(addr.port(), 0, "the real port, not 0");
    }
    let health: serde_json::Value = reqwest::get(server.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["tick_hz"], 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_cleanly_within_five_seconds() {
    let (_tmp, data) = temp_data_dir();
    let server = ChildServer::spawn(&data, &[]);
    // An open, idle TCP client must not hold the shutdown up.
    let _idle = std::net::TcpStream::connect(server.lobby_tcp).unwrap();
    let (status, took) = server.signal_and_wait("TERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(took.as_secs_f64() < 5.0, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_registration_survives_sigkill() {
    let (_tmp, data) = temp_data_dir();
    let server = ChildServer::spawn(&data, &[]);
    let client = reqwest::Client::new();
    let (status, body) = common::post_json(
        &client,
        &server.url("/api/v1/auth/register"),
        &json!({"username": "durable", "password": "pw-secret"}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The reply came after COMMIT: kill -9 at once, then look for the account.
    server.kill_hard();

    let restarted = ChildServer::spawn(&data, &[]);
    let (status, body) = common::post_json(
        &client,
        &restarted.url("/api/v1/auth/login"),
        &json!({"username": "durable", "password": "pw-secret"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_profile"]["username"], "durable");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_create_user_works_on_the_data_dir() {
    let (_tmp, data) = temp_data_dir();
    let output = crate::common::database::ecliptic_command(&data)
        .args([
            "admin",
            "create-user",
            "root",
            "--password",
            "toor-toor",
            "--role",
            "admin",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("created root"), "{stdout}");
    assert!(stdout.contains("admin"), "{stdout}");

    let server = ChildServer::spawn(&data, &[]);
    let (status, body) = common::post_json(
        &reqwest::Client::new(),
        &server.url("/api/v1/auth/login"),
        &json!({"username": "root", "password": "toor-toor"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["roles"], json!(["player", "admin"]));
}

/// `food` units aboard `username`'s saved pilot.
fn food_on_disk(data: &std::path::Path, username: &str) -> i64 {
    let store = crate::common::database::open_store(data);
    let cargo: Option<String> = store
        .read_now(|conn| {
            conn.query_row(
                "SELECT p.cargo FROM pilots p JOIN accounts a ON a.user_id = p.user_id
                 WHERE a.username = ?1",
                [username],
                |row| row.get(0),
            )
        })
        .ok();
    store.close();
    let cargo: Vec<serde_json::Value> =
        serde_json::from_str(cargo.as_deref().unwrap_or("[]")).unwrap();
    cargo
        .iter()
        .filter(|c| c["commodity_id"] == "food")
        .map(|c| c["qty"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_trading_delivers_every_committed_answer_and_the_notice() {
    let (_tmp, data) = temp_data_dir();
    let client = reqwest::Client::new();
    let mut delivered = 0;
    for round in 0..3 {
        let server = ChildServer::spawn(&data, &[]);
        if round == 0 {
            let (status, body) = common::post_json(
                &client,
                &server.url("/api/v1/auth/register"),
                &json!({"username": "closing", "password": "pw-secret"}),
                None,
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
        let (_, login) = common::post_json(
            &client,
            &server.url("/api/v1/auth/login"),
            &json!({"username": "closing", "password": "pw-secret"}),
            None,
        )
        .await;
        let token = login["access_token"].as_str().unwrap().to_owned();
        let mut comms = common::ws_connect(&format!("ws://{}/ws?token={token}", server.http)).await;
        let welcome = common::ws_next(&mut comms).await.unwrap();
        assert_eq!(welcome["type"], "Status");
        common::ws_send(
            &mut comms,
            &json!({"type": "Subscribe", "data": {"topics": ["notifications"]}}),
        )
        .await;
        while common::ws_next(&mut comms).await.unwrap()["type"] != "Status" {}
        let mut game = common::GameClient::connect_to(server.http).await;
        game.login(&token).await;
        game.join("sol-1").await;
        let before = food_on_disk(&data, "closing");

        game.send(
            "trade.buy",
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
        )
        .await;
        let stopped = tokio::task::spawn_blocking(move || server.signal_and_wait("TERM"));
        let mut answered = false;
        let close = loop {
            match common::ws_next(&mut game.ws).await {
                Ok(msg) if msg["type"] == "trade.result" => answered = true,
                Ok(_) => {}
                Err(code) => break code,
            }
        };
        assert_eq!(close, Some(1001), "round {round}");
        let note = loop {
            match common::ws_next(&mut comms).await {
                Ok(msg) if msg["type"] == "Notification" => break msg,
                Ok(_) => {}
                Err(code) => panic!("round {round}: closed ({code:?}) without the notice"),
            }
        };
        assert_eq!(note["data"]["title"], "Server shutting down");
        let (status, _) = stopped.await.unwrap();
        assert!(status.success(), "{status:?}");
        let committed = food_on_disk(&data, "closing") == before + 1;
        assert_eq!(
            answered, committed,
            "round {round}: the answer must say what the disk holds"
        );
        delivered += usize::from(answered);
    }
    assert!(delivered > 0, "a trade sent before SIGTERM is answered");
}

/// The server process's resident memory, in MiB.
fn rss_mib(server: &ChildServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_without_a_token_are_refused_before_they_are_read() {
    let (_tmp, data) = temp_data_dir();
    let server = ChildServer::spawn(&data, &[]);
    let before = rss_mib(&server);
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/projects");
    let sends = (0..40).map(|_| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(vec![b' '; 10 << 20])
            .send()
    });
    // The answer may come before the client has finished sending; then the server
    // closes the connection and the client sees its write fail.
    for response in futures_util::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
    {
        assert_eq!(response.status(), 413);
    }
    let after = rss_mib(&server);
    assert!(
        after < before + 64,
        "40 bodies of 10 MiB without a token took RSS from {before} to {after} MiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_raos_messages_before_authenticating_are_not_buffered() {
    use futures_util::SinkExt;
    let (_tmp, data) = temp_data_dir();
    let server = ChildServer::spawn(&data, &[]);
    let before = rss_mib(&server);
    let url = format!("ws://{}/raos", server.http);
    let sends = (0..40).map(|_| {
        let url = url.clone();
        async move {
            let mut ws = common::ws_connect(&url).await;
            // Ten MiB of one message that would be valid JSON, from a socket with no token.
            let text = format!(
                "{{\"action\":\"list_games\",\"pad\":\"{}\"}}",
                "x".repeat(10 << 20)
            );
            // The server stops reading after its pre-authentication budget: the send fails
            // or the socket ends without an answer.
            let sent = ws
                .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
                .await;
            if sent.is_ok() {
                let answer = common::ws_next(&mut ws).await;
                assert!(answer.is_err(), "no answer to it: {answer:?}");
            }
        }
    });
    futures_util::future::join_all(sends).await;
    let after = rss_mib(&server);
    assert!(
        after < before + 64,
        "40 unauthenticated 10 MiB messages took RSS from {before} to {after} MiB"
    );
    // An authenticated socket may still send large messages.
    let client = reqwest::Client::new();
    let (status, _) = common::post_json(
        &client,
        &server.url("/api/v1/auth/register"),
        &json!({"username": "bulky", "password": "pw-secret"}),
        None,
    )
    .await;
    assert_eq!(status, 201);
    let mut ws = common::ws_connect(&url).await;
    common::ws_send(
        &mut ws,
        &json!({"action": "authenticate", "username": "bulky",
                "password_hash": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"pw-secret"))}),
    )
    .await;
    assert_eq!(common::ws_next(&mut ws).await.unwrap()["success"], true);
    let big = json!({"action": "list_games", "pad": "x".repeat(2 << 20)});
    common::ws_send(&mut ws, &big).await;
    assert_eq!(common::ws_next(&mut ws).await.unwrap()["success"], true);
}

/// Nothing waits on a stderr nobody reads: once the pipe is full, log lines are dropped,
/// and the server goes on answering and ticking.
#[tokio::test(flavor = "multi_thread")]
async fn a_stderr_nobody_reads_does_not_stop_the_server() {
    use std::io::{BufRead, BufReader};
    let (_tmp, data) = temp_data_dir();
    let mut child = crate::common::database::ecliptic_command(&data)
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--http", "127.0.0.1:0", "--dev-tcp", "127.0.0.1:0"])
        .args(["--lobby-tcp", "127.0.0.1:0", "--log", "debug"])
        .stdout(std::process::Stdio::piped())
        // Kept open and never read: a pipe holds 64 KiB, then writers would wait.
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // All three listening lines are read, and stdout kept open, so the server's own
    // writes there go through.
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening: Vec<String> = stdout.by_ref().take(3).map_while(Result::ok).collect();
    let http = listening
        .iter()
        .find_map(|l| l.strip_prefix("listening http ").map(str::to_owned))
        .expect("the http listening line");
    let client = reqwest::Client::new();
    let mut last_tick = 0;
    // Every request logs at debug (a few hundred bytes): 2,000 of them are far more than
    // the pipe holds.
    for _ in 0..2_000 {
        let health: serde_json::Value = tokio::time::timeout(
            common::WAIT,
            client.get(format!("http://{http}/healthz")).send(),
        )
        .await
        .expect("answered while stderr is full")
        .unwrap()
        .json()
        .await
        .unwrap();
        last_tick = health["tick"].as_u64().unwrap();
    }
    let later: serde_json::Value = client
        .get(format!("http://{http}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(later["tick"].as_u64().unwrap() >= last_tick);
    let _ = child.kill();
    let _ = child.wait();
    drop(stdout);
}
