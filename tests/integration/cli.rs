//! The command line, run as a person would, against a real server: a developer makes a
//! game and ships it, a player finds and downloads it, an operator manages accounts.

use crate::common;

use common::{GameClient, LineClient, TestServer, token_for};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn ecliptic(args: &[impl AsRef<str>], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"));
    cmd.args(args.iter().map(AsRef::as_ref));
    for var in [
        "ECLIPTIC_USER",
        "ECLIPTIC_PASSWORD",
        "ECLIPTIC_DATA_DIR",
        "ECLIPTIC_HTTP",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    if let Some(dir) = args.windows(2).find(|w| w[0] == "--data-dir").map(|w| w[1])
        && let Some(url) = crate::common::database::url_for(std::path::Path::new(dir))
    {
        cmd.env("ECLIPTIC_DATABASE", url);
    }
    // No terminal to ask a password on: a missing one is an error, not a hang.
    cmd.stdin(std::process::Stdio::null());
    cmd.output().expect("the binary runs")
}

/// Runs a command that must succeed; its stdout.
fn ok(args: &[impl AsRef<str> + std::fmt::Debug], env: &[(&str, &str)]) -> String {
    let out = ecliptic(args, env);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Runs a command that must fail; its stderr.
fn fails(args: &[impl AsRef<str> + std::fmt::Debug], env: &[(&str, &str)]) -> String {
    let out = ecliptic(args, env);
    assert!(!out.status.success(), "{args:?} succeeded: {out:?}");
    String::from_utf8(out.stderr).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_developer_ships_a_game_and_a_player_downloads_it() {
    let server = TestServer::start().await;
    let dev_tcp = server.handle().dev_tcp_addr.to_string();
    let lobby_tcp = server.handle().lobby_tcp_addr.to_string();
    let mut dev = LineClient::connect(server.handle().dev_tcp_addr).await;
    dev.request(
        &json!({"type": "REGISTER_DEV", "payload": {"username": "clidev", "password": "pw-secret"}}),
    )
    .await;
    let mut lobby = LineClient::connect(server.handle().lobby_tcp_addr).await;
    let registered = lobby
        .call(
            "REGISTER_PLAYER",
            None,
            json!({"username": "cliplayer", "password": "pw-secret"}),
        )
        .await;
    let player_token = registered["payload"]["session_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a session token: {registered}"))
        .to_owned();
    let developer = [
        ("ECLIPTIC_USER", "clidev"),
        ("ECLIPTIC_PASSWORD", "pw-secret"),
    ];
    let on_dev = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--dev-tcp".to_owned(), dev_tcp.clone()]);
        all
    };

    // Create the game: its id, key and secret are printed.
    let created = ok(
        &on_dev(&["dev", "create-game", "--name", "Cli Racer"]),
        &developer,
    );
    let game = created
        .lines()
        .find_map(|l| l.strip_prefix("created game "))
        .expect("the game's id")
        .to_owned();
    assert!(created.contains("GARP api key:    "), "{created}");
    assert!(created.contains("GARP api secret: "), "{created}");
    // Rooms a room game can fill by default.
    let detail = lobby
        .call(
            "GET_GAME_DETAIL",
            Some(&player_token),
            json!({"game_id": game}),
        )
        .await;
    assert_eq!(detail["payload"]["max_players"], 4, "{detail}");

    let work = tempfile::tempdir().unwrap();
    let build = work.path().join("game.zip");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&build, &content).unwrap();
    let build = build.to_str().unwrap();
    let uploaded = ok(
        &on_dev(&[
            "dev",
            "upload",
            "--game",
            &game,
            "--version",
            "1.2.3",
            build,
        ]),
        &developer,
    );
    assert!(
        uploaded.contains(&hex::encode(Sha256::digest(&content))),
        "{uploaded}"
    );
    assert!(
        uploaded.contains(&format!("uploaded {game} 1.2.3: 2.9 MiB in ")),
        "{uploaded}"
    );
    // The same version again: the server's refusal, and a non-zero exit.
    let again = fails(
        &on_dev(&[
            "dev",
            "upload",
            "--game",
            &game,
            "--version",
            "1.2.3",
            build,
        ]),
        &developer,
    );
    assert!(again.contains("code 104"), "{again}");

    let games: Value =
        serde_json::from_str(&ok(&on_dev(&["dev", "games", "--json"]), &developer)).unwrap();
    assert_eq!(games["games"][0]["game_id"], game.as_str());
    assert_eq!(games["games"][0]["status"], "ONLINE");
    assert_eq!(games["games"][0]["latest_version"], "1.2.3");
    let versions = ok(&on_dev(&["dev", "versions", &game]), &developer);
    assert!(
        versions.starts_with("1.2.3  uploaded ") && versions.trim_end().ends_with("(latest)"),
        "{versions}"
    );
    let updated = ok(
        &on_dev(&["dev", "update", &game, "--description", "laps around Sol"]),
        &developer,
    );
    assert_eq!(updated.trim(), format!("updated {game}"));

    let player = [
        ("ECLIPTIC_USER", "cliplayer"),
        ("ECLIPTIC_PASSWORD", "pw-secret"),
    ];
    let on_lobby = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--lobby-tcp".to_owned(), lobby_tcp.clone()]);
        all
    };
    let listed = |player: &[(&str, &str)]| -> Value {
        serde_json::from_str(&ok(&on_lobby(&["play", "list", "--json"]), player)).unwrap()
    };
    // The player sees its status follow the developer's.
    let status_seen = |list: &Value| -> Value {
        let games = list["games"].as_array().unwrap();
        let entry = games
            .iter()
            .find(|g| g["game_id"] == game.as_str())
            .unwrap();
        assert_eq!(entry["name"], "Cli Racer");
        entry["status"].clone()
    };
    let offline = ok(&on_dev(&["dev", "status", &game, "offline"]), &developer);
    assert_eq!(offline.trim(), format!("{game} is OFFLINE"));
    assert_eq!(status_seen(&listed(&player)), "OFFLINE");
    ok(&on_dev(&["dev", "status", &game, "online"]), &developer);
    let list = listed(&player);
    assert_eq!(status_seen(&list), "ONLINE");
    assert_eq!(list["rooms"], json!([]));
    let text = ok(&on_lobby(&["play", "list"]), &player);
    assert!(
        text.starts_with("games:\n")
            && text.contains(&format!("{game}  Cli Racer  ONLINE  latest 1.2.3")),
        "{text}"
    );

    let dir = work.path().join("downloads");
    let downloaded = ok(
        &on_lobby(&["play", "download", &game, "--dir", dir.to_str().unwrap()]),
        &player,
    );
    let saved = dir
        .join("cliplayer")
        .join(&game)
        .join("1.2.3")
        .join("build.bin");
    assert_eq!(downloaded.trim(), format!("downloaded {}", saved.display()));
    assert_eq!(std::fs::read(&saved).unwrap(), content);

    // Wrong password: the server's words and code.
    let wrong = fails(
        &on_lobby(&[
            "play",
            "download",
            &game,
            "--user",
            "cliplayer",
            "--password",
            "wrong",
        ]),
        &[],
    );
    assert!(
        wrong.contains("invalid username or password") && wrong.contains("code 101"),
        "{wrong}"
    );
    // No password and no terminal to ask on.
    let unasked = fails(&on_lobby(&["play", "list", "--user", "cliplayer"]), &[]);
    assert!(unasked.contains("no password given"), "{unasked}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_manages_accounts_from_the_command_line() {
    let server = TestServer::start().await;
    let data_dir = server.dir.path().to_str().unwrap().to_owned();
    let http = server.handle().http_addr.to_string();

    // Offline, on the data directory: the first admin.
    let created = ok(
        &[
            "admin",
            "create-user",
            "boss",
            "--role",
            "admin",
            "--data-dir",
            &data_dir,
        ],
        &[("ECLIPTIC_PASSWORD", "boss-password")],
    );
    assert!(
        created.starts_with("created boss (")
            && created.trim_end().ends_with("with roles player,admin"),
        "{created}"
    );
    // Without a data directory named, and none where the default points: refused, saying
    // where it looked; nothing is made up.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"))
        .args(["admin", "create-user", "x", "--password", "pw-secret"])
        .env_remove("ECLIPTIC_DATA_DIR")
        .env_remove("ECLIPTIC_CONFIG")
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let refused = String::from_utf8_lossy(&out.stderr);
    let looked = elsewhere.path().canonicalize().unwrap().join("./var");
    assert!(
        refused.contains(&format!(
            "no data directory: looked for {}",
            looked.display()
        )) && refused.contains("--data-dir or ECLIPTIC_DATA_DIR"),
        "{refused}"
    );
    assert!(!elsewhere.path().join("var").exists());

    // A player with a live game connection.
    let token = token_for(&server, "eve").await;
    let mut game = GameClient::connect(&server).await;
    game.login(&token).await;
    game.join("sol-1").await;

    let admin = [
        ("ECLIPTIC_USER", "boss"),
        ("ECLIPTIC_PASSWORD", "boss-password"),
        ("ECLIPTIC_HTTP", &http),
    ];
    let users = ok(&["admin", "users", "list"], &admin);
    assert_eq!(
        users,
        "boss  roles=player,admin  active  sessions=1\neve  roles=player  active  sessions=1\n"
    );
    let shown = ok(&["admin", "users", "show", "EVE"], &admin);
    assert_eq!(shown, "eve  roles=player  active  sessions=1\n");

    // Disabled: the live session ends, and no protocol lets eve in.
    let disabled = ok(&["admin", "users", "disable", "eve"], &admin);
    assert_eq!(disabled, "eve  roles=player  disabled  sessions=0\n");
    let ended = game.recv_type("error").await;
    assert_eq!(ended["payload"]["code"], "INVALID_TOKEN");
    assert_eq!(common::close_code(&mut game.ws).await, Some(1008));
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "eve", "password": "pw-secret"}),
        )
        .await;
    assert_eq!((status, &body["error_code"]), (403, &json!(1002)), "{body}");
    let mut lobby = LineClient::connect(server.handle().lobby_tcp_addr).await;
    let refused = lobby
        .request(&json!({"type": "LOGIN_PLAYER", "payload": {"username": "eve", "password": "pw-secret"}}))
        .await;
    assert_eq!(refused["code"], 102, "{refused}");
    let mut dev = LineClient::connect(server.handle().dev_tcp_addr).await;
    let refused = dev
        .request(
            &json!({"type": "LOGIN_DEV", "payload": {"username": "eve", "password": "pw-secret"}}),
        )
        .await;
    assert_eq!(refused["status"], "error", "{refused}");
    let (raos, _) = tokio_tungstenite::connect_async(format!("ws://{http}/raos"))
        .await
        .unwrap();
    let mut raos = raos;
    common::ws_send(
        &mut raos,
        &json!({"action": "authenticate", "request_id": "a", "username": "eve",
                "password_hash": hex::encode(Sha256::digest(b"pw-secret"))}),
    )
    .await;
    let answer = common::ws_next(&mut raos).await.unwrap();
    assert_eq!(
        (&answer["success"], &answer["error_code"]),
        (&json!(false), &json!(1002)),
        "{answer}"
    );
    let game_keys = common::garp::dev_game(server.handle().dev_tcp_addr).await;
    let mut garp = common::garp::Garp::connect(server.handle().http_addr, &game_keys).await;
    let answer = garp
        .call(
            ".AuthenticationRequest",
            json!({"username": "eve", "userpass": "pw-secret", "apikey": game_keys.api_key}),
        )
        .await;
    assert_eq!(common::garp::details(&answer), "User account disabled.");

    // Enabled again, with a new password and the developer role.
    assert_eq!(
        ok(&["admin", "users", "enable", "eve"], &admin),
        "eve  roles=player  active  sessions=0\n"
    );
    let reset = ok(
        &["admin", "users", "reset-password", "eve"],
        &[
            admin.as_slice(),
            &[("ECLIPTIC_NEW_PASSWORD", "new-password")],
        ]
        .concat(),
    );
    assert_eq!(reset, "eve  roles=player  active  sessions=0\n");
    let roles = ok(&["admin", "users", "set-roles", "eve", "developer"], &admin);
    assert_eq!(roles, "eve  roles=player,developer  active  sessions=0\n");
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "eve", "password": "new-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["roles"], json!(["player", "developer"]));

    // Only admins: eve is not one.
    let eve = [
        ("ECLIPTIC_USER", "eve"),
        ("ECLIPTIC_PASSWORD", "new-password"),
        ("ECLIPTIC_HTTP", &http),
    ];
    let refused = fails(&["admin", "users", "list"], &eve);
    assert!(refused.contains("code 1002"), "{refused}");
}
