//! Replacing a built-in feature: this server leaves out the pirate AI (`NpcPlugin`) and
//! puts traders in its place, ships that fly a round of each system's stations and
//! zones. Clients see them as entities of kind `trader`, like any other ship.
//!
//! ```sh
//! cargo run --release --example custom_npcs -- --http 127.0.0.1:8080
//! ```

use std::sync::Arc;

use ecliptic::prelude::*;
use glam::Vec2;

/// Traders in each system.
const TRADERS_PER_SYSTEM: usize = 3;
/// How close a trader comes to a waypoint before heading for the next.
const ARRIVED: f32 = 150.0;

/// A trader and the waypoint it is flying to.
#[derive(Component)]
struct Trader {
    next: usize,
}

/// Where traders go in an instance: its stations, then its zones' centres.
fn waypoints(instance: &Instance) -> Vec<Vec2> {
    let def = &instance.def;
    def.stations
        .iter()
        .map(|s| Vec2::new(s.x, s.y))
        .chain(def.zones.iter().map(|z| Vec2::new(z.center.x, z.center.y)))
        .collect()
}

/// Keeps every instance at its number of traders, each starting at a waypoint of its own.
fn launch_traders(world: &mut World) {
    let data = world.resource::<Data>().0.clone();
    let Some(class) = data.ship_class(&data.ships.pirate_class).cloned() else {
        return;
    };
    let class = Arc::new(class);
    let mut short = Vec::new();
    for (entity, instance) in world.query::<(Entity, &Instance)>().iter(world) {
        short.push((entity, waypoints(instance)));
    }
    for (instance, stops) in short {
        let flying = world
            .query::<(&Trader, &InInstance)>()
            .iter(world)
            .filter(|(_, i)| i.0 == instance)
            .count();
        for n in flying..TRADERS_PER_SYSTEM {
            let Some(&start) = stops.get(n % stops.len().max(1)) else {
                break;
            };
            let id = world.resource_mut::<NetIds>().next("trader_");
            let ship = spawn_ship(
                world,
                instance,
                class.clone(),
                id,
                "trader",
                start + Vec2::new(60.0 * n as f32, 0.0),
                0.0,
                class.hull,
                class.fuel,
            );
            if let Some(ship) = ship {
                world.entity_mut(ship).insert(Trader { next: n + 1 });
            }
        }
    }
}

/// Steers each trader at its waypoint, and on to the next once there.
fn fly_traders(
    instances: Query<&Instance>,
    mut traders: Query<(&mut Trader, &Kinematics, &InInstance, &mut Controls)>,
) {
    for (mut trader, kinematics, in_instance, mut controls) in &mut traders {
        let Ok(instance) = instances.get(in_instance.0) else {
            continue;
        };
        let stops = waypoints(instance);
        if stops.is_empty() {
            continue;
        }
        let mut target = stops[trader.next % stops.len()];
        if kinematics.pos.distance(target) < ARRIVED {
            trader.next += 1;
            target = stops[trader.next % stops.len()];
        }
        let to = target - kinematics.pos;
        let turn = Vec2::from_angle(kinematics.rot).angle_to(to);
        *controls = Controls {
            thrust: if turn.abs() < 0.5 { 0.7 } else { 0.1 },
            turn: (turn * 2.0).clamp(-1.0, 1.0),
            fire: false,
            dock: false,
        };
    }
}

struct TraderPlugin;

impl Plugin for TraderPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(
            FixedUpdate,
            (launch_traders, fly_traders).chain().in_set(TickSet::Npc),
        );
    }
}

fn main() -> std::process::ExitCode {
    ecliptic::cli::main_with(|server| {
        server
            .game_plugins(|game| game.disable::<NpcPlugin>())
            .add_plugin(TraderPlugin)
    })
}
