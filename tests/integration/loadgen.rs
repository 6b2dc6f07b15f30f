//! `ecliptic loadgen`: each scenario, a few clients for a few seconds, against a real
//! server; the report says what they saw.

use crate::common;

use common::TestServer;
use serde_json::Value;

async fn loadgen(server: &TestServer, scenario: &str, extra: &[&str]) -> Value {
    let http = server.handle().http_addr.to_string();
    let lobby = server.handle().lobby_tcp_addr.to_string();
    let mut args = vec![
        "loadgen",
        scenario,
        "--clients",
        "3",
        "--duration",
        "2",
        "--ramp",
        "50",
        "--http",
        &http,
        "--lobby-tcp",
        &lobby,
        "--json",
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"))
            .args(&args)
            .output()
            .expect("runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

fn check(report: &Value, scenario: &str) {
    assert_eq!(report["scenario"], scenario, "{report}");
    assert_eq!(report["clients_requested"], 3, "{report}");
    assert_eq!(report["clients_connected"], 3, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["messages_in_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["messages_out_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["bytes_in_per_client_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let latency = &report["latency"];
    assert!(latency["samples"].as_u64().unwrap() > 0, "{report}");
    let (p50, p99, max) = (
        latency["p50_ms"].as_f64().unwrap(),
        latency["p99_ms"].as_f64().unwrap(),
        latency["max_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{report}");
    // The server's tick once every client was connected, from its /metrics histogram.
    let ticks = &report["server_ticks"];
    assert!(ticks["measured_secs"].as_f64().unwrap() > 0.0, "{report}");
    let counted = ticks["ticks"].as_u64().unwrap();
    assert!(counted > 0, "{report}");
    assert!(ticks["over_25ms"].as_u64().unwrap() <= counted, "{report}");
    assert!(ticks["overruns"].is_u64(), "{report}");
    let (p50, p99) = (
        ticks["p50_ms_at_most"].as_f64(),
        ticks["p99_ms_at_most"].as_f64(),
    );
    assert!(p50.is_some() && p50 <= p99, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scenario_runs_and_reports() {
    let server = TestServer::start().await;
    check(&loadgen(&server, "game", &[]).await, "game");
    // The same players again, speaking the binary encoding (a client errors out if the
    // server does not choose it).
    check(
        &loadgen(&server, "game", &["--encoding", "binary"]).await,
        "game",
    );
    check(
        &loadgen(
            &server,
            "comms-fanout",
            &["--publishers", "1", "--publish-rate", "20"],
        )
        .await,
        "comms-fanout",
    );
    check(&loadgen(&server, "lobby", &[]).await, "lobby");
    check(&loadgen(&server, "trade", &[]).await, "trade");
    // Clients may share one account: one login, three connections.
    check(
        &loadgen(
            &server,
            "comms-fanout",
            &[
                "--publishers",
                "1",
                "--publish-rate",
                "20",
                "--accounts",
                "1",
            ],
        )
        .await,
        "comms-fanout",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_loopback_targets() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"))
        .args([
            "loadgen",
            "lobby",
            "--clients",
            "1",
            "--duration",
            "1",
            "--lobby-tcp",
            "192.0.2.1:7002",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_idle_scenario_reports_server_memory_per_connection() {
    let server = TestServer::start().await;
    let report = loadgen(&server, "idle", &[]).await;
    assert_eq!(report["scenario"], "idle", "{report}");
    assert_eq!(report["clients_connected"], 3, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let memory = &report["idle_memory"];
    assert!(
        memory["server_rss_before_bytes"].as_i64().unwrap() > 0,
        "{report}"
    );
    assert!(
        memory["server_rss_after_bytes"].as_i64().unwrap() > 0,
        "{report}"
    );
    assert!(memory["bytes_per_connection"].is_i64(), "{report}");
    assert!(report.get("server_ticks").is_none(), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_clients_cannot_connect_fails() {
    // A loopback port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"))
        .args([
            "loadgen",
            "game",
            "--clients",
            "2",
            "--duration",
            "1",
            "--json",
        ])
        .args([
            "--http",
            &closed.to_string(),
            "--lobby-tcp",
            &closed.to_string(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
    // The report still comes out, for whoever reads it.
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["clients_connected"], 0);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("0 of 2 clients connected"), "{said}");
}
