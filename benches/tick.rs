//! The cost of the simulation's fixed overhead: an empty tick, and one command's trip from
//! the inbox through its handler to a reply.
//!
//! `cargo bench --bench tick`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ecliptic::bridge::{Command, Inbox};
use ecliptic::metrics::Metrics;
use ecliptic::sim::{LoopConfig, Sim, SimServices};
use ecliptic::store::Store;

fn sim() -> (Sim, Inbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(dir.path(), metrics.clone()).expect("store opens");
    let (inbox, rx) = Inbox::bounded(1024, metrics.clone());
    let sim = Sim::new(
        LoopConfig {
            tick_hz: 20,
            commands_per_wake: 1024,
            max_catch_up_ticks: 3,
        },
        SimServices { store, metrics },
        rx,
        |_| {},
    );
    (sim, inbox, dir)
}

fn empty_tick(c: &mut Criterion) {
    let (mut sim, _inbox, _dir) = sim();
    c.bench_function("tick/empty", |b| b.iter(|| sim.step()));
}

fn command_path(c: &mut Criterion) {
    let (mut sim, inbox, _dir) = sim();
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

criterion_group!(benches, empty_tick, command_path);
criterion_main!(benches);
