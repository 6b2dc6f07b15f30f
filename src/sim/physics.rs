//! Physics: one rapier2d world per instance. Ships are dynamic rigid bodies with ball
//! colliders that do not collide with each other (space is big; bumping is not the game)
//! but are there to be hit by ray casts. The physics step runs in `TickSet::Movement`;
//! afterwards each body's pose is copied into [`Kinematics`], which everything else reads,
//! so only this plugin touches rapier.

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;
use glam::Vec2;
use rapier2d::prelude::*;

use std::collections::HashMap;

use super::TickSet;
use super::instances::{InInstance, Instance};
use super::players::Pilot;
use super::ships::{Docked, OutOfPlay};

/// An instance's physics world.
#[derive(Component)]
pub struct PhysicsSpace(pub PhysicsWorld);

impl PhysicsSpace {
    pub fn new(tick_hz: u32) -> Self {
        let mut world = PhysicsWorld::new();
        world.gravity = Vector::ZERO;
        world.integration_parameters.dt = 1.0 / tick_hz.max(1) as f32;
        Self(world)
    }

    /// Adds a ship body with a ball collider; returns its handle.
    pub fn add_ship(
        &mut self,
        entity: Entity,
        pos: Vec2,
        rot: f32,
        radius: f32,
    ) -> RigidBodyHandle {
        let body = RigidBodyBuilder::dynamic()
            .translation(pos)
            .rotation(rot)
            .can_sleep(false)
            .user_data(entity.to_bits() as u128);
        let collider = ColliderBuilder::ball(radius)
            .collision_groups(InteractionGroups::new(
                Group::GROUP_1,
                Group::NONE,
                InteractionTestMode::And,
            ))
            .user_data(entity.to_bits() as u128);
        self.0.insert(body, collider).0
    }

    pub fn remove(&mut self, handle: RigidBodyHandle) {
        self.0.remove_body_with_colliders(handle, true);
    }

    /// The first ship hit by the segment `from → from + delta`, other than `exclude`, for
    /// which `accept` says yes. Returns the entity and the fraction of the segment.
    pub fn cast_segment(
        &self,
        from: Vec2,
        delta: Vec2,
        exclude: Option<RigidBodyHandle>,
        accept: &dyn Fn(Entity) -> bool,
    ) -> Option<Entity> {
        let length = delta.length();
        if length <= f32::EPSILON {
            return None;
        }
        let ray = Ray::new(from, delta / length);
        let predicate =
            |_: ColliderHandle, c: &Collider| accept(Entity::from_bits(c.user_data as u64));
        let mut filter = QueryFilter::default().predicate(&predicate);
        if let Some(handle) = exclude {
            filter = filter.exclude_rigid_body(handle);
        }
        self.0
            .cast_ray(&ray, length, true, filter)
            .and_then(|(collider, _)| self.0.colliders.get(collider))
            .map(|c| Entity::from_bits(c.user_data as u64))
    }
}

/// A ship's rigid body.
#[derive(Component, Clone, Copy)]
pub struct Body(pub RigidBodyHandle);

/// Where a ship is, as of the last physics step.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq)]
pub struct Kinematics {
    pub pos: Vec2,
    pub vel: Vec2,
    /// Heading in radians; 0 faces +x.
    pub rot: f32,
}

impl Kinematics {
    pub fn facing(&self) -> Vec2 {
        Vec2::from_angle(self.rot)
    }
}

/// What the ship's controls ask of its body this tick (set by the ships plugin).
#[derive(Component, Clone, Copy, Debug, Default)]
pub struct Steering {
    pub linvel: Vec2,
    pub angvel: f32,
    /// Teleport to this pose (docking, respawn) instead of steering.
    pub place: Option<(Vec2, f32)>,
}

fn apply_steering(
    mut spaces: Query<&mut PhysicsSpace>,
    mut ships: Query<(&Body, &InInstance, &mut Steering)>,
) {
    for (body, instance, mut steering) in &mut ships {
        let Ok(mut space) = spaces.get_mut(instance.0) else {
            continue;
        };
        let Some(rb) = space.0.bodies.get_mut(body.0) else {
            continue;
        };
        if let Some((pos, rot)) = steering.place.take() {
            rb.set_translation(pos, true);
            rb.set_rotation(Rotation::new(rot), true);
        }
        rb.set_linvel(steering.linvel, true);
        rb.set_angvel(steering.angvel, true);
    }
}

fn step_physics(mut spaces: Query<&mut PhysicsSpace, With<Instance>>) {
    for mut space in &mut spaces {
        space.0.step();
    }
}

/// Copies poses out of rapier, and keeps ships inside their system.
fn sync_kinematics(
    mut spaces: Query<(&mut PhysicsSpace, &Instance)>,
    mut ships: Query<(&Body, &InInstance, &mut Kinematics)>,
) {
    for (body, instance, mut kin) in &mut ships {
        let Ok((mut space, inst)) = spaces.get_mut(instance.0) else {
            continue;
        };
        let Some(rb) = space.0.bodies.get_mut(body.0) else {
            continue;
        };
        let mut pos = rb.translation();
        let mut vel = rb.linvel();
        let limit = inst.def.radius;
        if pos.length() > limit {
            pos = pos.normalize_or_zero() * limit;
            vel = Vec2::ZERO;
            rb.set_translation(pos, true);
            rb.set_linvel(vel, true);
        }
        *kin = Kinematics {
            pos,
            vel,
            rot: rb.rotation().angle(),
        };
    }
}

/// Side of a grid cell. Queries cover the cells a circle touches, so any radius works;
/// this suits the default area of interest and pirate aggro radius.
pub const GRID_CELL: f32 = 1000.0;

/// One ship in the grid.
#[derive(Debug, Clone, Copy)]
pub struct GridEntry {
    pub entity: Entity,
    pub pos: Vec2,
    pub player: bool,
    pub docked: bool,
}

/// A uniform grid of the ships in play in one instance, rebuilt after every physics step.
/// Interest management and pirate targeting ask it "who is near here?" so their cost grows
/// with neighbours, not with everyone in the instance.
#[derive(Component, Debug, Default)]
pub struct SpatialGrid {
    cells: HashMap<(i32, i32), Vec<GridEntry>>,
}

fn cell_of(pos: Vec2) -> (i32, i32) {
    (
        (pos.x / GRID_CELL).floor() as i32,
        (pos.y / GRID_CELL).floor() as i32,
    )
}

impl SpatialGrid {
    fn clear(&mut self) {
        for cell in self.cells.values_mut() {
            cell.clear();
        }
    }

    fn insert(&mut self, entry: GridEntry) {
        self.cells
            .entry(cell_of(entry.pos))
            .or_default()
            .push(entry);
    }

    /// Calls `f` for every ship within `radius` of `center`.
    pub fn for_each_within(&self, center: Vec2, radius: f32, mut f: impl FnMut(&GridEntry)) {
        let (x0, y0) = cell_of(center - Vec2::splat(radius));
        let (x1, y1) = cell_of(center + Vec2::splat(radius));
        let r2 = radius * radius;
        for cx in x0..=x1 {
            for cy in y0..=y1 {
                if let Some(cell) = self.cells.get(&(cx, cy)) {
                    for entry in cell {
                        if entry.pos.distance_squared(center) <= r2 {
                            f(entry);
                        }
                    }
                }
            }
        }
    }
}

#[allow(clippy::type_complexity)]
fn build_grids(
    mut grids: Query<&mut SpatialGrid>,
    ships: Query<
        (Entity, &Kinematics, &InInstance, Has<Pilot>, Has<Docked>),
        (With<Body>, Without<OutOfPlay>),
    >,
) {
    for mut grid in &mut grids {
        grid.clear();
    }
    for (entity, kin, instance, player, docked) in &ships {
        if let Ok(mut grid) = grids.get_mut(instance.0) {
            grid.insert(GridEntry {
                entity,
                pos: kin.pos,
                player,
                docked,
            });
        }
    }
}

pub struct PhysicsPlugin;

impl Plugin for PhysicsPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(
            FixedUpdate,
            (apply_steering, step_physics, sync_kinematics, build_grids)
                .chain()
                .in_set(TickSet::Movement),
        );
    }
}
