//! The command-line clients for people, run as a person would, against a real server.

use crate::common;

use common::{LineClient, TestServer};
use serde_json::json;
use sha2::{Digest, Sha256};

fn ecliptic(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_upload_then_play_download() {
    let server = TestServer::start().await;
    let dev_addr = server.handle().dev_tcp_addr.to_string();
    let lobby_addr = server.handle().lobby_tcp_addr.to_string();
    let mut dev = LineClient::connect(server.handle().dev_tcp_addr).await;
    let reply = dev
        .request(
            &json!({"type": "REGISTER_DEV", "payload": {"username": "clidev", "password": "pw"}}),
        )
        .await;
    let token = reply["payload"]["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let game = dev
        .request(&json!({"type": "CREATE_GAME", "token": token, "payload":
            {"name": "Cli", "description": "", "game_type": "cli", "max_players": 2}}))
        .await;
    let game = game["payload"]["game_id"].as_str().unwrap().to_owned();
    let mut lobby = LineClient::connect(server.handle().lobby_tcp_addr).await;
    lobby
        .request(&json!({"type": "REGISTER_PLAYER", "payload": {"username": "cliplayer", "password": "pw"}}))
        .await;

    let work = tempfile::tempdir().unwrap();
    let build = work.path().join("game.zip");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&build, &content).unwrap();

    let out = ecliptic(
        &[
            "dev",
            "upload",
            "--game",
            &game,
            "--version",
            "1.2.3",
            build.to_str().unwrap(),
            "--server",
            &dev_addr,
        ],
        &[("ECLIPTIC_USER", "clidev"), ("ECLIPTIC_PASSWORD", "pw")],
    );
    assert!(out.status.success(), "{out:?}");
    let digest = hex::encode(Sha256::digest(&content));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&digest), "{stdout}");
    assert!(
        stdout.contains(&format!("uploaded {game} 1.2.3: 2.9 MiB in "))
            && stdout.contains(" MiB/s)"),
        "{stdout}"
    );

    let dir = work.path().join("downloads");
    let out = ecliptic(
        &[
            "play",
            "download",
            &game,
            "--dir",
            dir.to_str().unwrap(),
            "--server",
            &lobby_addr,
            "--user",
            "cliplayer",
            "--password",
            "pw",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let saved = dir
        .join("cliplayer")
        .join(&game)
        .join("1.2.3")
        .join("build.bin");
    assert_eq!(std::fs::read(&saved).unwrap(), content);
    assert!(
        !dir.join("cliplayer")
            .join(&game)
            .join("1.2.3.part")
            .exists()
    );

    // Clear errors, non-zero exit.
    let out = ecliptic(
        &[
            "play",
            "download",
            &game,
            "--server",
            &lobby_addr,
            "--user",
            "cliplayer",
            "--password",
            "wrong",
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid username or password") && stderr.contains("code 101"),
        "{stderr}"
    );
    let out = ecliptic(
        &[
            "dev",
            "upload",
            "--game",
            &game,
            "--version",
            "1.2.3",
            build.to_str().unwrap(),
            "--server",
            &dev_addr,
        ],
        &[("ECLIPTIC_USER", "clidev"), ("ECLIPTIC_PASSWORD", "pw")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("code 104"));
}
