//! Accounts, sessions and tokens: the one identity every protocol shares.
//!
//! One account table (username unique without regard to case), roles player / developer /
//! admin, passwords as argon2id of their SHA-256 (see [`password`]). A login opens a
//! *session* in a *scope* (`web` for REST, RaOS and the game; `dev` and `lobby` for the TCP
//! servers) and returns an access JWT naming it plus a single-use refresh token.
//!
//! The identity service lives beside the simulation rather than inside it: every operation
//! here is either blocking (argon2, SQLite) or must be answered without waiting for a tick,
//! and none of it touches the world. The simulation receives the verified [`Identity`] in
//! the commands it gets. Token checks are in memory (signature plus the live session
//! table), so they are cheap enough for every request.

mod password;
mod throttle;
mod tokens;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::params;
use crate::store::OptionalExtension;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::cluster::{Cluster, ClusterNote, Heard};

use crate::config::AuthConfig;
use crate::services::DomainError;
use crate::store::{Store, StoreError};

pub use password::Credential;
use throttle::LoginThrottle;
pub use tokens::{Claims, TokenKeys};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Player,
    Developer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Player => "player",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "player" => Some(Role::Player),
            "developer" => Some(Role::Developer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

fn roles_to_column(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn roles_from_column(s: &str) -> Vec<Role> {
    s.split(',').filter_map(Role::parse).collect()
}

/// Which server a session belongs to. In `dev` and `lobby` a newer login ends the older
/// sessions of the same account (store-lobby-tcp.md); `web` sessions coexist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Web,
    Dev,
    Lobby,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Web => "web",
            Scope::Dev => "dev",
            Scope::Lobby => "lobby",
        }
    }

    fn parse(s: &str) -> Scope {
        match s {
            "dev" => Scope::Dev,
            "lobby" => Scope::Lobby,
            _ => Scope::Web,
        }
    }

    fn exclusive(self) -> bool {
        !matches!(self, Scope::Web)
    }
}

/// An account as other services and protocols see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
}

/// Who is behind a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Uuid,
    pub username: String,
    pub roles: Vec<Role>,
    pub session_id: Uuid,
    pub scope: Scope,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Identity {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// What a successful login or refresh hands back.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub account: Account,
    pub identity: Identity,
}

/// A new account's details.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    pub credential: Credential,
    pub display_name: Option<String>,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionState {
    Active,
    Replaced,
}

#[derive(Debug, Clone, Copy)]
struct SessionEntry {
    user_id: Uuid,
    scope: Scope,
    state: SessionState,
}

/// The service. Shared by every protocol as `Arc<Accounts>`.
pub struct Accounts {
    store: Store,
    keys: TokenKeys,
    sessions: Arc<RwLock<HashMap<Uuid, SessionEntry>>>,
    hash_permits: Arc<Semaphore>,
    throttle: LoginThrottle,
    access_ttl: Duration,
    refresh_ttl: Duration,
    /// Verified against when the user does not exist, so both failures cost the same.
    dummy_hash: String,
    /// Coins minted into each new account, in the same transaction that creates it.
    signup_grant: i64,
    /// Whether anyone may register a developer account (players always may).
    open_developer_registration: bool,
    /// The shortest new password accepted.
    password_min_length: usize,
    /// Sessions ended by logout or by a reused refresh token: live connections of theirs
    /// listen here and close.
    ended: tokio::sync::broadcast::Sender<Uuid>,
    /// The other nodes, told of every session opened, replaced or ended here.
    cluster: Cluster,
}

/// Waits until a session has been ended (logout, a reused refresh token); see
/// [`Accounts::watch_ended`].
pub struct SessionWatch {
    ended: tokio::sync::broadcast::Receiver<Uuid>,
}

impl SessionWatch {
    /// Returns once `session_id` has ended. Never returns for a session that lives on.
    pub async fn ended(&mut self, accounts: &Accounts, session_id: Uuid) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match self.ended.recv().await {
                Ok(id) if id == session_id => return,
                Ok(_) => {}
                // Missed some: ask the table instead.
                Err(RecvError::Lagged(_)) if !accounts.is_live(session_id) => return,
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

/// A session's state as the node that changed it tells it.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionChange {
    Opened,
    Replaced,
    Ended,
}

/// A session opened, replaced or ended on the sending node, so a token from one node
/// works on every other and a logout ends it everywhere.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionNote {
    session_id: Uuid,
    user_id: Uuid,
    scope: String,
    change: SessionChange,
}

impl ClusterNote for SessionNote {
    const KIND: &'static str = "session";
}

/// Another node opened, replaced or ended a session: the same holds here at once (an
/// ended one closes this node's connections of it).
fn remote_session(
    sessions: &RwLock<HashMap<Uuid, SessionEntry>>,
    ended: &tokio::sync::broadcast::Sender<Uuid>,
    note: SessionNote,
) {
    let SessionNote {
        session_id,
        user_id,
        scope,
        change,
    } = note;
    match change {
        SessionChange::Opened => {
            sessions.write().insert(
                session_id,
                SessionEntry {
                    user_id,
                    scope: Scope::parse(&scope),
                    state: SessionState::Active,
                },
            );
        }
        SessionChange::Replaced => {
            if let Some(entry) = sessions.write().get_mut(&session_id) {
                entry.state = SessionState::Replaced;
            }
        }
        SessionChange::Ended => {
            sessions.write().remove(&session_id);
            let _ = ended.send(session_id);
        }
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Usernames: 3 to 64 ASCII letters, digits and `_ - . @ +`. ASCII only, so that no two
/// names look alike (a Cyrillic "а" or a full-width "ａ" beside a Latin "a").
pub fn validate_username(name: &str) -> Result<(), DomainError> {
    let ok_len = (3..=64).contains(&name.len());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | '+'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(DomainError::InvalidInput(
            "username must be 3 to 64 ASCII letters, digits or _ - . @ +".into(),
        ))
    }
}

/// Characters that reorder the text around them (bidirectional embeddings, overrides,
/// isolates and marks): in a display name they would disguise what other players read.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn validate_display_name(name: &str) -> Result<(), DomainError> {
    let len = name.chars().count();
    let printable = !name.chars().any(|c| c.is_control() || is_bidi_control(c));
    if (1..=64).contains(&len) && printable {
        Ok(())
    } else {
        Err(DomainError::InvalidInput(
            "display_name must be 1 to 64 printable characters, without direction controls".into(),
        ))
    }
}

impl Accounts {
    /// Opens the service: loads the signing key and the live sessions, and hears the
    /// sessions the other nodes of `cluster` open, replace and end.
    pub fn open(
        store: Store,
        data_dir: &Path,
        config: &AuthConfig,
        cluster: Cluster,
    ) -> anyhow::Result<Self> {
        // Nodes sharing a PostgreSQL store share its key too, unless a file is named.
        let keys = match &config.signing_key_file {
            None if store.dialect() == "postgres" => TokenKeys::load_or_create_shared(&store)?,
            named => TokenKeys::load_or_create(
                &named.clone().unwrap_or_else(|| data_dir.join("jwt.key")),
            )?,
        };
        let access_ttl = Duration::from_secs(config.access_token_secs.max(1));
        let horizon = now_secs() - access_ttl.as_secs() as i64;
        let sessions = store.read_now(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT session_id, user_id, scope, revoked_at FROM sessions
                 WHERE revoked_at IS NULL OR (revoke_reason = 'replaced' AND revoked_at > ?1)",
            )?;
            let rows = stmt.query_map([horizon], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })?;
            let mut map = HashMap::new();
            for row in rows {
                let (sid, uid, scope, revoked) = row?;
                if let (Ok(sid), Ok(uid)) = (Uuid::parse_str(&sid), Uuid::parse_str(&uid)) {
                    let state = if revoked.is_some() {
                        SessionState::Replaced
                    } else {
                        SessionState::Active
                    };
                    map.insert(
                        sid,
                        SessionEntry {
                            user_id: uid,
                            scope: Scope::parse(&scope),
                            state,
                        },
                    );
                }
            }
            Ok(map)
        })?;
        let sessions = Arc::new(RwLock::new(sessions));
        let ended = tokio::sync::broadcast::channel(1024).0;
        cluster.hear({
            let (sessions, ended) = (sessions.clone(), ended.clone());
            move |heard: Heard<SessionNote>| remote_session(&sessions, &ended, heard.note)
        });
        Ok(Self {
            open_developer_registration: config.open_developer_registration,
            password_min_length: config.password_min_length,
            store,
            keys,
            sessions,
            ended,
            cluster,
            hash_permits: Arc::new(Semaphore::new(config.hash_concurrency.max(1))),
            throttle: LoginThrottle::new(
                Duration::from_secs(config.login_window_secs.max(1)),
                config.login_failures_per_account.max(1),
                config.login_failures_per_ip.max(1),
                config.password_checks_per_ip,
            ),
            access_ttl,
            refresh_ttl: Duration::from_secs(config.refresh_token_days.max(1) * 86_400),
            dummy_hash: password::hash(&"0".repeat(64))?,
            signup_grant: 0,
        })
    }

    /// Mints `coins` into every account created from now on (0: none).
    pub fn with_signup_grant(mut self, coins: i64) -> Self {
        self.signup_grant = coins.max(0);
        self
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Runs argon2 on the blocking pool, at most `hash_concurrency` at once.
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DomainError> {
        let permit = self
            .hash_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DomainError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| DomainError::Internal(format!("hashing task: {e}")))
    }

    /// Creates an account. Self-service registration may ask for `player` and `developer`;
    /// `admin` only comes from [`Accounts::create_user`] (the operator's command).
    pub async fn register(&self, new: NewAccount) -> Result<Account, DomainError> {
        if new.roles.contains(&Role::Admin) {
            return Err(DomainError::Forbidden(
                "the admin role cannot be self-assigned".into(),
            ));
        }
        if new.roles.contains(&Role::Developer) && !self.open_developer_registration {
            return Err(DomainError::Forbidden(
                "developer accounts are not open for registration here; an operator makes \
                 them (ecliptic admin create-user --role developer)"
                    .into(),
            ));
        }
        let account = self.create_user(new).await?;
        let roles: Vec<_> = account.roles.iter().map(|r| r.as_str()).collect();
        tracing::info!(user = %account.username, roles = %roles.join(","), "account registered");
        self.store.metrics().registrations.inc();
        Ok(account)
    }

    /// Creates an account with any roles (no role check: the caller decides).
    pub async fn create_user(&self, new: NewAccount) -> Result<Account, DomainError> {
        validate_username(&new.username)?;
        new.credential.meets_policy(self.password_min_length)?;
        let display_name = new.display_name.unwrap_or_else(|| new.username.clone());
        validate_display_name(&display_name)?;
        let mut roles = if new.roles.is_empty() {
            vec![Role::Player]
        } else {
            new.roles
        };
        roles.sort();
        roles.dedup();
        let prehash = new.credential.prehash()?;
        let phc = self.hashing(move || password::hash(&prehash)).await??;
        let account = Account {
            user_id: Uuid::new_v4(),
            username: new.username,
            display_name,
            roles,
        };
        let row = account.clone();
        let grant = self.signup_grant;
        let created = self
            .store
            .write(move |conn| {
                let key = row.username.to_lowercase();
                let taken: bool = conn
                    .query_row(
                        "SELECT 1 FROM accounts WHERE username_key = ?1",
                        [&key],
                        |_| Ok(true),
                    )
                    .optional()?
                    .unwrap_or(false);
                if taken {
                    return Ok(false);
                }
                conn.execute(
                    "INSERT INTO accounts (user_id, username, username_key, display_name, roles,
                                           password_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        row.user_id.to_string(),
                        row.username,
                        key,
                        row.display_name,
                        roles_to_column(&row.roles),
                        phc,
                        now_secs()
                    ],
                )?;
                if grant > 0 {
                    let account = crate::services::wallet::user_account(row.user_id);
                    let minted = crate::services::wallet::transfer(
                        conn,
                        crate::services::wallet::MINT,
                        &account,
                        grant,
                        "mint",
                        "sign-up grant",
                    )?;
                    if let Err(e) = minted {
                        return Err(StoreError::Invariant(e.to_string()));
                    }
                }
                Ok(true)
            })
            .await?;
        if created {
            Ok(account)
        } else {
            Err(DomainError::Conflict("username already taken".into()))
        }
    }

    /// Looks an account up by username (any case).
    pub async fn find_by_username(&self, username: &str) -> Result<Option<Account>, DomainError> {
        let key = username.to_lowercase();
        let found = self
            .store
            .read(move |conn| Ok(load_account_by_key(conn, &key)?.map(|(a, _, _)| a)))
            .await?;
        Ok(found)
    }

    /// Checks a password and opens a session in `scope`.
    pub async fn login(
        &self,
        username: &str,
        credential: Credential,
        ip: Option<IpAddr>,
        scope: Scope,
    ) -> Result<Grant, DomainError> {
        let account = self.check_password(username, credential, ip).await?;
        self.open_session(account, scope).await
    }

    /// Checks a password (throttled per account and IP) without opening a session: for
    /// protocols that keep their own session, such as GARP.
    pub async fn check_password(
        &self,
        username: &str,
        credential: Credential,
        ip: Option<IpAddr>,
    ) -> Result<Account, DomainError> {
        let key = username.to_lowercase();
        let prehash = credential.prehash()?;
        let attempt = self
            .throttle
            .begin(&key, ip)
            .await
            .map_err(|retry_after_secs| {
                tracing::info!(user = %key, ip = ip.map(tracing::field::display), "login throttled");
                self.store.metrics().logins.with_label_values(&["throttled"]).inc();
                DomainError::RateLimited { retry_after_secs }
            })?;
        let lookup_key = key.clone();
        let found = match self
            .store
            .read(move |conn| load_account_by_key(conn, &lookup_key))
            .await
        {
            Ok(found) => found,
            Err(e) => {
                // Not the caller's failure: the attempt does not count against them.
                attempt.not_made();
                return Err(e.into());
            }
        };
        let (account, phc, disabled) = match found {
            Some((account, phc, disabled)) => (Some(account), phc, disabled),
            None => (None, self.dummy_hash.clone(), false),
        };
        let matches = self
            .hashing(move || password::verify(&prehash, &phc))
            .await?;
        // A wrong password leaves the attempt counted.
        // Logged by name and address, never with what was sent as the password.
        let Some(account) = account.filter(|_| matches) else {
            tracing::info!(user = %key, ip = ip.map(tracing::field::display), "login failed");
            self.store
                .metrics()
                .logins
                .with_label_values(&["failed"])
                .inc();
            return Err(DomainError::InvalidCredentials);
        };
        attempt.succeeded();
        // Said only to who knows the password.
        if disabled {
            tracing::info!(user = %account.username, ip = ip.map(tracing::field::display), "login refused: account disabled");
            self.store
                .metrics()
                .logins
                .with_label_values(&["disabled"])
                .inc();
            return Err(DomainError::Forbidden(
                "this account is disabled; ask an operator".into(),
            ));
        }
        tracing::info!(user = %account.username, ip = ip.map(tracing::field::display), "login ok");
        self.store.metrics().logins.with_label_values(&["ok"]).inc();
        Ok(account)
    }

    async fn open_session(&self, account: Account, scope: Scope) -> Result<Grant, DomainError> {
        let session_id = Uuid::new_v4();
        let refresh = tokens::new_refresh_token();
        let refresh_hash = tokens::refresh_token_hash(&refresh);
        let now = now_secs();
        let refresh_expires = now + self.refresh_ttl.as_secs() as i64;
        let user_id = account.user_id;
        let replaced = self
            .store
            .write(move |conn| {
                let mut replaced = Vec::new();
                if scope.exclusive() {
                    let mut stmt = conn.prepare(
                        "SELECT session_id FROM sessions
                         WHERE user_id = ?1 AND scope = ?2 AND revoked_at IS NULL",
                    )?;
                    let rows = stmt
                        .query_map(params![user_id.to_string(), scope.as_str()], |r| {
                            r.get::<_, String>(0)
                        })?;
                    for sid in rows {
                        replaced.push(sid?);
                    }
                    conn.execute(
                        "UPDATE sessions SET revoked_at = ?3, revoke_reason = 'replaced'
                         WHERE user_id = ?1 AND scope = ?2 AND revoked_at IS NULL",
                        params![user_id.to_string(), scope.as_str(), now],
                    )?;
                }
                conn.execute(
                    "INSERT INTO sessions (session_id, user_id, scope, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        session_id.to_string(),
                        user_id.to_string(),
                        scope.as_str(),
                        now
                    ],
                )?;
                conn.execute(
                    "INSERT INTO refresh_tokens (token_hash, family_id, session_id, user_id,
                                                 issued_at, expires_at)
                     VALUES (?1, ?2, ?2, ?3, ?4, ?5)",
                    params![
                        refresh_hash,
                        session_id.to_string(),
                        user_id.to_string(),
                        now,
                        refresh_expires
                    ],
                )?;
                Ok(replaced)
            })
            .await?;
        {
            let mut sessions = self.sessions.write();
            for sid in replaced.iter().filter_map(|s| Uuid::parse_str(s).ok()) {
                if let Some(entry) = sessions.get_mut(&sid) {
                    entry.state = SessionState::Replaced;
                }
            }
            sessions.insert(
                session_id,
                SessionEntry {
                    user_id,
                    scope,
                    state: SessionState::Active,
                },
            );
        }
        for sid in replaced.iter().filter_map(|s| Uuid::parse_str(s).ok()) {
            self.tell(sid, user_id, scope, SessionChange::Replaced);
        }
        self.tell(session_id, user_id, scope, SessionChange::Opened);
        self.grant(account, session_id, scope, refresh)
    }

    fn grant(
        &self,
        account: Account,
        session_id: Uuid,
        scope: Scope,
        refresh_token: String,
    ) -> Result<Grant, DomainError> {
        let iat = now_secs();
        let exp = iat + self.access_ttl.as_secs() as i64;
        let claims = Claims {
            iss: tokens::ISSUER.into(),
            aud: tokens::AUDIENCE.into(),
            sub: account.user_id.to_string(),
            sid: session_id.to_string(),
            iat,
            exp,
            roles: account.roles.clone(),
            name: account.username.clone(),
        };
        let access_token = self.keys.sign(&claims)?;
        let identity = Identity {
            user_id: account.user_id,
            username: account.username.clone(),
            roles: account.roles.clone(),
            session_id,
            scope,
            expires_at: exp,
        };
        Ok(Grant {
            access_token,
            refresh_token,
            expires_in: self.access_ttl.as_secs(),
            account,
            identity,
        })
    }

    /// Verifies an access token: signature, claims, expiry, and that its session is live.
    /// A watch for ended sessions, for a connection to close when its session ends.
    pub fn watch_ended(&self) -> SessionWatch {
        SessionWatch {
            ended: self.ended.subscribe(),
        }
    }

    /// Whether a session can still be used (not logged out, revoked or replaced).
    pub fn is_live(&self, session_id: Uuid) -> bool {
        self.sessions
            .read()
            .get(&session_id)
            .is_some_and(|e| e.state == SessionState::Active)
    }

    fn end_session(&self, session_id: Uuid) {
        if let Some(entry) = self.sessions.write().remove(&session_id) {
            self.tell(session_id, entry.user_id, entry.scope, SessionChange::Ended);
        }
        // No receiver is fine: no connection uses the session.
        let _ = self.ended.send(session_id);
    }

    fn clustered(&self) -> bool {
        self.cluster.is_clustered()
    }

    fn tell(&self, session_id: Uuid, user_id: Uuid, scope: Scope, change: SessionChange) {
        self.cluster.tell(SessionNote {
            session_id,
            user_id,
            scope: scope.as_str().into(),
            change,
        });
    }

    /// A session another node opened that this one has not heard of yet (the note is on
    /// its way): the database, where it was committed before its token was handed out,
    /// answers. Only for tokens whose signature already checked out.
    fn session_from_store(&self, session_id: Uuid) -> Option<SessionEntry> {
        let sid = session_id.to_string();
        let row = self
            .store
            .read_now(move |conn| {
                conn.query_row(
                    "SELECT user_id, scope, revoked_at, revoke_reason FROM sessions
                         WHERE session_id = ?1",
                    [sid],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, Option<String>>(3)?,
                        ))
                    },
                )
                .optional()
            })
            .ok()??;
        let (user_id, scope, revoked_at, reason) = row;
        let state = match (revoked_at, reason.as_deref()) {
            (None, _) => SessionState::Active,
            (Some(_), Some("replaced")) => SessionState::Replaced,
            (Some(_), _) => return None,
        };
        let entry = SessionEntry {
            user_id: Uuid::parse_str(&user_id).ok()?,
            scope: Scope::parse(&scope),
            state,
        };
        self.sessions.write().insert(session_id, entry);
        Some(entry)
    }

    pub fn verify(&self, token: &str) -> Result<Identity, DomainError> {
        let claims = self.keys.decode(token)?;
        let (user_id, session_id) = tokens::ids(&claims)?;
        let known = self.sessions.read().get(&session_id).copied();
        let entry = match known {
            Some(entry) => entry,
            None if self.clustered() => self
                .session_from_store(session_id)
                .ok_or(DomainError::InvalidToken)?,
            None => return Err(DomainError::InvalidToken),
        };
        if entry.user_id != user_id {
            return Err(DomainError::InvalidToken);
        }
        if entry.state == SessionState::Replaced {
            return Err(DomainError::SessionReplaced);
        }
        Ok(Identity {
            user_id,
            username: claims.name,
            roles: claims.roles,
            session_id,
            scope: entry.scope,
            expires_at: claims.exp,
        })
    }

    /// Trades a refresh token for a new access token and a new refresh token. A token that
    /// was already used revokes its whole family and the session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Grant, DomainError> {
        let hash = tokens::refresh_token_hash(refresh_token);
        let next = tokens::new_refresh_token();
        let next_hash = tokens::refresh_token_hash(&next);
        let now = now_secs();
        let refresh_expires = now + self.refresh_ttl.as_secs() as i64;
        let outcome = self
            .store
            .write(move |conn| rotate_refresh(conn, &hash, &next_hash, now, refresh_expires))
            .await?;
        match outcome {
            Rotation::Rotated {
                account,
                session_id,
                scope,
            } => {
                let live = self
                    .sessions
                    .read()
                    .get(&session_id)
                    .is_some_and(|e| e.state == SessionState::Active);
                if !live {
                    return Err(DomainError::InvalidToken);
                }
                self.grant(account, session_id, scope, next)
            }
            Rotation::Reused { session_id } => {
                self.end_session(session_id);
                Err(DomainError::RefreshReused)
            }
            Rotation::Expired => Err(DomainError::ExpiredToken),
            Rotation::Unknown => Err(DomainError::InvalidToken),
        }
    }

    /// Ends a session: its access tokens stop working at once, its refresh tokens too.
    pub async fn logout(&self, identity: &Identity) -> Result<(), DomainError> {
        let sid = identity.session_id;
        let now = now_secs();
        self.store
            .write(move |conn| {
                revoke_session(conn, &sid.to_string(), "logout", now)?;
                Ok(())
            })
            .await?;
        self.end_session(sid);
        Ok(())
    }

    /// An account as an operator sees it, by username (any case).
    pub async fn lookup(&self, username: &str) -> Result<AccountRecord, DomainError> {
        let key = username.to_lowercase();
        let shown = username.to_owned();
        self.store
            .read(move |conn| {
                let Some((account, _, _)) = load_account_by_key(conn, &key)? else {
                    return Ok(None);
                };
                let (created_at, disabled_at, sessions) = conn.query_row(
                    "SELECT created_at, disabled_at,
                            (SELECT COUNT(*) FROM sessions
                             WHERE user_id = accounts.user_id AND revoked_at IS NULL)
                     FROM accounts WHERE user_id = ?1",
                    [account.user_id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                Ok(Some(AccountRecord {
                    account,
                    created_at,
                    disabled_at,
                    open_sessions: sessions,
                }))
            })
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no account {shown:?}")))
    }

    /// Disables an account (its sessions end at once, on every protocol, and it cannot log
    /// in) or enables it again.
    pub async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<AccountRecord, DomainError> {
        let now = now_secs();
        self.change_account(username, disabled, move |conn, key| {
            conn.execute(
                "UPDATE accounts SET disabled_at = CASE WHEN ?2 THEN COALESCE(disabled_at, ?3) END
                 WHERE username_key = ?1",
                params![key, disabled, now],
            )
        })
        .await
    }

    /// Sets a new password; the account's sessions end (whoever had it must log in again).
    pub async fn set_password(
        &self,
        username: &str,
        credential: Credential,
    ) -> Result<AccountRecord, DomainError> {
        credential.meets_policy(self.password_min_length)?;
        let prehash = credential.prehash()?;
        let phc = self.hashing(move || password::hash(&prehash)).await??;
        self.change_account(username, true, move |conn, key| {
            conn.execute(
                "UPDATE accounts SET password_hash = ?2 WHERE username_key = ?1",
                params![key, phc],
            )
        })
        .await
    }

    /// Sets an account's roles (`player` always among them); its sessions end, so the
    /// next login's tokens carry the new roles.
    pub async fn set_roles(
        &self,
        username: &str,
        mut roles: Vec<Role>,
    ) -> Result<AccountRecord, DomainError> {
        roles.push(Role::Player);
        roles.sort();
        roles.dedup();
        let column = roles_to_column(&roles);
        self.change_account(username, true, move |conn, key| {
            conn.execute(
                "UPDATE accounts SET roles = ?2 WHERE username_key = ?1",
                params![key, column],
            )
        })
        .await
    }

    /// Accounts in name order, `limit` from `offset`, and how many there are in all.
    pub async fn list(
        &self,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<AccountRecord>, u64), DomainError> {
        let found = self
            .store
            .read(move |conn| {
                let total: i64 =
                    conn.query_row("SELECT COUNT(*) FROM accounts", (), |r| r.get(0))?;
                let mut stmt = conn.prepare(
                    "SELECT user_id, username, display_name, roles, created_at, disabled_at,
                            (SELECT COUNT(*) FROM sessions
                             WHERE user_id = accounts.user_id AND revoked_at IS NULL)
                     FROM accounts ORDER BY username_key LIMIT ?1 OFFSET ?2",
                )?;
                let rows = stmt.query_map(
                    params![
                        limit.min(i64::MAX as u64) as i64,
                        offset.min(i64::MAX as u64) as i64
                    ],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    },
                )?;
                let mut records = Vec::new();
                for row in rows {
                    let (uid, username, display_name, roles, created_at, disabled_at, sessions) =
                        row?;
                    let Ok(user_id) = Uuid::parse_str(&uid) else {
                        continue;
                    };
                    records.push(AccountRecord {
                        account: Account {
                            user_id,
                            username,
                            display_name,
                            roles: roles_from_column(&roles),
                        },
                        created_at,
                        disabled_at,
                        open_sessions: sessions,
                    });
                }
                Ok((records, total.max(0) as u64))
            })
            .await?;
        Ok(found)
    }

    /// Applies `change` to the account (it returns the rows it changed) and, if
    /// `end_sessions`, revokes its sessions in the same transaction and ends them here.
    async fn change_account(
        &self,
        username: &str,
        end_sessions: bool,
        change: impl FnOnce(&crate::store::Connection, &str) -> Result<usize, StoreError>
        + Send
        + 'static,
    ) -> Result<AccountRecord, DomainError> {
        let key = username.to_lowercase();
        let shown = username.to_owned();
        let now = now_secs();
        let ended: Option<Vec<String>> = self
            .store
            .write(move |conn| {
                if change(conn, &key)? == 0 {
                    return Ok(None);
                }
                if !end_sessions {
                    return Ok(Some(Vec::new()));
                }
                let mut stmt = conn.prepare(
                    "SELECT session_id FROM sessions
                     WHERE revoked_at IS NULL
                       AND user_id = (SELECT user_id FROM accounts WHERE username_key = ?1)",
                )?;
                let sessions = stmt
                    .query_map([&key], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                for sid in &sessions {
                    revoke_session(conn, sid, "admin", now)?;
                }
                Ok(Some(sessions))
            })
            .await?;
        let ended = ended.ok_or_else(|| DomainError::NotFound(format!("no account {shown:?}")))?;
        for sid in ended {
            if let Ok(sid) = Uuid::parse_str(&sid) {
                self.end_session(sid);
            }
        }
        self.lookup(username).await
    }
}

/// An account with what an operator needs to know of it.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub account: Account,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub open_sessions: i64,
}

/// An account by its lowercase name: the account, its password hash, and whether it is
/// disabled.
fn load_account_by_key(
    conn: &crate::store::Connection,
    key: &str,
) -> Result<Option<(Account, String, bool)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT user_id, username, display_name, roles, password_hash,
                    disabled_at IS NOT NULL
             FROM accounts WHERE username_key = ?1",
            [key],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                ))
            },
        )
        .optional()?
        .and_then(|(uid, username, display_name, roles, phc, disabled)| {
            Some((
                Account {
                    user_id: Uuid::parse_str(&uid).ok()?,
                    username,
                    display_name,
                    roles: roles_from_column(&roles),
                },
                phc,
                disabled,
            ))
        }))
}

enum Rotation {
    Rotated {
        account: Account,
        session_id: Uuid,
        scope: Scope,
    },
    Reused {
        session_id: Uuid,
    },
    Expired,
    Unknown,
}

/// One transaction: look the token up, and either rotate it or, if it was used before,
/// revoke its family and session (committed, so the revocation survives the error reply).
fn rotate_refresh(
    conn: &crate::store::Connection,
    hash: &[u8],
    next_hash: &[u8],
    now: i64,
    next_expires: i64,
) -> Result<Rotation, StoreError> {
    let row = conn
        .query_row(
            "SELECT t.family_id, t.session_id, t.user_id, t.expires_at, t.used_at,
                    s.scope, s.revoked_at, a.username_key
             FROM refresh_tokens t
             JOIN sessions s ON s.session_id = t.session_id
             JOIN accounts a ON a.user_id = t.user_id
             WHERE t.token_hash = ?1",
            [hash],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, String>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((family, sid, uid, expires_at, used_at, scope, revoked_at, key)) = row else {
        return Ok(Rotation::Unknown);
    };
    let Ok(session_id) = Uuid::parse_str(&sid) else {
        return Ok(Rotation::Unknown);
    };
    if revoked_at.is_some() {
        // Logged out or already revoked: the token is dead, nothing more to revoke.
        return Ok(Rotation::Unknown);
    }
    if used_at.is_some() {
        conn.execute(
            "UPDATE refresh_tokens SET used_at = COALESCE(used_at, ?2) WHERE family_id = ?1",
            params![family, now],
        )?;
        revoke_session(conn, &sid, "refresh_reuse", now)?;
        return Ok(Rotation::Reused { session_id });
    }
    if expires_at <= now {
        return Ok(Rotation::Expired);
    }
    conn.execute(
        "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1",
        params![hash, now],
    )?;
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, session_id, user_id, issued_at,
                                     expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![next_hash, family, sid, uid, now, next_expires],
    )?;
    let Some((account, _, _)) = load_account_by_key(conn, &key)? else {
        return Ok(Rotation::Unknown);
    };
    Ok(Rotation::Rotated {
        account,
        session_id,
        scope: Scope::parse(&scope),
    })
}

fn revoke_session(
    conn: &crate::store::Connection,
    sid: &str,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET revoked_at = ?2, revoke_reason = ?3
         WHERE session_id = ?1 AND revoked_at IS NULL",
        params![sid, now, reason],
    )?;
    conn.execute(
        "UPDATE refresh_tokens SET used_at = COALESCE(used_at, ?2) WHERE session_id = ?1",
        params![sid, now],
    )?;
    Ok(())
}
