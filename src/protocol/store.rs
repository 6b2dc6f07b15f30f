//! store-lobby-tcp.md: newline-delimited JSON over TCP for the developer and lobby servers.
//!
//! Requests are `{type, token?, payload}`; responses `{status, code, message, payload}`.
//! Decoding failures become code 100 here, in one place.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::services::DomainError;

/// The status codes of store-lobby-tcp.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    InvalidRequest = 100,
    Unauthorized = 101,
    Forbidden = 102,
    NotFound = 103,
    Conflict = 104,
    BadState = 105,
    ChunkOutOfOrder = 120,
    ChecksumMismatch = 121,
    ServerError = 199,
}

/// The spec's code for a domain error: the whole table in one match.
pub fn code_for(e: &DomainError) -> Code {
    match e {
        DomainError::InvalidInput(_) => Code::InvalidRequest,
        DomainError::InvalidCredentials
        | DomainError::InvalidToken
        | DomainError::ExpiredToken
        | DomainError::RefreshReused => Code::Unauthorized,
        DomainError::SessionReplaced | DomainError::BadState(_) => Code::BadState,
        DomainError::Forbidden(_) => Code::Forbidden,
        DomainError::NotFound(_) => Code::NotFound,
        DomainError::Conflict(_) => Code::Conflict,
        DomainError::ChunkOutOfOrder { .. } => Code::ChunkOutOfOrder,
        DomainError::ChecksumMismatch { .. } => Code::ChecksumMismatch,
        DomainError::RateLimited { .. } | DomainError::Busy => Code::BadState,
        DomainError::Internal(_) | DomainError::Unavailable => Code::ServerError,
    }
}

/// One request line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub payload: Value,
}

/// One response line.
#[derive(Debug, Serialize)]
pub struct Response {
    pub status: &'static str,
    pub code: u16,
    pub message: String,
    pub payload: Value,
}

impl Response {
    pub fn ok(payload: Value) -> Self {
        Self {
            status: "ok",
            code: Code::Ok as u16,
            message: "ok".into(),
            payload: if payload.is_null() {
                Value::Object(Map::new())
            } else {
                payload
            },
        }
    }

    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Self {
            status: "error",
            code: code as u16,
            message: message.into(),
            payload: Value::Object(Map::new()),
        }
    }

    pub fn from_domain(e: &DomainError) -> Self {
        Self::error(code_for(e), e.to_string())
    }

    /// The encoded line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"status":"error","code":199,"message":"encoding failed","payload":{}}"#.to_vec()
        });
        line.push(b'\n');
        line
    }
}

/// Parses one line into a request, or the code-100 response that explains why not.
pub fn decode(line: &str) -> Result<Request, Response> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Response::error(Code::InvalidRequest, format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Response::error(
            Code::InvalidRequest,
            "a request must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Response::error(Code::InvalidRequest, format!("invalid request: {e}")))
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn empty(kind: &str, payload: &Value) -> Result<(), Response> {
    match payload {
        Value::Null => Ok(()),
        Value::Object(map) if map.is_empty() => Ok(()),
        Value::Object(map) => Err(Response::error(
            Code::InvalidRequest,
            format!(
                "{kind} takes an empty payload; unexpected field {:?}",
                map.keys().next().map(String::as_str).unwrap_or("")
            ),
        )),
        _ => Err(Response::error(
            Code::InvalidRequest,
            format!("{kind}: payload must be an object"),
        )),
    }
}

/// Types a payload, consuming it (a chunk's payload is most of a megabyte: never copied).
fn fields<T: serde::de::DeserializeOwned>(kind: &str, payload: &mut Value) -> Result<T, Response> {
    let payload = match payload.take() {
        Value::Null => Value::Object(Map::new()),
        other => other,
    };
    serde_json::from_value(payload)
        .map_err(|e| Response::error(Code::InvalidRequest, format!("{kind}: {e}")))
}

/// The line a listener sends a client over its connection limit, before closing.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"{\"status\":\"error\",\"code\":105,\"message\":\"too many connections from your address\",\"payload\":{}}\n";

/// A client's request line: `type`, `payload` and the session's `token` if it has one.
pub fn request_line(
    kind: &str,
    token: Option<&str>,
    payload: &impl Serialize,
) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Line<'a, P> {
        #[serde(rename = "type")]
        kind: &'a str,
        payload: &'a P,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<&'a str>,
    }
    let mut line = serde_json::to_vec(&Line {
        kind,
        payload,
        token,
    })?;
    line.push(b'\n');
    Ok(line)
}

/// A client's `UPLOAD_CHUNK` line, `piece` encoded straight into it.
pub fn upload_chunk_line(
    token: Option<&str>,
    upload_id: &str,
    seq: usize,
    piece: &[u8],
) -> Vec<u8> {
    let mut envelope = json!({"type": "UPLOAD_CHUNK"});
    if let Some(token) = token {
        envelope["token"] = json!(token);
    }
    data_line(
        &envelope,
        &json!({"upload_id": upload_id, "seq": seq}),
        piece,
    )
}

/// Username and password, for both servers' REGISTER and LOGIN.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGame {
    pub name: String,
    pub description: String,
    pub game_type: String,
    pub max_players: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateGameMeta {
    pub game_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_players: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_type: Option<String>,
    /// ecliptic's additions for GARP wagers (see docs/protocol-choices.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wage: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_hours: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_shares: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetGameStatus {
    pub game_id: String,
    pub status: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GameRef {
    pub game_id: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRef {
    pub room_id: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UploadBegin {
    pub game_id: String,
    pub version: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadChunk {
    pub upload_id: String,
    pub seq: u64,
    pub data_b64: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRef {
    pub upload_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddReview {
    pub game_id: String,
    pub score: i64,
    pub comment: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadBegin {
    pub game_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `SEND_CHAT` (ecliptic's addition): chat to the members of a room the player is in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendChat {
    pub room_id: String,
    pub message: String,
    #[serde(default)]
    pub meta: Option<Value>,
}

/// A developer-server request, decoded.
#[derive(Debug, Clone)]
pub enum DevCommand {
    Register(Credentials),
    Login(Credentials),
    CreateGame(CreateGame),
    ListMyGames,
    UpdateGameMeta(UpdateGameMeta),
    SetGameStatus(SetGameStatus),
    ListVersions(GameRef),
    UploadBegin(UploadBegin),
    UploadChunk(UploadChunk),
    UploadEnd(UploadRef),
    CancelUpload(UploadRef),
}

/// A lobby/store-server request, decoded.
#[derive(Debug, Clone)]
pub enum LobbyCommand {
    Register(Credentials),
    Login(Credentials),
    ListGames,
    GetGameDetail(GameRef),
    LatestVersion(GameRef),
    ListReviews(GameRef),
    AddReview(AddReview),
    ListPlayers,
    ListRooms,
    CreateRoom(GameRef),
    JoinRoom(RoomRef),
    LeaveRoom(RoomRef),
    StartRoom(RoomRef),
    SendChat(SendChat),
    DownloadBegin(DownloadBegin),
}

fn unknown(kind: &str) -> Response {
    Response::error(
        Code::InvalidRequest,
        format!("unknown message type {kind:?}"),
    )
}

pub fn decode_dev(req: &mut Request) -> Result<DevCommand, Response> {
    let (k, p) = (req.kind.as_str(), &mut req.payload);
    Ok(match k {
        "REGISTER_DEV" => DevCommand::Register(fields(k, p)?),
        "LOGIN_DEV" => DevCommand::Login(fields(k, p)?),
        "CREATE_GAME" => DevCommand::CreateGame(fields(k, p)?),
        "LIST_MY_GAMES" => {
            empty(k, &*p)?;
            DevCommand::ListMyGames
        }
        "UPDATE_GAME_META" => DevCommand::UpdateGameMeta(fields(k, p)?),
        "SET_GAME_STATUS" => DevCommand::SetGameStatus(fields(k, p)?),
        "LIST_VERSIONS" => DevCommand::ListVersions(fields(k, p)?),
        "UPLOAD_BEGIN" => DevCommand::UploadBegin(fields(k, p)?),
        "UPLOAD_CHUNK" => DevCommand::UploadChunk(fields(k, p)?),
        "UPLOAD_END" => DevCommand::UploadEnd(fields(k, p)?),
        "CANCEL_UPLOAD" => DevCommand::CancelUpload(fields(k, p)?),
        other => return Err(unknown(other)),
    })
}

pub fn decode_lobby(req: &mut Request) -> Result<LobbyCommand, Response> {
    let (k, p) = (req.kind.as_str(), &mut req.payload);
    Ok(match k {
        "REGISTER_PLAYER" => LobbyCommand::Register(fields(k, p)?),
        "LOGIN_PLAYER" => LobbyCommand::Login(fields(k, p)?),
        "LIST_GAMES" => {
            empty(k, &*p)?;
            LobbyCommand::ListGames
        }
        "GET_GAME_DETAIL" => LobbyCommand::GetGameDetail(fields(k, p)?),
        "LATEST_VERSION" => LobbyCommand::LatestVersion(fields(k, p)?),
        "LIST_REVIEWS" => LobbyCommand::ListReviews(fields(k, p)?),
        "ADD_REVIEW" => LobbyCommand::AddReview(fields(k, p)?),
        "LIST_PLAYERS" => {
            empty(k, &*p)?;
            LobbyCommand::ListPlayers
        }
        "LIST_ROOMS" => {
            empty(k, &*p)?;
            LobbyCommand::ListRooms
        }
        "CREATE_ROOM" => LobbyCommand::CreateRoom(fields(k, p)?),
        "JOIN_ROOM" => LobbyCommand::JoinRoom(fields(k, p)?),
        "LEAVE_ROOM" => LobbyCommand::LeaveRoom(fields(k, p)?),
        "START_ROOM" => LobbyCommand::StartRoom(fields(k, p)?),
        "SEND_CHAT" => LobbyCommand::SendChat(fields(k, p)?),
        "DOWNLOAD_BEGIN" => LobbyCommand::DownloadBegin(fields(k, p)?),
        other => return Err(unknown(other)),
    })
}

use serde_json::json;

use crate::services::catalog::{Game, GameStatus, Version};
use crate::services::rooms::{RoomChat, RoomView};

/// `LIST_MY_GAMES`.
pub fn my_games(games: &[Game]) -> Value {
    let list: Vec<Value> = games
        .iter()
        .map(|g| {
            serde_json::json!({
                "game_id": g.game_id, "name": g.name, "description": g.description,
                "status": g.status.as_str(), "latest_version": g.latest_version(),
            })
        })
        .collect();
    serde_json::json!({ "games": list })
}

/// `LIST_GAMES`.
pub fn games(games: &[Game]) -> Value {
    let list: Vec<Value> = games
        .iter()
        .map(|g| {
            serde_json::json!({
                "game_id": g.game_id, "name": g.name, "status": g.status.as_str(),
                "latest_version": g.latest_version(), "avg_score": g.avg_score(),
            })
        })
        .collect();
    serde_json::json!({ "games": list })
}

/// `GET_GAME_DETAIL`.
pub fn game_detail(g: &Game) -> Value {
    let sample: Vec<Value> = g
        .reviews
        .iter()
        .rev()
        .take(5)
        .map(|r| serde_json::json!({"player": r.player, "score": r.score, "comment": r.comment}))
        .collect();
    serde_json::json!({
        "game_id": g.game_id, "name": g.name, "description": g.description,
        "game_type": g.game_type, "max_players": g.max_players, "status": g.status.as_str(),
        "latest_version": g.latest_version(), "avg_score": g.avg_score(),
        "reviews_sample": sample,
    })
}

/// `LIST_VERSIONS`.
pub fn versions(g: &Game) -> Value {
    let latest = g.latest().map(|v| v.version.clone());
    let list: Vec<Value> = g
        .versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v.version, "uploaded_at": iso(v.uploaded_at),
                "is_latest": Some(&v.version) == latest.as_ref(),
            })
        })
        .collect();
    serde_json::json!({ "versions": list })
}

/// `LIST_REVIEWS`.
pub fn reviews(g: &Game) -> Value {
    let list: Vec<Value> = g
        .reviews
        .iter()
        .map(|r| {
            serde_json::json!({
                "player": r.player, "score": r.score, "comment": r.comment,
                "created_at": iso(r.created_at),
            })
        })
        .collect();
    serde_json::json!({ "reviews": list })
}

/// `REGISTER` and `LOGIN`.
pub fn session_token(token: &str) -> Value {
    json!({ "session_token": token })
}

/// `CREATE_GAME`: the game's id and its GARP keys.
pub fn game_created(game: &Game) -> Value {
    json!({ "game_id": game.game_id, "api_key": game.api_key, "api_secret": game.api_secret })
}

/// `UPDATE_GAME_META`.
pub fn game_updated(game_id: &str) -> Value {
    json!({ "game_id": game_id })
}

/// `SET_GAME_STATUS`.
pub fn status_set(game_id: &str, status: GameStatus) -> Value {
    json!({ "game_id": game_id, "status": status.as_str() })
}

/// `UPLOAD_BEGIN`.
pub fn upload_begun(upload_id: &str, chunk_size: usize) -> Value {
    json!({ "upload_id": upload_id, "chunk_size": chunk_size })
}

/// `UPLOAD_CHUNK`'s acknowledgement.
pub fn chunk_acked(upload_id: &str, seq: u64, received_bytes: u64) -> Value {
    json!({ "upload_id": upload_id, "seq": seq, "received_bytes": received_bytes })
}

/// `UPLOAD_END`: the version is published and the latest.
pub fn published(version: &str, checksum: &str) -> Value {
    json!({ "version": version, "is_latest": true, "checksum": checksum })
}

/// `CANCEL_UPLOAD`.
pub fn upload_cancelled(upload_id: &str) -> Value {
    json!({ "upload_id": upload_id })
}

/// `LATEST_VERSION`: a game played on this server has no build (size 0, no checksum).
pub fn latest_version(game: &Game, version: Option<&Version>) -> Value {
    match version {
        Some(v) => {
            json!({ "version": v.version, "size_bytes": v.size_bytes, "checksum": v.sha256 })
        }
        None => json!({ "version": game.latest_version(), "size_bytes": 0, "checksum": null }),
    }
}

/// `LIST_PLAYERS`.
pub fn players(names: &[String]) -> Value {
    json!({ "online_players": names })
}

/// `LIST_ROOMS`.
pub fn rooms(rooms: &[RoomView]) -> Value {
    json!({ "rooms": rooms.iter().map(room).collect::<Vec<_>>() })
}

/// `CREATE_ROOM` and `JOIN_ROOM`.
pub fn room_entered(room: &RoomView) -> Value {
    json!({ "room_id": room.room_id, "version": room.version })
}

/// `START_ROOM`: where its players play it.
pub fn room_started(room: &RoomView, host: &str, port: u16) -> Value {
    json!({ "room_id": room.room_id, "game_host": host, "game_port": port, "version": room.version })
}

/// `SEND_CHAT`.
pub fn chatted(delivered: usize) -> Value {
    json!({ "delivered": delivered })
}

/// A request answered with nothing to say.
pub fn done() -> Value {
    json!({})
}

/// `DOWNLOAD_BEGIN`'s answer, before the chunks.
pub fn download_begun(
    download_id: &str,
    version: &str,
    size_bytes: u64,
    chunk_size: usize,
) -> Value {
    json!({
        "download_id": download_id, "version": version,
        "size_bytes": size_bytes, "chunk_size": chunk_size,
    })
}

/// One `DOWNLOAD_CHUNK` line, `data` after its fields.
pub fn download_chunk(download_id: &str, seq: u64, data: &[u8]) -> Bytes {
    Bytes::from(data_line(
        &push_envelope("DOWNLOAD_CHUNK"),
        &json!({ "download_id": download_id, "seq": seq }),
        data,
    ))
}

/// `DOWNLOAD_END`.
pub fn download_end(download_id: &str, version: &str, checksum: &str) -> Bytes {
    push(
        "DOWNLOAD_END",
        json!({ "download_id": download_id, "version": version, "checksum": checksum }),
    )
}

pub fn room(view: &RoomView) -> Value {
    serde_json::json!({
        "room_id": view.room_id, "game_id": view.game_id, "version": view.version,
        "host": view.host, "players": view.players, "status": view.status,
    })
}

/// A message the server sends without a request: the response envelope plus `type`.
pub fn push(kind: &str, payload: Value) -> Bytes {
    let mut message = push_envelope(kind);
    message["payload"] = payload;
    let mut line = serde_json::to_vec(&message).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A push's fields other than `payload`.
pub fn push_envelope(kind: &str) -> Value {
    serde_json::json!({
        "type": kind, "status": "ok", "code": 0, "message": kind.to_lowercase().replace('_', " "),
    })
}

/// `ROOM_UPDATED`; a closed room is sent once more with status `CLOSED`.
pub fn room_push(view: &RoomView, closed: bool) -> Bytes {
    let mut room = room(view);
    if closed {
        room["status"] = Value::from("CLOSED");
    }
    push("ROOM_UPDATED", serde_json::json!({ "room": room }))
}

/// `ROOM_CHAT`: a chat message in a room the connection's player is in.
pub fn room_chat_push(chat: &RoomChat) -> Bytes {
    push(
        "ROOM_CHAT",
        serde_json::json!({
            "room_id": chat.room_id, "from": chat.from, "meta": chat.meta,
            "message": chat.message, "sent_at": iso(chat.sent_at_ms),
        }),
    )
}

/// `PLAYER_PRESENCE`.
pub fn presence_push(online: &[String], offline: &[String]) -> Bytes {
    push(
        "PLAYER_PRESENCE",
        serde_json::json!({ "online": online, "offline": offline }),
    )
}

pub use crate::encoding::base64;

/// The line of a message that carries bytes (`UPLOAD_CHUNK`, `DOWNLOAD_CHUNK`): the fields of
/// `envelope`, then `payload` holding the fields of `fields` and `data_b64`.
///
/// The base64 is written straight into the line: its alphabet never needs JSON escaping, and
/// checking a chunk-sized string for escapes byte by byte cost more than encoding it.
pub fn data_line(envelope: &Value, fields: &Value, data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let engine = base64();
    let encoded_len = base64::encoded_len(data.len(), true).unwrap_or(0);
    let mut line = Vec::with_capacity(encoded_len + 256);
    open_object(&mut line, envelope);
    line.extend_from_slice(br#""payload":"#);
    open_object(&mut line, fields);
    line.extend_from_slice(br#""data_b64":""#);
    let start = line.len();
    line.resize(start + encoded_len, 0);
    // The slice is exactly the encoded length, so encoding cannot run out of room.
    let written = engine.encode_slice(data, &mut line[start..]).unwrap_or(0);
    line.truncate(start + written);
    line.extend_from_slice(b"\"}}\n");
    line
}

/// Writes `object` without its closing brace, ready for one more member.
fn open_object(line: &mut Vec<u8>, object: &Value) {
    let _ = serde_json::to_writer(&mut *line, object);
    line.pop();
    if line.last() != Some(&b'{') {
        line.push(b',');
    }
}

/// `DOWNLOAD_ERROR`: an error line that names its download.
pub fn download_error(download_id: &str, code: Code, message: &str) -> Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "type": "DOWNLOAD_ERROR", "status": "error", "code": code as u16, "message": message,
        "payload": {"download_id": download_id, "code": code as u16, "message": message},
    }))
    .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_errors_are_code_100() {
        for bad in [
            "{",
            "[]",
            "42",
            r#"{"token":"x"}"#,
            r#"{"type":"A","extra":1}"#,
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(err.code, 100, "{bad}");
            assert_eq!(err.status, "error");
        }
        let ok = decode(r#"{"type":"LIST_GAMES","payload":{}}"#).unwrap();
        assert_eq!(ok.kind, "LIST_GAMES");
    }

    #[test]
    fn data_lines_are_the_json_a_serializer_would_write() {
        use base64::Engine;
        let reference = base64::engine::general_purpose::STANDARD;
        for len in [0usize, 1, 2, 3, 31, 32, 33, 100, 4096, 70_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 131 % 256) as u8).collect();
            let cases = [
                (
                    json!({"type": "UPLOAD_CHUNK", "token": "t\"k"}),
                    json!({"upload_id": "u", "seq": 7}),
                ),
                (push_envelope("DOWNLOAD_CHUNK"), json!({"download_id": "d"})),
                (json!({}), json!({})),
            ];
            for (envelope, fields) in cases {
                let line = data_line(&envelope, &fields, &data);
                assert_eq!(line.last(), Some(&b'\n'));
                let parsed: Value = serde_json::from_slice(&line).unwrap();
                let mut expected = envelope.clone();
                let mut payload = fields.clone();
                payload["data_b64"] = Value::from(reference.encode(&data));
                expected["payload"] = payload;
                assert_eq!(parsed, expected, "{len} bytes");
                let text = parsed["payload"]["data_b64"].as_str().unwrap();
                assert_eq!(base64().decode(text).unwrap(), data);
            }
        }
    }
}
