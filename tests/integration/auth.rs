//! Accounts and tokens over REST (`/api/v1/auth/*`), in the raos response format.

use crate::common;

use base64::Engine;
use common::{TestServer, assert_failure};
use ecliptic::services::accounts::{Claims, TokenKeys};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn claims_of(token: &str) -> Claims {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&B64.decode(payload).expect("base64")).expect("claims")
}

#[tokio::test]
async fn register_returns_profile_and_roles() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": "Alice", "password": "s3cret-pw", "display_name": "Alice A",
                    "roles": ["player", "developer"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], json!(true));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let profile = &body["user_profile"];
    assert_eq!(profile["username"], "Alice");
    assert_eq!(profile["display_name"], "Alice A");
    uuid::Uuid::parse_str(profile["user_id"].as_str().unwrap()).expect("uuid user_id");
    assert_eq!(body["roles"], json!(["player", "developer"]));
    assert_eq!(profile.as_object().unwrap().len(), 3, "{profile}");
}

#[tokio::test]
async fn duplicate_username_is_a_conflict_whatever_the_case() {
    let server = TestServer::start().await;
    let first = json!({"username": "bob", "password": "pw-first"});
    assert_eq!(server.post("/api/v1/auth/register", &first).await.0, 201);
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": "BOB", "password": "pw-second"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let message = assert_failure(&body, 1000);
    assert!(message.contains("taken"), "{message}");
}

#[tokio::test]
async fn admin_role_cannot_be_self_assigned() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": "mallory", "password": "pw-secret", "roles": ["admin"]}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_failure(&body, 1002);
}

#[tokio::test]
async fn login_with_password_and_with_password_hash() {
    let server = TestServer::start().await;
    let with_password = server.register_and_login("carol", "correct horse").await;
    assert_eq!(with_password["success"], json!(true));
    assert_eq!(with_password["expires_in"], json!(3600));
    assert_eq!(with_password["roles"], json!(["player"]));
    assert_eq!(with_password["user_profile"]["username"], "carol");
    assert!(with_password["refresh_token"].as_str().unwrap().len() >= 43);
    let claims = claims_of(with_password["access_token"].as_str().unwrap());
    assert_eq!(claims.iss, "ecliptic");
    assert_eq!(claims.exp - claims.iat, 3600);

    let hash = hex::encode(Sha256::digest(b"correct horse")).to_uppercase();
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "CAROL", "password_hash": hash}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["user_profile"]["user_id"],
        with_password["user_profile"]["user_id"]
    );
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let server = TestServer::start().await;
    server.register_and_login("dave", "pw-secret").await;
    let (s1, wrong) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "dave", "password": "nope"}),
        )
        .await;
    let (s2, unknown) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "nobody", "password": "nope"}),
        )
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(assert_failure(&wrong, 1001), assert_failure(&unknown, 1001));
}

#[tokio::test]
async fn refresh_rotates_and_replay_revokes_the_family() {
    let server = TestServer::start().await;
    let login = server.register_and_login("erin", "pw-secret").await;
    let first_refresh = login["refresh_token"].as_str().unwrap().to_owned();

    let (status, rotated) = server
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": first_refresh}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["success"], json!(true));
    assert_eq!(rotated["expires_in"], json!(3600));
    let second_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    let access = rotated["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(
        claims_of(&access).sid,
        claims_of(login["access_token"].as_str().unwrap()).sid,
        "a refresh stays in the same session"
    );

    // The old token is refused, and presenting it revokes the whole family and the session.
    let (status, body) = server
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": first_refresh}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(assert_failure(&body, 1001).contains("already used"));
    let (status, body) = server
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": second_refresh}),
        )
        .await;
    assert_eq!(status, 401, "the family is revoked: {body}");
    let (status, body) = server
        .post_auth("/api/v1/auth/logout", &access, &json!({}))
        .await;
    assert_eq!(status, 401, "the session is revoked: {body}");
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_succeed_at_most_once() {
    let server = TestServer::start().await;
    let login = server.register_and_login("frank", "pw-secret").await;
    let token = login["refresh_token"].clone();
    let body = json!({"refresh_token": token});
    let url = server.url("/api/v1/auth/refresh");
    let attempts = (0..8).map(|_| common::post_json(&server.http, &url, &body, None));
    let results = futures_util::future::join_all(attempts).await;
    let ok = results.iter().filter(|(status, _)| *status == 200).count();
    assert!(ok <= 1, "{results:?}");
    for (status, body) in &results {
        if *status != 200 {
            assert_eq!(*status, 401);
            assert_failure(body, 1001);
        }
    }
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let server = TestServer::start().await;
    let login = server.register_and_login("grace", "pw-secret").await;
    let access = login["access_token"].as_str().unwrap();
    let (status, body) = server
        .post_auth("/api/v1/auth/logout", access, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    let (status, body) = server
        .post_auth("/api/v1/auth/logout", access, &json!({}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_failure(&body, 1001);
    // Its refresh token died with it.
    let (status, _) = server
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 401);
    // The RaOS form: the token in the body.
    let again = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "grace", "password": "pw-secret"}),
        )
        .await
        .1;
    let (status, _) = server
        .post(
            "/api/v1/auth/logout",
            &json!({"access_token": again["access_token"]}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn expired_tampered_and_unsigned_tokens_are_refused() {
    let server = TestServer::start().await;
    let login = server.register_and_login("heidi", "pw-secret").await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    // The server's key: its data directory's, or on PostgreSQL the database's.
    let keys = match server.config.store.database {
        None => TokenKeys::load_or_create(&server.dir.path().join("jwt.key")).unwrap(),
        Some(_) => {
            let store = common::database::open_server_store(&server);
            let keys = TokenKeys::load_or_create_shared(&store).unwrap();
            store.close();
            keys
        }
    };

    // Expired: signed with the real key, live session, but past its exp.
    let mut claims = claims_of(&access);
    claims.iat -= 7200;
    claims.exp -= 7200;
    let expired = keys.sign(&claims).unwrap();
    let (status, body) = server
        .post_auth("/api/v1/auth/logout", &expired, &json!({}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(assert_failure(&body, 1001).contains("expired"));

    // Tampered: the payload changed, the signature kept.
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    let mut forged = claims_of(&access);
    forged.roles.push(ecliptic::services::accounts::Role::Admin);
    parts[1] = B64.encode(serde_json::to_vec(&forged).unwrap());
    let tampered = parts.join(".");
    let (status, body) = server
        .post_auth("/api/v1/auth/logout", &tampered, &json!({}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_failure(&body, 1001);

    // alg: none, no signature.
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{header}.{}.", access.split('.').nth(1).unwrap());
    let (status, body) = server
        .post_auth("/api/v1/auth/logout", &unsigned, &json!({}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_failure(&body, 1001);

    // Signed with another key.
    let other = TokenKeys::from_secret(&[7u8; 32])
        .sign(&claims_of(&access))
        .unwrap();
    let (status, _) = server
        .post_auth("/api/v1/auth/logout", &other, &json!({}))
        .await;
    assert_eq!(status, 401);

    // The genuine token still works.
    let (status, _) = server
        .post_auth("/api/v1/auth/logout", &access, &json!({}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_per_address() {
    let server = TestServer::start_with(|c| {
        c.auth.login_failures_per_account = 3;
        c.auth.login_failures_per_ip = 6;
    })
    .await;
    server.register_and_login("ivan", "right-password").await;
    let wrong = json!({"username": "ivan", "password": "wrong"});
    for _ in 0..3 {
        let (status, body) = server.post("/api/v1/auth/login", &wrong).await;
        assert_eq!(status, 401, "{body}");
    }
    // Now even the right password is refused until the window passes.
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "ivan", "password": "right-password"}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(assert_failure(&body, 1004).contains("retry"));

    // The address limit counts failures across accounts (3 so far from this address).
    for name in ["x1", "x2", "x3"] {
        let (status, _) = server
            .post(
                "/api/v1/auth/login",
                &json!({"username": name, "password": "pw-secret"}),
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "x4", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_failure(&body, 1004);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_logins_are_counted_when_they_start() {
    let server = TestServer::start_with(|c| c.auth.login_failures_per_account = 5).await;
    server.register_and_login("olga", "right-password").await;
    let url = server.url("/api/v1/auth/login");
    let wrong = json!({"username": "olga", "password": "wrong"});
    let attempts = (0..30).map(|_| common::post_json(&server.http, &url, &wrong, None));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    let rejected = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((rejected, throttled), (5, 25), "{statuses:?}");
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "olga", "password": "right-password"}),
        )
        .await;
    assert_eq!(
        status, 429,
        "the right password does not get through: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_bad_logins_from_one_address_does_not_hold_up_another() {
    let server = TestServer::start().await;
    server.register_and_login("patient", "pw-secret").await;
    let flooder = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let url = server.url("/api/v1/auth/login");
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..200 {
        let (flooder, url, done) = (flooder.clone(), url.clone(), done_tx.clone());
        tokio::spawn(async move {
            let wrong = json!({"username": format!("nobody{i}"), "password": "wrong"});
            let (status, _) = common::post_json(&flooder, &url, &wrong, None).await;
            let _ = done.send(status);
        });
    }
    drop(done_tx);
    // Wait until the flood is being hashed: refusals for the address's own limit come
    // back at once, while its checks queue.
    while done_rx.recv().await != Some(429) {}
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "patient", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut hashed_after = 0;
    while let Some(status) = done_rx.recv().await {
        hashed_after += usize::from(status == 401);
    }
    // 50 of the flood (the address's limit) get a password check, one at a time: most of
    // them were still waiting when the other user was let in (without the per-address
    // turn, the other user waited behind all of them).
    assert!(
        hashed_after >= 25,
        "only {hashed_after} of the flood's checks were left when the other login finished"
    );
}

#[tokio::test]
async fn malformed_bodies_are_invalid_requests() {
    let server = TestServer::start().await;
    let cases: &[(&str, &str)] = &[
        ("/api/v1/auth/register", "{not json"),
        ("/api/v1/auth/register", "[1,2]"),
        (
            "/api/v1/auth/register",
            r#"{"username": 5, "password": "pw-secret"}"#,
        ),
        ("/api/v1/auth/register", r#"{"password": "pw-secret"}"#),
        (
            "/api/v1/auth/register",
            r#"{"username": null, "password": "pw-secret"}"#,
        ),
        // Lookalikes (a Cyrillic U+0430, a full-width U+FF41), a display name that reverses text, an empty password.
        (
            "/api/v1/auth/register",
            r#"{"username": "\u0430lice", "password": "pw-secret"}"#,
        ),
        (
            "/api/v1/auth/register",
            r#"{"username": "\uff41lice", "password": "pw-secret"}"#,
        ),
        (
            "/api/v1/auth/register",
            r#"{"username": "alice", "password": "pw-secret", "display_name": "evil\u202etxt.exe"}"#,
        ),
        (
            "/api/v1/auth/register",
            r#"{"username": "alice", "password": ""}"#,
        ),
        ("/api/v1/auth/register", r#"{"username": "zed"}"#),
        (
            "/api/v1/auth/register",
            r#"{"username": "zed", "password": "pw-secret", "password_hash": "ab"}"#,
        ),
        (
            "/api/v1/auth/register",
            r#"{"username": "z", "password": "pw-secret"}"#,
        ),
        (
            "/api/v1/auth/register",
            r#"{"username": "zed", "password": "pw-secret", "roles": ["king"]}"#,
        ),
        (
            "/api/v1/auth/register",
            r#"{"username": "zed", "password_hash": "not-hex"}"#,
        ),
        (
            "/api/v1/auth/login",
            r#"{"username": "zed", "password": true}"#,
        ),
        ("/api/v1/auth/login", ""),
        ("/api/v1/auth/refresh", r#"{"refresh": "x"}"#),
        ("/api/v1/auth/logout", r#"{"access_token": 12}"#),
    ];
    for (path, body) in cases {
        let (status, reply) = server.post_raw(path, body).await;
        assert_eq!(status, 400, "{path} {body}: {reply}");
        let message = assert_failure(&reply, 1000);
        assert!(!message.is_empty());
    }
    // Nothing was half-created by the bad registrations.
    let (status, _) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": "zed", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 201);
    // And an unknown endpoint under /api/v1 answers in the same format.
    let (status, body): (u16, Value) = server.post("/api/v1/nope", &json!({})).await;
    assert_eq!(status, 404);
    assert_failure(&body, 1003);
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_secrets_are_private() {
    use std::os::unix::fs::PermissionsExt;
    // A data directory someone made open to all: the server closes it whatever the umask.
    let server = TestServer::start_with(|c| {
        let dir = c.data_dir.join("open-to-all");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        c.data_dir = dir;
    })
    .await;
    let mode =
        |path: std::path::PathBuf| std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let dir = server.config.data_dir.clone();
    assert!(dir.ends_with("open-to-all"));
    assert_eq!(mode(dir.clone()), 0o700);
    // On PostgreSQL, the database and the signing key are not kept here.
    if server.config.store.database.is_none() {
        assert_eq!(mode(dir.join("ecliptic.db")), 0o600);
        assert_eq!(mode(dir.join("jwt.key")), 0o600);
    }
}

/// A client of every protocol on one session: `/game` logged in, `/ws`, and `/raos`
/// having used the token.
struct EverySocket {
    game: common::GameClient,
    comms: common::Ws,
    raos: common::Ws,
}

impl EverySocket {
    async fn open(server: &TestServer, token: &str) -> Self {
        let http = server.handle().http_addr;
        let mut game = common::GameClient::connect(server).await;
        game.login(token).await;
        game.join("sol-1").await;
        let mut comms = common::ws_connect(&format!("ws://{http}/ws?token={token}")).await;
        assert_eq!(common::ws_next(&mut comms).await.unwrap()["type"], "Status");
        let mut raos = common::ws_connect(&format!("ws://{http}/raos")).await;
        common::ws_send(
            &mut raos,
            &json!({"action": "list_games", "auth_token": token}),
        )
        .await;
        assert_eq!(common::ws_next(&mut raos).await.unwrap()["success"], true);
        Self { game, comms, raos }
    }

    /// Each closes as the session's end says it should.
    async fn all_closed(mut self) {
        let error = self.game.recv_reply().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["payload"]["code"], "INVALID_TOKEN", "{error}");
        assert_eq!(common::close_code(&mut self.game.ws).await, Some(1008));
        assert_eq!(common::close_code(&mut self.comms).await, Some(4001));
        let failure = common::ws_next(&mut self.raos).await.unwrap();
        assert_eq!(failure["error_code"], 1001, "{failure}");
        assert_eq!(common::close_code(&mut self.raos).await, Some(1008));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_every_live_connection_of_the_session() {
    let server = TestServer::start().await;
    let login = server.register_and_login("leaver", "pw-secret").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let sockets = EverySocket::open(&server, &token).await;
    // Another session of the same account is not touched.
    let other = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "leaver", "password": "pw-secret"}),
        )
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = server.handle().http_addr;
    let mut bystander = common::ws_connect(&format!("ws://{http}/ws?token={other}")).await;
    common::ws_next(&mut bystander).await.unwrap();
    // A lobby connection on a session of its own, ended by a REST logout of its token.
    let mut lobby = common::LineClient::connect(server.handle().lobby_tcp_addr).await;
    let entered = lobby
        .call(
            "LOGIN_PLAYER",
            None,
            json!({"username": "leaver", "password": "pw-secret"}),
        )
        .await;
    let lobby_token = entered["payload"]["session_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, _) = server
        .post_auth("/api/v1/auth/logout", &token, &json!({}))
        .await;
    assert_eq!(status, 200);
    sockets.all_closed().await;
    let (status, _) = server
        .post_auth("/api/v1/auth/logout", &lobby_token, &json!({}))
        .await;
    assert_eq!(status, 200);
    loop {
        match lobby.recv().await {
            Some(line) if line["code"] == 101 => break,
            Some(_) => continue,
            None => panic!("closed without saying why"),
        }
    }
    assert!(lobby.recv().await.is_none(), "then the connection closes");
    // The bystander's session lives on.
    common::ws_send(
        &mut bystander,
        &json!({"type": "Ping", "data": {"timestamp": 1}}),
    )
    .await;
    assert_eq!(
        common::ws_next(&mut bystander).await.unwrap()["type"],
        "Pong"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_refresh_token_ends_every_live_connection_of_the_session() {
    let server = TestServer::start().await;
    let login = server.register_and_login("replayed", "pw-secret").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let sockets = EverySocket::open(&server, &token).await;
    let refresh = json!({"refresh_token": login["refresh_token"]});
    let (status, _) = server.post("/api/v1/auth/refresh", &refresh).await;
    assert_eq!(status, 200);
    let (status, _) = server.post("/api/v1/auth/refresh", &refresh).await;
    assert_eq!(status, 401, "reused");
    sockets.all_closed().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_does_not_end_a_running_game_session() {
    let server = TestServer::start_with(|c| c.auth.access_token_secs = 1).await;
    let login = server.register_and_login("lingerer", "pw-secret").await;
    let token = login["access_token"].as_str().unwrap();
    let mut game = common::GameClient::connect(&server).await;
    game.login(token).await;
    game.join("sol-1").await;
    // Three seconds of deltas: the token expires a second in; play goes on.
    for _ in 0..60 {
        game.recv_type("world.delta").await;
    }
    game.send(
        "trade.buy",
        json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
    )
    .await;
    assert_eq!(game.recv_reply().await["type"], "trade.result");
}

#[tokio::test]
async fn developer_registration_is_closed_unless_opened() {
    let server = TestServer::start_with(|c| c.auth.open_developer_registration = false).await;
    // Players register as always.
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": "plain", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Developers do not, over REST or the developer server.
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": "studio", "password": "pw-secret", "roles": ["developer"]}),
        )
        .await;
    assert_eq!((status, &body["error_code"]), (403, &json!(1002)), "{body}");
    let mut dev = common::LineClient::connect(server.handle().dev_tcp_addr).await;
    let refused = dev
        .request(
            &json!({"type": "REGISTER_DEV", "payload": {"username": "studio", "password": "pw-secret"}}),
        )
        .await;
    assert_eq!(refused["code"], 102, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("ecliptic admin create-user --role developer"),
        "{refused}"
    );
    // Nothing was made: the name is still free for an operator's account.
    let (status, _) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "studio", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn new_passwords_meet_the_policy() {
    let server = TestServer::start_with(|c| c.auth.password_min_length = 10).await;
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": "shorty", "password": "123456789"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        assert_failure(&body, 1000),
        "passwords need at least 10 characters"
    );
    let mut lobby = common::LineClient::connect(server.handle().lobby_tcp_addr).await;
    let refused = lobby
        .request(&json!({"type": "REGISTER_PLAYER", "payload": {"username": "shorty", "password": "short"}}))
        .await;
    assert_eq!(refused["code"], 100, "{refused}");
    // Nothing was made; a long enough password works (characters, not bytes, are counted).
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": "shorty", "password": "ŝŝŝŝŝŝŝŝŝŝ"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A reset is held to it too.
    let admin = common::admin_token(&server, "root", "root-password").await;
    let (status, body) = server
        .post_auth(
            "/api/v1/admin/accounts/shorty/password",
            &admin,
            &json!({"password": "short"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}
