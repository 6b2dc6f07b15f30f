//! What a room script costs the tick: the space game with 100 ships in one instance,
//! stepped with no script, with a room script whose loop does nothing, and with one whose
//! loop reads every ship (`ecliptic.ships()`) and touches each (position and hull read,
//! one field written back into a table of its own).
//!
//! `cargo bench --bench scripts`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ecliptic::metrics::Metrics;
use ecliptic::sim::SimServices;
use ecliptic::sim::scenario::{Crowd, CrowdSize};
use ecliptic::store::Store;

const EMPTY_LOOP: &str = "return { loop = function(room, tick, inputs) end }";

const TOUCH_100: &str = r#"
local seen = {}
return {
    loop = function(room, tick, inputs)
        local hull = 0
        for _, ship in ecliptic.ships() do
            hull += ship.hull
            seen[ship.id] = ship.x + ship.y
        end
        assert(hull > 0)
    end,
}
"#;

fn crowd(script: Option<&str>) -> (Crowd, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(dir.path(), metrics.clone()).expect("store opens");
    let services = SimServices::new(store, metrics);
    let size = CrowdSize::spread_out(100, 0, 0);
    let mut crowd = match script {
        Some(_) => Crowd::scripted(services, size),
        None => Crowd::new(services, size),
    };
    if let Some(source) = script {
        crowd.start_room_script(source).expect("the script starts");
    }
    for _ in 0..20 {
        crowd.step();
    }
    (crowd, dir)
}

fn script_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("scripts");
    group.measurement_time(Duration::from_secs(6));
    for (name, script) in [
        ("ships_100_no_script", None),
        ("ships_100_empty_room_loop", Some(EMPTY_LOOP)),
        ("ships_100_loop_touching_100", Some(TOUCH_100)),
    ] {
        let (mut crowd, _dir) = crowd(script);
        group.bench_function(name, |b| b.iter(|| crowd.step()));
    }
    group.finish();
}

criterion_group!(benches, script_overhead);
criterion_main!(benches);
