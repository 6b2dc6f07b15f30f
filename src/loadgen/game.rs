//! The `game` scenario: a player that joins a star system (`sol-1` unless told), flies with
//! inputs at the tick rate and reads every delta, in JSON or in the binary encoding. Every
//! half second it flips its turn direction and times how long until a delta shows its ship
//! turning the new way.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Encoding, Options, RunStats};
use crate::protocol::game::binary::{self, Decoder};
use crate::protocol::game::{ClientMessage, Input};

/// When a player sends its inputs: every 50 ms from when it joined, or, aligned, on the
/// beat every player of the run shares (50 ms steps from the run's first).
fn input_beat(aligned: bool) -> tokio::time::Interval {
    const PERIOD: Duration = Duration::from_millis(50);
    if !aligned {
        return tokio::time::interval(PERIOD);
    }
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
    let steps = origin.elapsed().as_nanos() / PERIOD.as_nanos() + 1;
    let next = origin + PERIOD * u32::try_from(steps).unwrap_or(u32::MAX);
    tokio::time::interval_at(next, PERIOD)
}

/// One connection's side of the encoding: how messages go out and come back.
struct Wire {
    /// Set when speaking the binary encoding.
    decoder: Option<Decoder>,
}

impl Wire {
    fn frame(&self, message: ClientMessage, seq: u64) -> Message {
        let text = message.encode(seq);
        match self.decoder {
            Some(_) => Message::Binary(binary::json_frame(&text).into()),
            None => Message::Text(text.into()),
        }
    }

    fn input(&self, seq: u64, input: Input) -> Message {
        match self.decoder {
            Some(_) => Message::Binary(binary::input_frame(seq, &input).into()),
            None => self.frame(ClientMessage::Input(input), seq),
        }
    }

    /// The message a frame holds, counting its bytes; `None` for control frames.
    fn read(&mut self, message: Message, stats: &RunStats) -> anyhow::Result<Option<Value>> {
        match (message, &mut self.decoder) {
            (Message::Text(text), _) => {
                stats.received(text.len());
                Ok(Some(serde_json::from_str(&text)?))
            }
            (Message::Binary(bytes), Some(decoder)) => {
                stats.received(bytes.len());
                Ok(Some(decoder.decode(&bytes).map_err(anyhow::Error::msg)?))
            }
            _ => Ok(None),
        }
    }
}

fn wrap(mut a: f64) -> f64 {
    while a > std::f64::consts::PI {
        a -= std::f64::consts::TAU;
    }
    while a < -std::f64::consts::PI {
        a += std::f64::consts::TAU;
    }
    a
}

pub async fn client(
    options: &Options,
    n: usize,
    stats: &RunStats,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let token = super::token_for(options, n).await?;
    let url = format!("ws://{}/game", options.http);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    if options.encoding == Encoding::Binary {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", binary::SUBPROTOCOL.parse()?);
    }
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await?;
    let chosen = response.headers().get("sec-websocket-protocol");
    let mut wire = Wire {
        decoder: (chosen.is_some_and(|p| p == binary::SUBPROTOCOL)).then(Decoder::default),
    };
    anyhow::ensure!(
        (options.encoding == Encoding::Binary) == wire.decoder.is_some(),
        "the server did not choose the binary encoding"
    );
    let mut seq = 1;
    let login = ClientMessage::Login {
        token,
        protocol_version: Some(1),
    };
    ws.send(wire.frame(login, seq)).await?;
    seq += 1;
    let join = ClientMessage::JoinSystem {
        system_id: options.system.clone(),
    };
    ws.send(wire.frame(join, seq)).await?;
    let mut ship = String::new();
    let mut counted = false;
    let mut inputs = input_beat(options.aligned_inputs);
    let mut turn = 1.0f64;
    let mut flipped_at: Option<Instant> = None;
    let mut last_r: Option<f64> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = inputs.tick() => {
                if ship.is_empty() {
                    continue;
                }
                seq += 1;
                if seq.is_multiple_of(10) {
                    turn = -turn;
                    flipped_at = Some(Instant::now());
                }
                let input = Input { thrust: 0.3, turn, fire_primary: false, dock_request: false };
                ws.send(wire.input(seq, input)).await?;
                stats.sent();
            }
            next = ws.next() => {
                let Some(message) = next else { break };
                let Some(msg) = wire.read(message?, stats)? else { continue };
                match msg["type"].as_str() {
                    Some("session.joined") => {
                        ship = msg["payload"]["ship_id"].as_str().unwrap_or_default().to_owned();
                        if !counted {
                            stats.connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            counted = true;
                        }
                    }
                    Some("world.delta") => {
                        let own = msg["payload"]["entity_updates"]
                            .as_array()
                            .and_then(|list| list.iter().find(|e| e["id"] == ship.as_str()));
                        if let Some(r) = own.and_then(|e| e["r"].as_f64()) {
                            if let (Some(prev), Some(at)) = (last_r, flipped_at) {
                                let turning = wrap(r - prev);
                                if turning != 0.0 && turning.signum() == turn.signum() {
                                    stats.latency(at.elapsed());
                                    flipped_at = None;
                                }
                            }
                            last_r = Some(r);
                        }
                    }
                    Some("error" | "auth.error") => stats.error(&format!("game: {}", msg["payload"])),
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
