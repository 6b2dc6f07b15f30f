//! Saving pilots: on the way out, after a change, and every so often.

use bevy_ecs::prelude::*;

use super::*;
use crate::services::pilots::{self, SavedPilot};
use crate::sim::instances::{InInstance, Instance};
use crate::sim::ships::{Fuel, Hull, OutOfPlay};
use crate::sim::{SimServices, Tick, TickRate};

/// The record saved for a ship's pilot.
pub fn pilot_record(world: &World, ship: Entity) -> Option<SavedPilot> {
    let pilot = world.get::<Pilot>(ship)?;
    let hull = world.get::<Hull>(ship)?;
    let fuel = world.get::<Fuel>(ship)?;
    let instance = world.get::<InInstance>(ship)?;
    let system_id = world.get::<Instance>(instance.0)?.id.clone();
    Some(SavedPilot {
        user_id: pilot.user_id,
        system_id,
        credits: pilot.credits,
        cargo: pilot.cargo.clone(),
        hull: hull.hp,
        fuel: fuel.level,
    })
}

/// Saves a ship's pilot. A ship whose trade is being saved is saved once it settles, so
/// this save cannot write the state from before the trade over it.
pub fn persist(world: &mut World, ship: Entity) {
    if crate::sim::trades::Settling::defer_save(world, ship) {
        return;
    }
    save_now(world, ship);
}

/// Saves a ship's pilot as the world has it now; for a ship about to leave the world (any
/// trade still being saved is then cancelled: this save, queued after it, undoes it).
pub(super) fn save_now(world: &World, ship: Entity) {
    let Some(record) = pilot_record(world, ship) else {
        return;
    };
    let store = world.resource::<SimServices>().store.clone();
    store.submit(
        move |conn| pilots::save(conn, &record),
        |result| {
            if let Err(e) = result {
                tracing::error!("saving a pilot failed: {e}");
            }
        },
    );
}

/// Saves every pilot now and then, so a crash loses little hull and fuel (credits and
/// cargo are saved with every trade already).
pub(super) fn save_pilots_periodically(world: &mut World) {
    let tick = world.resource::<Tick>().0;
    let every = u64::from(world.resource::<TickRate>().0) * 10;
    if every == 0 || !tick.is_multiple_of(every) {
        return;
    }
    let ships: Vec<Entity> = world
        .query_filtered::<Entity, (With<Pilot>, Without<OutOfPlay>)>()
        .iter(world)
        .collect();
    for ship in ships {
        persist(world, ship);
    }
}
