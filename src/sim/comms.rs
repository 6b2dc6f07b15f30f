//! The comms hub (comms-ws.md): topics, subscriptions, presence, history and extension
//! handlers, as a resource of the simulation.
//!
//! Connections register with [`CommsCommand::Open`]; subscriptions are exact topics (an
//! index) or patterns with `*` segments (scanned). A broadcast is encoded once into
//! `Bytes` and the same bytes are queued for every matching connection; a connection whose
//! queue is full is disconnected (its writer is kicked), never waited for. Presence goes to
//! subscribers of `presence` and `presence.<user>` when a user's first connection opens or
//! last one closes. Each topic keeps a bounded ring of its last broadcasts for `History`.
//! Plugins add `X-` message types with [`CommsAppExt::add_comms_handler`].

use std::collections::{HashMap, HashSet, VecDeque};

use base64::Engine as _;
use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{HandleCommands, Pending};
use crate::bridge::{Command, ConnId, Inbox, Link};
use crate::cluster::{Cluster, ClusterNote, Heard, NodeLeaving};
use crate::services::DomainError;

/// What a comms connection's writer sends.
#[derive(Debug, Clone)]
pub enum CommsOut {
    Text(Bytes),
    Binary(Bytes),
    Ping,
    /// Close the connection, for this ending (its code is comms'), with a reason.
    Close(crate::bridge::Ending, String),
}

impl CommsOut {
    /// Bytes a queued message counts for against its connection's budget. A frame shared
    /// by many recipients counts fully for each: each could be the one keeping it alive.
    pub fn weight(&self) -> usize {
        match self {
            CommsOut::Text(bytes) | CommsOut::Binary(bytes) => bytes.len(),
            CommsOut::Ping => 0,
            CommsOut::Close(_, reason) => reason.len(),
        }
    }
}

pub type CommsLink = Link<CommsOut>;

/// An `X-` message as its handler sees it.
#[derive(Debug, Clone)]
pub struct ExtensionCall {
    pub conn: ConnId,
    /// The sender's username.
    pub user: String,
    pub kind: String,
    pub data: Value,
}

/// A handler for one `X-` message type: runs on the simulation thread with the world, and
/// answers with the `data` of a reply of the same type.
pub type ExtensionHandler =
    Box<dyn Fn(&mut World, &ExtensionCall) -> Result<Value, DomainError> + Send + Sync>;

/// Registered `X-` handlers.
#[derive(Resource, Default)]
pub struct CommsExtensions {
    handlers: HashMap<String, ExtensionHandler>,
}

/// Adds `X-` handlers to an app: the documented way for a plugin to extend comms.
///
/// ```
/// use bevy_app::App;
/// use ecliptic::sim::comms::CommsAppExt;
///
/// let mut app = App::new();
/// app.add_comms_handler("X-Echo", |_world, call| Ok(call.data.clone()));
/// ```
pub trait CommsAppExt {
    fn add_comms_handler(
        &mut self,
        kind: &str,
        handler: impl Fn(&mut World, &ExtensionCall) -> Result<Value, DomainError>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self;
}

impl CommsAppExt for App {
    fn add_comms_handler(
        &mut self,
        kind: &str,
        handler: impl Fn(&mut World, &ExtensionCall) -> Result<Value, DomainError>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        self.init_resource::<CommsExtensions>();
        self.world_mut()
            .resource_mut::<CommsExtensions>()
            .handlers
            .insert(kind.to_owned(), Box::new(handler));
        self
    }
}

/// Whether `pattern` (with `*` segments) matches `topic`. A trailing `*` matches one or
/// more segments (`updates.*` matches `updates.a` and `updates.a.b`); elsewhere `*` matches
/// exactly one.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.').peekable();
    let mut t = topic.split('.');
    while let Some(ps) = p.next() {
        let last = p.peek().is_none();
        match t.next() {
            None => return false,
            Some(_) if ps == "*" && last => return true,
            Some(ts) if ps == "*" || ps == ts => {}
            Some(_) => return false,
        }
    }
    t.next().is_none()
}

/// Whether someone may publish to `topic`, whatever its letter case: `events` and `room`
/// topics carry only what the server itself sends (the event bus, room chat), and
/// `system`, `notifications` and `presence` topics are for admins.
pub fn check_publish(topic: &str, is_admin: bool) -> Result<(), DomainError> {
    let topic = topic.to_ascii_lowercase();
    let under = |root: &str| {
        topic == root
            || topic
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    if let Some(root) = ["events", "room"].into_iter().find(|r| under(r)) {
        return Err(DomainError::Forbidden(format!(
            "{root} topics carry what the server sends; nobody publishes there"
        )));
    }
    let reserved = ["system", "notifications", "presence"];
    match reserved.into_iter().find(|r| under(r)) {
        Some(root) if !is_admin => Err(DomainError::Forbidden(format!(
            "publishing to {root} topics needs the admin role"
        ))),
        _ => Ok(()),
    }
}

/// Where a direct message went.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectOutcome {
    /// Delivered to these connections (their ids as the protocol shows them).
    Delivered(Vec<String>),
    /// The user has no open connection.
    Offline,
}

/// A subscription's outcome: how many topics the connection now has, and the users online
/// now when it newly subscribed to presence (sent to it as `Presence` right after).
#[derive(Debug)]
pub struct Subscribed {
    pub active: usize,
    pub online: Vec<String>,
}

/// A publication's reach: connections on this node it went to, and how many other nodes
/// were asked to count theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    pub here: usize,
    pub nodes_asked: usize,
}

#[derive(Debug)]
pub enum CommsCommand {
    Open {
        conn: ConnId,
        connection_id: String,
        user: String,
        link: CommsLink,
    },
    Close {
        conn: ConnId,
    },
    Subscribe {
        conn: ConnId,
        topics: Vec<String>,
        reply: oneshot::Sender<Result<Subscribed, DomainError>>,
    },
    Unsubscribe {
        conn: ConnId,
        topics: Vec<String>,
        reply: oneshot::Sender<usize>,
    },
    /// Deliver `frame` to every subscriber of `topic`; `record` goes into the history.
    Publish {
        topic: String,
        frame: CommsOut,
        record: Option<Value>,
        /// Asks the other nodes to count their deliveries back under this id
        /// ([`crate::cluster::Cluster::expect_counts`]).
        count_remote: Option<String>,
        reply: Option<oneshot::Sender<Published>>,
    },
    Direct {
        target: String,
        frame: CommsOut,
        reply: oneshot::Sender<DirectOutcome>,
    },
    History {
        topic: String,
        limit: usize,
        reply: oneshot::Sender<Vec<Value>>,
    },
    Extension {
        call: ExtensionCall,
        reply: oneshot::Sender<Result<Value, DomainError>>,
    },
    /// A broadcast published on another node, for this node's subscribers.
    RemotePublish {
        topic: String,
        frame: CommsOut,
        record: Option<Value>,
        /// The node that asks for the count of deliveries here, and its id for it.
        count_for: Option<(String, String)>,
    },
    /// A direct message sent on another node, for `user`'s connections here.
    RemoteDirect {
        user: String,
        frame: CommsOut,
    },
    /// Another node said it is stopping: its users are offline now, not at its timeout.
    RemoteGone {
        node: String,
    },
    /// `user`'s connections on another node changed (none: gone from it).
    RemotePresence {
        node: String,
        user: String,
        connections: Vec<String>,
    },
    /// Another node's periodic list of its users and their connections.
    RemoteHeartbeat {
        node: String,
        users: Vec<(String, Vec<String>)>,
    },
    /// Time to tell the other nodes who is here, and to forget silent ones.
    ClusterBeat,
}

impl crate::bridge::InboxCommand for CommsCommand {}

/// A comms frame as it crosses to other nodes: text as it is, binary in base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "as", content = "data", rename_all = "snake_case")]
pub enum CrossingFrame {
    Text(String),
    Binary(String),
}

impl CrossingFrame {
    /// The frame of an outgoing comms message; pings and closes do not cross.
    pub fn of(out: &CommsOut) -> Option<Self> {
        match out {
            CommsOut::Text(bytes) => {
                Some(CrossingFrame::Text(String::from_utf8_lossy(bytes).into()))
            }
            CommsOut::Binary(bytes) => Some(CrossingFrame::Binary(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )),
            CommsOut::Ping | CommsOut::Close(..) => None,
        }
    }

    pub fn into_out(self) -> Option<CommsOut> {
        match self {
            CrossingFrame::Text(text) => Some(CommsOut::Text(Bytes::from(text))),
            CrossingFrame::Binary(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .map(|bytes| CommsOut::Binary(Bytes::from(bytes))),
        }
    }
}

/// What the comms hub tells the other nodes' hubs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum CommsNote {
    /// A broadcast published on the sending node; `record` goes into topic history.
    Publish {
        topic: String,
        frame: CrossingFrame,
        record: Option<Value>,
        /// When set, each node reports its count of deliveries under this id
        /// ([`Cluster::report_count`]).
        #[serde(default)]
        count: Option<String>,
    },
    /// A direct message for `user`'s connections on whichever node holds them.
    Direct { user: String, frame: CrossingFrame },
    /// `user`'s connections on the sending node changed: their ids now (none: gone).
    Presence {
        user: String,
        connections: Vec<String>,
    },
    /// Every heartbeat: the sending node's connected users and their connection ids.
    Heartbeat { users: Vec<(String, Vec<String>)> },
}

impl ClusterNote for CommsNote {
    const KIND: &'static str = "comms";
}

/// What this node's hub hears from the others: their hubs' notes, a node leaving, and
/// the heartbeat on which it tells its own users and forgets silent nodes.
pub fn hear_cluster(cluster: &Cluster, inbox: &Inbox) {
    let to_hub = inbox.clone();
    cluster.hear(move |heard: Heard<CommsNote>| {
        let node = heard.from;
        let command = match heard.note {
            CommsNote::Publish {
                topic,
                frame,
                record,
                count,
            } => frame.into_out().map(|frame| CommsCommand::RemotePublish {
                topic,
                frame,
                record,
                count_for: count.map(|id| (node.clone(), id)),
            }),
            CommsNote::Direct { user, frame } => frame
                .into_out()
                .map(|frame| CommsCommand::RemoteDirect { user, frame }),
            CommsNote::Presence { user, connections } => Some(CommsCommand::RemotePresence {
                node,
                user,
                connections,
            }),
            CommsNote::Heartbeat { users } => Some(CommsCommand::RemoteHeartbeat { node, users }),
        };
        if let Some(command) = command {
            let _ = to_hub.send(Command::to(command));
        }
    });
    let to_hub = inbox.clone();
    cluster.hear(move |heard: Heard<NodeLeaving>| {
        let _ = to_hub.send(Command::to(CommsCommand::RemoteGone { node: heard.from }));
    });
    let to_hub = inbox.clone();
    cluster.on_beat(move || {
        let _ = to_hub.send(Command::to(CommsCommand::ClusterBeat));
    });
}

/// Who is connected to another node, as it last told.
struct RemoteNode {
    /// Lowercase username → (the name as shown, connection ids).
    users: HashMap<String, (String, Vec<String>)>,
    heard: std::time::Instant,
}

struct ConnEntry {
    connection_id: String,
    user: String,
    link: CommsLink,
    topics: HashSet<String>,
}

/// Hub limits.
#[derive(Debug, Clone)]
pub struct HubLimits {
    pub topics_per_connection: usize,
    pub history_per_topic: usize,
}

#[derive(Resource)]
pub struct Hub {
    limits: HubLimits,
    conns: HashMap<ConnId, ConnEntry>,
    /// Lowercase username → its connections.
    users: HashMap<String, Vec<ConnId>>,
    exact: HashMap<String, HashSet<ConnId>>,
    patterns: Vec<(String, ConnId)>,
    history: HashMap<String, VecDeque<Value>>,
    scratch: HashSet<ConnId>,
    /// The other nodes and who is connected to them.
    remote: HashMap<String, RemoteNode>,
    cluster: Cluster,
    /// How a presence change is written (comms' `Presence`); none: not announced.
    presence_frame: Option<fn(&str, bool, i64) -> Bytes>,
}

impl Hub {
    pub fn new(limits: HubLimits) -> Self {
        Self {
            limits,
            conns: HashMap::new(),
            users: HashMap::new(),
            exact: HashMap::new(),
            patterns: Vec::new(),
            history: HashMap::new(),
            scratch: HashSet::new(),
            remote: HashMap::new(),
            cluster: Cluster::single(),
            presence_frame: None,
        }
    }

    /// Announces presence changes in frames `encode` writes.
    pub fn with_presence_frames(mut self, encode: fn(&str, bool, i64) -> Bytes) -> Self {
        self.presence_frame = Some(encode);
        self
    }

    /// Whether `key` (a lowercase username) has a connection on any node.
    fn online_anywhere(&self, key: &str) -> bool {
        self.users.contains_key(key) || self.remote.values().any(|n| n.users.contains_key(key))
    }

    /// The connection ids `key` has on this node.
    fn local_connections(&self, key: &str) -> Vec<String> {
        self.users
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|c| self.conns.get(c).map(|e| e.connection_id.clone()))
            .collect()
    }

    /// Tells the other nodes what connections `user` has here now.
    fn tell_presence(&self, user: &str) {
        if self.cluster.is_clustered() {
            self.cluster.tell(CommsNote::Presence {
                user: user.to_owned(),
                connections: self.local_connections(&user.to_lowercase()),
            });
        }
    }

    /// Applies a change to what another node holds, announcing to this node's presence
    /// subscribers each of `affected` (lowercase usernames) who came online or went
    /// offline as a result. Only those users are looked at, so a note costs what it names.
    fn change_remote(
        &mut self,
        affected: Vec<String>,
        change: impl FnOnce(&mut HashMap<String, RemoteNode>),
    ) {
        let before: Vec<bool> = affected.iter().map(|k| self.online_anywhere(k)).collect();
        let names: Vec<Option<String>> = affected.iter().map(|k| self.remote_name(k)).collect();
        change(&mut self.remote);
        for ((key, was), name) in affected.iter().zip(before).zip(names) {
            let now = self.online_anywhere(key);
            if now != was {
                let name = self
                    .remote_name(key)
                    .or(name)
                    .unwrap_or_else(|| key.clone());
                self.presence(&name, now);
            }
        }
    }

    /// `key`'s name as another node shows it.
    fn remote_name(&self, key: &str) -> Option<String> {
        self.remote
            .values()
            .find_map(|n| n.users.get(key).map(|(name, _)| name.clone()))
    }

    fn remote_presence(&mut self, node: String, user: String, connections: Vec<String>) {
        self.change_remote(vec![user.to_lowercase()], |remote| {
            let entry = remote.entry(node).or_insert_with(|| RemoteNode {
                users: HashMap::new(),
                heard: std::time::Instant::now(),
            });
            entry.heard = std::time::Instant::now();
            let key = user.to_lowercase();
            if connections.is_empty() {
                entry.users.remove(&key);
            } else {
                entry.users.insert(key, (user, connections));
            }
        });
    }

    fn remote_heartbeat(&mut self, node: String, users: Vec<(String, Vec<String>)>) {
        let users: HashMap<String, (String, Vec<String>)> = users
            .into_iter()
            .filter(|(_, conns)| !conns.is_empty())
            .map(|(name, conns)| (name.to_lowercase(), (name, conns)))
            .collect();
        // Who the node had or has now.
        let mut affected: Vec<String> = users.keys().cloned().collect();
        if let Some(known) = self.remote.get(&node) {
            affected.extend(
                known
                    .users
                    .keys()
                    .filter(|k| !users.contains_key(*k))
                    .cloned(),
            );
        }
        self.change_remote(affected, |remote| {
            remote.insert(
                node,
                RemoteNode {
                    users,
                    heard: std::time::Instant::now(),
                },
            );
        });
    }

    /// Tells the other nodes who is here, and forgets nodes silent past the timeout
    /// (their users go offline).
    fn beat(&mut self) {
        if !self.cluster.is_clustered() {
            return;
        }
        let users = self
            .users
            .keys()
            .filter_map(|key| {
                let name = self.users[key]
                    .iter()
                    .find_map(|c| self.conns.get(c))
                    .map(|e| e.user.clone())?;
                Some((name, self.local_connections(key)))
            })
            .collect();
        self.cluster.tell(CommsNote::Heartbeat { users });
        let timeout = self.cluster.node_timeout();
        let silent: Vec<String> = self
            .remote
            .iter()
            .filter(|(_, n)| n.heard.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for node in silent {
            tracing::warn!(%node, "a cluster node went silent; its users are offline");
            self.forget_node(&node);
        }
    }

    /// Another node is gone: its users go offline (those connected elsewhere too stay).
    fn forget_node(&mut self, node: &str) {
        let Some(gone) = self.remote.get(node) else {
            return;
        };
        let affected = gone.users.keys().cloned().collect();
        self.change_remote(affected, |remote| {
            remote.remove(node);
        });
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn subscribe(
        &mut self,
        conn: ConnId,
        topics: Vec<String>,
    ) -> Result<Subscribed, DomainError> {
        let max = self.limits.topics_per_connection;
        let entry = self
            .conns
            .get_mut(&conn)
            .ok_or_else(|| DomainError::BadState("connection not open".into()))?;
        let new: Vec<String> = topics
            .into_iter()
            .filter(|t| !entry.topics.contains(t))
            .collect();
        if entry.topics.len() + new.len() > max {
            return Err(DomainError::InvalidInput(format!(
                "at most {max} topics per connection"
            )));
        }
        // Who is online now, for new presence subscriptions: later changes arrive as they
        // happen, so a subscriber's list starts complete.
        let mut online = Vec::new();
        for topic in &new {
            let lower = topic.to_lowercase();
            let wanted = match lower.strip_prefix("presence") {
                Some("") | Some(".*") => None,
                Some(user) if user.starts_with('.') => Some(&user[1..]),
                _ => continue,
            };
            for (key, conns) in &self.users {
                if wanted.is_some_and(|w| w != key) || online.iter().any(|(k, _)| k == key) {
                    continue;
                }
                if let Some(user) = conns.iter().find_map(|c| self.conns.get(c)) {
                    online.push((key.clone(), user.user.clone()));
                }
            }
            for node in self.remote.values() {
                for (key, (name, _)) in &node.users {
                    if wanted.is_some_and(|w| w != key) || online.iter().any(|(k, _)| k == key) {
                        continue;
                    }
                    online.push((key.clone(), name.clone()));
                }
            }
        }
        let entry = self
            .conns
            .get_mut(&conn)
            .ok_or_else(|| DomainError::BadState("connection not open".into()))?;
        for topic in new {
            if topic.split('.').any(|s| s == "*") {
                self.patterns.push((topic.clone(), conn));
            } else {
                self.exact.entry(topic.clone()).or_default().insert(conn);
            }
            entry.topics.insert(topic);
        }
        Ok(Subscribed {
            active: entry.topics.len(),
            online: online.into_iter().map(|(_, user)| user).collect(),
        })
    }

    fn unsubscribe(&mut self, conn: ConnId, topics: &[String]) -> usize {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return 0;
        };
        for topic in topics {
            if entry.topics.remove(topic) {
                if let Some(set) = self.exact.get_mut(topic) {
                    set.remove(&conn);
                    if set.is_empty() {
                        self.exact.remove(topic);
                    }
                }
                self.patterns.retain(|(p, c)| !(*c == conn && p == topic));
            }
        }
        entry.topics.len()
    }

    /// Queues `frame` for every subscriber of `topic`; returns how many.
    pub fn publish(&mut self, topic: &str, frame: &CommsOut) -> usize {
        self.scratch.clear();
        if let Some(set) = self.exact.get(topic) {
            self.scratch.extend(set.iter().copied());
        }
        for (pattern, conn) in &self.patterns {
            if topic_matches(pattern, topic) {
                self.scratch.insert(*conn);
            }
        }
        for conn in &self.scratch {
            if let Some(entry) = self.conns.get(conn) {
                entry.link.send(frame.clone());
            }
        }
        self.scratch.len()
    }

    fn record(&mut self, topic: &str, item: Value) {
        let ring = self.history.entry(topic.to_owned()).or_default();
        if ring.len() >= self.limits.history_per_topic {
            ring.pop_front();
        }
        ring.push_back(item);
    }

    fn presence(&mut self, user: &str, online: bool) {
        let Some(encode) = self.presence_frame else {
            return;
        };
        let frame = CommsOut::Text(encode(user, online, chrono::Utc::now().timestamp_millis()));
        self.publish("presence", &frame);
        self.publish(&format!("presence.{user}"), &frame);
    }

    /// Users with at least one connection.
    pub fn online_users(&self) -> usize {
        self.users.len()
    }

    pub fn open(&mut self, conn: ConnId, connection_id: String, user: String, link: CommsLink) {
        let key = user.to_lowercase();
        let first = !self.online_anywhere(&key);
        self.users.entry(key).or_default().push(conn);
        self.conns.insert(
            conn,
            ConnEntry {
                connection_id,
                user: user.clone(),
                link,
                topics: HashSet::new(),
            },
        );
        if first {
            self.presence(&user, true);
        }
        self.tell_presence(&user);
    }

    fn close(&mut self, conn: ConnId) {
        let topics: Vec<String> = self
            .conns
            .get(&conn)
            .map(|e| e.topics.iter().cloned().collect())
            .unwrap_or_default();
        self.unsubscribe(conn, &topics);
        let Some(entry) = self.conns.remove(&conn) else {
            return;
        };
        let key = entry.user.to_lowercase();
        let last = match self.users.get_mut(&key) {
            Some(conns) => {
                conns.retain(|c| *c != conn);
                conns.is_empty()
            }
            None => true,
        };
        if last {
            self.users.remove(&key);
            if !self.online_anywhere(&key) {
                self.presence(&entry.user, false);
            }
        }
        self.tell_presence(&entry.user);
    }

    /// Queues `frame` for every connection of `user`; returns how many.
    pub fn send_to_user(&self, user: &str, frame: &CommsOut) -> usize {
        match self.direct(user, frame) {
            DirectOutcome::Delivered(conns) => conns.len(),
            DirectOutcome::Offline => 0,
        }
    }

    /// A client's direct message: to the user's connections here and, through the
    /// cluster, on the nodes that hold the others.
    fn direct_anywhere(&self, target: &str, frame: &CommsOut) -> DirectOutcome {
        let key = target.to_lowercase();
        let mut delivered = match self.direct(target, frame) {
            DirectOutcome::Delivered(conns) => conns,
            DirectOutcome::Offline => Vec::new(),
        };
        let elsewhere: Vec<String> = self
            .remote
            .values()
            .filter_map(|n| n.users.get(&key))
            .flat_map(|(_, conns)| conns.iter().cloned())
            .collect();
        if !elsewhere.is_empty()
            && let Some(crossing) = CrossingFrame::of(frame)
        {
            self.cluster.tell(CommsNote::Direct {
                user: target.to_owned(),
                frame: crossing,
            });
            delivered.extend(elsewhere);
        }
        if delivered.is_empty() {
            DirectOutcome::Offline
        } else {
            DirectOutcome::Delivered(delivered)
        }
    }

    fn direct(&self, target: &str, frame: &CommsOut) -> DirectOutcome {
        let Some(conns) = self.users.get(&target.to_lowercase()) else {
            return DirectOutcome::Offline;
        };
        let mut delivered = Vec::with_capacity(conns.len());
        for conn in conns {
            if let Some(entry) = self.conns.get(conn) {
                entry.link.send(frame.clone());
                delivered.push(entry.connection_id.clone());
            }
        }
        if delivered.is_empty() {
            DirectOutcome::Offline
        } else {
            DirectOutcome::Delivered(delivered)
        }
    }
}

fn handle_comms(world: &mut World) {
    let pending = std::mem::take(&mut world.resource_mut::<Pending<CommsCommand>>().0);
    for cmd in pending {
        match cmd {
            CommsCommand::Extension { call, reply } => {
                let outcome = world.resource_scope(|world, ext: Mut<CommsExtensions>| {
                    match ext.handlers.get(&call.kind) {
                        Some(handler) => handler(world, &call),
                        None => Err(DomainError::InvalidInput(format!(
                            "no handler for message type {:?}",
                            call.kind
                        ))),
                    }
                });
                let _ = reply.send(outcome);
            }
            other => {
                let cluster = world.get_resource::<Cluster>().cloned();
                let mut hub = world.resource_mut::<Hub>();
                if let Some(cluster) = cluster {
                    hub.cluster = cluster;
                }
                hub_command(&mut hub, other)
            }
        }
    }
}

fn hub_command(hub: &mut Hub, cmd: CommsCommand) {
    match cmd {
        CommsCommand::Open {
            conn,
            connection_id,
            user,
            link,
        } => hub.open(conn, connection_id, user, link),
        CommsCommand::Close { conn } => hub.close(conn),
        CommsCommand::Subscribe {
            conn,
            topics,
            reply,
        } => {
            let _ = reply.send(hub.subscribe(conn, topics));
        }
        CommsCommand::Unsubscribe {
            conn,
            topics,
            reply,
        } => {
            let _ = reply.send(hub.unsubscribe(conn, &topics));
        }
        CommsCommand::Publish {
            topic,
            frame,
            record,
            count_remote,
            reply,
        } => {
            let here = hub.publish(&topic, &frame);
            let mut nodes_asked = 0;
            if hub.cluster.is_clustered()
                && let Some(crossing) = CrossingFrame::of(&frame)
            {
                if count_remote.is_some() {
                    let timeout = hub.cluster.node_timeout();
                    nodes_asked = hub
                        .remote
                        .values()
                        .filter(|n| n.heard.elapsed() <= timeout)
                        .count();
                }
                hub.cluster.tell(CommsNote::Publish {
                    topic: topic.clone(),
                    frame: crossing,
                    record: record.clone(),
                    count: count_remote,
                });
            }
            if let Some(item) = record {
                hub.record(&topic, item);
            }
            if let Some(reply) = reply {
                let _ = reply.send(Published { here, nodes_asked });
            }
        }
        CommsCommand::Direct {
            target,
            frame,
            reply,
        } => {
            let _ = reply.send(hub.direct_anywhere(&target, &frame));
        }
        CommsCommand::RemotePublish {
            topic,
            frame,
            record,
            count_for,
        } => {
            let count = hub.publish(&topic, &frame);
            if let Some((node, id)) = count_for {
                hub.cluster.report_count(node, id, count);
            }
            if let Some(item) = record {
                hub.record(&topic, item);
            }
        }
        CommsCommand::RemoteDirect { user, frame } => {
            hub.direct(&user, &frame);
        }
        CommsCommand::RemotePresence {
            node,
            user,
            connections,
        } => hub.remote_presence(node, user, connections),
        CommsCommand::RemoteHeartbeat { node, users } => hub.remote_heartbeat(node, users),
        CommsCommand::ClusterBeat => hub.beat(),
        CommsCommand::RemoteGone { node } => hub.forget_node(&node),
        CommsCommand::History {
            topic,
            limit,
            reply,
        } => {
            let items = hub
                .history
                .get(&topic)
                .map(|ring| {
                    let skip = ring.len().saturating_sub(limit);
                    ring.iter().skip(skip).cloned().collect()
                })
                .unwrap_or_default();
            let _ = reply.send(items);
        }
        CommsCommand::Extension { reply, .. } => {
            let _ = reply.send(Err(DomainError::Internal("misrouted extension".into())));
        }
    }
}

pub struct CommsPlugin {
    pub limits: HubLimits,
}

impl Plugin for CommsPlugin {
    fn build(&self, app: &mut App) {
        let mut hub = Hub::new(self.limits.clone());
        if let Some(encoders) = app.world().get_resource::<super::encoders::Encoders>() {
            hub = hub.with_presence_frames(encoders.comms_presence);
        }
        app.insert_resource(hub)
            .init_resource::<CommsExtensions>()
            .init_resource::<Pending<CommsCommand>>()
            .add_systems(HandleCommands, handle_comms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(topic_matches("chat.general", "chat.general"));
        assert!(!topic_matches("chat.general", "chat.random"));
        assert!(topic_matches("updates.*", "updates.a"));
        assert!(topic_matches("updates.*", "updates.a.b"));
        assert!(!topic_matches("updates.*", "updates"));
        assert!(topic_matches("game.*.score", "game.7.score"));
        assert!(!topic_matches("game.*.score", "game.7.8.score"));
        assert!(!topic_matches("chat", "chat.general"));
    }

    #[test]
    fn system_topics_are_for_admins() {
        assert!(check_publish("system.alerts", false).is_err());
        assert!(check_publish("system.alerts", true).is_ok());
        assert!(check_publish("chat.system", false).is_ok());
        for reserved in ["System.x", "NOTIFICATIONS", "presence.bob", "Presence"] {
            assert!(check_publish(reserved, false).is_err(), "{reserved}");
            assert!(check_publish(reserved, true).is_ok(), "{reserved}");
        }
        for servers_own in ["Events.x", "room.room-1", "ROOM"] {
            assert!(check_publish(servers_own, true).is_err(), "{servers_own}");
        }
        assert!(check_publish("systems", false).is_ok());
        assert!(check_publish("roomy.chat", false).is_ok());
    }
}
