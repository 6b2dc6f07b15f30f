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

    let text = server.get_text("/metrics").await;
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

/// Reads from `socket` until the server closes it; fails the test after `WAIT`. While
/// waiting, `dribble` (if any) is sent one byte at a time, as a slow client would.
async fn closed_by_server(socket: &mut tokio::net::TcpStream, dribble: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut next = 0;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open after the wait"
        );
        let pace = tokio::time::sleep(std::time::Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => panic!("still open after the wait"),
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return answer,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = pace, if next < dribble.len() => {
                if socket.write_all(&dribble[next..=next]).await.is_err() {
                    return answer;
                }
                next += 1;
            }
        }
    }
}

#[tokio::test]
async fn idle_and_slow_http_clients_are_closed() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start_with(|c| c.limits.header_read_timeout_secs = 1).await;
    let addr = server.handle().http_addr;
    // Connected, silent.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    closed_by_server(&mut idle, b"").await;
    // Headers at a byte every 200 ms: the head is never finished in time.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let answer = closed_by_server(&mut slow, head).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "the slow request was never served"
    );
    // Kept alive after a request, then idle.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_by_server(&mut kept, b"").await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_rest_body_that_stalls_is_refused_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(|c| c.limits.request_body_timeout_secs = 1).await;
    let mut socket = tokio::net::TcpStream::connect(server.handle().http_addr)
        .await
        .unwrap();
    // Half of the declared body, then nothing.
    socket
        .write_all(
            b"POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 40\r\nConnection: close\r\n\r\n{\"username\": \"stall",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(common::WAIT, socket.read_to_end(&mut answer))
        .await
        .expect("an answer before the wait ran out")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error_code"], 1000);
    assert_eq!(body["error"], "the request body paused for more than 1 s");
    // Nothing was registered.
    let (status, login) = server
        .post(
            "/api/v1/auth/login",
            &serde_json::json!({"username": "stall", "password": "pw-secret"}),
        )
        .await;
    assert_eq!(
        (status, &login["error_code"]),
        (401, &1001.into()),
        "{login}"
    );
}

#[tokio::test]
async fn a_raos_socket_without_a_valid_token_is_closed_after_the_timeout() {
    let server = TestServer::start_with(|c| c.limits.unauthenticated_timeout_secs = 1).await;
    let url = format!("ws://{}/raos", server.handle().http_addr);
    let mut silent = common::ws_connect(&url).await;
    let goodbye = common::ws_next(&mut silent).await.expect("a goodbye");
    assert_eq!(goodbye["error_code"], 1001, "{goodbye}");
    assert_eq!(common::close_code(&mut silent).await, Some(1008));
    // Requests with junk tokens do not count as authenticating.
    let mut junk = common::ws_connect(&url).await;
    common::ws_send(
        &mut junk,
        &serde_json::json!({"action": "list_games", "auth_token": "junk"}),
    )
    .await;
    let refused = common::ws_next(&mut junk).await.expect("an answer");
    assert_eq!(refused["error_code"], 1001, "{refused}");
    let goodbye = common::ws_next(&mut junk).await.expect("a goodbye");
    assert!(
        goodbye["error"].as_str().unwrap().contains("closing"),
        "{goodbye}"
    );
    assert_eq!(common::close_code(&mut junk).await, Some(1008));
    // A socket that has authenticated stays.
    let token = common::token_for(&server, "settled").await;
    let mut settled = common::ws_connect(&url).await;
    common::ws_send(
        &mut settled,
        &serde_json::json!({"action": "list_games", "auth_token": token, "request_id": "a"}),
    )
    .await;
    assert_eq!(
        common::ws_next(&mut settled).await.unwrap()["success"],
        true
    );
    // Outlives the timeout: a later request is still answered.
    let mut silent_again = common::ws_connect(&url).await;
    common::ws_next(&mut silent_again)
        .await
        .expect("the timeout passed");
    common::ws_send(
        &mut settled,
        &serde_json::json!({"action": "list_games", "request_id": "b", "auth_token": token}),
    )
    .await;
    assert_eq!(
        common::ws_next(&mut settled).await.unwrap()["success"],
        true
    );
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start().await;
    let http = server.handle().http_addr;
    let token = common::token_for(&server, "garbled").await;
    let game = common::garp::dev_game(server.handle().dev_tcp_addr).await;
    let mut sockets = vec![
        common::ws_connect(&format!("ws://{http}/game")).await,
        common::ws_connect(&format!("ws://{http}/ws?token={token}")).await,
        common::ws_connect(&format!("ws://{http}/raos")).await,
    ];
    let (garp, _challenge) = common::garp::open(http, &game.api_key).await;
    sockets.push(garp);
    for mut socket in sockets {
        let bad = Frame::message(
            &b"{\"type\": \"\xff\xfe\"}"[..],
            OpCode::Data(Data::Text),
            true,
        );
        socket.send(Message::Frame(bad)).await.unwrap();
        assert_eq!(common::close_code(&mut socket).await, Some(1007));
    }
}
