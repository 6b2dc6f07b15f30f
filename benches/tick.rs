//! The simulation's tick.
//!
//! - `tick/empty`: the fixed overhead of a tick with no game plugins.
//! - `command/inbox_to_reply`: one command's trip from the inbox through its handler to a
//!   reply.
//! - `tick/ships_N`: the space game with N ships and N projectiles in one instance, no
//!   clients (the simulation alone).
//! - `tick/ships_5000_players_500`: the same with 500 of the ships played by clients that
//!   receive a delta every tick (area of interest 1000).
//! - `replication/deltas_per_client`: assembling one client's delta in a crowd, from a full scan of its area.
//! - `tick/players_1000_one_station`: 1,000 players in each other's area of interest, with
//!   the default delta budget (the `game` load scenario without the network).
//!
//! `cargo bench --bench tick`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ecliptic::bridge::{Command, Inbox};
use ecliptic::metrics::Metrics;
use ecliptic::sim::scenario::{Crowd, CrowdSize};
use ecliptic::sim::{LoopConfig, Sim, SimServices};
use ecliptic::store::Store;

/// The world written as `/game` JSON clients read it.
const JSON: ecliptic::sim::replication::WorldEncoder =
    ecliptic::sim::replication::WorldEncoder(&ecliptic::protocol::game::world::JSON_WORLD);

fn services() -> (SimServices, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(dir.path(), metrics.clone()).expect("store opens");
    (SimServices::new(store, metrics), dir)
}

fn bare_sim() -> (Sim, Inbox, tempfile::TempDir) {
    let (services, dir) = services();
    let (inbox, rx) = Inbox::bounded(1024, services.metrics.clone());
    let sim = Sim::new(
        LoopConfig::from(&ecliptic::Config::default()),
        services,
        rx,
        |_| {},
    );
    (sim, inbox, dir)
}

fn empty_tick(c: &mut Criterion) {
    let (mut sim, _inbox, _dir) = bare_sim();
    c.bench_function("tick/empty", |b| b.iter(|| sim.step()));
}

fn command_path(c: &mut Criterion) {
    let (mut sim, inbox, _dir) = bare_sim();
    c.bench_function("command/inbox_to_reply", |b| {
        b.iter(|| {
            let (reply, mut answer) = tokio::sync::oneshot::channel();
            inbox
                .send(Command::Status { reply })
                .expect("inbox has room");
            sim.drain_and_handle();
            answer.try_recv().expect("answered")
        })
    });
}

fn crowded_ticks(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    for (ships, players) in [(1_000, 0), (5_000, 0), (20_000, 0), (5_000, 500)] {
        let (services, _dir) = services();
        let mut crowd = Crowd::new(services, CrowdSize::spread_out(ships, players, ships), JSON);
        for _ in 0..20 {
            crowd.step();
        }
        let name = match players {
            0 => format!("ships_{ships}"),
            n => format!("ships_{ships}_players_{n}"),
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                crowd.refill_projectiles();
                crowd.step()
            })
        });
    }
    group.finish();
}

fn delta_assembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("replication");
    let players = 500;
    let (services, _dir) = services();
    let mut crowd = Crowd::new(services, CrowdSize::spread_out(5_000, players, 0), JSON);
    for _ in 0..20 {
        crowd.step();
    }
    group.throughput(Throughput::Elements(players as u64));
    group.bench_function("deltas_per_client", |b| b.iter(|| crowd.deltas_again()));
    group.finish();
}

/// 1,000 players at one station, everyone in everyone's area of interest, with the
/// default delta budget: the load generator's `game` scenario without the network.
fn one_station(c: &mut Criterion) {
    let (services, _dir) = services();
    let mut crowd = Crowd::new(services, CrowdSize::one_station(1_000), JSON);
    for _ in 0..20 {
        crowd.step();
    }
    let mut group = c.benchmark_group("tick");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("players_1000_one_station", |b| b.iter(|| crowd.step()));
    group.finish();
}

criterion_group!(
    benches,
    empty_tick,
    command_path,
    crowded_ticks,
    delta_assembly,
    one_station
);
criterion_main!(benches);
