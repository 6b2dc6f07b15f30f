//! The tail of the tick, which criterion's means hide: 1,000 players at one station (the
//! setup of `tick/players_1000_one_station`), stepped for 1,200 ticks (a minute of play,
//! twelve snapshot intervals), timing each tick.
//!
//! `cargo bench --bench tick_tail`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecliptic::metrics::Metrics;
use ecliptic::sim::SimServices;
use ecliptic::sim::scenario::{Crowd, CrowdSize};
use ecliptic::store::Store;

/// The world written as `/game` JSON clients read it.
const JSON: ecliptic::sim::replication::WorldEncoder =
    ecliptic::sim::replication::WorldEncoder(&ecliptic::protocol::game::world::JSON_WORLD);

const WARM_UP_TICKS: usize = 40;
const MEASURED_TICKS: usize = 1_200;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(dir.path(), metrics.clone()).expect("store opens");
    let mut crowd = Crowd::new(
        SimServices::new(store, metrics),
        CrowdSize::one_station(1_000),
        JSON,
    );
    for _ in 0..WARM_UP_TICKS {
        crowd.step();
    }
    let mut ticks: Vec<Duration> = (0..MEASURED_TICKS)
        .map(|_| {
            let started = Instant::now();
            crowd.step();
            started.elapsed()
        })
        .collect();
    let mean = ticks.iter().sum::<Duration>() / MEASURED_TICKS as u32;
    ticks.sort_unstable();
    let at = |q: f64| ticks[((MEASURED_TICKS as f64 * q) as usize).min(MEASURED_TICKS - 1)];
    println!(
        "tick/players_1000_one_station over {MEASURED_TICKS} ticks: mean {mean:.2?}, \
         p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        at(0.5),
        at(0.99),
        ticks[MEASURED_TICKS - 1]
    );
}
