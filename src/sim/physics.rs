//! Physics: one rapier2d world per instance. Ships are dynamic rigid bodies; they carry
//! no colliders, because ships do not bump into each other (space is big) and hits are
//! found by casting each projectile's path against the instance's [`SpatialGrid`], which
//! is rebuilt after every step anyway for interest management. (Casting against rapier's
//! own BVH cost a quarter of a 5,000-ship tick, plus the upkeep of that BVH.) The step runs
//! in `TickSet::Movement`; afterwards each body's pose is copied into [`Kinematics`], which
//! everything else reads, so only this plugin touches rapier.

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;
use glam::Vec2;
use rapier2d::prelude::*;

use rustc_hash::FxHashMap;

use super::TickSet;
use super::instances::{InInstance, Instance};
use super::players::Pilot;
use super::ships::{Docked, OutOfPlay, Ship};

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

    /// Adds a ship's body; returns its handle.
    pub fn add_ship(&mut self, entity: Entity, pos: Vec2, rot: f32) -> RigidBodyHandle {
        let body = RigidBodyBuilder::dynamic()
            .translation(pos)
            .rotation(rot)
            .can_sleep(false)
            .user_data(entity.to_bits() as u128);
        self.0.insert_body(body)
    }

    pub fn remove(&mut self, handle: RigidBodyHandle) {
        self.0.remove_body(handle);
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
    pub radius: f32,
    pub player: bool,
    pub docked: bool,
}

/// A uniform grid of the ships in play in one instance, rebuilt after every physics step.
/// Interest management and pirate targeting ask it "who is near here?" so their cost grows
/// with neighbours, not with everyone in the instance.
#[derive(Component, Debug, Default)]
pub struct SpatialGrid {
    cells: FxHashMap<(i32, i32), Vec<GridEntry>>,
    /// The largest ship radius in the grid, so a sweep can widen its search by it.
    max_radius: f32,
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
        self.max_radius = 0.0;
    }

    fn insert(&mut self, entry: GridEntry) {
        self.max_radius = self.max_radius.max(entry.radius);
        self.cells
            .entry(cell_of(entry.pos))
            .or_default()
            .push(entry);
    }

    /// The first ship the segment `from → from + delta` touches, among those `accept`
    /// allows: a ray cast against each nearby ship's circle.
    pub fn cast_segment(
        &self,
        from: Vec2,
        delta: Vec2,
        mut accept: impl FnMut(&GridEntry) -> bool,
    ) -> Option<Entity> {
        let mid = from + delta * 0.5;
        let reach = delta.length() * 0.5 + self.max_radius;
        let mut best: Option<(f32, Entity)> = None;
        self.for_each_within(mid, reach, |entry| {
            if let Some(t) = segment_hits_circle(from, delta, entry.pos, entry.radius)
                && best.is_none_or(|(bt, _)| t < bt)
                && accept(entry)
            {
                best = Some((t, entry.entity));
            }
        });
        best.map(|(_, e)| e)
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

/// Where along the segment `from → from + delta` (0..=1) it first touches the circle.
pub fn segment_hits_circle(from: Vec2, delta: Vec2, center: Vec2, radius: f32) -> Option<f32> {
    let f = from - center;
    let c = f.length_squared() - radius * radius;
    if c <= 0.0 {
        return Some(0.0);
    }
    let a = delta.length_squared();
    if a <= f32::EPSILON {
        return None;
    }
    let b = 2.0 * f.dot(delta);
    let disc = b * b - 4.0 * a * c;
    if disc < 0.0 {
        return None;
    }
    let t = (-b - disc.sqrt()) / (2.0 * a);
    (0.0..=1.0).contains(&t).then_some(t)
}

#[allow(clippy::type_complexity)]
fn build_grids(
    mut grids: Query<&mut SpatialGrid>,
    ships: Query<
        (
            Entity,
            &Kinematics,
            &Ship,
            &InInstance,
            Has<Pilot>,
            Has<Docked>,
        ),
        (With<Body>, Without<OutOfPlay>),
    >,
) {
    for mut grid in &mut grids {
        grid.clear();
    }
    for (entity, kin, ship, instance, player, docked) in &ships {
        if let Ok(mut grid) = grids.get_mut(instance.0) {
            grid.insert(GridEntry {
                entity,
                pos: kin.pos,
                radius: ship.class.radius,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_against_circles() {
        let c = Vec2::new(10.0, 0.0);
        // Straight through: first touch at x = 8 of a 0..20 sweep.
        let t = segment_hits_circle(Vec2::ZERO, Vec2::new(20.0, 0.0), c, 2.0).unwrap();
        assert!((t - 0.4).abs() < 1e-5);
        // Falls short, passes beside, starts inside.
        assert_eq!(
            segment_hits_circle(Vec2::ZERO, Vec2::new(5.0, 0.0), c, 2.0),
            None
        );
        assert_eq!(
            segment_hits_circle(Vec2::new(0.0, 3.0), Vec2::new(20.0, 0.0), c, 2.0),
            None
        );
        assert_eq!(
            segment_hits_circle(c, Vec2::new(1.0, 0.0), c, 2.0),
            Some(0.0)
        );
    }

    #[test]
    fn the_grid_finds_the_first_ship_on_a_path() {
        let mut grid = SpatialGrid::default();
        let mut world = World::new();
        let near = world.spawn_empty().id();
        let far = world.spawn_empty().id();
        for (entity, x) in [(far, 1990.0), (near, 1010.0)] {
            grid.insert(GridEntry {
                entity,
                pos: Vec2::new(x, 0.0),
                radius: 10.0,
                player: false,
                docked: false,
            });
        }
        let path = Vec2::new(1500.0, 0.0);
        assert_eq!(
            grid.cast_segment(Vec2::new(600.0, 0.0), path, |_| true),
            Some(near)
        );
        assert_eq!(
            grid.cast_segment(Vec2::new(600.0, 0.0), path, |e| e.entity != near),
            Some(far)
        );
        assert_eq!(
            grid.cast_segment(Vec2::new(600.0, 50.0), path, |_| true),
            None
        );
    }
}
