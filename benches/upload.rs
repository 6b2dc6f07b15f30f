//! Upload throughput on loopback: a 32 MiB build through the developer server, in 4 KiB
//! chunks and in the server's chunk size, pipelined (a window of 16 chunks in flight) and
//! not (wait for each acknowledgement).
//!
//! `cargo bench --bench upload`

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ecliptic::client::LineClient;
use serde_json::json;

const SIZE: usize = 32 << 20;
const WINDOW: usize = 16;

async fn upload(
    client: &mut LineClient,
    game: &str,
    version: &str,
    bytes: &[u8],
    chunk: Option<usize>,
    pipelined: bool,
) {
    let begin = client
        .request(
            "UPLOAD_BEGIN",
            &json!({"game_id": game, "version": version, "size_bytes": bytes.len()}),
        )
        .await
        .expect("begin");
    let id = begin["upload_id"].as_str().expect("id").to_owned();
    let chunk = chunk.unwrap_or(begin["chunk_size"].as_u64().expect("chunk") as usize);
    let mut in_flight = 0;
    for (seq, piece) in bytes.chunks(chunk).enumerate() {
        client
            .send_upload_chunk(&id, seq, piece)
            .await
            .expect("send");
        in_flight += 1;
        if !pipelined || in_flight >= WINDOW {
            client.reply().await.expect("ack");
            in_flight -= 1;
        }
    }
    for _ in 0..in_flight {
        client.reply().await.expect("ack");
    }
    client
        .request("UPLOAD_END", &json!({"upload_id": id}))
        .await
        .expect("end");
}

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ecliptic::Config::ephemeral(dir.path());
    // The bench registers its own developer account.
    config.auth.open_developer_registration = true;
    let server = runtime
        .block_on(ecliptic::Server::new(config).start())
        .expect("server starts");
    let addr = server.dev_tcp_addr.to_string();
    let (mut client, game) = runtime.block_on(async {
        let mut client = LineClient::connect(&addr).await.expect("connect");
        let reply = client
            .request(
                "REGISTER_DEV",
                &json!({"username": "bench", "password": "bench-password"}),
            )
            .await
            .expect("register");
        client.token = reply["session_token"].as_str().map(str::to_owned);
        let game = client
            .request(
                "CREATE_GAME",
                &json!({"name": "Bench", "description": "", "game_type": "cli", "max_players": 1}),
            )
            .await
            .expect("game");
        (client, game["game_id"].as_str().expect("id").to_owned())
    });
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let versions = AtomicU64::new(0);
    let mut group = c.benchmark_group("upload_32MiB");
    group
        .sample_size(10)
        .throughput(Throughput::Bytes(SIZE as u64));
    for (name, chunk, pipelined) in [
        ("server_chunk/pipelined", None, true),
        ("server_chunk/sequential", None, false),
        ("4KiB/pipelined", Some(4096), true),
        ("4KiB/sequential", Some(4096), false),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let version = format!("v{}", versions.fetch_add(1, Ordering::Relaxed));
                runtime.block_on(upload(
                    &mut client,
                    &game,
                    &version,
                    &bytes,
                    chunk,
                    pipelined,
                ));
            })
        });
    }
    group.finish();
    runtime.block_on(server.shutdown());
}

criterion_group!(benches, throughput);
criterion_main!(benches);
