//! The `comms-fanout` scenario: subscribers on one topic, and publishers broadcasting to it
//! at a steady rate. Each payload carries its send time, so every delivery is timed.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Options, RunStats};

const TOPIC: &str = "loadgen.fanout";

/// What a publisher broadcasts: when it sent it (µs since the run began) and its number.
#[derive(serde::Serialize)]
struct Probe {
    t: u64,
    n: u64,
}

/// The process's time origin, for send times that survive a round trip as numbers.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

pub async fn client(
    options: &Options,
    n: usize,
    stats: &RunStats,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let token = super::token_for(options, n).await?;
    let publisher = n < options.publishers.max(1);
    let http = match options.publish_http {
        Some(other_node) if publisher => other_node,
        _ => options.http,
    };
    let url = format!("ws://{http}/ws?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let subscribe = crate::protocol::comms::subscribe_request(&[TOPIC]);
    ws.send(Message::Text(subscribe.into())).await?;
    stats
        .connected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let period = Duration::from_secs_f64(1.0 / options.publish_per_sec.max(0.1));
    let mut publish = tokio::time::interval(period);
    let mut count = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = publish.tick(), if publisher => {
                count += 1;
                let sent_us = origin().elapsed().as_micros() as u64;
                let probe = Probe { t: sent_us, n: count };
                let payload = serde_json::to_value(probe)?;
                let msg = crate::protocol::comms::broadcast_request(TOPIC, &payload);
                ws.send(Message::Text(msg.into())).await?;
                stats.sent();
            }
            next = ws.next() => {
                let Some(message) = next else { break };
                let Message::Text(text) = message? else { continue };
                stats.received(text.len());
                let msg: Value = serde_json::from_str(&text)?;
                match msg["type"].as_str() {
                    Some("Broadcast") => {
                        if let Some(sent) = msg["data"]["payload"]["t"].as_u64() {
                            let now = origin().elapsed().as_micros() as u64;
                            stats.latency(Duration::from_micros(now.saturating_sub(sent)));
                        }
                    }
                    Some("Error") => stats.error(&format!("comms: {}", msg["data"])),
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
