//! Replication in a crowded area: with more entities in view than the delta budget can
//! carry, full scans of the area run every few ticks; every entity must still reach every
//! client, and one that disappears must be removed from every client within a scan.

use std::sync::Arc;

use ecliptic::metrics::Metrics;
use ecliptic::sim::players::{Client, Pilot, despawn_ship};
use ecliptic::sim::scenario::{Crowd, CrowdSize};
use ecliptic::sim::ships::Controls;
use ecliptic::sim::{SimServices, Tick};

/// The world written as `/game` JSON clients read it.
const JSON: ecliptic::sim::replication::WorldEncoder =
    ecliptic::sim::replication::WorldEncoder(&ecliptic::protocol::game::world::JSON_WORLD);

#[test]
fn a_crowded_area_still_reaches_everyone_and_removals_follow() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = crate::common::database::open_store(dir.path());
    // 300 in view: a full scan every other tick.
    let players = 300;
    let mut crowd = Crowd::new(
        SimServices::new(store, metrics),
        CrowdSize {
            ships: players,
            players,
            projectiles: 0,
            aoi_radius: 2000.0,
            spread: 100.0,
            budget_per_tick: 16 * 1024 / 20,
        },
        JSON,
    );
    // Everyone turns in place: always changing, never leaving anyone's area.
    let world = crowd.sim.world_mut();
    for mut controls in world.query::<&mut Controls>().iter_mut(world) {
        controls.thrust = 0.0;
        controls.turn = 1.0;
    }
    // ~4 entities fit a tick's budget, so 300 take a while; a snapshot every 100 ticks
    // starts each client over with the ~80 nearest. Each client takes its snapshots on its
    // own tick of the interval, so over one interval look at each client once, 95 ticks
    // after its last snapshot.
    for _ in 0..200 {
        crowd.step();
    }
    let mut checked = 0;
    for _ in 0..100 {
        crowd.step();
        let world = crowd.sim.world_mut();
        let tick = world.resource::<Tick>().0;
        for client in world.query::<&Client>().iter(world) {
            if tick - client.last_snapshot_tick != 95 {
                continue;
            }
            assert_eq!(client.known.len(), players, "every ship is in view");
            let never_sent = client.known.values().filter(|s| s.sent_tick == 0).count();
            assert_eq!(never_sent, 0, "a client was never sent {never_sent} ships");
            checked += 1;
        }
    }
    assert_eq!(checked, players, "every client was looked at once");

    let world = crowd.sim.world_mut();
    let gone = world
        .query::<(bevy_ecs::entity::Entity, &Pilot)>()
        .iter(world)
        .map(|(e, _)| e)
        .last()
        .unwrap();
    despawn_ship(world, gone);
    for _ in 0..16 {
        crowd.step();
    }
    let world = crowd.sim.world_mut();
    let still_known = world
        .query::<&Client>()
        .iter(world)
        .filter(|c| c.known.contains(gone))
        .count();
    assert_eq!(
        still_known, 0,
        "the removed ship is still known to some clients"
    );
}
