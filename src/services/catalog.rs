//! The game catalog: games, their uploaded versions and their reviews. One catalog serves
//! every protocol: the developer server creates games, the lobby lists them, RaOS lists and
//! launches them, and a game's API key opens GARP sessions.
//!
//! The catalog is held in memory (it is small and read on every lobby request) as an ECS
//! resource of the simulation, loaded from SQLite at start. A change is applied in memory
//! and persisted through the store's writer with the reply attached. The built-in space game
//! is seeded at first start. Uploaded builds live in `<data>/uploadedGame/<game_id>/
//! <version>/` beside a `manifest.json`; at start, a version directory whose publication was
//! cut short by a crash (renamed into place, row not yet committed) is adopted from its
//! manifest, so a version is either wholly there or not at all.

use std::path::{Path, PathBuf};

use bevy_ecs::prelude::Resource;
use rusqlite::params;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::services::DomainError;
use crate::store::{Store, StoreError};

/// The id of the built-in space game.
pub const SPACE_GAME_ID: &str = "ecliptic-space";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GameStatus {
    #[serde(rename = "ONLINE")]
    Online,
    #[serde(rename = "OFFLINE")]
    Offline,
}

impl GameStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GameStatus::Online => "ONLINE",
            GameStatus::Offline => "OFFLINE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ONLINE" => Some(GameStatus::Online),
            "OFFLINE" => Some(GameStatus::Offline),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub uploader: String,
    /// Unix milliseconds.
    pub uploaded_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub user_id: Uuid,
    pub player: String,
    pub score: u8,
    pub comment: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Game {
    pub game_id: String,
    pub owner: Option<Uuid>,
    pub name: String,
    pub description: String,
    pub game_type: String,
    pub max_players: u32,
    pub status: GameStatus,
    pub api_key: String,
    pub api_secret: String,
    pub builtin: bool,
    pub created_at: i64,
    /// The game's wager rules (GARP).
    pub wager: WagerTerms,
    /// In upload order; the last is the latest.
    pub versions: Vec<Version>,
    pub reviews: Vec<Review>,
}

impl Game {
    /// Whether `user` may download this game's builds: anyone while it is online, only its
    /// developer while it is offline.
    pub fn downloadable_by(&self, user: Uuid) -> Result<(), DomainError> {
        if self.status == GameStatus::Offline && self.owner != Some(user) {
            return Err(DomainError::Forbidden(format!(
                "{} is offline; only its developer may download it",
                self.name
            )));
        }
        Ok(())
    }

    pub fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }

    /// The version players get: the latest upload, or the server's own version for the
    /// built-in game (which is played on the server and has nothing to download).
    pub fn latest_version(&self) -> Option<String> {
        match self.latest() {
            Some(v) => Some(v.version.clone()),
            None if self.builtin => Some(env!("CARGO_PKG_VERSION").to_owned()),
            None => None,
        }
    }

    pub fn avg_score(&self) -> Option<f64> {
        if self.reviews.is_empty() {
            return None;
        }
        let sum: u32 = self.reviews.iter().map(|r| u32::from(r.score)).sum();
        Some((f64::from(sum) / self.reviews.len() as f64 * 100.0).round() / 100.0)
    }

    pub fn version(&self, version: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// What a developer may set on a game.
#[derive(Debug, Clone, Default)]
pub struct MetaUpdate {
    pub description: Option<String>,
    pub max_players: Option<u32>,
    pub game_type: Option<String>,
    /// The wage GARP suggests to players (a positive whole number of coins).
    pub wage: Option<i64>,
    /// Period length in hours; fractions allowed down to one second.
    pub period_hours: Option<f64>,
    /// Percent of the pot paid to ladder positions 1-5 (one decimal), summing to <= 100.
    pub payout_shares: Option<Vec<f64>>,
}

/// How a game's wagers work: the suggested wage, how long a period runs before its pot
/// resolves, and the shares of the pot (in tenths of a percent, as GARP reports them) paid
/// to ladder positions 1-5. What the shares leave is carried into the next period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WagerTerms {
    pub wage: i64,
    pub period_secs: i64,
    pub shares_permille: [i64; 5],
}

impl Default for WagerTerms {
    fn default() -> Self {
        Self {
            wage: 1,
            period_secs: 24 * 3600,
            shares_permille: [500, 250, 150, 70, 30],
        }
    }
}

impl WagerTerms {
    const LONGEST_PERIOD_SECS: i64 = 366 * 24 * 3600;

    /// The terms with `update`'s wager fields applied, or why they are invalid.
    fn updated(mut self, update: &MetaUpdate) -> Result<Self, DomainError> {
        if let Some(wage) = update.wage {
            if wage < 1 {
                return Err(DomainError::InvalidInput(
                    "wage must be a positive whole number".into(),
                ));
            }
            self.wage = wage;
        }
        if let Some(hours) = update.period_hours {
            let secs = (hours * 3600.0).round();
            if !secs.is_finite() || secs < 1.0 || secs > Self::LONGEST_PERIOD_SECS as f64 {
                return Err(DomainError::InvalidInput(
                    "period_hours must be between 1/3600 (one second) and 8784 (a year)".into(),
                ));
            }
            self.period_secs = secs as i64;
        }
        if let Some(shares) = &update.payout_shares {
            let permille: Vec<f64> = shares.iter().map(|p| (p * 10.0).round()).collect();
            let valid = permille.len() == 5
                && permille.iter().all(|p| p.is_finite() && *p >= 0.0)
                && permille.iter().sum::<f64>() <= 1000.0;
            if !valid {
                return Err(DomainError::InvalidInput(
                    "payout_shares must be 5 percentages (positions 1-5) summing to at most 100"
                        .into(),
                ));
            }
            for (slot, p) in self.shares_permille.iter_mut().zip(permille) {
                *slot = p as i64;
            }
        }
        Ok(self)
    }

    fn shares_column(&self) -> String {
        self.shares_permille
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn from_columns(wage: i64, period_secs: i64, shares: &str) -> Self {
        let mut terms = Self {
            wage,
            period_secs,
            ..Self::default()
        };
        let parsed: Vec<i64> = shares.split(',').filter_map(|p| p.parse().ok()).collect();
        if let Ok(shares) = <[i64; 5]>::try_from(parsed) {
            terms.shares_permille = shares;
        }
        terms
    }
}

/// A new game's details.
#[derive(Debug, Clone)]
pub struct NewGame {
    pub name: String,
    pub description: String,
    pub game_type: String,
    pub max_players: i64,
}

/// A change's write, to run in the store's transaction.
pub type Persist = Box<dyn FnOnce(&rusqlite::Connection) -> Result<(), StoreError> + Send>;

/// The catalog, as the simulation holds it.
#[derive(Resource, Debug, Default)]
pub struct Catalog {
    games: Vec<Game>,
    /// Games with a change being saved; another change to one of them waits.
    changing: std::collections::HashSet<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Game ids are server-made; anything else is refused before it can name a path.
pub fn validate_game_id(id: &str) -> Result<(), DomainError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidInput(format!(
            "invalid game_id {id:?}: letters, digits, - and _ only"
        )))
    }
}

/// Version strings: 1-64 of letters, digits and `. _ + -`, not starting with a dot, so no
/// `..`, separators, NUL or absolute paths ever reach the file system.
pub fn validate_version(version: &str) -> Result<(), DomainError> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && !version.contains("..")
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidInput(format!(
            "invalid version {version:?}: 1-64 letters, digits and . _ + - (no '..', no slashes)"
        )))
    }
}

/// `<data>/uploadedGame/<game_id>/<version>`; both parts must be validated first.
pub fn version_dir(data_dir: &Path, game_id: &str, version: &str) -> PathBuf {
    data_dir.join("uploadedGame").join(game_id).join(version)
}

/// The build file inside a version directory.
pub const BUILD_FILE: &str = "build.bin";
pub const MANIFEST_FILE: &str = "manifest.json";

/// `manifest.json` of a published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub game_id: String,
    pub version: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// RFC 3339.
    pub uploaded_at: String,
    pub uploader: String,
}

/// A random token in the shape GARP clients know: five groups of five letters and digits
/// (game tokens, GARP session ids).
pub fn grouped_token() -> String {
    (0..5)
        .map(|_| alphanumeric(5))
        .collect::<Vec<_>>()
        .join("-")
}

/// `len` random letters and digits.
pub fn alphanumeric(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn new_api_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Catalog {
    /// Loads the catalog, seeding the built-in game and adopting versions whose
    /// publication a crash interrupted. Runs at start, before the simulation.
    pub fn load(store: &Store, data_dir: &Path) -> anyhow::Result<Self> {
        seed_builtin(store)?;
        adopt_orphan_versions(store, data_dir)?;
        let games = store.read_now(load_games)?;
        Ok(Self {
            games,
            changing: Default::default(),
        })
    }

    pub fn games(&self) -> &[Game] {
        &self.games
    }

    /// Whether a change to `game_id` is being saved.
    pub fn is_changing(&self, game_id: &str) -> bool {
        self.changing.contains(game_id)
    }

    /// Puts `before` back in place of `game_id` as a change left it (or removes the game if
    /// the change created it), marks the game as changing, and returns the changed game.
    /// The change is applied with [`Catalog::settle`] once it is saved.
    pub fn stage(&mut self, game_id: &str, before: Option<Game>) -> Option<Game> {
        self.changing.insert(game_id.to_owned());
        let index = self.games.iter().position(|g| g.game_id == game_id)?;
        match before {
            Some(before) => Some(std::mem::replace(&mut self.games[index], before)),
            None => Some(self.games.remove(index)),
        }
    }

    /// Ends a staged change: `after` takes the game's place if the change was saved.
    pub fn settle(&mut self, game_id: &str, after: Option<Game>) {
        self.changing.remove(game_id);
        let Some(after) = after else {
            return;
        };
        match self.games.iter().position(|g| g.game_id == game_id) {
            Some(index) => self.games[index] = after,
            None => self.games.push(after),
        }
    }

    pub fn get(&self, game_id: &str) -> Result<&Game, DomainError> {
        self.games
            .iter()
            .find(|g| g.game_id == game_id)
            .ok_or_else(|| DomainError::NotFound(format!("no game {game_id:?}")))
    }

    fn get_mut(&mut self, game_id: &str) -> Result<&mut Game, DomainError> {
        self.games
            .iter_mut()
            .find(|g| g.game_id == game_id)
            .ok_or_else(|| DomainError::NotFound(format!("no game {game_id:?}")))
    }

    pub fn by_api_key(&self, api_key: &str) -> Option<&Game> {
        self.games.iter().find(|g| g.api_key == api_key)
    }

    /// A game `owner` may change: 103 if unknown, 102 if someone else's.
    pub fn owned(&self, game_id: &str, owner: Uuid) -> Result<&Game, DomainError> {
        let game = self.get(game_id)?;
        if game.owner == Some(owner) {
            Ok(game)
        } else {
            Err(DomainError::Forbidden(format!(
                "game {game_id} belongs to another developer"
            )))
        }
    }

    pub fn create_game(
        &mut self,
        owner: Uuid,
        new: NewGame,
    ) -> Result<(Game, Persist), DomainError> {
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(DomainError::InvalidInput(
                "name must be 1 to 100 characters".into(),
            ));
        }
        if new.description.chars().count() > 4000 {
            return Err(DomainError::InvalidInput(
                "description must be at most 4000 characters".into(),
            ));
        }
        let max_players = check_max_players(new.max_players)?;
        check_game_type(&new.game_type)?;
        let game = Game {
            game_id: Uuid::new_v4().to_string(),
            owner: Some(owner),
            name,
            description: new.description,
            game_type: new.game_type,
            max_players,
            status: GameStatus::Online,
            api_key: grouped_token(),
            api_secret: new_api_secret(),
            builtin: false,
            created_at: now_ms(),
            wager: WagerTerms::default(),
            versions: Vec::new(),
            reviews: Vec::new(),
        };
        self.games.push(game.clone());
        let row = game.clone();
        Ok((
            game,
            Box::new(move |conn: &rusqlite::Connection| insert_game(conn, &row)),
        ))
    }

    pub fn update_meta(
        &mut self,
        owner: Uuid,
        game_id: &str,
        update: MetaUpdate,
    ) -> Result<Persist, DomainError> {
        self.owned(game_id, owner)?;
        if let Some(d) = &update.description
            && d.chars().count() > 4000
        {
            return Err(DomainError::InvalidInput(
                "description must be at most 4000 characters".into(),
            ));
        }
        if let Some(t) = &update.game_type {
            check_game_type(t)?;
        }
        if let Some(m) = update.max_players {
            check_max_players(i64::from(m))?;
        }
        let wager = self.get(game_id)?.wager.updated(&update)?;
        let game = self.get_mut(game_id)?;
        game.wager = wager;
        if let Some(d) = update.description {
            game.description = d;
        }
        if let Some(t) = update.game_type {
            game.game_type = t;
        }
        if let Some(m) = update.max_players {
            game.max_players = m;
        }
        let (id, description, game_type, max_players) = (
            game.game_id.clone(),
            game.description.clone(),
            game.game_type.clone(),
            game.max_players,
        );
        Ok(Box::new(move |conn: &rusqlite::Connection| {
            conn.execute(
                "UPDATE games SET description = ?2, game_type = ?3, max_players = ?4,
                                  wage = ?5, period_secs = ?6, payout_shares = ?7
                 WHERE game_id = ?1",
                params![
                    id,
                    description,
                    game_type,
                    max_players,
                    wager.wage,
                    wager.period_secs,
                    wager.shares_column()
                ],
            )?;
            Ok(())
        }))
    }

    pub fn set_status(
        &mut self,
        owner: Uuid,
        game_id: &str,
        status: GameStatus,
    ) -> Result<Persist, DomainError> {
        self.owned(game_id, owner)?;
        let game = self.get_mut(game_id)?;
        game.status = status;
        let id = game.game_id.clone();
        Ok(Box::new(move |conn: &rusqlite::Connection| {
            conn.execute(
                "UPDATE games SET status = ?2 WHERE game_id = ?1",
                params![id, status.as_str()],
            )?;
            Ok(())
        }))
    }

    /// Checks that `owner` may upload `version` of `game_id` (it must not exist yet).
    pub fn check_upload(
        &self,
        owner: Uuid,
        game_id: &str,
        version: &str,
    ) -> Result<(), DomainError> {
        validate_game_id(game_id)?;
        validate_version(version)?;
        let game = self.owned(game_id, owner)?;
        if game.version(version).is_some() {
            return Err(DomainError::Conflict(format!(
                "version {version} of {game_id} already exists"
            )));
        }
        Ok(())
    }

    /// Records a published version (its files are already in place).
    pub fn add_version(
        &mut self,
        owner: Uuid,
        game_id: &str,
        version: Version,
    ) -> Result<Persist, DomainError> {
        self.check_upload(owner, game_id, &version.version)?;
        let game = self.get_mut(game_id)?;
        game.versions.push(version.clone());
        let id = game.game_id.clone();
        Ok(Box::new(move |conn: &rusqlite::Connection| {
            insert_version(conn, &id, &version)
        }))
    }

    /// Adds or replaces `user`'s review of a game.
    pub fn review(&mut self, game_id: &str, review: Review) -> Result<Persist, DomainError> {
        if !(1..=5).contains(&review.score) {
            return Err(DomainError::InvalidInput("score must be 1 to 5".into()));
        }
        if review.comment.chars().count() > 2000 {
            return Err(DomainError::InvalidInput(
                "comment must be at most 2000 characters".into(),
            ));
        }
        let game = self.get_mut(game_id)?;
        game.reviews.retain(|r| r.user_id != review.user_id);
        game.reviews.push(review.clone());
        let id = game.game_id.clone();
        Ok(Box::new(move |conn: &rusqlite::Connection| {
            conn.execute(
                "INSERT INTO reviews (game_id, user_id, player, score, comment, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(game_id, user_id) DO UPDATE SET player = ?3, score = ?4,
                     comment = ?5, created_at = ?6",
                params![
                    id,
                    review.user_id.to_string(),
                    review.player,
                    review.score,
                    review.comment,
                    review.created_at
                ],
            )?;
            Ok(())
        }))
    }
}

fn check_max_players(max_players: i64) -> Result<u32, DomainError> {
    if (1..=1000).contains(&max_players) {
        Ok(max_players as u32)
    } else {
        Err(DomainError::InvalidInput(
            "max_players must be 1 to 1000".into(),
        ))
    }
}

fn check_game_type(game_type: &str) -> Result<(), DomainError> {
    let ok = (1..=20).contains(&game_type.len())
        && game_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidInput(
            "game_type must be a lowercase word such as cli, gui or multi".into(),
        ))
    }
}

fn insert_game(conn: &rusqlite::Connection, game: &Game) -> Result<(), StoreError> {
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

fn insert_version(
    conn: &rusqlite::Connection,
    game_id: &str,
    v: &Version,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO versions (game_id, version, size_bytes, sha256, uploader,
                                         uploaded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            game_id,
            v.version,
            v.size_bytes as i64,
            v.sha256,
            v.uploader,
            v.uploaded_at
        ],
    )?;
    Ok(())
}

fn seed_builtin(store: &Store) -> anyhow::Result<()> {
    let exists = store.read_now(|conn| {
        Ok(conn
            .query_row(
                "SELECT 1 FROM games WHERE game_id = ?1",
                [SPACE_GAME_ID],
                |_| Ok(()),
            )
            .is_ok())
    })?;
    if exists {
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
    block_on_write(store, move |conn| insert_game(conn, &game))
}

/// Runs a write from start-up code (no runtime needed) and waits for its commit.
fn block_on_write(
    store: &Store,
    op: impl FnOnce(&rusqlite::Connection) -> Result<(), StoreError> + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    store.submit(op, move |result| {
        let _ = tx.send(result);
    });
    rx.recv()
        .map_err(|_| anyhow::anyhow!("the store closed"))?
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Inserts the rows of version directories that are on disk but not in the database.
fn adopt_orphan_versions(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    // Half-written uploads never survive a restart.
    let staging = data_dir.join("staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let root = data_dir.join("uploadedGame");
    let Ok(games) = std::fs::read_dir(&root) else {
        return Ok(());
    };
    for game_dir in games.flatten() {
        let Ok(versions) = std::fs::read_dir(game_dir.path()) else {
            continue;
        };
        for version_dir in versions.flatten() {
            let manifest_path = version_dir.path().join(MANIFEST_FILE);
            let Ok(text) = std::fs::read_to_string(&manifest_path) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_str::<Manifest>(&text) else {
                tracing::warn!("unreadable manifest {}", manifest_path.display());
                continue;
            };
            let (game_id, version) = (manifest.game_id.clone(), manifest.version.clone());
            let known = store.read_now(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM versions WHERE game_id = ?1 AND version = ?2",
                        params![game_id, version],
                        |_| Ok(()),
                    )
                    .is_ok())
            })?;
            if known {
                continue;
            }
            tracing::info!(
                game = manifest.game_id,
                version = manifest.version,
                "adopting a version published just before a crash"
            );
            let uploaded_at = chrono::DateTime::parse_from_rfc3339(&manifest.uploaded_at)
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(|_| now_ms());
            let version = Version {
                version: manifest.version.clone(),
                size_bytes: manifest.size_bytes,
                sha256: manifest.sha256.clone(),
                uploader: manifest.uploader.clone(),
                uploaded_at,
            };
            let game_id = manifest.game_id.clone();
            block_on_write(store, move |conn| insert_version(conn, &game_id, &version))?;
        }
    }
    Ok(())
}

fn load_games(conn: &rusqlite::Connection) -> Result<Vec<Game>, StoreError> {
    let mut games = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT game_id, owner_id, name, description, game_type, max_players, status, api_key,
                api_secret, builtin, created_at, wage, period_secs, payout_shares
         FROM games ORDER BY created_at, game_id",
    )?;
    let rows = stmt.query_map([], |r| {
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
        "SELECT game_id, version, size_bytes, sha256, uploader, uploaded_at
         FROM versions ORDER BY uploaded_at, rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Version {
                version: r.get(1)?,
                size_bytes: r.get::<_, i64>(2)? as u64,
                sha256: r.get(3)?,
                uploader: r.get(4)?,
                uploaded_at: r.get(5)?,
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
    let rows = stmt.query_map([], |r| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_that_could_name_a_path_are_refused() {
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "/abs",
            ".hidden",
            "a\0b",
            "1..2",
            &"9".repeat(65),
        ] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
        for good in ["1.0.0", "2.1.3-beta+7", "v10_final"] {
            assert!(validate_version(good).is_ok(), "{good:?}");
        }
        for bad in ["", "../g", "g/h", "g h"] {
            assert!(validate_game_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_keys_look_like_garp_tokens() {
        let key = grouped_token();
        assert_eq!(key.len(), 29);
        assert_eq!(key.split('-').count(), 5);
    }
}
