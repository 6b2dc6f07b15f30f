//! What a room script costs the tick: the space game with 100 ships in one instance,
//! stepped without the scripts plugin, with it but no script, with a room script whose
//! loop does nothing, and with one whose loop reads every ship (`ecliptic.ships()`) and
//! touches each (position and hull read, one value written into a table of its own).
//!
//! `cargo bench --bench scripts`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ecliptic::metrics::Metrics;
use ecliptic::sim::SimServices;
use ecliptic::sim::scenario::{Crowd, CrowdSize};
use ecliptic::store::Store;

/// The world written as `/game` JSON clients read it.
const JSON: ecliptic::sim::replication::WorldEncoder =
    ecliptic::sim::replication::WorldEncoder(&ecliptic::protocol::game::world::JSON_WORLD);

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

/// The space game with 100 ships; `scripts`: on a server that runs scripts, with a room
/// running `script` if one is given.
fn crowd(scripts: bool, script: Option<&str>) -> (Crowd, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(dir.path(), metrics.clone()).expect("store opens");
    let services = SimServices::new(store, metrics);
    let size = CrowdSize::spread_out(100, 0, 0);
    let mut crowd = match scripts {
        true => Crowd::scripted(services, size, JSON),
        false => Crowd::new(services, size, JSON),
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
    for (name, scripts, script) in [
        ("ships_100_no_script", false, None),
        ("ships_100_scripts_idle", true, None),
        ("ships_100_empty_room_loop", true, Some(EMPTY_LOOP)),
        ("ships_100_loop_touching_100", true, Some(TOUCH_100)),
    ] {
        let (mut crowd, _dir) = crowd(scripts, script);
        group.bench_function(name, |b| b.iter(|| crowd.step()));
    }
    group.finish();
}

criterion_group!(benches, script_overhead);
criterion_main!(benches);
