//! Versioned schema migrations, embedded in the binary and applied in order at start.
//!
//! SQLite's `PRAGMA user_version` (PostgreSQL's `schema_version` table) records how many
//! have run. A migration is never edited once it has shipped; a change to the schema is a
//! new entry at the end. They are written in SQLite's words; [`postgres_schema`] gives
//! PostgreSQL the same tables with its names for the same types.

pub const MIGRATIONS: &[&str] = &[
    // 1: identity.
    r#"
    CREATE TABLE accounts (
        user_id        TEXT PRIMARY KEY,
        username       TEXT NOT NULL,
        username_key   TEXT NOT NULL UNIQUE,      -- lowercase, for case-insensitive lookup
        display_name   TEXT NOT NULL,
        roles          TEXT NOT NULL,             -- comma separated: player,developer,admin
        password_hash  TEXT NOT NULL,             -- argon2id PHC string of hex sha256(password)
        created_at     INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        session_id     TEXT PRIMARY KEY,
        user_id        TEXT NOT NULL REFERENCES accounts(user_id),
        scope          TEXT NOT NULL,             -- web, dev or lobby
        created_at     INTEGER NOT NULL,
        revoked_at     INTEGER,
        revoke_reason  TEXT                       -- logout, replaced, refresh_reuse
    );
    CREATE INDEX sessions_by_user ON sessions(user_id, scope);
    CREATE TABLE refresh_tokens (
        token_hash     BLOB PRIMARY KEY,          -- sha256 of the opaque token
        family_id      TEXT NOT NULL,
        session_id     TEXT NOT NULL REFERENCES sessions(session_id),
        user_id        TEXT NOT NULL REFERENCES accounts(user_id),
        issued_at      INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        used_at        INTEGER
    );
    CREATE INDEX refresh_by_family ON refresh_tokens(family_id);
    "#,
    // 2: the space game's pilots.
    r#"
    CREATE TABLE pilots (
        user_id        TEXT PRIMARY KEY REFERENCES accounts(user_id),
        system_id      TEXT NOT NULL,
        credits        INTEGER NOT NULL CHECK (credits >= 0),
        cargo          TEXT NOT NULL,             -- JSON [{commodity_id, qty}]
        hull           INTEGER NOT NULL,
        fuel           REAL NOT NULL,
        updated_at     INTEGER NOT NULL
    );
    "#,
    // 3: the game catalog: games, uploaded versions, reviews.
    r#"
    CREATE TABLE games (
        game_id        TEXT PRIMARY KEY,
        owner_id       TEXT REFERENCES accounts(user_id),   -- NULL for the built-in game
        name           TEXT NOT NULL,
        description    TEXT NOT NULL,
        game_type      TEXT NOT NULL,
        max_players    INTEGER NOT NULL CHECK (max_players > 0),
        status         TEXT NOT NULL CHECK (status IN ('ONLINE', 'OFFLINE')),
        api_key        TEXT NOT NULL UNIQUE,                -- the GARP game token
        api_secret     TEXT NOT NULL,                       -- the GARP HMAC secret
        builtin        INTEGER NOT NULL DEFAULT 0,
        created_at     INTEGER NOT NULL
    );
    CREATE TABLE versions (
        game_id        TEXT NOT NULL REFERENCES games(game_id),
        version        TEXT NOT NULL,
        size_bytes     INTEGER NOT NULL,
        sha256         TEXT NOT NULL,
        uploader       TEXT NOT NULL,
        uploaded_at    INTEGER NOT NULL,
        PRIMARY KEY (game_id, version)
    );
    CREATE TABLE reviews (
        game_id        TEXT NOT NULL REFERENCES games(game_id),
        user_id        TEXT NOT NULL REFERENCES accounts(user_id),
        player         TEXT NOT NULL,
        score          INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        comment        TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        PRIMARY KEY (game_id, user_id)
    );
    "#,
    // 4: direct messages waiting for offline users.
    r#"
    CREATE TABLE mailbox (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        username_key   TEXT NOT NULL,
        frame          TEXT NOT NULL,                  -- the encoded DirectMessage
        expires_at     INTEGER,                        -- unix ms; NULL = no ttl
        created_at     INTEGER NOT NULL
    );
    CREATE INDEX mailbox_by_user ON mailbox(username_key, id);
    "#,
    // 5: the wallet: a double-entry ledger with cached balances.
    r#"
    CREATE TABLE wallet_accounts (
        account_id     TEXT PRIMARY KEY,               -- mint, user:<uuid>, pot:<game>:<period>
        kind           TEXT NOT NULL CHECK (kind IN ('mint', 'user', 'pot')),
        balance        INTEGER NOT NULL DEFAULT 0,
        CHECK (kind = 'mint' OR balance >= 0)
    );
    CREATE TABLE wallet_moves (
        move_id        INTEGER PRIMARY KEY AUTOINCREMENT,
        kind           TEXT NOT NULL,                  -- mint, wage, payout, carry
        memo           TEXT NOT NULL,
        created_at     INTEGER NOT NULL
    );
    CREATE TABLE wallet_entries (
        move_id        INTEGER NOT NULL REFERENCES wallet_moves(move_id),
        account_id     TEXT NOT NULL REFERENCES wallet_accounts(account_id),
        amount         INTEGER NOT NULL                -- credit > 0, debit < 0
    );
    CREATE INDEX wallet_entries_by_account ON wallet_entries(account_id);
    CREATE INDEX wallet_entries_by_move ON wallet_entries(move_id);
    INSERT INTO wallet_accounts (account_id, kind, balance) VALUES ('mint', 'mint', 0);
    "#,
    // 6: game wagers (GARP): each game's terms, its periods and the plays in them.
    r#"
    ALTER TABLE games ADD COLUMN wage INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE games ADD COLUMN period_secs INTEGER NOT NULL DEFAULT 86400;
    ALTER TABLE games ADD COLUMN payout_shares TEXT NOT NULL DEFAULT '500,250,150,70,30';
    CREATE TABLE wager_periods (
        game_id        TEXT NOT NULL,
        seq            INTEGER NOT NULL,               -- 1, 2, ... per game
        starts_at      INTEGER NOT NULL,               -- unix ms
        ends_at        INTEGER NOT NULL,               -- unix ms
        resolved_at    INTEGER,                        -- set once, by the resolution
        PRIMARY KEY (game_id, seq)
    );
    CREATE TABLE plays (
        play_id        INTEGER PRIMARY KEY AUTOINCREMENT,
        game_id        TEXT NOT NULL,
        seq            INTEGER NOT NULL,               -- the period
        user_id        TEXT NOT NULL,
        display_name   TEXT NOT NULL,
        wage           INTEGER NOT NULL CHECK (wage > 0),
        balance_after  INTEGER NOT NULL,               -- for replaying the original answer
        move_id        INTEGER NOT NULL REFERENCES wallet_moves(move_id),
        session_id     TEXT NOT NULL,
        request_id     TEXT NOT NULL,
        score          INTEGER,
        finished_at    INTEGER,
        payout         INTEGER,
        created_at     INTEGER NOT NULL,
        UNIQUE (session_id, request_id),
        FOREIGN KEY (game_id, seq) REFERENCES wager_periods(game_id, seq)
    );
    CREATE INDEX plays_by_period ON plays(game_id, seq, score);
    CREATE INDEX plays_by_user ON plays(user_id, game_id);
    "#,
    // 7: the studio and platform API (RaOS): projects, assets, content, progress, friends.
    r#"
    CREATE TABLE projects (
        project_id     TEXT PRIMARY KEY,
        owner_id       TEXT NOT NULL REFERENCES accounts(user_id),
        name           TEXT NOT NULL,
        description    TEXT NOT NULL,
        document       TEXT NOT NULL,                  -- JSON: assets, scenes, scripts, ...
        created_at     INTEGER NOT NULL,               -- unix ms
        modified_at    INTEGER NOT NULL                -- unix ms; the concurrency check
    );
    CREATE INDEX projects_by_owner ON projects(owner_id, modified_at);
    CREATE TABLE assets (
        asset_id       TEXT PRIMARY KEY,
        owner_id       TEXT NOT NULL REFERENCES accounts(user_id),
        project_id     TEXT REFERENCES projects(project_id),
        name           TEXT NOT NULL,
        asset_type     TEXT NOT NULL,
        content_type   TEXT NOT NULL,
        size_bytes     INTEGER NOT NULL,
        sha256         TEXT NOT NULL,                  -- also the file name under assets/
        created_at     INTEGER NOT NULL
    );
    CREATE INDEX assets_by_project ON assets(project_id, created_at);
    CREATE TABLE content (
        asset_id       TEXT PRIMARY KEY,
        owner_id       TEXT NOT NULL REFERENCES accounts(user_id),
        asset_type     TEXT NOT NULL,
        title          TEXT NOT NULL,
        body           TEXT NOT NULL,
        metadata       TEXT NOT NULL,                  -- JSON object
        created_at     INTEGER NOT NULL,
        modified_at    INTEGER NOT NULL
    );
    CREATE INDEX content_by_type ON content(asset_type, created_at);
    CREATE TABLE player_stats (
        user_id        TEXT PRIMARY KEY REFERENCES accounts(user_id),
        trades         INTEGER NOT NULL DEFAULT 0,
        kills          INTEGER NOT NULL DEFAULT 0,
        deaths         INTEGER NOT NULL DEFAULT 0,
        docks          INTEGER NOT NULL DEFAULT 0,
        distance       REAL NOT NULL DEFAULT 0,
        credits        INTEGER NOT NULL DEFAULT 0,     -- the most ever held
        region         TEXT
    );
    CREATE TABLE achievements (
        user_id        TEXT NOT NULL REFERENCES accounts(user_id),
        achievement_id TEXT NOT NULL,
        unlocked_at    INTEGER NOT NULL,
        PRIMARY KEY (user_id, achievement_id)
    );
    CREATE TABLE friends (
        user_id        TEXT NOT NULL REFERENCES accounts(user_id),
        friend_id      TEXT NOT NULL REFERENCES accounts(user_id),
        created_at     INTEGER NOT NULL,
        PRIMARY KEY (user_id, friend_id)
    );
    "#,
    // 8: the schema versions of plugins' own tables (see `Store::migrate_namespace`).
    r#"
    CREATE TABLE mod_schema (
        namespace      TEXT PRIMARY KEY,
        version        INTEGER NOT NULL
    );
    "#,
    // 9: an operator can disable an account (it cannot log in; its sessions end).
    r#"
    ALTER TABLE accounts ADD COLUMN disabled_at INTEGER;
    "#,
    // 10: secrets every node of a cluster must share (on PostgreSQL, the token signing key).
    r#"
    CREATE TABLE server_secrets (
        name           TEXT PRIMARY KEY,
        secret         BLOB NOT NULL,
        created_at     INTEGER NOT NULL
    );
    "#,
    // 11: scripts: a version's room script, what scripts store, and the rooms they ended.
    r#"
    ALTER TABLE versions ADD COLUMN room_script TEXT;
    CREATE TABLE script_values (
        space          TEXT NOT NULL,                  -- "mod:<name>" or "game:<game_id>"
        key            TEXT NOT NULL,
        value          TEXT NOT NULL,                  -- JSON
        updated_at     INTEGER NOT NULL,
        PRIMARY KEY (space, key)
    );
    CREATE TABLE room_results (
        room_id        TEXT NOT NULL,
        game_id        TEXT NOT NULL,
        version        TEXT NOT NULL,
        user_id        TEXT NOT NULL,
        display_name   TEXT NOT NULL,
        score          INTEGER NOT NULL,
        play_id        INTEGER,                        -- the GARP play it finished, if any
        ended_at       INTEGER NOT NULL,
        PRIMARY KEY (room_id, user_id)
    );
    CREATE INDEX room_results_by_game ON room_results(game_id, user_id, score);
    "#,
    // 12: ownership across nodes. A lease makes one node the owner of a star system until
    // `expires_at` (Unix ms by the database's clock); its epoch only grows, and every write
    // on behalf of the system carries it. A pilot is checked out to one node at a time the
    // same way: writes to `pilots` are conditional on the writer's checkout epoch. Each
    // epoch ever granted is kept, for audits and the fault tests' checker.
    r#"
    CREATE TABLE leases (
        kind           TEXT NOT NULL,                  -- system
        id             TEXT NOT NULL,
        owner          TEXT NOT NULL,                  -- node id
        incarnation    TEXT NOT NULL,                  -- the owner's process
        host           TEXT NOT NULL,                  -- where the owner serves /game
        port           INTEGER NOT NULL,
        epoch          INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE TABLE cluster_nodes (
        node_id        TEXT PRIMARY KEY,
        pinned         TEXT NOT NULL,                  -- JSON list of system ids
        expires_at     INTEGER NOT NULL                -- Unix ms, by the database's clock
    );
    CREATE TABLE lease_history (
        kind           TEXT NOT NULL,
        id             TEXT NOT NULL,
        epoch          INTEGER NOT NULL,
        owner          TEXT NOT NULL,
        taken_at       INTEGER NOT NULL,               -- Unix ms
        PRIMARY KEY (kind, id, epoch)
    );
    CREATE TABLE pilot_checkouts (
        user_id        TEXT PRIMARY KEY REFERENCES accounts(user_id),
        node           TEXT NOT NULL,
        epoch          INTEGER NOT NULL,
        taken_at       INTEGER NOT NULL                -- Unix ms
    );
    CREATE TABLE pilot_checkout_history (
        user_id        TEXT NOT NULL,
        epoch          INTEGER NOT NULL,
        node           TEXT NOT NULL,
        taken_at       INTEGER NOT NULL,
        PRIMARY KEY (user_id, epoch)
    );
    "#,
];

/// A migration in PostgreSQL's words: 64-bit integers (SQLite's `INTEGER` is 64-bit),
/// `DOUBLE PRECISION` for `REAL`, `BYTEA` for `BLOB`, and an identity column for
/// `AUTOINCREMENT`.
pub fn postgres_schema(sql: &str) -> String {
    let sql = sql.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    );
    let mut out = String::with_capacity(sql.len() + 64);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "INTEGER" => "BIGINT",
            "REAL" => "DOUBLE PRECISION",
            "BLOB" => "BYTEA",
            other => other,
        });
        word.clear();
    };
    for c in sql.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_gets_its_own_type_names() {
        assert_eq!(
            postgres_schema("id INTEGER PRIMARY KEY AUTOINCREMENT, x REAL, b BLOB, n INTEGER_X"),
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, x DOUBLE PRECISION, b BYTEA, n INTEGER_X"
        );
    }
}
