//! Wagers across crashes: the server binary is SIGKILLed at seeded random moments while
//! GARP clients stream wages and finishes and one-second periods resolve. After each kill
//! the database must hold every acknowledged wage, nothing half-applied, and a ledger
//! whose invariant holds.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::garp::{GameKeys, Garp, dev_game};
use common::{ChildServer, temp_data_dir};
use ecliptic::services::wallet;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const ITERATIONS: u64 = 20;
const PLAYERS: [&str; 3] = ["ann", "bob", "cyd"];

/// A wage the server acknowledged: (play id, user id, amount).
pub(crate) type Acked = (i64, String, i64);

/// Sends a request and reads its answer; `None` once the server is gone.
async fn call(garp: &mut Garp, class: &str, mut fields: Value) -> Option<Value> {
    garp.next_id += 1;
    fields["@class"] = json!(class);
    fields["requestId"] = json!(garp.next_id.to_string());
    garp.ws
        .send(Message::Text(fields.to_string().into()))
        .await
        .ok()?;
    loop {
        match tokio::time::timeout(common::WAIT, garp.ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// One player's stream: wage, sometimes finish, until the server dies. `started` hears
/// once the player is authenticated.
pub(crate) async fn play(
    http: std::net::SocketAddr,
    game: GameKeys,
    name: &str,
    seed: u64,
    acked: Arc<Mutex<Vec<Acked>>>,
    started: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut garp = Garp::connect(http, &game).await;
    let Some(auth) = call(
        &mut garp,
        ".AuthenticationRequest",
        json!({"username": name, "userpass": "pw-secret", "apikey": game.api_key}),
    )
    .await
    else {
        return;
    };
    let (token, user_id) = (auth["authToken"].clone(), auth["userId"].clone());
    if let Some(started) = started {
        let _ = started.send(());
    }
    loop {
        let wage: i64 = rng.random_range(1..50);
        let Some(placed) = call(
            &mut garp,
            ".SetWageRequest",
            json!({"authToken": token, "gameId": game.game_id, "userId": user_id,
                   "apiKey": game.api_key, "wage": wage.to_string()}),
        )
        .await
        else {
            return;
        };
        let Some(play_id) = placed["playid"].as_i64() else {
            continue; // refused (not enough coins): nothing to record
        };
        acked.lock().unwrap().push((
            play_id,
            user_id.as_str().unwrap_or_default().to_owned(),
            wage,
        ));
        if rng.random_bool(0.7) {
            let finished = call(
                &mut garp,
                ".FinishGameRequest",
                json!({"authToken": token, "userId": user_id, "playId": play_id,
                       "scoreValue": rng.random_range(0..1000)}),
            )
            .await;
            if finished.is_none() {
                return;
            }
        }
    }
}

/// What must hold in the database after any crash.
fn verify(data: &std::path::Path, acked: &[Acked], iteration: u64) {
    let store = common::database::open_store(data);
    verify_store(&store, acked, iteration);
    store.close();
}

/// What must hold in `store` after any crash: its integrity, the ledger's invariant,
/// every acknowledged wage, and no resolved period holding coins.
pub(crate) fn verify_store(store: &ecliptic::store::Store, acked: &[Acked], iteration: u64) {
    store
        .read_now(|conn| {
            if conn.dialect() == "sqlite" {
                let integrity: String = conn
                    .query_row("PRAGMA integrity_check", (), |r| r.get(0))
                    .unwrap();
                assert_eq!(integrity, "ok", "iteration {iteration}");
            }
            let audit = wallet::audit(conn).unwrap();
            assert!(
                audit.holds(),
                "iteration {iteration}: {:?}",
                audit.violations
            );
            for (play_id, user_id, wage) in acked {
                let (user, amount, move_id): (String, i64, i64) = conn
                    .query_row(
                        "SELECT user_id, wage, move_id FROM plays WHERE play_id = ?1",
                        [play_id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .unwrap_or_else(|e| {
                        panic!("iteration {iteration}: acknowledged play {play_id} lost: {e}")
                    });
                assert_eq!((&user, amount), (user_id, *wage), "play {play_id}");
                let debit: i64 = conn
                    .query_row(
                        "SELECT amount FROM wallet_entries WHERE move_id = ?1 AND account_id = ?2",
                        ecliptic::params![move_id, wallet::user_account(user.parse().unwrap())],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(debit, -wage, "play {play_id}'s wage move");
            }
            // A resolved period's pot is empty: paid out and carried, never half of it.
            let mut stmt = conn
                .prepare("SELECT game_id, seq FROM wager_periods WHERE resolved_at IS NOT NULL")
                .unwrap();
            let resolved: Vec<(String, i64)> = stmt
                .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for (game, seq) in resolved {
                let pot = wallet::balance(conn, &wallet::pot_account(&game, seq)).unwrap();
                assert_eq!(
                    pot, 0,
                    "iteration {iteration}: resolved period {seq} still holds {pot}"
                );
            }
            Ok(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_wages_survive_sigkill_and_periods_resolve_once() {
    let (tmp, data) = temp_data_dir();
    let config = tmp.path().join("ecliptic.toml");
    std::fs::write(&config, "[wagers]\nsignup_grant = 100000\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let args = ["--config", config.as_str()];

    let server = ChildServer::spawn(&data, &args);
    let mut game = dev_game(server.dev_tcp).await;
    game.update(json!({"period_hours": 1.0 / 3600.0})).await;
    let http = reqwest::Client::new();
    for name in PLAYERS {
        let (status, body) = common::post_json(
            &http,
            &server.url("/api/v1/auth/register"),
            &json!({"username": name, "password": "pw-secret"}),
            None,
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    server.kill_hard();

    let mut acked: Vec<Acked> = Vec::new();
    let mut resolutions = 0;
    for iteration in 0..ITERATIONS {
        let mut rng = StdRng::seed_from_u64(iteration);
        let server = ChildServer::spawn(&data, &args);
        let this_run = Arc::new(Mutex::new(Vec::new()));
        let streams: Vec<_> = PLAYERS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let game = game.keys.clone();
                tokio::spawn(play(
                    server.http,
                    game,
                    name,
                    iteration * 10 + i as u64,
                    this_run.clone(),
                    None,
                ))
            })
            .collect();
        // The random moment of the crash.
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2500))).await;
        server.kill_hard();
        for stream in streams {
            tokio::time::timeout(common::WAIT, stream)
                .await
                .expect("a client notices the crash")
                .expect("the client task");
        }
        acked.extend(this_run.lock().unwrap().drain(..));
        verify(&data, &acked, iteration);
        let store = common::database::open_store(&data);
        resolutions = store
            .read_now(|conn| {
                conn.query_row(
                    "SELECT COUNT(*) FROM wager_periods WHERE resolved_at IS NOT NULL",
                    (),
                    |r| r.get(0),
                )
            })
            .unwrap();
        store.close();
    }
    assert!(
        acked.len() > 20,
        "only {} wages were acknowledged",
        acked.len()
    );
    assert!(resolutions >= 3, "only {resolutions} periods resolved");
}
