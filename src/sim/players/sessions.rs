//! Game connections: logging in (one session per account), joining a system, inputs,
//! leaving.

use std::collections::HashMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use uuid::Uuid;

use super::*;
use crate::bridge::ConnId;
use crate::services::leases::Owner;
use crate::services::pilots::SavedPilot;
use crate::services::play::ClientLink;
use crate::services::play::{GameOut, InputSlot, Refusal};
use crate::sim::instances::{InInstance, Instance, Instances};
use crate::sim::leases::Placement;
use crate::sim::physics::Kinematics;
use crate::sim::replication::Replicated;
use crate::sim::ships::Controls;

/// An authenticated game connection.
#[derive(Debug)]
pub struct GameSession {
    pub user_id: Uuid,
    pub username: String,
    pub link: ClientLink,
    pub inputs: InputSlot,
    pub saved: Option<SavedPilot>,
    /// The epoch of this login's checkout of the pilot.
    pub epoch: i64,
    pub ship: Option<Entity>,
}

/// Game connections by id and by account.
#[derive(Resource, Default)]
pub struct Connections {
    pub(super) sessions: HashMap<ConnId, GameSession>,
    pub(super) by_user: HashMap<Uuid, ConnId>,
}

impl Connections {
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// A `/game` connection authenticated as `user_id`, with the pilot it checked out.
#[derive(Debug)]
pub struct Login {
    pub conn: ConnId,
    pub user_id: Uuid,
    pub username: String,
    /// The stored pilot, if the player has played before.
    pub saved: Option<SavedPilot>,
    /// The epoch of the pilot's checkout to this node.
    pub epoch: i64,
    pub link: ClientLink,
    /// Where the connection leaves its inputs for the tick.
    pub inputs: InputSlot,
}

pub(super) fn connect(world: &mut World, login: Login) {
    let Login {
        conn,
        user_id,
        username,
        saved,
        epoch,
        link,
        inputs,
    } = login;
    let mut ship = None;
    let previous = world
        .resource::<Connections>()
        .by_user
        .get(&user_id)
        .copied();
    if let Some(old_conn) = previous
        && let Some(old) = world
            .resource_mut::<Connections>()
            .sessions
            .remove(&old_conn)
    {
        old.link.refuse(
            Refusal::SessionReplaced,
            "another login took this session over",
        );
        old.link
            .close(crate::bridge::Ending::SessionReplaced, "session replaced");
        ship = old.ship;
    }
    // The new connection takes the ship over; it streams again once it joins.
    if let Some(entity) = ship
        && let Some(mut client) = world.get_mut::<Client>(entity)
    {
        client.link = link.clone();
        client.inputs = inputs.clone();
        client.streaming = false;
        client.last_input_seq = 0;
        client.needs_snapshot = true;
        client.known.clear();
        client.interest = Default::default();
        world.entity_mut(entity).insert(Checkout(epoch));
    }
    link.send(GameOut::LoggedIn { player_id: user_id });
    let mut connections = world.resource_mut::<Connections>();
    connections.by_user.insert(user_id, conn);
    connections.sessions.insert(
        conn,
        GameSession {
            user_id,
            username,
            link,
            inputs,
            saved,
            epoch,
            ship,
        },
    );
}

pub(crate) fn join(world: &mut World, conn: ConnId, system_id: &str) {
    let Some(session) = world.resource::<Connections>().sessions.get(&conn) else {
        return;
    };
    let link = session.link.clone();
    let user_id = session.user_id;
    let Some(instance) = world.resource::<Instances>().get(system_id) else {
        let elsewhere = world
            .get_resource::<crate::sim::nodes::Nodes>()
            .and_then(|nodes| nodes.running(system_id))
            .map(|(node, info)| (node.to_owned(), info.endpoint.clone()));
        match elsewhere {
            Some((node, endpoint)) => link.send(GameOut::Elsewhere {
                system_id: system_id.to_owned(),
                node,
                host: endpoint.host,
                port: endpoint.port,
            }),
            None => link.refuse(
                Refusal::UnknownSystem,
                format!("no system or room named {system_id:?}"),
            ),
        }
        return;
    };
    match crate::sim::leases::placement(world, instance) {
        Placement::Here => {}
        Placement::Elsewhere(owner) => {
            link.send(GameOut::Elsewhere {
                system_id: system_id.to_owned(),
                node: owner.node,
                host: owner.host,
                port: owner.port,
            });
            return;
        }
        Placement::Unowned => {
            crate::sim::leases::wait_for_owner(world, conn, system_id);
            return;
        }
    }
    if let Err(refused) = crate::sim::lobby::may_enter(world, system_id, user_id) {
        link.refuse(Refusal::NotInRoom, refused.to_string());
        return;
    }
    // A ship taken over in the same instance is kept; one elsewhere is saved and moved.
    let mut keep = None;
    if let Some(existing) = session.ship {
        if world.get::<InInstance>(existing).map(|i| i.0) == Some(instance) {
            keep = Some(existing);
        } else if let Err(busy) = crate::sim::trades::ensure_idle(world, existing) {
            // Its trade would land on the ship left behind.
            link.send(GameOut::Refused(busy));
            return;
        } else {
            // The new ship starts from this one's state, not from the one loaded at login.
            let record = pilot_record(world, existing);
            if let Some(session) = world.resource_mut::<Connections>().sessions.get_mut(&conn) {
                session.saved = record;
            }
            save_now(world, existing);
            left_instance(world, existing);
            despawn_ship(world, existing);
        }
    }
    let ship = match keep {
        Some(ship) => ship,
        None => match spawn_player(world, conn, instance) {
            Some(ship) => {
                world.write_message(crate::sim::facts::PlayerJoined {
                    user_id,
                    ship,
                    instance,
                    system_id: system_id.to_owned(),
                });
                ship
            }
            None => {
                link.refuse(Refusal::ServerError, "could not place your ship");
                return;
            }
        },
    };
    if let Some(session) = world.resource_mut::<Connections>().sessions.get_mut(&conn) {
        session.ship = Some(ship);
    }
    let Some(kin) = world.get::<Kinematics>(ship).copied() else {
        return;
    };
    let ship_id = world
        .get::<Replicated>(ship)
        .map(|r| r.net_id.clone())
        .unwrap_or_else(|| Arc::from(""));
    if let Some(mut client) = world.get_mut::<Client>(ship) {
        client.streaming = true;
        client.needs_snapshot = true;
        // Before `session.joined` leaves: a client may steer as soon as it reads it.
        client.inputs.set_joined();
    }
    if let Some((system, epoch)) = crate::sim::leases::fence_of(world, ship) {
        // Read by audits (and the fault tests' checker) against the lease history.
        tracing::info!(%system, epoch, user = %user_id, "join accepted");
    }
    link.send(GameOut::Joined {
        system_id: system_id.to_owned(),
        ship_id,
        x: round2(kin.pos.x),
        y: round2(kin.pos.y),
        rotation: round3(kin.rot),
    });
    // The snapshot goes out now, not at the next tick, so it directly follows the join.
    crate::sim::replication::send_snapshot(world, ship);
}

/// Moves each player's latest input into its ship's controls, before the tick uses them.
pub(super) fn take_inputs(mut ships: Query<(&mut Client, &mut Controls)>) {
    for (mut client, mut controls) in &mut ships {
        if !client.streaming {
            continue; // taken over by a connection that has not joined yet
        }
        let Some((seq, input)) = client.inputs.take() else {
            continue;
        };
        if seq <= client.last_input_seq {
            continue; // stale or duplicate
        }
        client.last_input_seq = seq;
        let input = input.clamped();
        *controls = Controls {
            thrust: input.thrust as f32,
            turn: input.turn as f32,
            fire: input.fire_primary,
            dock: input.dock_request,
        };
    }
}

pub(super) fn disconnect(world: &mut World, conn: ConnId) {
    let Some(session) = world.resource_mut::<Connections>().sessions.remove(&conn) else {
        return;
    };
    {
        let mut connections = world.resource_mut::<Connections>();
        if connections.by_user.get(&session.user_id) == Some(&conn) {
            connections.by_user.remove(&session.user_id);
        }
    }
    if let Some(ship) = session.ship
        && world
            .get::<Client>(ship)
            .is_some_and(|c| c.link.conn == conn)
    {
        save_now(world, ship);
        left_instance(world, ship);
        despawn_ship(world, ship);
    }
}

/// Tells whoever listens that a player's ship is leaving its instance.
pub(super) fn left_instance(world: &mut World, ship: Entity) {
    let (Some(pilot), Some(instance)) = (world.get::<Pilot>(ship), world.get::<InInstance>(ship))
    else {
        return;
    };
    let (user_id, instance) = (pilot.user_id, instance.0);
    let system_id = world
        .get::<Instance>(instance)
        .map(|i| i.id.clone())
        .unwrap_or_default();
    world.write_message(crate::sim::facts::PlayerLeft {
        user_id,
        ship,
        instance,
        system_id,
    });
}

/// Moves every player out of `instance`, which this node may no longer play: each is
/// told where it is played now (`WRONG_NODE`) or that it is moving (`SERVER_BUSY`), and
/// stays logged in, free to join again. Their ships are saved (fenced) and removed.
pub(crate) fn move_out(world: &mut World, instance: Entity, owner: Option<Owner>) {
    let system_id = world
        .get::<Instance>(instance)
        .map(|i| i.id.clone())
        .unwrap_or_default();
    let moving: Vec<(ConnId, Entity)> = world
        .resource::<Connections>()
        .sessions
        .iter()
        .filter_map(|(conn, s)| s.ship.map(|ship| (*conn, ship)))
        .filter(|(_, ship)| world.get::<InInstance>(*ship).map(|i| i.0) == Some(instance))
        .collect();
    for (conn, ship) in moving {
        let mut connections = world.resource_mut::<Connections>();
        let Some(session) = connections.sessions.get_mut(&conn) else {
            continue;
        };
        session.ship = None;
        session.inputs.set_left();
        let link = session.link.clone();
        match &owner {
            Some(owner) => link.send(GameOut::Elsewhere {
                system_id: system_id.clone(),
                node: owner.node.clone(),
                host: owner.host.clone(),
                port: owner.port,
            }),
            None => link.refuse(
                Refusal::Unavailable,
                format!("{system_id} is moving to another node; join it again"),
            ),
        }
        let record = pilot_record(world, ship);
        save_now(world, ship);
        if let Some(session) = world.resource_mut::<Connections>().sessions.get_mut(&conn) {
            session.saved = record;
        }
        left_instance(world, ship);
        despawn_ship(world, ship);
    }
    if !system_id.is_empty() {
        tracing::info!(system = %system_id, "stopped playing a system here");
    }
}

/// A join that waited for `system_id` to be taken by some node, in vain.
pub(crate) fn refuse_unowned(world: &mut World, conn: ConnId, system_id: &str) {
    if let Some(session) = world.resource::<Connections>().sessions.get(&conn) {
        session.link.refuse(
            Refusal::Unavailable,
            format!("no node plays {system_id} right now; join it again shortly"),
        );
    }
}
