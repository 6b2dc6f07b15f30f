//! Game wagers: periods, plays and pots, on top of the wallet's ledger.
//!
//! A game runs in periods. A wage moves coins from the player's account into the pot of the
//! game's current period and opens a play; finishing the play records its score. When the
//! period ends its pot resolves once: ladder positions 1-5 are paid their shares and what is
//! left (rounding, fewer than five players) is carried into the next period. Every step is
//! one transaction of wallet moves plus the rows that explain them, so a crash leaves
//! either all of a step or none of it. Which period is current is the simulation's decision
//! (see `sim::wagers`); these functions only apply it.

use crate::params;
use crate::store::OptionalExtension;
use uuid::Uuid;

use crate::services::DomainError;
use crate::services::wallet::{self, pot_account, user_account};
use crate::store::StoreError;

/// One period of one game. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub game_id: String,
    pub seq: i64,
    pub starts_at: i64,
    pub ends_at: i64,
}

impl Period {
    pub fn pot(&self) -> String {
        pot_account(&self.game_id, self.seq)
    }

    /// Makes sure the period has its row (a period without coins has none).
    fn ensure_row(&self, conn: &crate::store::Connection) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO wager_periods (game_id, seq, starts_at, ends_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![self.game_id, self.seq, self.starts_at, self.ends_at],
        )?;
        Ok(())
    }
}

/// A wage to place.
#[derive(Debug, Clone)]
pub struct Wage {
    pub period: Period,
    pub user_id: Uuid,
    pub display_name: String,
    pub amount: i64,
    /// With `request_id`, what makes a repeated request recognisable.
    pub session_id: String,
    pub request_id: String,
}

/// A placed wage: the play it opened and the balance left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub play_id: i64,
    pub balance: i64,
    pub game_id: String,
}

/// Places a wage, or answers the original receipt if this session already sent this
/// request id (and moves nothing). The inner error is a refusal (not enough coins).
pub fn place_wage(
    conn: &crate::store::Connection,
    wage: &Wage,
) -> Result<Result<Receipt, DomainError>, StoreError> {
    let earlier = conn
        .query_row(
            "SELECT play_id, balance_after, game_id FROM plays
             WHERE session_id = ?1 AND request_id = ?2",
            params![wage.session_id, wage.request_id],
            |r| {
                Ok(Receipt {
                    play_id: r.get(0)?,
                    balance: r.get(1)?,
                    game_id: r.get(2)?,
                })
            },
        )
        .optional()?;
    if let Some(receipt) = earlier {
        return Ok(Ok(receipt));
    }
    let period = &wage.period;
    period.ensure_row(conn)?;
    let open: bool = conn.query_row(
        "SELECT resolved_at IS NULL FROM wager_periods WHERE game_id = ?1 AND seq = ?2",
        params![period.game_id, period.seq],
        |r| r.get(0),
    )?;
    if !open {
        return Err(StoreError::Invariant(format!(
            "a wage into period {} of {}, already resolved",
            period.seq, period.game_id
        )));
    }
    let account = user_account(wage.user_id);
    let memo = format!("wage: {} period {}", period.game_id, period.seq);
    let move_id = match wallet::transfer(conn, &account, &period.pot(), wage.amount, "wage", &memo)?
    {
        Ok(move_id) => move_id,
        Err(refused) => return Ok(Err(refused)),
    };
    let balance = wallet::balance(conn, &account)?;
    let play_id: i64 = conn.query_row(
        "INSERT INTO plays (game_id, seq, user_id, display_name, wage, balance_after, move_id,
                            session_id, request_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         RETURNING play_id",
        params![
            period.game_id,
            period.seq,
            wage.user_id.to_string(),
            wage.display_name,
            wage.amount,
            balance,
            move_id,
            wage.session_id,
            wage.request_id,
            now_ms()
        ],
        |r| r.get(0),
    )?;
    Ok(Ok(Receipt {
        play_id,
        balance,
        game_id: period.game_id.clone(),
    }))
}

/// Records the score of `user`'s open play. Refusals: no such play, someone else's,
/// already finished, or its period already resolved.
pub fn finish_play(
    conn: &crate::store::Connection,
    user_id: Uuid,
    play_id: i64,
    score: i64,
) -> Result<Result<(), DomainError>, StoreError> {
    let found = conn
        .query_row(
            "SELECT p.user_id, p.finished_at IS NOT NULL, w.resolved_at IS NOT NULL
             FROM plays p JOIN wager_periods w ON w.game_id = p.game_id AND w.seq = p.seq
             WHERE p.play_id = ?1",
            [play_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((owner, finished, resolved)) = found else {
        return Ok(Err(DomainError::NotFound(format!("no play {play_id}"))));
    };
    if owner != user_id.to_string() {
        return Ok(Err(DomainError::Forbidden(format!(
            "play {play_id} is not yours"
        ))));
    }
    if finished {
        return Ok(Err(DomainError::Conflict(format!(
            "play {play_id} is already finished"
        ))));
    }
    if resolved {
        return Ok(Err(DomainError::BadState(format!(
            "the period of play {play_id} has already been resolved"
        ))));
    }
    conn.execute(
        "UPDATE plays SET score = ?2, finished_at = ?3 WHERE play_id = ?1",
        params![play_id, score, now_ms()],
    )?;
    Ok(Ok(()))
}

/// What resolving a period did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// `(play_id, amount)` for each paid position, best first.
    pub paid: Vec<(i64, i64)>,
    /// Moved into the next period's pot.
    pub carried: i64,
}

/// Resolves `period` once: pays ladder positions 1-5 their `shares_permille` of the pot
/// and carries the rest into `next`. `None` if there was nothing to resolve (no row: no
/// coins ever entered it) or it was already resolved.
pub fn resolve_period(
    conn: &crate::store::Connection,
    period: &Period,
    shares_permille: &[i64; 5],
    next: &Period,
) -> Result<Option<Resolution>, StoreError> {
    let claimed = conn.execute(
        "UPDATE wager_periods SET resolved_at = ?3
         WHERE game_id = ?1 AND seq = ?2 AND resolved_at IS NULL",
        params![period.game_id, period.seq, now_ms()],
    )?;
    if claimed == 0 {
        return Ok(None);
    }
    let pot = period.pot();
    let total = wallet::balance(conn, &pot)?;
    let winners: Vec<(i64, String)> = {
        let mut stmt = conn.prepare(
            "SELECT play_id, user_id FROM plays
             WHERE game_id = ?1 AND seq = ?2 AND finished_at IS NOT NULL
             ORDER BY score DESC, finished_at, play_id LIMIT 5",
        )?;
        stmt.query_map(params![period.game_id, period.seq], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?
    };
    let mut resolution = Resolution::default();
    for (position, (play_id, user)) in winners.into_iter().enumerate() {
        let amount = total * shares_permille[position] / 1000;
        if amount > 0 {
            let user_id = Uuid::parse_str(&user)
                .map_err(|_| StoreError::Invariant(format!("play {play_id}: bad user id")))?;
            let memo = format!(
                "payout: {} period {} position {}",
                period.game_id,
                period.seq,
                position + 1
            );
            move_or_fail(conn, &pot, &user_account(user_id), amount, "payout", &memo)?;
        }
        conn.execute(
            "UPDATE plays SET payout = ?2 WHERE play_id = ?1",
            params![play_id, amount],
        )?;
        resolution.paid.push((play_id, amount));
    }
    let left = wallet::balance(conn, &pot)?;
    if left > 0 {
        next.ensure_row(conn)?;
        let memo = format!(
            "carry: {} period {} into {}",
            period.game_id, period.seq, next.seq
        );
        move_or_fail(conn, &pot, &next.pot(), left, "carry", &memo)?;
        resolution.carried = left;
    }
    Ok(Some(resolution))
}

/// A move the caller has already made sure is possible; a refusal is a broken invariant.
fn move_or_fail(
    conn: &crate::store::Connection,
    from: &str,
    to: &str,
    amount: i64,
    kind: &str,
    memo: &str,
) -> Result<i64, StoreError> {
    wallet::transfer(conn, from, to, amount, kind, memo)?
        .map_err(|e| StoreError::Invariant(format!("{kind} {from} -> {to}: {e}")))
}

/// The periods not yet resolved, oldest first: the simulation's schedule at start.
pub fn unresolved_periods(conn: &crate::store::Connection) -> Result<Vec<Period>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT game_id, seq, starts_at, ends_at FROM wager_periods
         WHERE resolved_at IS NULL ORDER BY game_id, seq",
    )?;
    let periods = stmt
        .query_map((), |r| {
            Ok(Period {
                game_id: r.get(0)?,
                seq: r.get(1)?,
                starts_at: r.get(2)?,
                ends_at: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(periods)
}

/// The highest period number each game has used.
pub fn last_seqs(conn: &crate::store::Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare("SELECT game_id, MAX(seq) FROM wager_periods GROUP BY game_id")?;
    let seqs = stmt
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(seqs)
}

/// Whether `user` has never wagered on `game_id`.
pub fn is_new_player(
    conn: &crate::store::Connection,
    user_id: Uuid,
    game_id: &str,
) -> Result<bool, StoreError> {
    let played: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM plays WHERE user_id = ?1 AND game_id = ?2 LIMIT 1",
            params![user_id.to_string(), game_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(played.is_none())
}

/// One line of a period's ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub position: i64,
    pub play_id: i64,
    pub user_id: String,
    pub display_name: String,
    pub score: i64,
    /// The play's wage.
    pub wage: i64,
    /// When the play finished (unix ms).
    pub finished_at: i64,
}

/// A period's ladder as GARP reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ladder {
    /// Plays opened in the period, finished or not.
    pub total_plays: i64,
    /// Coins in the pot (wages plus any carry).
    pub in_play: i64,
    /// Finished plays by position (best first), at most `limit`.
    pub standings: Vec<Standing>,
    /// The caller's most recent finished play, with its position.
    pub mine: Option<Standing>,
}

/// The ladder of `period` as `user` sees it: at most `limit` standings.
pub fn ladder(
    conn: &crate::store::Connection,
    period: &Period,
    user_id: Uuid,
    limit: usize,
) -> Result<Ladder, StoreError> {
    let total_plays: i64 = conn.query_row(
        "SELECT COUNT(*) FROM plays WHERE game_id = ?1 AND seq = ?2",
        params![period.game_id, period.seq],
        |r| r.get(0),
    )?;
    let in_play = wallet::balance(conn, &period.pot())?;
    let mut stmt = conn.prepare(
        "SELECT play_id, user_id, display_name, score, wage, finished_at FROM plays
         WHERE game_id = ?1 AND seq = ?2 AND finished_at IS NOT NULL
         ORDER BY score DESC, finished_at, play_id",
    )?;
    let me = user_id.to_string();
    let mut standings = Vec::new();
    let mut mine: Option<Standing> = None;
    let rows = stmt.query_map(params![period.game_id, period.seq], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    for (index, row) in rows.enumerate() {
        let (play_id, user, display_name, score, wage, finished_at) = row?;
        let standing = Standing {
            position: index as i64 + 1,
            play_id,
            user_id: user,
            display_name,
            score,
            wage,
            finished_at,
        };
        if standing.user_id == me && mine.as_ref().is_none_or(|m| m.finished_at < finished_at) {
            mine = Some(standing.clone());
        }
        if standings.len() < limit {
            standings.push(standing);
        }
    }
    Ok(Ladder {
        total_plays,
        in_play,
        standings,
        mine,
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
