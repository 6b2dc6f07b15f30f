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
        json!({"username": name, "password": "pw"}),
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
    }
}

impl DevGame {
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
        send(&mut self.ws, fields).await;
        let answer = ws_next(&mut self.ws).await.expect("an answer");
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
                json!({"username": username, "userpass": "pw", "apikey": game.api_key}),
            )
            .await;
        assert!(answer.get("error").is_none(), "{answer}");
        Player {
            token: answer["authToken"].as_str().unwrap().to_owned(),
            user_id: answer["userId"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn wage(&mut self, game: &GameKeys, player: &Player, wage: &str) -> Value {
        self.call(
            ".SetWageRequest",
            json!({"authToken": player.token, "gameId": game.game_id, "userId": player.user_id,
                   "apiKey": game.api_key, "wage": wage}),
        )
        .await
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
        self.call(
            ".GameLadderRequest",
            json!({"authToken": player.token, "userId": player.user_id, "gameId": game.game_id}),
        )
        .await
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
