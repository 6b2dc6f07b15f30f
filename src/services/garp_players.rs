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

use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

use crate::cluster::{Cluster, ClusterNote, Heard};

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
    inner: Arc<Mutex<Inner>>,
    /// The other nodes, told of every token and session issued here.
    cluster: Cluster,
}

/// A GARP token or session issued on the sending node, valid on every node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
enum GarpNote {
    Token {
        game_id: String,
        token: String,
        player: GarpPlayer,
    },
    Session {
        game_id: String,
        session_id: String,
    },
}

impl ClusterNote for GarpNote {
    const KIND: &'static str = "garp";
}

impl GarpPlayers {
    /// Tokens and sessions last `lifetime` from when they were issued (sessions: from when
    /// they were last resumed); those the other nodes of `cluster` issue are valid here.
    pub fn new(lifetime: Duration, cluster: Cluster) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        cluster.hear({
            let inner = inner.clone();
            move |heard: Heard<GarpNote>| match heard.note {
                GarpNote::Token {
                    game_id,
                    token,
                    player,
                } => inner.lock().add_token(&game_id, token, player, lifetime),
                GarpNote::Session {
                    game_id,
                    session_id,
                } => inner.lock().add_session(&game_id, session_id, lifetime),
            }
        });
        Self {
            lifetime,
            inner,
            cluster,
        }
    }

    /// Records `token` for `player` in `game_id`, replacing the player's older token there.
    pub fn issue(&self, game_id: &str, token: String, player: GarpPlayer) {
        self.cluster.tell(GarpNote::Token {
            game_id: game_id.to_owned(),
            token: token.clone(),
            player: player.clone(),
        });
        self.inner
            .lock()
            .add_token(game_id, token, player, self.lifetime);
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
        self.cluster.tell(GarpNote::Session {
            game_id: game_id.to_owned(),
            session_id: session_id.clone(),
        });
        self.inner
            .lock()
            .add_session(game_id, session_id, self.lifetime);
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
    fn add_token(&mut self, game_id: &str, token: String, player: GarpPlayer, lifetime: Duration) {
        let now = Instant::now();
        self.prune(now);
        let key = (game_id.to_owned(), player.user_id);
        if let Some(old) = self.current.insert(key, token.clone()) {
            self.tokens.remove(&old);
        }
        self.tokens.insert(
            token,
            TokenEntry {
                game_id: game_id.to_owned(),
                player,
                expires: now + lifetime,
            },
        );
    }

    fn add_session(&mut self, game_id: &str, session_id: String, lifetime: Duration) {
        let now = Instant::now();
        self.prune(now);
        self.sessions
            .insert(session_id, (game_id.to_owned(), now + lifetime));
    }

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
        let players = GarpPlayers::new(Duration::from_secs(60), Cluster::single());
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
        let players = GarpPlayers::new(Duration::ZERO, Cluster::single());
        players.issue("g", "t".into(), player("bob"));
        assert_eq!(players.player("g", "t"), None);
        players.open_session("g", "s".into());
        assert!(!players.resume_session("g", "s"));
        let players = GarpPlayers::new(Duration::from_secs(60), Cluster::single());
        players.open_session("g", "s".into());
        assert!(players.resume_session("g", "s"));
        assert!(!players.resume_session("other", "s"));
        assert!(!players.resume_session("g", "nope"));
    }
}
