//! Leases: which node plays each star system, as a fact in the database.
//!
//! Membership over NATS can be late, partitioned or lost, so it only hints at placement.
//! Ownership is a row in `leases` (owner, epoch, expiry by the database's clock), taken
//! and renewed with conditional writes: a node takes a system only when its lease has
//! expired (or was released), and each taking makes the epoch one larger. Every write on
//! behalf of a system carries the epoch it was played under ([`fence`]), so a node that
//! lost its lease without knowing it (paused, cut off) has its writes refused.
//!
//! Each node runs one [`Keeper`]: every quarter of the lease it registers itself in
//! `cluster_nodes`, renews what it holds, and takes the free systems it should play (those
//! pinned to it, or those rendezvous hashing over the live nodes gives it; any free one
//! that nobody took within a lease). The simulation plays a system only until a quarter of
//! a lease before the last renewal would run out, so it stops before anyone else may
//! start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::params;
use crate::store::{Connection, OptionalExtension, Store, StoreError};

/// The kind of lease a star system is held by.
pub const SYSTEM: &str = "system";

/// This node, as the lease table names it.
#[derive(Debug, Clone)]
pub struct ThisNode {
    pub id: String,
    /// Where it serves `/game`, for `WRONG_NODE` answers.
    pub host: String,
    pub port: u16,
    /// Star systems pinned to it.
    pub pinned: Vec<String>,
}

/// The node playing a system, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub host: String,
    pub port: u16,
    pub epoch: i64,
}

/// What one round found.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// The systems this node holds, with their epochs.
    pub held: HashMap<String, i64>,
    /// Until when (this node's clock) the held systems may be played.
    pub play_until: Option<Instant>,
    /// Systems other nodes hold.
    pub owners: HashMap<String, Owner>,
}

/// Refuses a write made on behalf of `system` (its id and the epoch it is played under)
/// when the lease has moved to a newer epoch; nothing to check for `None` (one node
/// alone). The row lock makes a concurrent taking wait for this transaction.
pub fn fence(conn: &Connection, system: Option<&(String, i64)>) -> Result<(), StoreError> {
    let Some((id, epoch)) = system else {
        return Ok(());
    };
    let held = conn.execute(
        "UPDATE leases SET epoch = epoch WHERE kind = ?1 AND id = ?2 AND epoch = ?3",
        params![SYSTEM, id, *epoch],
    )?;
    if held == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced(format!("system {id}")))
    }
}

/// Keeps this node's leases.
pub struct Keeper {
    pub store: Store,
    pub me: ThisNode,
    pub systems: Vec<String>,
    pub ttl: Duration,
    /// Rings when a round should run now (a node left and released its systems).
    pub wake: Arc<Notify>,
}

/// One round's instructions.
struct Plan {
    me: ThisNode,
    /// This process, so a restarted node with the same id does not adopt the leases of
    /// the one before it (which may not be dead, only paused).
    incarnation: String,
    systems: Vec<String>,
    ttl_ms: i64,
    /// Whether free systems may be taken by placement (not in the first round, before the
    /// other nodes starting with this one have registered).
    may_place: bool,
    /// Systems this node stopped playing last round, for a node they are pinned to: their
    /// leases are released now.
    handing_over: Vec<String>,
}

impl Keeper {
    /// Runs rounds until `shutdown`, handing each round's outcome to `report`; then gives
    /// the leases up so other nodes take them at once.
    pub async fn run(self, report: impl Fn(Round) + Send + 'static, shutdown: CancellationToken) {
        let incarnation = uuid::Uuid::new_v4().simple().to_string();
        let every = self.ttl / 4;
        let mut rounds = 0u64;
        let mut handing_over = Vec::new();
        loop {
            rounds += 1;
            let plan = Plan {
                me: self.me.clone(),
                incarnation: incarnation.clone(),
                systems: self.systems.clone(),
                ttl_ms: i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX),
                may_place: rounds > 1,
                handing_over: std::mem::take(&mut handing_over),
            };
            let started = Instant::now();
            match tokio::time::timeout(every, self.store.write(move |conn| round(conn, &plan)))
                .await
            {
                Ok(Ok((mut found, to_hand_over))) => {
                    found.play_until = Some(started + self.ttl - every);
                    handing_over = to_hand_over;
                    report(found);
                }
                Ok(Err(e)) => tracing::warn!("leases not renewed: {e}"),
                Err(_) => tracing::warn!("leases not renewed: the database did not answer"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Gives up every lease this node holds (it has stopped playing), so other nodes may
    /// take them without waiting for them to expire.
    pub async fn release(store: &Store, node_id: String) -> Result<usize, StoreError> {
        store
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM cluster_nodes WHERE node_id = ?1",
                    params![node_id],
                )?;
                conn.execute(
                    "UPDATE leases SET expires_at = 0 WHERE owner = ?1",
                    params![node_id],
                )
            })
            .await
    }
}

/// The database's clock in Unix ms, so nodes whose clocks differ agree on expiry.
fn db_now(conn: &Connection) -> Result<i64, StoreError> {
    match conn.dialect() {
        "postgres" => conn.query_row(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            (),
            |r| r.get(0),
        ),
        _ => Ok(chrono::Utc::now().timestamp_millis()),
    }
}

struct Lease {
    owner: String,
    incarnation: String,
    host: String,
    port: u16,
    epoch: i64,
    expires_at: i64,
}

/// One round: registers this node, renews its leases, takes the free systems it should.
/// Also returns the systems it stops playing now, for the node they are pinned to: the
/// next round releases them, once the simulation has moved their players out.
fn round(conn: &Connection, plan: &Plan) -> Result<(Round, Vec<String>), StoreError> {
    let now = db_now(conn)?;
    let expires = now.saturating_add(plan.ttl_ms);
    let me = &plan.me;
    let pinned = serde_json::to_string(&me.pinned).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO cluster_nodes (node_id, pinned, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (node_id) DO UPDATE SET pinned = excluded.pinned,
             expires_at = excluded.expires_at",
        params![me.id, pinned, expires],
    )?;
    let live: Vec<(String, Vec<String>)> = conn
        .query_map(
            "SELECT node_id, pinned FROM cluster_nodes WHERE expires_at > ?1",
            params![now],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?
        .into_iter()
        .map(|(node, pinned)| (node, serde_json::from_str(&pinned).unwrap_or_default()))
        .collect();
    let leases: HashMap<String, Lease> = conn
        .query_map(
            "SELECT id, owner, incarnation, host, port, epoch, expires_at FROM leases
             WHERE kind = ?1",
            params![SYSTEM],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Lease {
                        owner: r.get(1)?,
                        incarnation: r.get(2)?,
                        host: r.get(3)?,
                        port: u16::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                        epoch: r.get(5)?,
                        expires_at: r.get(6)?,
                    },
                ))
            },
        )?
        .into_iter()
        .collect();
    let mut found = Round::default();
    let mut hand_over = Vec::new();
    for id in &plan.systems {
        let lease = leases.get(id);
        if let Some(lease) = lease
            && lease.incarnation == plan.incarnation
            && plan.handing_over.contains(id)
        {
            conn.execute(
                "UPDATE leases SET expires_at = 0 WHERE kind = ?1 AND id = ?2 AND epoch = ?3",
                params![SYSTEM, id, lease.epoch],
            )?;
            tracing::info!(system = %id, "lease handed over to the node it is pinned to");
            continue;
        }
        if let Some(lease) = lease
            && lease.incarnation == plan.incarnation
            && !me.pinned.contains(id)
            && pinned_elsewhere(&live, &me.id, id)
        {
            // Not renewed: it expires (or is released next round) for its pinned node.
            hand_over.push(id.clone());
            continue;
        }
        if let Some(lease) = lease
            && lease.incarnation == plan.incarnation
        {
            // Ours: renewed, even if a round that took it did not come back in time.
            let renewed = conn.execute(
                "UPDATE leases SET expires_at = ?1 WHERE kind = ?2 AND id = ?3 AND epoch = ?4",
                params![expires, SYSTEM, id, lease.epoch],
            )?;
            if renewed == 1 {
                found.held.insert(id.clone(), lease.epoch);
            }
            continue;
        }
        if let Some(lease) = lease
            && lease.expires_at > now
        {
            let owner = Owner {
                node: lease.owner.clone(),
                host: lease.host.clone(),
                port: lease.port,
                epoch: lease.epoch,
            };
            found.owners.insert(id.clone(), owner);
            continue;
        }
        if !should_take(plan, id, lease.map(|l| l.expires_at), now, &live) {
            continue;
        }
        let taken = take(conn, plan, id, lease, now)?;
        if let Some(epoch) = taken {
            conn.execute(
                "INSERT INTO lease_history (kind, id, epoch, owner, taken_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    SYSTEM,
                    id,
                    epoch,
                    me.id,
                    chrono::Utc::now().timestamp_millis()
                ],
            )?;
            tracing::info!(system = %id, epoch, "lease taken");
            found.held.insert(id.clone(), epoch);
        }
    }
    Ok((found, hand_over))
}

/// Takes the free system `id` (its expired `lease`, or no row yet) with a conditional
/// write; its new epoch, or `None` if another node took it first.
fn take(
    conn: &Connection,
    plan: &Plan,
    id: &str,
    lease: Option<&Lease>,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let (me, expires) = (&plan.me, now.saturating_add(plan.ttl_ms));
    let taken = match lease {
        Some(lease) => conn
            .query_row(
                "UPDATE leases SET owner = ?1, incarnation = ?2, host = ?3, port = ?4,
                     epoch = epoch + 1, expires_at = ?5
                 WHERE kind = ?6 AND id = ?7 AND epoch = ?8 AND expires_at <= ?9
                 RETURNING epoch",
                params![
                    me.id,
                    plan.incarnation,
                    me.host,
                    i64::from(me.port),
                    expires,
                    SYSTEM,
                    id,
                    lease.epoch,
                    now
                ],
                |r| r.get(0),
            )
            .optional()?,
        None => conn
            .query_row(
                "INSERT INTO leases (kind, id, owner, incarnation, host, port, epoch, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)
                 ON CONFLICT (kind, id) DO NOTHING
                 RETURNING epoch",
                params![
                    SYSTEM,
                    id,
                    me.id,
                    plan.incarnation,
                    me.host,
                    i64::from(me.port),
                    expires
                ],
                |r| r.get(0),
            )
            .optional()?,
    };
    Ok(taken)
}

/// Whether this node should take the free system `id`: pinned here; or, once placement
/// may run, not pinned to another live node and picked by rendezvous hashing over the
/// live nodes; or free for longer than a lease (whoever should have taken it did not).
fn should_take(
    plan: &Plan,
    id: &str,
    expired_at: Option<i64>,
    now: i64,
    live: &[(String, Vec<String>)],
) -> bool {
    let me = &plan.me.id;
    if plan.me.pinned.iter().any(|s| s == id) {
        return true;
    }
    if !plan.may_place || pinned_elsewhere(live, me, id) {
        return false;
    }
    if expired_at.is_some_and(|at| now.saturating_sub(at) > plan.ttl_ms) {
        return true;
    }
    let winner = live
        .iter()
        .map(|(node, _)| node)
        .max_by_key(|node| (rendezvous_score(node, id), node.as_str()));
    winner.is_none_or(|node| node == me)
}

/// Whether a live node other than `me` has `id` pinned to it.
fn pinned_elsewhere(live: &[(String, Vec<String>)], me: &str, id: &str) -> bool {
    live.iter()
        .any(|(node, pinned)| node != me && pinned.iter().any(|s| s == id))
}

/// A node's claim to a system in rendezvous hashing: the highest score wins. SHA-256,
/// not the std hasher, so nodes built by different compilers agree.
fn rendezvous_score(node: &str, system_id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(node.as_bytes())
        .chain_update([0])
        .chain_update(system_id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(node: &str, incarnation: &str) -> Plan {
        Plan {
            me: ThisNode {
                id: node.into(),
                host: "127.0.0.1".into(),
                port: 1,
                pinned: Vec::new(),
            },
            incarnation: incarnation.into(),
            systems: vec!["sol-1".into()],
            ttl_ms: 60_000,
            may_place: true,
            handing_over: Vec::new(),
        }
    }

    async fn run(store: &Store, plan: Plan) -> Round {
        store
            .write(move |conn| round(conn, &plan))
            .await
            .expect("a round")
            .0
    }

    #[tokio::test]
    async fn one_owner_at_a_time_and_a_stale_owner_is_fenced() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store =
            Store::open(dir.path(), Arc::new(crate::metrics::Metrics::new())).expect("a store");
        // A takes the free system; B, alive beside it, does not.
        let a = run(&store, plan("node-a", "a1")).await;
        assert_eq!(a.held.get("sol-1"), Some(&1));
        let b = run(&store, plan("node-b", "b1")).await;
        assert!(b.held.is_empty(), "{b:?}");
        assert_eq!(b.owners["sol-1"].node, "node-a");
        // A restarted with the same id is another incarnation: it waits like anyone.
        let again = run(&store, plan("node-a", "a2")).await;
        assert!(again.held.is_empty(), "{again:?}");

        // The lease runs out (A stopped renewing): B takes it with a newer epoch, and a
        // write under A's epoch is refused.
        store
            .write(|conn| conn.execute("UPDATE leases SET expires_at = 0", ()))
            .await
            .expect("expired");
        let b = run(&store, plan("node-b", "b1")).await;
        assert_eq!(b.held.get("sol-1"), Some(&2));
        let stale = store
            .write(|conn| fence(conn, Some(&("sol-1".to_owned(), 1))))
            .await;
        assert!(matches!(stale, Err(StoreError::Fenced(_))), "{stale:?}");
        store
            .write(|conn| fence(conn, Some(&("sol-1".to_owned(), 2))))
            .await
            .expect("the current epoch writes");
        // A's next round finds it held by B: nothing to renew.
        let a = run(&store, plan("node-a", "a1")).await;
        assert!(a.held.is_empty(), "{a:?}");
        let history: Vec<(i64, String)> = store
            .read(|conn| {
                conn.query_map(
                    "SELECT epoch, owner FROM lease_history ORDER BY epoch",
                    (),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await
            .expect("the history");
        assert_eq!(history, [(1, "node-a".into()), (2, "node-b".into())]);
        store.close();
    }
}
