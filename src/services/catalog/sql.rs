//! The catalog's rows: inserting, seeding the built-in game, loading at start.

use crate::params;
use uuid::Uuid;

use crate::store::{Store, StoreError};

use super::*;

pub(super) fn insert_game(conn: &crate::store::Connection, game: &Game) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO games (game_id, owner_id, name, description, game_type, max_players,
                            status, api_key, api_secret, builtin, created_at,
                            wage, period_secs, payout_shares)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            game.game_id,
            game.owner.map(|o| o.to_string()),
            game.name,
            game.description,
            game.game_type,
            game.max_players,
            game.status.as_str(),
            game.api_key,
            game.api_secret,
            game.builtin,
            game.created_at,
            game.wager.wage,
            game.wager.period_secs,
            game.wager.shares_column()
        ],
    )?;
    Ok(())
}

pub(super) fn insert_version(
    conn: &crate::store::Connection,
    game_id: &str,
    v: &Version,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO versions (game_id, version, size_bytes, sha256, uploader, uploaded_at,
                               room_script)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        params![
            game_id,
            v.version,
            v.size_bytes as i64,
            v.sha256,
            v.uploader,
            v.uploaded_at,
            v.room
                .as_ref()
                .and_then(|r| serde_json::to_string(&r.source).ok())
        ],
    )?;
    Ok(())
}

pub(super) fn seed_builtin(store: &Store) -> anyhow::Result<()> {
    let exists = || {
        store.read_now(|conn| {
            Ok(conn
                .query_row(
                    "SELECT 1 FROM games WHERE game_id = ?1",
                    [SPACE_GAME_ID],
                    |_| Ok(()),
                )
                .is_ok())
        })
    };
    if exists()? {
        return Ok(());
    }
    let game = Game {
        game_id: SPACE_GAME_ID.into(),
        owner: None,
        name: "Ecliptic".into(),
        description: "Fly, trade and fight across star systems, simulated on the server.".into(),
        game_type: "multi".into(),
        max_players: 64,
        status: GameStatus::Online,
        api_key: grouped_token(),
        api_secret: new_api_secret(),
        builtin: true,
        created_at: now_ms(),
        wager: WagerTerms::default(),
        versions: Vec::new(),
        reviews: Vec::new(),
    };
    let seeded = block_on_write(store, move |conn| insert_game(conn, &game));
    // Nodes of a cluster starting together race to seed it; one wins, and that is enough.
    if seeded.is_err() && exists()? {
        return Ok(());
    }
    seeded
}

/// Runs a write from start-up code (no runtime needed) and waits for its commit.
pub(super) fn block_on_write(
    store: &Store,
    op: impl FnOnce(&crate::store::Connection) -> Result<(), StoreError> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    store.submit(op, move |result| {
        let _ = tx.send(result);
    });
    rx.recv()
        .map_err(|_| anyhow::anyhow!("the store closed"))?
        .map_err(|e| anyhow::anyhow!("{e}"))
}

pub(super) fn load_games(conn: &crate::store::Connection) -> Result<Vec<Game>, StoreError> {
    let mut games = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT game_id, owner_id, name, description, game_type, max_players, status, api_key,
                api_secret, builtin, created_at, wage, period_secs, payout_shares
         FROM games ORDER BY created_at, game_id",
    )?;
    let rows = stmt.query_map((), |r| {
        Ok(Game {
            game_id: r.get(0)?,
            owner: r
                .get::<_, Option<String>>(1)?
                .and_then(|s| Uuid::parse_str(&s).ok()),
            name: r.get(2)?,
            description: r.get(3)?,
            game_type: r.get(4)?,
            max_players: r.get(5)?,
            status: GameStatus::parse(&r.get::<_, String>(6)?).unwrap_or(GameStatus::Offline),
            api_key: r.get(7)?,
            api_secret: r.get(8)?,
            builtin: r.get(9)?,
            created_at: r.get(10)?,
            wager: WagerTerms::from_columns(r.get(11)?, r.get(12)?, &r.get::<_, String>(13)?),
            versions: Vec::new(),
            reviews: Vec::new(),
        })
    })?;
    for game in rows {
        games.push(game?);
    }
    let mut stmt = conn.prepare(
        "SELECT game_id, version, size_bytes, sha256, uploader, uploaded_at, room_script
         FROM versions ORDER BY uploaded_at, version",
    )?;
    let rows = stmt.query_map((), |r| {
        let game_id = r.get::<_, String>(0)?;
        let version: String = r.get(1)?;
        let room = r
            .get::<_, Option<String>>(6)?
            .and_then(|text| room_script(&game_id, &version, &text));
        Ok((
            game_id,
            Version {
                version,
                size_bytes: r.get::<_, i64>(2)? as u64,
                sha256: r.get(3)?,
                uploader: r.get(4)?,
                uploaded_at: r.get(5)?,
                room,
            },
        ))
    })?;
    for row in rows {
        let (game_id, version) = row?;
        if let Some(game) = games.iter_mut().find(|g| g.game_id == game_id) {
            game.versions.push(version);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT game_id, user_id, player, score, comment, created_at FROM reviews
         ORDER BY created_at",
    )?;
    let rows = stmt.query_map((), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            Review {
                user_id: Uuid::nil(),
                player: r.get(2)?,
                score: r.get(3)?,
                comment: r.get(4)?,
                created_at: r.get(5)?,
            },
        ))
    })?;
    for row in rows {
        let (game_id, user_id, mut review) = row?;
        review.user_id = Uuid::parse_str(&user_id).unwrap_or_default();
        if let Some(game) = games.iter_mut().find(|g| g.game_id == game_id) {
            game.reviews.push(review);
        }
    }
    Ok(games)
}

/// A stored room script, compiled; logged and left out if it no longer compiles.
fn room_script(
    game_id: &str,
    version: &str,
    text: &str,
) -> Option<std::sync::Arc<crate::scripting::package::RoomScript>> {
    let compiled = serde_json::from_str::<crate::scripting::package::RoomSource>(text)
        .map_err(|e| e.to_string())
        .and_then(|source| source.compile());
    match compiled {
        Ok(script) => Some(script),
        Err(e) => {
            tracing::error!(game = game_id, version, "the room script cannot run: {e}");
            None
        }
    }
}
