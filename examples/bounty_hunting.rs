//! Bounty hunting, as a mod: every pirate carries a bounty that grows with each ship it
//! destroys; the player who destroys it is paid, and their earnings are kept in the
//! mod's own table. Clients see each pirate's `bounty` in snapshots and deltas, can ask
//! for the board with a new `/game` message, and are told when they are paid:
//!
//! ```text
//! → {"type":"bounty.board","seq":7,"payload":{"limit":3}}
//! ← {"type":"bounty.board","seq":…,"ts":…,"payload":{"bounties":[{"id":"npc_4","bounty":150}],"earned":100}}
//! ← {"type":"bounty.paid","seq":…,"ts":…,"payload":{"target_id":"npc_4","amount":150,"earned":250}}
//! ```
//!
//! ```sh
//! cargo run --release --example bounty_hunting -- --http 127.0.0.1:8080
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use ecliptic::prelude::*;
use serde::{Deserialize, Serialize};

/// A pirate's bounty when it appears, and what each of its kills adds.
const OPENING_BOUNTY: u32 = 100;
const BOUNTY_PER_KILL: u32 = 50;

/// The mod's tables. A migration is never edited once shipped; add another instead.
const MIGRATIONS: &[&str] = &["CREATE TABLE bounty_earnings (
        user_id  TEXT PRIMARY KEY,
        credits  INTEGER NOT NULL CHECK (credits >= 0)
    )"];

/// The bounty on a pirate, sent to clients as the entity's `bounty` member.
#[derive(Component, Serialize, Debug, Clone, Copy)]
#[serde(transparent)]
struct Bounty(u32);

/// Every pirate with a price on its head, by entity. Kept here as well as on the pirate
/// because a destroyed pirate's entity is gone by the time its destruction is read.
#[derive(Resource, Default)]
struct Board(HashMap<Entity, Wanted>);

struct Wanted {
    id: Arc<str>,
    bounty: u32,
}

/// `bounty.board`: the highest bounties, and what the caller has earned.
#[derive(Deserialize)]
struct BoardRequest {
    limit: Option<u32>,
}

#[derive(Serialize)]
struct BoardEntry<'a> {
    id: &'a str,
    bounty: u32,
}

#[derive(Serialize)]
struct BoardReply<'a> {
    bounties: Vec<BoardEntry<'a>>,
    earned: i64,
}

#[derive(Serialize)]
struct Paid<'a> {
    target_id: &'a str,
    amount: u32,
    earned: i64,
}

/// New pirates go on the board.
fn post_bounties(
    mut commands: Commands,
    mut board: ResMut<Board>,
    new: Query<(Entity, &Replicated), Added<Pirate>>,
) {
    for (pirate, replicated) in &new {
        board.0.insert(
            pirate,
            Wanted {
                id: replicated.net_id.clone(),
                bounty: OPENING_BOUNTY,
            },
        );
        commands.entity(pirate).insert(Bounty(OPENING_BOUNTY));
    }
}

/// A pirate's kill raises its bounty; a pirate's death pays whoever killed it.
fn settle_kills(
    mut destroyed: MessageReader<ShipDestroyed>,
    mut board: ResMut<Board>,
    mut bounties: Query<&mut Bounty>,
    services: Res<SimServices>,
) {
    for fact in destroyed.read() {
        if let Some(wanted) = board.0.get_mut(&fact.killer) {
            wanted.bounty += BOUNTY_PER_KILL;
            if let Ok(mut bounty) = bounties.get_mut(fact.killer) {
                bounty.0 = wanted.bounty;
            }
        }
        let Some(wanted) = board.0.remove(&fact.victim) else {
            continue;
        };
        let Some(hunter) = fact.killer_user else {
            continue;
        };
        let (hunter_ship, amount) = (fact.killer, wanted.bounty);
        // The hunter hears of the payment only once it is saved.
        services.write_then(
            move |db| {
                db.query_row(
                    "INSERT INTO bounty_earnings (user_id, credits) VALUES (?1, ?2)
                     ON CONFLICT (user_id)
                     DO UPDATE SET credits = bounty_earnings.credits + excluded.credits
                     RETURNING credits",
                    params![hunter.to_string(), i64::from(amount)],
                    |row| row.get::<_, i64>(0),
                )
            },
            move |world, saved| match saved {
                Ok(earned) => {
                    if let Some(client) = world.get::<Client>(hunter_ship) {
                        let paid = Paid {
                            target_id: &wanted.id,
                            amount,
                            earned,
                        };
                        client.push("bounty.paid", &paid);
                    }
                }
                Err(e) => tracing::error!("paying a bounty to {hunter}: {e}"),
            },
        );
    }
}

/// Answers `bounty.board`, reading the caller's earnings off the simulation thread.
fn answer_board(mut requests: MessageReader<FromClient<BoardRequest>>, services: Res<SimServices>) {
    for request in requests.read() {
        let limit = request.message.limit.unwrap_or(10);
        if !(1..=50).contains(&limit) {
            request
                .caller
                .error("BAD_MESSAGE", "bounty.board: limit must be 1 to 50");
            continue;
        }
        let caller = request.caller.clone();
        let user_id = caller.user_id.to_string();
        services.read_then(
            move |db| {
                Ok(db
                    .query_row(
                        "SELECT credits FROM bounty_earnings WHERE user_id = ?1",
                        [user_id],
                        |row| row.get::<_, i64>(0),
                    )
                    .optional()?
                    .unwrap_or(0))
            },
            move |world, earned| {
                let earned = match earned {
                    Ok(earned) => earned,
                    Err(e) => {
                        tracing::error!("reading bounty earnings: {e}");
                        caller.error("SERVER_ERROR", "could not read your earnings; try again");
                        return;
                    }
                };
                let board = world.resource::<Board>();
                let mut bounties: Vec<BoardEntry> = board
                    .0
                    .values()
                    .map(|w| BoardEntry {
                        id: &w.id,
                        bounty: w.bounty,
                    })
                    .collect();
                bounties.sort_by(|a, b| b.bounty.cmp(&a.bounty).then(a.id.cmp(b.id)));
                bounties.truncate(limit as usize);
                caller.reply("bounty.board", &BoardReply { bounties, earned });
            },
        );
    }
}

struct BountyHunting;

impl Plugin for BountyHunting {
    fn build(&self, app: &mut App) {
        app.add_store_tables("bounty", MIGRATIONS)
            .add_game_message::<BoardRequest>("bounty.board")
            .replicate_field::<Bounty>("bounty")
            .init_resource::<Board>()
            .add_systems(FixedUpdate, post_bounties.in_set(TickSet::Npc))
            .add_systems(FixedLast, (settle_kills, answer_board));
    }
}

fn main() -> std::process::ExitCode {
    ecliptic::cli::main_with(|server| server.add_plugin(BountyHunting))
}
