//! Access tokens (JWT, HS256 only) and refresh tokens (opaque, 256-bit).
//!
//! An access token names its session (`sid`); verifying one also looks the session up in
//! [`super::Sessions`], so a logout or a replacing login takes effect at once. Refresh
//! tokens are random, stored only as SHA-256, and used once.

use std::io::Write;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Role;
use crate::services::DomainError;

pub const ISSUER: &str = "ecliptic";
pub const AUDIENCE: &str = "ecliptic";

/// The claims inside every access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The account's user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub roles: Vec<Role>,
    /// The username, so a protocol can name the player without a lookup.
    pub name: String,
}

/// The HMAC key for access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The secret in a key file (hex), checked; `None` when there is no such file.
    pub fn read_secret(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(None);
        };
        let secret = hex::decode(text.trim())
            .map_err(|e| anyhow::anyhow!("signing key {}: {e}", path.display()))?;
        anyhow::ensure!(
            secret.len() >= 32,
            "signing key {} is shorter than 32 bytes",
            path.display()
        );
        Ok(Some(secret))
    }

    /// Reads the key file, or creates it with 32 random bytes and mode 0600.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if let Some(secret) = Self::read_secret(path)? {
            // An operator's own key file (elsewhere, owned by someone else) may refuse.
            if let Err(e) = crate::store::make_private(path, 0o600) {
                tracing::warn!("cannot make signing key {} private: {e}", path.display());
            }
            return Ok(Self::from_secret(&secret));
        }
        let secret: [u8; 32] = rand::random();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot create signing key {}: {e}", path.display()))?;
        file.write_all(hex::encode(secret).as_bytes())?;
        file.sync_all()?;
        Ok(Self::from_secret(&secret))
    }

    /// The key every node sharing `store` uses: made by whichever node asks first, kept
    /// in the database. For PostgreSQL, where nodes on different machines share one store.
    pub fn load_or_create_shared(store: &crate::store::Store) -> anyhow::Result<Self> {
        let fresh: [u8; 32] = rand::random();
        let (tx, rx) = std::sync::mpsc::channel();
        store.submit(
            move |conn| {
                conn.execute(
                    "INSERT INTO server_secrets (name, secret, created_at) VALUES ('jwt', ?1, ?2)
                     ON CONFLICT DO NOTHING",
                    crate::params![fresh, chrono::Utc::now().timestamp_millis()],
                )?;
                conn.query_row(
                    "SELECT secret FROM server_secrets WHERE name = 'jwt'",
                    (),
                    |r| r.get::<_, Vec<u8>>(0),
                )
            },
            move |result| {
                let _ = tx.send(result);
            },
        );
        let secret = rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the store closed"))??;
        anyhow::ensure!(
            secret.len() >= 32,
            "the shared signing key is shorter than 32 bytes"
        );
        Ok(Self::from_secret(&secret))
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, DomainError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| DomainError::Internal(format!("jwt: {e}")))
    }

    /// Checks signature, algorithm, issuer, audience and expiry. Not the session: see
    /// [`super::Accounts::verify`].
    pub fn decode(&self, token: &str) -> Result<Claims, DomainError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => DomainError::ExpiredToken,
                _ => DomainError::InvalidToken,
            })
    }
}

/// A fresh refresh token: 256 random bits, URL-safe base64.
pub fn new_refresh_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How a refresh token is stored: its SHA-256.
pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Parses the `sid`/`sub` of verified claims.
pub fn ids(claims: &Claims) -> Result<(Uuid, Uuid), DomainError> {
    let user = Uuid::parse_str(&claims.sub).map_err(|_| DomainError::InvalidToken)?;
    let session = Uuid::parse_str(&claims.sid).map_err(|_| DomainError::InvalidToken)?;
    Ok((user, session))
}
