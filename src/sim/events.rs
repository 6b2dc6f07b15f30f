//! The platform's event bus: achievements, leaderboards, assets, projects, content, game
//! state and system notifications, published once and delivered to every subscriber.
//!
//! RaOS connections subscribe by event type (`subscribe_events`) and receive
//! `{event_type, timestamp, data}`, encoded once per event. The same event goes to the comms
//! hub as a broadcast on topic `events.<event_type>`, so a comms client can `Subscribe` to
//! `events.*`. Events that concern one user (their project, their asset) reach only that
//! user's subscriptions.

use std::collections::{HashMap, HashSet};

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::comms::{CommsOut, Hub};
use super::encoders::Encoders;
use super::{HandleCommands, Pending};
use crate::bridge::{Command, ConnId, Inbox};
use crate::cluster::{Cluster, ClusterNote, Heard};

/// The event types of raos-integration.md.
pub const EVENT_TYPES: [&str; 7] = [
    "asset_updated",
    "project_modified",
    "game_state_change",
    "achievement_unlocked",
    "leaderboard_updated",
    "content_published",
    "system_notification",
];

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: &'static str,
    /// Only this user's subscriptions receive it; `None`: everyone subscribed.
    pub audience: Option<Uuid>,
    pub data: Value,
}

impl Event {
    /// An event of one of the [`EVENT_TYPES`] named as text (as another node tells it).
    pub fn named(event_type: &str, audience: Option<Uuid>, data: Value) -> Option<Self> {
        let event_type = EVENT_TYPES.iter().find(|t| **t == event_type)?;
        Some(Self {
            event_type,
            audience,
            data,
        })
    }
}

#[derive(Debug)]
pub enum EventsCommand {
    Subscribe {
        conn: ConnId,
        user_id: Uuid,
        event_types: Vec<&'static str>,
        /// Hands an encoded event to the connection (its protocol's frame).
        sink: EventSink,
        reply: oneshot::Sender<String>,
    },
    /// The connection closed.
    Drop {
        conn: ConnId,
    },
    Publish(Event),
    /// An event raised on another node, for this node's subscribers.
    Remote(Event),
}

impl crate::bridge::InboxCommand for EventsCommand {}

/// A platform event told to the other nodes, for their subscribers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EventNote {
    event_type: String,
    audience: Option<Uuid>,
    data: Value,
}

impl ClusterNote for EventNote {
    const KIND: &'static str = "event";
}

/// Events from the other nodes reach this node's subscribers too.
pub fn hear_cluster(cluster: &Cluster, inbox: &Inbox) {
    let inbox = inbox.clone();
    cluster.hear(move |heard: Heard<EventNote>| {
        let EventNote {
            event_type,
            audience,
            data,
        } = heard.note;
        if let Some(event) = Event::named(&event_type, audience, data) {
            let _ = inbox.send(Command::to(EventsCommand::Remote(event)));
        }
    });
}

/// Where a subscriber's events go: its connection, in its protocol's frame.
pub struct EventSink {
    /// Queues an encoded event for the connection.
    pub send: Box<dyn Fn(Bytes) + Send + Sync>,
    /// Whether the connection is gone.
    pub closed: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

struct Subscriber {
    user_id: Uuid,
    event_types: HashSet<&'static str>,
    sink: EventSink,
    subscription_id: String,
}

/// Subscribers by connection, and events waiting to go out.
#[derive(Resource, Default)]
pub struct EventBus {
    subscribers: HashMap<ConnId, Subscriber>,
    queued: Vec<Event>,
    /// Events other nodes raised: delivered here, not told again.
    heard: Vec<Event>,
}

impl EventBus {
    /// Queues an event; it is delivered when this round of commands or this tick ends.
    pub fn publish(&mut self, event: Event) {
        self.queued.push(event);
    }
}

fn handle_event_commands(world: &mut World) {
    let pending = std::mem::take(&mut world.resource_mut::<Pending<EventsCommand>>().0);
    let mut bus = world.resource_mut::<EventBus>();
    for command in pending {
        match command {
            EventsCommand::Subscribe {
                conn,
                user_id,
                event_types,
                sink,
                reply,
            } => {
                // Subscribing again adds types to the connection's one subscription.
                let subscriber = bus.subscribers.entry(conn).or_insert_with(|| Subscriber {
                    user_id,
                    event_types: HashSet::new(),
                    sink,
                    subscription_id: Uuid::new_v4().to_string(),
                });
                subscriber.event_types.extend(event_types);
                let _ = reply.send(subscriber.subscription_id.clone());
            }
            EventsCommand::Drop { conn } => {
                bus.subscribers.remove(&conn);
            }
            EventsCommand::Publish(event) => bus.publish(event),
            EventsCommand::Remote(event) => bus.heard.push(event),
        }
    }
    deliver(world);
}

/// Sends every queued event to its subscribers and to the comms hub.
fn deliver(world: &mut World) {
    let mut bus = world.resource_mut::<EventBus>();
    let queued = std::mem::take(&mut bus.queued);
    let heard = std::mem::take(&mut bus.heard);
    if queued.is_empty() && heard.is_empty() {
        return;
    }
    if let Some(cluster) = world.get_resource::<Cluster>()
        && cluster.is_clustered()
    {
        for event in &queued {
            cluster.tell(EventNote {
                event_type: event.event_type.into(),
                audience: event.audience,
                data: event.data.clone(),
            });
        }
    }
    let Some(encoders) = world.get_resource::<Encoders>().copied() else {
        return;
    };
    for event in queued.into_iter().chain(heard) {
        let encoded = (encoders.raos_event)(event.event_type, &event.data);
        let bus = world.resource::<EventBus>();
        for subscriber in bus.subscribers.values() {
            let wanted = subscriber.event_types.contains(event.event_type)
                && event.audience.is_none_or(|u| u == subscriber.user_id);
            if wanted {
                (subscriber.sink.send)(encoded.clone());
            }
        }
        if event.audience.is_none()
            && let Some(mut hub) = world.get_resource_mut::<Hub>()
        {
            let topic = format!("events.{}", event.event_type);
            let frame = (encoders.comms_broadcast)(
                &topic,
                &event.data,
                chrono::Utc::now().timestamp_millis(),
                &Uuid::new_v4().to_string(),
            );
            hub.publish(&topic, &CommsOut::Text(frame));
        }
    }
    world
        .resource_mut::<EventBus>()
        .subscribers
        .retain(|_, s| !(s.sink.closed)());
}

/// The event bus: subscriptions from RaOS connections, delivery after commands and after
/// each tick (so an event raised in a tick reaches subscribers in that tick).
pub struct EventsPlugin;

impl Plugin for EventsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<EventBus>()
            .init_resource::<Pending<EventsCommand>>()
            .add_systems(HandleCommands, handle_event_commands)
            .add_systems(bevy_app::FixedLast, deliver);
    }
}
