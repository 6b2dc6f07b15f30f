//! GARP (garp.md, garp-notes.md): JSON messages named by `"@class"`, each request answered
//! by the response of the matching class (`.XRequest` → `.XResponse`) echoing its
//! `requestId`. Errors are `"error": {"details": text}` inside that response; the connect
//! handshake's errors are a plain `"error": text`, as the reference sends them.
//!
//! GARP clients send ids and amounts as strings or numbers (`"userId": "3"`, `"wage": "1"`,
//! `"playid": 353`), so both are accepted wherever the spec shows either.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::services::accounts::Account;
use crate::services::rooms::{RoomChat, RoomView};
use crate::services::wagers::{Ladder, Receipt, Standing};

/// The error texts garp.md and the reference server use, in one place.
pub mod texts {
    pub const UNKNOWN_GAME_ID: &str = "Unknown GameID";
    pub const HMAC_MISMATCH: &str = "HMAC not matching.";
    pub const API_KEY_MISMATCH: &str = "API key not matching.";
    pub const USER_PASSWORD: &str = "User password unrecognized .";
    pub const ACCOUNT_AUTH: &str = "Athentication not successful.";
    pub const ACCOUNT_DISABLED: &str = "User account disabled.";
    pub const AUTH_FAILING: &str = "Authentication is failing.";
    pub const NOT_ENOUGH_COINS: &str = "Error: Not enough coins available.";
    pub const CURRENCY_UNSUPPORTED: &str = "Error: Currency not supported.";
    pub const ROOM_SERIAL_MISSING: &str = "Invalid roomSerial: a room number is required.";
    pub const INVALID_SEATS: &str = "Invalid roomSeats: a whole number of seats is required.";
    pub const NO_GAME: &str = "Game doesn't exist.";
    pub const NOT_CONNECTED: &str =
        "Not connected: answer the AuthenticatedConnect challenge (hmac) first.";
    pub const ALREADY_CONNECTED: &str = "Already connected.";
    pub const PLAY_ID_MISSING: &str = "Play id missing.";
    pub const NO_PLAY: &str = "Play doesn't exist.";
    pub const NOT_YOUR_PLAY: &str = "Play doesn't belong to this user.";
    pub const PLAY_FINISHED: &str = "Play already finished.";
    pub const PERIOD_RESOLVED: &str = "The play's period is already resolved.";
    pub const INVALID_WAGE: &str = "Invalid wage: a positive whole number is required.";
    pub const INVALID_SCORE: &str = "Invalid scoreValue: a whole number is required.";
    pub const RATE_LIMITED: &str = "Too many attempts: try again later.";
    pub const BUSY: &str = "Server busy: try again shortly.";
    pub const UNAVAILABLE: &str =
        "Service unavailable: its database cannot be reached; try again shortly.";
    pub const SERVER_ERROR: &str = "Server error: try again.";
}

pub const CONNECT_REQUEST: &str = ".AuthenticatedConnectRequest";
pub const CONNECT_RESPONSE: &str = ".AuthenticatedConnectResponse";
/// The class of an answer to something that is not a request at all.
pub const ERROR_RESPONSE: &str = ".ErrorResponse";

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// The answer to the nonce challenge, with what a reconnecting module sends.
    Connect {
        hmac: String,
        /// The game token, as 0.1.5 and later send it; must be this socket's.
        apikey: Option<String>,
        /// The session a reconnecting client had.
        session_id: Option<String>,
    },
    Authentication {
        username: String,
        userpass: String,
        apikey: String,
    },
    AccountDetails {
        auth_token: String,
        user_id: String,
    },
    SetWage {
        auth_token: String,
        game_id: String,
        user_id: String,
        api_key: Option<String>,
        wage: Option<i64>,
        /// 0.3.0 names the coin; only `ATH` is served.
        currency: Option<String>,
    },
    GameInfo {
        apikey: String,
    },
    FinishGame {
        auth_token: Option<String>,
        user_id: String,
        play_id: Option<i64>,
        score: Option<i64>,
    },
    GameLadder {
        auth_token: String,
        user_id: String,
        game_id: String,
    },
    CreateRoom {
        auth_token: String,
        user_id: String,
        game_id: String,
        /// Seats wanted; the game's `max_players` when absent.
        seats: Option<i64>,
    },
    JoinRoom {
        auth_token: String,
        user_id: String,
        game_id: String,
        serial: Option<i64>,
    },
    LeaveRoom {
        auth_token: String,
        user_id: String,
        room_id: String,
    },
    /// Locking a room is starting it, as the lobby's `START_ROOM` does.
    LockRoom {
        auth_token: String,
        room_id: String,
    },
    QueryRoom {
        auth_token: String,
        game_id: String,
    },
    SendChat {
        auth_token: String,
        user_id: String,
        room_id: String,
        meta: Value,
        msg: String,
    },
}

impl Request {
    /// The player token the request carries, which its error answer echoes.
    pub fn auth_token(&self) -> Option<&str> {
        match self {
            Request::Connect { .. } | Request::Authentication { .. } | Request::GameInfo { .. } => {
                None
            }
            Request::FinishGame { auth_token, .. } => auth_token.as_deref(),
            Request::AccountDetails { auth_token, .. }
            | Request::SetWage { auth_token, .. }
            | Request::GameLadder { auth_token, .. }
            | Request::CreateRoom { auth_token, .. }
            | Request::JoinRoom { auth_token, .. }
            | Request::LeaveRoom { auth_token, .. }
            | Request::LockRoom { auth_token, .. }
            | Request::QueryRoom { auth_token, .. }
            | Request::SendChat { auth_token, .. } => Some(auth_token),
        }
    }
}

/// A request and what its answer must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The request's `@class`; the answer's is derived from it.
    pub class: String,
    pub request_id: Value,
    pub request: Request,
}

/// A message that is not a valid request, with what its error answer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// The response class to answer with.
    pub response_class: String,
    pub request_id: Value,
    pub details: String,
}

/// The response class of a request class: `.XRequest` → `.XResponse`.
pub fn response_class(request_class: &str) -> String {
    match request_class.strip_suffix("Request") {
        Some(stem) if request_class.starts_with('.') => format!("{stem}Response"),
        _ => ERROR_RESPONSE.to_owned(),
    }
}

/// A text frame that is only a keep-alive (`" "`).
pub fn is_keep_alive(text: &str) -> bool {
    text.trim().is_empty()
}

/// A string, or a number written as one (`"3"` and `3` are both user 3).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Loose {
    Text(String),
    Int(i64),
}

impl Loose {
    fn text(self) -> String {
        match self {
            Loose::Text(s) => s,
            Loose::Int(i) => i.to_string(),
        }
    }

    /// The whole number it holds, if it holds one.
    fn int(self) -> Option<i64> {
        match self {
            Loose::Text(s) => s.trim().parse().ok(),
            Loose::Int(i) => Some(i),
        }
    }
}

// Fields a message type does not name (`protocolId` on every 0.3.0 request, `platform`,
// `os`, `deviceId`, `playId` and `typeId` on the ladder) are ignored: see `crate::protocol`.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectFields {
    hmac: String,
    #[serde(default)]
    apikey: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationFields {
    username: String,
    userpass: String,
    apikey: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountDetailsFields {
    auth_token: String,
    user_id: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetWageFields {
    auth_token: String,
    game_id: Loose,
    user_id: Loose,
    #[serde(default)]
    api_key: Option<String>,
    wage: Loose,
    #[serde(default)]
    currency: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GameInfoFields {
    /// 0.1.5's `gameInfoRequest` helper spells it `apiKey`.
    #[serde(alias = "apiKey")]
    apikey: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FinishGameFields {
    #[serde(default)]
    auth_token: Option<String>,
    user_id: Loose,
    #[serde(default)]
    play_id: Option<Loose>,
    score_value: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GameLadderFields {
    auth_token: String,
    user_id: Loose,
    game_id: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRoomFields {
    auth_token: String,
    user_id: Loose,
    game_id: Loose,
    #[serde(default)]
    room_seats: Option<Loose>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinRoomFields {
    auth_token: String,
    user_id: Loose,
    game_id: Loose,
    room_serial: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaveRoomFields {
    auth_token: String,
    user_id: Loose,
    room_id: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockRoomFields {
    auth_token: String,
    room_id: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryRoomFields {
    auth_token: String,
    game_id: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendChatFields {
    auth_token: String,
    user_id: Loose,
    room_id: Loose,
    #[serde(default)]
    meta: Value,
    msg: String,
}

/// Decodes one text frame (not a keep-alive).
pub fn decode(text: &str) -> Result<Frame, DecodeError> {
    let mut object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(error_frame(ERROR_RESPONSE, "a request is a JSON object")),
        Err(e) => return Err(error_frame(ERROR_RESPONSE, &format!("malformed JSON: {e}"))),
    };
    let class = match object.remove("@class") {
        Some(Value::String(class)) => class,
        Some(_) => return Err(error_frame(ERROR_RESPONSE, "\"@class\" must be a string")),
        None => return Err(error_frame(ERROR_RESPONSE, "missing \"@class\"")),
    };
    let answer_class = response_class(&class);
    let fail = |request_id: Value, details: String| DecodeError {
        response_class: answer_class.clone(),
        request_id,
        details,
    };
    // The handshake's requestId is optional (the reference's is "0"); others must send one.
    let request_id = match object.remove("requestId") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(_) => {
            return Err(fail(
                Value::Null,
                "requestId must be a string or a number".into(),
            ));
        }
        None if class == CONNECT_REQUEST => json!("0"),
        None => return Err(fail(Value::Null, "missing field `requestId`".into())),
    };
    if class == CONNECT_REQUEST {
        object.insert("requestId".into(), request_id.clone());
    }
    let body = Value::Object(object);
    let request = match class.as_str() {
        CONNECT_REQUEST => fields::<ConnectFields>(body).map(|f| Request::Connect {
            hmac: f.hmac,
            apikey: f.apikey,
            session_id: f.session_id,
        }),
        ".AuthenticationRequest" => {
            fields::<AuthenticationFields>(body).map(|f| Request::Authentication {
                username: f.username,
                userpass: f.userpass,
                apikey: f.apikey,
            })
        }
        ".AccountDetailsRequest" => {
            fields::<AccountDetailsFields>(body).map(|f| Request::AccountDetails {
                auth_token: f.auth_token,
                user_id: f.user_id.text(),
            })
        }
        ".SetWageRequest" => fields::<SetWageFields>(body).map(|f| Request::SetWage {
            auth_token: f.auth_token,
            game_id: f.game_id.text(),
            user_id: f.user_id.text(),
            api_key: f.api_key,
            wage: f.wage.int(),
            currency: f.currency,
        }),
        ".GameInfoRequest" => {
            fields::<GameInfoFields>(body).map(|f| Request::GameInfo { apikey: f.apikey })
        }
        ".FinishGameRequest" => fields::<FinishGameFields>(body).map(|f| Request::FinishGame {
            auth_token: f.auth_token.filter(|t| !t.is_empty()),
            user_id: f.user_id.text(),
            play_id: f.play_id.and_then(Loose::int),
            score: f.score_value.int(),
        }),
        ".GameLadderRequest" => fields::<GameLadderFields>(body).map(|f| Request::GameLadder {
            auth_token: f.auth_token,
            user_id: f.user_id.text(),
            game_id: f.game_id.text(),
        }),
        ".CreateRoomRequest" => fields::<CreateRoomFields>(body).map(|f| Request::CreateRoom {
            auth_token: f.auth_token,
            user_id: f.user_id.text(),
            game_id: f.game_id.text(),
            seats: f.room_seats.and_then(Loose::int),
        }),
        ".JoinRoomRequest" => fields::<JoinRoomFields>(body).map(|f| Request::JoinRoom {
            auth_token: f.auth_token,
            user_id: f.user_id.text(),
            game_id: f.game_id.text(),
            serial: f.room_serial.int(),
        }),
        ".LeaveRoomRequest" => fields::<LeaveRoomFields>(body).map(|f| Request::LeaveRoom {
            auth_token: f.auth_token,
            user_id: f.user_id.text(),
            room_id: f.room_id.text(),
        }),
        ".LockRoomRequest" => fields::<LockRoomFields>(body).map(|f| Request::LockRoom {
            auth_token: f.auth_token,
            room_id: f.room_id.text(),
        }),
        ".QueryRoomRequest" => fields::<QueryRoomFields>(body).map(|f| Request::QueryRoom {
            auth_token: f.auth_token,
            game_id: f.game_id.text(),
        }),
        ".SendChatRequest" => fields::<SendChatFields>(body).map(|f| Request::SendChat {
            auth_token: f.auth_token,
            user_id: f.user_id.text(),
            room_id: f.room_id.text(),
            meta: f.meta,
            msg: f.msg,
        }),
        other => Err(format!("unknown request class {other:?}")),
    };
    match request {
        Ok(request) => Ok(Frame {
            class,
            request_id,
            request,
        }),
        Err(details) => Err(fail(request_id, details)),
    }
}

fn fields<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, String> {
    super::tolerant(body).map_err(|e| e.to_string())
}

fn error_frame(class: &str, details: &str) -> DecodeError {
    DecodeError {
        response_class: class.to_owned(),
        request_id: Value::Null,
        details: details.to_owned(),
    }
}

/// Builds a response: `@class`, the given fields, and `requestId`.
pub fn response(class: &str, request_id: &Value, fields: Value) -> String {
    let mut object = Map::new();
    object.insert("@class".into(), json!(class));
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    object.insert("requestId".into(), request_id.clone());
    Value::Object(object).to_string()
}

/// An error response: `"error": {"details": ...}`, with the request's `authToken` if any.
pub fn error(class: &str, request_id: &Value, auth_token: Option<&str>, details: &str) -> String {
    let mut fields = json!({ "error": { "details": details } });
    if let Some(token) = auth_token {
        fields["authToken"] = json!(token);
    }
    response(class, request_id, fields)
}

/// The class of the message pushed to a GARP socket when chat arrives in a room one of
/// its players is in (the reference server never sent one; ecliptic names it).
pub const ROOM_CHAT_EVENT: &str = ".RoomChatEvent";

/// A room chat message pushed to a GARP socket. It answers no request, so it carries no
/// `requestId`.
pub fn room_chat_event(fields: Value) -> String {
    let mut object = Map::new();
    object.insert("@class".into(), json!(ROOM_CHAT_EVENT));
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Value::Object(object).to_string()
}

/// A handshake error: the reference sends the text itself as `error`.
pub fn connect_error(details: &str) -> String {
    response(CONNECT_RESPONSE, &json!("0"), json!({ "error": details }))
}

/// The only currency: GARP's coin.
pub const CURRENCY: &str = "ATH";

/// The first answer on `/ws/<token>/<protocol>`: where the GARP socket is.
pub fn connect_url(url: &str) -> String {
    response(CONNECT_REQUEST, &json!("0"), json!({ "connectUrl": url }))
}

/// The handshake's challenge.
pub fn challenge(nonce: &str) -> String {
    response(CONNECT_RESPONSE, &json!("0"), json!({ "nonce": nonce }))
}

/// The handshake passed: the socket's session.
pub fn connected(request_id: &Value, session_id: &str) -> String {
    response(
        CONNECT_RESPONSE,
        request_id,
        json!({ "sessionId": session_id }),
    )
}

/// A room chat message pushed to the GARP sockets of the room's players.
pub fn room_chat(chat: &RoomChat) -> String {
    room_chat_event(json!({
        "roomId": chat.room_id,
        "userId": chat.from_user.to_string(),
        "username": chat.from,
        "meta": chat.meta,
        "msg": chat.message,
        "date": chrono::DateTime::from_timestamp_millis(chat.sent_at_ms)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    }))
}

/// A room as GARP answers show it.
pub fn room(auth_token: &str, room: &RoomView) -> Value {
    json!({
        "authToken": auth_token,
        "roomId": room.room_id,
        "roomSerial": room.serial,
        "roomSeats": room.seats,
        "gameId": room.game_id,
        "version": room.version,
        "host": room.host,
        "players": room.players,
        "status": room.status,
        "locked": room.status != "WAITING",
    })
}

/// `LockRoomRequest`: the room, and where its players play it.
pub fn room_locked(auth_token: &str, view: &RoomView, host: &str, port: u16) -> Value {
    let mut fields = room(auth_token, view);
    fields["gameHost"] = json!(host);
    fields["gamePort"] = json!(port);
    fields
}

/// `QueryRoomRequest`: the game's rooms.
pub fn rooms<'a>(
    auth_token: &str,
    game_id: &str,
    rooms: impl Iterator<Item = &'a RoomView>,
) -> Value {
    let rooms: Vec<Value> = rooms.map(|r| room(auth_token, r)).collect();
    json!({ "authToken": auth_token, "gameId": game_id, "rooms": rooms })
}

/// `LeaveRoomRequest`.
pub fn room_left(auth_token: &str, room_id: &str) -> Value {
    json!({ "authToken": auth_token, "roomId": room_id, "status": "OK" })
}

/// `SendChatRequest`: how many of the room's players it reached.
pub fn chat_sent(auth_token: &str, room_id: &str, delivered: usize) -> Value {
    json!({ "authToken": auth_token, "roomId": room_id, "delivered": delivered, "status": "OK" })
}

/// `AccountDetailsRequest`: the player's coins.
pub fn balance(value: i64) -> Value {
    json!({ "value": value, "currency": CURRENCY })
}

/// A game as GARP answers tell it: its id, description, wage and payout shares (in
/// tenths of a percent, best place first).
pub struct GameTerms<'a> {
    pub game_id: &'a str,
    pub description: &'a str,
    pub wage: i64,
    pub shares_permille: &'a [i64],
}

/// `AuthenticateUser`: the player's token for this game.
pub fn authenticated(
    auth_token: &str,
    account: &Account,
    new_player: bool,
    game: &GameTerms,
) -> Value {
    json!({
        "authToken": auth_token,
        "displayName": account.display_name,
        "newPlayer": new_player,
        "userId": account.user_id.to_string(),
        "gameId": game.game_id,
        "wage": game.wage.to_string(),
    })
}

/// `GameInfoRequest`: the game's terms, each payout share as `player<n>` in percent.
pub fn game_info(session_id: &str, game: &GameTerms) -> Value {
    let mut fields = json!({
        "sessionId": session_id,
        "gameId": game.game_id,
        "wage": game.wage.to_string(),
        "scheme": "ladder",
        "description": game.description,
    });
    for (i, permille) in game.shares_permille.iter().enumerate() {
        fields[format!("player{}", i + 1)] = json!(percent(*permille));
    }
    fields
}

/// A share in tenths of a percent as the reference shows it: percent, as a string
/// (`500` → `"50"`, `125` → `"12.5"`).
fn percent(permille: i64) -> String {
    if permille % 10 == 0 {
        (permille / 10).to_string()
    } else {
        format!("{}.{}", permille / 10, permille % 10)
    }
}

/// `SetWageRequest`: the play it opened and the balance left.
pub fn wage_placed(auth_token: &str, receipt: &Receipt) -> Value {
    json!({
        "authToken": auth_token,
        "value": receipt.balance,
        "playid": receipt.play_id,
        "gameid": receipt.game_id,
        "currency": CURRENCY,
        "status": "OK",
        "reason": "",
    })
}

/// `FinishGameRequest`.
pub fn play_finished(auth_token: &str) -> Value {
    json!({ "authToken": auth_token, "status": "OK" })
}

/// `GameLadderRequest` as the reference sends it: positions, scores and amounts as
/// strings, dates as `YYYY-MM-DD`, the asker's own line first. No open period: an empty
/// ladder with the period's whole length left.
pub fn ladder(auth_token: &str, ladder: Option<&Ladder>, time_left_secs: i64) -> Value {
    let line = |s: &Standing| {
        json!({
            "position": s.position.to_string(),
            "score": s.score.to_string(),
            "displayname": s.display_name,
            "amount": s.wage.to_string(),
            "date": chrono::DateTime::from_timestamp_millis(s.finished_at)
                .map(|d| d.format("%Y-%m-%d").to_string()),
        })
    };
    let (total, in_play, lines) = match ladder {
        Some(l) => (
            l.total_plays,
            l.in_play,
            l.mine.iter().chain(l.standings.iter()).map(line).collect(),
        ),
        None => (0, 0, Vec::new()),
    };
    json!({
        "totalGames": total,
        "inPlay": in_play,
        "timeLeft": time_left_secs,
        "ladder": lines,
        "authToken": auth_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_classes_follow_request_classes() {
        assert_eq!(response_class(".SetWageRequest"), ".SetWageResponse");
        assert_eq!(
            response_class(CONNECT_REQUEST),
            ".AuthenticatedConnectResponse"
        );
        assert_eq!(response_class("SetWage"), ERROR_RESPONSE);
    }

    #[test]
    fn ids_and_amounts_may_be_strings_or_numbers() {
        let frame = decode(
            r#"{"@class":".SetWageRequest","authToken":"t","gameId":27,"userId":"1",
                "apiKey":"k","wage":"5","requestId":"r1"}"#,
        )
        .unwrap();
        assert_eq!(
            frame.request,
            Request::SetWage {
                auth_token: "t".into(),
                game_id: "27".into(),
                user_id: "1".into(),
                api_key: Some("k".into()),
                wage: Some(5),
                currency: None,
            }
        );
        assert_eq!(frame.request_id, json!("r1"));
    }

    #[test]
    fn bad_requests_name_their_problem_in_the_right_class() {
        let e = decode(r#"{"@class":".AccountDetailsRequest","requestId":"9"}"#).unwrap_err();
        assert_eq!(e.response_class, ".AccountDetailsResponse");
        assert_eq!(e.request_id, json!("9"));
        assert!(e.details.contains("authToken"), "{}", e.details);
        let e = decode(r#"{"@class":".NopeRequest","requestId":1}"#).unwrap_err();
        assert_eq!(e.response_class, ".NopeResponse");
        assert!(e.details.contains("unknown request class"));
        let e = decode("{not json").unwrap_err();
        assert_eq!(e.response_class, ERROR_RESPONSE);
    }

    #[test]
    fn fields_a_request_does_not_use_are_ignored() {
        let frame = decode(
            r#"{"@class":".GameLadderRequest","authToken":"t","userId":"1","gameId":"g",
                "protocolId":4,"playId":9,"typeId":"1","requestId":"2","later":{"x":[1]}}"#,
        )
        .unwrap();
        assert_eq!(
            frame.request,
            Request::GameLadder {
                auth_token: "t".into(),
                user_id: "1".into(),
                game_id: "g".into(),
            }
        );
        let frame = decode(
            r#"{"@class":".AuthenticatedConnectRequest","protocolId":4,"apikey":"K",
                "hmac":"h","platform":"Chrome","os":"Linux","sessionId":null}"#,
        )
        .unwrap();
        assert_eq!(
            frame.request,
            Request::Connect {
                hmac: "h".into(),
                apikey: Some("K".into()),
                session_id: None,
            }
        );
    }

    #[test]
    fn the_handshake_needs_no_request_id() {
        let frame = decode(r#"{"@class":".AuthenticatedConnectRequest","hmac":"abc"}"#).unwrap();
        assert_eq!(
            frame.request,
            Request::Connect {
                hmac: "abc".into(),
                apikey: None,
                session_id: None,
            }
        );
        assert_eq!(frame.request_id, json!("0"));
    }
}
