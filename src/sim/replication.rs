//! Replication: what each player sees.
//!
//! Serialize once: every tick, each ship whose quantized state changed (positions to 0.01,
//! angles to 0.001) re-encodes its JSON fragment once; every client's `world.delta` is then
//! assembled by copying fragments of entities in its area of interest (a radius around its
//! ship, looked up in the instance's grid), plus `entity_removed` for those that left it,
//! the tick's nearby events and its zone context.
//!
//! Bandwidth: each client has a byte budget per tick. Every visible entity that changed
//! since it was last sent *to this client* gains priority each tick (nearer gains faster);
//! the highest go out within the budget, the client's own ship always first. Because
//! "pending" is measured against what this client was sent, a skipped entity's latest state
//! still arrives later, even if it has stopped changing.
//!
//! A `world.snapshot` (the player's own state, markets, zones, and the nearest entities
//! that fit its budget; the rest stream in through deltas) goes out on join, every
//! `snapshot_interval`, and after a delta the client's queue could not take; the tick never
//! waits for a slow client.

use std::sync::Arc;

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;
use serde::Serialize;

use super::instances::{InInstance, Instance};
use super::markets::Market;
use super::physics::{Kinematics, SpatialGrid};
use super::players::{Client, Pilot, Seen};
use super::ships::{Docked, Fuel, Hull, OutOfPlay};
use super::stations::Station;
use super::{Tick, TickSet};
use crate::services::play::GameOut;
pub use crate::services::play::{MarketView, WorldEncoding, YouView};

/// Replication settings (from the config's `[game]` section).
#[derive(Resource, Debug, Clone)]
pub struct ReplicationSettings {
    pub aoi_radius: f32,
    pub snapshot_interval_ticks: u64,
    /// Bytes of `world.delta` per client per tick; 0 = no limit.
    pub budget_per_tick: usize,
}

impl ReplicationSettings {
    /// Bytes of entities a snapshot may carry: half a second of the delta budget.
    fn snapshot_entity_bytes(&self) -> usize {
        match self.budget_per_tick {
            0 => usize::MAX,
            b => (b * 10).max(1024),
        }
    }
}

/// How fast a pending change gains priority at `distance`: 1 at the ship, ½ at 250 units.
fn urgency(distance: f32) -> f32 {
    1.0 / (1.0 + distance / 250.0)
}

/// What the writer adds around a payload (`{"type":…,"seq":…,"ts":…,"payload":…}`).
const ENVELOPE_BYTES: usize = 64;

/// An entity clients can see, with its encoded state.
#[derive(Component, Debug)]
pub struct Replicated {
    pub net_id: Arc<str>,
    pub kind: &'static str,
    last: Option<[i32; 6]>,
    /// `{"id":…,"kind":…,"x":…,…}` as of `changed_tick`.
    pub fragment: String,
    pub changed_tick: u64,
}

impl Replicated {
    pub fn new(net_id: Arc<str>, kind: &'static str) -> Self {
        Self {
            net_id,
            kind,
            last: None,
            fragment: String::new(),
            changed_tick: 0,
        }
    }
}

fn quantize(kin: &Kinematics, hp: u32) -> [i32; 6] {
    let q = |v: f32, scale: f32| (v * scale).round() as i32;
    [
        q(kin.pos.x, 100.0),
        q(kin.pos.y, 100.0),
        q(kin.vel.x, 100.0),
        q(kin.vel.y, 100.0),
        q(kin.rot, 1000.0),
        hp as i32,
    ]
}

/// The world's encoding, as a resource.
#[derive(Resource, Clone, Copy)]
pub struct WorldEncoder(pub &'static dyn WorldEncoding);

/// Fields plugins add to an entity's updates ([`crate::sim::extend::GameAppExt::replicate_field`]):
/// each field's name and its serde value, in the order they were first set.
#[derive(Component, Debug, Default)]
pub struct ReplicatedFields(Vec<(&'static str, serde_json::Value)>);

impl ReplicatedFields {
    fn set(&mut self, name: &'static str, value: serde_json::Value) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => *old = value,
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// The members every entity update has; a plugin's field may not take one of these names.
pub const ENTITY_FIELDS: &[&str] = &["id", "kind", "x", "y", "vx", "vy", "r", "hp"];

/// Makes component `C` a field named `name` of its entity's updates, encoded with serde,
/// sent whenever it changes. Panics on a name an update already has.
pub(crate) fn replicate_field<C: Component + Serialize>(app: &mut App, name: &'static str) {
    assert!(
        !ENTITY_FIELDS.contains(&name),
        "replicated field {name:?} would replace an entity update's own member"
    );
    // Already required when another field uses the same component: nothing to do then.
    let _ = app.try_register_required_components::<C, ReplicatedFields>();
    let encode = move |changed: Query<(Entity, &C), Changed<C>>,
                       mut removed: RemovedComponents<C>,
                       mut fields: Query<&mut ReplicatedFields>| {
        for (entity, component) in &changed {
            let value = serde_json::to_value(component).unwrap_or_default();
            if let Ok(mut fields) = fields.get_mut(entity)
                && fields.get(name) != Some(&value)
            {
                fields.set(name, value);
            }
        }
        for entity in removed.read() {
            if let Ok(mut fields) = fields.get_mut(entity)
                && fields.get(name).is_some()
            {
                fields.0.retain(|(n, _)| *n != name);
            }
        }
    };
    app.add_systems(
        FixedUpdate,
        encode.in_set(TickSet::Replication).before(encode_changed),
    );
}

#[allow(clippy::type_complexity)]
fn encode_changed(
    tick: Res<Tick>,
    encoder: Res<WorldEncoder>,
    mut entities: Query<
        (
            &Kinematics,
            &Hull,
            &mut Replicated,
            Option<Ref<ReplicatedFields>>,
        ),
        Without<OutOfPlay>,
    >,
) {
    for (kin, hull, mut rep, fields) in &mut entities {
        let q = quantize(kin, hull.hp);
        if rep.last == Some(q) && !fields.as_ref().is_some_and(|f| f.is_changed()) {
            continue;
        }
        let rep = &mut *rep;
        rep.last = Some(q);
        encoder.0.entity(
            &mut rep.fragment,
            &rep.net_id,
            rep.kind,
            &q,
            fields.as_deref().map_or(&[], |f| &f.0),
        );
        rep.changed_tick = tick.0;
    }
}

/// The player's own state as a client sees it.
fn you_view<'a>(
    ship_id: &'a str,
    pilot: &Pilot,
    hull: &Hull,
    fuel: &Fuel,
    docked_at: Option<&'a str>,
) -> YouView<'a> {
    YouView {
        ship_id,
        credits: pilot.credits,
        hull: hull.hp,
        fuel: (fuel.level * 100.0).round() / 100.0,
        cargo: pilot.cargo_view(),
        docked_at,
    }
}

/// What `you` last told a client, to see when it changes: fuel in whole percent, so a
/// thrusting ship's burn does not resend it every tick.
#[derive(Debug, Clone, PartialEq)]
pub struct YouSent {
    credits: i64,
    hull: u32,
    fuel_percent: i32,
    docked: Option<Entity>,
    cargo: Vec<crate::services::pilots::CargoHold>,
}

impl YouSent {
    fn of(pilot: &Pilot, hull: &Hull, fuel: &Fuel, docked: Option<&Docked>) -> Self {
        Self {
            credits: pilot.credits,
            hull: hull.hp,
            fuel_percent: fuel.level.round() as i32,
            docked: docked.map(|d| d.0),
            cargo: pilot.cargo.clone(),
        }
    }

    fn differs(&self, pilot: &Pilot, hull: &Hull, fuel: &Fuel, docked: Option<&Docked>) -> bool {
        self.credits != pilot.credits
            || self.hull != hull.hp
            || self.fuel_percent != fuel.level.round() as i32
            || self.docked != docked.map(|d| d.0)
            || self.cargo != pilot.cargo
    }
}

/// What a delta's `you` is made from.
type OwnState = (
    &'static Pilot,
    &'static Hull,
    &'static Fuel,
    Option<&'static Docked>,
);

/// Builds and queues a snapshot for `ship`'s client now.
pub fn send_snapshot(world: &mut World, ship: Entity) {
    if let Err(e) = world.run_system_cached_with(snapshot_for, ship) {
        tracing::error!("snapshot failed: {e}");
    }
}

#[allow(clippy::type_complexity, clippy::too_many_arguments)] // a system's data access
fn snapshot_for(
    In(ship): In<Entity>,
    tick: Res<Tick>,
    encoder: Res<WorldEncoder>,
    settings: Res<ReplicationSettings>,
    instances: Query<(&Instance, &SpatialGrid)>,
    visible_entities: Query<
        (&Replicated, &Kinematics, &Hull, Option<&ReplicatedFields>),
        Without<OutOfPlay>,
    >,
    stations: Query<(&Station, &Market, &InInstance)>,
    mut clients: Query<(
        &mut Client,
        &Pilot,
        &Hull,
        &Fuel,
        Option<&Docked>,
        &Kinematics,
        &InInstance,
        &Replicated,
    )>,
) {
    let Ok((mut client, pilot, hull, fuel, docked, kin, instance, own)) = clients.get_mut(ship)
    else {
        return;
    };
    let Ok((inst, grid)) = instances.get(instance.0) else {
        return;
    };
    let mut visible: Vec<(f32, Entity)> = Vec::new();
    grid.for_each_within(kin.pos, settings.aoi_radius, |e| {
        if e.entity != ship {
            visible.push((e.pos.distance(kin.pos), e.entity));
        }
    });
    visible.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    if visible_entities.get(ship).is_ok() {
        visible.insert(0, (0.0, ship));
    }
    let docked_at = docked
        .and_then(|d| stations.get(d.0).ok())
        .map(|(station, _, _)| station.station_id.as_str());
    let you = you_view(&own.net_id, pilot, hull, fuel, docked_at);
    client.you_sent = Some(YouSent::of(pilot, hull, fuel, docked));
    let mut known = Vec::with_capacity(visible.len());
    let mut updates = String::with_capacity(visible.len() * 96);
    let mut fragment = String::with_capacity(128);
    let budget = settings.snapshot_entity_bytes();
    let mut used = 0;
    for (_, entity) in &visible {
        let Ok((rep, kin, hull, fields)) = visible_entities.get(*entity) else {
            continue;
        };
        encoder.0.entity(
            &mut fragment,
            &rep.net_id,
            rep.kind,
            &quantize(kin, hull.hp),
            fields.map_or(&[], |f| &f.0),
        );
        if *entity != ship && used + fragment.len() > budget {
            break; // the rest stream in through deltas
        }
        encoder.0.append_update(&mut updates, &fragment, used == 0);
        used += fragment.len() + 1;
        known.push((
            *entity,
            Seen {
                id: rep.net_id.clone(),
                sent_tick: tick.0,
                priority: 0.0,
            },
        ));
    }
    client.known.replace(known);
    // Indexes into the old list are stale: scan afresh on the next delta, with priorities
    // accruing from now.
    client.interest = Interest {
        last_scan_tick: tick.0,
        ..Interest::default()
    };
    let markets = market_views(inst, instance.0, &stations);
    let mut out = String::with_capacity(1024 + used);
    encoder
        .0
        .snapshot(&mut out, tick.0, &you, &updates, &markets, &inst.def.zones);
    if client.link.offer(GameOut::Snapshot(out)) {
        client.needs_snapshot = false;
        client.last_snapshot_tick = tick.0;
    } else {
        client.needs_snapshot = true;
    }
}

/// The markets of an instance's stations, with the prices its zones make.
fn market_views<'a>(
    inst: &'a Instance,
    instance: Entity,
    stations: &'a Query<(&Station, &Market, &InInstance)>,
) -> Vec<MarketView<'a>> {
    stations
        .iter()
        .filter(|(_, _, i)| i.0 == instance)
        .map(|(station, market, _)| MarketView {
            station_id: &station.station_id,
            name: inst
                .def
                .stations
                .iter()
                .find(|s| s.station_id == station.station_id)
                .map_or(station.station_id.as_str(), |s| s.name.as_str()),
            x: station.pos.x,
            y: station.pos.y,
            prices: market
                .prices(super::zones::context_at(&inst.def, station.pos).blended_profit_multiplier),
        })
        .collect()
}

fn send_due_snapshots(world: &mut World) {
    let tick = world.resource::<Tick>().0;
    let interval = world
        .resource::<ReplicationSettings>()
        .snapshot_interval_ticks;
    let due: Vec<Entity> = world
        .query::<(Entity, &Client)>()
        .iter(world)
        .filter(|(ship, c)| {
            c.streaming
                && (c.needs_snapshot
                    || periodic_snapshot_due(
                        tick,
                        c.last_snapshot_tick,
                        interval,
                        u64::from(ship.index().index()),
                    ))
        })
        .map(|(e, _)| e)
        .collect();
    for ship in due {
        send_snapshot(world, ship);
    }
}

/// Whether a client's periodic snapshot is due: on its own slot of the interval (`phase`,
/// its ship's index), and not within half an interval of its last snapshot. Slots spread
/// clients evenly over the interval, so clients that joined together (a server full of
/// players reconnecting after a restart) do not all take a snapshot, and a full rescan
/// after it, on the same tick.
fn periodic_snapshot_due(tick: u64, last: u64, interval: u64, phase: u64) -> bool {
    let interval = interval.max(1);
    tick >= last.saturating_add(interval / 2) && (tick + phase).is_multiple_of(interval)
}

/// A client's area of interest is scanned in full every tick while it holds up to this
/// many entities, and every `n / CROWD` ticks (at most `MAX_SCAN_TICKS`) when it holds `n`,
/// staggered across clients, so the scanning work per tick stays near `CROWD` entities
/// per client.
const CROWD: usize = 64;
const MAX_SCAN_TICKS: u64 = 16;

/// What a client's last full scan of its area of interest found.
///
/// A full scan (every entity in the area: new ones, removals, priorities) costs the
/// area's population; with everyone in everyone's area that is players² per tick. In a
/// crowded area the scan runs every few ticks instead, and the ticks between send from
/// the candidates it ranked (skipping what was sent since, and what had not changed when
/// its turn came: that waits for the next scan), plus the client's own ship.
/// Priorities accrue for the ticks between scans, so the order is the same; what a
/// crowded client gives up is a few ticks of latency (at most `MAX_SCAN_TICKS` - 1) for
/// entities entering or leaving its area, which its byte budget would impose anyway: with
/// hundreds of entities in view, each is sent only every few seconds.
#[derive(Debug, Default)]
pub struct Interest {
    /// Pending entities by priority at the last scan, most urgent first, with their
    /// index in the client's `known` list (checked before use).
    candidates: Vec<(Entity, usize)>,
    /// Candidates before this index are done until the next scan.
    next_candidate: usize,
    /// Where the client's own ship is in its `known` list, as of the last scan.
    own_index: Option<usize>,
    last_scan_tick: u64,
    next_scan_tick: u64,
    /// Ticks from one full scan to the next.
    scan_every: u64,
}

impl Interest {
    /// Makes the next delta scan the whole area again.
    pub(crate) fn rescan(&mut self) {
        self.next_scan_tick = 0;
    }
}

/// Reused buffers for delta assembly.
#[derive(Default)]
pub(crate) struct DeltaScratch {
    /// Pending changes this tick: priority, entity, its index in the client's `known`.
    pending: Vec<(f32, Entity, usize)>,
    /// Ids of the entities that left the client's area this tick.
    gone: Vec<Arc<str>>,
    /// A full scan's entities in view, with their distance, sorted by entity.
    in_view: Vec<(Entity, f32)>,
    /// The client's known entities as the scan rebuilds them; swaps with `Client::known`.
    known: Vec<(Entity, Seen)>,
    tail: String,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn send_deltas(
    tick: Res<Tick>,
    settings: Res<ReplicationSettings>,
    instances: Query<(&Instance, &SpatialGrid)>,
    replicated: Query<&'static Replicated, Without<OutOfPlay>>,
    mut clients: Query<(Entity, &mut Client, &Kinematics, &InInstance, OwnState)>,
    stations: Query<&'static Station>,
    mut scratch: Local<DeltaScratch>,
    services: Res<super::SimServices>,
    encoder: Res<WorldEncoder>,
) {
    let scratch = &mut *scratch;
    for (ship, mut client, kin, instance, own) in &mut clients {
        if !client.streaming || client.last_snapshot_tick == tick.0 {
            continue;
        }
        let Ok((inst, grid)) = instances.get(instance.0) else {
            continue;
        };
        let client = &mut *client;
        scratch.pending.clear();
        scratch.gone.clear();
        let viewer = Viewer { ship, kin };
        if tick.0 >= client.interest.next_scan_tick {
            scan(
                scratch,
                client,
                &viewer,
                grid,
                &replicated,
                &settings,
                tick.0,
            );
        } else {
            plan_between_scans(scratch, client, ship, &replicated, &settings);
        }
        let own = Own {
            state: own,
            replicated: &replicated,
            stations: &stations,
        };
        write_tail(scratch, client, &viewer, inst, &own, &settings, &encoder);

        // Then as many pending entities as the budget allows, most urgent first.
        let mut out = String::with_capacity(320 + scratch.pending.len() * 100);
        encoder.0.delta_head(&mut out, tick.0);
        let room = match settings.budget_per_tick {
            0 => usize::MAX,
            b => b.saturating_sub(ENVELOPE_BYTES + out.len() + scratch.tail.len()),
        };
        let mut used = 0;
        let mut first = true;
        for &(_, entity, index) in &scratch.pending {
            let Ok(rep) = replicated.get(entity) else {
                continue;
            };
            if entity != ship && used + rep.fragment.len() + 1 > room {
                break; // the rest wait, gaining priority
            }
            used += rep.fragment.len() + 1;
            encoder.0.append_update(&mut out, &rep.fragment, first);
            first = false;
            if let Some(seen) = client.known.at_mut(index, entity) {
                seen.sent_tick = tick.0;
                seen.priority = 0.0;
            }
        }
        out.push_str(&scratch.tail);
        if !client.link.offer(GameOut::Delta(out)) {
            client.needs_snapshot = true;
            services.metrics.deltas_dropped.inc();
        }
    }
}

/// The player a delta is for: their ship and where it is.
struct Viewer<'a> {
    ship: Entity,
    kin: &'a Kinematics,
}

/// The player's own state, for the `you` member.
struct Own<'a, 'w, 's> {
    state: (&'a Pilot, &'a Hull, &'a Fuel, Option<&'a Docked>),
    replicated: &'a Query<'w, 's, &'static Replicated, Without<OutOfPlay>>,
    stations: &'a Query<'w, 's, &'static Station>,
}

/// A full scan of the client's area: what it knows, what changed (ranked by urgency into
/// the candidates to send until the next scan), what is new and what has left.
fn scan(
    scratch: &mut DeltaScratch,
    client: &mut Client,
    viewer: &Viewer,
    grid: &SpatialGrid,
    replicated: &Query<&Replicated, Without<OutOfPlay>>,
    settings: &ReplicationSettings,
    tick: u64,
) {
    let (ship, kin) = (viewer.ship, viewer.kin);
    let accrued = tick.saturating_sub(client.interest.last_scan_tick).max(1) as f32;
    scratch.in_view.clear();
    grid.for_each_within(kin.pos, settings.aoi_radius, |e| {
        scratch.in_view.push((e.entity, e.pos.distance(kin.pos)));
    });
    let visible = scratch.in_view.len();
    scratch.in_view.sort_unstable_by_key(|(e, _)| *e);
    // Merge what is in view with what the client knows (both sorted by entity):
    // known and in view → pending if changed; known only → gone; in view only → new.
    let mut old = std::mem::take(&mut client.known.entries);
    let mut was_known = old.drain(..).peekable();
    let now_known = &mut scratch.known;
    now_known.clear();
    client.interest.own_index = None;
    for &(entity, distance) in &scratch.in_view {
        while let Some((e, _)) = was_known.peek()
            && *e < entity
        {
            if let Some((_, seen)) = was_known.next() {
                scratch.gone.push(seen.id);
            }
        }
        let mut known = was_known.next_if(|(e, _)| *e == entity);
        let Ok(rep) = replicated.get(entity) else {
            now_known.extend(known);
            continue;
        };
        if rep.fragment.is_empty() {
            now_known.extend(known);
            continue;
        }
        let weight = if entity == ship {
            f32::INFINITY
        } else {
            urgency(distance) * accrued
        };
        match &mut known {
            Some((_, seen)) if rep.changed_tick > seen.sent_tick => {
                seen.priority += weight;
                scratch
                    .pending
                    .push((seen.priority, entity, now_known.len()));
            }
            Some(_) => {}
            None => {
                // New to this client: it needs the whole entity, soon.
                let priority = weight * 4.0;
                known = Some((
                    entity,
                    Seen {
                        id: rep.net_id.clone(),
                        sent_tick: 0,
                        priority,
                    },
                ));
                scratch.pending.push((priority, entity, now_known.len()));
            }
        }
        if entity == ship && known.is_some() {
            client.interest.own_index = Some(now_known.len());
        }
        now_known.extend(known);
    }
    // What is left was not found: it has left the area.
    scratch.gone.extend(was_known.map(|(_, seen)| seen.id));
    // The old list's buffer becomes the next scan's.
    client.known.entries = std::mem::replace(now_known, old);
    // Only the most urgent can go before the next scan: rank those, not all.
    let by_priority = |a: &(f32, Entity, usize), b: &(f32, Entity, usize)| b.0.total_cmp(&a.0);
    let keep = match settings.budget_per_tick {
        0 => scratch.pending.len(),
        b => (b / 64 + 1) * client.interest.scan_every.max(1) as usize,
    };
    if scratch.pending.len() > keep {
        scratch.pending.select_nth_unstable_by(keep, by_priority);
        scratch.pending.truncate(keep);
    }
    scratch.pending.sort_unstable_by(by_priority);
    let every = ((visible / CROWD) as u64).clamp(1, MAX_SCAN_TICKS);
    let phase = (tick + u64::from(ship.index().index())) % every;
    client.interest.last_scan_tick = tick;
    client.interest.scan_every = every;
    client.interest.next_scan_tick = tick + every - phase;
    client.interest.candidates.clear();
    client.interest.next_candidate = 0;
    client
        .interest
        .candidates
        .extend(scratch.pending.iter().map(|p| (p.1, p.2)));
}

/// Between scans: the own ship, then the ranked candidates not sent since. The candidates
/// before `next_candidate` are done until the next scan (sent since it, or unchanged when
/// their turn came), so each tick starts past them.
fn plan_between_scans(
    scratch: &mut DeltaScratch,
    client: &mut Client,
    ship: Entity,
    replicated: &Query<&Replicated, Without<OutOfPlay>>,
    settings: &ReplicationSettings,
) {
    // Between scans: the own ship, then the ranked candidates not sent since. The
    // candidates before `next_candidate` are done until the next scan (sent since
    // it, or unchanged when their turn came), so each tick starts past them.
    let budget = settings.budget_per_tick;
    let mut planned = 0;
    if let (Ok(rep), Some(at)) = (replicated.get(ship), client.interest.own_index)
        && client
            .known
            .at(at, ship)
            .is_some_and(|seen| rep.changed_tick > seen.sent_tick)
    {
        planned += rep.fragment.len() + 1;
        scratch.pending.push((f32::INFINITY, ship, at));
    }
    let interest = &mut client.interest;
    let mut at = interest.next_candidate;
    let mut done_so_far = true;
    while at < interest.candidates.len() && (budget == 0 || planned <= budget) {
        let (entity, index) = interest.candidates[at];
        at += 1;
        let waiting = match (replicated.get(entity), client.known.at(index, entity)) {
            (Ok(rep), Some(seen))
                if entity != ship
                    && seen.sent_tick < interest.last_scan_tick
                    && rep.changed_tick > seen.sent_tick =>
            {
                Some((rep.fragment.len(), seen.priority))
            }
            _ => None,
        };
        match waiting {
            Some((len, priority)) => {
                done_so_far = false;
                planned += len + 1;
                scratch.pending.push((priority, entity, index));
            }
            None if done_so_far => interest.next_candidate = at,
            None => {}
        }
    }
}

/// The fixed part of a delta, after its updates: removals, nearby events, the zone
/// context, and the player's own state when it changed.
fn write_tail(
    scratch: &mut DeltaScratch,
    client: &mut Client,
    viewer: &Viewer,
    inst: &Instance,
    own: &Own,
    settings: &ReplicationSettings,
    encoder: &WorldEncoder,
) {
    let (ship, kin) = (viewer.ship, viewer.kin);
    let (pilot, hull, fuel, docked) = own.state;
    let r2 = settings.aoi_radius * settings.aoi_radius;
    let mut events = inst
        .events
        .iter()
        .filter(|(pos, _)| pos.distance_squared(kin.pos) <= r2)
        .map(|(_, event)| event.as_str());
    let context = super::zones::context_at(&inst.def, kin.pos);
    // The player's own state, when it changed (beyond the spec's example).
    let mut you = None;
    if client
        .you_sent
        .as_ref()
        .is_none_or(|sent| sent.differs(pilot, hull, fuel, docked))
        && let Ok(rep) = own.replicated.get(ship)
    {
        let docked_at = docked
            .and_then(|d| own.stations.get(d.0).ok())
            .map(|station| station.station_id.as_str());
        you = Some(you_view(&rep.net_id, pilot, hull, fuel, docked_at));
        client.you_sent = Some(YouSent::of(pilot, hull, fuel, docked));
    }
    encoder.0.delta_tail(
        &mut scratch.tail,
        &scratch.gone,
        &mut events,
        &context,
        you.as_ref(),
    );
}

pub struct ReplicationPlugin {
    pub settings: ReplicationSettings,
    pub encoding: WorldEncoder,
}

impl Plugin for ReplicationPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.settings.clone())
            .insert_resource(self.encoding)
            .add_systems(
                FixedUpdate,
                (encode_changed, send_due_snapshots, send_deltas)
                    .chain()
                    .in_set(TickSet::Replication),
            );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_snapshots_of_clients_that_joined_together_spread_over_the_interval() {
        let (interval, clients, joined) = (100u64, 1000u64, 7u64);
        let mut last = vec![joined; clients as usize];
        let mut gaps = Vec::new();
        let mut busiest = 0;
        for tick in joined + 1..joined + 10 * interval {
            let mut due = 0;
            for (phase, last) in last.iter_mut().enumerate() {
                if periodic_snapshot_due(tick, *last, interval, phase as u64) {
                    gaps.push(tick - *last);
                    *last = tick;
                    due += 1;
                }
            }
            busiest = busiest.max(due);
        }
        // Ten per tick, not a thousand on one tick.
        assert_eq!(busiest, clients / interval);
        // Each client still gets one about every interval: half to one and a half of it
        // after joining, then exactly one.
        assert!(
            gaps.iter()
                .all(|&g| g >= interval / 2 && g <= interval * 3 / 2)
        );
        assert!(last.iter().all(|&l| l > joined + 8 * interval));
        // A zero interval does not divide by zero.
        assert!(periodic_snapshot_due(5, 0, 0, 3));
    }

    #[test]
    fn a_plugin_field_set_again_keeps_its_place() {
        let mut fields = ReplicatedFields::default();
        fields.set("bounty", 150.into());
        fields.set("faction", "red".into());
        fields.set("bounty", 200.into());
        let names: Vec<_> = fields.0.iter().map(|(n, v)| (*n, v.clone())).collect();
        assert_eq!(names, [("bounty", 200.into()), ("faction", "red".into())]);
    }
}
