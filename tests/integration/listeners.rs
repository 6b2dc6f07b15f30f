//! Listener behaviour shared by every protocol: framing errors, limits, timeouts, health
//! and metrics.

use crate::common;

use common::{LineClient, TestServer, assert_line_error};

#[tokio::test]
async fn ndjson_bad_lines_get_code_100_and_the_connection_survives() {
    let server = TestServer::start_with(|c| c.limits.ndjson_line_bytes = 1024).await;
    for addr in [server.handle().dev_tcp_addr, server.handle().lobby_tcp_addr] {
        let mut client = LineClient::connect(addr).await;
        client.send_raw(b"{not json\n").await;
        let message = assert_line_error(&client.recv().await.unwrap(), 100);
        assert!(message.contains("invalid JSON"), "{message}");

        client.send_raw(b"[1,2,3]\n").await;
        assert_line_error(&client.recv().await.unwrap(), 100);

        client.send_raw(b"{\"type\": 7, \"payload\": {}}\n").await;
        assert_line_error(&client.recv().await.unwrap(), 100);

        client
            .send_raw(b"{\"type\": \"X\", \"payload\": {}, \"bogus\": 1}\n")
            .await;
        assert_line_error(&client.recv().await.unwrap(), 100);

        client.send_raw(b"\xff\xfe{}\n").await;
        let message = assert_line_error(&client.recv().await.unwrap(), 100);
        assert!(message.contains("UTF-8"), "{message}");

        let mut long = vec![b'x'; 5000];
        long.push(b'\n');
        client.send_raw(&long).await;
        let message = assert_line_error(&client.recv().await.unwrap(), 100);
        assert!(message.contains("longer than 1024"), "{message}");

        // Blank lines are ignored; \r\n works; an unknown type is 100 and names it.
        client
            .send_raw(b"\n\r\n{\"type\": \"FLY_TO_MOON\", \"payload\": {}}\r\n")
            .await;
        let message = assert_line_error(&client.recv().await.unwrap(), 100);
        assert!(message.contains("FLY_TO_MOON"), "{message}");
    }
}

#[tokio::test]
async fn unauthenticated_connections_are_closed_after_the_timeout() {
    let server = TestServer::start_with(|c| c.limits.unauthenticated_timeout_secs = 1).await;
    let mut client = LineClient::connect(server.handle().lobby_tcp_addr).await;
    let reply = client.recv().await.expect("a goodbye line");
    assert_line_error(&reply, 101);
    assert!(client.recv().await.is_none(), "then the connection closes");
}

#[tokio::test]
async fn connections_per_address_are_limited_in_each_protocols_shape() {
    let server = TestServer::start_with(|c| c.limits.connections_per_ip = 2).await;
    let first = LineClient::connect(server.handle().lobby_tcp_addr).await;
    let mut second = LineClient::connect(server.handle().dev_tcp_addr).await;
    // The second is admitted: it answers.
    second.send_raw(b"{\n").await;
    assert_line_error(&second.recv().await.unwrap(), 100);

    let mut third = LineClient::connect(server.handle().lobby_tcp_addr).await;
    let message = assert_line_error(&third.recv().await.unwrap(), 105);
    assert!(message.contains("too many connections"), "{message}");
    assert!(third.recv().await.is_none());

    let response = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);

    // Closing one frees its slot.
    drop(first);
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let response = reqwest::Client::new()
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn healthz_and_metrics() {
    let server = TestServer::start().await;
    let (status, health) = server.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert!(health["tick"].is_u64());
    // Something to count.
    let mut client = LineClient::connect(server.handle().lobby_tcp_addr).await;
    client.send_raw(b"{\n").await;
    client.recv().await.unwrap();

    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "ecliptic_tick_duration_seconds_bucket",
        "ecliptic_tick_overruns_total",
        "ecliptic_inbox_depth",
        "ecliptic_connections{protocol=\"lobby\"} 1",
        "ecliptic_messages_in_total{protocol=\"lobby\"} 1",
        "ecliptic_messages_out_total{protocol=\"lobby\"} 1",
        "ecliptic_bytes_in_total{protocol=\"lobby\"} 2",
        "ecliptic_bytes_out_total{protocol=\"lobby\"}",
        "ecliptic_tick_p50_seconds",
        "ecliptic_tick_p99_seconds",
        "ecliptic_tick_max_seconds",
        "ecliptic_deltas_dropped_total",
        "ecliptic_store_queue_depth",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
}

#[tokio::test]
async fn unknown_paths_404_and_websocket_paths_want_an_upgrade() {
    let server = TestServer::start().await;
    let status = |path: &'static str| {
        let url = server.url(path);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/nowhere").await, 404);
    // Every WebSocket endpoint refuses a plain GET as a bad upgrade.
    for path in ["/game", "/ws/token/1", "/fs/token/1", "/raos"] {
        assert_eq!(status(path).await, 400, "{path}");
    }
    // Comms checks the token before anything else.
    assert_eq!(status("/ws").await, 401);
}
