//! The mailbox: direct messages for users who are offline, kept durably until they next
//! connect (also across restarts). Bounded per user: the oldest are dropped beyond the
//! limit and counted. A message whose `ttl` has passed is dropped, not delivered.

use crate::params;

use crate::store::{Store, StoreError};

/// Stores an encoded DirectMessage for `user`; returns how many old ones were dropped.
pub async fn post(
    store: &Store,
    user: &str,
    frame: String,
    expires_at_ms: Option<i64>,
    per_user: usize,
) -> Result<usize, StoreError> {
    let key = user.to_lowercase();
    store
        .write(move |conn| {
            conn.execute(
                "INSERT INTO mailbox (username_key, frame, expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    key,
                    frame,
                    expires_at_ms,
                    chrono::Utc::now().timestamp_millis()
                ],
            )?;
            let dropped = conn.execute(
                "DELETE FROM mailbox WHERE username_key = ?1 AND id NOT IN (
                     SELECT id FROM mailbox WHERE username_key = ?1 ORDER BY id DESC LIMIT ?2)",
                params![key, per_user as i64],
            )?;
            Ok(dropped)
        })
        .await
}

/// Takes every waiting message for `user`, oldest first, dropping expired ones.
pub async fn collect(store: &Store, user: &str) -> Result<Vec<String>, StoreError> {
    let key = user.to_lowercase();
    let now = chrono::Utc::now().timestamp_millis();
    store
        .write(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT frame FROM mailbox
                 WHERE username_key = ?1 AND (expires_at IS NULL OR expires_at > ?2)
                 ORDER BY id",
            )?;
            let frames = stmt
                .query_map(params![key, now], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            conn.execute("DELETE FROM mailbox WHERE username_key = ?1", [&key])?;
            Ok(frames)
        })
        .await
}
