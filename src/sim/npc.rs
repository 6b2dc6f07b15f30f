//! NPC pirates. Each zone holds pirates in proportion to its risk level (one per 15 points);
//! a destroyed pirate is replaced after `pirate_respawn_ms`. A pirate seeks the nearest
//! player in `pirate_aggro_radius`, fires when it faces them, flees once its hull drops
//! below `pirate_flee_hull_fraction`, and otherwise loiters in its zone.

use std::f32::consts::PI;
use std::sync::Arc;

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;
use glam::Vec2;

use super::instances::{Data, InInstance, Instance};
use super::physics::{Kinematics, SpatialGrid};
use super::players::{NetIds, spawn_ship};
use super::ships::{Controls, Hull, Ship};
use super::{Tick, TickRate, TickSet};

#[derive(Component, Debug, Clone, Copy)]
pub struct Pirate {
    pub zone: usize,
    pub fleeing: bool,
}

/// Per instance: when each zone may next spawn a pirate.
#[derive(Component, Debug, Default)]
pub struct PirateSpawns {
    next_tick: Vec<u64>,
}

/// Pirates a zone of this risk level holds.
pub fn pirates_for_risk(risk_level: u32) -> usize {
    (risk_level / 15) as usize
}

fn spawn_pirates(world: &mut World) {
    let tick = world.resource::<Tick>().0;
    let hz = world.resource::<TickRate>().0;
    let data = world.resource::<Data>().0.clone();
    let Some(class) = data.ship_class(&data.ships.pirate_class).cloned() else {
        return;
    };
    let class = Arc::new(class);
    let delay = (u64::from(data.rules.pirate_respawn_ms) * u64::from(hz)).div_ceil(1000);
    let instances: Vec<(Entity, Arc<super::data::SystemDef>)> = world
        .query::<(Entity, &Instance)>()
        .iter(world)
        .map(|(e, i)| (e, i.def.clone()))
        .collect();
    let mut alive: std::collections::HashMap<(Entity, usize), usize> = Default::default();
    for (pirate, instance) in world.query::<(&Pirate, &InInstance)>().iter(world) {
        *alive.entry((instance.0, pirate.zone)).or_default() += 1;
    }
    for (instance, def) in instances {
        if world.get::<PirateSpawns>(instance).is_none() {
            world.entity_mut(instance).insert(PirateSpawns {
                next_tick: vec![0; def.zones.len()],
            });
        }
        for (index, zone) in def.zones.iter().enumerate() {
            let wanted = pirates_for_risk(zone.risk_level);
            let count = alive.get(&(instance, index)).copied().unwrap_or(0);
            let due = world
                .get::<PirateSpawns>(instance)
                .and_then(|s| s.next_tick.get(index).copied())
                .is_some_and(|t| t <= tick);
            if count >= wanted || !due {
                continue;
            }
            let angle = rand::random::<f32>() * 2.0 * PI;
            let distance = zone.radius * 0.8 * rand::random::<f32>().sqrt();
            let pos = Vec2::new(zone.center.x, zone.center.y) + Vec2::from_angle(angle) * distance;
            let net_id = world.resource_mut::<NetIds>().next("npc_");
            let hull = class.hull;
            let fuel = class.fuel;
            if let Some(pirate) = spawn_ship(
                world,
                instance,
                class.clone(),
                net_id,
                "pirate",
                pos,
                angle,
                hull,
                fuel,
            ) {
                world.entity_mut(pirate).insert(Pirate {
                    zone: index,
                    fleeing: false,
                });
            }
            if let Some(mut spawns) = world.get_mut::<PirateSpawns>(instance)
                && let Some(next) = spawns.next_tick.get_mut(index)
            {
                // Spawn the initial population quickly, replacements after the delay.
                *next = tick + if count + 1 < wanted { 1 } else { delay };
            }
        }
    }
}

/// The signed angle from heading `rot` to direction `to`, in [-π, π].
fn angle_to(rot: f32, to: Vec2) -> f32 {
    let desired = to.y.atan2(to.x);
    let mut diff = desired - rot;
    while diff > PI {
        diff -= 2.0 * PI;
    }
    while diff < -PI {
        diff += 2.0 * PI;
    }
    diff
}

fn pirate_ai(
    data: Res<Data>,
    instances: Query<(&Instance, &SpatialGrid)>,
    mut pirates: Query<(
        &Ship,
        &Kinematics,
        &Hull,
        &InInstance,
        &mut Controls,
        &mut Pirate,
    )>,
) {
    let rules = &data.0.rules;
    for (ship, kin, hull, instance, mut controls, mut pirate) in &mut pirates {
        let Ok((inst, grid)) = instances.get(instance.0) else {
            continue;
        };
        if (hull.hp as f32) < hull.max as f32 * rules.pirate_flee_hull_fraction {
            pirate.fleeing = true;
        }
        let mut nearest: Option<(Vec2, f32)> = None;
        grid.for_each_within(kin.pos, rules.pirate_aggro_radius, |entry| {
            if !entry.player || entry.docked {
                return;
            }
            let d = entry.pos.distance(kin.pos);
            if nearest.is_none_or(|(_, best)| d < best) {
                nearest = Some((entry.pos, d));
            }
        });
        let weapon = &ship.class.weapon;
        let range = weapon.projectile_speed * weapon.lifetime_ms as f32 / 1000.0 * 0.9;
        *controls = match (nearest, pirate.fleeing) {
            (Some((target, _)), true) => {
                let away = angle_to(kin.rot, kin.pos - target);
                Controls {
                    thrust: 1.0,
                    turn: (away * 2.0).clamp(-1.0, 1.0),
                    fire: false,
                    dock: false,
                }
            }
            (Some((target, distance)), false) => {
                let diff = angle_to(kin.rot, target - kin.pos);
                Controls {
                    thrust: if distance > range * 0.5 { 1.0 } else { 0.15 },
                    turn: (diff * 2.0).clamp(-1.0, 1.0),
                    fire: diff.abs() < 0.25 && distance < range,
                    dock: false,
                }
            }
            (None, _) => {
                let zone = inst.def.zones.get(pirate.zone);
                let home = zone.map_or(kin.pos, |z| Vec2::new(z.center.x, z.center.y));
                let radius = zone.map_or(0.0, |z| z.radius);
                if kin.pos.distance(home) > radius * 0.9 {
                    Controls {
                        thrust: 0.6,
                        turn: (angle_to(kin.rot, home - kin.pos) * 2.0).clamp(-1.0, 1.0),
                        fire: false,
                        dock: false,
                    }
                } else {
                    Controls::default()
                }
            }
        };
    }
}

pub struct NpcPlugin;

impl Plugin for NpcPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(
            FixedUpdate,
            (spawn_pirates, pirate_ai).chain().in_set(TickSet::Npc),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_wrap() {
        assert!((angle_to(0.0, Vec2::Y) - PI / 2.0).abs() < 1e-5);
        assert!((angle_to(0.0, -Vec2::Y) + PI / 2.0).abs() < 1e-5);
        let d = angle_to(PI - 0.1, Vec2::from_angle(-PI + 0.1));
        assert!((d - 0.2).abs() < 1e-4, "{d}");
    }
}
