//! store-lobby-tcp.md: the developer server and the lobby/store server over real TCP.

use crate::common;

use base64::Engine;
use common::{GameClient, LineClient, TestServer, assert_line_error};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

type Client = LineClient<TcpStream>;

/// `LineClient::call`, callable on a [`Signed`] with another token.
async fn call(client: &mut Client, kind: &str, token: Option<&str>, payload: Value) -> Value {
    client.call(kind, token, payload).await
}

/// A connection and the token of its login, which its requests carry.
struct Signed {
    client: Client,
    token: String,
}

impl Signed {
    async fn call(&mut self, kind: &str, payload: Value) -> Value {
        call(&mut self.client, kind, Some(&self.token), payload).await
    }

    /// Sends a request without waiting for its reply.
    async fn request(&mut self, kind: &str, payload: Value) {
        let request = json!({"type": kind, "token": self.token, "payload": payload});
        self.client.send(&request).await;
    }
}

impl std::ops::Deref for Signed {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Signed {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

fn ok(reply: &Value) -> &Value {
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["code"], 0, "{reply}");
    assert!(reply["message"].is_string(), "{reply}");
    &reply["payload"]
}

/// A new connection to `addr`, logged in by `kind` (a REGISTER or LOGIN) with password "pw-secret".
async fn signed_in(addr: std::net::SocketAddr, kind: &str, name: &str) -> Signed {
    let mut client = LineClient::connect(addr).await;
    let payload = json!({"username": name, "password": "pw-secret"});
    let reply = call(&mut client, kind, None, payload).await;
    let token = ok(&reply)["session_token"].as_str().unwrap().to_owned();
    Signed { client, token }
}

async fn developer(server: &TestServer, name: &str) -> Signed {
    signed_in(server.handle().dev_tcp_addr, "REGISTER_DEV", name).await
}

async fn player(server: &TestServer, name: &str) -> Signed {
    signed_in(server.handle().lobby_tcp_addr, "REGISTER_PLAYER", name).await
}

async fn create_game(dev: &mut Signed, name: &str, max_players: u32) -> String {
    let reply = dev.call(
        "CREATE_GAME",
        json!({"name": name, "description": "a test game", "game_type": "cli", "max_players": max_players}),
    )
    .await;
    let payload = ok(&reply);
    assert_eq!(payload["api_key"].as_str().unwrap().len(), 29);
    assert!(payload["api_secret"].as_str().unwrap().len() >= 32);
    payload["game_id"].as_str().unwrap().to_owned()
}

/// Uploads `bytes` as `version` in `chunk`-sized pieces; `pipelined` sends every chunk
/// before reading the acknowledgements.
async fn upload(
    dev: &mut Signed,
    game: &str,
    version: &str,
    bytes: &[u8],
    chunk: Option<usize>,
    pipelined: bool,
) -> Value {
    let checksum = hex::encode(Sha256::digest(bytes));
    let begin = dev.call(
        "UPLOAD_BEGIN",
        json!({"game_id": game, "version": version, "size_bytes": bytes.len(), "checksum": checksum}),
    )
    .await;
    let begin = ok(&begin).clone();
    let upload_id = begin["upload_id"].as_str().unwrap().to_owned();
    let chunk = chunk.unwrap_or(begin["chunk_size"].as_u64().unwrap() as usize);
    let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
    if pipelined {
        for (seq, piece) in pieces.iter().enumerate() {
            let payload =
                json!({"upload_id": upload_id, "seq": seq, "data_b64": B64.encode(piece)});
            dev.request("UPLOAD_CHUNK", payload).await;
        }
        for seq in 0..pieces.len() {
            let reply = dev.recv().await.unwrap();
            assert_eq!(ok(&reply)["seq"], seq, "replies in order");
        }
    } else {
        for (seq, piece) in pieces.iter().enumerate() {
            let reply = dev
                .call(
                    "UPLOAD_CHUNK",
                    json!({"upload_id": upload_id, "seq": seq, "data_b64": B64.encode(piece)}),
                )
                .await;
            ok(&reply);
        }
    }
    dev.call("UPLOAD_END", json!({"upload_id": upload_id}))
        .await
}

/// Downloads a game; returns (version, bytes, checksum from DOWNLOAD_END).
async fn download(
    lobby: &mut Signed,
    game: &str,
    version: Option<&str>,
) -> (String, Vec<u8>, String) {
    let mut payload = json!({"game_id": game});
    if let Some(v) = version {
        payload["version"] = json!(v);
    }
    let begin = lobby.call("DOWNLOAD_BEGIN", payload).await;
    let begin = ok(&begin).clone();
    let id = begin["download_id"].as_str().unwrap().to_owned();
    let mut bytes = Vec::new();
    let mut expect_seq = 0;
    loop {
        let line = lobby.recv().await.unwrap();
        match line["type"].as_str() {
            Some("DOWNLOAD_CHUNK") => {
                assert_eq!(line["payload"]["download_id"], id.as_str());
                assert_eq!(line["payload"]["seq"], expect_seq);
                expect_seq += 1;
                bytes.extend(
                    B64.decode(line["payload"]["data_b64"].as_str().unwrap())
                        .unwrap(),
                );
            }
            Some("DOWNLOAD_END") => {
                assert_eq!(bytes.len() as u64, begin["size_bytes"].as_u64().unwrap());
                return (
                    line["payload"]["version"].as_str().unwrap().to_owned(),
                    bytes,
                    line["payload"]["checksum"].as_str().unwrap().to_owned(),
                );
            }
            Some("DOWNLOAD_ERROR") => panic!("download failed: {line}"),
            _ => {}
        }
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn developer_commands_and_the_duplicate_login_rule() {
    let server = TestServer::start().await;
    let mut dev = developer(&server, "studio").await;
    let game = create_game(&mut dev, "Snake", 4).await;

    // A newer login ends the older token: its next request gets 105.
    let mut second = signed_in(server.handle().dev_tcp_addr, "LOGIN_DEV", "studio").await;
    let stale = dev.call("LIST_MY_GAMES", json!({})).await;
    assert_line_error(&stale, 105);

    let list = second.call("LIST_MY_GAMES", json!({})).await;
    let games = ok(&list)["games"].as_array().unwrap().clone();
    assert_eq!(games.len(), 1);
    assert_eq!(games[0]["game_id"], game.as_str());
    assert_eq!(games[0]["name"], "Snake");
    assert_eq!(games[0]["description"], "a test game");
    assert_eq!(games[0]["status"], "ONLINE");
    assert_eq!(games[0]["latest_version"], Value::Null);

    let reply = second
        .call(
            "UPDATE_GAME_META",
            json!({"game_id": game, "description": "now with walls", "max_players": 2}),
        )
        .await;
    ok(&reply);
    let reply = second
        .call(
            "SET_GAME_STATUS",
            json!({"game_id": game, "status": "OFFLINE"}),
        )
        .await;
    assert_eq!(ok(&reply)["status"], "OFFLINE");
    let list = second.call("LIST_MY_GAMES", json!({})).await;
    assert_eq!(ok(&list)["games"][0]["description"], "now with walls");
    assert_eq!(ok(&list)["games"][0]["status"], "OFFLINE");

    let data = random_bytes(10_000, 7);
    let end = upload(&mut second, &game, "1.0.0", &data, Some(4096), false).await;
    assert_eq!(ok(&end)["version"], "1.0.0");
    assert_eq!(ok(&end)["is_latest"], true);
    let end = upload(&mut second, &game, "1.1.0", &data[..100], None, true).await;
    ok(&end);
    let versions = second.call("LIST_VERSIONS", json!({"game_id": game})).await;
    let versions = ok(&versions)["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], "1.0.0");
    assert_eq!(versions[0]["is_latest"], false);
    assert_eq!(versions[1]["is_latest"], true);
    assert!(versions[1]["uploaded_at"].is_string());

    // The manifest is beside the build.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            server
                .dir
                .path()
                .join("uploadedGame")
                .join(&game)
                .join("1.0.0")
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["sha256"], hex::encode(Sha256::digest(&data)));
    assert_eq!(manifest["size_bytes"], 10_000);
    assert_eq!(manifest["uploader"], "studio");
    for field in ["game_id", "version", "uploaded_at"] {
        assert!(manifest[field].is_string(), "{field}");
    }
}

#[tokio::test]
async fn every_status_code() {
    let server = TestServer::start().await;
    let mut dev = developer(&server, "coder").await;
    let game = create_game(&mut dev, "Pong", 2).await;

    // 100: unknown type, malformed payloads, extra fields.
    assert_line_error(&dev.call("LAUNCH_MISSILES", json!({})).await, 100);
    assert_line_error(&dev.call("CREATE_GAME", json!({"name": "x"})).await, 100);
    assert_line_error(&dev.call("LIST_MY_GAMES", json!({"extra": 1})).await, 100);
    assert_line_error(
        &dev.call(
            "SET_GAME_STATUS",
            json!({"game_id": game, "status": "MAYBE"}),
        )
        .await,
        100,
    );
    assert_line_error(
        &dev.call(
            "CREATE_GAME",
            json!({"name": "x", "description": "", "game_type": "cli", "max_players": 0}),
        )
        .await,
        100,
    );
    // 101: no token, a forged token.
    assert_line_error(&call(&mut dev, "LIST_MY_GAMES", None, json!({})).await, 101);
    assert_line_error(
        &call(
            &mut dev,
            "LIST_MY_GAMES",
            Some("forged.token.here"),
            json!({}),
        )
        .await,
        101,
    );
    assert_line_error(
        &call(
            &mut dev,
            "LOGIN_DEV",
            None,
            json!({"username": "coder", "password": "nope"}),
        )
        .await,
        101,
    );
    // 102: someone else's game; a player at the developer server.
    let mut rival = developer(&server, "rival").await;
    assert_line_error(
        &rival
            .call(
                "SET_GAME_STATUS",
                json!({"game_id": game, "status": "OFFLINE"}),
            )
            .await,
        102,
    );
    assert_line_error(
        &rival
            .call(
                "UPLOAD_BEGIN",
                json!({"game_id": game, "version": "1", "size_bytes": 1}),
            )
            .await,
        102,
    );
    player(&server, "gamer").await;
    let mut as_player = LineClient::connect(server.handle().dev_tcp_addr).await;
    assert_line_error(
        &call(
            &mut as_player,
            "LOGIN_DEV",
            None,
            json!({"username": "gamer", "password": "pw-secret"}),
        )
        .await,
        102,
    );
    // The refusal costs the connection nothing: the next request is answered on its own
    // merits (no "session was ended"), and a developer may still log in on it.
    let forged = call(
        &mut as_player,
        "LIST_MY_GAMES",
        Some("forged.token.here"),
        json!({}),
    )
    .await;
    assert_eq!(assert_line_error(&forged, 101), "invalid token", "{forged}");
    drop(developer(&server, "builder").await);
    let welcome = call(
        &mut as_player,
        "LOGIN_DEV",
        None,
        json!({"username": "builder", "password": "pw-secret"}),
    )
    .await;
    assert_eq!(welcome["status"], "ok", "{welcome}");
    // 103: unknown game.
    assert_line_error(
        &dev.call("LIST_VERSIONS", json!({"game_id": "no-such-game"}))
            .await,
        103,
    );
    // 104: duplicate username, duplicate version.
    let mut again = LineClient::connect(server.handle().dev_tcp_addr).await;
    assert_line_error(
        &call(
            &mut again,
            "REGISTER_DEV",
            None,
            json!({"username": "CODER", "password": "x-password"}),
        )
        .await,
        104,
    );
    ok(&upload(&mut dev, &game, "1.0", b"hello", None, false).await);
    assert_line_error(
        &dev.call(
            "UPLOAD_BEGIN",
            json!({"game_id": game, "version": "1.0", "size_bytes": 5}),
        )
        .await,
        104,
    );
    // 105: a chunk without BEGIN; END before all bytes.
    assert_line_error(
        &dev.call(
            "UPLOAD_CHUNK",
            json!({"upload_id": "nope", "seq": 0, "data_b64": "aGk="}),
        )
        .await,
        105,
    );
    let begin = dev
        .call(
            "UPLOAD_BEGIN",
            json!({"game_id": game, "version": "2.0", "size_bytes": 10}),
        )
        .await;
    let upload_id = ok(&begin)["upload_id"].as_str().unwrap().to_owned();
    ok(&dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 0, "data_b64": B64.encode(b"12345")}),
        )
        .await);
    assert_line_error(
        &dev.call("UPLOAD_END", json!({"upload_id": upload_id}))
            .await,
        105,
    );
    // 120: a skipped seq and a changed retry; an identical retry is acknowledged again.
    let gap = dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 2, "data_b64": B64.encode(b"67890")}),
        )
        .await;
    assert!(assert_line_error(&gap, 120).contains("expected seq 1"));
    let changed = dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 0, "data_b64": B64.encode(b"XXXXX")}),
        )
        .await;
    assert_line_error(&changed, 120);
    // Not base64: refused, nothing changes (the retry below is still recognised).
    let garbled = dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 1, "data_b64": "not base64!"}),
        )
        .await;
    assert!(assert_line_error(&garbled, 100).contains("not base64"));
    let retry = dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 0, "data_b64": B64.encode(b"12345")}),
        )
        .await;
    assert_eq!(ok(&retry)["received_bytes"], 5);
    // Over the size: refused, nothing changes.
    let past = dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 1, "data_b64": B64.encode(b"123456789")}),
        )
        .await;
    assert_line_error(&past, 100);
    ok(&dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 1, "data_b64": B64.encode(b"67890")}),
        )
        .await);
    ok(&dev
        .call("UPLOAD_END", json!({"upload_id": upload_id}))
        .await);
    // 121: a checksum that does not match; nothing is published.
    let begin = dev
        .call(
            "UPLOAD_BEGIN",
            json!({"game_id": game, "version": "3.0", "size_bytes": 3, "checksum": "0".repeat(64)}),
        )
        .await;
    let upload_id = ok(&begin)["upload_id"].as_str().unwrap().to_owned();
    ok(&dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 0, "data_b64": B64.encode(b"abc")}),
        )
        .await);
    assert_line_error(
        &dev.call("UPLOAD_END", json!({"upload_id": upload_id}))
            .await,
        121,
    );
    assert!(
        !server
            .dir
            .path()
            .join("uploadedGame")
            .join(&game)
            .join("3.0")
            .exists()
    );
    let versions = dev.call("LIST_VERSIONS", json!({"game_id": game})).await;
    assert_eq!(ok(&versions)["versions"].as_array().unwrap().len(), 2);
    // A chunk larger than chunk_size.
    let begin = dev
        .call(
            "UPLOAD_BEGIN",
            json!({"game_id": game, "version": "4.0", "size_bytes": 2_000_000}),
        )
        .await;
    let begin = ok(&begin).clone();
    let too_big = vec![0u8; begin["chunk_size"].as_u64().unwrap() as usize + 1];
    let reply = dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": begin["upload_id"], "seq": 0, "data_b64": B64.encode(&too_big)}),
        )
        .await;
    assert!(assert_line_error(&reply, 100).contains("chunk_size"));
    ok(&dev
        .call("CANCEL_UPLOAD", json!({"upload_id": begin["upload_id"]}))
        .await);
    // Over the maximum size: refused at BEGIN.
    let reply = dev
        .call(
            "UPLOAD_BEGIN",
            json!({"game_id": game, "version": "5.0", "size_bytes": 1u64 << 40}),
        )
        .await;
    assert_line_error(&reply, 100);
}

#[tokio::test]
async fn path_traversal_writes_nothing_outside_the_data_dir() {
    // The data dir sits inside a private directory, so anything written beside it shows.
    let server = TestServer::start_with(|c| c.data_dir = c.data_dir.join("data")).await;
    let mut dev = developer(&server, "sneaky").await;
    let game = create_game(&mut dev, "Escape", 1).await;
    let outside = server.dir.path().to_owned();
    for version in [
        "../../evil",
        "..",
        "a/b",
        "a\\b",
        "/tmp/evil",
        "x\u{0}y",
        ".hidden",
    ] {
        let reply = dev
            .call(
                "UPLOAD_BEGIN",
                json!({"game_id": game, "version": version, "size_bytes": 1}),
            )
            .await;
        let message = assert_line_error(&reply, 100);
        assert!(
            message.contains("invalid version"),
            "{version:?}: {message}"
        );
    }
    for game_id in ["../..", "x/../../y", "/etc"] {
        let reply = dev
            .call(
                "UPLOAD_BEGIN",
                json!({"game_id": game_id, "version": "1", "size_bytes": 1}),
            )
            .await;
        assert!(assert_line_error(&reply, 100).contains("invalid game_id"));
    }
    let mut lobby = player(&server, "downloader").await;
    let reply = lobby
        .call(
            "DOWNLOAD_BEGIN",
            json!({"game_id": game, "version": "../../../etc/passwd"}),
        )
        .await;
    assert_line_error(&reply, 100);
    let beside: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, ["data"], "nothing written beside the data dir");
    assert!(!std::path::Path::new("/tmp/evil").exists());
}

#[tokio::test]
async fn fifty_mib_round_trip_pipelined_and_not() {
    let server = TestServer::start().await;
    let mut dev = developer(&server, "bigfiles").await;
    let game = create_game(&mut dev, "Huge", 8).await;
    let data = random_bytes(50 << 20, 99);
    let digest = hex::encode(Sha256::digest(&data));
    ok(&upload(&mut dev, &game, "1.0.0", &data, None, true).await);
    ok(&upload(&mut dev, &game, "1.0.1", &data, None, false).await);
    let mut lobby = player(&server, "fetcher").await;
    for version in [Some("1.0.0"), None] {
        let (got_version, bytes, checksum) = download(&mut lobby, &game, version).await;
        assert_eq!(got_version, version.unwrap_or("1.0.1"));
        assert_eq!(checksum, digest);
        assert!(bytes == data, "identical bytes");
    }
}

#[tokio::test]
async fn lobby_catalog_reviews_and_presence() {
    let server = TestServer::start().await;
    let mut dev = developer(&server, "maker").await;
    let game = create_game(&mut dev, "Chess", 2).await;
    ok(&upload(&mut dev, &game, "0.9", b"pieces", None, false).await);

    let mut watcher = player(&server, "watcher").await;
    let mut alice = player(&server, "alice").await;
    // The watcher is told alice arrived.
    let push = loop {
        let line = watcher.recv().await.unwrap();
        if line["type"] == "PLAYER_PRESENCE" {
            break line;
        }
    };
    assert_eq!(push["payload"]["online"], json!(["alice"]));

    let games = alice.call("LIST_GAMES", json!({})).await;
    let games = ok(&games)["games"].as_array().unwrap().clone();
    let space = games
        .iter()
        .find(|g| g["game_id"] == "ecliptic-space")
        .expect("the space game is listed");
    assert_eq!(space["status"], "ONLINE");
    assert!(space["latest_version"].is_string());
    let chess = games
        .iter()
        .find(|g| g["game_id"] == game.as_str())
        .unwrap();
    assert_eq!(chess["latest_version"], "0.9");
    assert_eq!(chess["avg_score"], Value::Null);

    ok(&alice
        .call(
            "ADD_REVIEW",
            json!({"game_id": game, "score": 2, "comment": "meh"}),
        )
        .await);
    ok(&alice
        .call(
            "ADD_REVIEW",
            json!({"game_id": game, "score": 4, "comment": "grew on me"}),
        )
        .await);
    ok(&watcher
        .call(
            "ADD_REVIEW",
            json!({"game_id": game, "score": 5, "comment": "great"}),
        )
        .await);
    assert_line_error(
        &alice
            .call(
                "ADD_REVIEW",
                json!({"game_id": game, "score": 6, "comment": "x"}),
            )
            .await,
        100,
    );
    let reviews = alice.call("LIST_REVIEWS", json!({"game_id": game})).await;
    let reviews = ok(&reviews)["reviews"].as_array().unwrap().clone();
    assert_eq!(
        reviews.len(),
        2,
        "one review per player: the new one replaced the old"
    );
    let mine = reviews.iter().find(|r| r["player"] == "alice").unwrap();
    assert_eq!(mine["score"], 4);
    assert_eq!(mine["comment"], "grew on me");
    assert!(mine["created_at"].is_string());

    let detail = alice
        .call("GET_GAME_DETAIL", json!({"game_id": game}))
        .await;
    let detail = ok(&detail);
    assert_eq!(detail["avg_score"], 4.5);
    assert_eq!(detail["game_type"], "cli");
    assert_eq!(detail["max_players"], 2);
    assert_eq!(detail["reviews_sample"].as_array().unwrap().len(), 2);
    assert_eq!(detail["description"], "a test game");

    let latest = alice.call("LATEST_VERSION", json!({"game_id": game})).await;
    assert_eq!(ok(&latest)["version"], "0.9");
    assert_eq!(ok(&latest)["size_bytes"], 6);
    assert_eq!(
        ok(&latest)["checksum"],
        hex::encode(Sha256::digest(b"pieces"))
    );

    let players = alice.call("LIST_PLAYERS", json!({})).await;
    assert_eq!(ok(&players)["online_players"], json!(["alice", "watcher"]));
    drop(watcher);
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let players = alice.call("LIST_PLAYERS", json!({})).await;
        if ok(&players)["online_players"] == json!(["alice"]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "watcher never left");
    }
    // A lobby token does not open the developer server, and vice versa.
    assert_line_error(
        &call(&mut dev, "LIST_MY_GAMES", Some(&alice.token), json!({})).await,
        101,
    );
    assert_line_error(
        &call(&mut alice, "LIST_GAMES", Some(&dev.token), json!({})).await,
        101,
    );
    assert_line_error(
        &alice
            .call("GET_GAME_DETAIL", json!({"game_id": "nope"}))
            .await,
        103,
    );
}

#[tokio::test]
async fn rooms_from_creation_to_a_game_client_in_the_instance() {
    let server = TestServer::start().await;
    let mut dev = developer(&server, "host-dev").await;
    let duel = create_game(&mut dev, "Duel", 2).await;
    ok(&upload(&mut dev, &duel, "1.0", b"duel", None, false).await);
    let mut host = player(&server, "hostess").await;
    let mut guest = player(&server, "guest").await;
    let mut third = player(&server, "third").await;

    let created = host.call("CREATE_ROOM", json!({"game_id": duel})).await;
    let room_id = ok(&created)["room_id"].as_str().unwrap().to_owned();
    assert_eq!(ok(&created)["version"], "1.0");
    let joined = guest.call("JOIN_ROOM", json!({"room_id": room_id})).await;
    assert_eq!(ok(&joined)["room_id"], room_id.as_str());
    // Full (max_players 2): 105. Unknown room: 103. Only the host starts: 102.
    assert_line_error(
        &third.call("JOIN_ROOM", json!({"room_id": room_id})).await,
        105,
    );
    assert_line_error(
        &third
            .call("JOIN_ROOM", json!({"room_id": "room-nope"}))
            .await,
        103,
    );
    assert_line_error(
        &guest.call("START_ROOM", json!({"room_id": room_id})).await,
        102,
    );

    let rooms = third.call("LIST_ROOMS", json!({})).await;
    let room = ok(&rooms)["rooms"][0].clone();
    assert_eq!(
        room,
        json!({"room_id": room_id, "game_id": duel, "version": "1.0", "host": "hostess",
        "players": ["hostess", "guest"], "status": "WAITING"})
    );

    // An observer that only listens.
    let mut observer = player(&server, "observer").await;
    // The host leaves: the guest becomes host.
    ok(&host.call("LEAVE_ROOM", json!({"room_id": room_id})).await);
    let rooms = third.call("LIST_ROOMS", json!({})).await;
    assert_eq!(ok(&rooms)["rooms"][0]["host"], "guest");
    // The observer saw the room change.
    let update = loop {
        let line = observer.recv_or_push().await;
        if line["type"] == "ROOM_UPDATED" {
            break line;
        }
    };
    assert_eq!(update["payload"]["room"]["room_id"], room_id.as_str());
    assert_eq!(update["payload"]["room"]["host"], "guest");
    assert_eq!(update["status"], "ok");

    // An offline game takes no new rooms: 105.
    ok(&dev
        .call(
            "SET_GAME_STATUS",
            json!({"game_id": duel, "status": "OFFLINE"}),
        )
        .await);
    assert_line_error(
        &third.call("CREATE_ROOM", json!({"game_id": duel})).await,
        105,
    );
    assert_line_error(
        &guest.call("START_ROOM", json!({"room_id": room_id})).await,
        105,
    );
    ok(&dev
        .call(
            "SET_GAME_STATUS",
            json!({"game_id": duel, "status": "ONLINE"}),
        )
        .await);

    let started = guest.call("START_ROOM", json!({"room_id": room_id})).await;
    let started = ok(&started).clone();
    assert_eq!(started["room_id"], room_id.as_str());
    assert_eq!(started["version"], "1.0");
    assert_eq!(started["game_port"], server.handle().http_addr.port());
    assert_eq!(
        started["game_host"],
        server.handle().http_addr.ip().to_string()
    );

    // A /game client enters the room's instance by its id.
    let login = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "guest", "password": "pw-secret"}),
        )
        .await
        .1;
    let mut game = GameClient::connect(&server).await;
    game.login(login["access_token"].as_str().unwrap()).await;
    let (joined, snapshot) = game.join(&room_id).await;
    assert_eq!(joined["payload"]["system_id"], room_id.as_str());
    assert!(snapshot["payload"]["you"]["ship_id"].is_string());
    // Someone who is not in the room cannot enter its instance.
    let login = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "third", "password": "pw-secret"}),
        )
        .await
        .1;
    let mut outsider = GameClient::connect(&server).await;
    outsider
        .login(login["access_token"].as_str().unwrap())
        .await;
    outsider
        .send("session.join_system", json!({"system_id": room_id}))
        .await;
    let refused = outsider.recv_reply().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"]["code"], "NOT_IN_ROOM", "{refused}");

    // The last player leaves: the room closes.
    ok(&guest.call("LEAVE_ROOM", json!({"room_id": room_id})).await);
    let rooms = third.call("LIST_ROOMS", json!({})).await;
    assert_eq!(ok(&rooms)["rooms"], json!([]));
}

#[tokio::test]
async fn abandoned_uploads_expire_with_their_staging_files() {
    let server = TestServer::start_with(|c| c.uploads.idle_timeout_secs = 1).await;
    let mut dev = developer(&server, "quitter").await;
    let game = create_game(&mut dev, "Left", 1).await;
    let begin = dev
        .call(
            "UPLOAD_BEGIN",
            json!({"game_id": game, "version": "1", "size_bytes": 10}),
        )
        .await;
    let upload_id = ok(&begin)["upload_id"].as_str().unwrap().to_owned();
    let staging = server.dir.path().join("staging").join(&upload_id);
    assert!(staging.exists());
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while staging.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never expired"
        );
        tokio::task::yield_now().await;
    }
    let reply = dev
        .call(
            "UPLOAD_CHUNK",
            json!({"upload_id": upload_id, "seq": 0, "data_b64": "aGk="}),
        )
        .await;
    assert_line_error(&reply, 105);
    // The version is free again.
    let again = dev
        .call(
            "UPLOAD_BEGIN",
            json!({"game_id": game, "version": "1", "size_bytes": 10}),
        )
        .await;
    ok(&again);
}

#[tokio::test]
async fn login_player_and_requests_answered_while_a_download_streams() {
    let server = TestServer::start().await;
    let mut dev = developer(&server, "streamer").await;
    let game = create_game(&mut dev, "Stream", 1).await;
    let data = random_bytes(32 << 20, 3);
    ok(&upload(&mut dev, &game, "1", &data, None, true).await);
    player(&server, "reader").await;
    let mut lobby = signed_in(server.handle().lobby_tcp_addr, "LOGIN_PLAYER", "reader").await;
    assert_line_error(
        &call(
            &mut lobby,
            "LOGIN_PLAYER",
            None,
            json!({"username": "reader", "password": "bad"}),
        )
        .await,
        101,
    );

    lobby
        .request("DOWNLOAD_BEGIN", json!({"game_id": game}))
        .await;
    ok(&lobby.recv().await.unwrap());
    // Read half the chunks slowly, one per round trip through the simulation on a second
    // connection, so the server has queued all the download it is going to before the next
    // request arrives. That request's reply must still not wait for the rest: only the
    // chunks already in the socket's buffers and the writer's short queue come first.
    let mut pacer = Signed {
        client: LineClient::connect(server.handle().lobby_tcp_addr).await,
        token: lobby.token.clone(),
    };
    for seq in 0..32 {
        let chunk = lobby.recv().await.unwrap();
        assert_eq!(chunk["type"], "DOWNLOAD_CHUNK");
        assert_eq!(chunk["payload"]["seq"], seq);
        ok(&pacer.call("LIST_PLAYERS", json!({})).await);
    }
    lobby.request("LIST_PLAYERS", json!({})).await;
    let (mut replied, mut ended) = (false, false);
    while !(replied && ended) {
        let line = lobby.recv().await.unwrap();
        match line["type"].as_str() {
            Some("DOWNLOAD_END") => ended = true,
            None => {
                assert_eq!(ok(&line)["online_players"], json!(["reader"]));
                assert!(!ended, "the reply waited for the whole download");
                replied = true;
            }
            _ => {}
        }
    }
}

/// Files this process (the in-process server) holds open under `dir`.
fn open_files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[tokio::test]
async fn open_uploads_are_limited_per_developer_and_in_all_and_hold_no_files() {
    let server = TestServer::start_with(|c| {
        c.uploads.open_per_account = 2;
        c.uploads.open_total = 3;
    })
    .await;
    let mut first = developer(&server, "hoarder").await;
    let game = create_game(&mut first, "Many", 1).await;
    let begin = |version: &str| json!({"game_id": game, "version": version, "size_bytes": 8});
    let a = first.call("UPLOAD_BEGIN", begin("1")).await;
    let a = ok(&a)["upload_id"].as_str().unwrap().to_owned();
    ok(&first.call("UPLOAD_BEGIN", begin("2")).await);
    let third = first.call("UPLOAD_BEGIN", begin("3")).await;
    let message = assert_line_error(&third, 105);
    assert!(message.contains("2 uploads already open"), "{message}");
    // Between chunks an upload holds no file open.
    let chunk = json!({"upload_id": a, "seq": 0, "data_b64": B64.encode(b"abcd")});
    ok(&first.call("UPLOAD_CHUNK", chunk).await);
    assert_eq!(open_files_under(&server.dir.path().join("staging")), 0);
    // Cancelling one makes room.
    ok(&first.call("CANCEL_UPLOAD", json!({"upload_id": a})).await);
    ok(&first.call("UPLOAD_BEGIN", begin("3")).await);
    // Another developer's first is the third open in all; their second waits, though
    // they have only one open.
    let mut second = developer(&server, "latecomer").await;
    let other = create_game(&mut second, "Late", 1).await;
    let theirs = |version: &str| json!({"game_id": other, "version": version, "size_bytes": 8});
    ok(&second.call("UPLOAD_BEGIN", theirs("1")).await);
    let refused = second.call("UPLOAD_BEGIN", theirs("2")).await;
    assert_line_error(&refused, 105);
}

#[tokio::test]
async fn an_admin_ends_a_room_for_everyone_in_it() {
    let server = TestServer::start().await;
    let admin = common::admin_token(&server, "root", "root-password").await;
    let mut dev = developer(&server, "end-dev").await;
    let game_id = create_game(&mut dev, "Short Match", 2).await;
    ok(&upload(&mut dev, &game_id, "1.0", b"match", None, false).await);
    let mut host = player(&server, "ender").await;
    let created = host.call("CREATE_ROOM", json!({"game_id": game_id})).await;
    let room_id = ok(&created)["room_id"].as_str().unwrap().to_owned();
    ok(&host.call("START_ROOM", json!({"room_id": room_id})).await);
    let login = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "ender", "password": "pw-secret"}),
        )
        .await
        .1;
    let mut game = GameClient::connect(&server).await;
    game.login(login["access_token"].as_str().unwrap()).await;
    game.join(&room_id).await;

    // Players may not; an unknown room is 404.
    let path = format!("/api/v1/admin/rooms/{room_id}/end");
    let (status, body) = server
        .post_auth(&path, login["access_token"].as_str().unwrap(), &json!({}))
        .await;
    assert_eq!((status, &body["error_code"]), (403, &json!(1002)), "{body}");
    let (status, body) = server
        .post_auth("/api/v1/admin/rooms/room-nope/end", &admin, &json!({}))
        .await;
    assert_eq!((status, &body["error_code"]), (404, &json!(1003)), "{body}");

    let (status, body) = server.post_auth(&path, &admin, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room_id.as_str());
    assert_eq!(body["game_id"], game_id.as_str());
    // The player in it is told, then disconnected.
    let told = game.recv_type("error").await;
    assert_eq!(told["payload"]["code"], "ROOM_ENDED");
    assert_eq!(common::close_code(&mut game.ws).await, Some(1000));
    // The lobby no longer lists it.
    let rooms = host.call("LIST_ROOMS", json!({})).await;
    assert_eq!(ok(&rooms)["rooms"], json!([]));
}
