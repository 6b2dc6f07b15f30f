//! The tick keeps its rate while password hashing runs: argon2 is off the simulation
//! thread, behind a semaphore that leaves a core to it. Alone in its own test binary so no
//! other test competes for the CPU during the window.

mod common;

use std::time::Instant;

use common::TestServer;
use serde_json::{Value, json};

async fn tick(server: &TestServer) -> (u64, Instant) {
    let (status, body): (u16, Value) = server.get_json("/healthz").await;
    assert_eq!(status, 200);
    (body["tick"].as_u64().expect("tick"), Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ticks_keep_their_rate_during_fifty_concurrent_logins() {
    let server = TestServer::start_with(|c| c.auth.login_failures_per_ip = 10_000).await;
    let users: Vec<String> = (0..50).map(|i| format!("player{i:02}")).collect();
    let bodies: Vec<Value> = users
        .iter()
        .map(|name| json!({"username": name, "password": "pw-secret"}))
        .collect();
    let registrations = bodies
        .iter()
        .map(|body| server.post("/api/v1/auth/register", body));
    for (status, body) in futures_util::future::join_all(registrations).await {
        assert_eq!(status, 201, "{body}");
    }

    let (tick0, t0) = tick(&server).await;
    let logins = bodies
        .iter()
        .map(|body| server.post("/api/v1/auth/login", body));
    for (status, body) in futures_util::future::join_all(logins).await {
        assert_eq!(status, 200, "{body}");
    }
    let (tick1, t1) = tick(&server).await;

    let window = t1 - t0;
    let expected = window.as_secs_f64() * 20.0;
    let happened = (tick1 - tick0) as f64;
    assert!(
        happened >= 0.9 * expected,
        "{happened} ticks in {window:?}, expected about {expected:.1}"
    );
    // The window was long enough to mean something: 50 argon2 verifications.
    assert!(expected >= 5.0, "window too short to judge: {window:?}");
}
