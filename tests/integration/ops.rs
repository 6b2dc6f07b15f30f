//! What operators run the server with: readiness, and the files that ship with it.

use crate::common::{self, ChildServer, LineClient, TestServer};
use serde_json::json;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn readyz_answers_once_the_store_and_the_sim_do() {
    let server = TestServer::start().await;
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ready", "sim": "ok", "store": "ok"}));
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let server = TestServer::start_with(|c| {
        c.raos.address_requests_per_second = 1000.0;
        c.raos.address_request_burst = 1000.0;
    })
    .await;
    let (status, served) = server.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.1.0");

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, operations) in served["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(operation["summary"].is_string(), "{method} {path}");
            assert!(operation["responses"].is_object(), "{method} {path}");
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut routed: Vec<(String, String)> = ecliptic::net::rest::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    routed.sort();
    let undocumented: Vec<_> = routed.iter().filter(|r| !documented.contains(r)).collect();
    let unrouted: Vec<_> = documented.iter().filter(|d| !routed.contains(d)).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not served: {unrouted:?}"
    );

    // And the router answers each one itself: not its fallback, not 405.
    for (method, path) in &documented {
        let url = server.url(&format!("/api/v1{}", path.replace(['{', '}'], "")));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = server
            .http
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert_ne!(body["error"], "no such endpoint", "{method} {path}");
    }
    // The fallback itself, for contrast.
    let (status, body) = server.get_json("/api/v1/nope").await;
    assert_eq!((status, &body["error"]), (404, &json!("no such endpoint")));
}

/// The protocol reference's table of actions over REST is the router's.
#[test]
fn the_raos_reference_lists_every_rest_route_of_an_action() {
    let doc = include_str!("../../docs/protocols/raos.md");
    let mut documented: Vec<(String, String, String)> = doc
        .lines()
        .filter_map(|line| {
            // | `action` | `METHOD /api/v1/path` ... |
            let mut cells = line.split('|').map(str::trim).skip(1);
            let action = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            let route = cells.next()?.strip_prefix('`')?;
            let (method, rest) = route.split_once(' ')?;
            let path = rest.split(['`', '?']).next()?.strip_prefix("/api/v1")?;
            Some((action.to_owned(), method.to_owned(), path.to_owned()))
        })
        .collect();
    documented.sort();
    let mut routed: Vec<(String, String, String)> = ecliptic::net::rest::ACTION_ROUTES
        .iter()
        .map(|r| (r.action.to_owned(), r.method.to_owned(), r.path.to_owned()))
        .collect();
    routed.sort();
    assert_eq!(documented, routed);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_tell_logins_and_uploads_and_never_a_secret() {
    let (_tmp, data) = common::temp_data_dir();
    let server = ChildServer::spawn(&data, &[]);
    let http = reqwest::Client::new();
    let base = server.url("");
    let grant = common::register_and_login_at(&http, &base, "logged", "logged-password").await;
    let (status, _) = common::post_json(
        &http,
        &format!("{base}/api/v1/auth/login"),
        &json!({"username": "logged", "password": "wrong-password"}),
        None,
    )
    .await;
    assert_eq!(status, 401);

    let ok = server.wait_log("login ok");
    assert_eq!(ok["level"], "INFO");
    assert_eq!(ok["user"], "logged");
    assert_eq!(ok["ip"], "127.0.0.1");
    assert!(
        ok["timestamp"].is_string() && ok["target"].is_string(),
        "{ok}"
    );
    let failed = server.wait_log("login failed");
    assert_eq!(
        (&failed["user"], &failed["ip"]),
        (&json!("logged"), &json!("127.0.0.1"))
    );
    let registered = server.wait_log("account registered");
    assert_eq!(
        (&registered["user"], &registered["roles"]),
        (&json!("logged"), &json!("player"))
    );

    // A developer publishes a build.
    let mut dev = LineClient::connect(server.dev_tcp).await;
    let login = dev
        .request(&json!({"type": "REGISTER_DEV", "payload": {"username": "logdev", "password": "logdev-password"}}))
        .await;
    let token = login["payload"]["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let game = dev
        .request(&json!({"type": "CREATE_GAME", "token": token, "payload":
            {"name": "Logged", "description": "", "game_type": "cli", "max_players": 1}}))
        .await;
    let game = game["payload"]["game_id"].as_str().unwrap().to_owned();
    let build = b"a logged build";
    let begin = dev
        .request(&json!({"type": "UPLOAD_BEGIN", "token": token, "payload": {"game_id": game,
            "version": "1.0", "size_bytes": build.len(), "checksum": hex::encode(Sha256::digest(build))}}))
        .await;
    let upload_id = begin["payload"]["upload_id"].as_str().unwrap().to_owned();
    use base64::Engine as _;
    let chunk = base64::engine::general_purpose::STANDARD.encode(build);
    dev.request(&json!({"type": "UPLOAD_CHUNK", "token": token, "payload":
        {"upload_id": upload_id, "seq": 0, "data_b64": chunk}}))
        .await;
    let end = dev
        .request(
            &json!({"type": "UPLOAD_END", "token": token, "payload": {"upload_id": upload_id}}),
        )
        .await;
    assert_eq!(end["status"], "ok", "{end}");
    let published = server.wait_log("upload published");
    assert_eq!(published["game"], game.as_str());
    assert_eq!(published["version"], "1.0");
    assert_eq!(published["bytes"], build.len());
    assert_eq!(published["developer"], "logdev");

    // None of the passwords or tokens of this run is in any line.
    let access = grant["access_token"].as_str().unwrap();
    for line in server.log_lines() {
        let text = line.to_string();
        for secret in [
            "logged-password",
            "wrong-password",
            "logdev-password",
            access,
            &token,
        ] {
            assert!(!text.contains(secret), "{secret} logged: {text}");
        }
    }
}

/// `/metrics` once `ready` holds for it (the world's gauges refresh once a second).
async fn metrics_when(server: &TestServer, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let text = server.get_text("/metrics").await;
        if ready(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {text}"
        );
    }
}

#[tokio::test]
async fn metrics_tell_the_game_as_well_as_the_machine() {
    let server = TestServer::start().await;
    let token = common::token_for(&server, "metered").await;
    let (status, _) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": "metered", "password": "nope"}),
        )
        .await;
    assert_eq!(status, 401);
    let mut game = common::GameClient::connect(&server).await;
    game.login(&token).await;
    game.join("sol-1").await;
    // The world's gauges are set together once a second; wait for a reading after the join.
    let text = metrics_when(&server, |t| {
        t.lines()
            .any(|l| l == "ecliptic_players_online{protocol=\"game\"} 1")
            && t.lines().any(|l| l == "ecliptic_instances 2")
    })
    .await;
    for line in [
        "ecliptic_logins_total{outcome=\"ok\"} 1",
        "ecliptic_logins_total{outcome=\"failed\"} 1",
        "ecliptic_logins_total{outcome=\"throttled\"} 0",
        "ecliptic_registrations_total 1",
        &format!(
            "ecliptic_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "ecliptic_instances 2",
        "ecliptic_lobby_rooms 0",
        "ecliptic_players_online{protocol=\"comms\"} 0",
        "ecliptic_uploads_published_total 0",
        "ecliptic_wagers_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    for prefix in [
        "ecliptic_process_cpu_seconds_total ",
        "ecliptic_process_open_fds ",
        "ecliptic_process_resident_memory_bytes ",
        "ecliptic_tick_set_duration_seconds_count{set=\"replication\"} ",
        "ecliptic_tick_set_duration_seconds_count{set=\"input\"} ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "no {prefix:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn the_grafana_dashboard_charts_only_metrics_the_server_exports() {
    let server = TestServer::start().await;
    // Some series appear only once something happened: make each happen once.
    let token = common::token_for(&server, "charted").await;
    let mut game = common::GameClient::connect(&server).await;
    game.login(&token).await;
    game.join("sol-1").await;
    let text = metrics_when(&server, |t| {
        t.contains("ecliptic_tick_set_duration_seconds_bucket")
            && t.contains("ecliptic_messages_out_total")
    })
    .await;
    let exported: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana-dashboard.json")).unwrap();
    let mut charted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !word.starts_with("ecliptic_") {
                    continue;
                }
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word);
                assert!(
                    exported.contains(family),
                    "{:?} charts {word}, which /metrics does not export",
                    panel["title"]
                );
                charted += 1;
            }
        }
    }
    assert!(charted >= 20, "{charted}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_config_key_can_come_from_the_environment() {
    let (_tmp, data) = common::temp_data_dir();
    let child = |env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"));
        command.args(["serve", "--data-dir"]).arg(&data).args([
            "--http",
            "127.0.0.1:0",
            "--dev-tcp",
            "127.0.0.1:0",
            "--lobby-tcp",
            "127.0.0.1:0",
        ]);
        for (k, v) in env {
            command.env(k, v);
        }
        command
    };
    // A typo in a variable's key is an error naming it, as in the file.
    let out = child(&[("ECLIPTIC_AUTH__ACCESS_TOKEN_SECZ", "60")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("access_token_secz"), "{said}");

    // A section's key from the environment takes effect: tokens live 77 s.
    let server = ChildServer::spawn_with_env(&data, &[("ECLIPTIC_AUTH__ACCESS_TOKEN_SECS", "77")]);
    let http = reqwest::Client::new();
    let grant = common::register_and_login_at(&http, &server.url(""), "enviro", "enviro-pw").await;
    assert_eq!(grant["expires_in"], 77, "{grant}");
}

#[tokio::test]
async fn an_admin_listener_keeps_metrics_and_the_console_off_the_public_one() {
    let server = TestServer::start_with(|c| c.admin = Some(([127, 0, 0, 1], 0).into())).await;
    let admin_addr = server.handle().admin_addr.expect("an admin listener");
    let admin_url = |path: &str| format!("http://{admin_addr}{path}");
    let token = common::admin_token(&server, "ops", "ops-password").await;
    let get = |url: String, token: Option<&str>| {
        let mut request = server.http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // The public listener: the game and the API, not the operators' parts.
    assert_eq!(get(server.url("/metrics"), None).await, 404);
    assert_eq!(get(server.url("/console"), None).await, 404);
    assert_eq!(
        get(server.url("/api/v1/admin/overview"), Some(&token)).await,
        404
    );
    let (status, _) = server
        .post_auth(
            "/api/v1/notifications",
            &token,
            &json!({"level": "info", "title": "t", "message": "m"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(get(server.url("/"), None).await, 200);
    assert_eq!(get(server.url("/readyz"), None).await, 200);
    // The admin listener: those, and what the console needs to log in.
    assert_eq!(get(admin_url("/metrics"), None).await, 200);
    assert_eq!(get(admin_url("/console"), None).await, 200);
    assert_eq!(
        get(admin_url("/api/v1/admin/overview"), Some(&token)).await,
        200
    );
    let (status, grant) = common::post_json(
        &server.http,
        &admin_url("/api/v1/auth/login"),
        &json!({"username": "ops", "password": "ops-password"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{grant}");
}
