//! Star systems this node may play, as its lease keeper last found them
//! ([`crate::services::leases`]).
//!
//! A node plays a system only while it holds the system's lease and the last renewal is
//! fresh enough ([`Round::play_until`]): a join is accepted only then, and once that moment
//! passes without a renewal (the database is unreachable, or the process was paused) the
//! players are moved out at once, before the lease can expire and another node take it.
//! A join for a system nobody holds yet waits here for the keeper's next rounds rather
//! than fail; one for a system another node holds is answered `WRONG_NODE` naming it.
//!
//! On a node alone there are no leases: every system is played here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedPreUpdate, Plugin};
use bevy_ecs::prelude::*;

use super::instances::{InInstance, Instance, Instances};
use super::{HandleCommands, Pending};
use crate::bridge::ConnId;
use crate::services::leases::{Owner, Round};

/// The keeper's news.
#[derive(Debug)]
pub enum LeasesCommand {
    Round(Round),
}

impl crate::bridge::InboxCommand for LeasesCommand {}

/// The systems this node holds, and who holds the others.
#[derive(Resource, Debug)]
pub struct SystemLeases {
    /// False on a node alone: everything is played here, nothing is fenced.
    clustered: bool,
    held: HashMap<String, i64>,
    play_until: Option<Instant>,
    owners: HashMap<String, Owner>,
    /// Joins waiting for a system nobody holds yet, with when they asked.
    waiting: Vec<(ConnId, String, Instant)>,
    /// How long a join waits for a free system to be taken.
    patience: Duration,
}

/// Where a star system is played, as far as this node knows.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Here,
    Elsewhere(Owner),
    /// Nobody holds it (its node died, or is handing it over): a join waits.
    Unowned,
}

impl SystemLeases {
    fn plays(&self, system_id: &str) -> bool {
        self.held.contains_key(system_id) && self.play_until.is_some_and(|t| Instant::now() < t)
    }
}

/// Where the system of `instance` is played. Rooms are played where they were placed and
/// are not asked about here.
pub fn placement(world: &World, instance: Entity) -> Placement {
    let Some(leases) = world.get_resource::<SystemLeases>() else {
        return Placement::Here;
    };
    let Some(this) = world.get::<Instance>(instance) else {
        return Placement::Here;
    };
    if !leases.clustered || this.id != this.def.system_id {
        return Placement::Here;
    }
    if leases.plays(&this.id) {
        return Placement::Here;
    }
    // A system pinned here is being handed over to this node: wait for it. The owner's
    // lease may outlive the owner by up to a lease: a node not heard from is not worth
    // sending anyone to (membership is only the hint for where to go).
    let cluster = world.get_resource::<crate::cluster::Cluster>();
    if cluster.is_some_and(|c| c.pinned_systems().contains(&this.id)) {
        return Placement::Unowned;
    }
    let heard = |node: &str| {
        let timeout = cluster.map_or(Duration::ZERO, crate::cluster::Cluster::node_timeout);
        world
            .get_resource::<super::nodes::Nodes>()
            .is_some_and(|nodes| nodes.is_live(node, timeout))
    };
    match leases.owners.get(&this.id) {
        Some(owner) if heard(&owner.node) => Placement::Elsewhere(owner.clone()),
        _ => Placement::Unowned,
    }
}

/// The fencing token of a write on behalf of the system `ship` is in: its id and the epoch
/// of this node's lease (0, which no lease has, when it holds none). `None` on a node alone
/// and in rooms.
pub fn fence_of(world: &World, ship: Entity) -> Option<(String, i64)> {
    let leases = world.get_resource::<SystemLeases>()?;
    if !leases.clustered {
        return None;
    }
    let instance = world.get::<InInstance>(ship)?.0;
    let this = world.get::<Instance>(instance)?;
    if this.id != this.def.system_id {
        return None;
    }
    Some((
        this.id.clone(),
        leases.held.get(&this.id).copied().unwrap_or(0),
    ))
}

/// A write for `system_id` was refused by its fence: another node holds it now. Its
/// players here are moved out at once.
pub fn lost(world: &mut World, system_id: &str) {
    let mut leases = world.resource_mut::<SystemLeases>();
    if leases.held.remove(system_id).is_some() {
        tracing::warn!(system = %system_id, "lease lost: a write was fenced");
    }
    move_out_unplayable(world);
}

/// Parks a join until the system is taken by some node.
pub(crate) fn wait_for_owner(world: &mut World, conn: ConnId, system_id: &str) {
    let mut leases = world.resource_mut::<SystemLeases>();
    if !leases
        .waiting
        .iter()
        .any(|(c, s, _)| *c == conn && s == system_id)
    {
        leases
            .waiting
            .push((conn, system_id.to_owned(), Instant::now()));
    }
}

fn handle_lease_commands(world: &mut World) {
    let commands = std::mem::take(&mut world.resource_mut::<Pending<LeasesCommand>>().0);
    if commands.is_empty() {
        return;
    }
    for LeasesCommand::Round(round) in commands {
        let mut leases = world.resource_mut::<SystemLeases>();
        for id in round.held.keys() {
            if !leases.held.contains_key(id) {
                tracing::info!(system = %id, epoch = round.held[id], "playing a system here");
            }
        }
        leases.held = round.held;
        leases.play_until = round.play_until;
        leases.owners = round.owners;
    }
    move_out_unplayable(world);
    retry_waiting_joins(world);
}

/// Moves the players out of every system this node may no longer play.
fn move_out_unplayable(world: &mut World) {
    let Some(leases) = world.get_resource::<SystemLeases>() else {
        return;
    };
    if !leases.clustered {
        return;
    }
    let instances: Vec<(String, Entity)> = world
        .resource::<Instances>()
        .iter()
        .map(|(id, e)| (id.clone(), e))
        .collect();
    for (id, instance) in instances {
        let system = world
            .get::<Instance>(instance)
            .is_some_and(|i| i.id == i.def.system_id);
        let leases = world.resource::<SystemLeases>();
        if !system || leases.plays(&id) {
            continue;
        }
        let owner = leases.owners.get(&id).cloned();
        super::players::move_out(world, instance, owner);
    }
}

/// Every tick: a lease whose renewal is overdue stops being played here.
fn expire_overdue(world: &mut World) {
    let overdue = world.get_resource::<SystemLeases>().is_some_and(|l| {
        l.clustered && !l.held.is_empty() && l.play_until.is_none_or(|t| Instant::now() >= t)
    });
    if overdue {
        let mut leases = world.resource_mut::<SystemLeases>();
        let dropped: Vec<String> = leases.held.drain().map(|(id, _)| id).collect();
        tracing::warn!(systems = ?dropped, "leases not renewed in time; moving players out");
        move_out_unplayable(world);
    }
}

fn retry_waiting_joins(world: &mut World) {
    let waiting = std::mem::take(&mut world.resource_mut::<SystemLeases>().waiting);
    let patience = world.resource::<SystemLeases>().patience;
    for (conn, system_id, since) in waiting {
        let decided = world
            .resource::<Instances>()
            .get(&system_id)
            .map(|instance| placement(world, instance))
            .is_none_or(|p| p != Placement::Unowned);
        if decided {
            super::players::join(world, conn, &system_id);
        } else if since.elapsed() > patience {
            super::players::refuse_unowned(world, conn, &system_id);
        } else {
            world
                .resource_mut::<SystemLeases>()
                .waiting
                .push((conn, system_id, since));
        }
    }
}

/// Plays only the systems this node holds a lease on; on a node alone, all of them.
pub struct LeasesPlugin {
    pub clustered: bool,
    /// The lease's length: a join waits up to this (and a little more) for a free system
    /// to be taken.
    pub ttl: Duration,
}

impl Plugin for LeasesPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(SystemLeases {
            clustered: self.clustered,
            held: HashMap::new(),
            play_until: None,
            owners: HashMap::new(),
            waiting: Vec::new(),
            patience: self.ttl * 2,
        })
        .init_resource::<Pending<LeasesCommand>>()
        .add_systems(HandleCommands, handle_lease_commands)
        .add_systems(FixedPreUpdate, expire_overdue);
    }
}
