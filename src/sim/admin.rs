//! What the operator console asks of the world: a view of instances, rooms and players,
//! and ending a room. The network side checks the admin role before sending these.

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;

use super::instances::{InInstance, Instance};
use super::lobby::Room;
use super::players::{Client, Pilot};
use super::ships::{Docked, Hull, Ship};
use super::{HandleCommands, Pending};
use crate::services::DomainError;
use crate::services::rooms::RoomView;

/// An operator's question or action.
#[derive(Debug)]
pub enum AdminCommand {
    Overview {
        reply: oneshot::Sender<WorldOverview>,
    },
    EndRoom {
        room_id: String,
        reply: oneshot::Sender<Result<RoomView, DomainError>>,
    },
}

impl crate::bridge::InboxCommand for AdminCommand {
    fn unhandled(self) {
        match self {
            AdminCommand::Overview { reply } => {
                let _ = reply.send(WorldOverview::default());
            }
            AdminCommand::EndRoom { reply, .. } => {
                let _ = reply.send(Err(DomainError::Internal(
                    "the lobby is not running".into(),
                )));
            }
        }
    }
}

/// The world at one tick, as the console shows it.
#[derive(Debug, Default, Serialize)]
pub struct WorldOverview {
    pub instances: Vec<InstanceOverview>,
    pub rooms: Vec<RoomOverview>,
    pub players: Vec<PlayerOverview>,
    /// The other nodes of the cluster this node hears (none alone).
    pub nodes: Vec<NodeOverview>,
    /// Server mods and room scripts, and whether each runs.
    pub scripts: Vec<ScriptOverview>,
}

#[derive(Debug, Serialize)]
pub struct ScriptOverview {
    /// `mod` or `room`.
    pub kind: &'static str,
    /// The mod's folder, or the room (or launched session) id.
    pub name: String,
    /// `running <version>`, or `stopped: <why>`.
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct NodeOverview {
    pub node_id: String,
    pub game_host: String,
    pub game_port: u16,
    pub players: usize,
    pub instances: usize,
    pub tick_p99_us: u64,
}

#[derive(Debug, Serialize)]
pub struct InstanceOverview {
    /// What `session.join_system` names it by: a system id, a room id or a session id.
    pub instance_id: String,
    pub system_id: String,
    pub players: usize,
    /// Every ship in it, NPCs included.
    pub ships: usize,
}

#[derive(Debug, Serialize)]
pub struct RoomOverview {
    pub room_id: String,
    pub game_id: String,
    pub version: String,
    pub status: &'static str,
    pub host: String,
    pub players: Vec<String>,
    pub seats: u32,
}

impl From<RoomView> for RoomOverview {
    fn from(view: RoomView) -> Self {
        Self {
            room_id: view.room_id,
            game_id: view.game_id,
            version: view.version,
            status: view.status,
            host: view.host,
            players: view.players,
            seats: view.seats,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PlayerOverview {
    pub username: String,
    pub instance_id: String,
    pub credits: i64,
    pub hull: u32,
    pub docked: bool,
}

fn overview(world: &mut World) -> WorldOverview {
    let mut instances: Vec<(Entity, InstanceOverview)> = world
        .query::<(Entity, &Instance)>()
        .iter(world)
        .map(|(entity, instance)| {
            let overview = InstanceOverview {
                instance_id: instance.id.clone(),
                system_id: instance.def.system_id.clone(),
                players: 0,
                ships: 0,
            };
            (entity, overview)
        })
        .collect();
    let mut count = |instance: Entity, player: bool| {
        if let Some((_, o)) = instances.iter_mut().find(|(e, _)| *e == instance) {
            o.ships += 1;
            o.players += usize::from(player);
        }
    };
    let mut ships = world.query_filtered::<(&InInstance, Has<Pilot>), With<Ship>>();
    for (instance, player) in ships.iter(world) {
        count(instance.0, player);
    }
    let ids: Vec<(Entity, String)> = instances
        .iter()
        .map(|(e, o)| (*e, o.instance_id.clone()))
        .collect();
    let mut players: Vec<PlayerOverview> = world
        .query_filtered::<(&Pilot, &Hull, &InInstance, Has<Docked>), With<Client>>()
        .iter(world)
        .map(|(pilot, hull, instance, docked)| PlayerOverview {
            username: pilot.username.clone(),
            instance_id: ids
                .iter()
                .find(|(e, _)| *e == instance.0)
                .map(|(_, id)| id.clone())
                .unwrap_or_default(),
            credits: pilot.credits,
            hull: hull.hp,
            docked,
        })
        .collect();
    players.sort_by(|a, b| a.username.cmp(&b.username));
    let mut rooms: Vec<RoomOverview> = world
        .query::<&Room>()
        .iter(world)
        .map(|room| room.view().into())
        .collect();
    rooms.sort_by(|a, b| a.room_id.cmp(&b.room_id));
    let mut instances: Vec<InstanceOverview> = instances.into_iter().map(|(_, o)| o).collect();
    instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let nodes = world
        .get_resource::<super::nodes::Nodes>()
        .map(|nodes| {
            nodes
                .all()
                .map(|(id, n)| NodeOverview {
                    node_id: id.clone(),
                    game_host: n.endpoint.host.clone(),
                    game_port: n.endpoint.port,
                    players: n.players,
                    instances: n.instances.len(),
                    tick_p99_us: n.tick_p99_us,
                })
                .collect()
        })
        .unwrap_or_default();
    let scripts = super::scripts::running(world)
        .into_iter()
        .map(|(kind, name, state)| ScriptOverview { kind, name, state })
        .collect();
    WorldOverview {
        instances,
        rooms,
        players,
        nodes,
        scripts,
    }
}

fn handle_admin(world: &mut World) {
    let pending = std::mem::take(&mut world.resource_mut::<Pending<AdminCommand>>().0);
    for command in pending {
        match command {
            AdminCommand::Overview { reply } => {
                let _ = reply.send(overview(world));
            }
            AdminCommand::EndRoom { room_id, reply } => {
                let ended = if world.contains_resource::<super::lobby::Lobby>() {
                    super::lobby::end_room(world, &room_id)
                } else {
                    Err(DomainError::Internal("the lobby is not running".into()))
                };
                let _ = reply.send(ended);
            }
        }
    }
}

/// Sets the world's gauges (players online, instances, rooms) once a second.
fn count_players(
    tick: Res<super::Tick>,
    rate: Res<super::TickRate>,
    services: Res<super::SimServices>,
    players: Query<&Client>,
    instances: Query<&Instance>,
    hub: Option<Res<super::comms::Hub>>,
    lobby: Option<Res<super::lobby::Lobby>>,
) {
    if !tick.0.is_multiple_of(u64::from(rate.0.max(1))) {
        return;
    }
    let m = &services.metrics;
    m.instances.set(instances.iter().count() as i64);
    if let Some(hub) = hub {
        let online = hub.online_users() as i64;
        m.players_online.with_label_values(&["comms"]).set(online);
    }
    if let Some(lobby) = &lobby {
        let online = lobby.online().len() as i64;
        m.players_online.with_label_values(&["lobby"]).set(online);
        m.rooms.set(lobby.room_count() as i64);
    }
    let joined = players.iter().filter(|c| c.streaming).count();
    m.players_online
        .with_label_values(&["game"])
        .set(joined as i64);
}

pub struct AdminPlugin;

impl Plugin for AdminPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Pending<AdminCommand>>()
            .add_systems(HandleCommands, handle_admin)
            .add_systems(bevy_app::FixedLast, count_players);
    }
}
