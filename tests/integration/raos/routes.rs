//! Every REST route under `/api/v1`, and their JSON error shape.

use crate::common;

use std::collections::HashSet;

use base64::Engine;
use common::{TestServer, token_for};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn rest_errors_always_have_the_json_shape() {
    let server = TestServer::start().await;
    let token = token_for(&server, "shaped").await;
    let check = |status: u16, body: &Value, code: u64| {
        assert_eq!(body["success"], false, "{status} {body}");
        assert_eq!(body["error_code"], code, "{status} {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        assert!(body["timestamp"].is_string(), "{body}");
    };
    // A method the route does not take.
    let response = server
        .http
        .delete(server.url("/api/v1/auth/register"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"));
    check(405, &response.json().await.unwrap(), 1000);
    // Without a valid token, a body over 64 KiB is refused before it is read.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024));
    // (A fresh client each time: the server closes a connection whose body it refused
    // unread, and a pooled client may try to reuse it.)
    for bearer in [None, Some("junk")] {
        let mut request = reqwest::Client::new()
            .post(server.url("/api/v1/projects"))
            .header("content-type", "application/json")
            .body(big.clone());
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 413);
        check(413, &response.json().await.unwrap(), 1000);
    }
    // With one, the same body reaches the action (which judges it on its merits).
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/projects"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), 413);
    // Over even the authenticated limit: 413 in the same shape, answered from the
    // declared length alone (the body is never sent).
    let mut socket = tokio::net::TcpStream::connect(server.handle().http_addr)
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        12 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut socket, head.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let body = loop {
        let n = tokio::time::timeout(
            common::WAIT,
            tokio::io::AsyncReadExt::read(&mut socket, &mut buf),
        )
        .await
        .expect("an answer")
        .unwrap();
        assert!(
            n > 0,
            "closed without an answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && let Ok(body) = serde_json::from_str::<Value>(body)
        {
            assert!(head.starts_with("HTTP/1.1 413"), "{head}");
            break body;
        }
    };
    check(413, &body, 1000);
}

/// Calls a REST route; returns (status, body).
pub(super) async fn rest(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = server.url(&format!("/api/v1{path}"));
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server.http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rest_route() {
    rest_routes(false).await;
}

/// Every route again with an unknown query parameter, and unknown fields in every body
/// (top level and in `asset`).
#[tokio::test(flavor = "multi_thread")]
async fn every_rest_route_from_a_newer_client() {
    rest_routes(true).await;
}

pub(super) async fn rest_routes(future_fields: bool) {
    let server = TestServer::start_with(|c| c.raos.request_burst = 1000.0).await;
    let mut visited: HashSet<(&str, &str)> = HashSet::new();
    let mut call = async |method: &'static str,
                          template: &'static str,
                          path: String,
                          token: Option<&str>,
                          body: Option<Value>,
                          status: u16|
           -> Value {
        visited.insert((method, template));
        let (path, body) = if future_fields {
            let separator = if path.contains('?') { '&' } else { '?' };
            let body = body.map(|mut b| {
                common::add_future_fields(&mut b, &["asset"]);
                b
            });
            (format!("{path}{separator}client_build=v99"), body)
        } else {
            (path, body)
        };
        let (got, answer) = rest(&server, method, &path, token, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["success"], status < 300, "{method} {path}: {answer}");
        answer
    };
    for name in ["rest-user", "rest-friend"] {
        let (status, body) = server
            .post(
                "/api/v1/auth/register",
                &json!({"username": name, "password": "pw-secret"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let login = call(
        "POST",
        "/auth/login",
        "/auth/login".into(),
        None,
        Some(json!({"username": "rest-user", "password": "pw-secret"})),
        200,
    )
    .await;
    let refreshed = call(
        "POST",
        "/auth/refresh",
        "/auth/refresh".into(),
        None,
        Some(json!({"refresh_token": login["refresh_token"]})),
        200,
    )
    .await;
    let token = refreshed["access_token"].as_str().unwrap().to_owned();
    let tk = Some(token.as_str());
    call("GET", "/projects", "/projects".into(), None, None, 401).await;

    let created = call(
        "POST",
        "/projects",
        "/projects".into(),
        tk,
        Some(json!({"name": "Rest Game"})),
        201,
    )
    .await;
    let project = created["project_id"].as_str().unwrap().to_owned();
    let listed = call("GET", "/projects", "/projects".into(), tk, None, 200).await;
    assert_eq!(listed["projects"][0]["project_id"], project.as_str());
    let loaded = call(
        "GET",
        "/projects/{project_id}",
        format!("/projects/{project}"),
        tk,
        None,
        200,
    )
    .await;
    let base = loaded["project"]["modified_date"].clone();
    call(
        "PUT",
        "/projects/{project_id}",
        format!("/projects/{project}"),
        tk,
        Some(json!({"project": {"scenes": [1]}, "expected_modified_date": base})),
        200,
    )
    .await;
    // The same base again: someone (this client) saved since.
    call(
        "PUT",
        "/projects/{project_id}",
        format!("/projects/{project}"),
        tk,
        Some(json!({"project": {"scenes": [2]}, "expected_modified_date": base})),
        409,
    )
    .await;
    let added = call(
        "POST",
        "/projects/{project_id}/assets",
        format!("/projects/{project}/assets"),
        tk,
        Some(json!({"asset_name": "a.txt", "asset_type": "data", "asset_data": B64.encode("x")})),
        201,
    )
    .await;
    assert!(added["asset_id"].is_string());
    let synced = call(
        "GET",
        "/projects/{project_id}/assets",
        format!("/projects/{project}/assets"),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(synced["assets"].as_array().unwrap().len(), 1);
    let uploaded = call(
        "POST",
        "/assets",
        "/assets".into(),
        tk,
        Some(
            json!({"asset_type": "image", "filename": "p.png", "file_data": B64.encode(png(8, 8))}),
        ),
        201,
    )
    .await;
    let image = uploaded["asset_id"].as_str().unwrap().to_owned();
    let analysis = call(
        "GET",
        "/assets/{asset_id}/analysis",
        format!("/assets/{image}/analysis"),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(analysis["analysis"]["dimensions"], "8x8");
    let games = call("GET", "/games", "/games".into(), tk, None, 200).await;
    assert!(
        games["games"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["game_id"] == "ecliptic-space")
    );
    let launched = call(
        "POST",
        "/games/{game_id}/launch",
        "/games/ecliptic-space/launch".into(),
        tk,
        Some(json!({"mode": "stream"})),
        200,
    )
    .await;
    let session = launched["session_id"].as_str().unwrap().to_owned();
    // The built-in game is played on the server: there is nothing to download.
    call(
        "POST",
        "/games/{game_id}/download",
        "/games/ecliptic-space/download".into(),
        tk,
        None,
        400,
    )
    .await;
    call(
        "POST",
        "/games/sessions/{session_id}/stop",
        format!("/games/sessions/{session}/stop"),
        tk,
        None,
        200,
    )
    .await;
    call(
        "PATCH",
        "/profile",
        "/profile".into(),
        tk,
        Some(json!({"region": "us-east"})),
        200,
    )
    .await;
    let profile = call("GET", "/profile", "/profile".into(), tk, None, 200).await;
    assert_eq!(profile["profile"]["region"], "us-east");
    let achievements = call(
        "GET",
        "/achievements",
        "/achievements?game_id=ecliptic-space".into(),
        tk,
        None,
        200,
    )
    .await;
    assert!(!achievements["achievements"].as_array().unwrap().is_empty());
    call(
        "POST",
        "/friends",
        "/friends".into(),
        tk,
        Some(json!({"username": "rest-friend"})),
        201,
    )
    .await;
    let board = call(
        "GET",
        "/leaderboards/{game_id}",
        "/leaderboards/ecliptic-space?category=friends".into(),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(board["category"], "friends");
    call(
        "DELETE",
        "/friends/{username}",
        "/friends/rest-friend".into(),
        tk,
        None,
        200,
    )
    .await;
    let content = call(
        "POST",
        "/content",
        "/content".into(),
        tk,
        Some(json!({"asset_type": "post", "title": "T", "content": "C"})),
        201,
    )
    .await;
    let id = content["asset_id"].as_str().unwrap().to_owned();
    let list = call(
        "GET",
        "/content",
        "/content?content_type=post".into(),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(list["content_list"][0]["asset_id"], id.as_str());
    call(
        "PUT",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        Some(json!({"title": "T2"})),
        200,
    )
    .await;
    let fetched = call(
        "GET",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(fetched["asset"]["title"], "T2");
    // The studio client's shape: the whole asset, with dates that are the server's to set.
    call(
        "PUT",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        Some(
            json!({"asset": {"asset_id": id, "asset_type": "post", "title": "T3",
                    "content": "C3", "metadata": null, "created_date": "2020-01-01",
                    "modified_date": "2020-01-01"}}),
        ),
        200,
    )
    .await;
    let fetched = call(
        "GET",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        None,
        200,
    )
    .await;
    assert_eq!(fetched["asset"]["title"], "T3");
    assert_eq!(fetched["asset"]["content"], "C3");
    assert_ne!(fetched["asset"]["modified_date"], "2020-01-01");
    call(
        "DELETE",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        None,
        200,
    )
    .await;
    call(
        "GET",
        "/content/{asset_id}",
        format!("/content/{id}"),
        tk,
        None,
        404,
    )
    .await;
    call(
        "POST",
        "/content",
        "/content".into(),
        tk,
        Some(json!({"asset_type": "post", "title": 5, "content": "C"})),
        400,
    )
    .await;
    call("POST", "/auth/logout", "/auth/logout".into(), tk, None, 200).await;
    call("GET", "/profile", "/profile".into(), tk, None, 401).await;

    let all: HashSet<(&str, &str)> = ecliptic::net::rest::ACTION_ROUTES
        .iter()
        .map(|r| (r.method, r.path))
        .collect();
    let missed: Vec<_> = all.difference(&visited).collect();
    assert!(missed.is_empty(), "routes not called: {missed:?}");
}
