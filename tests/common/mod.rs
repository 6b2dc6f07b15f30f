//! Shared harness: start a real server on port 0 in a temp dir, in-process or as a child
//! process, and talk to it over real sockets.
#![allow(dead_code)]

pub mod database;
pub mod garp;
pub mod hunt;
pub mod logs;
pub mod nats;
pub mod pg;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ecliptic::{Config, Server, ServerHandle};
use serde_json::{Value, json};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// An in-process server with its own data directory.
pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub config: Config,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(configure, |server| server).await
    }

    /// Starts with a config change and extra plugins.
    pub async fn start_full(
        configure: impl FnOnce(&mut Config),
        build: impl FnOnce(Server) -> Server,
    ) -> Self {
        Self::start_on(configure, build, true).await
    }

    /// Starts on SQLite in its data directory whatever database the suite runs on: for
    /// what only SQLite has (its backups, the move from it to PostgreSQL).
    pub async fn start_on_sqlite(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(configure, |server| server, false).await
    }

    async fn start_on(
        configure: impl FnOnce(&mut Config),
        build: impl FnOnce(Server) -> Server,
        suite_database: bool,
    ) -> Self {
        logs::install();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::ephemeral(dir.path());
        // The suite's developers register themselves, as on a studio's own server; the
        // default (closed) has its own test.
        config.auth.open_developer_registration = true;
        configure(&mut config);
        if suite_database && config.store.database.is_none() {
            config.store.database = database::url_for(&config.data_dir);
        }
        let handle = build(Server::new(config.clone()))
            .start()
            .await
            .expect("server starts");
        Self {
            handle: Some(handle),
            dir,
            http: reqwest::Client::new(),
            config,
        }
    }

    /// Shuts down cleanly and starts again on the same data directory.
    pub async fn restart(mut self) -> Self {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
        let handle = Server::new(self.config.clone())
            .start()
            .await
            .expect("server restarts");
        self.handle = Some(handle);
        self
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle().http_url())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        post_json(&self.http, &self.url(path), body, None).await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        post_json(&self.http, &self.url(path), body, Some(token)).await
    }

    /// The body of `GET path` as text (a page, or `/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        let response = self.http.get(self.url(path)).send().await;
        response
            .expect("request sent")
            .text()
            .await
            .expect("a text body")
    }

    /// The JSON body of `GET path` with a bearer token.
    pub async fn get_auth(&self, path: &str, token: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON body")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    pub async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    /// Registers `username` with `password` and logs in; returns the login response.
    pub async fn register_and_login(&self, username: &str, password: &str) -> Value {
        register_and_login_at(&self.http, &self.url(""), username, password).await
    }
}

/// Registers `username` with `password` on the server at `base` (`http://host:port`) and
/// logs in; returns the login response.
pub async fn register_and_login_at(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> Value {
    auth_call(client, base, "register", username, password, 201).await;
    login_at(client, base, username, password).await
}

/// Logs `username` in on the server at `base`; returns the login response.
pub async fn login_at(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> Value {
    auth_call(client, base, "login", username, password, 200).await
}

async fn auth_call(
    client: &reqwest::Client,
    base: &str,
    action: &str,
    username: &str,
    password: &str,
    expect: u16,
) -> Value {
    let url = format!("{base}/api/v1/auth/{action}");
    let body = json!({"username": username, "password": password});
    let (status, body) = post_json(client, &url, &body, None).await;
    assert_eq!(status, expect, "{action} {username}: {body}");
    body
}

pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    remember_secrets(body);
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.expect("JSON body");
    remember_secrets(&answer);
    (status, answer)
}

/// Passwords sent and tokens received, which no log line may show (see [`logs`]).
pub fn remember_secrets(message: &Value) {
    for holder in [message, &message["payload"]] {
        for key in [
            "password",
            "access_token",
            "refresh_token",
            "session_token",
            "token",
        ] {
            if let Some(secret) = holder[key].as_str() {
                logs::remember_secret(secret);
            }
        }
    }
}

/// Asserts the raos failure shape and returns its message.
pub fn assert_failure(body: &Value, code: u64) -> String {
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["error_code"], json!(code), "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    body["error"].as_str().expect("error message").to_owned()
}

/// The server binary, run as a child process (for signals and crashes).
pub struct ChildServer {
    pub child: Child,
    pub http: SocketAddr,
    pub dev_tcp: SocketAddr,
    pub lobby_tcp: SocketAddr,
    pub lines: Vec<String>,
    /// Reads the server's log (JSON lines at debug), checks each for secrets and passes
    /// warnings and errors on to the test's stderr.
    stderr: Option<std::thread::JoinHandle<()>>,
    /// Every log line so far, and a signal for each new one.
    log: std::sync::Arc<(std::sync::Mutex<Vec<String>>, std::sync::Condvar)>,
}

impl ChildServer {
    /// Starts `ecliptic serve` on port 0 in `data_dir` and reads its `listening` lines.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_program(Path::new(env!("CARGO_BIN_EXE_ecliptic")), data_dir, extra)
    }

    /// An example's binary, built first if it is missing or stale: `cargo test` builds
    /// the examples, but a narrower run (`cargo test --test integration`) does not.
    pub fn example(name: &str) -> PathBuf {
        let deps = std::env::current_exe().expect("the test binary's path");
        let profile = deps
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        let mut cargo = Command::new(env!("CARGO"));
        // What `cargo test` sets for test binaries would make this build's fingerprints
        // differ from a plain `cargo build`'s, and rebuild the crate every time.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_for_tests = key.starts_with("CARGO_")
                && !matches!(&*key, "CARGO_HOME" | "CARGO_TARGET_DIR")
                || key == "LD_LIBRARY_PATH";
            if set_for_tests {
                cargo.env_remove(&*key);
            }
        }
        let built = cargo
            .args(["build", "--quiet", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(built.success(), "building the example {name}");
        profile.join("examples").join(name)
    }

    /// [`ChildServer::spawn`] with environment variables set for the server.
    pub fn spawn_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ecliptic"));
        for (key, value) in env {
            command.env(key, value);
        }
        Self::spawn_command(command, data_dir, &[])
    }

    /// Starts `program serve` (the stock binary or a modded one) as [`ChildServer::spawn`].
    pub fn spawn_program(program: &Path, data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_command(Command::new(program), data_dir, extra)
    }

    fn spawn_command(mut command: Command, data_dir: &Path, extra: &[&str]) -> Self {
        // As for in-process servers: developers may register themselves.
        command.env("ECLIPTIC_AUTH__OPEN_DEVELOPER_REGISTRATION", "true");
        let named = command
            .get_envs()
            .any(|(key, _)| key == "ECLIPTIC_DATABASE");
        if let Some(url) = database::url_for(data_dir).filter(|_| !named) {
            command.env("ECLIPTIC_DATABASE", url);
        }
        let mut child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", "127.0.0.1:0", "--dev-tcp", "127.0.0.1:0"])
            .args(["--lobby-tcp", "127.0.0.1:0"])
            .args([
                "--log",
                "ecliptic=debug,tower_http=debug,info",
                "--log-format",
                "json",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server binary starts");
        let pipe = child.stderr.take().expect("stderr piped");
        let log =
            std::sync::Arc::new((std::sync::Mutex::new(Vec::new()), std::sync::Condvar::new()));
        let kept = log.clone();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                logs::check_line(&line);
                kept.0.lock().expect("log").push(line.clone());
                kept.1.notify_all();
                if line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#) {
                    eprintln!("{line}");
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        while lines.len() < 3 {
            let line = rx
                .recv_timeout(WAIT)
                .expect("the server prints its listening lines");
            lines.push(line);
        }
        let addr = |name: &str| -> SocketAddr {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("listening {name} ")))
                .unwrap_or_else(|| panic!("no listening line for {name} in {lines:?}"))
                .parse()
                .expect("address parses")
        };
        Self {
            http: addr("http"),
            dev_tcp: addr("dev-tcp"),
            lobby_tcp: addr("lobby-tcp"),
            child,
            lines,
            stderr: Some(stderr),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The server's log lines so far, each a JSON object.
    pub fn log_lines(&self) -> Vec<Value> {
        self.log
            .0
            .lock()
            .expect("log")
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The first log line whose `message` is `message`, waiting (up to `WAIT`) for the
    /// server to write it.
    pub fn wait_log(&self, message: &str) -> Value {
        let needle = format!(
            r#""message":{}"#,
            serde_json::to_string(message).expect("string")
        );
        let (lines, written) = &*self.log;
        let lines = written
            .wait_timeout_while(lines.lock().expect("log"), WAIT, |lines| {
                !lines.iter().any(|l| l.contains(&needle))
            })
            .expect("log")
            .0;
        let line = lines
            .iter()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no {message:?} in the log"));
        serde_json::from_str(line).expect("a JSON line")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal and waits for the exit status, failing after `WAIT`.
    pub fn signal_and_wait(mut self, signal: &str) -> (std::process::ExitStatus, Duration) {
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < WAIT,
                "server did not exit after {signal}"
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.stderr.take() {
            let _ = reader.join();
        }
        if !std::thread::panicking() {
            logs::assert_no_leaks();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            logs::assert_no_leaks();
        }
    }
}

pub fn temp_data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    (dir, path)
}

/// A store-lobby-tcp.md client: one JSON object per line, over any byte stream.
pub struct LineClient<S> {
    reader: tokio::io::BufReader<tokio::io::ReadHalf<S>>,
    writer: tokio::io::WriteHalf<S>,
}

impl LineClient<tokio::net::TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        Self::over(stream)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite> LineClient<S> {
    pub fn over(stream: S) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        Self {
            reader: tokio::io::BufReader::new(reader),
            writer,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await.expect("write");
        self.writer.flush().await.expect("flush");
    }

    pub async fn send(&mut self, request: &Value) {
        let mut line = serde_json::to_vec(request).expect("encode");
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// The next line as JSON; `None` at end of stream. Fails the test after `WAIT`.
    pub async fn recv(&mut self) -> Option<Value> {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("a line within the wait")
            .ok()?;
        if read == 0 {
            return None;
        }
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}")))
    }

    pub async fn request(&mut self, request: &Value) -> Value {
        remember_secrets(request);
        self.send(request).await;
        let reply = self.recv().await.expect("a reply");
        remember_secrets(&reply);
        reply
    }

    /// Sends a store-lobby request (`token` in the envelope when given) and returns its
    /// reply: the next line without a `type`, since pushes may arrive at any time.
    pub async fn call(&mut self, kind: &str, token: Option<&str>, payload: Value) -> Value {
        let mut request = json!({"type": kind, "payload": payload});
        if let Some(token) = token {
            request["token"] = json!(token);
        }
        self.send(&request).await;
        loop {
            let line = self.recv().await.expect("a reply");
            if line.get("type").is_none() {
                return line;
            }
        }
    }
}

/// Asserts the store-lobby error shape and returns its message.
pub fn assert_line_error(reply: &Value, code: u64) -> String {
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["code"], json!(code), "{reply}");
    assert_eq!(reply["payload"], json!({}), "{reply}");
    reply["message"].as_str().expect("message").to_owned()
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `url`, failing the test after `WAIT`.
pub async fn ws_connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect within the wait")
        .expect("WebSocket handshake");
    ws
}

/// The next text message as JSON, or the close frame's code, within `WAIT`.
pub async fn ws_next(ws: &mut Ws) -> Result<Value, Option<u16>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within the wait");
        match next {
            Some(Ok(Message::Text(text))) => {
                return Ok(
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {text}: {e}"))
                );
            }
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// Sends `msg` as a text frame.
pub async fn ws_send(ws: &mut Ws, msg: &Value) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        msg.to_string().into(),
    ))
    .await
    .expect("send");
}

/// Reads until the server closes; returns its close code.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        if let Err(code) = ws_next(ws).await {
            return code;
        }
    }
}

/// Entity `id` in a `world.snapshot` or `world.delta` message's `field` list.
pub fn entity<'a>(snapshot_or_delta: &'a Value, field: &str, id: &str) -> Option<&'a Value> {
    snapshot_or_delta["payload"][field]
        .as_array()?
        .iter()
        .find(|e| e["id"] == id)
}

/// How far apart two entity updates place their entity.
pub fn distance(a: &Value, b: &Value) -> f64 {
    let at = |e: &Value, f: &str| e[f].as_f64().unwrap_or_else(|| panic!("{f} in {e}"));
    (at(a, "x") - at(b, "x")).hypot(at(a, "y") - at(b, "y"))
}

/// A realtime-game.md client.
pub struct GameClient {
    pub ws: Ws,
    seq: u64,
    /// Adds fields from a newer client release to every message and its payload, which
    /// the server must ignore.
    pub future_fields: bool,
}

/// Adds a field this server does not know to `message`, and to each of its object members
/// named in `nested`, as a client one release ahead would.
pub fn add_future_fields(message: &mut Value, nested: &[&str]) {
    let extra = json!({"added_in": "v99", "flags": [1, "two", null]});
    for name in nested {
        if let Some(inner) = message.get_mut(*name).filter(|v| v.is_object()) {
            inner["client_hint"] = extra.clone();
        }
    }
    message["client_build"] = extra;
}

impl GameClient {
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_to(server.handle().http_addr).await
    }

    /// Connects to the server whose HTTP listener is `http`.
    pub async fn connect_to(http: SocketAddr) -> Self {
        let url = format!("ws://{http}/game");
        Self {
            ws: ws_connect(&url).await,
            seq: 0,
            future_fields: false,
        }
    }

    pub async fn send(&mut self, kind: &str, payload: Value) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        self.send_seq(kind, seq, payload).await;
        seq
    }

    pub async fn send_seq(&mut self, kind: &str, seq: u64, payload: Value) {
        let mut frame =
            json!({"type": kind, "seq": seq, "ts": 1_700_000_000_000u64, "payload": payload});
        if self.future_fields {
            add_future_fields(&mut frame, &["payload"]);
        }
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next message (any type); panics on close.
    pub async fn recv(&mut self) -> Value {
        let msg = ws_next(&mut self.ws)
            .await
            .unwrap_or_else(|code| panic!("connection closed ({code:?})"));
        assert!(msg["seq"].is_u64() && msg["ts"].is_i64(), "envelope: {msg}");
        msg
    }

    /// The next message of type `kind`, skipping others (deltas, snapshots, events).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {kind} within the wait"
            );
            let msg = self.recv().await;
            if msg["type"] == kind {
                return msg;
            }
        }
    }

    /// The next message that is not a delta or snapshot.
    pub async fn recv_reply(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reply within the wait"
            );
            let msg = self.recv().await;
            let kind = msg["type"].as_str().unwrap_or("");
            if kind != "world.delta" && kind != "world.snapshot" && kind != "combat.event" {
                return msg;
            }
        }
    }

    pub async fn login(&mut self, token: &str) -> Value {
        self.send("auth.login", json!({"token": token, "protocol_version": 1}))
            .await;
        let reply = self.recv_reply().await;
        assert_eq!(reply["type"], "auth.ok", "{reply}");
        reply
    }

    /// Joins and returns (`session.joined`, first `world.snapshot`).
    pub async fn join(&mut self, system_id: &str) -> (Value, Value) {
        self.send("session.join_system", json!({"system_id": system_id}))
            .await;
        let joined = self.recv_reply().await;
        assert_eq!(joined["type"], "session.joined", "{joined}");
        let snapshot = self.recv().await;
        assert_eq!(
            snapshot["type"], "world.snapshot",
            "the snapshot follows the join"
        );
        (joined, snapshot)
    }

    pub async fn input(&mut self, thrust: f64, turn: f64, fire: bool, dock: bool) -> u64 {
        self.send(
            "input.command",
            json!({"thrust": thrust, "turn": turn, "fire_primary": fire, "dock_request": dock}),
        )
        .await
    }
}

/// Registers `name` and returns an access token.
pub async fn token_for(server: &TestServer, name: &str) -> String {
    let login = server.register_and_login(name, "pw-secret").await;
    login["access_token"].as_str().expect("token").to_owned()
}

/// An access token for an account that exists already (with the suite's password).
pub async fn token_for_existing(server: &TestServer, name: &str) -> String {
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            &json!({"username": name, "password": "pw-secret"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A copy of `data/` in `dir`, changed by `edit` (file name → JSON), for tests that need
/// their own game world.
pub fn game_data_copy(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, Value>),
) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let mut files = std::collections::BTreeMap::new();
    for name in ["commodities.json", "ships.json", "rules.json"] {
        let text = std::fs::read_to_string(source.join(name)).expect("data file");
        files.insert(
            name.to_owned(),
            serde_json::from_str(&text).expect("data JSON"),
        );
    }
    for entry in std::fs::read_dir(source.join("systems")).expect("systems dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("system file");
        let name = format!("systems/{}", path.file_name().unwrap().to_string_lossy());
        files.insert(name, serde_json::from_str(&text).expect("system JSON"));
    }
    edit(&mut files);
    std::fs::create_dir_all(dir.join("systems")).expect("mkdir");
    for (name, value) in files {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(&value).unwrap()).expect("write");
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite> LineClient<S> {
    /// The next line, which may be a push.
    pub async fn recv_or_push(&mut self) -> Value {
        self.recv().await.expect("a line")
    }

    /// The next push of `kind`, passing over other pushes.
    pub async fn recv_push(&mut self, kind: &str) -> Value {
        loop {
            let line = self.recv_or_push().await;
            if line["type"] == kind {
                return line;
            }
        }
    }
}

/// Creates an admin account on `server`'s data directory with the CLI, as an operator
/// would, and logs it in; returns its access token.
pub async fn admin_token(server: &TestServer, username: &str, password: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ecliptic"));
    if let Some(url) = &server.config.store.database {
        command.env("ECLIPTIC_DATABASE", url);
    }
    let out = command
        .args(["admin", "create-user", username, "--password", password])
        .args(["--role", "admin", "--data-dir"])
        .arg(server.dir.path())
        .output()
        .expect("ecliptic runs");
    assert!(out.status.success(), "{out:?}");
    let grant = login_at(&server.http, &server.url(""), username, password).await;
    grant["access_token"].as_str().expect("token").to_owned()
}

/// A store-lobby connection to `addr` signed in by `kind` (`REGISTER_PLAYER`,
/// `LOGIN_PLAYER`, `REGISTER_DEV`, `LOGIN_DEV`) as `name` with the suite's password:
/// the connection and its session token.
pub async fn line_session(
    addr: SocketAddr,
    kind: &str,
    name: &str,
) -> (LineClient<tokio::net::TcpStream>, String) {
    let mut client = LineClient::connect(addr).await;
    let reply = client
        .call(
            kind,
            None,
            json!({"username": name, "password": "pw-secret"}),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{kind} {name}: {reply}");
    let token = reply["payload"]["session_token"]
        .as_str()
        .expect("a session token")
        .to_owned();
    (client, token)
}
