//! Luau scripts (docs/scripting.md): a server mod loaded from the data directory and
//! reloaded when edited, a room game uploaded with the command line and played to its end
//! by two `/game` clients, and hostile scripts stopped while another room plays on.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common;

use common::garp::{self, Garp, dev_game, register};
use common::{GameClient, LineClient, TestServer, WAIT, token_for, token_for_existing};
use serde_json::{Value, json};

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path)
}

/// Copies the files of `from` into `to` (one level of folders deep is enough here).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A zip of `files` (path, text): what a developer uploads.
fn zip_of(files: &[(String, String)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Every file under `dir`, with paths relative to it.
fn files_of(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
                continue;
            }
            let relative = entry.path().strip_prefix(dir).unwrap().to_owned();
            let name = relative.to_str().unwrap().replace('\\', "/");
            files.push((name, std::fs::read_to_string(entry.path()).unwrap()));
        }
    }
    files
}

/// A room game whose server script is `main`, taking `showdown.throw`-like messages.
fn room_zip(main: &str) -> Vec<u8> {
    zip_of(&[
        (
            "ecliptic-room.toml".into(),
            "entry = \"server/main.luau\"\nmessages = [\"hostile.poke\"]\n".into(),
        ),
        ("server/main.luau".into(), main.into()),
    ])
}

/// Sends `kind` until a reply satisfies `done` (a mod loads, or reloads, within a look at
/// the mods folder; until then its type is unknown); that reply. The server pushes
/// nothing when a mod loads, so the question is asked again, paced.
async fn ask_until(
    client: &mut GameClient,
    kind: &str,
    payload: Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        client.send(kind, payload.clone()).await;
        let reply = client.recv_reply().await;
        if done(&reply) {
            return reply;
        }
        if reply["type"] == "error" {
            assert_eq!(reply["payload"]["code"], "UNKNOWN_TYPE", "{reply}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind} never answered as wanted: {reply}"
        );
        // Paces the question; the answer, not the pause, is what the test waits on.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `ambush.stats` once the mod's answer satisfies `want`.
async fn stats_until(client: &mut GameClient, want: impl Fn(&Value) -> bool) -> Value {
    let reply = ask_until(client, "ambush.stats", json!({}), |r| {
        r["type"] == "ambush.stats" && want(&r["payload"])
    })
    .await;
    reply["payload"].clone()
}

async fn trade(client: &mut GameClient, kind: &str, commodity: &str, quantity: i64) -> Value {
    client
        .send(
            kind,
            json!({"station_id": "earth-orbit-station", "commodity_id": commodity, "quantity": quantity}),
        )
        .await;
    loop {
        let reply = client.recv_reply().await;
        if reply["type"] == "trade.result" {
            assert_eq!(reply["payload"]["ok"], true, "{kind}: {reply}");
            return reply;
        }
    }
}

/// Trades one unit of food at Earth; the very next answer, whatever it is.
async fn trade_answer(client: &mut GameClient, kind: &str) -> Value {
    client
        .send(
            kind,
            json!({"station_id": "earth-orbit-station", "commodity_id": "food", "quantity": 1}),
        )
        .await;
    client.recv_reply().await
}

/// Waits for an update of the player's world that shows entity `id`.
async fn until_seen(client: &mut GameClient, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "{id} never seen");
        let message = client.recv().await;
        let entities = message["payload"]["entities"]
            .as_array()
            .into_iter()
            .chain(message["payload"]["added"].as_array())
            .chain(message["payload"]["updated"].as_array())
            .flatten();
        for entity in entities {
            if entity["id"] == id {
                return entity.clone();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_mod_from_the_data_dir_changes_play_and_reloads_when_edited() {
    let server = TestServer::start_with(|c| {
        copy_dir(
            &example("mods/pirate-ambush"),
            &c.data_dir.join("mods").join("pirate-ambush"),
        );
        c.scripts.reload_ms = 100;
    })
    .await;
    let token = token_for(&server, "trader").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    client.join("sol-1").await;
    // The mod's own message type answers once it is loaded.
    let stats = stats_until(&mut client, |_| true).await;
    assert_eq!(stats, json!({"ambushes": 0, "threshold": 500}));

    // A small sale draws no one; a large one draws pirates to the station.
    trade(&mut client, "trade.buy", "food", 2).await;
    trade(&mut client, "trade.sell", "food", 2).await;
    trade(&mut client, "trade.buy", "electronics", 10).await;
    let sold = trade(&mut client, "trade.sell", "electronics", 10).await;
    let warning = client.recv_type("ambush.warning").await;
    let sale = warning["payload"]["sale"].as_i64().unwrap();
    assert!(sale >= 500, "{warning}");
    assert_eq!(
        warning["payload"]["message"],
        "Word of your sale got out: pirates are waiting outside."
    );
    assert!(sold["payload"]["credits"].is_i64());
    let pirates: Vec<String> = warning["payload"]["pirates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pirates.len(), 2, "{warning}");
    // They are real ships in the player's world.
    let seen = until_seen(&mut client, &pirates[0]).await;
    assert_eq!(seen["kind"], "pirate", "{seen}");
    assert_eq!(
        stats_until(&mut client, |s| s["ambushes"] == 1).await["threshold"],
        500
    );

    // The operator edits the script: it is reloaded, and its store kept the count.
    let script = server.config.data_dir.join("mods/pirate-ambush/main.luau");
    let text = std::fs::read_to_string(&script).unwrap();
    let edited = text
        .replace("local THRESHOLD = 500", "local THRESHOLD = 400")
        .replace(
            "Word of your sale got out: pirates are waiting outside.",
            "Reloaded: they know what you sold.",
        );
    assert_ne!(edited, text);
    std::fs::write(&script, edited).unwrap();
    let stats = stats_until(&mut client, |s| s["threshold"] == 400 && s["ambushes"] == 1).await;
    assert_eq!(stats, json!({"ambushes": 1, "threshold": 400}));
    trade(&mut client, "trade.buy", "electronics", 10).await;
    trade(&mut client, "trade.sell", "electronics", 10).await;
    let warning = client.recv_type("ambush.warning").await;
    assert_eq!(
        warning["payload"]["message"],
        "Reloaded: they know what you sold."
    );
    // A bad payload for the mod's type is still the protocol's error.
    client
        .send_text(r#"{"type":"ambush.stats","seq":99,"payload":"#)
        .await;
    let error = client.recv_reply().await;
    assert_eq!(error["payload"]["code"], "BAD_MESSAGE", "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mod_that_misbehaves_is_disabled_and_play_goes_on() {
    let server = TestServer::start_with(|c| {
        let mods = c.data_dir.join("mods");
        for (name, grants, script) in [
            // Spins forever every tick.
            ("spinner", "[]", "ecliptic.on('tick', function() while true do end end)"),
            // Spawns without the permission to.
            (
                "trespasser",
                "[\"messages\"]",
                "ecliptic.on('join', function(j) ecliptic.spawn_npc({instance = j.instance, x = 0, y = 0}) end)",
            ),
            // Answers its message until a client sends "boom".
            (
                "echo",
                "[\"messages\"]",
                "ecliptic.on_message('echo.say', function(p, m)\n  if m.text == 'boom' then error('asked to fail') end\n  return {text = m.text, from = p.name}\nend)\necliptic.on_message('echo.count', function() return 42 end)\necliptic.on_message('echo.quiet', function() return nil end)",
            ),
        ] {
            let dir = mods.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("mod.toml"),
                format!("name = \"{name}\"\nversion = \"1\"\nentry = \"main.luau\"\npermissions = {grants}\n"),
            )
            .unwrap();
            std::fs::write(dir.join("main.luau"), script).unwrap();
        }
        c.scripts.reload_ms = 100;
    })
    .await;
    let token = token_for(&server, "bystander").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    // The echo mod is loaded (and so, at the same look, are the others).
    let echoed = ask_until(&mut client, "echo.say", json!({"text": "hi"}), |r| {
        r["type"] == "echo.say"
    })
    .await;
    assert_eq!(
        echoed["payload"],
        json!({"text": "hi", "from": "bystander"})
    );
    // A reply that is not an object breaks no client: the caller hears the server's error.
    client.send("echo.count", json!({})).await;
    let refused = client.recv_reply().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"]["code"], "SERVER_ERROR", "{refused}");
    // Joining triggers the trespasser, which is stopped; the player is unharmed.
    client.join("sol-1").await;
    // A handler returning plain nil sends no reply: the next answer is the trade's.
    client.send("echo.quiet", json!({})).await;
    let bought = trade_answer(&mut client, "trade.buy").await;
    assert_eq!(bought["type"], "trade.result", "{bought}");
    // The failing handler: the caller hears the server's error, the mod is disabled, and
    // its type is unknown from then on.
    client.send("echo.say", json!({"text": "boom"})).await;
    let failed = client.recv_reply().await;
    assert_eq!(failed["payload"]["code"], "SERVER_ERROR", "{failed}");
    // One request, one answer: the next answer is the trade's.
    let sold = trade_answer(&mut client, "trade.sell").await;
    assert_eq!(sold["type"], "trade.result", "{sold}");
    client.send("echo.say", json!({"text": "hi"})).await;
    let gone = client.recv_reply().await;
    assert_eq!(gone["payload"]["code"], "UNKNOWN_TYPE", "{gone}");

    let metrics = server.get_text("/metrics").await;
    for (reason, count) in [("budget", 1), ("error", 2)] {
        let line =
            format!("ecliptic_script_stops_total{{kind=\"mod\",reason=\"{reason}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.contains("ecliptic_scripts_running{kind=\"mod\"} 0"),
        "{metrics}"
    );
    // The operator sees which mod stopped, and why.
    let admin = common::admin_token(&server, "root", "root-secret").await;
    let overview = server.get_auth("/api/v1/admin/overview", &admin).await;
    let states: Vec<(Value, Value)> = overview["scripts"]
        .as_array()
        .unwrap_or_else(|| panic!("{overview}"))
        .iter()
        .map(|s| (s["name"].clone(), s["state"].clone()))
        .collect();
    assert_eq!(
        states,
        [
            (json!("echo"), json!("stopped: main.luau:2: asked to fail")),
            (
                json!("spinner"),
                json!("stopped: the script ran past its time budget (5 ms per tick)")
            ),
            (
                json!("trespasser"),
                json!("stopped: ecliptic.spawn_npc needs the \"ships\" permission in mod.toml")
            ),
        ],
        "{overview}"
    );
}

/// A lobby connection logged in as `name` (registered over REST already).
async fn lobby_login(
    server: &TestServer,
    name: &str,
) -> (LineClient<tokio::net::TcpStream>, String) {
    common::line_session(server.handle().lobby_tcp_addr, "LOGIN_PLAYER", name).await
}

fn ok(reply: Value) -> Value {
    assert_eq!(reply["status"], "ok", "{reply}");
    reply["payload"].clone()
}

/// A mod that uses the rest of the API, each call answered to the player who asks.
const TOUR: &str = r#"
ecliptic.on("join", function(j)
	ecliptic.grant(j.user, 250, function(ok, credits)
		ecliptic.send(j.user, "tour.granted", { ok = ok, credits = credits })
	end)
end)
ecliptic.on_message("tour.go", function(player, payload)
	local mine
	for _, ship in ecliptic.ships("sol-1") do
		if ship.user == player.user then
			mine = ship
		end
	end
	if mine == nil then
		return nil, "join sol-1 first"
	end
	local hurt = ecliptic.damage(mine.id, 30)
	local mended = ecliptic.repair(mine.id, 10)
	local npc = ecliptic.spawn_npc({ instance = "sol-1", x = mine.x + 5000, y = mine.y })
	local removed = ecliptic.remove_npc(npc)
	ecliptic.charge(player.user, 1e9, function(ok, why)
		ecliptic.send(player.user, "tour.charged", { ok = ok, why = why })
	end)
	ecliptic.store_set("visits", payload.visit, function(ok)
		ecliptic.store_get("visits", function(_, visits)
			ecliptic.send(player.user, "tour.saved", { ok = ok, visits = visits })
		end)
	end)
	return {
		hull = { before = mine.hull, hurt = hurt, mended = mended },
		removed = removed,
		gone = ecliptic.ship(npc) == nil,
		stations = #ecliptic.stations("sol-1"),
		zones = #ecliptic.zones("sol-1"),
		heard = ecliptic.publish("tour.news", { from = player.name }),
		told = ecliptic.broadcast("tour.hello", { n = 1 }, "sol-1"),
		docked_at = mine.docked_at,
		credits = mine.credits,
	}
end)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_mod_reads_and_changes_the_world_through_the_whole_api() {
    let server = TestServer::start_with(|c| {
        let dir = c.data_dir.join("mods/tour");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("mod.toml"),
            "name = \"tour\"\nversion = \"1\"\nentry = \"main.luau\"\n\
             permissions = [\"ships\", \"credits\", \"messages\", \"comms\", \"store\"]\n",
        )
        .unwrap();
        std::fs::write(dir.join("main.luau"), TOUR).unwrap();
        c.scripts.reload_ms = 100;
    })
    .await;
    let token = token_for(&server, "tourist").await;
    let mut news = common::ws_connect(&format!(
        "ws://{}/ws?token={token}",
        server.handle().http_addr
    ))
    .await;
    common::ws_send(
        &mut news,
        &json!({"type": "Subscribe", "data": {"topics": ["tour.news"]}}),
    )
    .await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    // The mod is loaded once its message type is known; before joining it refuses.
    let refused = ask_until(&mut client, "tour.go", json!({"visit": 0}), |r| {
        r["payload"]["code"] == "BAD_MESSAGE"
    })
    .await;
    assert_eq!(refused["payload"]["message"], "join sol-1 first");
    // Joining: the mod grants 250 credits, saved before it hears so.
    client.join("sol-1").await;
    let granted = client.recv_type("tour.granted").await;
    assert_eq!(granted["payload"], json!({"ok": true, "credits": 5250}));

    client.send("tour.go", json!({"visit": 3})).await;
    // The broadcast goes out while the handler runs, before its reply.
    assert_eq!(
        client.recv_type("tour.hello").await["payload"],
        json!({"n": 1})
    );
    let tour = client.recv_type("tour.go").await;
    assert_eq!(
        tour["payload"],
        json!({"hull": {"before": 100, "hurt": 70, "mended": 80}, "removed": true, "gone": true,
               "stations": 2, "zones": 3, "heard": 1, "told": 1,
               "docked_at": "earth-orbit-station", "credits": 5250})
    );
    let charged = client.recv_type("tour.charged").await;
    assert_eq!(
        charged["payload"],
        json!({"ok": false, "why": "the player has too few credits"})
    );
    let saved = client.recv_type("tour.saved").await;
    assert_eq!(saved["payload"], json!({"ok": true, "visits": 3}));
    let heard = loop {
        let message = common::ws_next(&mut news).await.expect("a broadcast");
        if message["type"] == "Broadcast" {
            break message;
        }
    };
    assert_eq!(heard["data"]["topic"], "tour.news");
    assert_eq!(heard["data"]["payload"], json!({"from": "tourist"}));
    // The grant is saved: after a restart the pilot still has it.
    let server = server.restart().await;
    let mut again = GameClient::connect(&server).await;
    again
        .login(&token_for_existing(&server, "tourist").await)
        .await;
    let (_, snapshot) = again.join("sol-1").await;
    // Joining again grants again, once saved; the snapshot shows what was saved before.
    assert_eq!(snapshot["payload"]["you"]["credits"], 5250, "{snapshot}");
}

/// The lobby connections of a room's players: a player who leaves the lobby leaves the
/// room, so these stay open while the room plays.
type Seats = Vec<LineClient<tokio::net::TcpStream>>;

/// A started room of the game's latest version, hosted by `host` with `guests`; its id.
async fn started_room(
    server: &TestServer,
    game_id: &str,
    host: &str,
    guests: &[&str],
) -> (String, Seats) {
    let mut seats = Vec::new();
    let (mut lobby, token) = lobby_login(server, host).await;
    let created = ok(lobby
        .call("CREATE_ROOM", Some(&token), json!({"game_id": game_id}))
        .await);
    let room_id = created["room_id"].as_str().unwrap().to_owned();
    for guest in guests {
        let (mut their, their_token) = lobby_login(server, guest).await;
        ok(their
            .call("JOIN_ROOM", Some(&their_token), json!({"room_id": room_id}))
            .await);
        seats.push(their);
    }
    let started = ok(lobby
        .call("START_ROOM", Some(&token), json!({"room_id": room_id}))
        .await);
    assert_eq!(started["room_id"], room_id.as_str(), "{started}");
    seats.push(lobby);
    (room_id, seats)
}

/// A `/game` client of `name` in the room's world.
async fn in_room(server: &TestServer, name: &str, room_id: &str) -> GameClient {
    in_room_seeing(server, name, room_id).await.0
}

/// A `/game` client of `name` in the room's world, and the snapshot it got on joining.
async fn in_room_seeing(server: &TestServer, name: &str, room_id: &str) -> (GameClient, Value) {
    let mut client = GameClient::connect(server).await;
    client.login(&token_for_existing(server, name).await).await;
    let (_, snapshot) = client.join(room_id).await;
    (client, snapshot)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_room_game_is_played_to_its_end_and_its_scores_settle_the_wagers() {
    let server = garp::wager_server().await;
    let room = showdown_settles_the_wagers(&server).await;
    // Beside the space game, a room's world is the first star system, markets and all.
    assert!(
        !room["payload"]["markets"].as_array().unwrap().is_empty(),
        "{room}"
    );
    assert!(
        !room["payload"]["zones"].as_array().unwrap().is_empty(),
        "{room}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_the_space_game_hosts_an_uploaded_room_game_to_its_end() {
    let server = TestServer::start_full(
        |c| c.wagers.signup_grant = garp::GRANT,
        ecliptic::Server::without_space_game,
    )
    .await;
    // No star systems run here.
    let mut pilot = GameClient::connect(&server).await;
    pilot.login(&token_for(&server, "pilot").await).await;
    pilot
        .send("session.join_system", json!({"system_id": "sol-1"}))
        .await;
    let refused = pilot.recv_reply().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"],
        json!({"code": "UNKNOWN_SYSTEM", "message": "no system or room named \"sol-1\""})
    );
    // The same game, played to its end and settled, in the platform's blank arena.
    let room = showdown_settles_the_wagers(&server).await;
    assert_eq!(room["payload"]["markets"], json!([]), "{room}");
    assert_eq!(room["payload"]["zones"], json!([]), "{room}");
    let you = &room["payload"]["you"]["ship_id"];
    let ship = room["payload"]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| &e["id"] == you)
        .unwrap_or_else(|| panic!("ana's ship in {room}"));
    assert_eq!((&ship["x"], &ship["y"]), (&json!(0), &json!(0)), "{room}");
}

/// Uploads the showdown example, has two players wager on it through GARP and play it to
/// its end in a lobby room over `/game`, then checks the plays were finished with their
/// scores and the period paid the ladder. The room world's snapshot, as ana saw it.
async fn showdown_settles_the_wagers(server: &TestServer) -> Value {
    let http = server.handle().http_addr;
    let mut game = dev_game(server.handle().dev_tcp_addr).await;
    // Ten-second wager periods, so the pot is paid out during the test.
    const PERIOD_SECS: u64 = 10;
    game.update(json!({"period_hours": PERIOD_SECS as f64 / 3600.0}))
        .await;

    // The developer zips the example and uploads it with the command line.
    let work = tempfile::tempdir().unwrap();
    let build = work.path().join("showdown.zip");
    std::fs::write(&build, zip_of(&files_of(&example("rooms/showdown")))).unwrap();
    let out = common::database::ecliptic_command(&server.config.data_dir)
        .args([
            "dev",
            "upload",
            "--game",
            &game.game_id,
            "--version",
            "1.0.0",
        ])
        .arg(&build)
        .args(["--dev-tcp", &server.handle().dev_tcp_addr.to_string()])
        .env("ECLIPTIC_USER", &game.username)
        .env("ECLIPTIC_PASSWORD", "pw-secret")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Two players wager on it through GARP, early enough in a period (they lie on a grid
    // from the Unix epoch) that the match ends before the period does.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_period =
        std::time::Duration::from_millis(now.as_millis() as u64 % (PERIOD_SECS * 1000));
    let left = std::time::Duration::from_secs(PERIOD_SECS) - into_period;
    if left < std::time::Duration::from_secs(7) {
        // Waits for the wall clock to reach the next period, not for an event.
        tokio::time::sleep(left + std::time::Duration::from_millis(100)).await;
    }
    let mut players = Vec::new();
    let mut wagers = Garp::connect(http, &game).await;
    for name in ["ana", "ben"] {
        register(server, name).await;
        let player = wagers.authenticate(&game, name).await;
        let placed = wagers.wage(&game, &player, "10").await;
        assert_eq!(placed["status"], "OK", "{placed}");
        players.push((player, placed["playid"].clone()));
    }

    // The lobby lists it; ana opens a room, ben joins, ana starts it.
    register(server, "cleo").await;
    let (mut lobby, token) = lobby_login(server, "cleo").await;
    let games = ok(lobby.call("LIST_GAMES", Some(&token), json!({})).await);
    let listed = games["games"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["game_id"] == game.game_id.as_str())
        .cloned()
        .expect("the game is listed");
    assert_eq!(listed["latest_version"], "1.0.0", "{listed}");
    let (room_id, _seats) = started_room(server, &game.game_id, "ana", &["ben"]).await;

    // Both play in the room's world; the match begins once both are there.
    let (mut ana, room) = in_room_seeing(server, "ana", &room_id).await;
    let mut ben = in_room(server, "ben", &room_id).await;
    let ana_id = players[0].0.user_id.clone();
    let ben_id = players[1].0.user_id.clone();
    let rounds = [
        ("rock", "scissors", &ana_id),
        ("rock", "paper", &ben_id),
        ("paper", "rock", &ana_id),
    ];
    for (n, (a, b, winner)) in rounds.into_iter().enumerate() {
        let round = ana.recv_type("showdown.round").await;
        assert_eq!(round["payload"], json!({"round": n + 1, "of": 3}));
        assert_eq!(
            ben.recv_type("showdown.round").await["payload"]["round"],
            n + 1
        );
        if n == 0 {
            // A hand that is not one: the room says so, and the round waits.
            ana.send("showdown.throw", json!({"hand": "lizard"})).await;
            let invalid = ana.recv_type("showdown.invalid").await;
            assert_eq!(
                invalid["payload"]["reason"],
                "hand must be rock, paper or scissors"
            );
        }
        ana.send("showdown.throw", json!({"hand": a})).await;
        ben.send("showdown.throw", json!({"hand": b, "taunt": "ignored"}))
            .await;
        let result = ana.recv_type("showdown.result").await;
        assert_eq!(result["payload"]["round"], n + 1, "{result}");
        assert_eq!(result["payload"]["winner"], winner.as_str(), "{result}");
        assert_eq!(result["payload"]["throws"][&ana_id], a);
        assert_eq!(result["payload"]["throws"][&ben_id], b);
    }
    let ended = ana.recv_type("room.ended").await;
    assert_eq!(
        ended["payload"],
        json!({"room_id": room_id, "game_id": game.game_id, "results": [
            {"user_id": ana_id, "name": "ana", "score": 200, "play_id": players[0].1},
            {"user_id": ben_id, "name": "ben", "score": 100, "play_id": players[1].1},
        ]})
    );
    assert_eq!(
        ben.recv_type("room.ended").await["payload"],
        ended["payload"]
    );

    // The room has left the lobby.
    let rooms = ok(lobby.call("LIST_ROOMS", Some(&token), json!({})).await);
    assert!(
        !rooms["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["room_id"] == room_id.as_str()),
        "{rooms}"
    );
    // Each wager's play is finished with its player's score: the GARP ladder ranks them
    // (the asker's own line first, as the reference does).
    let ladder = wagers.ladder(&game, &players[1].0).await;
    let lines: Vec<(Value, Value, Value)> = ladder["ladder"]
        .as_array()
        .unwrap_or_else(|| panic!("{ladder}"))
        .iter()
        .map(|s| {
            (
                s["position"].clone(),
                s["score"].clone(),
                s["displayname"].clone(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (json!("2"), json!("100"), json!("The ben")),
            (json!("1"), json!("200"), json!("The ana")),
            (json!("2"), json!("100"), json!("The ben")),
        ],
        "{ladder}"
    );
    assert_eq!(ladder["totalGames"], 2, "{ladder}");
    // A play finished by the room cannot be finished again by the client.
    let again = wagers.finish(&players[0].0, &players[0].1, 999).await;
    assert_eq!(garp::details(&again), "Play already finished.", "{again}");
    // When the period resolves, the pot of 20 pays the ladder: 50% to ana, 25% to ben.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let balances = [
            wagers.balance(&players[0].0).await,
            wagers.balance(&players[1].0).await,
        ];
        if balances == [garp::GRANT - 10 + 10, garp::GRANT - 10 + 5] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the period never paid out: {balances:?}"
        );
        // Paces the question; the server pushes nothing when a period resolves.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // And the game's leaderboard has them; it is read with a player's token.
    let (status, _) = server
        .get_json(&format!("/api/v1/leaderboards/{}", game.game_id))
        .await;
    assert_eq!(status, 401);
    let ben_token = token_for_existing(server, "ben").await;
    let board = server
        .get_auth(
            &format!("/api/v1/leaderboards/{}?category=global", game.game_id),
            &ben_token,
        )
        .await;
    let lines: Vec<(Value, Value)> = board["leaderboard"]
        .as_array()
        .unwrap_or_else(|| panic!("{board}"))
        .iter()
        .map(|l| (l["player_name"].clone(), l["score"].clone()))
        .collect();
    assert_eq!(
        lines,
        [
            (json!("The ana"), json!(200)),
            (json!("The ben"), json!(100))
        ],
        "{board}"
    );
    room
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_room_scripts_are_stopped_while_another_room_plays_on() {
    // Small VMs and a roomy budget, so the allocation bomb meets its memory limit before
    // its time runs out even on a loaded machine (fresh pages cost CPU time to fault in).
    let server = TestServer::start_with(|c| {
        c.scripts.memory_mib = 4;
        c.scripts.budget_ms = 50.0;
    })
    .await;
    let mut host_game = dev_game(server.handle().dev_tcp_addr).await;
    let mut good_game = dev_game(server.handle().dev_tcp_addr).await;
    good_game
        .publish("1.0.0", &zip_of(&files_of(&example("rooms/showdown"))))
        .await;
    for name in ["cara", "dan", "eve"] {
        register(&server, name).await;
    }
    // A good room: both players in, round 1 begun.
    let (good_room, _good_seats) =
        started_room(&server, &good_game.game_id, "cara", &["dan"]).await;
    let mut cara = in_room(&server, "cara", &good_room).await;
    let mut dan = in_room(&server, "dan", &good_room).await;
    assert_eq!(
        cara.recv_type("showdown.round").await["payload"]["round"],
        1
    );
    dan.recv_type("showdown.round").await;

    // Each hostile script misbehaves once a player is in its room.
    let hostile = [
        (
            "budget",
            "while true do end",
            "ran past its time budget (50 ms per tick)",
        ),
        (
            "memory",
            "local t, s = {}, 'x' while true do s = s .. s table.insert(t, s) end",
            "ran out of memory",
        ),
        (
            "error",
            "error('the rules are broken')",
            "main.luau:3: the rules are broken",
        ),
        ("error", "io.open('/etc/passwd')", "main.luau:3: "),
        ("error", "os.execute('true')", "main.luau:3: "),
        (
            "error",
            "require('/etc/passwd')",
            "no module \"/etc/passwd\" in this package",
        ),
    ];
    for (n, (_, misdeed, why)) in hostile.iter().enumerate() {
        let script = format!(
            "local here = false\nreturn {{ join = function() here = true end, loop = function()\n  if here then {misdeed} end\nend }}\n"
        );
        host_game
            .publish(&format!("1.0.{n}"), &room_zip(&script))
            .await;
        let (room_id, _seats) = started_room(&server, &host_game.game_id, "eve", &[]).await;
        let mut eve = in_room(&server, "eve", &room_id).await;
        let ended = eve.recv_reply().await;
        assert_eq!(ended["type"], "error", "{ended}");
        assert_eq!(ended["payload"]["code"], "ROOM_ENDED", "{ended}");
        let message = ended["payload"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("room {room_id} ended: its script stopped: "))
                && message.contains(why),
            "{misdeed} in {room_id}: {message}"
        );
        assert_eq!(common::close_code(&mut eve.ws).await, Some(1000));
    }
    // A build whose room script does not compile is refused with the file and line, and
    // leaves no version behind; one whose script fails in `init` cannot start a room.
    let broken = room_zip("return {\n  loop = function(\n}");
    let refused = upload_end(&mut host_game, "2.0.0", &broken).await;
    assert_eq!(refused["code"], 100, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("server/main.luau:3:"), "{refused}");
    let (token, game_id) = (host_game.token.clone(), host_game.game_id.clone());
    let versions = garp::dev_call(
        &mut host_game.dev,
        "LIST_VERSIONS",
        Some(&token),
        json!({"game_id": game_id}),
    )
    .await;
    assert!(!versions.to_string().contains("2.0.0"), "{versions}");
    host_game
        .publish(
            "2.0.1",
            &room_zip("return { init = function() error('no seats') end }"),
        )
        .await;
    let (mut lobby, token) = lobby_login(&server, "eve").await;
    let created = ok(lobby
        .call(
            "CREATE_ROOM",
            Some(&token),
            json!({"game_id": host_game.game_id}),
        )
        .await);
    let start = lobby
        .call(
            "START_ROOM",
            Some(&token),
            json!({"room_id": created["room_id"]}),
        )
        .await;
    assert_eq!(start["code"], 105, "{start}");
    assert!(
        start["message"]
            .as_str()
            .unwrap()
            .contains("the room's script failed to start: server/main.luau:1: no seats"),
        "{start}"
    );

    let metrics = server.get_text("/metrics").await;
    for (reason, count) in [("budget", 1), ("memory", 1), ("error", 5)] {
        let line =
            format!("ecliptic_script_stops_total{{kind=\"room\",reason=\"{reason}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // No tick waited on a hostile script much beyond its budget.
    let (_, health) = server.get_json("/healthz").await;
    let longest = health["tick_max_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("{health}"));
    assert!(longest < 1_000_000, "{health}");

    // A player flooding the room is slowed down, not able to spend its script's budget.
    let flood: Vec<String> = (0..100)
        .map(|n| {
            json!({"type": "showdown.throw", "seq": 1000 + n, "payload": {"hand": "lizard"}})
                .to_string()
        })
        .collect();
    for frame in &flood {
        cara.send_text(frame).await;
    }
    // Every throw of the flood is answered: judged invalid, or counted in a tick's one
    // COOLDOWN. Once all are, the good room's next throws arrive in a tick of their own.
    let (mut answered, mut slowed) = (0, None);
    while answered < flood.len() {
        let message = cara.recv_reply().await;
        if message["type"] == "error" {
            assert_eq!(message["payload"]["code"], "COOLDOWN", "{message}");
            let text = message["payload"]["message"].as_str().unwrap_or_default();
            let dropped: usize = text
                .rsplit("; ")
                .next()
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("how many were dropped: {message}"));
            answered += dropped;
            slowed = Some(message);
        } else {
            assert_eq!(message["type"], "showdown.invalid", "{message}");
            answered += 1;
        }
    }
    assert_eq!(answered, flood.len());
    let slowed = slowed.expect("the flood was slowed down");
    assert!(
        slowed["payload"]["message"]
            .as_str()
            .unwrap()
            .starts_with("at most 16 script messages a tick; "),
        "{slowed}"
    );

    // The good room played on all along: its match finishes.
    for _ in 0..3 {
        cara.send("showdown.throw", json!({"hand": "paper"})).await;
        dan.send("showdown.throw", json!({"hand": "rock"})).await;
        let result = cara.recv_type("showdown.result").await;
        let winner = result["payload"]["winner"].as_str().unwrap().to_owned();
        assert_eq!(result["payload"]["throws"][&winner], "paper", "{result}");
    }
    let ended = dan.recv_type("room.ended").await;
    assert_eq!(ended["payload"]["results"][0]["name"], "cara", "{ended}");
    assert_eq!(ended["payload"]["results"][0]["score"], 300, "{ended}");
    assert_eq!(ended["payload"]["results"][1]["score"], 0, "{ended}");
}

/// Uploads `bytes` as `version` in one chunk; the answer to `UPLOAD_END`.
async fn upload_end(game: &mut garp::DevGame, version: &str, bytes: &[u8]) -> Value {
    use base64::Engine;
    use sha2::Digest;
    let token = game.token.clone();
    let begin = garp::dev_call(
        &mut game.dev,
        "UPLOAD_BEGIN",
        Some(&token),
        json!({"game_id": game.keys.game_id, "version": version, "size_bytes": bytes.len(),
               "checksum": hex::encode(sha2::Sha256::digest(bytes))}),
    )
    .await;
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    let chunk = json!({"upload_id": begin["upload_id"], "seq": 0, "data_b64": data});
    garp::dev_call(&mut game.dev, "UPLOAD_CHUNK", Some(&token), chunk).await;
    game.dev
        .call(
            "UPLOAD_END",
            Some(&token),
            json!({"upload_id": begin["upload_id"]}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launched_session_of_a_scripted_game_runs_its_rules_for_one() {
    let data = tempfile::tempdir().unwrap();
    common::game_data_copy(data.path(), |_| {});
    let data_dir = data.path().to_owned();
    let server = TestServer::start_with(|c| c.game.data_dir = Some(data_dir)).await;
    let game = dev_game(server.handle().dev_tcp_addr).await;
    // The operator adds achievements for the new game's matches, and restarts.
    let builtin: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/achievements.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut achievements = builtin["achievements"].as_array().unwrap().clone();
    for (id, stat, at_least) in [("solo-first", "matches", 1), ("solo-twice", "wins", 2)] {
        achievements.push(
            json!({"achievement_id": id, "game_id": game.game_id, "name": id,
                                 "description": "a room game's achievement", "stat": stat,
                                 "at_least": at_least}),
        );
    }
    std::fs::write(
        data.path().join("achievements.json"),
        json!({"achievements": achievements}).to_string(),
    )
    .unwrap();
    let server = server.restart().await;
    let mut game = game.reconnect(server.handle().dev_tcp_addr).await;
    let solo = "return {
        join = function(room, player) ecliptic.send(player.id, 'solo.hello', { room = room.id }) end,
        loop = function(room, tick, inputs)
            for _, input in inputs do ecliptic.finish({ [input.player] = input.payload.score }) end
        end,
    }";
    let zip = zip_of(&[
        (
            "ecliptic-room.toml".into(),
            "entry = \"server/main.luau\"\nmessages = [\"solo.done\"]\n".into(),
        ),
        ("server/main.luau".into(), solo.into()),
    ]);
    game.publish("1.0.0", &zip).await;
    let token = token_for(&server, "loner").await;
    let (status, launched) = server
        .post_auth(
            &format!("/api/v1/games/{}/launch", game.game_id),
            &token,
            &json!({"mode": "stream"}),
        )
        .await;
    assert_eq!(status, 200, "{launched}");
    let session = launched["session_id"]
        .as_str()
        .or_else(|| launched["data"]["session_id"].as_str())
        .unwrap_or_else(|| panic!("{launched}"))
        .to_owned();
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    client.join(&session).await;
    let hello = client.recv_type("solo.hello").await;
    assert_eq!(hello["payload"], json!({"room": session}));
    client.send("solo.done", json!({"score": 7})).await;
    let ended = client.recv_type("room.ended").await;
    assert_eq!(ended["payload"]["room_id"], session.as_str());
    assert_eq!(ended["payload"]["game_id"], game.game_id.as_str());
    assert_eq!(ended["payload"]["results"][0]["score"], 7);
    // Its first match unlocked the game's first achievement (saved with the results).
    let unlocked = server
        .get_auth(
            &format!("/api/v1/achievements?game_id={}", game.game_id),
            &token,
        )
        .await;
    let states: Vec<(Value, Value)> = unlocked["achievements"]
        .as_array()
        .unwrap_or_else(|| panic!("{unlocked}"))
        .iter()
        .map(|a| (a["achievement_id"].clone(), a["unlocked"].clone()))
        .collect();
    assert_eq!(
        states,
        [
            (json!("solo-first"), json!(true)),
            (json!("solo-twice"), json!(false))
        ],
        "{unlocked}"
    );
    // The session is over: stopping it again finds nothing.
    let (status, stopped) = server
        .post_auth(
            &format!("/api/v1/games/sessions/{session}/stop"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 404, "{stopped}");
}

/// Twelve harmless mods, loaded together by twenty servers in turn: none may be stopped for
/// its budget (or anything else) while it loads.
#[tokio::test(flavor = "multi_thread")]
async fn many_mods_loading_together_are_never_stopped() {
    for start in 0..20 {
        let server = TestServer::start_with(|c| {
            let mods = c.data_dir.join("mods");
            for n in 0..12 {
                let name = format!("quiet{n}");
                let dir = mods.join(&name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(
                    dir.join("mod.toml"),
                    format!("name = \"{name}\"\nversion = \"1\"\nentry = \"main.luau\"\npermissions = [\"messages\"]\n"),
                )
                .unwrap();
                let script = format!(
                    "local count = 0\necliptic.on_message('{name}.ping', function() count = count + 1; return {{n = count}} end)\necliptic.on_message('{name}.stats', function() return {{n = count}} end)\necliptic.on('join', function() count = count + 1 end)\n"
                );
                std::fs::write(dir.join("main.luau"), script).unwrap();
            }
            c.scripts.reload_ms = 50;
        })
        .await;
        let deadline = tokio::time::Instant::now() + common::WAIT;
        loop {
            let metrics = server.get_text("/metrics").await;
            assert!(
                !metrics.contains("ecliptic_script_stops_total{kind=\"mod\""),
                "start {start}: a mod was stopped while loading:\n{}",
                metrics
                    .lines()
                    .filter(|l| l.contains("script"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            if metrics.contains("ecliptic_scripts_running{kind=\"mod\"} 12") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "start {start}: the mods did not all load"
            );
        }
        server.shutdown().await;
    }
}

/// Writes a mod that may take `/game` messages into `mods/<name>`.
fn write_mod(mods: &Path, name: &str, script: &str) {
    let dir = mods.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mod.toml"),
        format!("name = \"{name}\"\nversion = \"1\"\nentry = \"main.luau\"\npermissions = [\"messages\"]\n"),
    )
    .unwrap();
    std::fs::write(dir.join("main.luau"), script).unwrap();
}

/// Each mod's state in the operator's overview, once `name` is listed in a state that
/// satisfies `wanted`.
async fn script_states_until(
    server: &TestServer,
    admin: &str,
    name: &str,
    wanted: impl Fn(&str) -> bool,
) -> std::collections::BTreeMap<String, String> {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let overview = server.get_auth("/api/v1/admin/overview", admin).await;
        let states: std::collections::BTreeMap<String, String> = overview["scripts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let field = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                (field("name"), field("state"))
            })
            .collect();
        if states.get(name).is_some_and(|s| wanted(s)) {
            return states;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never got there: {states:?}"
        );
        // Paces the question; the server pushes nothing when a mod loads.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A message type has one owner: a second mod taking it does not start, naming the first;
/// a room game may not declare a mod's type (its upload is refused, naming the mod); and a
/// room game's declared types are reserved for its rooms.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_type_has_exactly_one_owner() {
    let server = TestServer::start_with(|c| {
        let mods = c.data_dir.join("mods");
        for name in ["alpha", "beta"] {
            write_mod(
                &mods,
                name,
                &format!("ecliptic.on_message('owner.stats', function(p, m) return {{who = '{name}', secret = m.secret}} end)"),
            );
        }
        c.scripts.reload_ms = 100;
    })
    .await;
    let admin = common::admin_token(&server, "root", "root-secret").await;
    let states = script_states_until(&server, &admin, "beta", |s| !s.is_empty()).await;
    let stopped: Vec<(&String, &String)> = states
        .iter()
        .filter(|(_, s)| s.starts_with("stopped"))
        .collect();
    assert_eq!(stopped.len(), 1, "{states:?}");
    let (loser, why) = stopped[0];
    let winner = if loser == "alpha" { "beta" } else { "alpha" };
    assert!(
        why.contains(&format!(
            "message type \"owner.stats\" is taken by mod {winner}"
        )),
        "{why}"
    );

    // One message, one answer, from the one owner.
    let token = token_for(&server, "asker").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    client.send("owner.stats", json!({"secret": "s3"})).await;
    let reply = client.recv_reply().await;
    assert_eq!(
        reply["payload"],
        json!({"who": winner, "secret": "s3"}),
        "{reply}"
    );
    client.join("sol-1").await;
    let next = trade_answer(&mut client, "trade.buy").await;
    assert_eq!(next["type"], "trade.result", "{next}");

    // A room game may not take the mod's type.
    let mut game = dev_game(server.handle().dev_tcp_addr).await;
    let taken = zip_of(&[
        (
            "ecliptic-room.toml".into(),
            "entry = \"server/main.luau\"\nmessages = [\"owner.stats\"]\n".into(),
        ),
        (
            "server/main.luau".into(),
            "return { loop = function() end }".into(),
        ),
    ]);
    let refused = upload_end(&mut game, "1.0.0", &taken).await;
    let message = common::assert_line_error(&refused, 104);
    assert!(
        message.contains(&format!("\"owner.stats\" is taken by mod {winner}")),
        "{message}"
    );

    // Its own type it may; from then on no mod may take it.
    let published = upload_end(
        &mut game,
        "1.0.0",
        &room_zip("return { loop = function() end }"),
    )
    .await;
    assert_eq!(published["status"], "ok", "{published}");
    let mods = server.config.data_dir.join("mods");
    write_mod(
        &mods,
        "gamma",
        "ecliptic.on_message('hostile.poke', function() return {} end)",
    );
    let states = script_states_until(&server, &admin, "gamma", |s| s.starts_with("stopped")).await;
    assert!(
        states["gamma"].contains(&format!(
            "\"hostile.poke\" is reserved for the rooms of game {}",
            game.keys.game_id
        )),
        "{states:?}"
    );
}

/// Starting a script is not a tick: loading may cost more than one tick's budget (here a
/// mod spends 3 ms of CPU time starting, against a 1 ms tick budget) without the mod
/// being stopped, while its handlers still answer within their budget.
#[tokio::test(flavor = "multi_thread")]
async fn a_mod_whose_start_costs_more_than_a_tick_budget_still_starts() {
    let server = TestServer::start_with(|c| {
        write_mod(
            &c.data_dir.join("mods"),
            "warmup",
            "local started = os.clock()\nwhile os.clock() - started < 0.003 do end\necliptic.on_message('warmup.ready', function() return {ready = true} end)",
        );
        c.scripts.budget_ms = 1.0;
        c.scripts.reload_ms = 100;
    })
    .await;
    let token = token_for(&server, "patient").await;
    let mut client = GameClient::connect(&server).await;
    client.login(&token).await;
    let ready = ask_until(&mut client, "warmup.ready", json!({}), |r| {
        r["type"] == "warmup.ready" || r["payload"]["code"] != "UNKNOWN_TYPE"
    })
    .await;
    assert_eq!(ready["payload"], json!({"ready": true}), "{ready}");
}
