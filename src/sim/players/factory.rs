//! Making and removing ships, and the ids clients know entities by.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::*;
use crate::bridge::ConnId;
use crate::sim::data::ShipClass;
use crate::sim::instances::{Data, InInstance};
use crate::sim::physics::{Body, Kinematics, PhysicsSpace, Steering};
use crate::sim::replication::Replicated;
use crate::sim::ships::{Controls, Docked, Fuel, Hull, Ship};
use crate::sim::stations;
use crate::sim::weapons::Weapon;

/// Hands out the ids clients know entities by.
#[derive(Resource, Default)]
pub struct NetIds {
    next: u64,
}

impl NetIds {
    pub fn next(&mut self, prefix: &str) -> Arc<str> {
        self.next += 1;
        Arc::from(format!("{prefix}{}", self.next))
    }
}

/// Spawns a ship of `class` in `instance`, docked at `station` if one is given.
#[allow(clippy::too_many_arguments)]
pub fn spawn_ship(
    world: &mut World,
    instance: Entity,
    class: Arc<ShipClass>,
    net_id: Arc<str>,
    kind: &'static str,
    pos: glam::Vec2,
    rot: f32,
    hull: u32,
    fuel: f32,
) -> Option<Entity> {
    let entity = world.spawn_empty().id();
    let handle = {
        let mut space = world.get_mut::<PhysicsSpace>(instance)?;
        space.add_ship(entity, pos, rot)
    };
    world.entity_mut(entity).insert((
        Ship {
            class: class.clone(),
        },
        Hull {
            hp: hull.min(class.hull),
            max: class.hull,
        },
        Fuel {
            level: fuel.clamp(0.0, class.fuel),
            max: class.fuel,
        },
        Controls::default(),
        Kinematics {
            pos,
            vel: glam::Vec2::ZERO,
            rot,
        },
        Steering::default(),
        Body(handle),
        InInstance(instance),
        Weapon::default(),
        Replicated::new(net_id, kind),
    ));
    Some(entity)
}

/// Removes a ship from the world, body and all.
pub fn despawn_ship(world: &mut World, ship: Entity) {
    let body = world.get::<Body>(ship).copied();
    let instance = world.get::<InInstance>(ship).copied();
    if let (Some(body), Some(instance)) = (body, instance)
        && let Some(mut space) = world.get_mut::<PhysicsSpace>(instance.0)
    {
        space.remove(body.0);
    }
    world.despawn(ship);
}

pub(super) fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

pub(super) fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

/// A new ship for a connection's pilot, docked at the instance's home station.
pub(super) fn spawn_player(world: &mut World, conn: ConnId, instance: Entity) -> Option<Entity> {
    let data = world.resource::<Data>().0.clone();
    let class = Arc::new(data.ship_class(&data.ships.player_class)?.clone());
    let (user_id, username, saved, epoch, link, inputs) = {
        let session = world.resource::<Connections>().sessions.get(&conn)?;
        (
            session.user_id,
            session.username.clone(),
            session.saved.clone(),
            session.epoch,
            session.link.clone(),
            session.inputs.clone(),
        )
    };
    // Docked at the home station; in a world without one (a room's arena), at its centre.
    let home = stations::home_station(world, instance);
    let station_pos = home.map_or(glam::Vec2::ZERO, |(_, pos)| pos);
    let (credits, cargo, hull, fuel) = match &saved {
        Some(s) => (s.credits, s.cargo.clone(), s.hull.max(1), s.fuel),
        None => (
            data.rules.starting_credits,
            Vec::new(),
            class.hull,
            class.fuel,
        ),
    };
    let net_id = world.resource_mut::<NetIds>().next("s_");
    let ship = spawn_ship(
        world,
        instance,
        class,
        net_id,
        "player_ship",
        station_pos,
        0.0,
        hull,
        fuel,
    )?;
    if let Some((station, _)) = home {
        world.entity_mut(ship).insert(Docked(station));
    }
    world.entity_mut(ship).insert((
        Checkout(epoch),
        Pilot {
            user_id,
            username,
            credits,
            cargo,
        },
        Client {
            link,
            inputs,
            streaming: false,
            last_input_seq: 0,
            needs_snapshot: true,
            last_snapshot_tick: 0,
            known: Known::default(),
            interest: Default::default(),
            you_sent: None,
            actions: ActionBucket::new(data.rules.actions_per_second),
        },
    ));
    Some(ship)
}
