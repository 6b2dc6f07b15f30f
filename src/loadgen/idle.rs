//! The `idle` scenario: what an idle connection costs the server. All clients log in
//! first; then the server's resident memory is read from `/metrics`, every client opens a
//! comms WebSocket and stays idle, and the memory is read again. Logging in first keeps
//! the password hashing's memory out of the difference.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::report::IdleMemory;
use super::{Options, RunStats};

/// The server's `ecliptic_process_resident_memory_bytes`.
async fn server_resident_bytes(options: &Options) -> anyhow::Result<i64> {
    let text = super::server::metrics(options).await?;
    super::server::value(&text, "ecliptic_process_resident_memory_bytes")
        .map(|v| v as i64)
        .ok_or_else(|| anyhow::anyhow!("the server's /metrics has no resident memory"))
}

/// Logs every client in, measures, connects them all, measures again, holds until the
/// end of the run.
pub async fn run(options: &Options, stats: &Arc<RunStats>) -> anyhow::Result<IdleMemory> {
    let mut tokens = Vec::with_capacity(options.clients);
    for n in 0..options.clients {
        match super::token_for(options, n).await {
            Ok(token) => tokens.push(token),
            Err(e) => stats.error(&format!("client {n}: {e:#}")),
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // let the logins' buffers go
    let before = server_resident_bytes(options).await?;
    let stop = CancellationToken::new();
    let mut held = tokio::task::JoinSet::new();
    for token in tokens {
        let url = format!("ws://{}/ws?token={token}", options.http);
        match tokio_tungstenite::connect_async(url).await {
            Ok((mut ws, _)) => {
                stats.connected.fetch_add(1, Ordering::Relaxed);
                let (stop, stats) = (stop.clone(), stats.clone());
                held.spawn(async move {
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            next = ws.next() => match next {
                                Some(Ok(message)) => stats.received(message.len()),
                                _ => return,
                            },
                        }
                    }
                });
            }
            Err(e) => stats.error(&format!("connect: {e}")),
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // settle
    let after = server_resident_bytes(options).await?;
    tokio::time::sleep(options.duration).await;
    stop.cancel();
    while held.join_next().await.is_some() {}
    let connected = stats.connected.load(Ordering::Relaxed).max(1) as i64;
    Ok(IdleMemory {
        server_rss_before_bytes: before,
        server_rss_after_bytes: after,
        bytes_per_connection: (after - before) / connected,
    })
}
