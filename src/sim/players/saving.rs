//! Saving pilots: on the way out, after a change, and every so often. Every write carries
//! the epoch of the pilot's checkout ([`Checkout`]), so a node whose pilot was taken over
//! by a newer login elsewhere cannot write over it.

use bevy_ecs::prelude::*;
use uuid::Uuid;

use super::*;
use crate::services::pilots::{self, SavedPilot};
use crate::sim::instances::{InInstance, Instance};
use crate::sim::ships::{Fuel, Hull, OutOfPlay};
use crate::sim::{SimServices, Tick, TickRate};
use crate::store::StoreError;

/// The epoch of the checkout this node holds for a ship's pilot: every write for the pilot
/// is fenced by it.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkout(pub i64);

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

/// The checkout epoch a ship's pilot is written under.
pub fn checkout_epoch(world: &World, ship: Entity) -> Option<i64> {
    world.get::<Checkout>(ship).map(|c| c.0)
}

/// Saves a ship's pilot. A ship whose trade is being saved is saved once it settles, so
/// this save cannot write the state from before the trade over it.
pub fn persist(world: &mut World, ship: Entity) {
    if crate::sim::trades::Settling::defer_save(world, ship) {
        return;
    }
    let (Some(record), Some(epoch)) = (pilot_record(world, ship), checkout_epoch(world, ship))
    else {
        return;
    };
    let user_id = record.user_id;
    world.resource::<SimServices>().clone().write_then(
        move |conn| pilots::save(conn, epoch, &record),
        move |world: &mut World, saved| {
            if let Err(e) = saved {
                if matches!(e, StoreError::Fenced(_)) {
                    end_taken_session(world, user_id, epoch + 1);
                } else {
                    tracing::error!("saving a pilot failed: {e}");
                }
            }
        },
    );
}

/// Saves a ship's pilot as the world has it now; for a ship about to leave the world (what
/// it saves is where it is, its hull and fuel: a trade still being saved stays as the
/// store has it).
pub(super) fn save_now(world: &World, ship: Entity) {
    let (Some(record), Some(epoch)) = (pilot_record(world, ship), checkout_epoch(world, ship))
    else {
        return;
    };
    let store = world.resource::<SimServices>().store.clone();
    store.submit(
        move |conn| pilots::save(conn, epoch, &record),
        |result| match result {
            Ok(()) => {}
            Err(StoreError::Fenced(what)) => {
                tracing::info!("not saved on leaving: {what} is played elsewhere now");
            }
            Err(e) => tracing::error!("saving a pilot failed: {e}"),
        },
    );
}

/// Ends this node's game session of `user_id` if its checkout is older than `epoch`: a
/// newer login (here or on another node) took the pilot. The connection is told
/// `SESSION_REPLACED` and closed, and its ship leaves without a save (its writes would be
/// refused anyway).
pub fn end_taken_session(world: &mut World, user_id: Uuid, epoch: i64) {
    let Some(conn) = world
        .resource::<Connections>()
        .by_user
        .get(&user_id)
        .copied()
    else {
        return;
    };
    let stale = world
        .resource::<Connections>()
        .sessions
        .get(&conn)
        .is_some_and(|s| s.epoch < epoch);
    if !stale {
        return;
    }
    let Some(session) = world.resource_mut::<Connections>().sessions.remove(&conn) else {
        return;
    };
    world.resource_mut::<Connections>().by_user.remove(&user_id);
    session.link.refuse(
        Refusal::SessionReplaced,
        "this pilot was taken over by a newer login, on this or another node",
    );
    session
        .link
        .close(crate::bridge::Ending::SessionReplaced, "session replaced");
    if let Some(ship) = session.ship
        && world.get_entity(ship).is_ok()
    {
        left_instance(world, ship);
        despawn_ship(world, ship);
    }
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
