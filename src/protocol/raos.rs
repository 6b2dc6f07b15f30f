//! raos-integration.md: the response format and error codes shared by the RaOS WebSocket
//! actions and the REST API under `/api/v1`.
//!
//! A success is `{"success": true, <the action's fields at top level>, "timestamp"}`; a
//! failure is `{"success": false, "error": "<message>", "error_code": <1000-1006>,
//! "timestamp"}`. The spec's response format names `error` as a message string and lists
//! numeric codes without naming their field; `error_code` is the name chosen here (README).

use serde_json::{Map, Value, json};

use crate::services::DomainError;

/// The error codes of raos-integration.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest = 1000,
    Unauthorized = 1001,
    Forbidden = 1002,
    NotFound = 1003,
    RateLimited = 1004,
    ServerError = 1005,
    Unavailable = 1006,
}

impl ErrorCode {
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

/// The spec's code for a domain error: the whole table in one match.
pub fn code_for(e: &DomainError) -> ErrorCode {
    match e {
        DomainError::InvalidInput(_)
        | DomainError::Conflict(_)
        | DomainError::BadState(_)
        | DomainError::ChunkOutOfOrder { .. }
        | DomainError::ChecksumMismatch { .. } => ErrorCode::InvalidRequest,
        DomainError::InvalidCredentials
        | DomainError::InvalidToken
        | DomainError::ExpiredToken
        | DomainError::SessionReplaced
        | DomainError::RefreshReused => ErrorCode::Unauthorized,
        DomainError::Forbidden(_) => ErrorCode::Forbidden,
        DomainError::NotFound(_) => ErrorCode::NotFound,
        DomainError::RateLimited { .. } => ErrorCode::RateLimited,
        DomainError::Internal(_) => ErrorCode::ServerError,
        DomainError::Busy => ErrorCode::Unavailable,
    }
}

/// ISO 8601 UTC with milliseconds, as every response's `timestamp`.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A success response: `fields` (an object) at top level plus `success` and `timestamp`.
pub fn success(fields: Value) -> Value {
    let mut object = match fields {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            let mut map = Map::new();
            map.insert("data".into(), other);
            map
        }
    };
    object.insert("success".into(), Value::Bool(true));
    object.insert("timestamp".into(), Value::String(timestamp()));
    Value::Object(object)
}

/// A failure response.
pub fn failure(code: ErrorCode, message: &str) -> Value {
    json!({
        "success": false,
        "error": message,
        "error_code": code.as_u16(),
        "timestamp": timestamp(),
    })
}

/// The failure response for a domain error.
pub fn failure_for(e: &DomainError) -> Value {
    failure(code_for(e), &e.to_string())
}

/// `user_profile` as authenticate and register return it.
pub fn user_profile(account: &crate::services::accounts::Account) -> Value {
    json!({
        "user_id": account.user_id.to_string(),
        "username": account.username,
        "display_name": account.display_name,
    })
}

/// The authenticate response's fields (REST login returns exactly these).
pub fn grant_fields(grant: &crate::services::accounts::Grant) -> Value {
    json!({
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_in": grant.expires_in,
        "user_profile": user_profile(&grant.account),
        "roles": grant.account.roles,
    })
}
