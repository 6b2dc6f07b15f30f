//! Player progress: what a player did in play (trades, kills, docks, distance, credits),
//! the experience and level that follow from it, achievements, friends and leaderboards.
//!
//! The simulation counts while a pilot is in the world and saves the totals now and then;
//! these functions load and save them and answer the platform API's questions. Experience
//! is derived, never stored: 10 per trade, 50 per kill, 5 per dock and 1 per 100 units
//! flown. The level is `floor(sqrt(experience / 100)) + 1` (100 xp: level 2, 400: level 3).

use std::collections::HashSet;
use std::path::Path;

use crate::params;
use crate::store::{OptionalExtension, ToValue};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::services::DomainError;
use crate::services::catalog::SPACE_GAME_ID;
use crate::store::StoreError;

/// What a player has done in the space game.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stats {
    pub trades: i64,
    pub kills: i64,
    pub deaths: i64,
    pub docks: i64,
    /// Units flown.
    pub distance: f64,
    /// The most credits ever held.
    pub credits: i64,
}

impl Stats {
    pub fn experience(&self) -> i64 {
        self.trades * 10 + self.kills * 50 + self.docks * 5 + (self.distance / 100.0) as i64
    }

    pub fn level(&self) -> i64 {
        ((self.experience().max(0) as f64 / 100.0).sqrt()).floor() as i64 + 1
    }

    /// The value of a named stat, as achievements refer to it.
    pub fn get(&self, stat: Stat) -> f64 {
        match stat {
            Stat::Trades => self.trades as f64,
            Stat::Kills => self.kills as f64,
            Stat::Deaths => self.deaths as f64,
            Stat::Docks => self.docks as f64,
            Stat::Distance => self.distance,
            Stat::Credits => self.credits as f64,
            // Counted from the results of a game's rooms, not from the space game.
            Stat::Matches | Stat::Wins => 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    Trades,
    Kills,
    Deaths,
    Docks,
    Distance,
    Credits,
    /// Matches of the achievement's game finished (rooms whose script ended them).
    Matches,
    /// Of those, the ones the player won (ranked first, ties included).
    Wins,
}

impl Stat {
    /// Whether it counts a room game's matches rather than the space game's play.
    pub fn of_rooms(self) -> bool {
        matches!(self, Stat::Matches | Stat::Wins)
    }
}

/// One achievement of `data/achievements.json`: unlocked when `stat` reaches `at_least`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AchievementDef {
    pub achievement_id: String,
    pub game_id: String,
    pub name: String,
    pub description: String,
    pub stat: Stat,
    pub at_least: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Achievements {
    pub achievements: Vec<AchievementDef>,
}

const EMBEDDED_ACHIEVEMENTS: &str = include_str!("../../data/achievements.json");

impl Achievements {
    /// `achievements.json` from `dir` if it has one, else the built-in file; validated.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let (file, text) = match dir.map(|d| d.join("achievements.json")) {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                (path.display().to_string(), text)
            }
            _ => (
                "achievements.json".to_owned(),
                EMBEDDED_ACHIEVEMENTS.to_owned(),
            ),
        };
        let de = &mut serde_json::Deserializer::from_str(&text);
        let parsed: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("{file}: {path}: {}", e.into_inner())
        })?;
        let mut seen = HashSet::new();
        for (i, a) in parsed.achievements.iter().enumerate() {
            if a.achievement_id.is_empty() || !seen.insert(a.achievement_id.as_str()) {
                anyhow::bail!("{file}: achievements[{i}].achievement_id: empty or repeated");
            }
        }
        Ok(parsed)
    }

    /// Those `stats` reach that are not in `unlocked` yet.
    pub fn newly_reached<'a>(
        &'a self,
        stats: &'a Stats,
        unlocked: &'a HashSet<String>,
    ) -> impl Iterator<Item = &'a AchievementDef> + 'a {
        self.achievements
            .iter()
            .filter(move |a| !unlocked.contains(&a.achievement_id))
            .filter(move |a| stats.get(a.stat) >= a.at_least)
    }
}

/// A player's saved progress, loaded when their pilot enters the world.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub stats: Stats,
    /// Achievement ids already unlocked.
    pub unlocked: HashSet<String>,
}

pub fn load(conn: &crate::store::Connection, user_id: Uuid) -> Result<Record, StoreError> {
    let stats = conn
        .query_row(
            "SELECT trades, kills, deaths, docks, distance, credits FROM player_stats
             WHERE user_id = ?1",
            [user_id.to_string()],
            |r| {
                Ok(Stats {
                    trades: r.get(0)?,
                    kills: r.get(1)?,
                    deaths: r.get(2)?,
                    docks: r.get(3)?,
                    distance: r.get(4)?,
                    credits: r.get(5)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default();
    let mut stmt = conn.prepare("SELECT achievement_id FROM achievements WHERE user_id = ?1")?;
    let unlocked = stmt
        .query_map([user_id.to_string()], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Record { stats, unlocked })
}

/// Saves a player's totals (the simulation's counts are the truth while they play).
pub fn save_stats(
    conn: &crate::store::Connection,
    user_id: Uuid,
    stats: &Stats,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO player_stats (user_id, trades, kills, deaths, docks, distance, credits)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (user_id) DO UPDATE SET trades = ?2, kills = ?3, deaths = ?4, docks = ?5,
             distance = ?6, credits = ?7",
        params![
            user_id.to_string(),
            stats.trades,
            stats.kills,
            stats.deaths,
            stats.docks,
            stats.distance,
            stats.credits
        ],
    )?;
    Ok(())
}

pub fn unlock(
    conn: &crate::store::Connection,
    user_id: Uuid,
    achievement_id: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO achievements (user_id, achievement_id, unlocked_at)
         VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![user_id.to_string(), achievement_id, at_ms],
    )?;
    Ok(())
}

/// Unlock times by achievement id.
pub fn unlocked_at(
    conn: &crate::store::Connection,
    user_id: Uuid,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT achievement_id, unlocked_at FROM achievements WHERE user_id = ?1
         ORDER BY unlocked_at",
    )?;
    let rows = stmt
        .query_map([user_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A profile's region: 2 to 32 letters, digits, `-` or `_` (e.g. `eu-west`).
pub fn validate_region(region: &str) -> Result<(), DomainError> {
    let ok = (2..=32).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidInput(
            "region must be 2 to 32 letters, digits, - or _".into(),
        ))
    }
}

pub fn set_region(
    conn: &crate::store::Connection,
    user_id: Uuid,
    region: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO player_stats (user_id, region) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET region = ?2",
        params![user_id.to_string(), region],
    )?;
    Ok(())
}

pub fn region(
    conn: &crate::store::Connection,
    user_id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT region FROM player_stats WHERE user_id = ?1",
            [user_id.to_string()],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// Adds `friend` (by username) to `user`'s friends; the friend's id.
pub fn add_friend(
    conn: &crate::store::Connection,
    user_id: Uuid,
    friend: &str,
) -> Result<Result<Uuid, DomainError>, StoreError> {
    let Some(friend_id) = user_by_name(conn, friend)? else {
        return Ok(Err(DomainError::NotFound(format!("no player {friend:?}"))));
    };
    if friend_id == user_id {
        return Ok(Err(DomainError::InvalidInput(
            "you cannot befriend yourself".into(),
        )));
    }
    conn.execute(
        "INSERT INTO friends (user_id, friend_id, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![
            user_id.to_string(),
            friend_id.to_string(),
            chrono::Utc::now().timestamp_millis()
        ],
    )?;
    Ok(Ok(friend_id))
}

pub fn remove_friend(
    conn: &crate::store::Connection,
    user_id: Uuid,
    friend: &str,
) -> Result<Result<(), DomainError>, StoreError> {
    let removed = match user_by_name(conn, friend)? {
        Some(friend_id) => conn.execute(
            "DELETE FROM friends WHERE user_id = ?1 AND friend_id = ?2",
            params![user_id.to_string(), friend_id.to_string()],
        )?,
        None => 0,
    };
    if removed == 0 {
        return Ok(Err(DomainError::NotFound(format!(
            "{friend:?} is not among your friends"
        ))));
    }
    Ok(Ok(()))
}

fn user_by_name(
    conn: &crate::store::Connection,
    username: &str,
) -> Result<Option<Uuid>, StoreError> {
    let id: Option<String> = conn
        .query_row(
            "SELECT user_id FROM accounts WHERE username_key = ?1",
            [username.to_lowercase()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(id.and_then(|id| Uuid::parse_str(&id).ok()))
}

/// Which players a leaderboard ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    Global,
    /// The caller and their friends.
    Friends,
    /// Players of the caller's region.
    Regional,
}

/// One leaderboard line.
#[derive(Debug, Clone, PartialEq)]
pub struct Rank {
    pub rank: i64,
    pub player_name: String,
    pub score: i64,
}

/// A game's leaderboard, best first, at most `limit` lines. The space game ranks by
/// experience; another game by each player's best score, in a GARP play or a room its
/// script ended.
pub fn leaderboard(
    conn: &crate::store::Connection,
    game_id: &str,
    board: Board,
    caller: Uuid,
    limit: usize,
) -> Result<Result<Vec<Rank>, DomainError>, StoreError> {
    let region = match board {
        Board::Regional => match region(conn, caller)? {
            Some(region) => Some(region),
            None => {
                return Ok(Err(DomainError::InvalidInput(
                    "your profile has no region: set one with update_player_profile".into(),
                )));
            }
        },
        _ => None,
    };
    // PostgreSQL rounds a real cast to an integer where SQLite truncates: truncate first.
    let truncate = if conn.dialect() == "postgres" {
        "TRUNC"
    } else {
        ""
    };
    let scores = if game_id == SPACE_GAME_ID {
        format!(
            "SELECT s.user_id AS user_id, a.display_name AS name,
                    s.trades * 10 + s.kills * 50 + s.docks * 5
                        + CAST({truncate}(s.distance / 100) AS BIGINT) AS score
             FROM player_stats s JOIN accounts a ON a.user_id = s.user_id"
        )
    } else {
        "SELECT s.user_id AS user_id, a.display_name AS name, MAX(s.score) AS score
         FROM (SELECT user_id, score FROM plays WHERE game_id = ?5 AND score IS NOT NULL
               UNION ALL
               SELECT user_id, score FROM room_results WHERE game_id = ?5) AS s
         JOIN accounts a ON a.user_id = s.user_id
         GROUP BY s.user_id, a.display_name"
            .to_owned()
    };
    let sql = format!(
        "SELECT user_id, name, score FROM ({scores}) AS ranked
         WHERE (?1 != 'friends' OR user_id = ?2
                OR user_id IN (SELECT friend_id FROM friends WHERE user_id = ?2))
           AND (CAST(?3 AS TEXT) IS NULL
                OR user_id IN (SELECT user_id FROM player_stats WHERE region = ?3))
         ORDER BY score DESC, name LIMIT ?4"
    );
    let board_name = match board {
        Board::Global => "global",
        Board::Friends => "friends",
        Board::Regional => "regional",
    };
    let mut values = vec![
        board_name.to_value(),
        caller.to_string().to_value(),
        region.to_value(),
        limit.to_value(),
    ];
    if game_id != SPACE_GAME_ID {
        values.push(game_id.to_value());
    }
    let rows = conn.query_map(&sql, values, |r| {
        Ok((r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
    })?;
    let mut ranks = Vec::new();
    for (i, (player_name, score)) in rows.into_iter().enumerate() {
        ranks.push(Rank {
            rank: i as i64 + 1,
            player_name,
            score,
        });
    }
    Ok(Ok(ranks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experience_and_level_follow_the_stats() {
        let stats = Stats {
            trades: 3,
            kills: 1,
            docks: 2,
            distance: 1234.0,
            ..Stats::default()
        };
        assert_eq!(stats.experience(), 30 + 50 + 10 + 12);
        assert_eq!(stats.level(), 2);
        assert_eq!(Stats::default().level(), 1);
    }

    #[test]
    fn the_built_in_achievements_load() {
        let all = Achievements::load(None).unwrap();
        let ids: Vec<&str> = all
            .achievements
            .iter()
            .map(|a| a.achievement_id.as_str())
            .collect();
        assert!(ids.contains(&"first-trade") && ids.contains(&"credits-100k"));
        let stats = Stats {
            trades: 1,
            ..Stats::default()
        };
        let unlocked = HashSet::new();
        let reached: Vec<&str> = all
            .newly_reached(&stats, &unlocked)
            .map(|a| a.achievement_id.as_str())
            .collect();
        assert_eq!(reached, ["first-trade"]);
    }
}
