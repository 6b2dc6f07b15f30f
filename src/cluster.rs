//! Several nodes as one server: the port through which features tell the other nodes
//! what happened here, and hear what happened there, over NATS.
//!
//! The kernel owns the port and names no feature. A feature declares its own note type
//! ([`ClusterNote`], with a kind of its own), tells notes with [`Cluster::tell`] and
//! registers what it does with the notes it hears with [`Cluster::hear`], the way a
//! plugin takes its own inbox commands. With `[cluster] nats` set, every node publishes
//! its notes on one subject (`<subject_prefix>.bus`) and hears everyone else's; one node
//! alone ([`Cluster::single`]) tells nobody.
//!
//! Notes leave through an unbounded channel and are encoded by the telling task, so the
//! simulation thread never waits on the network or spends its tick encoding; a note that
//! finds NATS down is dropped, as a network would drop it. Hearers are registered before
//! the node connects, so nothing heard is missed for want of a hearer.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::ClusterConfig;

/// A note one feature tells the other nodes. `KIND` names it on the wire: one per
/// feature, so hearers find their own notes without knowing anyone else's.
pub trait ClusterNote: Serialize + DeserializeOwned + Send + 'static {
    const KIND: &'static str;
}

/// A note heard from another node.
#[derive(Debug)]
pub struct Heard<N> {
    /// The node that told it.
    pub from: String,
    pub note: N,
}

/// The node that tells it is stopping and has released its leases: take them now, and
/// forget its users.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeLeaving;

impl ClusterNote for NodeLeaving {
    const KIND: &'static str = "node_leaving";
}

/// How many of the sending node's connections a publication that asked to be counted
/// went to; for `node`, which published it.
#[derive(Debug, Serialize, Deserialize)]
struct Delivered {
    node: String,
    id: String,
    count: usize,
}

impl ClusterNote for Delivered {
    const KIND: &'static str = "delivered";
}

#[derive(Serialize)]
struct Telling<'a, N> {
    from: &'a str,
    kind: &'static str,
    note: &'a N,
}

#[derive(Deserialize)]
struct Hearing {
    from: String,
    kind: String,
    note: Box<RawValue>,
}

/// A note on its way out: encoded by the telling task, with this node's id.
type Outgoing = Box<dyn FnOnce(&str) -> serde_json::Result<Vec<u8>> + Send>;
/// What a feature does with a note of its kind: the sender, and the note undecoded.
type Hearer = Arc<dyn Fn(&str, &RawValue) + Send + Sync>;
type Beat = Arc<dyn Fn() + Send + Sync>;

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
/// resource of the simulation.
#[derive(Clone, bevy_ecs::prelude::Resource)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    /// Star systems pinned to this node (`[cluster] systems`).
    systems: Vec<String>,
    /// Where to connect, and the subject every node publishes on; none when alone.
    nats: Option<(String, String)>,
    out: Option<mpsc::UnboundedSender<Outgoing>>,
    /// The telling channel's other end, until [`Cluster::connect`] takes it.
    to_send: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    /// What each kind of note is handed to.
    hearers: parking_lot::RwLock<HashMap<&'static str, Vec<Hearer>>>,
    /// What runs at every heartbeat.
    beats: parking_lot::RwLock<Vec<Beat>>,
    /// Publications waiting for the other nodes' counts of deliveries, by id.
    counts: Counts,
    /// For the last word at shutdown, after the telling task has stopped.
    last_word: OnceLock<async_nats::Client>,
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
    /// One node alone: nothing is told to anyone, nothing is heard.
    pub fn single() -> Self {
        Self::new(&ClusterConfig {
            nats: None,
            node_id: Some("single".into()),
            ..ClusterConfig::default()
        })
    }

    /// The port as `config` describes it; with `nats` set it tells and hears once
    /// [`Cluster::connect`] has run. Register hearers before that.
    pub fn new(config: &ClusterConfig) -> Self {
        let node_id = config
            .node_id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().simple().to_string());
        let nats = config
            .nats
            .clone()
            .map(|url| (url, format!("{}.bus", config.subject_prefix)));
        let (out, to_send) = match nats {
            Some(_) => {
                let (out, to_send) = mpsc::unbounded_channel();
                (Some(out), Some(to_send))
            }
            None => (None, None),
        };
        let cluster = Self {
            inner: Arc::new(Inner {
                node_id,
                systems: config.systems.clone(),
                nats,
                out,
                to_send: parking_lot::Mutex::new(to_send),
                hearers: parking_lot::RwLock::default(),
                beats: parking_lot::RwLock::default(),
                counts: Counts::default(),
                last_word: OnceLock::new(),
                heartbeat: Duration::from_millis(config.heartbeat_ms.max(50)),
                node_timeout: Duration::from_millis(config.node_timeout_ms.max(100)),
            }),
        };
        let (me, counts) = (cluster.node_id().to_owned(), cluster.inner.counts.clone());
        cluster.hear(move |heard: Heard<Delivered>| {
            if heard.note.node == me
                && let Some(waiting) = counts.lock().get(&heard.note.id)
            {
                let _ = waiting.send(heard.note.count);
            }
        });
        cluster
    }

    /// Connects to NATS and starts telling, hearing and beating; nothing on a single
    /// node. Fails when NATS cannot be reached at start (a node that silently ran alone
    /// would split the cluster).
    pub async fn connect(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (Some((url, subject)), Some(to_send)) =
            (self.inner.nats.clone(), self.inner.to_send.lock().take())
        else {
            return Ok(());
        };
        let node_id = self.node_id().to_owned();
        let client = async_nats::ConnectOptions::new()
            .name(format!("ecliptic {node_id}"))
            .connect(&url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach NATS at {url}: {e}"))?;
        let heard = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject}: {e}"))?;
        let _ = self.inner.last_word.set(client.clone());
        tracing::info!(node = %node_id, %url, %subject, "joined the cluster");
        tokio::spawn(tell_all(
            client,
            subject,
            node_id,
            to_send,
            shutdown.clone(),
        ));
        tokio::spawn(self.clone().hear_all(heard, shutdown.clone()));
        tokio::spawn(self.clone().beat(shutdown));
        Ok(())
    }

    /// Hearing: every note on the bus, handed to its hearers.
    async fn hear_all(self, mut heard: async_nats::Subscriber, stop: CancellationToken) {
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = heard.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            self.dispatch(&message.payload);
        }
    }

    /// Hands a note heard on the bus to the hearers of its kind; a node does not hear
    /// itself.
    fn dispatch(&self, payload: &[u8]) {
        let hearing: Hearing = match serde_json::from_slice(payload) {
            Ok(hearing) => hearing,
            Err(e) => {
                tracing::warn!("unreadable cluster note: {e}");
                return;
            }
        };
        if hearing.from == self.inner.node_id {
            return;
        }
        let hearers = self
            .inner
            .hearers
            .read()
            .get(hearing.kind.as_str())
            .cloned();
        for hearer in hearers.into_iter().flatten() {
            hearer(&hearing.from, &hearing.note);
        }
    }

    /// The heartbeat: each feature that registered for it (presence, the nodes' table)
    /// tells what it has and forgets the nodes it has not heard from within the timeout.
    async fn beat(self, shutdown: CancellationToken) {
        let mut beat = tokio::time::interval(self.inner.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = beat.tick() => {
                    let beats = self.inner.beats.read().clone();
                    for beat in beats {
                        beat();
                    }
                }
            }
        }
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

    /// Tells the other nodes; never waits.
    pub fn tell<N: ClusterNote>(&self, note: N) {
        if let Some(out) = &self.inner.out {
            let _ = out.send(Box::new(move |from: &str| {
                serde_json::to_vec(&Telling {
                    from,
                    kind: N::KIND,
                    note: &note,
                })
            }));
        }
    }

    /// Hands every note of kind `N` heard from another node to `hearer` (on the hearing
    /// task: it must not block). A note that does not decode as `N` is logged and dropped.
    pub fn hear<N: ClusterNote>(&self, hearer: impl Fn(Heard<N>) + Send + Sync + 'static) {
        let hearer: Hearer =
            Arc::new(move |from: &str, raw: &RawValue| {
                match serde_json::from_str::<N>(raw.get()) {
                    Ok(note) => hearer(Heard {
                        from: from.to_owned(),
                        note,
                    }),
                    Err(e) => tracing::warn!(kind = N::KIND, "unreadable cluster note: {e}"),
                }
            });
        self.inner
            .hearers
            .write()
            .entry(N::KIND)
            .or_default()
            .push(hearer);
    }

    /// Runs `beat` at every heartbeat of a clustered node.
    pub fn on_beat(&self, beat: impl Fn() + Send + Sync + 'static) {
        self.inner.beats.write().push(Arc::new(beat));
    }

    /// Tells the other nodes, and waits until NATS has it, that this node is leaving: for
    /// shutdown, once its leases are released.
    pub async fn announce_leaving(&self) {
        let (Some(client), Some((_, subject))) = (self.inner.last_word.get(), &self.inner.nats)
        else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(&Telling {
            from: &self.inner.node_id,
            kind: NodeLeaving::KIND,
            note: &NodeLeaving,
        }) else {
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

    /// Answers `node`'s publication `id`, which asked to be counted: it reached `count`
    /// connections here.
    pub fn report_count(&self, node: String, id: String, count: usize) {
        self.tell(Delivered { node, id, count });
    }
}

/// Telling: one task, so notes leave in the order they were told.
async fn tell_all(
    publisher: async_nats::Client,
    subject: String,
    from: String,
    mut to_send: mpsc::UnboundedReceiver<Outgoing>,
    stop: CancellationToken,
) {
    loop {
        let encode = tokio::select! {
            _ = stop.cancelled() => break,
            note = to_send.recv() => match note {
                Some(note) => note,
                None => break,
            },
        };
        let Ok(bytes) = encode(&from) else {
            continue;
        };
        if let Err(e) = publisher.publish(subject.clone(), bytes.into()).await {
            tracing::warn!("cluster note not sent: {e}");
        }
    }
    let _ = publisher.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Ping {
        n: u32,
    }

    impl ClusterNote for Ping {
        const KIND: &'static str = "ping";
    }

    /// What one node tells reaches every hearer of its kind on another, and nobody else.
    #[test]
    fn a_note_told_reaches_the_hearers_of_its_kind() {
        let config = |id: &str| ClusterConfig {
            nats: Some("nats://unused".into()),
            node_id: Some(id.into()),
            ..ClusterConfig::default()
        };
        let (a, b) = (Cluster::new(&config("a")), Cluster::new(&config("b")));
        let heard = Arc::new(parking_lot::Mutex::new(Vec::new()));
        for tag in ["first", "second"] {
            let heard = heard.clone();
            b.hear(move |h: Heard<Ping>| heard.lock().push((tag, h.from, h.note.n)));
        }
        let leaving = Arc::new(parking_lot::Mutex::new(0));
        let left = leaving.clone();
        b.hear(move |_: Heard<NodeLeaving>| *left.lock() += 1);

        a.tell(Ping { n: 7 });
        let mut to_send = a.inner.to_send.lock().take().expect("the telling end");
        let encode = to_send.try_recv().expect("a note to send");
        let bytes = encode(a.node_id()).expect("encoded");
        b.dispatch(&bytes);
        // A node does not hear itself.
        a.dispatch(&bytes);
        assert_eq!(
            *heard.lock(),
            [("first", "a".to_owned(), 7), ("second", "a".to_owned(), 7)]
        );
        assert_eq!(*leaving.lock(), 0);
        b.dispatch(b"not json");
        b.dispatch(br#"{"from":"a","kind":"ping","note":{"n":"seven"}}"#);
        assert_eq!(heard.lock().len(), 2);
    }
}
