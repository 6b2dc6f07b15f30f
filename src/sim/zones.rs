//! Zones: circles with a risk level, a security level, a profit multiplier and a PvP flag.
//! Where zones overlap, a position's context blends them by depth: a zone weighs
//! `1 - distance / radius`, so its centre counts fully and its rim not at all.

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;

use super::TickSet;
use super::data::SystemDef;
use super::facts::{ZoneEntered, ZoneLeft};
use super::instances::{InInstance, Instance};
use super::physics::Kinematics;
use super::players::Pilot;
use super::ships::OutOfPlay;

pub use crate::services::play::ZoneContext;

/// Outside every zone: no risk, full security, no bonus, no PvP.
fn open_space() -> ZoneContext {
    ZoneContext {
        zone_ids: Vec::new(),
        blended_risk: 0.0,
        blended_security: 1.0,
        blended_profit_multiplier: 1.0,
        pvp_allowed: false,
    }
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

/// The context at `pos` in `system`.
pub fn context_at(system: &SystemDef, pos: glam::Vec2) -> ZoneContext {
    let mut ctx = open_space();
    let (mut weight, mut risk, mut security, mut profit) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for zone in &system.zones {
        let distance = pos.distance(glam::Vec2::new(zone.center.x, zone.center.y));
        if distance >= zone.radius {
            continue;
        }
        let w = (1.0 - distance / zone.radius).max(1e-3);
        ctx.zone_ids.push(zone.zone_id.clone());
        ctx.pvp_allowed |= zone.pvp_allowed;
        weight += w;
        risk += w * zone.risk_level as f32 / 100.0;
        security += w * zone.security_level as f32 / 100.0;
        profit += w * zone.profit_multiplier;
    }
    if weight > 0.0 {
        ctx.blended_risk = round3(risk / weight);
        ctx.blended_security = round3(security / weight);
        ctx.blended_profit_multiplier = round3(profit / weight);
    }
    ctx
}

/// Whether a player may damage another player at `pos`.
pub fn pvp_allowed_at(system: &SystemDef, pos: glam::Vec2) -> bool {
    system
        .zones
        .iter()
        .any(|z| z.pvp_allowed && pos.distance(glam::Vec2::new(z.center.x, z.center.y)) < z.radius)
}

/// The zones a player's ship is in, to tell when it enters or leaves one.
#[derive(Component, Debug, Default)]
pub struct InZones(pub Vec<String>);

/// Writes [`ZoneEntered`] and [`ZoneLeft`] as players' ships cross zone edges.
#[allow(clippy::type_complexity)]
fn track_zones(
    mut commands: Commands,
    instances: Query<&Instance>,
    mut ships: Query<
        (
            Entity,
            &Pilot,
            &Kinematics,
            &InInstance,
            Option<&mut InZones>,
        ),
        Without<OutOfPlay>,
    >,
    mut entered: MessageWriter<ZoneEntered>,
    mut left: MessageWriter<ZoneLeft>,
) {
    for (ship, pilot, kin, instance, known) in &mut ships {
        let Ok(instance) = instances.get(instance.0) else {
            continue;
        };
        let inside =
            || {
                instance.def.zones.iter().filter(|z| {
                    kin.pos.distance(glam::Vec2::new(z.center.x, z.center.y)) < z.radius
                })
            };
        let before: &[String] = known.as_deref().map_or(&[], |k| &k.0);
        // Checked without allocating: most ships cross no edge in most ticks.
        let unchanged = known.is_some()
            && inside().count() == before.len()
            && inside().zip(before).all(|(z, b)| z.zone_id == *b);
        if unchanged {
            continue;
        }
        let now: Vec<String> = inside().map(|z| z.zone_id.clone()).collect();
        for zone_id in now.iter().filter(|z| !before.contains(z)) {
            entered.write(ZoneEntered {
                ship,
                user_id: pilot.user_id,
                zone_id: zone_id.clone(),
            });
        }
        for zone_id in before.iter().filter(|z| !now.contains(z)) {
            left.write(ZoneLeft {
                ship,
                user_id: pilot.user_id,
                zone_id: zone_id.clone(),
            });
        }
        match known {
            Some(mut known) => known.0 = now,
            None => {
                commands.entity(ship).insert(InZones(now));
            }
        }
    }
}

/// Zone crossings of players' ships, as gameplay facts.
pub struct ZonesPlugin;

impl Plugin for ZonesPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(FixedUpdate, track_zones.in_set(TickSet::Zones));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::data::GameData;

    #[test]
    fn blending_by_depth() {
        let data = GameData::embedded().unwrap();
        let sol = data.system("sol-1").unwrap();
        let earth = sol
            .zones
            .iter()
            .find(|z| z.zone_id == "z_earth_approach")
            .unwrap();
        let centre = glam::Vec2::new(earth.center.x, earth.center.y);
        let ctx = context_at(sol, centre);
        assert_eq!(ctx.zone_ids, ["z_earth_approach"]);
        assert!((ctx.blended_risk - earth.risk_level as f32 / 100.0).abs() < 1e-3);
        assert!(!ctx.pvp_allowed);
        let far = context_at(sol, glam::Vec2::new(-11000.0, 0.0));
        assert!(far.zone_ids.is_empty());
        assert_eq!(far.blended_profit_multiplier, 1.0);
        let belt = sol
            .zones
            .iter()
            .find(|z| z.zone_id == "z_asteroid_belt")
            .unwrap();
        assert!(pvp_allowed_at(
            sol,
            glam::Vec2::new(belt.center.x, belt.center.y)
        ));
    }

    #[test]
    fn overlapping_zones_weigh_by_depth() {
        let data = GameData::embedded().unwrap();
        let mut sol = data.system("sol-1").unwrap().clone();
        sol.zones.truncate(1);
        let mut second = sol.zones[0].clone();
        second.zone_id = "z_second".into();
        second.center.x += 400.0;
        second.risk_level = 90;
        sol.zones.push(second);
        let at_first = glam::Vec2::new(sol.zones[0].center.x, sol.zones[0].center.y);
        let ctx = context_at(&sol, at_first);
        assert_eq!(ctx.zone_ids.len(), 2);
        // Nearer the first zone's centre, so closer to its risk than to the second's.
        let (r1, r2) = (sol.zones[0].risk_level as f32 / 100.0, 0.9);
        assert!(
            ctx.blended_risk > r1 && ctx.blended_risk < (r1 + r2) / 2.0,
            "{ctx:?}"
        );
    }
}
