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
//!
//! Files: `model` (games, versions, reviews, checks), `wager_terms`, `builds` (version
//! folders on disk) and `sql` (rows); this one holds the catalog and its changes.

mod builds;
mod model;
mod sql;
mod wager_terms;

pub use builds::*;
pub use model::*;
use sql::*;
pub use wager_terms::*;

use std::path::Path;

use crate::params;
use bevy_ecs::prelude::Resource;
use uuid::Uuid;

use crate::services::DomainError;
use crate::store::{Store, StoreError};

/// A change's write, to run in the store's transaction.
pub type Persist = Box<dyn FnOnce(&crate::store::Connection) -> Result<(), StoreError> + Send>;

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

/// One game as the database has it now, for a node told that another changed it.
pub async fn read_game(store: &Store, game_id: String) -> Result<Option<Game>, StoreError> {
    store
        .read(move |conn| Ok(load_games(conn)?.into_iter().find(|g| g.game_id == game_id)))
        .await
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

    /// Another node changed `game_id`; `game` is how the database has it now (`None`:
    /// gone). A change of this node's own to the game, still being saved, wins.
    pub fn heard(&mut self, game_id: &str, game: Option<Game>) {
        if self.changing.contains(game_id) {
            return;
        }
        let index = self.games.iter().position(|g| g.game_id == game_id);
        match (index, game) {
            (Some(index), Some(game)) => self.games[index] = game,
            (None, Some(game)) => self.games.push(game),
            (Some(index), None) => {
                self.games.remove(index);
            }
            (None, None) => {}
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
            Box::new(move |conn: &crate::store::Connection| insert_game(conn, &row)),
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
        Ok(Box::new(move |conn: &crate::store::Connection| {
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
        Ok(Box::new(move |conn: &crate::store::Connection| {
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
        Ok(Box::new(move |conn: &crate::store::Connection| {
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
        Ok(Box::new(move |conn: &crate::store::Connection| {
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
