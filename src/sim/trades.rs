//! Trades and repairs: checked in the world, saved, and only then applied.
//!
//! A `trade.buy`, `trade.sell` or `ship.repair_request` that passes the rules becomes a
//! [`Settlement`]: what it will change. The pilot's record with the change applied goes to
//! the store; the world is left as it was until the transaction commits. Then the change is
//! applied and `trade.result` is sent; if the write fails the client hears `SERVER_ERROR`
//! and nothing of the trade remains, in memory or on disk.
//!
//! While a settlement is in flight its ship is [`Settling`]: it may not start another, the
//! units it buys are held out of the station's stock (so no one else can buy them), and
//! saves of the ship wait until it settles, since they would otherwise write the state from
//! before the trade over the trade.

use bevy_ecs::prelude::*;

use super::SimServices;
use super::markets::Market;
use super::players::{
    Client, ClientLink, GameError, Pilot, checkout_epoch, end_taken_session, persist, pilot_record,
    stow,
};
use super::ships::Hull;
use crate::services::pilots::{self, PilotChange};
use crate::services::play::{CargoItem, GameOut, Refusal};
use crate::store::StoreError;

/// A trade or repair that passed the rules, not yet saved.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The station it happens at.
    pub station: Entity,
    /// Credits gained (positive) or spent (negative).
    pub credits: i64,
    /// Units of a commodity taken aboard (positive) or sold (negative).
    pub cargo: Option<(String, i64)>,
    /// Whether the hull is restored.
    pub repair: bool,
    /// The `details` of `trade.result`.
    pub details: crate::services::play::TradeDetails,
}

/// A ship whose settlement is being saved.
#[derive(Component, Debug, Default)]
pub struct Settling {
    /// A save of the ship was asked for meanwhile; it runs once the settlement is applied.
    save_after: bool,
}

impl Settling {
    /// Notes that `ship` must be saved once it settles; false if it is not settling.
    pub fn defer_save(world: &mut World, ship: Entity) -> bool {
        match world.get_mut::<Settling>(ship) {
            Some(mut settling) => {
                settling.save_after = true;
                true
            }
            None => false,
        }
    }
}

/// Refuses a second trade while one is being saved.
pub fn ensure_idle(world: &World, ship: Entity) -> Result<(), GameError> {
    if world.get::<Settling>(ship).is_some() {
        return Err(GameError::new(
            Refusal::Cooldown,
            "the last trade is still being saved; wait for its trade.result",
        ));
    }
    Ok(())
}

/// Saves `ship`'s pilot as it will be after `settlement`, then applies it and answers.
pub fn begin(world: &mut World, ship: Entity, settlement: Settlement) {
    let (Some(mut record), Some(epoch)) = (pilot_record(world, ship), checkout_epoch(world, ship))
    else {
        return;
    };
    let Some(link) = world.get::<Client>(ship).map(|c| c.link.clone()) else {
        return;
    };
    let mut change = PilotChange {
        credits: settlement.credits,
        cargo: settlement.cargo.clone(),
        hull: None,
    };
    record.credits += settlement.credits;
    if let Some((commodity_id, delta)) = &settlement.cargo {
        stow(&mut record.cargo, commodity_id, *delta);
    }
    if settlement.repair
        && let Some(hull) = world.get::<Hull>(ship)
    {
        record.hull = hull.max;
        change.hull = Some(hull.max);
    }
    let system = crate::sim::leases::fence_of(world, ship);
    let fence = system.clone();
    hold_stock(world, &settlement, 1);
    world.entity_mut(ship).insert(Settling::default());
    let user_id = record.user_id;
    world.resource::<SimServices>().clone().write_then(
        move |conn| {
            crate::services::leases::fence(conn, fence.as_ref())?;
            pilots::settle(conn, epoch, &record, &change)
        },
        move |world: &mut World, saved| {
            let fenced = match &saved {
                Err(StoreError::Fenced(what)) => Some(what.starts_with("system ")),
                _ => None,
            };
            if saved.is_ok() {
                // Read by audits (and the fault tests' checker) against the epochs' owners.
                let (system, system_epoch) = system.clone().unzip();
                tracing::debug!(user = %user_id, epoch, ?system, ?system_epoch, "trade committed");
            }
            settle(world, ship, link, settlement, saved);
            match (fenced, system) {
                (Some(true), Some((system_id, _))) => crate::sim::leases::lost(world, &system_id),
                (Some(_), _) => end_taken_session(world, user_id, epoch + 1),
                (None, _) => {}
            }
        },
    );
}

/// Applies a settlement whose save has committed, or drops one whose save failed.
fn settle(
    world: &mut World,
    ship: Entity,
    link: ClientLink,
    settlement: Settlement,
    saved: Result<pilots::SavedPilot, StoreError>,
) {
    hold_stock(world, &settlement, -1);
    let settling = world
        .get_entity_mut(ship)
        .ok()
        .and_then(|mut ship| ship.take::<Settling>());
    let Some(settling) = settling else {
        // The ship left (disconnected, or moved off this node) before the save finished.
        // A committed trade stands (saves on leaving keep credits and cargo as the store
        // has them), so whoever still listens hears it as stored.
        if let Ok(pilot) = saved {
            link.send(GameOut::Traded {
                credits: pilot.credits,
                cargo: pilot
                    .cargo
                    .iter()
                    .map(|c| CargoItem {
                        commodity_id: c.commodity_id.clone(),
                        qty: c.qty,
                    })
                    .collect(),
                details: settlement.details.clone(),
            });
        }
        return;
    };
    if let Err(e) = saved {
        match e {
            StoreError::Fenced(what) => {
                tracing::info!("a trade was refused: {what}");
                link.refuse(
                    Refusal::SessionReplaced,
                    "this pilot is played elsewhere now; the trade did not happen",
                );
            }
            e => {
                tracing::error!("saving a trade failed; it was not applied: {e}");
                link.refuse(Refusal::ServerError, "the change could not be saved");
            }
        }
    } else {
        let reply = apply(world, ship, &settlement);
        if let Some(client) = world.get::<Client>(ship) {
            client.link.send(reply);
        }
    }
    if settling.save_after {
        persist(world, ship);
    }
}

/// Holds (`sign` 1) or releases (`sign` -1) the units a buy takes from the station.
fn hold_stock(world: &mut World, settlement: &Settlement, sign: i64) {
    let Some((commodity_id, delta)) = &settlement.cargo else {
        return;
    };
    if *delta <= 0 {
        return;
    }
    if let Some(mut market) = world.get_mut::<Market>(settlement.station)
        && let Some(listing) = market.listing_mut(commodity_id)
    {
        listing.held = (listing.held + sign * delta).max(0);
    }
}

/// Changes the world as the saved record says; what the player is told.
fn apply(world: &mut World, ship: Entity, settlement: &Settlement) -> GameOut {
    if let Some((commodity_id, delta)) = &settlement.cargo
        && let Some(mut market) = world.get_mut::<Market>(settlement.station)
        && let Some(listing) = market.listing_mut(commodity_id)
    {
        listing.stock = (listing.stock - *delta as f32).max(0.0);
    }
    if settlement.repair
        && let Some(mut hull) = world.get_mut::<Hull>(ship)
    {
        hull.hp = hull.max;
    }
    let (user_id, credits, mut cargo) = match world.get_mut::<Pilot>(ship) {
        Some(mut pilot) => {
            pilot.credits += settlement.credits;
            if let Some((commodity_id, delta)) = &settlement.cargo {
                pilot.stow(commodity_id, *delta);
            }
            (pilot.user_id, pilot.credits, pilot.cargo_view())
        }
        None => {
            return GameOut::Refused(super::players::GameError::new(
                Refusal::ServerError,
                "the ship has no pilot",
            ));
        }
    };
    if let Some((commodity_id, quantity)) = &settlement.cargo {
        world.write_message(super::facts::TradeDone {
            ship,
            user_id,
            station: settlement.station,
            commodity_id: commodity_id.clone(),
            quantity: *quantity,
            credits_delta: settlement.credits,
            credits,
        });
        if !cargo.iter().any(|c| &c.commodity_id == commodity_id) {
            // The spec's example shows the traded commodity even at zero.
            cargo.push(CargoItem {
                commodity_id: commodity_id.clone(),
                qty: 0,
            });
        }
    }
    GameOut::Traded {
        credits,
        cargo,
        details: settlement.details.clone(),
    }
}

/// What becomes of a change of credits made outside a trade: the pilot's credits after it,
/// or why it did not happen.
pub type CreditsDone = Box<dyn FnOnce(&mut World, Result<i64, String>) + Send>;

/// Changes `ship`'s credits by `delta` (a script's grant or charge) the way a trade does:
/// saved first, applied once committed, refused while another change is being saved or if
/// the credits would go below zero.
pub fn adjust_credits(world: &mut World, ship: Entity, delta: i64, done: CreditsDone) {
    if ensure_idle(world, ship).is_err() {
        return done(
            world,
            Err("a trade of this player is being saved; try again".into()),
        );
    }
    let Some(mut record) = pilot_record(world, ship) else {
        return done(world, Err("not a player's ship".into()));
    };
    let Some(credits) = record.credits.checked_add(delta).filter(|c| *c >= 0) else {
        return done(world, Err("the player has too few credits".into()));
    };
    let Some(epoch) = checkout_epoch(world, ship) else {
        return done(world, Err("not a player's ship".into()));
    };
    record.credits = credits;
    let user_id = record.user_id;
    let change = PilotChange {
        credits: delta,
        ..PilotChange::default()
    };
    let system = crate::sim::leases::fence_of(world, ship);
    world.entity_mut(ship).insert(Settling::default());
    world.resource::<SimServices>().clone().write_then(
        move |conn| {
            crate::services::leases::fence(conn, system.as_ref())?;
            pilots::settle(conn, epoch, &record, &change)
        },
        move |world: &mut World, saved| {
            let settling = world
                .get_entity_mut(ship)
                .ok()
                .and_then(|mut ship| ship.take::<Settling>());
            let Some(settling) = settling else {
                // The ship left meanwhile; a committed change stands as stored.
                let outcome = saved
                    .map(|pilot| pilot.credits)
                    .map_err(|e| format!("the change could not be saved: {e}"));
                return done(world, outcome);
            };
            let fenced = matches!(saved, Err(StoreError::Fenced(_)));
            let outcome = match saved {
                Ok(_) => match world.get_mut::<Pilot>(ship) {
                    Some(mut pilot) => {
                        pilot.credits += delta;
                        Ok(pilot.credits)
                    }
                    None => Err("not a player's ship".into()),
                },
                Err(e) => {
                    tracing::error!("saving a change of credits failed: {e}");
                    Err("the change could not be saved".into())
                }
            };
            if settling.save_after {
                persist(world, ship);
            }
            done(world, outcome);
            if fenced {
                end_taken_session(world, user_id, epoch + 1);
            }
        },
    );
}
