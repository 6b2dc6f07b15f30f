//! Rate limits on RaOS requests: per connection (1004), per account, per address.

use crate::common;

use common::{TestServer, token_for};
use serde_json::{Value, json};

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_limit_get_1004() {
    let server = TestServer::start_with(|c| {
        c.raos.requests_per_second = 0.5;
        c.raos.request_burst = 3.0;
    })
    .await;
    let token = token_for(&server, "hasty").await;
    let mut raos = Raos::connect(&server).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let answer = raos.call("list_games", json!({"auth_token": token})).await;
        codes.push(answer["error_code"].as_u64().unwrap_or(0));
    }
    assert_eq!(codes[..3], [0, 0, 0], "{codes:?}");
    assert!(codes[3..].iter().all(|c| *c == 1004), "{codes:?}");

    let url = server.url("/api/v1/games");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = server
            .http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error_code"], 1004);
        }
    }
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_the_query_is_limited_by_its_account() {
    let server = TestServer::start_with(|c| {
        c.raos.requests_per_second = 0.5;
        c.raos.request_burst = 3.0;
    })
    .await;
    let token = token_for(&server, "querying").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let url = server.url(&format!("/api/v1/games?auth_token={token}"));
        statuses.push(
            server
                .http
                .get(&url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_tokens_are_limited_by_address() {
    let server = TestServer::start_with(|c| {
        c.raos.address_requests_per_second = 0.5;
        c.raos.address_request_burst = 5.0;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let response = server
            .http
            .get(server.url("/api/v1/games"))
            .bearer_auth(format!("junk-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        let body: Value = response.json().await.unwrap();
        let code = if i < 5 { 1001 } else { 1004 };
        assert_eq!(body["error_code"], code, "{body}");
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // Another address is not held back by this one's flood.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap();
    let response = elsewhere.get(server.url("/api/v1/games")).send().await;
    assert_ne!(response.unwrap().status(), 429);
}
