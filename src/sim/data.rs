//! The game's data: commodities, ship classes, rules and star systems, as JSON files.
//!
//! The default set in `data/` is embedded in the binary, so the server runs from any
//! directory; `game.data_dir` points at another set. Everything is validated at start, and
//! an error names the file and the field (`systems/sol-1.json: stations[1].market[0]
//! .commodity_id: unknown commodity "spice"`), so a designer can fix it without reading code.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use crate::services::play::{Point, ZoneDef};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commodity {
    pub commodity_id: String,
    pub name: String,
    pub base_price: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeaponDef {
    pub cooldown_ms: u32,
    pub damage: u32,
    pub projectile_speed: f32,
    pub lifetime_ms: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipClass {
    pub class_id: String,
    pub hull: u32,
    pub fuel: f32,
    pub cargo_capacity: u32,
    pub radius: f32,
    /// Acceleration at full thrust, units/s².
    pub thrust: f32,
    pub max_speed: f32,
    /// Radians per second at full turn.
    pub turn_rate: f32,
    /// Fuel burnt per second at full thrust.
    pub fuel_per_second: f32,
    pub weapon: WeaponDef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ships {
    pub player_class: String,
    pub pirate_class: String,
    pub ship_classes: Vec<ShipClass>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub starting_credits: i64,
    pub respawn_delay_ms: u32,
    pub repair_cost_per_hp: i64,
    /// How close to a station's centre a ship must be to dock.
    pub dock_radius: f32,
    /// How slow a ship must be to dock.
    pub dock_max_speed: f32,
    /// Trades and repairs allowed per second per player (refilled; bursts of twice this).
    pub actions_per_second: u32,
    pub pirate_aggro_radius: f32,
    /// Pirates flee below this fraction of their hull.
    pub pirate_flee_hull_fraction: f32,
    pub pirate_respawn_ms: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketEntry {
    pub commodity_id: String,
    /// The station's price when its stock is at target.
    pub price: u32,
    pub stock: u32,
    pub target_stock: u32,
    /// Buy/sell spread as a fraction of the price (0.1 = buy 5% over, sell 5% under).
    pub spread: f32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationDef {
    pub station_id: String,
    pub name: String,
    pub x: f32,
    pub y: f32,
    pub market: Vec<MarketEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDef {
    pub system_id: String,
    pub name: String,
    /// Ships are kept within this distance of the origin.
    pub radius: f32,
    pub home_station: String,
    pub stations: Vec<StationDef>,
    pub zones: Vec<ZoneDef>,
}

/// Everything the game reads from `data/`, validated.
#[derive(Debug, Clone)]
pub struct GameData {
    pub commodities: Vec<Commodity>,
    pub ships: Ships,
    pub rules: Rules,
    pub systems: Vec<SystemDef>,
}

const EMBEDDED_COMMODITIES: &str = include_str!("../../data/commodities.json");
const EMBEDDED_SHIPS: &str = include_str!("../../data/ships.json");
const EMBEDDED_RULES: &str = include_str!("../../data/rules.json");
const EMBEDDED_SYSTEMS: &[(&str, &str)] = &[
    (
        "systems/sol-1.json",
        include_str!("../../data/systems/sol-1.json"),
    ),
    (
        "systems/vega-2.json",
        include_str!("../../data/systems/vega-2.json"),
    ),
];

fn parse<T: DeserializeOwned>(file: &str, text: &str) -> anyhow::Result<T> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        anyhow::anyhow!("{file}: {path}: {}", e.into_inner())
    })
}

impl GameData {
    /// The data set built into the binary.
    pub fn embedded() -> anyhow::Result<Self> {
        let systems = EMBEDDED_SYSTEMS
            .iter()
            .map(|(file, text)| parse(file, text))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Self::validated(
            parse("commodities.json", EMBEDDED_COMMODITIES)?,
            parse("ships.json", EMBEDDED_SHIPS)?,
            parse("rules.json", EMBEDDED_RULES)?,
            systems,
        )
    }

    /// A data set from a directory laid out like `data/`.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| -> anyhow::Result<String> {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(name).display()))
        };
        let mut systems = Vec::new();
        let systems_dir = dir.join("systems");
        let mut files: Vec<_> = std::fs::read_dir(&systems_dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", systems_dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for path in files {
            let name = format!(
                "systems/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            systems.push(parse(&name, &text)?);
        }
        Self::validated(
            parse("commodities.json", &read("commodities.json")?)?,
            parse("ships.json", &read("ships.json")?)?,
            parse("rules.json", &read("rules.json")?)?,
            systems,
        )
    }

    fn validated(
        commodities: Vec<Commodity>,
        ships: Ships,
        rules: Rules,
        systems: Vec<SystemDef>,
    ) -> anyhow::Result<Self> {
        let data = Self {
            commodities,
            ships,
            rules,
            systems,
        };
        data.validate()?;
        Ok(data)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut commodity_ids = HashSet::new();
        for (i, c) in self.commodities.iter().enumerate() {
            anyhow::ensure!(
                commodity_ids.insert(c.commodity_id.as_str()),
                "commodities.json: [{i}].commodity_id: duplicate {:?}",
                c.commodity_id
            );
            anyhow::ensure!(
                c.base_price > 0,
                "commodities.json: [{i}].base_price: must be positive"
            );
        }
        let mut class_ids = HashSet::new();
        for (i, s) in self.ships.ship_classes.iter().enumerate() {
            anyhow::ensure!(
                class_ids.insert(s.class_id.as_str()),
                "ships.json: ship_classes[{i}].class_id: duplicate {:?}",
                s.class_id
            );
            for (field, value) in [
                ("radius", s.radius),
                ("thrust", s.thrust),
                ("max_speed", s.max_speed),
                ("turn_rate", s.turn_rate),
                ("weapon.projectile_speed", s.weapon.projectile_speed),
            ] {
                anyhow::ensure!(
                    value.is_finite() && value > 0.0,
                    "ships.json: ship_classes[{i}].{field}: must be positive"
                );
            }
            anyhow::ensure!(
                s.hull > 0,
                "ships.json: ship_classes[{i}].hull: must be positive"
            );
        }
        for (field, id) in [
            ("player_class", &self.ships.player_class),
            ("pirate_class", &self.ships.pirate_class),
        ] {
            anyhow::ensure!(
                class_ids.contains(id.as_str()),
                "ships.json: {field}: unknown ship class {id:?}"
            );
        }
        anyhow::ensure!(
            self.rules.starting_credits >= 0,
            "rules.json: starting_credits: must not be negative"
        );
        anyhow::ensure!(
            self.rules.actions_per_second > 0,
            "rules.json: actions_per_second: must be positive"
        );
        let mut system_ids = HashSet::new();
        let mut station_ids = HashSet::new();
        for system in &self.systems {
            let file = format!("systems/{}.json", system.system_id);
            anyhow::ensure!(
                system_ids.insert(system.system_id.as_str()),
                "{file}: system_id: duplicate {:?}",
                system.system_id
            );
            anyhow::ensure!(
                !system.stations.is_empty(),
                "{file}: stations: at least one"
            );
            for (si, station) in system.stations.iter().enumerate() {
                anyhow::ensure!(
                    station_ids.insert(station.station_id.as_str()),
                    "{file}: stations[{si}].station_id: duplicate {:?}",
                    station.station_id
                );
                for (mi, entry) in station.market.iter().enumerate() {
                    anyhow::ensure!(
                        commodity_ids.contains(entry.commodity_id.as_str()),
                        "{file}: stations[{si}].market[{mi}].commodity_id: unknown commodity {:?}",
                        entry.commodity_id
                    );
                    anyhow::ensure!(
                        entry.price > 0,
                        "{file}: stations[{si}].market[{mi}].price: must be positive"
                    );
                    anyhow::ensure!(
                        (0.0..1.0).contains(&entry.spread),
                        "{file}: stations[{si}].market[{mi}].spread: must be in [0, 1)"
                    );
                }
            }
            anyhow::ensure!(
                system
                    .stations
                    .iter()
                    .any(|s| s.station_id == system.home_station),
                "{file}: home_station: {:?} is not one of its stations",
                system.home_station
            );
            for (zi, zone) in system.zones.iter().enumerate() {
                anyhow::ensure!(
                    zone.radius > 0.0,
                    "{file}: zones[{zi}].radius: must be positive"
                );
                anyhow::ensure!(
                    zone.risk_level <= 100 && zone.security_level <= 100,
                    "{file}: zones[{zi}]: risk_level and security_level are 0-100"
                );
                anyhow::ensure!(
                    zone.profit_multiplier > 0.0,
                    "{file}: zones[{zi}].profit_multiplier: must be positive"
                );
            }
        }
        Ok(())
    }

    pub fn ship_class(&self, id: &str) -> Option<&ShipClass> {
        self.ships.ship_classes.iter().find(|c| c.class_id == id)
    }

    pub fn system(&self, id: &str) -> Option<&SystemDef> {
        self.systems.iter().find(|s| s.system_id == id)
    }

    /// Commodity base prices by id.
    pub fn base_prices(&self) -> HashMap<String, u32> {
        self.commodities
            .iter()
            .map(|c| (c.commodity_id.clone(), c.base_price))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_data_is_valid() {
        let data = GameData::embedded().unwrap();
        let sol = data.system("sol-1").unwrap();
        let stations: Vec<_> = sol.stations.iter().map(|s| s.station_id.as_str()).collect();
        assert!(stations.contains(&"earth-orbit-station"));
        assert!(stations.contains(&"mars-orbit-station"));
        assert!(sol.zones.len() >= 3);
        assert!(data.commodities.len() >= 4);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let text = EMBEDDED_SYSTEMS[0].1.replacen("\"food\"", "\"spice\"", 1);
        let system: SystemDef = parse("systems/sol-1.json", &text).unwrap();
        let err = GameData::validated(
            parse("commodities.json", EMBEDDED_COMMODITIES).unwrap(),
            parse("ships.json", EMBEDDED_SHIPS).unwrap(),
            parse("rules.json", EMBEDDED_RULES).unwrap(),
            vec![system],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("systems/sol-1.json"), "{err}");
        assert!(err.contains("stations[0].market[0].commodity_id"), "{err}");
        assert!(err.contains("spice"), "{err}");

        let bad = EMBEDDED_SHIPS.replacen("\"hull\": 100", "\"hull\": \"lots\"", 1);
        let err = parse::<Ships>("ships.json", &bad).unwrap_err().to_string();
        assert!(err.contains("ships.json: ship_classes[0].hull"), "{err}");
    }
}
