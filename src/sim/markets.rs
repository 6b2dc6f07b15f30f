//! Markets: each station trades some commodities at prices that follow its stock.
//!
//! A commodity's mid price is the station's reference price scaled by scarcity: at target
//! stock it is the reference, empty it is 45% dearer, at twice the target 25% cheaper. A
//! player buys at the mid plus half the spread and sells at the mid minus half the spread,
//! times the blended profit multiplier of the station's zones (the bonus for trading in
//! risky space). Trades move the stock; stock drifts back to target over time.

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;

use super::TickRate;
use super::TickSet;
use super::data::MarketEntry;

/// Fraction of the gap to target stock recovered per second.
const RECOVERY_PER_SECOND: f32 = 0.01;

#[derive(Debug, Clone)]
pub struct Listing {
    pub commodity_id: String,
    pub reference_price: u32,
    pub stock: f32,
    pub target_stock: u32,
    pub spread: f32,
    /// Units bought by trades still being saved: not for sale to anyone else meanwhile.
    pub held: i64,
}

impl Listing {
    fn mid(&self) -> f32 {
        let target = self.target_stock.max(1) as f32;
        let scarcity = ((target - self.stock) / target).clamp(-0.5, 1.0);
        let factor = if scarcity >= 0.0 {
            1.0 + 0.45 * scarcity
        } else {
            1.0 + 0.5 * scarcity
        };
        self.reference_price as f32 * factor
    }

    /// What a player pays per unit.
    pub fn buy_price(&self) -> i64 {
        ((self.mid() * (1.0 + self.spread / 2.0)).ceil() as i64).max(1)
    }

    /// What a player receives per unit, before any zone multiplier.
    pub fn sell_price(&self) -> i64 {
        ((self.mid() * (1.0 - self.spread / 2.0)).floor() as i64).max(0)
    }

    /// Whole units in stock and not held for a trade being saved.
    pub fn units(&self) -> u32 {
        let whole = self.stock.max(0.0).floor() as i64;
        u32::try_from((whole - self.held).max(0)).unwrap_or(u32::MAX)
    }
}

/// A station's market.
#[derive(Component, Debug, Clone)]
pub struct Market {
    pub listings: Vec<Listing>,
}

impl Market {
    pub fn from_def(entries: &[MarketEntry]) -> Self {
        Self {
            listings: entries
                .iter()
                .map(|e| Listing {
                    commodity_id: e.commodity_id.clone(),
                    reference_price: e.price,
                    stock: e.stock as f32,
                    target_stock: e.target_stock,
                    spread: e.spread,
                    held: 0,
                })
                .collect(),
        }
    }

    pub fn listing(&self, commodity_id: &str) -> Option<&Listing> {
        self.listings
            .iter()
            .find(|l| l.commodity_id == commodity_id)
    }

    pub fn listing_mut(&mut self, commodity_id: &str) -> Option<&mut Listing> {
        self.listings
            .iter_mut()
            .find(|l| l.commodity_id == commodity_id)
    }

    /// Prices as `world.snapshot` lists them.
    pub fn prices(&self, profit_multiplier: f32) -> Vec<PriceView> {
        self.listings
            .iter()
            .map(|l| PriceView {
                commodity_id: l.commodity_id.clone(),
                buy: l.buy_price(),
                sell: sell_with_bonus(l.sell_price(), profit_multiplier),
                stock: l.units(),
            })
            .collect()
    }
}

/// The sell price with the zone's profit multiplier applied.
pub fn sell_with_bonus(sell: i64, profit_multiplier: f32) -> i64 {
    (sell as f64 * f64::from(profit_multiplier)).floor() as i64
}

pub use crate::services::play::PriceView;

fn recover_stock(rate: Res<TickRate>, mut markets: Query<&mut Market>) {
    let step = (RECOVERY_PER_SECOND * rate.dt()).min(1.0);
    for mut market in &mut markets {
        for listing in &mut market.listings {
            let target = listing.target_stock as f32;
            listing.stock += (target - listing.stock) * step;
        }
    }
}

pub struct MarketsPlugin;

impl Plugin for MarketsPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(FixedUpdate, recover_stock.in_set(TickSet::Markets));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(stock: f32) -> Listing {
        Listing {
            commodity_id: "food".into(),
            reference_price: 100,
            stock,
            target_stock: 100,
            spread: 0.1,
            held: 0,
        }
    }

    #[test]
    fn scarcity_raises_prices_and_the_spread_separates_them() {
        let at_target = listing(100.0);
        assert_eq!(at_target.buy_price(), 105);
        assert_eq!(at_target.sell_price(), 95);
        let empty = listing(0.0);
        assert!(empty.buy_price() > at_target.buy_price());
        let glut = listing(300.0);
        assert!(glut.sell_price() < at_target.sell_price());
        for stock in [0.0, 50.0, 100.0, 250.0, 1000.0] {
            let l = listing(stock);
            assert!(l.buy_price() > l.sell_price(), "no free money at {stock}");
        }
    }

    #[test]
    fn the_profit_multiplier_applies_to_selling() {
        assert_eq!(sell_with_bonus(95, 1.35), 128);
        assert_eq!(sell_with_bonus(95, 1.0), 95);
    }
}

/// A `trade.buy` or `trade.sell` from a player.
#[derive(Debug, Clone)]
pub struct TradeRequest {
    pub side: crate::services::play::TradeSide,
    pub station_id: String,
    pub commodity_id: String,
    pub quantity: i64,
}

/// Most units one trade may move.
const MAX_TRADE_UNITS: i64 = 1_000_000;

/// Checks a trade against the world: what it would change if it holds. Nothing changes
/// until it is saved (see [`super::trades`]).
pub fn quote_trade(
    world: &mut World,
    ship: Entity,
    req: &TradeRequest,
) -> Result<super::trades::Settlement, super::players::GameError> {
    use super::players::{GameError, Pilot};
    use crate::services::play::{Refusal, TradeSide};

    if req.quantity <= 0 || req.quantity > MAX_TRADE_UNITS {
        return Err(GameError::new(
            Refusal::InvalidQuantity,
            format!("quantity must be a whole number from 1 to {MAX_TRADE_UNITS}"),
        ));
    }
    let station = super::stations::docked_station(world, ship, &req.station_id)?;
    let known = world
        .resource::<super::instances::Data>()
        .0
        .commodities
        .iter()
        .any(|c| c.commodity_id == req.commodity_id);
    if !known {
        return Err(GameError::new(
            Refusal::UnknownCommodity,
            format!("no commodity named {:?}", req.commodity_id),
        ));
    }
    let multiplier = super::stations::profit_multiplier_at(world, station);
    let quantity = req.quantity;
    let capacity = world
        .get::<super::ships::Ship>(ship)
        .map_or(0, |s| s.class.cargo_capacity);
    let listing = world
        .get::<Market>(station)
        .and_then(|m| m.listing(&req.commodity_id))
        .cloned()
        .ok_or_else(|| {
            GameError::new(
                Refusal::UnknownCommodity,
                format!("{} does not trade {}", req.station_id, req.commodity_id),
            )
        })?;
    let pilot = world
        .get::<Pilot>(ship)
        .cloned()
        .ok_or_else(|| GameError::new(Refusal::NotJoined, "join a system first"))?;
    let (unit_price, credits_delta, cargo_delta) = match req.side {
        TradeSide::Buy => {
            let unit = listing.buy_price();
            if i64::from(listing.units()) < quantity {
                return Err(GameError::new(
                    Refusal::InvalidQuantity,
                    format!("the station has only {} in stock", listing.units()),
                ));
            }
            let total = unit.saturating_mul(quantity);
            if pilot.credits < total {
                return Err(GameError::new(
                    Refusal::InsufficientCredits,
                    format!("{total} credits needed, {} available", pilot.credits),
                ));
            }
            if i64::from(pilot.cargo_units()) + quantity > i64::from(capacity) {
                return Err(GameError::new(
                    Refusal::CargoFull,
                    format!(
                        "cargo hold holds {capacity}, {} already aboard",
                        pilot.cargo_units()
                    ),
                ));
            }
            (unit, -total, quantity)
        }
        TradeSide::Sell => {
            let held = i64::from(pilot.held(&req.commodity_id));
            if held < quantity {
                return Err(GameError::new(
                    Refusal::InsufficientCargo,
                    format!("{held} {} aboard", req.commodity_id),
                ));
            }
            let unit = sell_with_bonus(listing.sell_price(), multiplier);
            (unit, unit.saturating_mul(quantity), -quantity)
        }
    };
    Ok(super::trades::Settlement {
        station,
        credits: credits_delta,
        cargo: Some((req.commodity_id.clone(), cargo_delta)),
        repair: false,
        details: crate::services::play::TradeDetails::Trade {
            station_id: req.station_id.clone(),
            commodity_id: req.commodity_id.clone(),
            quantity,
            unit_price,
            total: unit_price.saturating_mul(quantity),
        },
    })
}
