//! Pilots: a player's lasting state in the space game (credits, cargo, hull, fuel, system).
//!
//! Checked out by the connection task when a player logs in (never on the simulation
//! thread) and saved by the simulation through the store's writer: trades and repairs save
//! with the reply attached, so `trade.result` leaves only after COMMIT.
//!
//! A pilot is played on one node at a time. Logging in checks it out: the checkout's epoch
//! grows by one and the login gets the pilot as stored at that moment. Every later write
//! for it is fenced by that epoch ([`fence`]): once a newer login has checked it out,
//! anywhere, an older connection's write is refused ([`StoreError::Fenced`]) and nothing of
//! it is written. Writes say what changed (credits and cargo deltas for a trade; hull, fuel
//! and system for a save), never the whole record over what another writer did.

use crate::params;
use crate::store::OptionalExtension;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CargoHold {
    pub commodity_id: String,
    pub qty: u32,
}

/// A pilot as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedPilot {
    pub user_id: Uuid,
    pub system_id: String,
    pub credits: i64,
    pub cargo: Vec<CargoHold>,
    pub hull: u32,
    pub fuel: f32,
}

/// A pilot checked out to one node: as stored when it was taken (`None` for a player who
/// has never played), and the epoch its writes carry.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedOut {
    pub saved: Option<SavedPilot>,
    pub epoch: i64,
}

/// What a trade, repair or grant changes in a pilot's record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PilotChange {
    /// Credits gained (positive) or spent (negative).
    pub credits: i64,
    /// Units of a commodity taken aboard (positive) or sold (negative).
    pub cargo: Option<(String, i64)>,
    /// The hull restored to this many points.
    pub hull: Option<u32>,
}

/// Takes `user_id`'s pilot for `node`: a newer epoch than any before, and the pilot as it is
/// stored now. Every older checkout's writes are refused from the moment this commits.
pub async fn check_out(
    store: &Store,
    user_id: Uuid,
    node: String,
) -> Result<CheckedOut, StoreError> {
    store
        .write(move |conn| {
            let now = chrono::Utc::now().timestamp_millis();
            let epoch: i64 = conn.query_row(
                "INSERT INTO pilot_checkouts (user_id, node, epoch, taken_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (user_id) DO UPDATE
                     SET node = excluded.node, epoch = pilot_checkouts.epoch + 1,
                         taken_at = excluded.taken_at
                 RETURNING epoch",
                params![user_id.to_string(), node, now],
                |r| r.get(0),
            )?;
            conn.execute(
                "INSERT INTO pilot_checkout_history (user_id, epoch, node, taken_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![user_id.to_string(), epoch, node, now],
            )?;
            Ok(CheckedOut {
                saved: read(conn, user_id)?,
                epoch,
            })
        })
        .await
}

/// Holds `user_id`'s checkout at `epoch` for the rest of the transaction, or refuses with
/// [`StoreError::Fenced`] when a newer checkout took it. The row lock it takes makes a
/// concurrent checkout wait for this transaction, so the check cannot go stale before
/// COMMIT.
pub fn fence(conn: &crate::store::Connection, user_id: Uuid, epoch: i64) -> Result<(), StoreError> {
    let held = conn.execute(
        "UPDATE pilot_checkouts SET epoch = epoch WHERE user_id = ?1 AND epoch = ?2",
        params![user_id.to_string(), epoch],
    )?;
    if held == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced(format!("pilot {user_id}")))
    }
}

/// Applies `change` to the stored pilot under the checkout `epoch`; `fresh` is the record
/// written when the pilot has never been stored (it already includes the change). Returns
/// the pilot as stored after it.
pub fn settle(
    conn: &crate::store::Connection,
    epoch: i64,
    fresh: &SavedPilot,
    change: &PilotChange,
) -> Result<SavedPilot, StoreError> {
    fence(conn, fresh.user_id, epoch)?;
    let Some(mut pilot) = read(conn, fresh.user_id)? else {
        write(conn, fresh)?;
        return Ok(fresh.clone());
    };
    pilot.credits = pilot
        .credits
        .checked_add(change.credits)
        .filter(|c| *c >= 0)
        .ok_or_else(|| StoreError::Invariant("a pilot's credits would go below zero".into()))?;
    if let Some((commodity_id, delta)) = &change.cargo {
        let held = pilot
            .cargo
            .iter()
            .find(|c| &c.commodity_id == commodity_id)
            .map_or(0, |c| i64::from(c.qty));
        if held + delta < 0 {
            return Err(StoreError::Invariant(format!(
                "a pilot would hold {} {commodity_id}",
                held + delta
            )));
        }
        stow(&mut pilot.cargo, commodity_id, *delta);
    }
    if let Some(hull) = change.hull {
        pilot.hull = hull;
    }
    write(conn, &pilot)?;
    Ok(pilot)
}

/// Saves what play changes without a trade (where the ship is, its hull and fuel) under the
/// checkout `epoch`; credits and cargo are left as the trades stored them. `pilot` is
/// written whole only when it has never been stored.
pub fn save(
    conn: &crate::store::Connection,
    epoch: i64,
    pilot: &SavedPilot,
) -> Result<(), StoreError> {
    fence(conn, pilot.user_id, epoch)?;
    let updated = conn.execute(
        "UPDATE pilots SET system_id = ?2, hull = ?3, fuel = ?4, updated_at = ?5
         WHERE user_id = ?1",
        params![
            pilot.user_id.to_string(),
            pilot.system_id,
            pilot.hull,
            f64::from(pilot.fuel),
            chrono::Utc::now().timestamp()
        ],
    )?;
    if updated == 0 {
        write(conn, pilot)?;
    }
    Ok(())
}

/// Adds (or with a negative `delta`, removes) units of a commodity in `cargo`; empty holds
/// disappear.
pub fn stow(cargo: &mut Vec<CargoHold>, commodity_id: &str, delta: i64) {
    match cargo.iter_mut().find(|c| c.commodity_id == commodity_id) {
        Some(hold) => hold.qty = (i64::from(hold.qty) + delta).max(0) as u32,
        None if delta > 0 => cargo.push(CargoHold {
            commodity_id: commodity_id.to_owned(),
            qty: u32::try_from(delta).unwrap_or(u32::MAX),
        }),
        None => {}
    }
    cargo.retain(|c| c.qty > 0);
}

/// Reads a pilot without checking it out (an operator's or a test's look).
pub async fn load(store: &Store, user_id: Uuid) -> Result<Option<SavedPilot>, StoreError> {
    store.read(move |conn| read(conn, user_id)).await
}

/// Reads a pilot inside an operation; `None` for a player who has never played.
fn read(conn: &crate::store::Connection, user_id: Uuid) -> Result<Option<SavedPilot>, StoreError> {
    let row = conn
        .query_row(
            "SELECT system_id, credits, cargo, hull, fuel FROM pilots WHERE user_id = ?1",
            [user_id.to_string()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, f64>(4)?,
                ))
            },
        )
        .optional()?;
    Ok(
        row.map(|(system_id, credits, cargo, hull, fuel)| SavedPilot {
            user_id,
            system_id,
            credits,
            cargo: serde_json::from_str(&cargo).unwrap_or_default(),
            hull: u32::try_from(hull).unwrap_or(0),
            fuel: fuel as f32,
        }),
    )
}

/// Writes a whole pilot record (insert or replace), once the caller holds its checkout.
fn write(conn: &crate::store::Connection, pilot: &SavedPilot) -> Result<(), StoreError> {
    let cargo = serde_json::to_string(&pilot.cargo).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO pilots (user_id, system_id, credits, cargo, hull, fuel, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(user_id) DO UPDATE SET system_id = ?2, credits = ?3, cargo = ?4,
             hull = ?5, fuel = ?6, updated_at = ?7",
        params![
            pilot.user_id.to_string(),
            pilot.system_id,
            pilot.credits,
            cargo,
            pilot.hull,
            f64::from(pilot.fuel),
            chrono::Utc::now().timestamp()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_account(dir: &std::path::Path) -> (Store, Uuid) {
        let store =
            Store::open(dir, std::sync::Arc::new(crate::metrics::Metrics::new())).expect("a store");
        let user_id = Uuid::new_v4();
        let (tx, rx) = std::sync::mpsc::channel();
        store.submit(
            move |conn| {
                conn.execute(
                    "INSERT INTO accounts (user_id, username, username_key, display_name, roles,
                         password_hash, created_at)
                     VALUES (?1, 'ann', 'ann', 'Ann', 'player', 'x', 0)",
                    params![user_id.to_string()],
                )
            },
            move |r| tx.send(r.map(|_| ())).expect("the test waits"),
        );
        rx.recv().expect("an answer").expect("the account");
        (store, user_id)
    }

    fn pilot(user_id: Uuid, credits: i64) -> SavedPilot {
        SavedPilot {
            user_id,
            system_id: "sol-1".into(),
            credits,
            cargo: Vec::new(),
            hull: 100,
            fuel: 50.0,
        }
    }

    #[tokio::test]
    async fn a_write_under_an_older_checkout_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (store, user_id) = store_with_account(dir.path());
        let first = check_out(&store, user_id, "node-a".into())
            .await
            .expect("a");
        assert_eq!(
            first,
            CheckedOut {
                saved: None,
                epoch: 1
            }
        );
        let buy = PilotChange {
            credits: -120,
            cargo: Some(("food".into(), 10)),
            hull: None,
        };
        let mut after = pilot(user_id, 4_880);
        stow(&mut after.cargo, "food", 10);
        let stored = store
            .write({
                let after = after.clone();
                let buy = buy.clone();
                move |conn| settle(conn, 1, &after, &buy)
            })
            .await
            .expect("the first checkout writes");
        assert_eq!(stored, after);

        // A newer login takes the pilot: it sees the trade, and the older one's writes of
        // any kind are refused without a trace.
        let second = check_out(&store, user_id, "node-b".into())
            .await
            .expect("b");
        assert_eq!(second.epoch, 2);
        assert_eq!(second.saved.as_ref(), Some(&after));
        let stale_trade = store
            .write({
                let after = after.clone();
                move |conn| settle(conn, 1, &after, &buy)
            })
            .await;
        assert!(
            matches!(stale_trade, Err(StoreError::Fenced(_))),
            "{stale_trade:?}"
        );
        let stale_save = store
            .write(move |conn| save(conn, 1, &pilot(user_id, 5_000)))
            .await;
        assert!(
            matches!(stale_save, Err(StoreError::Fenced(_))),
            "{stale_save:?}"
        );
        assert_eq!(
            load(&store, user_id).await.expect("a read"),
            Some(after.clone())
        );

        // A save writes where the ship is and its hull and fuel, never credits or cargo.
        let mut moved = pilot(user_id, 5_000);
        moved.system_id = "vega-2".into();
        moved.hull = 40;
        store
            .write(move |conn| save(conn, 2, &moved))
            .await
            .expect("the current checkout saves");
        let now = load(&store, user_id)
            .await
            .expect("a read")
            .expect("a pilot");
        assert_eq!(
            (now.system_id.as_str(), now.hull, now.credits, now.cargo),
            ("vega-2", 40, 4_880, after.cargo)
        );
        store.close();
    }
}
