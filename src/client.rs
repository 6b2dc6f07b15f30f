//! Clients for people: `ecliptic dev upload` and `ecliptic play download`, speaking
//! store-lobby-tcp.md like any other client would.

use std::path::{Path, PathBuf};

use crate::protocol::store;
use base64::Engine;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Chunks in flight at once during an upload.
const WINDOW: usize = 16;

/// A store-lobby-tcp.md connection.
pub struct LineClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pub token: Option<String>,
}

/// A refusal from the server, as the user should see it.
#[derive(Debug, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct ServerError {
    pub code: u64,
    pub message: String,
}

impl LineClient {
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, reader),
            writer,
            token: None,
        })
    }

    pub async fn send(&mut self, kind: &str, payload: &impl Serialize) -> anyhow::Result<()> {
        let line = store::request_line(kind, self.token.as_deref(), payload)?;
        self.writer.write_all(&line).await?;
        Ok(())
    }

    /// Sends one `UPLOAD_CHUNK`, its bytes encoded straight into the line.
    pub async fn send_upload_chunk(
        &mut self,
        upload_id: &str,
        seq: usize,
        piece: &[u8],
    ) -> anyhow::Result<()> {
        let line = store::upload_chunk_line(self.token.as_deref(), upload_id, seq, piece);
        self.writer.write_all(&line).await?;
        Ok(())
    }

    /// The next line from the server.
    pub async fn recv(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            anyhow::bail!("the server closed the connection");
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// The next reply (pushes, which carry a `type`, are skipped); errors become `Err`.
    pub async fn reply(&mut self) -> anyhow::Result<Value> {
        loop {
            let line = self.recv().await?;
            if line.get("type").is_some() {
                continue;
            }
            if line["status"] != "ok" {
                return Err(ServerError {
                    code: line["code"].as_u64().unwrap_or(0),
                    message: line["message"]
                        .as_str()
                        .unwrap_or("unknown error")
                        .to_owned(),
                }
                .into());
            }
            return Ok(line["payload"].clone());
        }
    }

    pub async fn request(&mut self, kind: &str, payload: &impl Serialize) -> anyhow::Result<Value> {
        self.send(kind, payload).await?;
        self.reply().await
    }

    /// Logs in (`LOGIN_DEV` or `LOGIN_PLAYER`) and keeps the token.
    pub async fn login(
        &mut self,
        kind: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let credentials = store::Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let reply = self.request(kind, &credentials).await?;
        self.token = reply["session_token"].as_str().map(str::to_owned);
        Ok(())
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// What `upload` reports.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The published SHA-256, as the server computed it.
    pub checksum: String,
    pub size_bytes: u64,
    /// From `UPLOAD_BEGIN` to `UPLOAD_END`'s answer: the transfer itself.
    pub elapsed: std::time::Duration,
}

impl Uploaded {
    pub fn mib_per_sec(&self) -> f64 {
        self.size_bytes as f64 / (1 << 20) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The SHA-256 of `file`, read in blocks (with a progress bar: a large build takes a while).
async fn hash_file(file: &Path, size: u64) -> anyhow::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut reader = tokio::fs::File::open(file).await?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    let progress = bar(size, "checksum");
    loop {
        let n = reader.read(&mut block).await?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}

/// Uploads `file` as `version` of `game`. The file is read twice, once to hash it and
/// once to send it, a chunk at a time: memory stays flat whatever the build's size.
pub async fn upload(
    server: &str,
    username: &str,
    password: &str,
    game: &str,
    version: &str,
    file: &Path,
) -> anyhow::Result<Uploaded> {
    let cannot_read = |e: std::io::Error| anyhow::anyhow!("cannot read {}: {e}", file.display());
    let size = tokio::fs::metadata(file).await.map_err(cannot_read)?.len();
    let checksum = hash_file(file, size)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut client = LineClient::connect(server).await?;
    client.login("LOGIN_DEV", username, password).await?;
    let started = std::time::Instant::now();
    let begin = client
        .request(
            "UPLOAD_BEGIN",
            &store::UploadBegin {
                game_id: game.to_owned(),
                version: version.to_owned(),
                size_bytes: size,
                checksum: Some(checksum.clone()),
            },
        )
        .await?;
    let upload_id = begin["upload_id"].as_str().unwrap_or_default().to_owned();
    let chunk = begin["chunk_size"].as_u64().unwrap_or(4096).max(1) as usize;
    let progress = bar(size, "upload");
    let mut reader = tokio::fs::File::open(file).await.map_err(cannot_read)?;
    let mut piece = vec![0u8; chunk];
    // Sizes of the chunks sent and not yet acknowledged, oldest first.
    let mut in_flight = std::collections::VecDeque::with_capacity(WINDOW);
    let mut seq = 0;
    loop {
        let n = read_full(&mut reader, &mut piece)
            .await
            .map_err(cannot_read)?;
        if n == 0 {
            break;
        }
        client
            .send_upload_chunk(&upload_id, seq, &piece[..n])
            .await?;
        seq += 1;
        in_flight.push_back(n as u64);
        if in_flight.len() >= WINDOW {
            client.reply().await?;
            progress.inc(in_flight.pop_front().unwrap_or(0));
        }
    }
    while let Some(n) = in_flight.pop_front() {
        client.reply().await?;
        progress.inc(n);
    }
    let end = client
        .request(
            "UPLOAD_END",
            &store::UploadRef {
                upload_id: upload_id.clone(),
            },
        )
        .await?;
    progress.finish_and_clear();
    Ok(Uploaded {
        checksum: end["checksum"].as_str().unwrap_or(&checksum).to_owned(),
        size_bytes: size,
        elapsed: started.elapsed(),
    })
}

/// Fills `buf` from `reader` unless the file ends first; returns the bytes read.
async fn read_full(reader: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Downloads `game` into `<dir>/<player>/<game>/<version>/build.bin`, through a `.part`
/// file renamed only after `DOWNLOAD_END` and a matching SHA-256. Returns the final path.
pub async fn download(
    server: &str,
    username: &str,
    password: &str,
    game: &str,
    version: Option<&str>,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let mut client = LineClient::connect(server).await?;
    client.login("LOGIN_PLAYER", username, password).await?;
    let payload = store::DownloadBegin {
        game_id: game.to_owned(),
        version: version.map(str::to_owned),
    };
    let begin = client.request("DOWNLOAD_BEGIN", &payload).await?;
    let download_id = begin["download_id"].as_str().unwrap_or_default().to_owned();
    let version = begin["version"].as_str().unwrap_or("unknown").to_owned();
    let size = begin["size_bytes"].as_u64().unwrap_or(0);
    let folder = dir.join(username).join(game);
    tokio::fs::create_dir_all(&folder).await?;
    let part = folder.join(format!("{version}.part"));
    let mut out = tokio::fs::File::create(&part).await?;
    let mut hasher = Sha256::new();
    let progress = bar(size, "download");
    let checksum = loop {
        let line = client.recv().await?;
        let body = &line["payload"];
        if body["download_id"] != download_id.as_str() {
            continue;
        }
        match line["type"].as_str() {
            Some("DOWNLOAD_CHUNK") => {
                let data = store::base64().decode(body["data_b64"].as_str().unwrap_or_default())?;
                hasher.update(&data);
                out.write_all(&data).await?;
                progress.inc(data.len() as u64);
            }
            Some("DOWNLOAD_END") => break body["checksum"].as_str().unwrap_or_default().to_owned(),
            Some("DOWNLOAD_ERROR") => {
                let _ = tokio::fs::remove_file(&part).await;
                anyhow::bail!(
                    "download failed: {}",
                    body["message"].as_str().unwrap_or("?")
                );
            }
            _ => {}
        }
    };
    out.sync_all().await?;
    drop(out);
    progress.finish_and_clear();
    let actual = hex::encode(hasher.finalize());
    if actual != checksum {
        let _ = tokio::fs::remove_file(&part).await;
        anyhow::bail!("checksum mismatch: expected {checksum}, got {actual}");
    }
    let final_dir = folder.join(&version);
    tokio::fs::create_dir_all(&final_dir).await?;
    let target = final_dir.join("build.bin");
    tokio::fs::rename(&part, &target).await?;
    Ok(target)
}

/// The admin endpoints of a running server (`/api/v1/admin`), logged in as an admin.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    /// Logs in at the server whose HTTP listener is `http` (`host:port`).
    pub async fn login(http: &str, username: &str, password: &str) -> anyhow::Result<Self> {
        let base = format!("http://{http}/api/v1");
        let client = reqwest::Client::new();
        let grant = Self::answer(
            client
                .post(format!("{base}/auth/login"))
                .json(&crate::protocol::raos::login_body(username, password)),
        )
        .await?;
        let token = grant["access_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the login answer has no access_token"))?
            .to_owned();
        Ok(Self {
            http: client,
            base,
            token,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        Self::answer(self.http.get(url).bearer_auth(&self.token)).await
    }

    pub async fn post(&self, path: &str, body: &impl Serialize) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        Self::answer(self.http.post(url).bearer_auth(&self.token).json(body)).await
    }

    /// The body of a success; a failure as its `error` message and code.
    async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() && body["success"] != false {
            return Ok(body);
        }
        Err(ServerError {
            code: body["error_code"]
                .as_u64()
                .unwrap_or(u64::from(status.as_u16())),
            message: body["error"].as_str().unwrap_or(status.as_str()).to_owned(),
        }
        .into())
    }
}
