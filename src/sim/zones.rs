//! Zones: circles with a risk level, a security level, a profit multiplier and a PvP flag.
//! Where zones overlap, a position's context blends them by depth: a zone weighs
//! `1 - distance / radius`, so its centre counts fully and its rim not at all.

use serde::Serialize;

use super::data::SystemDef;

/// The blended zone context at a position (`world.delta`'s `you_zone_context`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneContext {
    pub zone_ids: Vec<String>,
    /// 0-1, from the zones' 0-100 risk levels.
    pub blended_risk: f32,
    /// 0-1, from the zones' 0-100 security levels.
    pub blended_security: f32,
    pub blended_profit_multiplier: f32,
    #[serde(skip)]
    pub pvp_allowed: bool,
}

/// Outside every zone: no risk, full security, no bonus, no PvP.
fn open_space() -> ZoneContext {
    ZoneContext {
        zone_ids: Vec::new(),
        blended_risk: 0.0,
        blended_security: 1.0,
        blended_profit_multiplier: 1.0,
        pvp_allowed: false,
    }
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

/// The context at `pos` in `system`.
pub fn context_at(system: &SystemDef, pos: glam::Vec2) -> ZoneContext {
    let mut ctx = open_space();
    let (mut weight, mut risk, mut security, mut profit) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for zone in &system.zones {
        let distance = pos.distance(glam::Vec2::new(zone.center.x, zone.center.y));
        if distance >= zone.radius {
            continue;
        }
        let w = (1.0 - distance / zone.radius).max(1e-3);
        ctx.zone_ids.push(zone.zone_id.clone());
        ctx.pvp_allowed |= zone.pvp_allowed;
        weight += w;
        risk += w * zone.risk_level as f32 / 100.0;
        security += w * zone.security_level as f32 / 100.0;
        profit += w * zone.profit_multiplier;
    }
    if weight > 0.0 {
        ctx.blended_risk = round3(risk / weight);
        ctx.blended_security = round3(security / weight);
        ctx.blended_profit_multiplier = round3(profit / weight);
    }
    ctx
}

/// Whether a player may damage another player at `pos`.
pub fn pvp_allowed_at(system: &SystemDef, pos: glam::Vec2) -> bool {
    system
        .zones
        .iter()
        .any(|z| z.pvp_allowed && pos.distance(glam::Vec2::new(z.center.x, z.center.y)) < z.radius)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::data::GameData;

    #[test]
    fn blending_by_depth() {
        let data = GameData::embedded().unwrap();
        let sol = data.system("sol-1").unwrap();
        let earth = sol
            .zones
            .iter()
            .find(|z| z.zone_id == "z_earth_approach")
            .unwrap();
        let centre = glam::Vec2::new(earth.center.x, earth.center.y);
        let ctx = context_at(sol, centre);
        assert_eq!(ctx.zone_ids, ["z_earth_approach"]);
        assert!((ctx.blended_risk - earth.risk_level as f32 / 100.0).abs() < 1e-3);
        assert!(!ctx.pvp_allowed);
        let far = context_at(sol, glam::Vec2::new(-11000.0, 0.0));
        assert!(far.zone_ids.is_empty());
        assert_eq!(far.blended_profit_multiplier, 1.0);
        let belt = sol
            .zones
            .iter()
            .find(|z| z.zone_id == "z_asteroid_belt")
            .unwrap();
        assert!(pvp_allowed_at(
            sol,
            glam::Vec2::new(belt.center.x, belt.center.y)
        ));
    }

    #[test]
    fn overlapping_zones_weigh_by_depth() {
        let data = GameData::embedded().unwrap();
        let mut sol = data.system("sol-1").unwrap().clone();
        sol.zones.truncate(1);
        let mut second = sol.zones[0].clone();
        second.zone_id = "z_second".into();
        second.center.x += 400.0;
        second.risk_level = 90;
        sol.zones.push(second);
        let at_first = glam::Vec2::new(sol.zones[0].center.x, sol.zones[0].center.y);
        let ctx = context_at(&sol, at_first);
        assert_eq!(ctx.zone_ids.len(), 2);
        // Nearer the first zone's centre, so closer to its risk than to the second's.
        let (r1, r2) = (sol.zones[0].risk_level as f32 / 100.0, 0.9);
        assert!(
            ctx.blended_risk > r1 && ctx.blended_risk < (r1 + r2) / 2.0,
            "{ctx:?}"
        );
    }
}
