//! The lobby and the developer server's decisions: catalog changes, rooms, and who is in
//! the lobby. Requests arrive as commands with a reply channel and are answered between
//! ticks, in microseconds. A change to the catalog is worked out here, saved through the
//! store, and applied to the catalog only once it has committed; the reply follows, so "ok"
//! means committed and "error" means nothing changed.
//!
//! Rooms are entities: a game, its version, a host, players, and a status. Only the host
//! starts a room; starting creates a simulation instance named by the room id, which
//! `/game` clients enter with `session.join_system`. When the host leaves, the next player
//! becomes host; when the last leaves, the room closes (its instance is removed once no
//! ship is left in it). Room and presence changes are pushed to every lobby connection,
//! encoded once.

use std::collections::HashMap;
use std::sync::Arc;

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::encoders::Encoders;
use super::instances::{InInstance, Instances, RoomLayouts, create_instance, destroy_instance};
use super::players::Pilot;
use super::{HandleCommands, Pending, SimServices};
use crate::bridge::{Command, ConnId, Inbox};
use crate::cluster::{Cluster, ClusterNote, Heard};
use crate::services::DomainError;
use crate::services::catalog::{
    Catalog, Game, GameStatus, MetaUpdate, NewGame, Persist, Review, Version,
};
pub use crate::services::rooms::{RoomChat, RoomView};
use crate::store::StoreError;

/// Who is asking.
#[derive(Debug, Clone)]
pub struct LobbyCaller {
    pub user_id: Uuid,
    pub username: String,
    pub conn: ConnId,
}

/// What the developer and lobby servers ask of the simulation.
#[derive(Debug)]
pub enum LobbyOp {
    CreateGame(NewGame),
    ListMyGames,
    UpdateMeta {
        game_id: String,
        update: MetaUpdate,
    },
    SetStatus {
        game_id: String,
        status: GameStatus,
    },
    ListVersions {
        game_id: String,
    },
    /// May the caller upload this version? (The upload itself never enters the sim.)
    CheckUpload {
        game_id: String,
        version: String,
    },
    /// The build is verified in staging: record it, and move its files into place in the
    /// same decision.
    Publish {
        game_id: String,
        version: Version,
        files: crate::services::uploads::BuildFiles,
    },
    ListGames,
    GameDetail {
        game_id: String,
    },
    /// A version's details, `None` for the latest.
    Version {
        game_id: String,
        version: Option<String>,
    },
    ListReviews {
        game_id: String,
    },
    AddReview {
        game_id: String,
        score: i64,
        comment: String,
    },
    ListPlayers,
    ListRooms,
    CreateRoom {
        game_id: String,
        /// Seats wanted (GARP's `roomSeats`); the game's `max_players` when `None`.
        seats: Option<i64>,
    },
    JoinRoom {
        room_id: String,
    },
    /// Joins a game's room by its small per-game number (GARP's `roomSerial`).
    JoinRoomBySerial {
        game_id: String,
        serial: i64,
    },
    /// Chat to every member of a room the caller is in, on whatever protocol each is
    /// connected with.
    Chat {
        room_id: String,
        meta: serde_json::Value,
        message: String,
    },
    /// A GARP socket speaks for the caller: room chat for them is pushed to it.
    Listen {
        push: mpsc::Sender<RoomChat>,
    },
    /// A GARP socket closed: nothing more is pushed to it.
    Unlisten,
    LeaveRoom {
        room_id: String,
    },
    StartRoom {
        room_id: String,
    },
    /// RaOS `launch_game` in stream mode: an instance of the game for the caller alone.
    LaunchStream {
        game_id: String,
    },
    /// RaOS `stop_game`: ends a streamed session the caller launched.
    StopStream {
        session_id: String,
    },
    /// A lobby connection logged in: it receives pushes from now on.
    Enter {
        push: mpsc::Sender<Bytes>,
    },
    /// A lobby connection closed.
    Exit,
}

/// The simulation's answer.
#[derive(Debug, Clone)]
pub enum LobbyReply {
    Game(Game),
    Games(Vec<Game>),
    Version {
        game: Game,
        version: Option<Version>,
    },
    Players(Vec<String>),
    Rooms(Vec<RoomView>),
    /// Chat was delivered to this many connections.
    Chatted(usize),
    Room(RoomView),
    Started {
        room: RoomView,
        host: String,
        port: u16,
    },
    Launched {
        session_id: String,
        game_id: String,
        host: String,
        port: u16,
    },
    Stopped {
        game_id: String,
    },
    Done,
}

pub type LobbyResult = Result<LobbyReply, DomainError>;

#[derive(Debug)]
pub struct LobbyRequest {
    pub caller: LobbyCaller,
    pub op: LobbyOp,
    pub reply: oneshot::Sender<LobbyResult>,
}

impl crate::bridge::InboxCommand for LobbyRequest {
    fn unhandled(self) {
        let _ = self.reply.send(Err(crate::services::DomainError::Internal(
            "the lobby is not running".into(),
        )));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStatus {
    Waiting,
    Playing,
}

impl RoomStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomStatus::Waiting => "WAITING",
            RoomStatus::Playing => "PLAYING",
        }
    }
}

/// A lobby room.
#[derive(Component, Debug, Clone)]
pub struct Room {
    pub room_id: String,
    /// A small number, unique among the game's open rooms, that people can say aloud.
    pub serial: u32,
    pub game_id: String,
    pub version: String,
    /// Players in join order; the first is the host.
    pub players: Vec<(Uuid, String)>,
    pub max_players: u32,
    pub status: RoomStatus,
}

impl Room {
    pub fn view(&self) -> RoomView {
        RoomView {
            room_id: self.room_id.clone(),
            serial: self.serial,
            seats: self.max_players,
            game_id: self.game_id.clone(),
            version: self.version.clone(),
            host: self
                .players
                .first()
                .map(|p| p.1.clone())
                .unwrap_or_default(),
            players: self.players.iter().map(|p| p.1.clone()).collect(),
            status: self.status.as_str(),
        }
    }
}

/// Where game clients connect (the HTTP listener), as `START_ROOM` reports it.
#[derive(Resource, Debug, Clone)]
pub struct GameEndpoint {
    pub host: String,
    pub port: u16,
}

/// Lobby connections and rooms by id.
#[derive(Resource, Default)]
pub struct Lobby {
    connections: HashMap<ConnId, (Uuid, String, mpsc::Sender<Bytes>)>,
    rooms: HashMap<String, Entity>,
    /// Streamed sessions (RaOS `launch_game`): session id → (launcher, game id).
    streams: HashMap<String, (Uuid, String)>,
    /// Room instances to remove once no ship is left in them.
    closing_instances: Vec<String>,
    /// GARP sockets and the player each speaks for: room chat is pushed to them.
    listeners: HashMap<(ConnId, Uuid), mpsc::Sender<RoomChat>>,
    /// Worlds of rooms another node placed here: room id → its players.
    hosted: HashMap<String, Vec<Uuid>>,
}

impl Lobby {
    /// Rooms open now.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub(crate) fn online(&self) -> Vec<String> {
        let mut names: Vec<String> = self.connections.values().map(|c| c.1.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    fn is_online(&self, user: Uuid) -> bool {
        self.connections.values().any(|c| c.0 == user)
    }

    /// Sends one encoded line to every lobby connection; a full queue just misses it (the
    /// client can poll LIST_ROOMS / LIST_PLAYERS).
    fn broadcast(&self, line: Bytes) {
        for (_, _, push) in self.connections.values() {
            let _ = push.try_send(line.clone());
        }
    }
}

/// Works out a catalog change with `change`, saves it, and applies it once committed; then
/// replies. Until then the catalog shows the game as it was, and another change to the same
/// game is answered "busy". `game_id` is `None` for a change that creates a game.
fn change_then_reply(
    world: &mut World,
    game_id: Option<&str>,
    reply: oneshot::Sender<LobbyResult>,
    change: impl FnOnce(&mut Catalog) -> Result<(LobbyReply, Persist), DomainError>,
) {
    let mut catalog = world.resource_mut::<Catalog>();
    if game_id.is_some_and(|id| catalog.is_changing(id)) {
        let _ = reply.send(Err(DomainError::Busy));
        return;
    }
    let before = game_id.and_then(|id| catalog.get(id).ok().cloned());
    let (answer, op) = match change(&mut catalog) {
        Ok(changed) => changed,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    let changed = match (&answer, game_id) {
        (_, Some(id)) => id.to_owned(),
        (LobbyReply::Game(game), None) => game.game_id.clone(),
        _ => {
            let _ = reply.send(Err(DomainError::Internal("a change with no game".into())));
            return;
        }
    };
    let after = catalog.stage(&changed, before);
    let services = world.resource::<SimServices>();
    let completions = services.completions();
    services
        .store
        .submit(op, move |result: Result<(), StoreError>| {
            let committed = result.is_ok();
            // Queued before the reply goes out, so a request the client sends after hearing
            // "ok" finds the change.
            let _ = completions.send(Box::new(move |world: &mut World| {
                world
                    .resource_mut::<Catalog>()
                    .settle(&changed, committed.then_some(after).flatten());
                if committed && let Some(cluster) = world.get_resource::<Cluster>() {
                    cluster.tell(GameChanged { game_id: changed });
                }
            }));
            let _ = reply.send(result.map(|()| answer).map_err(DomainError::from));
        });
}

fn handle_lobby_requests(world: &mut World) {
    let pending = std::mem::take(&mut world.resource_mut::<Pending<LobbyRequest>>().0);
    for LobbyRequest { caller, op, reply } in pending {
        match op {
            LobbyOp::CreateGame(new) => change_then_reply(world, None, reply, |catalog| {
                let (game, op) = catalog.create_game(caller.user_id, new)?;
                Ok((LobbyReply::Game(game), op))
            }),
            LobbyOp::UpdateMeta { game_id, update } => {
                change_then_reply(world, Some(&game_id), reply, |catalog| {
                    let op = catalog.update_meta(caller.user_id, &game_id, update)?;
                    Ok((LobbyReply::Done, op))
                });
            }
            LobbyOp::SetStatus { game_id, status } => {
                change_then_reply(world, Some(&game_id), reply, |catalog| {
                    let op = catalog.set_status(caller.user_id, &game_id, status)?;
                    Ok((LobbyReply::Done, op))
                });
            }
            LobbyOp::Publish {
                game_id,
                version,
                files,
            } => {
                if let Err(taken) = room_types_free(world, &game_id, &version) {
                    let _ = reply.send(Err(DomainError::Conflict(taken)));
                    return;
                }
                change_then_reply(world, Some(&game_id), reply, |catalog| {
                    let record = catalog.add_version(caller.user_id, &game_id, version)?;
                    let op: Persist = Box::new(move |conn| {
                        record(conn)?;
                        files
                            .place()
                            .map_err(|e| StoreError::Invariant(format!("placing the build: {e}")))
                    });
                    Ok((LobbyReply::Done, op))
                })
            }
            LobbyOp::AddReview {
                game_id,
                score,
                comment,
            } => {
                let review = Review {
                    user_id: caller.user_id,
                    player: caller.username.clone(),
                    score: u8::try_from(score).unwrap_or(0),
                    comment,
                    created_at: chrono::Utc::now().timestamp_millis(),
                };
                change_then_reply(world, Some(&game_id), reply, |catalog| {
                    let op = catalog.review(&game_id, review)?;
                    Ok((LobbyReply::Done, op))
                });
            }
            LobbyOp::StartRoom { room_id } => start_room(world, &caller, &room_id, reply),
            other => {
                let answer = answer(world, &caller, other);
                let _ = reply.send(answer);
            }
        }
    }
}

/// Requests that change nothing durable.
fn answer(world: &mut World, caller: &LobbyCaller, op: LobbyOp) -> LobbyResult {
    let catalog = world.resource::<Catalog>();
    match op {
        LobbyOp::ListMyGames => Ok(LobbyReply::Games(
            catalog
                .games()
                .iter()
                .filter(|g| g.owner == Some(caller.user_id))
                .cloned()
                .collect(),
        )),
        LobbyOp::ListVersions { game_id } => Ok(LobbyReply::Game(
            catalog.owned(&game_id, caller.user_id)?.clone(),
        )),
        LobbyOp::CheckUpload { game_id, version } => {
            catalog.check_upload(caller.user_id, &game_id, &version)?;
            Ok(LobbyReply::Done)
        }
        LobbyOp::ListGames => Ok(LobbyReply::Games(catalog.games().to_vec())),
        LobbyOp::GameDetail { game_id } | LobbyOp::ListReviews { game_id } => {
            Ok(LobbyReply::Game(catalog.get(&game_id)?.clone()))
        }
        LobbyOp::Version { game_id, version } => find_version(catalog, &game_id, version),
        LobbyOp::ListPlayers => Ok(LobbyReply::Players(world.resource::<Lobby>().online())),
        LobbyOp::ListRooms => {
            let mut rooms: Vec<RoomView> =
                world.query::<&Room>().iter(world).map(Room::view).collect();
            rooms.sort_by(|a, b| a.room_id.cmp(&b.room_id));
            Ok(LobbyReply::Rooms(rooms))
        }
        LobbyOp::CreateRoom { game_id, seats } => create_room(world, caller, &game_id, seats),
        LobbyOp::JoinRoom { room_id } => join_room(world, caller, &room_id),
        LobbyOp::JoinRoomBySerial { game_id, serial } => {
            let room_id = world
                .query::<&Room>()
                .iter(world)
                .find(|r| r.game_id == game_id && i64::from(r.serial) == serial)
                .map(|r| r.room_id.clone())
                .ok_or_else(|| {
                    DomainError::NotFound(format!("no room number {serial} of game {game_id}"))
                })?;
            join_room(world, caller, &room_id)
        }
        LobbyOp::Chat {
            room_id,
            meta,
            message,
        } => chat(world, caller, &room_id, meta, message),
        LobbyOp::Listen { push } => {
            let mut lobby = world.resource_mut::<Lobby>();
            lobby.listeners.retain(|_, push| !push.is_closed());
            lobby.listeners.insert((caller.conn, caller.user_id), push);
            Ok(LobbyReply::Done)
        }
        LobbyOp::Unlisten => {
            world
                .resource_mut::<Lobby>()
                .listeners
                .retain(|(conn, _), _| *conn != caller.conn);
            Ok(LobbyReply::Done)
        }
        LobbyOp::LeaveRoom { room_id } => {
            leave_room(world, caller, &room_id).map(|()| LobbyReply::Done)
        }
        LobbyOp::StartRoom { .. } => Err(DomainError::Internal("misrouted START_ROOM".into())),
        LobbyOp::LaunchStream { game_id } => launch_stream(world, caller, &game_id),
        LobbyOp::StopStream { session_id } => stop_stream(world, caller, &session_id),
        LobbyOp::Enter { push } => enter(world, caller, push),
        LobbyOp::Exit => exit(world, caller),
        LobbyOp::CreateGame(_)
        | LobbyOp::UpdateMeta { .. }
        | LobbyOp::SetStatus { .. }
        | LobbyOp::Publish { .. }
        | LobbyOp::AddReview { .. } => Err(DomainError::Internal("misrouted request".into())),
    }
}

/// A version of a game to download: the one named, or the latest (the built-in game has
/// none to download).
fn find_version(catalog: &Catalog, game_id: &str, version: Option<String>) -> LobbyResult {
    let game = catalog.get(game_id)?;
    let found = match &version {
        Some(v) => Some(
            game.version(v)
                .ok_or_else(|| DomainError::NotFound(format!("no version {v:?} of {game_id}")))?
                .clone(),
        ),
        None => game.latest().cloned(),
    };
    if found.is_none() && !game.builtin {
        return Err(DomainError::NotFound(format!(
            "{game_id} has no uploaded version yet"
        )));
    }
    Ok(LobbyReply::Version {
        game: game.clone(),
        version: found,
    })
}

/// Stops a launched session, for whoever launched it.
fn stop_stream(world: &mut World, caller: &LobbyCaller, session_id: &str) -> LobbyResult {
    let mut lobby = world.resource_mut::<Lobby>();
    match lobby.streams.get(session_id) {
        Some((owner, _)) if *owner == caller.user_id => {}
        Some(_) => {
            return Err(DomainError::Forbidden(
                "only who launched a session stops it".into(),
            ));
        }
        None => {
            return Err(DomainError::NotFound(format!("no session {session_id:?}")));
        }
    }
    let (_, game_id) = lobby.streams.remove(session_id).unwrap_or_default();
    lobby.closing_instances.push(session_id.to_owned());
    super::scripts::rooms::stop(world, session_id);
    Ok(LobbyReply::Stopped { game_id })
}

/// A lobby connection opened: the user is online (announced if it is their first).
fn enter(world: &mut World, caller: &LobbyCaller, push: mpsc::Sender<Bytes>) -> LobbyResult {
    let encode = *world.resource::<Encoders>();
    let mut lobby = world.resource_mut::<Lobby>();
    let arriving = !lobby.is_online(caller.user_id);
    lobby
        .connections
        .insert(caller.conn, (caller.user_id, caller.username.clone(), push));
    if arriving {
        lobby.broadcast((encode.lobby_presence)(
            std::slice::from_ref(&caller.username),
            &[],
        ));
    }
    Ok(LobbyReply::Done)
}

/// A lobby connection closed: with the user's last one, they leave their rooms and are
/// announced offline.
fn exit(world: &mut World, caller: &LobbyCaller) -> LobbyResult {
    let encode = *world.resource::<Encoders>();
    let removed = world
        .resource_mut::<Lobby>()
        .connections
        .remove(&caller.conn);
    if removed.is_some() && !world.resource::<Lobby>().is_online(caller.user_id) {
        let rooms: Vec<String> = world
            .query::<&Room>()
            .iter(world)
            .filter(|r| r.players.iter().any(|p| p.0 == caller.user_id))
            .map(|r| r.room_id.clone())
            .collect();
        for room_id in rooms {
            let _ = leave_room(world, caller, &room_id);
        }
        world.resource::<Lobby>().broadcast((encode.lobby_presence)(
            &[],
            std::slice::from_ref(&caller.username),
        ));
    }
    Ok(LobbyReply::Done)
}

/// Whether `user` may enter the instance named `instance`: a room's instance is for its
/// members, a launched session's for whoever launched it; star systems are open to all.
pub fn may_enter(world: &World, instance: &str, user: Uuid) -> Result<(), DomainError> {
    let Some(lobby) = world.get_resource::<Lobby>() else {
        return Ok(());
    };
    let room = lobby
        .rooms
        .get(instance)
        .and_then(|e| world.get::<Room>(*e));
    let hosted = lobby.hosted.get(instance);
    if room.is_some_and(|room| !room.players.iter().any(|p| p.0 == user))
        || hosted.is_some_and(|players| !players.contains(&user))
    {
        return Err(DomainError::Forbidden(format!(
            "only the players of room {instance} enter it"
        )));
    }
    if lobby
        .streams
        .get(instance)
        .is_some_and(|(launcher, _)| *launcher != user)
    {
        return Err(DomainError::Forbidden(format!(
            "only who launched session {instance} enters it"
        )));
    }
    Ok(())
}

fn room_entity(world: &World, room_id: &str) -> Result<Entity, DomainError> {
    world
        .get_resource::<Lobby>()
        .and_then(|lobby| lobby.rooms.get(room_id))
        .copied()
        .ok_or_else(|| DomainError::NotFound(format!("no room {room_id:?}")))
}

fn online_game(world: &World, game_id: &str) -> Result<Game, DomainError> {
    let game = world.resource::<Catalog>().get(game_id)?.clone();
    if game.status != GameStatus::Online {
        return Err(bad_state(format!("{} is offline", game.name)));
    }
    Ok(game)
}

fn bad_state(message: String) -> DomainError {
    DomainError::BadState(message)
}

fn push_room(world: &World, room: &Room) {
    let encode = *world.resource::<Encoders>();
    world
        .resource::<Lobby>()
        .broadcast((encode.lobby_room)(&room.view(), false));
}

fn create_room(
    world: &mut World,
    caller: &LobbyCaller,
    game_id: &str,
    seats: Option<i64>,
) -> LobbyResult {
    let game = online_game(world, game_id)?;
    let seats = match seats {
        None => game.max_players,
        Some(n) if n >= 1 && n <= i64::from(game.max_players) => n as u32,
        Some(n) => {
            return Err(DomainError::InvalidInput(format!(
                "a room of {} has 1 to {} seats, not {n}",
                game.name, game.max_players
            )));
        }
    };
    let Some(version) = game.latest_version() else {
        return Err(bad_state(format!(
            "{} has no version to play yet",
            game.name
        )));
    };
    if let Some(current) = room_of(world, caller.user_id) {
        return Err(bad_state(format!(
            "already in room {current}; leave it first"
        )));
    }
    let serial = next_serial(world, &game.game_id);
    let room = Room {
        room_id: format!("room-{}", &Uuid::new_v4().simple().to_string()[..12]),
        serial,
        game_id: game.game_id.clone(),
        version,
        players: vec![(caller.user_id, caller.username.clone())],
        max_players: seats,
        status: RoomStatus::Waiting,
    };
    let view = room.view();
    push_room(world, &room);
    let entity = world.spawn(room).id();
    world
        .resource_mut::<Lobby>()
        .rooms
        .insert(view.room_id.clone(), entity);
    Ok(LobbyReply::Room(view))
}

/// The lowest number no open room of the game has, so numbers stay small.
fn next_serial(world: &mut World, game_id: &str) -> u32 {
    let mut taken: Vec<u32> = world
        .query::<&Room>()
        .iter(world)
        .filter(|r| r.game_id == game_id)
        .map(|r| r.serial)
        .collect();
    taken.sort_unstable();
    let mut serial = 1;
    for n in taken {
        if n == serial {
            serial += 1;
        }
    }
    serial
}

/// Delivers a chat message to every member of the room: lobby connections as a
/// `ROOM_CHAT` line, GARP sockets as a typed message they encode, comms connections as a
/// broadcast on `room.<room_id>`.
fn chat(
    world: &mut World,
    caller: &LobbyCaller,
    room_id: &str,
    meta: serde_json::Value,
    message: String,
) -> LobbyResult {
    let encode = *world.resource::<Encoders>();
    let entity = room_entity(world, room_id)?;
    let room = world
        .get::<Room>(entity)
        .ok_or_else(|| DomainError::NotFound(format!("no room {room_id:?}")))?;
    if !room.players.iter().any(|p| p.0 == caller.user_id) {
        return Err(DomainError::Forbidden(format!(
            "only members of room {room_id} chat in it"
        )));
    }
    let members: Vec<(Uuid, String)> = room.players.clone();
    let chat = RoomChat {
        room_id: room_id.to_owned(),
        from_user: caller.user_id,
        from: caller.username.clone(),
        meta,
        message,
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    let is_member = |user: &Uuid| members.iter().any(|m| m.0 == *user);
    let lobby = world.resource::<Lobby>();
    let mut delivered = 0;
    let line = (encode.lobby_chat)(&chat);
    for (user, _, push) in lobby.connections.values() {
        if is_member(user) && push.try_send(line.clone()).is_ok() {
            delivered += 1;
        }
    }
    for ((_, user), push) in &lobby.listeners {
        if is_member(user) && push.try_send(chat.clone()).is_ok() {
            delivered += 1;
        }
    }
    if let Some(hub) = world.get_resource::<super::comms::Hub>() {
        let frame = super::comms::CommsOut::Text((encode.comms_room_chat)(
            &chat,
            &format!("chat_{}", Uuid::new_v4().simple()),
        ));
        for (_, name) in &members {
            delivered += hub.send_to_user(name, &frame);
        }
    }
    Ok(LobbyReply::Chatted(delivered))
}

fn room_of(world: &mut World, user: Uuid) -> Option<String> {
    world
        .query::<&Room>()
        .iter(world)
        .find(|r| r.players.iter().any(|p| p.0 == user))
        .map(|r| r.room_id.clone())
}

fn join_room(world: &mut World, caller: &LobbyCaller, room_id: &str) -> LobbyResult {
    let entity = room_entity(world, room_id)?;
    let room = world
        .get::<Room>(entity)
        .cloned()
        .ok_or_else(|| DomainError::NotFound(format!("no room {room_id:?}")))?;
    online_game(world, &room.game_id)?;
    if room.players.iter().any(|p| p.0 == caller.user_id) {
        return Ok(LobbyReply::Room(room.view()));
    }
    if let Some(current) = room_of(world, caller.user_id) {
        return Err(bad_state(format!(
            "already in room {current}; leave it first"
        )));
    }
    if room.players.len() >= room.max_players as usize {
        return Err(bad_state(format!("room {room_id} is full")));
    }
    let mut room = room;
    room.players.push((caller.user_id, caller.username.clone()));
    push_room(world, &room);
    let view = room.view();
    world.entity_mut(entity).insert(room);
    Ok(LobbyReply::Room(view))
}

fn leave_room(world: &mut World, caller: &LobbyCaller, room_id: &str) -> Result<(), DomainError> {
    let encode = *world.resource::<Encoders>();
    let entity = room_entity(world, room_id)?;
    let mut room = world
        .get::<Room>(entity)
        .cloned()
        .ok_or_else(|| DomainError::NotFound(format!("no room {room_id:?}")))?;
    if !room.players.iter().any(|p| p.0 == caller.user_id) {
        return Err(bad_state(format!("not in room {room_id}")));
    }
    room.players.retain(|p| p.0 != caller.user_id);
    if room.players.is_empty() {
        world
            .resource::<Lobby>()
            .broadcast((encode.lobby_room)(&room.view(), true));
        world.despawn(entity);
        let mut lobby = world.resource_mut::<Lobby>();
        lobby.rooms.remove(room_id);
        lobby.closing_instances.push(room_id.to_owned());
        super::scripts::rooms::stop(world, room_id);
        tracing::info!(room = %room_id, game = %room.game_id, "room ended: its last player left");
    } else {
        push_room(world, &room);
        world.entity_mut(entity).insert(room);
    }
    Ok(())
}

/// Ends a room for everyone (an operator's action): the lobby hears it is gone, and the
/// players in its instance are told (`error ROOM_ENDED`) and disconnected, after which the
/// instance is removed.
pub fn end_room(world: &mut World, room_id: &str) -> Result<RoomView, DomainError> {
    room_entity(world, room_id)?;
    let view = close_room(
        world,
        room_id,
        &format!("an operator ended room {room_id}"),
        true,
    )
    .ok_or_else(|| DomainError::NotFound(format!("no room {room_id:?}")))?;
    tracing::info!(room = %room_id, game = %view.game_id, "room ended by an operator");
    Ok(view)
}

/// Closes a room (or a launched session): the lobby hears it is gone, its script (if
/// any) stops, and its instance is removed once no ship is left in it. With `disconnect`,
/// the players in the instance are told why (`error ROOM_ENDED`) and disconnected;
/// otherwise they stay connected (a match that finished has told them its results) until
/// they leave. `None` if there was no such room or session.
pub(crate) fn close_room(
    world: &mut World,
    room_id: &str,
    why: &str,
    disconnect: bool,
) -> Option<RoomView> {
    let encode = *world.resource::<Encoders>();
    super::scripts::rooms::stop(world, room_id);
    let room = room_entity(world, room_id)
        .ok()
        .and_then(|entity| Some((entity, world.get::<Room>(entity).cloned()?)));
    let view = match room {
        Some((entity, room)) => {
            world
                .resource::<Lobby>()
                .broadcast((encode.lobby_room)(&room.view(), true));
            world.despawn(entity);
            world.resource_mut::<Lobby>().rooms.remove(room_id);
            Some(room.view())
        }
        None => {
            world.get_resource_mut::<Lobby>()?.streams.remove(room_id)?;
            None
        }
    };
    world
        .resource_mut::<Lobby>()
        .closing_instances
        .push(room_id.to_owned());
    if disconnect
        && let Some(instance) = world
            .get_resource::<Instances>()
            .and_then(|instances| instances.get(room_id))
    {
        let mut clients = world.query::<(&crate::sim::players::Client, &InInstance)>();
        for (client, _) in clients.iter(world).filter(|(_, i)| i.0 == instance) {
            client.link.error("ROOM_ENDED", why.to_owned());
            client.link.close(crate::bridge::Ending::Done, "room ended");
        }
    }
    view
}

/// A version's room game may declare only message types nobody else takes: not a mod's,
/// not another game's rooms'. The reason, naming the owner, when one is taken.
fn room_types_free(world: &World, game_id: &str, version: &Version) -> Result<(), String> {
    let Some(room) = &version.room else {
        return Ok(());
    };
    let types = world.resource::<crate::sim::extend::GameMessageTypes>();
    let ours = format!("the rooms of game {game_id}");
    for kind in &room.manifest.messages {
        if let Some(owner) = types.script_owner(kind).filter(|o| *o != ours) {
            return Err(format!(
                "the room game's message type {kind:?} is taken by {owner}"
            ));
        }
        if let Some(other) = super::scripts::declared_by_room_game(world, kind, Some(game_id)) {
            return Err(format!(
                "the room game's message type {kind:?} is reserved for the rooms of game {other}"
            ));
        }
    }
    Ok(())
}

/// `START_ROOM` (and GARP's `LockRoomRequest`), by the room's host. The room's world
/// starts here, or, in a cluster with a node holding fewer players, there: then the answer
/// waits for that node to say the world is running (see [`super::nodes`]).
fn start_room(
    world: &mut World,
    caller: &LobbyCaller,
    room_id: &str,
    reply: oneshot::Sender<LobbyResult>,
) {
    let room = match startable_room(world, caller, room_id) {
        Ok(room) => room,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    let cluster = world.get_resource::<crate::cluster::Cluster>().cloned();
    // A scripted room runs where its lobby is: the script and its results stay with it.
    let scripted = room_script(world, &room).is_some();
    let elsewhere = match &cluster {
        Some(cluster)
            if cluster.is_clustered()
                && !scripted
                && world.resource::<Instances>().get(room_id).is_none() =>
        {
            let own = super::nodes::players_here(world);
            world
                .resource::<super::nodes::Nodes>()
                .less_loaded_than(own, cluster.node_timeout())
        }
        _ => None,
    };
    match (cluster, elsewhere) {
        (Some(cluster), Some((node, info))) => {
            cluster.tell(super::nodes::NodeNote::HostRoom {
                node: node.clone(),
                room_id: room_id.to_owned(),
                members: room.players.iter().map(|p| p.0).collect(),
            });
            world.resource_mut::<super::nodes::Nodes>().placing.insert(
                room_id.to_owned(),
                super::nodes::Placing {
                    node,
                    endpoint: info.endpoint,
                    asked: std::time::Instant::now(),
                    reply,
                },
            );
        }
        _ => {
            let _ = reply.send(start_here(world, room_id));
        }
    }
}

/// The room, if `caller` may start it now.
fn startable_room(world: &World, caller: &LobbyCaller, room_id: &str) -> Result<Room, DomainError> {
    let entity = room_entity(world, room_id)?;
    let room = world
        .get::<Room>(entity)
        .cloned()
        .ok_or_else(|| DomainError::NotFound(format!("no room {room_id:?}")))?;
    if room.players.first().map(|p| p.0) != Some(caller.user_id) {
        return Err(DomainError::Forbidden(
            "only the host starts the room".into(),
        ));
    }
    online_game(world, &room.game_id)?;
    Ok(room)
}

/// The room script of the room's game version, if it has one.
fn room_script(world: &World, room: &Room) -> Option<super::scripts::RoomScriptRef> {
    let catalog = world.resource::<Catalog>();
    let game = catalog.get(&room.game_id).ok()?;
    game.version(&room.version)?.room.clone()
}

/// Starts the room's world on this node and marks the room playing. A game whose version
/// carries a room script has its rules run there; if the script fails to start, the room
/// stays waiting and the host hears why.
fn start_here(world: &mut World, room_id: &str) -> LobbyResult {
    if world.resource::<Instances>().get(room_id).is_none() {
        let room = room_entity(world, room_id)
            .ok()
            .and_then(|e| world.get::<Room>(e).cloned());
        let script = room.as_ref().and_then(|room| room_script(world, room));
        let system = script.as_ref().and_then(|s| s.manifest.system.clone());
        let Some(layout) = world.resource::<RoomLayouts>().get(system.as_deref()) else {
            return Err(DomainError::Internal(format!(
                "no world layout {} to start a room in",
                system.unwrap_or_default()
            )));
        };
        let Some(instance) = create_instance(world, room_id, layout) else {
            return Err(DomainError::Internal(
                "the room's world could not be made".into(),
            ));
        };
        if let (Some(script), Some(room)) = (script, room)
            && let Err(why) = super::scripts::rooms::start(
                world,
                room_id,
                &room.game_id,
                &room.version,
                &script,
                instance,
                room.players.clone(),
            )
        {
            destroy_instance(world, room_id);
            return Err(DomainError::BadState(format!(
                "the room's script failed to start: {why}"
            )));
        }
    }
    let endpoint = world.resource::<GameEndpoint>().clone();
    mark_playing(world, room_id, endpoint)
}

/// The room is playing at `endpoint`: everyone in the lobby is told, and so is its host.
fn mark_playing(world: &mut World, room_id: &str, endpoint: GameEndpoint) -> LobbyResult {
    let entity = room_entity(world, room_id)?;
    let mut room = world
        .get::<Room>(entity)
        .cloned()
        .ok_or_else(|| DomainError::NotFound(format!("no room {room_id:?}")))?;
    room.status = RoomStatus::Playing;
    push_room(world, &room);
    tracing::info!(
        room = %room_id,
        game = %room.game_id,
        players = room.players.len(),
        host = %endpoint.host,
        port = endpoint.port,
        "room started"
    );
    let view = room.view();
    world.entity_mut(entity).insert(room);
    Ok(LobbyReply::Started {
        room: view,
        host: endpoint.host,
        port: endpoint.port,
    })
}

/// Another node runs the room's world now (it said so): the host hears where.
pub(crate) fn room_placed(world: &mut World, room_id: &str, placing: super::nodes::Placing) {
    let answer = mark_playing(world, room_id, placing.endpoint);
    let _ = placing.reply.send(answer);
}

/// The node that ran the room's world is gone: it runs here now, if the room still is.
pub(crate) fn room_moved_here(world: &mut World, room_id: &str) {
    if room_entity(world, room_id).is_ok()
        && let Err(e) = start_here(world, room_id)
    {
        tracing::error!(room = %room_id, "the room cannot start here: {e}");
    }
}

/// The node asked to run the room's world did not answer: it runs here.
pub(crate) fn room_start_here(world: &mut World, room_id: &str, placing: super::nodes::Placing) {
    let _ = placing.reply.send(start_here(world, room_id));
}

/// Another node placed a room here: its world starts, open to its players only.
pub(crate) fn host_room(world: &mut World, room_id: &str, members: Vec<Uuid>) {
    if world.resource::<Instances>().get(room_id).is_none()
        && let Some(layout) = world.resource::<RoomLayouts>().get(None)
    {
        create_instance(world, room_id, layout);
    }
    world
        .resource_mut::<Lobby>()
        .hosted
        .insert(room_id.to_owned(), members);
}

/// Creates an instance (of the default layout, as rooms do) named by a new session id.
/// A game whose latest version carries a room script runs it there, with the launcher as
/// its one player.
fn launch_stream(world: &mut World, caller: &LobbyCaller, game_id: &str) -> LobbyResult {
    let game = online_game(world, game_id)?;
    let latest = game.latest().cloned();
    let script = latest.as_ref().and_then(|v| v.room.clone());
    let system = script.as_ref().and_then(|s| s.manifest.system.clone());
    let Some(layout) = world.resource::<RoomLayouts>().get(system.as_deref()) else {
        return Err(DomainError::Internal(format!(
            "no world layout {} to launch in",
            system.unwrap_or_default()
        )));
    };
    let session_id = Uuid::new_v4().to_string();
    let instance = create_instance(world, &session_id, layout)
        .ok_or_else(|| DomainError::Internal("the session's world could not be made".into()))?;
    if let (Some(script), Some(version)) = (script, latest)
        && let Err(why) = super::scripts::rooms::start(
            world,
            &session_id,
            game_id,
            &version.version,
            &script,
            instance,
            vec![(caller.user_id, caller.username.clone())],
        )
    {
        destroy_instance(world, &session_id);
        return Err(DomainError::BadState(format!(
            "the game's script failed to start: {why}"
        )));
    }
    world
        .resource_mut::<Lobby>()
        .streams
        .insert(session_id.clone(), (caller.user_id, game_id.to_owned()));
    let endpoint = world.resource::<GameEndpoint>().clone();
    Ok(LobbyReply::Launched {
        session_id,
        game_id: game_id.to_owned(),
        host: endpoint.host,
        port: endpoint.port,
    })
}

/// Removes the instances of closed rooms once no player's ship is left in them.
fn reap_room_instances(world: &mut World) {
    let closing = std::mem::take(&mut world.resource_mut::<Lobby>().closing_instances);
    if closing.is_empty() {
        return;
    }
    let mut still_busy = Vec::new();
    for room_id in closing {
        let Some(instance) = world.resource::<Instances>().get(&room_id) else {
            continue;
        };
        let occupied = world
            .query_filtered::<&InInstance, With<Pilot>>()
            .iter(world)
            .any(|i| i.0 == instance);
        if occupied {
            still_busy.push(room_id);
        } else {
            destroy_instance(world, &room_id);
        }
    }
    world.resource_mut::<Lobby>().closing_instances = still_busy;
}

/// A game another node changed, as the database has it now.
#[derive(Debug)]
pub struct GameHeard {
    pub game_id: String,
    pub game: Option<crate::services::catalog::Game>,
}

impl crate::bridge::InboxCommand for GameHeard {}

/// A game of the catalog changed on the sending node (created, updated, a version
/// published, set OFFLINE): read it again from the database.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GameChanged {
    game_id: String,
}

impl ClusterNote for GameChanged {
    const KIND: &'static str = "game_changed";
}

/// Games changed on the other nodes are read again here, off the simulation thread.
pub fn hear_cluster(cluster: &Cluster, inbox: &Inbox, store: &crate::store::Store) {
    let (inbox, store) = (inbox.clone(), store.clone());
    cluster.hear(move |heard: Heard<GameChanged>| {
        let (inbox, store) = (inbox.clone(), store.clone());
        let game_id = heard.note.game_id;
        tokio::spawn(async move {
            match crate::services::catalog::read_game(&store, game_id.clone()).await {
                Ok(game) => {
                    let _ = inbox.send(Command::to(GameHeard { game_id, game }));
                }
                Err(e) => tracing::warn!(game = %game_id, "cannot read a changed game: {e}"),
            }
        });
    });
}

fn apply_games_heard(world: &mut World) {
    let heard = std::mem::take(&mut world.resource_mut::<Pending<GameHeard>>().0);
    let mut catalog = world.resource_mut::<Catalog>();
    for GameHeard { game_id, game } in heard {
        catalog.heard(&game_id, game);
    }
}

pub struct LobbyPlugin {
    pub catalog: Arc<parking_lot::Mutex<Option<Catalog>>>,
    pub endpoint: GameEndpoint,
}

impl Plugin for LobbyPlugin {
    fn build(&self, app: &mut App) {
        let catalog = self.catalog.lock().take().unwrap_or_default();
        app.insert_resource(catalog)
            .insert_resource(self.endpoint.clone())
            .init_resource::<Lobby>()
            .init_resource::<Pending<LobbyRequest>>()
            .init_resource::<Pending<GameHeard>>()
            .add_systems(
                HandleCommands,
                (apply_games_heard, handle_lobby_requests).chain(),
            )
            .add_systems(bevy_app::FixedLast, reap_room_instances);
    }
}
