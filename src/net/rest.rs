//! REST under `/api/v1`, in the response format of raos-integration.md.
//!
//! Bodies are parsed here (strictly: unknown fields are refused) and every failure, from a
//! malformed body to a domain error, leaves as `{success: false, error, error_code,
//! timestamp}` with the matching HTTP status.

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AppState;
use super::listener::PeerAddr;
use crate::protocol::raos::{self, ErrorCode};
use crate::services::DomainError;
use crate::services::accounts::{Credential, NewAccount, Role, Scope};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/notifications", post(notify))
        .fallback(|| async {
            RestReply::failure(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such endpoint",
            )
        })
}

/// A REST answer: an HTTP status and a raos-format body.
pub struct RestReply(StatusCode, Value);

impl RestReply {
    pub fn ok(fields: Value) -> Self {
        Self(StatusCode::OK, raos::success(fields))
    }

    pub fn created(fields: Value) -> Self {
        Self(StatusCode::CREATED, raos::success(fields))
    }

    pub fn failure(status: StatusCode, code: ErrorCode, message: &str) -> Self {
        Self(status, raos::failure(code, message))
    }
}

impl IntoResponse for RestReply {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

impl From<DomainError> for RestReply {
    fn from(e: DomainError) -> Self {
        let status = match &e {
            DomainError::Conflict(_) => StatusCode::CONFLICT,
            other => match raos::code_for(other) {
                ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
                ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
        };
        Self(status, raos::failure_for(&e))
    }
}

/// A JSON body parsed strictly; any failure is a 1000 in the raos format.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = RestReply;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                RestReply::failure(e.status(), ErrorCode::InvalidRequest, &e.body_text())
            })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            RestReply::failure(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                &format!("invalid JSON: {e}"),
            )
        })?;
        if !value.is_object() {
            return Err(RestReply::failure(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                "the body must be a JSON object",
            ));
        }
        serde_json::from_value(value).map(Body).map_err(|e| {
            RestReply::failure(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                &format!("invalid request: {e}"),
            )
        })
    }
}

/// `password` or `password_hash`, exactly one.
fn credential(
    password: Option<String>,
    password_hash: Option<String>,
) -> Result<Credential, DomainError> {
    match (password, password_hash) {
        (Some(p), None) => Ok(Credential::Password(p)),
        (None, Some(h)) => Ok(Credential::PasswordHash(h)),
        (Some(_), Some(_)) => Err(DomainError::InvalidInput(
            "send either password or password_hash, not both".into(),
        )),
        (None, None) => Err(DomainError::InvalidInput(
            "password or password_hash is required".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
    display_name: Option<String>,
    roles: Option<Vec<String>>,
}

async fn register(
    State(state): State<AppState>,
    Body(req): Body<RegisterRequest>,
) -> Result<RestReply, RestReply> {
    let credential = credential(req.password, req.password_hash)?;
    let roles = req
        .roles
        .unwrap_or_default()
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                DomainError::InvalidInput(format!(
                    "unknown role {r:?}: roles are player and developer"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let account = state
        .accounts
        .register(NewAccount {
            username: req.username,
            credential,
            display_name: req.display_name,
            roles,
        })
        .await?;
    Ok(RestReply::created(json!({
        "user_profile": raos::user_profile(&account),
        "roles": account.roles,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Body(req): Body<LoginRequest>,
) -> Result<RestReply, RestReply> {
    let credential = credential(req.password, req.password_hash)?;
    let grant = state
        .accounts
        .login(&req.username, credential, Some(peer.0.ip()), Scope::Web)
        .await?;
    Ok(RestReply::ok(raos::grant_fields(&grant)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(
    State(state): State<AppState>,
    Body(req): Body<RefreshRequest>,
) -> Result<RestReply, RestReply> {
    let grant = state.accounts.refresh(&req.refresh_token).await?;
    Ok(RestReply::ok(json!({
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_in": grant.expires_in,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    access_token: Option<String>,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<RestReply, RestReply> {
    // The token comes in the Authorization header, or as `access_token` in the body as the
    // RaOS `logout` action sends it.
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        serde_json::from_slice::<LogoutRequest>(&body).map_err(|e| {
            RestReply::failure(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                &format!("invalid request: {e}"),
            )
        })?
    };
    let token = super::bearer(&headers)
        .map(str::to_owned)
        .or(from_body.access_token)
        .ok_or_else(|| {
            RestReply::failure(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "missing access token: send Authorization: Bearer <token>",
            )
        })?;
    let identity = state.accounts.verify(&token)?;
    state.accounts.logout(&identity).await?;
    Ok(RestReply::ok(Value::Null))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationRequest {
    level: String,
    title: String,
    message: String,
    #[serde(default)]
    actions: Option<Vec<NotificationAction>>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct NotificationAction {
    label: String,
    url: String,
}

/// The identity behind the request's bearer token.
fn caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::services::accounts::Identity, RestReply> {
    let token = super::bearer(headers).ok_or_else(|| {
        RestReply::failure(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing access token: send Authorization: Bearer <token>",
        )
    })?;
    Ok(state.accounts.verify(token)?)
}

/// `POST /api/v1/notifications` (admin): a system notification to every subscriber of
/// `notifications` on `/ws`.
async fn notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(req): Body<NotificationRequest>,
) -> Result<RestReply, RestReply> {
    let identity = caller(&state, &headers)?;
    if !identity.has_role(Role::Admin) {
        return Err(DomainError::Forbidden("notifications need the admin role".into()).into());
    }
    if !matches!(
        req.level.as_str(),
        "info" | "warning" | "error" | "critical"
    ) {
        return Err(DomainError::InvalidInput(
            "level must be info, warning, error or critical".into(),
        )
        .into());
    }
    let data = json!({
        "level": req.level, "title": req.title, "message": req.message,
        "actions": req.actions.unwrap_or_default(),
    });
    let recipients = publish_notification(&state, data).await?;
    Ok(RestReply::ok(json!({ "recipients": recipients })))
}

/// Publishes a `Notification` to the `notifications` topic.
pub async fn publish_notification(state: &AppState, data: Value) -> Result<usize, DomainError> {
    use crate::sim::comms::{CommsCommand, CommsOut};
    let frame = crate::protocol::comms::notification(&data);
    let recipients = state
        .inbox
        .ask(|reply| {
            crate::bridge::Command::Comms(CommsCommand::Publish {
                topic: "notifications".into(),
                frame: CommsOut::Text(frame),
                record: Some(data),
                reply: Some(reply),
            })
        })
        .await?;
    Ok(recipients)
}
