//! The one domain error. Services return it; each protocol maps it to its own codes in one
//! `match` (see `protocol::*::code_for`), so every protocol's table of codes fits one screen.

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The request is malformed or a field is out of range.
    #[error("{0}")]
    InvalidInput(String),
    /// Unknown user or wrong password: one answer for both, so names cannot be probed.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A token that does not verify: bad signature, wrong issuer or audience, unknown session.
    #[error("invalid token")]
    InvalidToken,
    #[error("token expired")]
    ExpiredToken,
    /// The session was ended by a newer login of the same account on the same server.
    #[error("session replaced by a newer login")]
    SessionReplaced,
    /// A refresh token that was already used: its family and session are now revoked.
    #[error("refresh token already used; the session has been revoked")]
    RefreshReused,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// An upload chunk that is not the next one expected.
    #[error("chunk out of order: expected seq {expected}")]
    ChunkOutOfOrder { expected: u64 },
    /// The uploaded bytes do not match the announced checksum.
    #[error("checksum mismatch: announced {announced}, received {actual}")]
    ChecksumMismatch { announced: String, actual: String },
    /// Not allowed in the current state (room full, game offline, wrong order).
    #[error("{0}")]
    BadState(String),
    #[error("too many attempts, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The server cannot take the request now (inbox full, shutting down).
    #[error("the server is busy, try again shortly")]
    Busy,
    /// The database cannot be reached (down, restarting): nothing was done, and nothing
    /// is held against the caller (a login is not counted as failed).
    #[error(
        "the service is temporarily unavailable (its database cannot be reached); try again shortly"
    )]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => DomainError::Busy,
            other if other.is_unavailable() => {
                tracing::warn!("store unavailable: {other}");
                DomainError::Unavailable
            }
            other => {
                tracing::error!("store: {other}");
                DomainError::Internal(other.to_string())
            }
        }
    }
}

impl From<crate::bridge::Busy> for DomainError {
    fn from(_: crate::bridge::Busy) -> Self {
        DomainError::Busy
    }
}
