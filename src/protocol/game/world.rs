//! `world.snapshot` and `world.delta` payloads in JSON: how the game protocol writes what
//! replication decided each client sees. Hand-written with `itoa` rather than serde for the
//! entity updates, because they are written for every changed entity every tick.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;

use crate::services::play::{MarketView, WorldEncoding, YouView, ZoneContext, ZoneDef};

/// The JSON encoding of the world, as `/game` clients read it.
pub struct JsonWorld;

/// The one the server hands to the worlds.
pub static JSON_WORLD: JsonWorld = JsonWorld;

impl WorldEncoding for JsonWorld {
    fn entity(
        &self,
        out: &mut String,
        id: &str,
        kind: &str,
        q: &[i32; 6],
        fields: &[(&'static str, Value)],
    ) {
        out.clear();
        out.push_str("{\"id\":\"");
        out.push_str(id);
        out.push_str("\",\"kind\":\"");
        out.push_str(kind);
        out.push_str("\",\"x\":");
        write_fixed(out, q[0], 2);
        out.push_str(",\"y\":");
        write_fixed(out, q[1], 2);
        out.push_str(",\"vx\":");
        write_fixed(out, q[2], 2);
        out.push_str(",\"vy\":");
        write_fixed(out, q[3], 2);
        out.push_str(",\"r\":");
        write_fixed(out, q[4], 3);
        out.push_str(",\"hp\":");
        out.push_str(itoa::Buffer::new().format(q[5]));
        for (name, value) in fields {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            out.push_str(&value.to_string());
        }
        out.push('}');
    }

    fn snapshot(
        &self,
        out: &mut String,
        tick: u64,
        you: &YouView,
        entities: &str,
        markets: &[MarketView],
        zones: &[ZoneDef],
    ) {
        let _ = write!(
            out,
            "{{\"tick\":{tick},\"you\":{},\"entities\":[{}],\"markets\":{},\"zones\":{}}}",
            to_json(you, "{}"),
            entities,
            to_json(&markets, "[]"),
            to_json(&zones, "[]"),
        );
    }

    fn delta_head(&self, out: &mut String, tick: u64) {
        let _ = write!(out, "{{\"tick\":{tick},\"entity_updates\":[");
    }

    fn append_update(&self, out: &mut String, update: &str, first: bool) {
        if !first {
            out.push(',');
        }
        out.push_str(update);
    }

    fn delta_tail(
        &self,
        out: &mut String,
        removed: &[Arc<str>],
        events: &mut dyn Iterator<Item = &str>,
        context: &ZoneContext,
        you: Option<&YouView>,
    ) {
        out.clear();
        out.push_str("],\"entity_removed\":[");
        for (i, id) in removed.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{id}\"");
        }
        out.push_str("],\"events\":[");
        for (i, event) in events.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(event);
        }
        let _ = write!(out, "],\"you_zone_context\":{}", to_json(context, "{}"));
        if let Some(you) = you {
            let _ = write!(out, ",\"you\":{}", to_json(you, "{}"));
        }
        out.push('}');
    }

    fn projectile_fired(
        &self,
        source_id: &str,
        projectile_id: &str,
        pos: glam::Vec2,
        vel: glam::Vec2,
    ) -> String {
        serde_json::json!({
            "kind": "projectile_fired",
            "source_id": source_id,
            "projectile_id": projectile_id,
            "x": round2(pos.x), "y": round2(pos.y),
            "vx": round2(vel.x), "vy": round2(vel.y),
        })
        .to_string()
    }
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T, otherwise: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| otherwise.into())
}

fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

/// Writes `value / 10^decimals` exactly, without float noise (`1234, 2` → `12.34`).
fn write_fixed(out: &mut String, value: i32, decimals: u32) {
    let scale = 10i64.pow(decimals);
    let v = i64::from(value);
    if v < 0 {
        out.push('-');
    }
    let abs = v.abs();
    let mut digits = itoa::Buffer::new();
    out.push_str(digits.format(abs / scale));
    let mut frac = abs % scale;
    if frac != 0 {
        let mut width = decimals as usize;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        out.push('.');
        let text = digits.format(frac);
        for _ in text.len()..width {
            out.push('0');
        }
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_numbers_are_exact() {
        let mut s = String::new();
        for (v, d, want) in [
            (1234, 2, "12.34"),
            (-5, 2, "-0.05"),
            (1200, 2, "12"),
            (1570, 3, "1.57"),
            (0, 2, "0"),
            (-100, 2, "-1"),
        ] {
            s.clear();
            write_fixed(&mut s, v, d);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn updates_are_valid_json_with_the_spec_fields() {
        let mut s = String::new();
        JSON_WORLD.entity(
            &mut s,
            "s_1",
            "player_ship",
            &[120000, -40050, 800, 200, 1620, 100],
            &[],
        );
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"s_1","kind":"player_ship","x":1200,"y":-400.5,"vx":8,"vy":2,"r":1.62,"hp":100})
        );
    }

    #[test]
    fn plugin_fields_follow_the_spec_fields() {
        let mut s = String::new();
        let fields = [
            ("bounty", Value::from(200)),
            ("faction", Value::from("red")),
        ];
        JSON_WORLD.entity(&mut s, "npc_2", "pirate", &[0, 0, 0, 0, 0, 10], &fields);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"npc_2","kind":"pirate","x":0,"y":0,"vx":0,"vy":0,"r":0,"hp":10,
                "bounty":200,"faction":"red"})
        );
    }
}
