//! Ships: what every ship is made of, and how its controls become motion.
//!
//! Controls are the latest input (players) or the AI's decision (pirates). Thrust pushes
//! along the heading, turn sets the spin; speed is capped by the ship class and fuel burns
//! with thrust. A docked ship holds its station's position until it thrusts away.

use std::sync::Arc;

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;
use glam::Vec2;

use super::TickRate;
use super::TickSet;
use super::data::ShipClass;
use super::physics::{Kinematics, Steering};

/// A ship of some class, known to clients as `net_id`.
#[derive(Component)]
pub struct Ship {
    pub class: Arc<ShipClass>,
}

#[derive(Component, Clone, Copy, Debug)]
pub struct Hull {
    pub hp: u32,
    pub max: u32,
}

#[derive(Component, Clone, Copy, Debug)]
pub struct Fuel {
    pub level: f32,
    pub max: f32,
}

/// What the ship is asked to do this tick. Values are already clamped.
#[derive(Component, Clone, Copy, Debug, Default)]
pub struct Controls {
    pub thrust: f32,
    pub turn: f32,
    pub fire: bool,
    pub dock: bool,
}

/// Docked at this station entity.
#[derive(Component, Clone, Copy, Debug)]
pub struct Docked(pub Entity);

/// Destroyed and waiting to respawn at this tick; has no body meanwhile.
#[derive(Component, Clone, Copy, Debug)]
pub struct OutOfPlay {
    pub respawn_tick: u64,
}

/// Drag applied while coasting, per second, so a released stick slows the ship down.
const COAST_DRAG: f32 = 0.4;

#[allow(clippy::type_complexity)]
fn apply_controls(
    rate: Res<TickRate>,
    mut commands: Commands,
    mut ships: Query<
        (
            Entity,
            &Ship,
            &Controls,
            &Kinematics,
            &mut Steering,
            &mut Fuel,
            Option<&Docked>,
            Option<&super::players::Pilot>,
        ),
        Without<OutOfPlay>,
    >,
    mut undocked: MessageWriter<super::facts::ShipUndocked>,
) {
    let dt = rate.dt();
    for (entity, ship, controls, kin, mut steering, mut fuel, docked, pilot) in &mut ships {
        if let Some(&Docked(station)) = docked {
            if controls.thrust > 0.0 {
                commands.entity(entity).remove::<Docked>();
                undocked.write(super::facts::ShipUndocked {
                    ship: entity,
                    station,
                    user_id: pilot.map(|p| p.user_id),
                });
            } else {
                steering.linvel = Vec2::ZERO;
                steering.angvel = 0.0;
                continue;
            }
        }
        let class = &ship.class;
        let thrust = if fuel.level > 0.0 {
            controls.thrust
        } else {
            0.0
        };
        fuel.level = (fuel.level - thrust * class.fuel_per_second * dt).max(0.0);
        let mut vel = kin.vel + kin.facing() * (thrust * class.thrust * dt);
        if thrust == 0.0 {
            vel *= (1.0 - COAST_DRAG * dt).max(0.0);
        }
        steering.linvel = vel.clamp_length_max(class.max_speed);
        steering.angvel = controls.turn * class.turn_rate;
    }
}

pub struct ShipsPlugin;

impl Plugin for ShipsPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(FixedUpdate, apply_controls.in_set(TickSet::Input));
    }
}
