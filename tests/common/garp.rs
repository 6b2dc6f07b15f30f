//! A GARP client for tests: a developer's game, the redirect, the handshake, requests.

use std::net::SocketAddr;

use base64::Engine;
use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::{LineClient, Ws, close_code, ws_connect, ws_next};

/// Coins every new account starts with in the GARP tests.
pub const GRANT: i64 = 100;

/// A server that grants every new account [`GRANT`] coins.
pub async fn wager_server() -> super::TestServer {
    super::TestServer::start_with(|c| c.wagers.signup_grant = GRANT).await
}

/// The `details` of a GARP error answer.
pub fn details(answer: &Value) -> &str {
    answer["error"]["details"]
        .as_str()
        .unwrap_or_else(|| panic!("an error with details: {answer}"))
}

/// Registers `name` (password "pw-secret", display name "The <name>") over REST.
pub async fn register(server: &super::TestServer, name: &str) {
    let (status, body) = server
        .post(
            "/api/v1/auth/register",
            &json!({"username": name, "password": "pw-secret", "display_name": format!("The {name}")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// What a GARP client knows of its game.
#[derive(Debug, Clone)]
pub struct GameKeys {
    pub game_id: String,
    pub api_key: String,
    pub secret: String,
}

/// A developer's game, with the developer's connection to change it.
pub struct DevGame {
    pub dev: LineClient<TcpStream>,
    pub token: String,
    pub keys: GameKeys,
    pub username: String,
}

impl std::ops::Deref for DevGame {
    type Target = GameKeys;

    fn deref(&self) -> &GameKeys {
        &self.keys
    }
}

pub async fn dev_call(
    dev: &mut LineClient<TcpStream>,
    kind: &str,
    token: Option<&str>,
    payload: Value,
) -> Value {
    let reply = dev.call(kind, token, payload).await;
    assert_eq!(reply["status"], "ok", "{kind}: {reply}");
    reply["payload"].clone()
}

pub async fn dev_game(dev_tcp: SocketAddr) -> DevGame {
    let mut dev = LineClient::connect(dev_tcp).await;
    let name = format!("dev{}", rand_suffix());
    let token = dev_call(
        &mut dev,
        "REGISTER_DEV",
        None,
        json!({"username": name, "password": "pw-secret"}),
    )
    .await["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let game = dev_call(
        &mut dev,
        "CREATE_GAME",
        Some(&token),
        json!({"name": "Dice", "description": "roll high", "game_type": "cli", "max_players": 4}),
    )
    .await;
    DevGame {
        keys: GameKeys {
            game_id: game["game_id"].as_str().unwrap().to_owned(),
            api_key: game["api_key"].as_str().unwrap().to_owned(),
            secret: game["api_secret"].as_str().unwrap().to_owned(),
        },
        dev,
        token,
        username: name,
    }
}

impl DevGame {
    /// The same developer and game, logged in again on a new connection to `dev_tcp`.
    pub async fn reconnect(self, dev_tcp: SocketAddr) -> Self {
        let mut dev = LineClient::connect(dev_tcp).await;
        let login = json!({"username": self.username, "password": "pw-secret"});
        let token = dev_call(&mut dev, "LOGIN_DEV", None, login).await["session_token"]
            .as_str()
            .unwrap()
            .to_owned();
        Self { dev, token, ..self }
    }

    pub async fn update(&mut self, fields: Value) {
        let mut payload = fields;
        payload["game_id"] = json!(self.keys.game_id);
        dev_call(
            &mut self.dev,
            "UPDATE_GAME_META",
            Some(&self.token),
            payload,
        )
        .await;
    }

    /// Publishes `bytes` as `version` in one chunk.
    pub async fn publish(&mut self, version: &str, bytes: &[u8]) {
        use sha2::Digest;
        let checksum = hex::encode(Sha256::digest(bytes));
        let token = Some(self.token.as_str());
        let begin = dev_call(
            &mut self.dev,
            "UPLOAD_BEGIN",
            token,
            json!({"game_id": self.keys.game_id, "version": version,
                   "size_bytes": bytes.len(), "checksum": checksum}),
        )
        .await;
        let upload_id = begin["upload_id"].clone();
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        let chunk = json!({"upload_id": upload_id, "seq": 0, "data_b64": data});
        dev_call(&mut self.dev, "UPLOAD_CHUNK", token, chunk).await;
        let end = json!({"upload_id": upload_id});
        dev_call(&mut self.dev, "UPLOAD_END", token, end).await;
    }

    pub async fn set_status(&mut self, status: &str) {
        let payload = json!({"game_id": self.keys.game_id, "status": status});
        dev_call(&mut self.dev, "SET_GAME_STATUS", Some(&self.token), payload).await;
    }
}

pub fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

pub fn sign(secret: &str, nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(nonce.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A GARP client: a connected session and its request counter.
pub struct Garp {
    pub ws: Ws,
    pub session_id: String,
    pub next_id: u64,
    /// Room chat that arrived while waiting for an answer.
    pub pushed: Vec<Value>,
    /// Speaks as the GARP JavaScript module 0.3.0 does: `protocolId` on every request,
    /// plus a field from a release ahead of this server.
    pub module: bool,
}

/// The subprotocol every version of the GARP module offers.
pub const MODULE_SUBPROTOCOL: &str = "echo-protocol";

/// Opens `url` offering the module's subprotocol; fails unless the server selects it.
pub async fn ws_connect_as_module(url: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        MODULE_SUBPROTOCOL.parse().unwrap(),
    );
    let (ws, response) =
        tokio::time::timeout(super::WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect within the wait")
            .expect("a handshake that selects the offered subprotocol");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some(MODULE_SUBPROTOCOL)
    );
    ws
}

/// A player's credentials as a reconnecting module holds them.
pub struct Resume<'a> {
    pub session_id: &'a str,
    pub auth_token: &'a str,
}

/// Follows the redirect and opens the `/fs` socket; returns it with the first message.
pub async fn open(http: SocketAddr, api_key: &str) -> (Ws, Value) {
    let mut redirect = ws_connect(&format!("ws://{}/ws/{api_key}/1", http)).await;
    let answer = ws_next(&mut redirect).await.expect("the redirect");
    assert_eq!(answer["@class"], ".AuthenticatedConnectRequest", "{answer}");
    assert_eq!(answer["requestId"], "0");
    let url = answer["connectUrl"]
        .as_str()
        .expect("connectUrl")
        .to_owned();
    assert_eq!(url, format!("ws://{}/fs/{api_key}/1", http));
    assert_eq!(close_code(&mut redirect).await, Some(1000));
    let mut ws = ws_connect(&url).await;
    let first = ws_next(&mut ws)
        .await
        .expect("the challenge or the refusal");
    (ws, first)
}

impl Garp {
    pub async fn connect(http: SocketAddr, game: &GameKeys) -> Self {
        let (mut ws, challenge) = open(http, &game.api_key).await;
        assert_eq!(
            challenge["@class"], ".AuthenticatedConnectResponse",
            "{challenge}"
        );
        let nonce = challenge["nonce"].as_str().expect("a nonce").to_owned();
        let hmac = sign(&game.secret, &nonce);
        send(
            &mut ws,
            json!({"@class": ".AuthenticatedConnectRequest", "hmac": hmac}),
        )
        .await;
        let welcome = ws_next(&mut ws).await.expect("the session");
        assert_eq!(
            welcome["@class"], ".AuthenticatedConnectResponse",
            "{welcome}"
        );
        assert_eq!(welcome["requestId"], "0");
        let session_id = welcome["sessionId"].as_str().expect("sessionId").to_owned();
        assert!(welcome.get("error").is_none());
        Self {
            ws,
            session_id,
            next_id: 0,
            pushed: Vec::new(),
            module: false,
        }
    }

    /// Connects as the 0.3.0 module does: the redirect and `/fs` both offering
    /// `echo-protocol`, and the handshake with `protocolId`, `apikey`, `platform` and `os`
    /// (plus `authToken` and `sessionId` when it reconnects).
    pub async fn connect_as_module(
        http: SocketAddr,
        game: &GameKeys,
        resume: Option<Resume<'_>>,
    ) -> Self {
        let mut redirect =
            ws_connect_as_module(&format!("ws://{http}/ws/{}/4", game.api_key)).await;
        let answer = ws_next(&mut redirect).await.expect("the redirect");
        let url = answer["connectUrl"]
            .as_str()
            .expect("connectUrl")
            .to_owned();
        assert_eq!(close_code(&mut redirect).await, Some(1000));
        let mut ws = ws_connect_as_module(&url).await;
        let challenge = ws_next(&mut ws).await.expect("the challenge");
        let nonce = challenge["nonce"].as_str().expect("a nonce").to_owned();
        let mut hello = json!({
            "@class": ".AuthenticatedConnectRequest", "protocolId": 4,
            "apikey": game.api_key, "hmac": sign(&game.secret, &nonce),
            "platform": "Chrome", "os": "Linux",
        });
        if let Some(resume) = resume {
            hello["authToken"] = json!(resume.auth_token);
            hello["sessionId"] = json!(resume.session_id);
        }
        send(&mut ws, hello).await;
        let welcome = ws_next(&mut ws).await.expect("the session");
        assert!(welcome.get("error").is_none(), "{welcome}");
        Self {
            ws,
            session_id: welcome["sessionId"].as_str().expect("sessionId").to_owned(),
            next_id: 0,
            pushed: Vec::new(),
            module: true,
        }
    }

    /// Sends `fields` as `class` with a fresh requestId; returns the answer (which must
    /// echo the id and be of the matching response class).
    pub async fn call(&mut self, class: &str, fields: Value) -> Value {
        self.next_id += 1;
        let id = format!("1590177530798_{}", self.next_id);
        self.call_with_id(class, fields, &id).await
    }

    pub async fn call_with_id(&mut self, class: &str, mut fields: Value, id: &str) -> Value {
        fields["@class"] = json!(class);
        fields["requestId"] = json!(id);
        if self.module {
            fields["protocolId"] = json!(4);
            fields["sentBy"] = json!({"module": "0.3.0", "features": ["rooms"]});
        }
        send(&mut self.ws, fields).await;
        let answer = loop {
            let message = ws_next(&mut self.ws).await.expect("an answer");
            // Room chat may arrive between requests.
            if message["@class"] != ".RoomChatEvent" {
                break message;
            }
            self.pushed.push(message);
        };
        assert_eq!(answer["requestId"], id, "{answer}");
        assert_eq!(
            answer["@class"],
            class.replace("Request", "Response"),
            "{answer}"
        );
        answer
    }

    pub async fn authenticate(&mut self, game: &GameKeys, username: &str) -> Player {
        let answer = self
            .call(
                ".AuthenticationRequest",
                json!({"username": username, "userpass": "pw-secret", "apikey": game.api_key}),
            )
            .await;
        assert!(answer.get("error").is_none(), "{answer}");
        Player {
            token: answer["authToken"].as_str().unwrap().to_owned(),
            user_id: answer["userId"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn wage(&mut self, game: &GameKeys, player: &Player, wage: &str) -> Value {
        let mut fields = json!({"authToken": player.token, "gameId": game.game_id,
                                "userId": player.user_id, "apiKey": game.api_key, "wage": wage});
        if self.module {
            fields["currency"] = json!("ATH");
        }
        self.call(".SetWageRequest", fields).await
    }

    /// The next room chat pushed to this socket.
    pub async fn chat_event(&mut self) -> Value {
        if !self.pushed.is_empty() {
            return self.pushed.remove(0);
        }
        let message = ws_next(&mut self.ws).await.expect("a chat event");
        assert_eq!(message["@class"], ".RoomChatEvent", "{message}");
        message
    }

    pub async fn balance(&mut self, player: &Player) -> i64 {
        let answer = self
            .call(
                ".AccountDetailsRequest",
                json!({"authToken": player.token, "userId": player.user_id}),
            )
            .await;
        assert_eq!(answer["currency"], "ATH", "{answer}");
        answer["value"].as_i64().expect("value")
    }

    pub async fn finish(&mut self, player: &Player, play_id: &Value, score: i64) -> Value {
        self.call(
            ".FinishGameRequest",
            json!({"authToken": player.token, "userId": player.user_id, "playId": play_id,
                   "scoreValue": score}),
        )
        .await
    }

    pub async fn ladder(&mut self, game: &GameKeys, player: &Player) -> Value {
        let mut fields =
            json!({"authToken": player.token, "userId": player.user_id, "gameId": game.game_id});
        if self.module {
            fields["playId"] = json!(1);
            fields["typeId"] = json!("1");
        }
        self.call(".GameLadderRequest", fields).await
    }
}

pub struct Player {
    pub token: String,
    pub user_id: String,
}

pub async fn send(ws: &mut Ws, message: Value) {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}
