//! What the catalog holds: games, versions and reviews, and the checks on what a
//! developer may set.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::services::DomainError;

use super::*;

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
    /// The rules its rooms run, when the build carries `ecliptic-room.toml`.
    #[serde(skip)]
    pub room: Option<std::sync::Arc<crate::scripting::package::RoomScript>>,
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

/// A new game's details.
#[derive(Debug, Clone)]
pub struct NewGame {
    pub name: String,
    pub description: String,
    pub game_type: String,
    pub max_players: i64,
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

pub(super) fn new_api_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn check_max_players(max_players: i64) -> Result<u32, DomainError> {
    if (1..=1000).contains(&max_players) {
        Ok(max_players as u32)
    } else {
        Err(DomainError::InvalidInput(
            "max_players must be 1 to 1000".into(),
        ))
    }
}

pub(super) fn check_game_type(game_type: &str) -> Result<(), DomainError> {
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
