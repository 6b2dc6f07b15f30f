//! raos-integration.md: the response format and error codes shared by the RaOS WebSocket
//! actions and the REST API under `/api/v1`.
//!
//! A success is `{"success": true, <the action's fields at top level>, "timestamp"}`; a
//! failure is `{"success": false, "error": "<message>", "error_code": <1000-1006>,
//! "timestamp"}`. The spec's response format names `error` as a message string and lists
//! numeric codes without naming their field; `error_code` is the name chosen here (docs/protocol-choices.md).

pub mod answers;

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
        DomainError::Busy | DomainError::Unavailable => ErrorCode::Unavailable,
    }
}

/// ISO 8601 UTC with milliseconds, as every response's `timestamp`.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub use crate::encoding::rfc3339;

/// A success response: `fields` (an object) at top level plus `success` and `timestamp`.
/// The body of a client's `POST /api/v1/auth/login`.
pub fn login_body(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password})
}

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

/// A platform event as subscribers get it: `{event_type, timestamp, data}`.
pub fn event(event_type: &str, data: &Value) -> bytes::Bytes {
    bytes::Bytes::from(
        serde_json::json!({
            "event_type": event_type,
            "timestamp": timestamp(),
            "data": data,
        })
        .to_string(),
    )
}

/// What a RaOS connection sends: replies, events (encoded once and shared by every
/// subscriber), pings, and a close.
#[derive(Debug)]
pub enum Outgoing {
    Reply(String),
    Event(bytes::Bytes),
    Ping,
    /// Close the connection, for this ending (its code is in [`super::close`]), with a reason.
    Close(crate::bridge::Ending, String),
}

/// One RaOS request: the action, plus the fields every action may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed in the response when the client sends one.
    pub request_id: Option<Value>,
    pub auth_token: Option<String>,
    pub action: Action,
}

/// `update_content`'s `asset`: the id, and whichever fields change. The studio client also
/// sends `created_date` and `modified_date`; those are the server's to set, so they are
/// ignored like any field the action does not use.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ContentChanges {
    pub asset_id: String,
    pub asset_type: Option<String>,
    pub title: Option<String>,
    pub content: Option<String>,
    pub metadata: Option<Value>,
}

/// Every action of raos-integration.md, and the few the platform adds (friends, the
/// profile's region). Fields an action does not use are ignored (see [`crate::protocol`]).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Authenticate {
        username: String,
        password_hash: Option<String>,
        password: Option<String>,
    },
    RefreshToken {
        refresh_token: String,
    },
    Logout {
        access_token: Option<String>,
    },
    CreateGameProject {
        name: String,
        #[serde(default)]
        description: String,
    },
    LoadGameProject {
        project_id: String,
    },
    SaveGameProject {
        project: Map<String, Value>,
        /// The `modified_date` the client loaded; a newer one on the server is a conflict.
        expected_modified_date: Option<String>,
    },
    ListGameProjects {},
    SyncAssets {
        project_id: String,
    },
    AddAsset {
        project_id: String,
        asset_name: String,
        asset_type: String,
        asset_data: String,
        #[serde(default)]
        compressed: bool,
    },
    ListGames {},
    LaunchGame {
        game_id: String,
        mode: String,
    },
    /// The studio client's name for `launch_game` in download mode.
    DownloadGame {
        game_id: String,
    },
    StopGame {
        session_id: String,
    },
    GetPlayerProfile {},
    UpdatePlayerProfile {
        region: String,
    },
    GetAchievements {
        game_id: Option<String>,
    },
    GetLeaderboard {
        game_id: String,
        category: String,
    },
    AddFriend {
        username: String,
    },
    RemoveFriend {
        username: String,
    },
    ListContent {
        content_type: Option<String>,
    },
    FetchContent {
        asset_id: String,
    },
    CreateContent {
        asset_type: String,
        title: String,
        content: String,
        metadata: Option<Value>,
    },
    UpdateContent {
        asset: ContentChanges,
    },
    DeleteContent {
        asset_id: String,
    },
    UploadBinaryAsset {
        asset_type: String,
        filename: String,
        file_data: String,
        #[serde(default)]
        compressed: bool,
        format: Option<String>,
    },
    AnalyzeAsset {
        asset_id: String,
    },
    SubscribeEvents {
        event_types: Vec<String>,
    },
}

impl Action {
    /// Whether the action needs a signed-in caller.
    pub fn needs_auth(&self) -> bool {
        !matches!(
            self,
            Action::Authenticate { .. } | Action::RefreshToken { .. } | Action::Logout { .. }
        )
    }
}

/// A request that could not be decoded: its `request_id` if it had one, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    pub request_id: Option<Value>,
    pub message: String,
}

/// Decodes a request object (a WebSocket message, or a REST call turned into one).
pub fn decode_value(value: Value) -> Result<Request, BadRequest> {
    let Value::Object(mut object) = value else {
        return Err(BadRequest {
            request_id: None,
            message: "a request is a JSON object with an \"action\"".into(),
        });
    };
    let request_id = object.remove("request_id");
    let fail = |message: String| BadRequest {
        request_id: request_id.clone(),
        message,
    };
    let auth_token = match object.remove("auth_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token),
        Some(_) => return Err(fail("auth_token must be a string".into())),
    };
    if !object.contains_key("action") {
        return Err(fail("missing field `action`".into()));
    }
    let action = super::tolerant::<Action>(Value::Object(object))
        .map_err(|e| fail(format!("invalid request: {e}")))?;
    Ok(Request {
        request_id,
        auth_token,
        action,
    })
}

/// Decodes one WebSocket text message.
pub fn decode(text: &str) -> Result<Request, BadRequest> {
    let value = serde_json::from_str::<Value>(text).map_err(|e| BadRequest {
        request_id: None,
        message: format!("malformed JSON: {e}"),
    })?;
    decode_value(value)
}

/// Adds the client's `request_id` to a response.
pub fn with_request_id(mut response: Value, request_id: Option<Value>) -> Value {
    if let (Some(id), Value::Object(map)) = (request_id, &mut response) {
        map.insert("request_id".into(), id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_decode_with_their_common_fields() {
        let request = decode(
            r#"{"action":"load_game_project","auth_token":"t","request_id":7,"project_id":"p"}"#,
        )
        .unwrap();
        assert_eq!(request.request_id, Some(json!(7)));
        assert_eq!(request.auth_token.as_deref(), Some("t"));
        assert_eq!(
            request.action,
            Action::LoadGameProject {
                project_id: "p".into()
            }
        );
        assert_eq!(
            decode(r#"{"action":"list_games"}"#).unwrap().action,
            Action::ListGames {}
        );
    }

    #[test]
    fn unknown_actions_are_refused_and_unknown_fields_ignored() {
        let e = decode(r#"{"action":"fly_to_moon","request_id":"a"}"#).unwrap_err();
        assert_eq!(e.request_id, Some(json!("a")));
        assert!(e.message.contains("unknown variant"), "{}", e.message);
        assert_eq!(
            decode(r#"{"action":"list_games","bogus":1}"#)
                .unwrap()
                .action,
            Action::ListGames {}
        );
        let studio = decode(
            r#"{"action":"update_content","asset":{"asset_id":"a","asset_type":null,
                "title":"T","content":"c","metadata":null,"created_date":"2024-01-01",
                "modified_date":"2024-01-02"}}"#,
        )
        .unwrap();
        assert_eq!(
            studio.action,
            Action::UpdateContent {
                asset: ContentChanges {
                    asset_id: "a".into(),
                    asset_type: None,
                    title: Some("T".into()),
                    content: Some("c".into()),
                    metadata: None,
                }
            }
        );
        let e = decode(r#"{"action":"fetch_content"}"#).unwrap_err();
        assert!(e.message.contains("asset_id"), "{}", e.message);
        assert!(decode("[1]").is_err());
        assert!(
            decode(r#"{"project_id":"p"}"#)
                .unwrap_err()
                .message
                .contains("action")
        );
    }
}
