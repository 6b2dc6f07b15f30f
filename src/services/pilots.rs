//! Pilots: a player's lasting state in the space game (credits, cargo, hull, fuel, system).
//!
//! Loaded by the connection task when a player logs in (a cold read, never on the
//! simulation thread) and saved by the simulation through the store's writer: trades and
//! repairs save with the reply attached, so `trade.result` leaves only after COMMIT.

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

/// Reads a pilot; `None` for a player who has never played.
pub async fn load(store: &Store, user_id: Uuid) -> Result<Option<SavedPilot>, StoreError> {
    store
        .read(move |conn| {
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
        })
        .await
}

/// Writes a pilot (insert or replace). Runs inside the store's transaction.
pub fn save(conn: &crate::store::Connection, pilot: &SavedPilot) -> Result<(), StoreError> {
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
