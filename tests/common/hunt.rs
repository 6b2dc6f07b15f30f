//! A player who hunts pirates: an arena with one weak pirate, and a client loop that
//! tracks what it sees and flies at the nearest pirate, firing when it faces it.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::GameClient;

/// An arena: one station, and one weak pirate next to it that barely hurts. For
/// [`super::game_data_copy`].
pub fn arena(files: &mut BTreeMap<String, Value>) {
    files.insert(
        "systems/arena-1.json".into(),
        json!({
            "system_id": "arena-1", "name": "Arena", "radius": 3000,
            "home_station": "arena-dock",
            "stations": [{"station_id": "arena-dock", "name": "Arena Dock", "x": 0, "y": 0,
                "market": [{"commodity_id": "food", "price": 10, "stock": 100,
                            "target_stock": 100, "spread": 0.1}]}],
            "zones": [{"zone_id": "z_pit", "zone_type": "pirate_nest",
                "center": {"x": 350, "y": 0}, "radius": 120, "risk_level": 15,
                "security_level": 0, "profit_multiplier": 1.0, "pvp_allowed": false}]
        }),
    );
    let ships = files.get_mut("ships.json").unwrap();
    for class in ships["ship_classes"].as_array_mut().unwrap() {
        if class["class_id"] == "raider" {
            // Big, slow and fragile: one hit kills, and a lagging client can still aim.
            class["hull"] = json!(10);
            class["radius"] = json!(45);
            class["max_speed"] = json!(40);
            class["weapon"]["damage"] = json!(1);
        }
    }
}

/// What a hunting client knows of the world: every entity as last updated.
pub struct Hunt {
    pub me: String,
    pub seen: HashMap<String, Value>,
}

impl Hunt {
    /// Starts from `session.joined` and the `world.snapshot` after it.
    pub fn new(joined: &Value, snapshot: &Value) -> Self {
        let mut hunt = Self {
            me: joined["payload"]["ship_id"].as_str().unwrap().to_owned(),
            seen: HashMap::new(),
        };
        hunt.remember(&snapshot["payload"]["entities"]);
        hunt
    }

    fn remember(&mut self, list: &Value) {
        for e in list.as_array().into_iter().flatten() {
            let id = e["id"].as_str().unwrap().to_owned();
            let merged = self.seen.entry(id).or_insert_with(|| json!({}));
            for (k, v) in e.as_object().unwrap() {
                merged[k] = v.clone();
            }
        }
    }

    /// Flies at the nearest pirate, firing when facing it, until `done` accepts a
    /// message, which it returns. Fails after a gameplay loop's allowance.
    pub async fn until(
        &mut self,
        client: &mut GameClient,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        // A gameplay loop, not a single wait: allow it longer on a loaded machine.
        let deadline = tokio::time::Instant::now() + 3 * super::WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the hunt did not end in time"
            );
            let msg = client.recv().await;
            if done(&msg) {
                return msg;
            }
            if msg["type"] != "world.delta" {
                continue;
            }
            self.remember(&msg["payload"]["entity_updates"]);
            for id in msg["payload"]["entity_removed"].as_array().unwrap() {
                self.seen.remove(id.as_str().unwrap());
            }
            let (thrust, turn, fire) = self.steer();
            client.input(thrust, turn, fire, false).await;
        }
    }

    /// Controls toward the nearest pirate, leading its motion.
    fn steer(&self) -> (f64, f64, bool) {
        let Some(ship) = self.seen.get(&self.me) else {
            return (0.0, 0.0, false);
        };
        let at = |e: &Value, k: &str| e[k].as_f64().unwrap();
        let (sx, sy) = (at(ship, "x"), at(ship, "y"));
        let distance = |e: &Value| (at(e, "x") - sx).hypot(at(e, "y") - sy);
        let Some(target) = self
            .seen
            .values()
            .filter(|e| e["kind"] == "pirate")
            .min_by(|a, b| distance(a).total_cmp(&distance(b)))
        else {
            return (0.0, 0.0, false);
        };
        let d = distance(target);
        let lead = d / 800.0;
        let tx = at(target, "x") + at(target, "vx") * lead;
        let ty = at(target, "y") + at(target, "vy") * lead;
        let mut diff = (ty - sy).atan2(tx - sx) - at(ship, "r");
        while diff > std::f64::consts::PI {
            diff -= 2.0 * std::f64::consts::PI;
        }
        while diff < -std::f64::consts::PI {
            diff += 2.0 * std::f64::consts::PI;
        }
        let thrust = if d > 250.0 { 0.4 } else { 0.05 };
        (thrust, (diff * 3.0).clamp(-1.0, 1.0), diff.abs() < 0.12)
    }
}
