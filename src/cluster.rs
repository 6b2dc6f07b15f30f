//! Several nodes as one server: what each node tells the others, over NATS.
//!
//! One node needs none of this: [`Cluster::single`] tells nobody. With `[cluster] nats`
//! set, every node publishes [`Note`]s on one subject (`<subject_prefix>.bus`) and hears
//! everyone else's: comms broadcasts and direct messages, which users are connected where
//! (presence, and the heartbeat that notices a node that stopped), platform events, and
//! sessions opened or ended, so a token from one node works on every other and a logout
//! ends it everywhere. A broadcast crosses as the bytes its node encoded, so each
//! publication is encoded once per node, not once per subscriber.
//!
//! Notes leave through an unbounded channel so the simulation thread never waits on the
//! network; a note that finds NATS down is dropped and counted, as a network would.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bridge::{Command, Inbox};
use crate::config::ClusterConfig;
use crate::services::accounts::Accounts;
use crate::services::garp_players::GarpPlayers;
use crate::sim::comms::{CommsCommand, CommsOut};
use crate::sim::lobby::GameEndpoint;
use crate::sim::nodes::NodesCommand;
use crate::store::Store;

/// A comms frame as it crosses: text as it is, binary in base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "as", content = "data", rename_all = "snake_case")]
pub enum Frame {
    Text(String),
    Binary(String),
}

impl Frame {
    /// The frame of an outgoing comms message; pings and closes do not cross.
    pub fn of(out: &CommsOut) -> Option<Self> {
        match out {
            CommsOut::Text(bytes) => Some(Frame::Text(String::from_utf8_lossy(bytes).into())),
            CommsOut::Binary(bytes) => Some(Frame::Binary(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )),
            CommsOut::Ping | CommsOut::Close(..) => None,
        }
    }

    pub fn into_out(self) -> Option<CommsOut> {
        match self {
            Frame::Text(text) => Some(CommsOut::Text(Bytes::from(text))),
            Frame::Binary(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .map(|bytes| CommsOut::Binary(Bytes::from(bytes))),
        }
    }
}

/// A session's state as the node that changed it tells it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionChange {
    Opened,
    Replaced,
    Ended,
}

/// What one node tells the others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// A comms broadcast published on the sending node; `record` goes into topic history.
    Publish {
        topic: String,
        frame: Frame,
        record: Option<Value>,
        /// When set, each node answers with [`Note::Delivered`] under this id.
        #[serde(default)]
        count: Option<String>,
    },
    /// How many connections on the sending node a publication asked to be counted
    /// (`id`) went to; for `node`, which published it.
    Delivered {
        node: String,
        id: String,
        count: usize,
    },
    /// A direct message for `user`'s connections on whichever node holds them.
    Direct { user: String, frame: Frame },
    /// `user`'s connections on the sending node changed: their ids now (none: gone).
    Presence {
        user: String,
        connections: Vec<String>,
    },
    /// Every few seconds: the sending node's connected users and their connection ids.
    Heartbeat { users: Vec<(String, Vec<String>)> },
    /// A platform event (RaOS `subscribe_events`, comms `events.*`).
    Event {
        event_type: String,
        audience: Option<Uuid>,
        data: Value,
    },
    Session {
        session_id: Uuid,
        user_id: Uuid,
        scope: String,
        change: SessionChange,
    },
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
    /// A GARP player token issued on the sending node (valid on every node).
    GarpToken {
        game_id: String,
        token: String,
        player: crate::services::garp_players::GarpPlayer,
    },
    /// A GARP session opened on the sending node (resumable on every node).
    GarpSession { game_id: String, session_id: String },
    /// A game of the catalog changed (created, updated, a version published, set OFFLINE):
    /// read it again from the database.
    GameChanged { game_id: String },
    /// A login on the sending node checked `user_id`'s pilot out at `epoch`: an older
    /// game session of it elsewhere ends now (its writes are refused by the database
    /// either way, should this note be lost).
    PilotTaken { user_id: Uuid, epoch: i64 },
    /// The sending node is stopping and has released its leases: take them now.
    NodeLeaving,
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    note: Note,
}

/// Senders of the counts each waiting publication collects, by its id.
type Counts =
    Arc<parking_lot::Mutex<std::collections::HashMap<String, mpsc::UnboundedSender<usize>>>>;

/// The counts of deliveries other nodes report for one publication; stops listening when
/// dropped.
pub struct CountsExpected {
    id: String,
    counts: Counts,
    heard: mpsc::UnboundedReceiver<usize>,
}

impl CountsExpected {
    /// The publication's id, to send with it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sum of up to `nodes` counts, waiting at most `within` for them.
    pub async fn sum(&mut self, nodes: usize, within: Duration) -> usize {
        let mut total = 0;
        let deadline = tokio::time::Instant::now() + within;
        for _ in 0..nodes {
            match tokio::time::timeout_at(deadline, self.heard.recv()).await {
                Ok(Some(count)) => total += count,
                _ => break,
            }
        }
        total
    }
}

impl Drop for CountsExpected {
    fn drop(&mut self) {
        self.counts.lock().remove(&self.id);
    }
}

/// This node's link to the others: cheap to clone, and a no-op on a single node. Also a
/// resource of the simulation, for the hub and the event bus.
#[derive(Clone, bevy_ecs::prelude::Resource)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    /// Star systems pinned to this node (`[cluster] systems`).
    systems: Vec<String>,
    out: Option<mpsc::UnboundedSender<Note>>,
    /// Publications waiting for the other nodes' counts of deliveries, by id.
    counts: Counts,
    /// For the last word at shutdown, after the telling task has stopped.
    last_word: Option<(async_nats::Client, String)>,
    heartbeat: Duration,
    node_timeout: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.inner.node_id)
            .field("clustered", &self.is_clustered())
            .finish()
    }
}

impl Cluster {
    /// One node alone: nothing is told to anyone.
    pub fn single() -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id: "single".into(),
                systems: Vec::new(),
                out: None,
                counts: Counts::default(),
                last_word: None,
                heartbeat: Duration::from_secs(1),
                node_timeout: Duration::from_secs(5),
            }),
        }
    }

    /// Connects to NATS and starts telling and hearing. Fails when NATS cannot be
    /// reached at start (a node that silently ran alone would split the cluster).
    pub async fn connect(
        config: &ClusterConfig,
        url: &str,
        hearers: Hearers,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let inbox = hearers.inbox.clone();
        let node_id = config
            .node_id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().simple().to_string());
        let client = async_nats::ConnectOptions::new()
            .name(format!("ecliptic {node_id}"))
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach NATS at {url}: {e}"))?;
        let subject = format!("{}.bus", config.subject_prefix);
        let mut heard = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject}: {e}"))?;
        let (out, mut to_send) = mpsc::unbounded_channel::<Note>();
        let counts = Counts::default();
        let heard_counts = counts.clone();
        let cluster = Self {
            inner: Arc::new(Inner {
                node_id: node_id.clone(),
                systems: config.systems.clone(),
                out: Some(out),
                counts: counts.clone(),
                last_word: Some((client.clone(), subject.clone())),
                heartbeat: Duration::from_millis(config.heartbeat_ms.max(50)),
                node_timeout: Duration::from_millis(config.node_timeout_ms.max(100)),
            }),
        };
        tracing::info!(node = %node_id, %url, %subject, "joined the cluster");

        // Telling: one task, so notes leave in the order they were told.
        let publisher = client.clone();
        let from = node_id.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let note = tokio::select! {
                    _ = stop.cancelled() => break,
                    note = to_send.recv() => match note {
                        Some(note) => note,
                        None => break,
                    },
                };
                let envelope = Envelope {
                    from: from.clone(),
                    note,
                };
                let Ok(bytes) = serde_json::to_vec(&envelope) else {
                    continue;
                };
                if let Err(e) = publisher.publish(subject.clone(), bytes.into()).await {
                    tracing::warn!("cluster note not sent: {e}");
                }
            }
            let _ = publisher.flush().await;
        });

        // Hearing.
        let me = node_id.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    message = heard.next() => match message {
                        Some(message) => message,
                        None => break,
                    },
                };
                let envelope: Envelope = match serde_json::from_slice(&message.payload) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        tracing::warn!("unreadable cluster note: {e}");
                        continue;
                    }
                };
                if envelope.from != me {
                    hear(envelope, &me, &hearers, &heard_counts);
                }
            }
        });

        // The heartbeat: the hub answers it by telling its users and forgetting the nodes
        // it has not heard from within the timeout.
        let every = cluster.inner.heartbeat;
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(every);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = beat.tick() => {
                        let _ = inbox.send(Command::to(CommsCommand::ClusterBeat));
                        let _ = inbox.send(Command::to(NodesCommand::Beat));
                    }
                }
            }
        });
        Ok(cluster)
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The star systems pinned to this node.
    pub fn pinned_systems(&self) -> &[String] {
        &self.inner.systems
    }

    /// Whether other nodes may exist.
    pub fn is_clustered(&self) -> bool {
        self.inner.out.is_some()
    }

    pub fn heartbeat(&self) -> Duration {
        self.inner.heartbeat
    }

    pub fn node_timeout(&self) -> Duration {
        self.inner.node_timeout
    }

    /// Tells the other nodes, and waits until NATS has it, that this node is leaving: for
    /// shutdown, once its leases are released.
    pub async fn announce_leaving(&self) {
        let Some((client, subject)) = &self.inner.last_word else {
            return;
        };
        let envelope = Envelope {
            from: self.inner.node_id.clone(),
            note: Note::NodeLeaving,
        };
        let Ok(bytes) = serde_json::to_vec(&envelope) else {
            return;
        };
        let sent = async {
            client.publish(subject.clone(), bytes.into()).await?;
            client.flush().await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(1), sent).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("could not announce leaving: {e}"),
            Err(_) => tracing::warn!("could not announce leaving: NATS did not answer"),
        }
    }

    /// Listens for the other nodes' counts of deliveries of a publication about to be
    /// made with [`CountsExpected::id`].
    pub fn expect_counts(&self) -> CountsExpected {
        let id = Uuid::new_v4().simple().to_string();
        let (tx, heard) = mpsc::unbounded_channel();
        self.inner.counts.lock().insert(id.clone(), tx);
        CountsExpected {
            id,
            counts: self.inner.counts.clone(),
            heard,
        }
    }

    /// Tells the other nodes; never waits.
    pub fn tell(&self, note: Note) {
        if let Some(out) = &self.inner.out {
            let _ = out.send(note);
        }
    }
}

/// A note from another node, handed to whoever acts on it.
/// What a node's hearing hands notes to.
pub struct Hearers {
    pub inbox: Inbox,
    pub accounts: Arc<Accounts>,
    pub garp: Arc<GarpPlayers>,
    pub store: Store,
    /// Rings the lease keeper for a round now.
    pub leases: Arc<tokio::sync::Notify>,
}

fn hear(envelope: Envelope, me: &str, hearers: &Hearers, counts: &Counts) {
    let (inbox, accounts, garp, store) = (
        &hearers.inbox,
        &hearers.accounts,
        &hearers.garp,
        &hearers.store,
    );
    let node = envelope.from;
    let command = match envelope.note {
        Note::Publish {
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
        note @ (Note::Delivered { .. } | Note::PilotTaken { .. } | Note::NodeLeaving) => {
            hear_about_owners(note, node, me, hearers, counts)
        }
        Note::Direct { user, frame } => frame
            .into_out()
            .map(|frame| CommsCommand::RemoteDirect { user, frame }),
        Note::Presence { user, connections } => Some(CommsCommand::RemotePresence {
            node,
            user,
            connections,
        }),
        Note::Heartbeat { users } => Some(CommsCommand::RemoteHeartbeat { node, users }),
        Note::Event {
            event_type,
            audience,
            data,
        } => {
            if let Some(event) = crate::sim::events::Event::named(&event_type, audience, data) {
                let _ = inbox.send(Command::to(crate::sim::events::EventsCommand::Remote(
                    event,
                )));
            }
            None
        }
        Note::Session {
            session_id,
            user_id,
            scope,
            change,
        } => {
            accounts.remote_session(session_id, user_id, &scope, change);
            None
        }
        Note::Node {
            host,
            port,
            players,
            instances,
            pinned,
            tick_p99_us,
        } => {
            let heard = NodesCommand::Heard {
                node,
                endpoint: GameEndpoint { host, port },
                players,
                instances,
                pinned,
                tick_p99_us,
            };
            let _ = inbox.send(Command::to(heard));
            None
        }
        Note::HostRoom {
            node: asked,
            room_id,
            members,
        } => {
            if asked == me {
                let host = NodesCommand::HostRoom {
                    from: node,
                    room_id,
                    members,
                };
                let _ = inbox.send(Command::to(host));
            }
            None
        }
        Note::RoomHosted {
            node: asker,
            room_id,
        } => {
            if asker == me {
                let done = NodesCommand::RoomHosted {
                    from: node,
                    room_id,
                };
                let _ = inbox.send(Command::to(done));
            }
            None
        }
        Note::GarpToken {
            game_id,
            token,
            player,
        } => {
            garp.heard_token(&game_id, token, player);
            None
        }
        Note::GarpSession {
            game_id,
            session_id,
        } => {
            garp.heard_session(&game_id, session_id);
            None
        }
        Note::GameChanged { game_id } => {
            let (inbox, store) = (inbox.clone(), store.clone());
            tokio::spawn(async move {
                match crate::services::catalog::read_game(&store, game_id.clone()).await {
                    Ok(game) => {
                        let heard = crate::sim::lobby::GameHeard { game_id, game };
                        let _ = inbox.send(Command::to(heard));
                    }
                    Err(e) => tracing::warn!(game = %game_id, "cannot read a changed game: {e}"),
                }
            });
            None
        }
    };
    if let Some(command) = command {
        let _ = inbox.send(Command::to(command));
    }
}

/// What another node says about who owns what (pilots, systems, counts it was asked for);
/// what the comms hub must do about it, if anything.
fn hear_about_owners(
    note: Note,
    node: String,
    me: &str,
    hearers: &Hearers,
    counts: &Counts,
) -> Option<CommsCommand> {
    match note {
        Note::Delivered {
            node: asker,
            id,
            count,
        } => {
            if asker == me
                && let Some(waiting) = counts.lock().get(&id)
            {
                let _ = waiting.send(count);
            }
            None
        }
        Note::PilotTaken { user_id, epoch } => {
            let taken = NodesCommand::PilotTaken { user_id, epoch };
            let _ = hearers.inbox.send(Command::to(taken));
            None
        }
        Note::NodeLeaving => {
            tracing::info!(%node, "a node is leaving");
            hearers.leases.notify_one();
            let left = NodesCommand::Left { node: node.clone() };
            let _ = hearers.inbox.send(Command::to(left));
            Some(CommsCommand::RemoteGone { node })
        }
        _ => None,
    }
}
