//! Uploads across `kill -9`: a version is either wholly there or not at all.

use crate::common;

use base64::Engine;
use common::{ChildServer, LineClient, temp_data_dir};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn login(
    server: &ChildServer,
    register: bool,
) -> (LineClient<tokio::net::TcpStream>, String) {
    let kind = if register {
        "REGISTER_DEV"
    } else {
        "LOGIN_DEV"
    };
    common::line_session(server.dev_tcp, kind, "crashy").await
}

async fn versions(server: &ChildServer, game: &str) -> Vec<Value> {
    let (mut dev, token) = login(server, false).await;
    let reply = dev
        .call("LIST_VERSIONS", Some(&token), json!({"game_id": game}))
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    reply["payload"]["versions"].as_array().unwrap().clone()
}

async fn create_game(dev: &mut LineClient<TcpStream>, token: &str, name: &str) -> String {
    let payload = json!({"name": name, "description": "", "game_type": "cli", "max_players": 2});
    let reply = dev.call("CREATE_GAME", Some(token), payload).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    reply["payload"]["game_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_mid_upload_leaves_no_version() {
    let (_tmp, data) = temp_data_dir();
    let server = ChildServer::spawn(&data, &[]);
    let (mut dev, token) = login(&server, true).await;
    let game = create_game(&mut dev, &token, "Half").await;
    let begin = dev
        .call(
            "UPLOAD_BEGIN",
            Some(&token),
            json!({"game_id": game, "version": "1.0", "size_bytes": 3 * 100_000}),
        )
        .await;
    let upload_id = begin["payload"]["upload_id"].as_str().unwrap().to_owned();
    for seq in 0..2 {
        let reply = dev.call("UPLOAD_CHUNK", Some(&token),
            json!({"upload_id": upload_id, "seq": seq, "data_b64": B64.encode(vec![seq as u8; 100_000])})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    server.kill_hard();

    let restarted = ChildServer::spawn(&data, &[]);
    assert_eq!(versions(&restarted, &game).await, Vec::<Value>::new());
    assert!(!data.join("uploadedGame").join(&game).join("1.0").exists());
    let staged = std::fs::read_dir(data.join("staging"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(staged, 0, "staging files are cleared at start");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_right_after_upload_end_keeps_the_version() {
    let (_tmp, data) = temp_data_dir();
    let server = ChildServer::spawn(&data, &[]);
    let (mut dev, token) = login(&server, true).await;
    let game = create_game(&mut dev, &token, "Whole").await;
    let bytes: Vec<u8> = (0..250_000u32).map(|i| (i % 251) as u8).collect();
    let begin = dev
        .call(
            "UPLOAD_BEGIN",
            Some(&token),
            json!({"game_id": game, "version": "2.0", "size_bytes": bytes.len()}),
        )
        .await;
    let upload_id = begin["payload"]["upload_id"].as_str().unwrap().to_owned();
    for (seq, piece) in bytes.chunks(100_000).enumerate() {
        let reply = dev
            .call(
                "UPLOAD_CHUNK",
                Some(&token),
                json!({"upload_id": upload_id, "seq": seq, "data_b64": B64.encode(piece)}),
            )
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    let end = dev
        .call("UPLOAD_END", Some(&token), json!({"upload_id": upload_id}))
        .await;
    assert_eq!(end["status"], "ok", "{end}");
    server.kill_hard();

    let restarted = ChildServer::spawn(&data, &[]);
    let listed = versions(&restarted, &game).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["version"], "2.0");
    let stored = std::fs::read(
        data.join("uploadedGame")
            .join(&game)
            .join("2.0")
            .join("build.bin"),
    )
    .unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&stored)),
        hex::encode(Sha256::digest(&bytes))
    );
}
