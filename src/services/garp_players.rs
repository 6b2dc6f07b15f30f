//! GARP player tokens and session ids, shared by every GARP socket of this node.
//!
//! The GARP client module reconnects by itself after a dropped socket, repeats the
//! nonce/HMAC handshake with the `sessionId` it had, and goes on sending the `authToken`s
//! it was given. So a player's token belongs to the game, not to the socket: it stays valid
//! until it expires or the account authenticates to the same game again (which replaces
//! it). Tokens live in memory; after a restart players authenticate again. In a cluster
//! every node tells the others the tokens and sessions it issues, so the module's
//! reconnect may land on any node.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use uuid::Uuid;

/// A player a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GarpPlayer {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
}

#[derive(Debug)]
struct TokenEntry {
    game_id: String,
    player: GarpPlayer,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: HashMap<String, TokenEntry>,
    /// (game, user) → that player's current token, so a new login replaces the old one.
    current: HashMap<(String, Uuid), String>,
    /// Session id → (game, expiry).
    sessions: HashMap<String, (String, Instant)>,
}

/// The node's GARP tokens and sessions.
#[derive(Debug)]
pub struct GarpPlayers {
    lifetime: Duration,
    inner: Mutex<Inner>,
    /// The other nodes, told of every token and session issued here.
    cluster: std::sync::OnceLock<crate::cluster::Cluster>,
}

impl GarpPlayers {
    /// Tokens and sessions last `lifetime` from when they were issued (sessions: from when
    /// they were last resumed).
    pub fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            inner: Mutex::default(),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Joins a cluster: tokens and sessions issued here are told to the other nodes.
    pub fn join_cluster(&self, cluster: crate::cluster::Cluster) {
        let _ = self.cluster.set(cluster);
    }

    /// Records `token` for `player` in `game_id`, replacing the player's older token there.
    pub fn issue(&self, game_id: &str, token: String, player: GarpPlayer) {
        if let Some(cluster) = self.cluster.get() {
            cluster.tell(crate::cluster::Note::GarpToken {
                game_id: game_id.to_owned(),
                token: token.clone(),
                player: player.clone(),
            });
        }
        self.heard_token(game_id, token, player);
    }

    /// A token another node issued (or this one): the same bookkeeping, not told again.
    pub fn heard_token(&self, game_id: &str, token: String, player: GarpPlayer) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.prune(now);
        let key = (game_id.to_owned(), player.user_id);
        if let Some(old) = inner.current.insert(key, token.clone()) {
            inner.tokens.remove(&old);
        }
        inner.tokens.insert(
            token,
            TokenEntry {
                game_id: game_id.to_owned(),
                player,
                expires: now + self.lifetime,
            },
        );
    }

    /// The player behind `token` in `game_id`, while the token is live.
    pub fn player(&self, game_id: &str, token: &str) -> Option<GarpPlayer> {
        let inner = self.inner.lock();
        inner
            .tokens
            .get(token)
            .filter(|e| e.game_id == game_id && e.expires > Instant::now())
            .map(|e| e.player.clone())
    }

    /// A new session of `game_id`.
    pub fn open_session(&self, game_id: &str, session_id: String) {
        if let Some(cluster) = self.cluster.get() {
            cluster.tell(crate::cluster::Note::GarpSession {
                game_id: game_id.to_owned(),
                session_id: session_id.clone(),
            });
        }
        self.heard_session(game_id, session_id);
    }

    /// A session another node opened (or this one): not told again.
    pub fn heard_session(&self, game_id: &str, session_id: String) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.prune(now);
        inner
            .sessions
            .insert(session_id, (game_id.to_owned(), now + self.lifetime));
    }

    /// Resumes `session_id` if it is a live session of `game_id` (and keeps it alive).
    pub fn resume_session(&self, game_id: &str, session_id: &str) -> bool {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        match inner.sessions.get_mut(session_id) {
            Some((game, expires)) if game == game_id && *expires > now => {
                *expires = now + self.lifetime;
                true
            }
            _ => false,
        }
    }
}

impl Inner {
    /// Forgets what has expired; called when something is added, so memory stays bounded
    /// by what is live.
    fn prune(&mut self, now: Instant) {
        if self.tokens.values().any(|e| e.expires <= now) {
            self.tokens.retain(|_, e| e.expires > now);
            let tokens = &self.tokens;
            self.current.retain(|_, token| tokens.contains_key(token));
        }
        self.sessions.retain(|_, (_, expires)| *expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(name: &str) -> GarpPlayer {
        GarpPlayer {
            user_id: Uuid::new_v4(),
            username: name.into(),
            display_name: name.into(),
        }
    }

    #[test]
    fn a_token_is_valid_for_its_game_until_the_player_logs_in_again() {
        let players = GarpPlayers::new(Duration::from_secs(60));
        let alice = player("alice");
        players.issue("g1", "t1".into(), alice.clone());
        assert_eq!(players.player("g1", "t1"), Some(alice.clone()));
        assert_eq!(players.player("g2", "t1"), None);
        players.issue("g2", "t2".into(), alice.clone());
        assert_eq!(players.player("g1", "t1"), Some(alice.clone()));
        players.issue("g1", "t3".into(), alice.clone());
        assert_eq!(players.player("g1", "t1"), None);
        assert_eq!(players.player("g1", "t3"), Some(alice));
    }

    #[test]
    fn tokens_and_sessions_expire() {
        let players = GarpPlayers::new(Duration::ZERO);
        players.issue("g", "t".into(), player("bob"));
        assert_eq!(players.player("g", "t"), None);
        players.open_session("g", "s".into());
        assert!(!players.resume_session("g", "s"));
        let players = GarpPlayers::new(Duration::from_secs(60));
        players.open_session("g", "s".into());
        assert!(players.resume_session("g", "s"));
        assert!(!players.resume_session("other", "s"));
        assert!(!players.resume_session("g", "nope"));
    }
}
