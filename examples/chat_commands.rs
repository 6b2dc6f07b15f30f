//! Commands players type in chat, as a mod: it keeps each player's recent kills from the
//! gameplay messages, and answers for them on both protocols a game client speaks:
//!
//! ```text
//! comms (/ws)   → {"type":"X-Kills","data":{"limit":5}}
//!               ← {"type":"X-Kills","data":{"kills":[{"target_id":"npc_3","kind":"pirate","tick":812}],"total":1}}
//! game (/game)  → {"type":"kills.recent","seq":9,"payload":{"limit":5}}
//!               ← {"type":"kills.recent","seq":…,"ts":…,"payload":{"kills":[…],"total":1}}
//! ```
//!
//! ```sh
//! cargo run --release --example chat_commands -- --http 127.0.0.1:8080
//! ```

use std::collections::{HashMap, VecDeque};

use ecliptic::prelude::*;
use serde::{Deserialize, Serialize};

/// Kills remembered per player.
const REMEMBERED: usize = 20;

#[derive(Serialize, Clone)]
struct Kill {
    target_id: String,
    kind: &'static str,
    tick: u64,
}

/// Each player's latest kills (newest last) and how many they have made, by username:
/// the name both protocols know a caller by.
#[derive(Resource, Default)]
struct KillLog(HashMap<String, Record>);

#[derive(Default)]
struct Record {
    recent: VecDeque<Kill>,
    total: u64,
}

#[derive(Serialize)]
struct KillsReply {
    kills: Vec<Kill>,
    total: u64,
}

/// What both commands take: how many kills to list, newest first.
#[derive(Deserialize, Default)]
struct KillsRequest {
    limit: Option<u32>,
}

impl KillLog {
    fn answer(&self, username: &str, limit: Option<u32>) -> Result<KillsReply, String> {
        let limit = limit.unwrap_or(5);
        if !(1..=REMEMBERED as u32).contains(&limit) {
            return Err(format!("limit must be 1 to {REMEMBERED}"));
        }
        let record = self.0.get(username);
        Ok(KillsReply {
            kills: record
                .map(|r| {
                    r.recent
                        .iter()
                        .rev()
                        .take(limit as usize)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            total: record.map_or(0, |r| r.total),
        })
    }
}

/// Records every kill a player makes.
fn log_kills(
    mut destroyed: MessageReader<ShipDestroyed>,
    pilots: Query<&Pilot>,
    tick: Res<Tick>,
    mut log: ResMut<KillLog>,
) {
    for fact in destroyed.read() {
        let Ok(killer) = pilots.get(fact.killer) else {
            continue;
        };
        let record = log.0.entry(killer.username.clone()).or_default();
        record.total += 1;
        record.recent.push_back(Kill {
            target_id: fact.victim_id.to_string(),
            kind: fact.victim_kind,
            tick: tick.0,
        });
        if record.recent.len() > REMEMBERED {
            record.recent.pop_front();
        }
    }
}

/// `kills.recent` on `/game`.
fn answer_game(mut requests: MessageReader<FromClient<KillsRequest>>, log: Res<KillLog>) {
    for request in requests.read() {
        match log.answer(&request.caller.username, request.message.limit) {
            Ok(reply) => request.caller.reply("kills.recent", &reply),
            Err(e) => request
                .caller
                .error("BAD_MESSAGE", &format!("kills.recent: {e}")),
        }
    }
}

/// `X-Kills` on comms: answered at once, between ticks.
fn answer_comms(world: &mut World, call: &ExtensionCall) -> Result<serde_json::Value, DomainError> {
    let request: KillsRequest = match &call.data {
        serde_json::Value::Null => KillsRequest::default(),
        data @ serde_json::Value::Object(_) => tolerant(data.clone())
            .map_err(|e| DomainError::InvalidInput(format!("X-Kills: {e}")))?,
        _ => {
            return Err(DomainError::InvalidInput(
                "X-Kills: data must be an object".into(),
            ));
        }
    };
    let reply = world
        .resource::<KillLog>()
        .answer(&call.user, request.limit)
        .map_err(|e| DomainError::InvalidInput(format!("X-Kills: {e}")))?;
    serde_json::to_value(reply).map_err(|e| DomainError::Internal(e.to_string()))
}

struct ChatCommands;

impl Plugin for ChatCommands {
    fn build(&self, app: &mut App) {
        app.init_resource::<KillLog>()
            .add_game_message::<KillsRequest>("kills.recent")
            .add_comms_handler("X-Kills", answer_comms)
            .add_systems(FixedLast, (log_kills, answer_game).chain());
    }
}

fn main() -> std::process::ExitCode {
    ecliptic::cli::main_with(|server| server.add_plugin(ChatCommands))
}
