//! The other nodes of a cluster, as the simulation sees them: where each serves `/game`,
//! how many players it holds and which worlds it runs. Rooms are placed with this: a
//! started room goes to the least loaded node, and a `/game` client asking for a world
//! another node runs is told where to go.
//!
//! Star systems are not placed here: who plays each is a lease in the database
//! ([`super::leases`]), never a guess from heartbeats.
//!
//! A room placed on a node that then goes silent starts again on the node that placed it
//! (whose lobby holds the room), and its players join it there.
//!
//! Placing a room on another node is a request and an answer over the cluster: this node
//! asks (`HostRoom`), the other creates the room's world and answers (`RoomHosted`), and
//! only then is `START_ROOM` answered with that node's address, so a player who follows
//! it finds the world there. A node that does not answer within `node_timeout_ms` is
//! passed over and the room starts here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::instances::Instances;
use super::lobby::{GameEndpoint, LobbyResult};
use super::{HandleCommands, Pending};
use crate::bridge::{Command, Inbox};
use crate::cluster::{Cluster, ClusterNote, Heard, NodeLeaving};

/// Another node, as it last told.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub endpoint: GameEndpoint,
    pub players: usize,
    pub instances: Vec<String>,
    /// Star systems pinned to it.
    pub pinned: Vec<String>,
    /// Its recent tick p99, in microseconds.
    pub tick_p99_us: u64,
    heard: Instant,
}

/// A room being placed on another node, waiting for its answer.
pub(crate) struct Placing {
    pub node: String,
    pub endpoint: GameEndpoint,
    pub asked: Instant,
    pub reply: oneshot::Sender<LobbyResult>,
}

/// The other nodes, and rooms placed on them.
#[derive(Resource, Default)]
pub struct Nodes {
    remote: HashMap<String, NodeInfo>,
    pub(crate) placing: HashMap<String, Placing>,
    /// Rooms this node placed elsewhere: room id → node.
    placed: HashMap<String, String>,
}

impl Nodes {
    /// The live node with the fewest players, if it has fewer than `own` (this node's).
    pub fn less_loaded_than(&self, own: usize, timeout: Duration) -> Option<(String, NodeInfo)> {
        self.remote
            .iter()
            .filter(|(_, n)| n.heard.elapsed() <= timeout && n.players < own)
            .min_by_key(|(id, n)| (n.players, (*id).clone()))
            .map(|(id, n)| (id.clone(), n.clone()))
    }

    /// Whether `node` has been heard from within `timeout`.
    pub fn is_live(&self, node: &str, timeout: Duration) -> bool {
        self.remote
            .get(node)
            .is_some_and(|n| n.heard.elapsed() <= timeout)
    }

    /// Every other node heard from, by id.
    pub fn all(&self) -> impl Iterator<Item = (&String, &NodeInfo)> {
        let mut all: Vec<_> = self.remote.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// The node that runs `instance`, if another one does.
    pub fn running(&self, instance: &str) -> Option<(&str, &NodeInfo)> {
        if let Some(node) = self.placed.get(instance)
            && let Some(info) = self.remote.get(node)
        {
            return Some((node, info));
        }
        self.remote
            .iter()
            .find(|(_, n)| n.instances.iter().any(|i| i == instance))
            .map(|(id, n)| (id.as_str(), n))
    }
}

/// What the cluster hears about nodes and rooms.
#[derive(Debug)]
pub enum NodesCommand {
    /// Time to tell the others this node's load, and to forget silent nodes.
    Beat,
    Heard {
        node: String,
        endpoint: GameEndpoint,
        players: usize,
        instances: Vec<String>,
        pinned: Vec<String>,
        tick_p99_us: u64,
    },
    /// Another node asks this one to run a room's world for its players.
    HostRoom {
        from: String,
        room_id: String,
        members: Vec<Uuid>,
    },
    /// The node asked has the room's world running.
    RoomHosted { from: String, room_id: String },
    /// `node` is stopping: forget it now rather than at its timeout.
    Left { node: String },
    /// A login on another node checked `user_id`'s pilot out at `epoch`: a session of it
    /// here ends.
    PilotTaken { user_id: Uuid, epoch: i64 },
}

impl crate::bridge::InboxCommand for NodesCommand {}

/// What nodes tell each other about themselves, and about rooms and pilots between them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum NodeNote {
    /// Every heartbeat: where the sending node serves `/game`, its players and its worlds.
    Node {
        host: String,
        port: u16,
        players: usize,
        instances: Vec<String>,
        /// Star systems pinned to the sending node.
        #[serde(default)]
        pinned: Vec<String>,
        /// Its recent tick p99, in microseconds.
        #[serde(default)]
        tick_p99_us: u64,
    },
    /// `node` is asked to run the world of a room started elsewhere, for its players.
    HostRoom {
        node: String,
        room_id: String,
        members: Vec<Uuid>,
    },
    /// `node`'s request is done: the room's world runs on the sending node.
    RoomHosted { node: String, room_id: String },
    /// A login on the sending node checked `user_id`'s pilot out at `epoch`: an older
    /// game session of it elsewhere ends now (its writes are refused by the database
    /// either way, should this note be lost).
    PilotTaken { user_id: Uuid, epoch: i64 },
}

impl ClusterNote for NodeNote {
    const KIND: &'static str = "node";
}

/// What this node hears of the others: their notes, one leaving (whose leases
/// `leases_wake` sends the lease keeper to take), and the heartbeat.
pub fn hear_cluster(
    cluster: &Cluster,
    inbox: &Inbox,
    leases_wake: std::sync::Arc<tokio::sync::Notify>,
) {
    let me = cluster.node_id().to_owned();
    let to_nodes = inbox.clone();
    cluster.hear(move |heard: Heard<NodeNote>| {
        let from = heard.from;
        let command = match heard.note {
            NodeNote::Node {
                host,
                port,
                players,
                instances,
                pinned,
                tick_p99_us,
            } => Some(NodesCommand::Heard {
                node: from,
                endpoint: GameEndpoint { host, port },
                players,
                instances,
                pinned,
                tick_p99_us,
            }),
            NodeNote::HostRoom {
                node,
                room_id,
                members,
            } => (node == me).then_some(NodesCommand::HostRoom {
                from,
                room_id,
                members,
            }),
            NodeNote::RoomHosted { node, room_id } => {
                (node == me).then_some(NodesCommand::RoomHosted { from, room_id })
            }
            NodeNote::PilotTaken { user_id, epoch } => {
                Some(NodesCommand::PilotTaken { user_id, epoch })
            }
        };
        if let Some(command) = command {
            let _ = to_nodes.send(Command::to(command));
        }
    });
    let to_nodes = inbox.clone();
    cluster.hear(move |heard: Heard<NodeLeaving>| {
        tracing::info!(node = %heard.from, "a node is leaving");
        leases_wake.notify_one();
        let _ = to_nodes.send(Command::to(NodesCommand::Left { node: heard.from }));
    });
    let to_nodes = inbox.clone();
    cluster.on_beat(move || {
        let _ = to_nodes.send(Command::to(NodesCommand::Beat));
    });
}

/// Players on this node's `/game` now.
pub fn players_here(world: &World) -> usize {
    world
        .get_resource::<super::players::Connections>()
        .map_or(0, |c| c.len())
}

fn handle_node_commands(world: &mut World) {
    let commands = std::mem::take(&mut world.resource_mut::<Pending<NodesCommand>>().0);
    let Some(cluster) = world.get_resource::<Cluster>().cloned() else {
        return;
    };
    for command in commands {
        match command {
            NodesCommand::Beat => beat(world, &cluster),
            NodesCommand::Heard {
                node,
                endpoint,
                players,
                instances,
                pinned,
                tick_p99_us,
            } => {
                world.resource_mut::<Nodes>().remote.insert(
                    node,
                    NodeInfo {
                        endpoint,
                        players,
                        instances,
                        pinned,
                        tick_p99_us,
                        heard: Instant::now(),
                    },
                );
            }
            NodesCommand::HostRoom {
                from,
                room_id,
                members,
            } => {
                super::lobby::host_room(world, &room_id, members);
                tracing::info!(room = %room_id, node = %from, "hosting a room placed here");
                cluster.tell(NodeNote::RoomHosted {
                    node: from,
                    room_id,
                });
            }
            NodesCommand::Left { node } => {
                world.resource_mut::<Nodes>().remote.remove(&node);
            }
            NodesCommand::PilotTaken { user_id, epoch } => {
                super::players::end_taken_session(world, user_id, epoch);
            }
            NodesCommand::RoomHosted { from, room_id } => {
                let placing = world.resource_mut::<Nodes>().placing.remove(&room_id);
                if let Some(placing) = placing.filter(|p| p.node == from) {
                    world
                        .resource_mut::<Nodes>()
                        .placed
                        .insert(room_id.clone(), from);
                    super::lobby::room_placed(world, &room_id, placing);
                }
            }
        }
    }
}

/// Tells the others this node's load and worlds; forgets nodes silent past the timeout;
/// starts here the rooms whose node did not answer in time.
fn beat(world: &mut World, cluster: &Cluster) {
    let endpoint = world.resource::<GameEndpoint>().clone();
    let instances = world
        .get_resource::<Instances>()
        .map(|i| i.ids().cloned().collect())
        .unwrap_or_default();
    cluster.tell(NodeNote::Node {
        host: endpoint.host,
        port: endpoint.port,
        players: players_here(world),
        instances,
        pinned: cluster.pinned_systems().to_vec(),
        tick_p99_us: world
            .get_resource::<super::SimServices>()
            .map_or(0, |s| (s.metrics.tick_p99.get() * 1e6) as u64),
    });
    let timeout = cluster.node_timeout();
    let mut nodes = world.resource_mut::<Nodes>();
    nodes.remote.retain(|_, n| n.heard.elapsed() <= timeout);
    // Rooms this node placed on a node now gone start here again, for their players to
    // rejoin (their pilots are as last saved).
    let orphaned: Vec<(String, String)> = nodes
        .placed
        .iter()
        .filter(|(_, node)| !nodes.remote.contains_key(*node))
        .map(|(room, node)| (room.clone(), node.clone()))
        .collect();
    for (room_id, node) in orphaned {
        world.resource_mut::<Nodes>().placed.remove(&room_id);
        tracing::warn!(room = %room_id, %node, "the node running a room is gone; starting it here");
        super::lobby::room_moved_here(world, &room_id);
    }
    let nodes = world.resource::<Nodes>();
    let late: Vec<String> = nodes
        .placing
        .iter()
        .filter(|(_, p)| p.asked.elapsed() > timeout)
        .map(|(room, _)| room.clone())
        .collect();
    for room_id in late {
        if let Some(placing) = world.resource_mut::<Nodes>().placing.remove(&room_id) {
            tracing::warn!(room = %room_id, node = %placing.node, "the node asked to host a room did not answer; starting it here");
            super::lobby::room_start_here(world, &room_id, placing);
        }
    }
}

/// Knows the other nodes: their load and worlds, for placing rooms and redirecting
/// players. Does nothing on a node alone.
pub struct NodesPlugin;

impl Plugin for NodesPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Nodes>()
            .init_resource::<Pending<NodesCommand>>()
            .add_systems(HandleCommands, handle_node_commands);
    }
}
