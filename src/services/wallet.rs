//! The wallet: coins as integers in a double-entry ledger.
//!
//! Every move is one `wallet_moves` row and two `wallet_entries` (a debit and a credit
//! that sum to zero); balances are cached on `wallet_accounts`. Coins enter only through
//! the `mint` account (an operator's grant), the one account allowed below zero, so the
//! invariant is: every balance together sums to zero, i.e. users' balances plus open pots
//! equal the total minted. A debit is a conditional update (`balance >= amount`) in the
//! same transaction as its credit and entries, and a CHECK constraint refuses a negative
//! balance outright; a move is durable before its caller hears of it (group commit).

use crate::params;
use crate::store::OptionalExtension;
use serde::Serialize;
use uuid::Uuid;

use crate::services::DomainError;
use crate::store::{Store, StoreError};

pub const MINT: &str = "mint";

/// The wallet account of a user.
pub fn user_account(user_id: Uuid) -> String {
    format!("user:{user_id}")
}

/// The pot of one game's period.
pub fn pot_account(game_id: &str, period: i64) -> String {
    format!("pot:{game_id}:{period}")
}

fn kind_of(account: &str) -> Option<&'static str> {
    if account == MINT {
        Some("mint")
    } else if account.starts_with("user:") {
        Some("user")
    } else if account.starts_with("pot:") {
        Some("pot")
    } else {
        None
    }
}

/// Moves `amount` from `from` to `to` inside the caller's transaction. The outer `Err` is
/// a storage failure; the inner one a refusal (bad amount, not enough coins), in which
/// case nothing was written.
pub fn transfer(
    conn: &crate::store::Connection,
    from: &str,
    to: &str,
    amount: i64,
    kind: &str,
    memo: &str,
) -> Result<Result<i64, DomainError>, StoreError> {
    if amount <= 0 {
        return Ok(Err(DomainError::InvalidInput(
            "amount must be positive".into(),
        )));
    }
    let (Some(from_kind), Some(to_kind)) = (kind_of(from), kind_of(to)) else {
        return Ok(Err(DomainError::InvalidInput(
            "unknown wallet account".into(),
        )));
    };
    if from == to || to_kind == "mint" {
        return Ok(Err(DomainError::InvalidInput("not a valid move".into())));
    }
    // SQLite turns an integer that overflows into a REAL, which would break the ledger for
    // good: refuse, before anything is written, a move that takes any balance (and so the
    // mint's, which is minus the total minted) past what an i64 holds.
    let overflows = balance(conn, from)?.checked_sub(amount).is_none()
        || balance(conn, to)?.checked_add(amount).is_none();
    if overflows {
        return Ok(Err(DomainError::InvalidInput(format!(
            "{amount} coins would take a balance past the largest amount the ledger holds"
        ))));
    }
    for (account, kind) in [(from, from_kind), (to, to_kind)] {
        conn.execute(
            "INSERT INTO wallet_accounts (account_id, kind, balance) VALUES (?1, ?2, 0)
             ON CONFLICT DO NOTHING",
            params![account, kind],
        )?;
    }
    let debited = if from_kind == "mint" {
        conn.execute(
            "UPDATE wallet_accounts SET balance = balance - ?2 WHERE account_id = ?1",
            params![from, amount],
        )?
    } else {
        conn.execute(
            "UPDATE wallet_accounts SET balance = balance - ?2
             WHERE account_id = ?1 AND balance >= ?2",
            params![from, amount],
        )?
    };
    if debited == 0 {
        return Ok(Err(DomainError::BadState("not enough coins".into())));
    }
    conn.execute(
        "UPDATE wallet_accounts SET balance = balance + ?2 WHERE account_id = ?1",
        params![to, amount],
    )?;
    let move_id: i64 = conn.query_row(
        "INSERT INTO wallet_moves (kind, memo, created_at) VALUES (?1, ?2, ?3) RETURNING move_id",
        params![kind, memo, chrono::Utc::now().timestamp_millis()],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO wallet_entries (move_id, account_id, amount) VALUES (?1, ?2, ?3), (?1, ?4, ?5)",
        params![move_id, from, -amount, to, amount],
    )?;
    Ok(Ok(move_id))
}

/// A balance (0 for an account that never held anything).
pub fn balance(conn: &crate::store::Connection, account: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT balance FROM wallet_accounts WHERE account_id = ?1",
            [account],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Mints `amount` into a user's account (an operator's grant); returns the new balance.
pub async fn grant(store: &Store, user_id: Uuid, amount: i64) -> Result<i64, DomainError> {
    let account = user_account(user_id);
    store
        .write(move |conn| {
            let moved = transfer(conn, MINT, &account, amount, "mint", "operator grant")?;
            Ok(moved.and_then(|_| Ok(balance(conn, &account)?)))
        })
        .await?
}

/// What `ecliptic wallet check` reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Audit {
    pub total_minted: i64,
    pub users: i64,
    pub pots: i64,
    pub moves: i64,
    /// Everything that does not hold; empty when the ledger is sound.
    pub violations: Vec<String>,
}

impl Audit {
    pub fn holds(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks the ledger: each move sums to zero and has two entries, each cached balance
/// equals its entries, no user or pot is negative, and users plus pots equal the minted.
pub fn audit(conn: &crate::store::Connection) -> Result<Audit, StoreError> {
    let mut violations = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT move_id, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM wallet_entries GROUP BY move_id
         HAVING COUNT(*) != 2 OR SUM(amount) != 0",
    )?;
    for row in stmt.query_map((), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (id, count, sum) = row?;
        violations.push(format!("move {id} has {count} entries summing to {sum}"));
    }
    let orphan_moves: i64 = conn.query_row(
        "SELECT COUNT(*) FROM wallet_moves m
         WHERE NOT EXISTS (SELECT 1 FROM wallet_entries e WHERE e.move_id = m.move_id)",
        (),
        |r| r.get(0),
    )?;
    if orphan_moves > 0 {
        violations.push(format!("{orphan_moves} moves without entries"));
    }
    let mut stmt = conn.prepare(
        "SELECT a.account_id, a.kind, a.balance, CAST(COALESCE(SUM(e.amount), 0) AS BIGINT)
         FROM wallet_accounts a LEFT JOIN wallet_entries e ON e.account_id = a.account_id
         GROUP BY a.account_id",
    )?;
    let (mut minted, mut users, mut pots) = (0i64, 0i64, 0i64);
    for row in stmt.query_map((), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (account, kind, cached, derived) = row?;
        if cached != derived {
            violations.push(format!(
                "{account}: cached balance {cached}, entries say {derived}"
            ));
        }
        match kind.as_str() {
            "mint" => minted = -derived,
            "user" => users += derived,
            _ => pots += derived,
        }
        if kind != "mint" && derived < 0 {
            violations.push(format!("{account} is negative ({derived})"));
        }
    }
    if users + pots != minted {
        violations.push(format!(
            "users ({users}) + pots ({pots}) != minted ({minted})"
        ));
    }
    let moves: i64 = conn.query_row("SELECT COUNT(*) FROM wallet_moves", (), |r| r.get(0))?;
    Ok(Audit {
        total_minted: minted,
        users,
        pots,
        moves,
        violations,
    })
}
