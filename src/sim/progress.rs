//! Progress in the world: counts what each pilot does (trades, kills, deaths, docks,
//! distance, credits), unlocks achievements the moment their rule holds, and saves the
//! totals now and then and when the pilot leaves.
//!
//! A pilot's saved record is read through the store's writer queue, so it comes after any
//! save of the same player still queued; until it arrives, what the pilot does is counted
//! and added to it. An unlocked achievement is saved and published on the event bus in the
//! same tick.

use std::collections::{HashMap, HashSet};

use super::encoders::Encoders;
use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use crossbeam_channel::{Receiver, Sender};
use uuid::Uuid;

use bevy_ecs::message::{MessageCursor, Messages};

use super::events::{Event, EventBus};
use super::facts::{AchievementUnlocked, ShipDestroyed, ShipDocked, TradeDone};
use super::physics::Kinematics;
use super::players::Pilot;
use super::{SimServices, Tick, TickRate};
use crate::services::catalog::SPACE_GAME_ID;
use crate::services::progress::{self, Achievements, Record, Stats};

/// Where progress has read the gameplay facts up to.
#[derive(Default)]
struct FactCursors {
    trades: MessageCursor<TradeDone>,
    docks: MessageCursor<ShipDocked>,
    kills: MessageCursor<ShipDestroyed>,
}

#[derive(Debug)]
struct Tracked {
    username: String,
    /// Totals once the record is in; until then, only what happened since entering.
    stats: Stats,
    saved: Stats,
    unlocked: HashSet<String>,
    loaded: bool,
}

/// Progress of the pilots in the world.
#[derive(Resource)]
pub struct Progress {
    achievements: Achievements,
    players: HashMap<Uuid, Tracked>,
    ships: HashMap<Entity, Uuid>,
    loaded_tx: Sender<(Uuid, Record)>,
    loaded_rx: Receiver<(Uuid, Record)>,
    /// Saves that moved the ranks and have committed: `leaderboard_updated` goes out then.
    ranked_tx: Sender<()>,
    ranked_rx: Receiver<()>,
    /// Players whose record just arrived: their achievements are checked this tick.
    recheck: HashSet<Uuid>,
    /// Ticks between saves of changed totals.
    save_every: u64,
}

impl Progress {
    /// The achievements of room game `game_id`, counted from its matches.
    pub fn room_achievements(
        &self,
        game_id: &str,
    ) -> Vec<crate::services::progress::AchievementDef> {
        self.achievements
            .achievements
            .iter()
            .filter(|a| a.game_id == game_id && a.stat.of_rooms())
            .cloned()
            .collect()
    }

    pub fn new(achievements: Achievements, save_every: u64) -> Self {
        let (loaded_tx, loaded_rx) = crossbeam_channel::unbounded();
        let (ranked_tx, ranked_rx) = crossbeam_channel::unbounded();
        Self {
            ranked_tx,
            ranked_rx,
            achievements,
            players: HashMap::new(),
            ships: HashMap::new(),
            loaded_tx,
            loaded_rx,
            recheck: HashSet::new(),
            save_every: save_every.max(1),
        }
    }
}

fn add(into: &mut Stats, delta: &Stats) {
    into.trades += delta.trades;
    into.kills += delta.kills;
    into.deaths += delta.deaths;
    into.docks += delta.docks;
    into.distance += delta.distance;
    into.credits = into.credits.max(delta.credits);
}

/// Starts tracking pilots that entered the world and stops tracking those that left
/// (saving them).
fn track_pilots(world: &mut World) {
    let pilots: Vec<(Entity, Uuid, String)> = world
        .query_filtered::<(Entity, &Pilot), Added<Pilot>>()
        .iter(world)
        .map(|(e, p)| (e, p.user_id, p.username.clone()))
        .collect();
    let store = world.resource::<SimServices>().store.clone();
    let mut progress = world.resource_mut::<Progress>();
    for (ship, user_id, username) in pilots {
        progress.ships.insert(ship, user_id);
        if progress.players.contains_key(&user_id) {
            continue;
        }
        progress.players.insert(
            user_id,
            Tracked {
                username,
                stats: Stats::default(),
                saved: Stats::default(),
                unlocked: HashSet::new(),
                loaded: false,
            },
        );
        let loaded = progress.loaded_tx.clone();
        store.submit(
            move |conn| progress::load(conn, user_id),
            move |record| match record {
                Ok(record) => {
                    let _ = loaded.send((user_id, record));
                }
                Err(e) => tracing::error!(%user_id, "loading progress: {e}"),
            },
        );
    }
    let arrived: Vec<(Uuid, Record)> = progress.loaded_rx.try_iter().collect();
    for (user_id, record) in arrived {
        if let Some(tracked) = progress.players.get_mut(&user_id) {
            let mut stats = record.stats;
            add(&mut stats, &tracked.stats);
            tracked.stats = stats;
            tracked.saved = record.stats;
            tracked.unlocked.extend(record.unlocked);
            tracked.loaded = true;
        }
        progress.recheck.insert(user_id);
    }
    let ships: Vec<Entity> = progress.ships.keys().copied().collect();
    let gone: Vec<Entity> = ships
        .into_iter()
        .filter(|ship| world.get::<Pilot>(*ship).is_none())
        .collect();
    let mut progress = world.resource_mut::<Progress>();
    let mut leaving = Vec::new();
    for ship in gone {
        if let Some(user_id) = progress.ships.remove(&ship)
            && !progress.ships.values().any(|u| *u == user_id)
            && let Some(tracked) = progress.players.remove(&user_id)
            && tracked.loaded
        {
            leaving.push((user_id, tracked.stats));
        }
    }
    save(&store, leaving, None);
}

/// Saves totals; `committed` hears of it once they are durable.
fn save(store: &crate::store::Store, stats: Vec<(Uuid, Stats)>, committed: Option<Sender<()>>) {
    if stats.is_empty() {
        return;
    }
    store.submit(
        move |conn| {
            for (user_id, stats) in &stats {
                progress::save_stats(conn, *user_id, stats)?;
            }
            Ok(())
        },
        move |result| match result {
            Ok(()) => {
                if let Some(committed) = committed {
                    let _ = committed.send(());
                }
            }
            Err(e) => tracing::error!("saving progress: {e}"),
        },
    );
}

/// Counts this tick's play from the gameplay facts (trades, docks, kills) and the
/// distance flown.
fn count_play(world: &mut World, mut cursors: Local<FactCursors>) {
    let dt = f64::from(world.resource::<TickRate>().dt());
    let trades: Vec<(Uuid, i64)> = cursors
        .trades
        .read(world.resource::<Messages<TradeDone>>())
        .map(|t| (t.user_id, t.credits))
        .collect();
    let docks: Vec<Uuid> = cursors
        .docks
        .read(world.resource::<Messages<ShipDocked>>())
        .filter_map(|d| d.user_id)
        .collect();
    let kills: Vec<(Option<Uuid>, Option<Uuid>)> = cursors
        .kills
        .read(world.resource::<Messages<ShipDestroyed>>())
        .map(|k| (k.killer_user, k.victim_user))
        .collect();
    let flown: Vec<(Uuid, f64)> = world
        .query::<(&Pilot, &Kinematics)>()
        .iter(world)
        .map(|(p, k)| (p.user_id, f64::from(k.vel.length()) * dt))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    let mut progress = world.resource_mut::<Progress>();
    let mut touched = std::mem::take(&mut progress.recheck);
    let mut count = |user_id: Uuid, change: &dyn Fn(&mut Stats)| {
        if let Some(tracked) = progress.players.get_mut(&user_id) {
            change(&mut tracked.stats);
            touched.insert(user_id);
        }
    };
    for (user_id, credits) in trades {
        count(user_id, &|s| {
            s.trades += 1;
            s.credits = s.credits.max(credits);
        });
    }
    for user_id in docks {
        count(user_id, &|s| s.docks += 1);
    }
    for (killer, victim) in kills {
        if let Some(killer) = killer {
            count(killer, &|s| s.kills += 1);
        }
        if let Some(victim) = victim {
            count(victim, &|s| s.deaths += 1);
        }
    }
    for (user_id, distance) in flown {
        count(user_id, &|s| s.distance += distance);
    }
    unlock_reached(world, touched);
}

/// Unlocks what the touched players' totals now reach: saved, and published at once.
fn unlock_reached(world: &mut World, touched: HashSet<Uuid>) {
    let now = chrono::Utc::now();
    let mut unlocked = Vec::new();
    let mut progress = world.resource_mut::<Progress>();
    let progress = &mut *progress;
    for user_id in touched {
        let Some(tracked) = progress.players.get_mut(&user_id) else {
            continue;
        };
        if !tracked.loaded {
            continue; // its record decides what is already unlocked
        }
        let reached: Vec<_> = progress
            .achievements
            .newly_reached(&tracked.stats, &tracked.unlocked)
            .cloned()
            .collect();
        for achievement in reached {
            tracked.unlocked.insert(achievement.achievement_id.clone());
            unlocked.push((user_id, tracked.username.clone(), achievement));
        }
    }
    if unlocked.is_empty() {
        return;
    }
    let at = now.timestamp_millis();
    let rows: Vec<(Uuid, String)> = unlocked
        .iter()
        .map(|(u, _, a)| (*u, a.achievement_id.clone()))
        .collect();
    world.resource::<SimServices>().store.submit(
        move |conn| {
            for (user_id, achievement_id) in &rows {
                progress::unlock(conn, *user_id, achievement_id, at)?;
            }
            Ok(())
        },
        |result| {
            if let Err(e) = result {
                tracing::error!("saving achievements: {e}");
            }
        },
    );
    for (user_id, username, achievement) in &unlocked {
        world.write_message(AchievementUnlocked {
            user_id: *user_id,
            username: username.clone(),
            achievement_id: achievement.achievement_id.clone(),
        });
    }
    let date = crate::encoding::rfc3339(at);
    let encode = *world.resource::<Encoders>();
    let mut bus = world.resource_mut::<EventBus>();
    for (user_id, username, achievement) in unlocked {
        bus.publish(Event {
            event_type: "achievement_unlocked",
            audience: None,
            data: (encode.achievement_unlocked)(user_id, &username, &achievement, &date),
        });
    }
}

/// Saves changed totals every `save_every` ticks; once a save that changed someone's
/// experience has committed, a `leaderboard_updated` event goes out.
fn save_periodically(world: &mut World) {
    let tick = world.resource::<Tick>().0;
    let mut progress = world.resource_mut::<Progress>();
    if progress.ranked_rx.try_iter().count() > 0 {
        let data = (world.resource::<Encoders>().leaderboard_updated)(SPACE_GAME_ID, "global");
        world.resource_mut::<EventBus>().publish(Event {
            event_type: "leaderboard_updated",
            audience: None,
            data,
        });
        progress = world.resource_mut::<Progress>();
    }
    if !tick.is_multiple_of(progress.save_every) {
        return;
    }
    let mut changed = Vec::new();
    let mut ranks_moved = false;
    for (user_id, tracked) in progress.players.iter_mut() {
        if tracked.loaded && tracked.stats != tracked.saved {
            ranks_moved |= tracked.stats.experience() != tracked.saved.experience();
            tracked.saved = tracked.stats;
            changed.push((*user_id, tracked.stats));
        }
    }
    let committed = ranks_moved.then(|| progress.ranked_tx.clone());
    let store = world.resource::<SimServices>().store.clone();
    save(&store, changed, committed);
}

/// Progress: counting play, achievements, saving. Needs the event bus.
pub struct ProgressPlugin {
    pub achievements: Achievements,
    /// Ticks between saves of changed totals.
    pub save_every_ticks: u64,
}

impl Plugin for ProgressPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Progress::new(
            self.achievements.clone(),
            self.save_every_ticks,
        ))
        .add_systems(
            bevy_app::FixedPostUpdate,
            (track_pilots, count_play, save_periodically).chain(),
        );
    }
}
