//! The `lobby` scenario: a player on the lobby server asking `LIST_GAMES` and `LIST_ROOMS`
//! back to back, each request timed.

use std::time::Instant;

use crate::protocol::NoFields;
use tokio_util::sync::CancellationToken;

use super::{Options, RunStats};
use crate::client::LineClient;

pub async fn client(
    options: &Options,
    n: usize,
    stats: &RunStats,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let token = super::token_for(options, n).await?;
    let mut client = LineClient::connect(&options.lobby.to_string()).await?;
    client.token = Some(token);
    stats
        .connected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut i = 0u64;
    while !stop.is_cancelled() {
        i += 1;
        let kind = if i.is_multiple_of(10) {
            "LIST_ROOMS"
        } else {
            "LIST_GAMES"
        };
        let started = Instant::now();
        client.send(kind, &NoFields {}).await?;
        stats.sent();
        let reply = tokio::select! {
            _ = stop.cancelled() => break,
            reply = client.reply() => reply,
        };
        match reply {
            Ok(payload) => {
                stats.received(payload.to_string().len());
                stats.latency(started.elapsed());
            }
            Err(e) => stats.error(&format!("lobby: {e}")),
        }
    }
    Ok(())
}
