//! The bridge between the network side and the simulation thread.
//!
//! Connection tasks decode client messages into [`Command`]s and `try_send` them into one
//! bounded inbox; when it is full they answer "busy" in their protocol's own error shape.
//! The simulation answers either through a reply channel carried by the command (request /
//! response protocols) or through a connection's bounded [`Outbound`] queue (streams such
//! as game deltas). The simulation thread only ever `try_send`s, so a slow client or a
//! full queue can never stall a tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bevy_ecs::prelude::{Resource, World};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Identifies one client connection for the lifetime of the process.
pub type ConnId = u64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id.
pub fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// Everything the network side can ask of the simulation: two requests the loop answers
/// itself, and typed commands for whichever plugin registered their type.
#[derive(Debug)]
pub enum Command {
    /// Liveness and tick statistics, for `/healthz`.
    Status { reply: oneshot::Sender<SimStatus> },
    /// Answered once every command sent before it has been handled and every write those
    /// made has committed and reached the world: what shutdown waits for before closing
    /// connections, so their answers are queued first.
    Flush { reply: oneshot::Sender<()> },
    /// A command for the plugin that owns its type ([`Command::to`]).
    Deliver(Delivery),
    /// A request a connection's reader handed over ([`Command::holding`]): what it holds
    /// is let go once the simulation has handled it.
    Holding(Delivery, InFlight),
}

impl Command {
    /// A command of type `T`, for the plugin that reads [`Pending<T>`]: each feature
    /// declares its own command type, and a mod adds one the same way, without a variant
    /// here.
    pub fn to<T: InboxCommand>(command: T) -> Self {
        Command::Deliver(Delivery(Box::new(move |world: &mut World| {
            match world.get_resource_mut::<Pending<T>>() {
                Some(mut pending) => pending.0.push(command),
                None => command.unhandled(),
            }
        })))
    }

    /// This command, holding a slot of its connection's queue for its replies until the
    /// simulation has handled it ([`Link::in_flight`]).
    pub fn holding(self, slot: InFlight) -> Self {
        match self {
            Command::Deliver(delivery) => Command::Holding(delivery, slot),
            other => other,
        }
    }
}

/// A typed command on its way into the world.
pub struct Delivery(Box<dyn FnOnce(&mut World) + Send>);

impl Delivery {
    /// Puts the command where its plugin will find it.
    pub fn deliver(self, world: &mut World) {
        (self.0)(world)
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delivery")
    }
}

/// A command type the inbox carries. `unhandled` runs when no plugin takes this type (the
/// feature is left out of the server): a request answers its caller there.
pub trait InboxCommand: Send + Sync + 'static {
    fn unhandled(self)
    where
        Self: Sized,
    {
    }
}

/// Commands of one type waiting for the plugin that owns them: the sim loop fills it,
/// the plugin's `HandleCommands` system drains it. A plugin that takes commands of type
/// `T` inits `Pending<T>`.
#[derive(Resource, Debug)]
pub struct Pending<T>(pub Vec<T>);

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Pending<T> {
    /// Everything waiting, leaving the queue empty.
    pub fn take(world: &mut World) -> Vec<T>
    where
        T: Send + Sync + 'static,
    {
        world
            .get_resource_mut::<Self>()
            .map(|mut pending| std::mem::take(&mut pending.0))
            .unwrap_or_default()
    }
}

/// What the simulation reports about itself.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SimStatus {
    pub tick: u64,
    pub tick_hz: u32,
    pub tick_p50_us: u64,
    pub tick_p99_us: u64,
    pub tick_max_us: u64,
    pub overruns: u64,
}

/// The inbox refused a command because the simulation is behind.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server is busy, try again shortly")]
pub struct Busy;

/// The sending half of the simulation's inbox; cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    tx: crossbeam_channel::Sender<Command>,
    metrics: Arc<Metrics>,
}

impl Inbox {
    /// A bounded inbox and the receiver the simulation drains.
    pub fn bounded(
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, crossbeam_channel::Receiver<Command>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (Self { tx, metrics }, rx)
    }

    /// Hands a command to the simulation without waiting.
    pub fn send(&self, cmd: Command) -> Result<(), Busy> {
        match self.tx.try_send(cmd) {
            Ok(()) => {
                self.metrics.inbox_depth.set(self.tx.len() as i64);
                Ok(())
            }
            Err(_) => {
                self.metrics.inbox_rejected.inc();
                Err(Busy)
            }
        }
    }

    /// Sends a request and waits for the simulation's answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Busy> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| Busy)
    }
}

/// A connection's bounded outbound queue, as the simulation sees it: bounded by count,
/// and optionally by the bytes waiting in it.
#[derive(Debug)]
pub struct Outbound<T> {
    tx: mpsc::Sender<T>,
    bytes: Option<Weighing<T>>,
    /// Requests read and handed to the simulation, not handled yet: their replies are
    /// still to come, so the slots they will take are not free.
    in_flight: Arc<Requests>,
}

/// The requests of one connection that the simulation has not handled yet, and a signal
/// for a reader waiting for room: rung when one is handled, and when the writer takes
/// messages off the queue.
#[derive(Debug, Default)]
struct Requests {
    count: AtomicUsize,
    room: tokio::sync::Notify,
}

/// What a connection's writer rings when it has taken messages off the queue, so a reader
/// waiting for room for replies looks again.
#[derive(Debug, Clone)]
pub struct RoomSignal(Arc<Requests>);

impl RoomSignal {
    pub fn freed(&self) {
        self.0.room.notify_waiters();
    }
}

/// One request of a connection that the simulation has not handled yet; dropped once it
/// has been (its replies queued).
#[derive(Debug)]
pub struct InFlight(Arc<Requests>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.room.notify_waiters();
    }
}

/// A byte budget and how much each message counts against it.
type Weighing<T> = (Arc<ByteBudget>, fn(&T) -> usize);

// Not derived: a queue handle is cloneable whatever it carries.
impl<T> Clone for Outbound<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            bytes: self.bytes.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

/// The bytes a queue may hold. The queue's sender takes from it; its reader gives back
/// what it has taken off the queue ([`ByteBudget::give_back`]).
#[derive(Debug)]
pub struct ByteBudget {
    queued: AtomicUsize,
    max: usize,
}

impl ByteBudget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            max,
        })
    }

    fn take(&self, n: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + n <= self.max).then_some(queued + n)
            })
            .is_ok()
    }

    pub fn give_back(&self, n: usize) {
        self.queued
            .fetch_sub(n.min(self.queued.load(Ordering::Acquire)), Ordering::AcqRel);
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Why a message could not be queued for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The client is not reading fast enough.
    Full,
    /// The connection has gone.
    Closed,
}

impl<T> Outbound<T> {
    /// A queue of `capacity` messages and the receiver the connection's writer drains.
    pub fn bounded(capacity: usize) -> (Self, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel(capacity);
        let queue = Self {
            tx,
            bytes: None,
            in_flight: Arc::default(),
        };
        (queue, rx)
    }

    /// Also bounds the queue by `budget`, each message weighing `weigh(message)` bytes;
    /// the reader gives a message's weight back when it takes it off.
    pub fn with_byte_budget(mut self, budget: Arc<ByteBudget>, weigh: fn(&T) -> usize) -> Self {
        self.bytes = Some((budget, weigh));
        self
    }

    /// Queues a message without waiting.
    pub fn push(&self, msg: T) -> Result<(), QueueError> {
        let weight = match &self.bytes {
            Some((budget, weigh)) => {
                let weight = weigh(&msg);
                if !budget.take(weight) {
                    return Err(if self.tx.is_closed() {
                        QueueError::Closed
                    } else {
                        QueueError::Full
                    });
                }
                weight
            }
            None => 0,
        };
        self.tx.try_send(msg).map_err(|e| {
            if let Some((budget, _)) = &self.bytes {
                budget.give_back(weight);
            }
            match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            }
        })
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The signal its writer rings when it has made room.
    pub fn room_signal(&self) -> RoomSignal {
        RoomSignal(self.in_flight.clone())
    }

    /// Slots kept free for replies: a connection's reader takes its next request only
    /// while this many messages still fit in its queue.
    fn reply_headroom(&self) -> usize {
        (self.tx.max_capacity() / 4).clamp(1, 16)
    }
}

/// The simulation's handle on one connection: its bounded queue, and a way to make it
/// close at once when even a must-arrive message cannot be queued.
#[derive(Debug)]
pub struct Link<T> {
    pub conn: ConnId,
    outbound: Outbound<T>,
    kick: tokio_util::sync::CancellationToken,
}

impl<T> Clone for Link<T> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn,
            outbound: self.outbound.clone(),
            kick: self.kick.clone(),
        }
    }
}

impl<T> Link<T> {
    pub fn new(
        conn: ConnId,
        outbound: Outbound<T>,
        kick: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            conn,
            outbound,
            kick,
        }
    }

    /// A message that must arrive (replies, events). If the queue is full the connection
    /// is closed rather than silently missing it.
    pub fn send(&self, msg: T) {
        if let Err(QueueError::Full) = self.outbound.push(msg) {
            self.kick.cancel();
        }
    }

    /// A best-effort message (deltas, snapshots); false if it was dropped.
    pub fn offer(&self, msg: T) -> bool {
        self.outbound.push(msg).is_ok()
    }

    /// Whether the queue has room for the replies to another request. A client controls
    /// how fast its replies come, so one that sends requests faster than it reads their
    /// answers is not read from until it catches up (backpressure, as TCP does), rather
    /// than disconnected as a slow consumer.
    /// Requests handed to the simulation and not handled yet count as taken: their
    /// replies are on their way.
    pub fn has_room_for_replies(&self) -> bool {
        self.outbound.tx.capacity() >= self.outbound.reply_headroom() + self.requests_in_flight()
    }

    /// Waits until [`Link::has_room_for_replies`]; false if the connection's writer is
    /// gone (nothing will ever be sent again). It waits for a signal rather than for
    /// permits of the queue: a waiting reader must not hold slots the simulation's replies
    /// need.
    pub async fn room_for_replies(&self) -> bool {
        loop {
            let room = self.outbound.in_flight.room.notified();
            if self.outbound.is_closed() {
                return false;
            }
            if self.has_room_for_replies() {
                return true;
            }
            tokio::select! {
                () = room => {}
                () = self.outbound.tx.closed() => return false,
            }
        }
    }

    /// A slot for the replies to a request about to be handed to the simulation, held
    /// until the simulation has handled it ([`Command::holding`]).
    pub fn in_flight(&self) -> InFlight {
        let requests = self.outbound.in_flight.clone();
        requests.count.fetch_add(1, Ordering::AcqRel);
        InFlight(requests)
    }

    fn requests_in_flight(&self) -> usize {
        self.outbound.in_flight.count.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.outbound.is_closed()
    }
}

/// Why the server ends a connection.
/// (`protocol::close` gives each its code on each endpoint.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// Its work is done: GARP's redirect was answered, the room it played in ended.
    Done,
    /// The server is shutting down; connect again later.
    Shutdown,
    /// A text frame that is not UTF-8.
    NotUtf8,
    /// Its outbound queue overflowed: it reads too slowly.
    TooSlow,
    /// A message over the size limit.
    TooBig,
    /// The server was too busy to take it.
    Busy,
    /// It did not show who it is (log in, hand its token over, answer the handshake)
    /// within the time allowed.
    NotAuthenticated,
    /// The session it used was ended (a logout, a reused refresh token).
    SessionEnded,
    /// Another login took its session over.
    SessionReplaced,
    /// Its token expired.
    TokenExpired,
    /// It did not answer pings.
    NoPong,
    /// Refused: an unknown game, a wrong HMAC.
    Refused,
}

impl Ending {
    /// What the close frame says, unless the caller has something more precise.
    pub fn reason(self) -> &'static str {
        match self {
            Ending::Done => "done",
            Ending::Shutdown => "server shutting down",
            Ending::NotUtf8 => "text frames must be UTF-8",
            Ending::TooSlow => "outbound queue full: reading too slowly",
            Ending::TooBig => "message too big",
            Ending::Busy => "server busy",
            Ending::NotAuthenticated => "not authenticated in time",
            Ending::SessionEnded => "session ended",
            Ending::SessionReplaced => "session replaced",
            Ending::TokenExpired => "token expired",
            Ending::NoPong => "no pong",
            Ending::Refused => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_link(capacity: usize) -> (Link<u32>, mpsc::Receiver<u32>) {
        let (outbound, rx) = Outbound::bounded(capacity);
        let link = Link::new(
            next_conn_id(),
            outbound,
            tokio_util::sync::CancellationToken::new(),
        );
        for i in 0..capacity {
            link.send(i as u32);
        }
        (link, rx)
    }

    /// A reader waiting for room must not hold the slot the writer frees: the simulation's
    /// reply, queued before the reader runs again, takes it (a waiting reader that took
    /// slots got its connection kicked as a slow consumer).
    #[tokio::test]
    async fn a_reader_waiting_for_room_takes_no_slot_from_the_replies() {
        let (link, mut rx) = full_link(4);
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.room_for_replies().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(rx.recv().await, Some(0));
        link.send(9);
        assert!(!link.kick.is_cancelled(), "the reply found its slot taken");
        // The writer takes the rest and says so: the reader goes on.
        for _ in 0..4 {
            rx.recv().await;
        }
        RoomSignal(link.outbound.in_flight.clone()).freed();
        assert!(waiting.await.expect("the reader"));
    }

    /// Requests handed to the simulation hold their replies' slots until it has handled
    /// them: the reader takes no more than the queue can answer.
    #[test]
    fn requests_in_flight_count_against_the_room_for_replies() {
        let (outbound, _rx) = Outbound::<u32>::bounded(8);
        let link = Link::new(
            next_conn_id(),
            outbound,
            tokio_util::sync::CancellationToken::new(),
        );
        // Headroom 2 of 8: six requests may be in flight, not seven.
        let held: Vec<InFlight> = (0..6).map(|_| link.in_flight()).collect();
        assert!(link.has_room_for_replies());
        let seventh = link.in_flight();
        assert!(!link.has_room_for_replies());
        drop(seventh);
        assert!(link.has_room_for_replies());
        drop(held);
        assert_eq!(link.requests_in_flight(), 0);
    }
}
