//! Stations: docking, and repairs.
//!
//! `dock_request` docks a ship within `dock_radius` of a station moving slower than
//! `dock_max_speed` (rules.json). A docked ship holds the station's position, is refuelled,
//! and may trade and repair there; thrust undocks it. Repairs cost credits per point of
//! hull restored.

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;
use glam::Vec2;

use super::TickSet;
use super::instances::{Data, InInstance, Instance};
use super::physics::{Kinematics, Steering};
use super::players::{GameError, Pilot};
use super::ships::{Controls, Docked, Fuel, Hull, OutOfPlay};
use super::trades::Settlement;
use crate::services::play::Refusal;

#[derive(Component, Debug, Clone)]
pub struct Station {
    pub station_id: String,
    pub pos: Vec2,
}

/// The instance's home station (where new and respawning players appear) and its position.
pub fn home_station(world: &mut World, instance: Entity) -> Option<(Entity, Vec2)> {
    let home = world.get::<Instance>(instance)?.def.home_station.clone();
    world
        .query::<(Entity, &Station, &InInstance)>()
        .iter(world)
        .find(|(_, s, i)| i.0 == instance && s.station_id == home)
        .map(|(e, s, _)| (e, s.pos))
}

/// The station `station_id` if `ship` is docked there; `UNKNOWN_STATION` or `NOT_DOCKED`
/// otherwise.
pub fn docked_station(
    world: &mut World,
    ship: Entity,
    station_id: &str,
) -> Result<Entity, GameError> {
    let instance = world
        .get::<InInstance>(ship)
        .map(|i| i.0)
        .ok_or_else(|| GameError::new(Refusal::NotJoined, "join a system first"))?;
    let station = world
        .query::<(Entity, &Station, &InInstance)>()
        .iter(world)
        .find(|(_, s, i)| i.0 == instance && s.station_id == station_id)
        .map(|(e, _, _)| e)
        .ok_or_else(|| {
            GameError::new(
                Refusal::UnknownStation,
                format!("no station named {station_id:?} in this system"),
            )
        })?;
    match world.get::<Docked>(ship) {
        Some(docked) if docked.0 == station => Ok(station),
        _ => Err(GameError::new(
            Refusal::NotDocked,
            format!("dock at {station_id} first"),
        )),
    }
}

/// The blended profit multiplier of the zones around a station.
pub fn profit_multiplier_at(world: &World, station: Entity) -> f32 {
    let (Some(pos), Some(instance)) = (
        world.get::<Station>(station).map(|s| s.pos),
        world.get::<InInstance>(station),
    ) else {
        return 1.0;
    };
    world.get::<Instance>(instance.0).map_or(1.0, |i| {
        super::zones::context_at(&i.def, pos).blended_profit_multiplier
    })
}

/// Checks a full hull repair at `station_id`, for credits: what it would change.
pub fn quote_repair(
    world: &mut World,
    ship: Entity,
    station_id: &str,
) -> Result<Settlement, GameError> {
    let station = docked_station(world, ship, station_id)?;
    let per_hp = world.resource::<Data>().0.rules.repair_cost_per_hp;
    let hull = *world
        .get::<Hull>(ship)
        .ok_or_else(|| GameError::new(Refusal::NotJoined, "join a system first"))?;
    let missing = i64::from(hull.max - hull.hp.min(hull.max));
    let cost = missing.saturating_mul(per_hp);
    let pilot = world
        .get::<Pilot>(ship)
        .ok_or_else(|| GameError::new(Refusal::NotJoined, "join a system first"))?;
    if pilot.credits < cost {
        return Err(GameError::new(
            Refusal::InsufficientCredits,
            format!("repair costs {cost} credits, {} available", pilot.credits),
        ));
    }
    Ok(Settlement {
        station,
        credits: -cost,
        cargo: None,
        repair: true,
        details: crate::services::play::TradeDetails::Repair {
            station_id: station_id.to_owned(),
            repaired_hp: missing,
            cost,
            hull: hull.max,
        },
    })
}

#[allow(clippy::type_complexity)]
fn dock_ships(
    mut commands: Commands,
    data: Res<Data>,
    stations: Query<(Entity, &Station, &InInstance)>,
    mut ships: Query<
        (
            Entity,
            &Controls,
            &Kinematics,
            &InInstance,
            &mut Steering,
            &mut Fuel,
            Option<&super::players::Pilot>,
        ),
        (Without<Docked>, Without<OutOfPlay>),
    >,
    mut docked: MessageWriter<super::facts::ShipDocked>,
) {
    let rules = &data.0.rules;
    for (ship, controls, kin, instance, mut steering, mut fuel, pilot) in &mut ships {
        if !controls.dock || kin.vel.length() > rules.dock_max_speed {
            continue;
        }
        let nearest = stations
            .iter()
            .filter(|(_, _, i)| i.0 == instance.0)
            .map(|(e, s, _)| (e, s.pos, s.pos.distance(kin.pos)))
            .filter(|(_, _, d)| *d <= rules.dock_radius)
            .min_by(|a, b| a.2.total_cmp(&b.2));
        if let Some((station, pos, _)) = nearest {
            commands.entity(ship).insert(Docked(station));
            steering.place = Some((pos, kin.rot));
            steering.linvel = Vec2::ZERO;
            steering.angvel = 0.0;
            fuel.level = fuel.max;
            docked.write(super::facts::ShipDocked {
                ship,
                station,
                user_id: pilot.map(|p| p.user_id),
            });
        }
    }
}

pub struct StationsPlugin;

impl Plugin for StationsPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(FixedUpdate, dock_ships.in_set(TickSet::Stations));
    }
}
