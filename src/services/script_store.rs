//! What scripts keep: a key-value space per mod and per game, and the results of rooms
//! their scripts ended, which finish the players' open GARP plays and feed the game's
//! leaderboard.

use uuid::Uuid;

use crate::params;
use crate::services::progress::{AchievementDef, Stat};
use crate::store::{OptionalExtension, StoreError};

/// The value stored under `key` in `space`, as JSON (`null` when there is none).
pub fn get(
    conn: &crate::store::Connection,
    space: &str,
    key: &str,
) -> Result<serde_json::Value, StoreError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM script_values WHERE space = ?1 AND key = ?2",
            params![space, key],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null))
}

/// Stores `value` (JSON text) under `key`; `null` removes the key.
pub fn set(
    conn: &crate::store::Connection,
    space: &str,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    if value == "null" {
        conn.execute(
            "DELETE FROM script_values WHERE space = ?1 AND key = ?2",
            params![space, key],
        )?;
        return Ok(());
    }
    conn.execute(
        "INSERT INTO script_values (space, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (space, key) DO UPDATE SET value = excluded.value,
                                                updated_at = excluded.updated_at",
        params![space, key, value, chrono::Utc::now().timestamp_millis()],
    )?;
    Ok(())
}

/// One player's result in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomResult {
    pub user_id: Uuid,
    pub display_name: String,
    pub score: i64,
    /// The GARP play the score finished: the player's latest unfinished play of the game
    /// in a period not yet resolved.
    pub play_id: Option<i64>,
}

/// A room's end as its script reported it.
#[derive(Debug, Clone)]
pub struct RoomEnd {
    pub room_id: String,
    pub game_id: String,
    pub version: String,
    /// `(player, display name, score)`.
    pub scores: Vec<(Uuid, String, i64)>,
}

/// What a room's end saved: each player's result, and the achievements it unlocked.
#[derive(Debug, Clone, Default)]
pub struct RoomEndSaved {
    pub results: Vec<RoomResult>,
    /// `(player, achievement id)`, newly unlocked.
    pub unlocked: Vec<(Uuid, String)>,
}

/// Records a room's results, finishes each player's open play of the game with their
/// score, and unlocks the game's match achievements (`achievements`: those of this game
/// counting `matches` or `wins`) the players now reach, in one transaction.
pub fn record_room_end(
    conn: &crate::store::Connection,
    end: &RoomEnd,
    achievements: &[AchievementDef],
) -> Result<RoomEndSaved, StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut results = Vec::with_capacity(end.scores.len());
    for (user_id, display_name, score) in &end.scores {
        let play_id: Option<i64> = conn
            .query_row(
                "SELECT p.play_id FROM plays p
                 JOIN wager_periods w ON w.game_id = p.game_id AND w.seq = p.seq
                 WHERE p.game_id = ?1 AND p.user_id = ?2 AND p.finished_at IS NULL
                   AND w.resolved_at IS NULL
                 ORDER BY p.play_id DESC LIMIT 1",
                params![end.game_id, user_id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(play_id) = play_id {
            conn.execute(
                "UPDATE plays SET score = ?2, finished_at = ?3 WHERE play_id = ?1",
                params![play_id, score, now],
            )?;
        }
        conn.execute(
            "INSERT INTO room_results (room_id, game_id, version, user_id, display_name, score,
                                       play_id, ended_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                end.room_id,
                end.game_id,
                end.version,
                user_id.to_string(),
                display_name,
                score,
                play_id,
                now
            ],
        )?;
        results.push(RoomResult {
            user_id: *user_id,
            display_name: display_name.clone(),
            score: *score,
            play_id,
        });
    }
    let mut unlocked = Vec::new();
    if !achievements.is_empty() {
        for result in &results {
            let (matches, wins) = match_counts(conn, &end.game_id, result.user_id)?;
            for a in achievements {
                let count = if a.stat == Stat::Wins { wins } else { matches };
                if (count as f64) < a.at_least {
                    continue;
                }
                let inserted = conn.execute(
                    "INSERT INTO achievements (user_id, achievement_id, unlocked_at)
                     VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![result.user_id.to_string(), a.achievement_id, now],
                )?;
                if inserted > 0 {
                    unlocked.push((result.user_id, a.achievement_id.clone()));
                }
            }
        }
    }
    Ok(RoomEndSaved { results, unlocked })
}

/// The matches of `game_id` the player finished, and won (ranked first, ties included).
fn match_counts(
    conn: &crate::store::Connection,
    game_id: &str,
    user_id: Uuid,
) -> Result<(i64, i64), StoreError> {
    conn.query_row(
        "SELECT COUNT(*),
                CAST(COALESCE(SUM(CASE WHEN r.score = (SELECT MAX(o.score) FROM room_results o
                                                       WHERE o.room_id = r.room_id)
                                  THEN 1 ELSE 0 END), 0) AS BIGINT)
         FROM room_results r WHERE r.game_id = ?1 AND r.user_id = ?2",
        params![game_id, user_id.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}
