//! Game wagers in the world: which period of each game is current, and resolving a period
//! when it ends.
//!
//! The simulation owns the schedule so that every decision about periods is made on one
//! thread, in order: a wage is given the current period and queued to the store after any
//! resolution that had to come first, and the store applies them in that order. A
//! resolution is one transaction that claims the period (`resolved_at IS NULL`), pays and
//! carries; if a crash loses it, the period is still unresolved at the next start and is
//! resolved then. So each period resolves exactly once.

use std::collections::HashMap;

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{HandleCommands, Pending, SimServices};
use crate::services::DomainError;
use crate::services::catalog::{Catalog, GameStatus, WagerTerms};
use crate::services::wagers::{self, Period, Receipt, Wage};
use crate::store::{Store, StoreError};

/// What GARP connections ask of the simulation.
#[derive(Debug)]
pub enum WagerOp {
    /// A game's GARP view, by its game token.
    Game { api_key: String },
    /// Move a wage into the game's current pot and open a play.
    Wage {
        game_id: String,
        user_id: Uuid,
        display_name: String,
        amount: i64,
        session_id: String,
        request_id: String,
    },
}

/// A game as a GARP session sees it.
#[derive(Debug, Clone)]
pub struct WagerGame {
    pub game_id: String,
    pub api_key: String,
    pub api_secret: String,
    pub description: String,
    pub online: bool,
    pub terms: WagerTerms,
    /// The current period, if one is open.
    pub period: Option<Period>,
}

#[derive(Debug)]
pub enum WagerReply {
    Game(WagerGame),
    Placed(Receipt),
}

#[derive(Debug)]
pub struct WagerRequest {
    pub op: WagerOp,
    pub reply: oneshot::Sender<Result<WagerReply, DomainError>>,
}

impl crate::bridge::InboxCommand for WagerRequest {
    fn unhandled(self) {
        let _ = self.reply.send(Err(crate::services::DomainError::Internal(
            "wagers are not running".into(),
        )));
    }
}

#[derive(Debug, Clone)]
struct OpenPeriod {
    period: Period,
    /// A wage went into it (or it was found in the store at start).
    wagered: bool,
    /// The previous period's remainder may be carried into it.
    carry_expected: bool,
}

impl OpenPeriod {
    /// Whether coins may be in it; a period that never held any ends without a trip to
    /// the store.
    fn touched(&self) -> bool {
        self.wagered || self.carry_expected
    }
}

/// A resolution the store has finished, and how much it carried on.
#[derive(Debug)]
struct Resolved {
    period: Period,
    next_seq: i64,
    carried: Result<i64, ()>,
}

/// The schedule of every game's periods.
#[derive(Resource)]
pub struct WagerBook {
    open: HashMap<String, OpenPeriod>,
    /// Ended periods waiting to be resolved.
    due: Vec<Period>,
    last_seq: HashMap<String, i64>,
    /// Where each game's last period ended: the next one continues its grid.
    last_end: HashMap<String, i64>,
    resolved_tx: Sender<Resolved>,
    resolved_rx: Receiver<Resolved>,
}

impl WagerBook {
    fn new() -> Self {
        let (resolved_tx, resolved_rx) = crossbeam_channel::unbounded();
        Self {
            open: HashMap::new(),
            due: Vec::new(),
            last_seq: HashMap::new(),
            last_end: HashMap::new(),
            resolved_tx,
            resolved_rx,
        }
    }

    /// Reads the schedule left by the last run: the newest unresolved period of a game is
    /// its current one (if it has not ended); every other unresolved period is due.
    pub fn load(store: &Store) -> anyhow::Result<Self> {
        let mut book = Self::new();
        let (periods, seqs) = store
            .read_now(|conn| Ok((wagers::unresolved_periods(conn)?, wagers::last_seqs(conn)?)))?;
        book.last_seq.extend(seqs);
        let now = now_ms();
        for period in periods {
            let newest = book.last_seq.get(&period.game_id) == Some(&period.seq);
            book.last_end.insert(period.game_id.clone(), period.ends_at);
            if newest && period.ends_at > now {
                book.open.insert(
                    period.game_id.clone(),
                    OpenPeriod {
                        period,
                        wagered: true,
                        carry_expected: false,
                    },
                );
            } else {
                book.due.push(period);
            }
        }
        Ok(book)
    }

    /// The game's current period, opening the next one if there is none. Periods sit on
    /// one grid of the period's length from the Unix epoch (daily periods run midnight to
    /// midnight UTC) and are numbered by their start in unix seconds, so every node of a
    /// cluster opens the same period for the same moment, under the same number, and its
    /// wages meet in one pot.
    fn current(&mut self, game_id: &str, terms: &WagerTerms, now: i64) -> &mut OpenPeriod {
        let last_seq = self.last_seq.entry(game_id.to_owned()).or_insert(0);
        let last_end = self.last_end.get(game_id).copied();
        self.open.entry(game_id.to_owned()).or_insert_with(|| {
            let length = terms.period_secs.max(1) * 1000;
            let slot = now - now.rem_euclid(length);
            // After a change of length the old grid's last period may end inside a slot
            // of the new one: the new period starts where the old one ended.
            let starts_at = last_end.map_or(slot, |end| slot.max(end.min(now)));
            let ends_at = slot + length;
            // Numbers only grow, also past periods numbered before this scheme.
            *last_seq = (starts_at / 1000).max(*last_seq + 1);
            OpenPeriod {
                period: Period {
                    game_id: game_id.to_owned(),
                    seq: *last_seq,
                    starts_at,
                    ends_at,
                },
                wagered: false,
                carry_expected: false,
            }
        })
    }

    /// Takes every period that has ended and may hold coins, with those already due.
    fn take_ended(&mut self, now: i64) -> Vec<Period> {
        let ended: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| o.period.ends_at <= now)
            .map(|(game, _)| game.clone())
            .collect();
        let mut ended_periods = std::mem::take(&mut self.due);
        for game in ended {
            if let Some(open) = self.open.remove(&game) {
                self.last_end.insert(game, open.period.ends_at);
                if open.touched() {
                    ended_periods.push(open.period);
                }
            }
        }
        ended_periods
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Resolves every ended period: each goes to the store with the period its remainder
/// carries into (opened now if need be), ahead of anything queued after it.
fn resolve_ended_periods(world: &mut World) {
    let now = now_ms();
    settle_resolutions(world);
    let ended = world.resource_mut::<WagerBook>().take_ended(now);
    if ended.is_empty() {
        return;
    }
    let store = world.resource::<SimServices>().store.clone();
    for period in ended {
        let terms = world
            .resource::<Catalog>()
            .get(&period.game_id)
            .map(|g| g.wager)
            .unwrap_or_default();
        let mut book = world.resource_mut::<WagerBook>();
        let next = {
            let open = book.current(&period.game_id, &terms, now);
            open.carry_expected = true;
            open.period.clone()
        };
        let done = book.resolved_tx.clone();
        let shares = terms.shares_permille;
        let job_period = period.clone();
        let next_seq = next.seq;
        store.submit(
            move |conn| wagers::resolve_period(conn, &job_period, &shares, &next),
            move |result: Result<Option<wagers::Resolution>, StoreError>| {
                let carried = match result {
                    Ok(resolution) => Ok(resolution.map_or(0, |r| r.carried)),
                    Err(e) => {
                        tracing::error!(
                            game = %period.game_id,
                            seq = period.seq,
                            "resolving a wager period failed; it stays due: {e}"
                        );
                        Err(())
                    }
                };
                let _ = done.send(Resolved {
                    period,
                    next_seq,
                    carried,
                });
            },
        );
    }
}

/// Takes in what the store reports about finished resolutions: a failed one is due again;
/// when nothing was carried, the next period expects no carry.
fn settle_resolutions(world: &mut World) {
    let mut book = world.resource_mut::<WagerBook>();
    while let Ok(resolved) = book.resolved_rx.try_recv() {
        match resolved.carried {
            Err(()) => book.due.push(resolved.period),
            Ok(0) => {
                if let Some(open) = book.open.get_mut(&resolved.period.game_id)
                    && open.period.seq == resolved.next_seq
                {
                    open.carry_expected = false;
                }
            }
            Ok(_) => {}
        }
    }
}

fn handle_wager_requests(world: &mut World) {
    let pending = std::mem::take(&mut world.resource_mut::<Pending<WagerRequest>>().0);
    if pending.is_empty() {
        return;
    }
    for WagerRequest { op, reply } in pending {
        match op {
            WagerOp::Game { api_key } => {
                let answer = game_view(world, &api_key).map(WagerReply::Game);
                let _ = reply.send(answer);
            }
            WagerOp::Wage {
                game_id,
                user_id,
                display_name,
                amount,
                session_id,
                request_id,
            } => {
                let terms = match world.resource::<Catalog>().get(&game_id) {
                    Ok(game) if game.status == GameStatus::Online => game.wager,
                    _ => {
                        let _ = reply.send(Err(DomainError::NotFound(format!(
                            "no game {game_id} open for wagers"
                        ))));
                        continue;
                    }
                };
                // A period that has just ended resolves before this wage enters the next.
                resolve_ended_periods(world);
                let now = now_ms();
                let period = {
                    let mut book = world.resource_mut::<WagerBook>();
                    let open = book.current(&game_id, &terms, now);
                    open.wagered = true;
                    open.period.clone()
                };
                let wage = Wage {
                    period,
                    user_id,
                    display_name,
                    amount,
                    session_id,
                    request_id,
                };
                world.resource::<SimServices>().store.submit(
                    move |conn| wagers::place_wage(conn, &wage),
                    move |result| {
                        let answer = match result {
                            Ok(Ok(receipt)) => Ok(WagerReply::Placed(receipt)),
                            Ok(Err(refused)) => Err(refused),
                            Err(e) => Err(DomainError::from(e)),
                        };
                        let _ = reply.send(answer);
                    },
                );
            }
        }
    }
}

fn game_view(world: &World, api_key: &str) -> Result<WagerGame, DomainError> {
    let game = world
        .resource::<Catalog>()
        .by_api_key(api_key)
        .ok_or_else(|| DomainError::NotFound("unknown game token".into()))?;
    let period = world
        .resource::<WagerBook>()
        .open
        .get(&game.game_id)
        .map(|o| o.period.clone());
    Ok(WagerGame {
        game_id: game.game_id.clone(),
        api_key: game.api_key.clone(),
        api_secret: game.api_secret.clone(),
        description: game.description.clone(),
        online: game.status == GameStatus::Online,
        terms: game.wager,
        period,
    })
}

/// Wagers: the period schedule and GARP's requests. Needs the catalog (the lobby plugin).
pub struct WagersPlugin {
    pub book: std::sync::Arc<parking_lot::Mutex<Option<WagerBook>>>,
}

impl Plugin for WagersPlugin {
    fn build(&self, app: &mut App) {
        let book = self.book.lock().take().unwrap_or_else(WagerBook::new);
        app.insert_resource(book)
            .init_resource::<Pending<WagerRequest>>()
            .add_systems(HandleCommands, handle_wager_requests)
            .add_systems(bevy_app::FixedLast, resolve_ended_periods);
    }
}
