//! The `trade` scenario: a player that joins a star system docked at its home station and
//! trades one unit of food back and forth, one trade at a time; latency is a trade's round
//! trip (`trade.buy`/`trade.sell` → `trade.result`, which leaves only after COMMIT).
//! Players stay within the server's action rate (`rules.actions_per_second`).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Options, RunStats};
use crate::protocol::game::{ClientMessage, TradeSide};

fn frame(message: ClientMessage, seq: u64) -> Message {
    Message::Text(message.encode(seq).into())
}

pub async fn client(
    options: &Options,
    n: usize,
    stats: &RunStats,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let token = super::token_for(options, n).await?;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/game", options.http)).await?;
    let login = ClientMessage::Login {
        token,
        protocol_version: None,
    };
    ws.send(frame(login, 1)).await?;
    let join = ClientMessage::JoinSystem {
        system_id: options.system.clone(),
    };
    ws.send(frame(join, 2)).await?;
    let mut seq = 2;
    let mut station = None;
    let mut food = 0;
    let mut sent: Option<Instant> = None;
    // Below the default 10 actions a second, so no trade is refused for its rate.
    let mut pace = tokio::time::interval(Duration::from_millis(125));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = pace.tick(), if sent.is_none() && station.is_some() => {
                seq += 1;
                let trade = ClientMessage::Trade {
                    side: if food < 5 { TradeSide::Buy } else { TradeSide::Sell },
                    station_id: station.clone().unwrap_or_default(),
                    commodity_id: "food".into(),
                    quantity: 1,
                };
                ws.send(frame(trade, seq)).await?;
                stats.sent();
                sent = Some(Instant::now());
            }
            next = ws.next() => {
                let Some(message) = next else { break };
                let Message::Text(text) = message? else { continue };
                stats.received(text.len());
                let msg: Value = serde_json::from_str(&text)?;
                match msg["type"].as_str() {
                    Some("world.snapshot") if station.is_none() => {
                        station = msg["payload"]["you"]["docked_at"].as_str().map(str::to_owned);
                        anyhow::ensure!(station.is_some(), "the player is not docked: {msg}");
                        stats.connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some("trade.result") => {
                        if let Some(at) = sent.take() {
                            stats.latency(at.elapsed());
                        }
                        food = msg["payload"]["cargo"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|c| c["commodity_id"] == "food")
                            .filter_map(|c| c["qty"].as_i64())
                            .sum();
                    }
                    Some("error" | "auth.error") => {
                        sent = None;
                        stats.error(&format!("trade: {}", msg["payload"]));
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
