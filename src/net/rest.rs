//! REST under `/api/v1`, in the response format of raos-integration.md.
//!
//! Bodies are parsed here (under the decoding rule of [`crate::protocol`]) and every
//! failure, from a malformed body to a domain error, leaves as `{success: false, error, error_code,
//! timestamp}` with the matching HTTP status.

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use super::listener::PeerAddr;
use crate::protocol::comms as wire_comms;
use crate::protocol::raos::{self, ErrorCode};
use crate::services::DomainError;
use crate::services::accounts::{NewAccount, Role};

/// A REST route that performs a RaOS action: the path's and query's parameters and the
/// body's fields become the action's fields.
pub struct ActionRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub action: &'static str,
    /// 201 for what creates something.
    pub created: bool,
}

const fn route(method: &'static str, path: &'static str, action: &'static str) -> ActionRoute {
    ActionRoute {
        method,
        path,
        action,
        created: false,
    }
}

const fn creates(method: &'static str, path: &'static str, action: &'static str) -> ActionRoute {
    ActionRoute {
        method,
        path,
        action,
        created: true,
    }
}

/// Every RaOS action over REST (docs/protocols/raos.md's table is this one; a test checks).
pub const ACTION_ROUTES: &[ActionRoute] = &[
    route("POST", "/auth/login", "authenticate"),
    route("POST", "/auth/refresh", "refresh_token"),
    route("POST", "/auth/logout", "logout"),
    route("GET", "/projects", "list_game_projects"),
    creates("POST", "/projects", "create_game_project"),
    route("GET", "/projects/{project_id}", "load_game_project"),
    route("PUT", "/projects/{project_id}", "save_game_project"),
    route("GET", "/projects/{project_id}/assets", "sync_assets"),
    creates("POST", "/projects/{project_id}/assets", "add_asset"),
    creates("POST", "/assets", "upload_binary_asset"),
    route("GET", "/assets/{asset_id}/analysis", "analyze_asset"),
    route("GET", "/games", "list_games"),
    route("POST", "/games/{game_id}/launch", "launch_game"),
    route("POST", "/games/{game_id}/download", "download_game"),
    route("POST", "/games/sessions/{session_id}/stop", "stop_game"),
    route("GET", "/profile", "get_player_profile"),
    route("PATCH", "/profile", "update_player_profile"),
    route("GET", "/achievements", "get_achievements"),
    route("GET", "/leaderboards/{game_id}", "get_leaderboard"),
    creates("POST", "/friends", "add_friend"),
    route("DELETE", "/friends/{username}", "remove_friend"),
    route("GET", "/content", "list_content"),
    creates("POST", "/content", "create_content"),
    route("GET", "/content/{asset_id}", "fetch_content"),
    route("PUT", "/content/{asset_id}", "update_content"),
    route("DELETE", "/content/{asset_id}", "delete_content"),
];

/// The routes that are not RaOS actions: method, path under `/api/v1`, handler; the
/// operators' ones (notifications, `/admin`) only `with_admin`.
fn other_routes(with_admin: bool) -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    let mut routes = vec![
        ("GET", "/openapi.json", get(openapi)),
        ("POST", "/auth/register", post(register)),
    ];
    if with_admin {
        routes.push(("POST", "/notifications", post(notify)));
        routes.extend(super::admin::routes());
    }
    routes
}

/// Every route under `/api/v1` as (method, path), exactly as [`routes`] serves them (on
/// one listener, or split between the public and the admin one):
/// `docs/openapi.json` must list these and no others (a test checks).
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    ACTION_ROUTES
        .iter()
        .map(|r| (r.method, r.path))
        .chain(
            other_routes(true)
                .into_iter()
                .map(|(method, path, _)| (method, path)),
        )
        .collect()
}

/// The OpenAPI document of this API (`docs/openapi.json`).
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../../docs/openapi.json"),
    )
        .into_response()
}

/// The REST router; `with_admin` adds the operators' routes (which an `--admin` listener
/// serves instead of the public one).
pub fn routes(with_admin: bool) -> Router<AppState> {
    let mut router = Router::new();
    for (_, path, handler) in other_routes(with_admin) {
        router = router.route(path, handler);
    }
    for r in ACTION_ROUTES {
        let filter = match r.method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "PATCH" => MethodFilter::PATCH,
            _ => MethodFilter::DELETE,
        };
        router = router.route(r.path, on(filter, perform_action));
    }
    router.fallback(|| async {
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

/// A request's body, read whole. A body that fails to arrive becomes the raos format's
/// error: 408 when it paused longer than `request_body_timeout_secs` (the guard puts that
/// timer on every body), else the status axum gives the failure (413 when too large).
pub struct RawBody(pub axum::body::Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = RestReply;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if caused_by::<tower_http::timeout::TimeoutError>(&e) {
                    let secs = state.config.limits.request_body_timeout().as_secs();
                    RestReply::failure(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::InvalidRequest,
                        &format!("the request body paused for more than {secs} s"),
                    )
                } else {
                    RestReply::failure(e.status(), ErrorCode::InvalidRequest, &e.body_text())
                }
            })
    }
}

/// Whether an error or anything in its chain of sources is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<E>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A JSON body parsed under the decoding rule; any failure is a 1000 in the raos format.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = RestReply;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
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
        crate::protocol::tolerant(value).map(JsonBody).map_err(|e| {
            RestReply::failure(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                &format!("invalid request: {e}"),
            )
        })
    }
}

#[derive(Deserialize)]
struct RegisterRequest {
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
    display_name: Option<String>,
    roles: Option<Vec<String>>,
}

async fn register(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<RestReply, RestReply> {
    let credential = super::raos::credential(req.password, req.password_hash)?;
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
    Ok(RestReply::created(raos::answers::registered(&account)))
}

#[derive(Deserialize)]
struct NotificationRequest {
    level: String,
    title: String,
    message: String,
    #[serde(default)]
    actions: Option<Vec<NotificationAction>>,
}

#[derive(Deserialize, serde::Serialize)]
struct NotificationAction {
    label: String,
    url: String,
}

/// The identity behind the request's bearer token.
pub fn caller(
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
    let identity = state.accounts.verify(token)?;
    state.rest_limits.check_account(identity.user_id)?;
    Ok(identity)
}

/// `POST /api/v1/notifications` (admin): a system notification to every subscriber of
/// `notifications` on `/ws`.
async fn notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<NotificationRequest>,
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
    let actions = req.actions.unwrap_or_default();
    let data = wire_comms::notification_data(&req.level, &req.title, &req.message, &actions);
    let event = crate::sim::events::Event {
        event_type: "system_notification",
        audience: None,
        data: data.clone(),
    };
    let recipients = publish_notification(&state, data).await?;
    state
        .inbox
        .send(crate::bridge::Command::to(
            crate::sim::events::EventsCommand::Publish(event),
        ))
        .map_err(|_| DomainError::Busy)?;
    Ok(RestReply::ok(wire_comms::notified(recipients)))
}

/// Publishes a `Notification` to the `notifications` topic; how many connections it
/// reached, on every node.
pub async fn publish_notification(state: &AppState, data: Value) -> Result<usize, DomainError> {
    use crate::sim::comms::CommsOut;
    let frame = wire_comms::notification(&data);
    let topic = "notifications".to_owned();
    super::comms_ws::publish(state, topic, (CommsOut::Text(frame), Some(data)), true).await
}

/// Runs the RaOS action of the matched route.
#[allow(clippy::too_many_arguments)] // one extractor per part of the request
async fn perform_action(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    method: axum::http::Method,
    matched: axum::extract::MatchedPath,
    params: axum::extract::RawPathParams,
    axum::extract::Query(query): axum::extract::Query<Vec<(String, String)>>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<RestReply, RestReply> {
    // Matched inside the `/api/v1` nest.
    let path = matched.as_str();
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let route = ACTION_ROUTES
        .iter()
        .find(|r| r.path == path && r.method == method.as_str())
        .ok_or_else(|| {
            RestReply::failure(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such endpoint",
            )
        })?;
    let token = super::bearer(&headers).map(str::to_owned);
    let mut fields = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(RestReply::failure(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidRequest,
                    "the body must be a JSON object",
                ));
            }
            Err(e) => {
                return Err(RestReply::failure(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidRequest,
                    &format!("invalid JSON: {e}"),
                ));
            }
        }
    };
    for (name, value) in query {
        fields.insert(name, Value::String(value));
    }
    let path: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    place_path_params(route.action, &mut fields, path);
    fields.insert("action".into(), Value::String(route.action.into()));
    let request = raos::decode_value(Value::Object(fields)).map_err(|bad| {
        RestReply::failure(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            &bad.message,
        )
    })?;
    let ctx = super::raos::Context::new(&state, &headers, Some(peer.0));
    let token = request.auth_token.or(token);
    // However it came (header, query, body), a valid token's account has its own limit.
    if let Some(identity) = token.as_deref().and_then(|t| state.accounts.verify(t).ok()) {
        state.rest_limits.check_account(identity.user_id)?;
    }
    let fields = super::raos::perform(&ctx, token.as_deref(), request.action).await?;
    Ok(if route.created {
        RestReply::created(fields)
    } else {
        RestReply::ok(fields)
    })
}

/// Puts the path's parameters where the action wants them: a project id inside `project`,
/// a content id inside `asset`, a leaderboard's default category; elsewhere as fields.
fn place_path_params(
    action: &str,
    fields: &mut serde_json::Map<String, Value>,
    params: Vec<(String, String)>,
) {
    for (name, value) in params {
        let value = Value::String(value);
        match (action, name.as_str()) {
            ("save_game_project", "project_id") => {
                if let Some(Value::Object(project)) = fields.get_mut("project") {
                    project.insert(name, value);
                }
            }
            ("update_content", "asset_id") => {
                // The body holds the asset's fields, or (as the studio client sends it)
                // `{asset: {...}}`.
                let mut asset = match fields.remove("asset") {
                    Some(Value::Object(asset)) => asset,
                    _ => std::mem::take(fields),
                };
                asset.insert(name, value);
                fields.insert("asset".into(), Value::Object(asset));
            }
            _ => {
                fields.insert(name, value);
            }
        }
    }
    if action == "get_leaderboard" && !fields.contains_key("category") {
        fields.insert("category".into(), Value::String("global".into()));
    }
}

/// `GET /assets/{asset_id}`: the bytes, with their content type, `ETag` (the sha256) and
/// single-range `Range` requests.
pub async fn serve_asset(
    State(state): State<AppState>,
    axum::extract::Path(asset_id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, RestReply> {
    use axum::http::header;
    let record = super::raos::find_asset(&state, &asset_id).await?;
    let etag = format!("\"{}\"", record.sha256);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let bytes = tokio::fs::read(state.assets.path(&record.sha256))
        .await
        .map_err(|e| DomainError::Internal(format!("reading the asset: {e}")))?;
    let total = bytes.len() as u64;
    let common = [
        (header::CONTENT_TYPE, record.content_type.clone()),
        (header::ETAG, etag),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
    ];
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok((StatusCode::OK, common, bytes).into_response());
    };
    match byte_range(range, total) {
        Some((start, end)) => {
            let slice = bytes[start as usize..=end as usize].to_vec();
            let content_range = format!("bytes {start}-{end}/{total}");
            Ok((
                StatusCode::PARTIAL_CONTENT,
                common,
                [(header::CONTENT_RANGE, content_range)],
                slice,
            )
                .into_response())
        }
        None => Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{total}"))],
        )
            .into_response()),
    }
}

/// The inclusive byte range of a single-range `Range` header (`bytes=a-b`, `bytes=a-`,
/// `bytes=-n`), or `None` if it cannot be satisfied.
fn byte_range(header: &str, total: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 {
                return None;
            }
            (total.saturating_sub(n), total - 1)
        }
        (start, "") => (start.parse().ok()?, total - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then_some((start, end))
}

/// `GET /downloads/{game_id}/{version}`: a published build, for RaOS `launch_game` in
/// download mode.
pub async fn serve_download(
    State(state): State<AppState>,
    axum::extract::Path((game_id, version)): axum::extract::Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, RestReply> {
    use crate::services::catalog;
    use crate::sim::lobby::{LobbyOp, LobbyReply};
    catalog::validate_game_id(&game_id)?;
    catalog::validate_version(&version)?;
    state.metrics.downloads.inc();
    // A download link is followed by a client that may not set headers: the token may
    // also come as `?auth_token=` (or `?token=`).
    let token = super::bearer(&headers)
        .map(str::to_owned)
        .or_else(|| {
            query
                .into_iter()
                .find(|(name, _)| name == "auth_token" || name == "token")
                .map(|(_, value)| value)
        })
        .ok_or_else(|| {
            RestReply::failure(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "missing access token: send Authorization: Bearer <token> or ?auth_token=",
            )
        })?;
    let me = state.accounts.verify(&token)?;
    let op = LobbyOp::Version {
        game_id: game_id.clone(),
        version: Some(version.clone()),
    };
    let LobbyReply::Version { game, .. } = super::raos::lobby(&state, &me, op).await? else {
        return Err(DomainError::Internal("unexpected version reply".into()).into());
    };
    game.downloadable_by(me.user_id)?;
    let path =
        catalog::version_dir(&state.config.data_dir, &game_id, &version).join(catalog::BUILD_FILE);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| DomainError::NotFound(format!("no build of {game_id} {version}")))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        StatusCode::OK,
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (axum::http::header::CONTENT_LENGTH, size.to_string()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-1", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }
}
