//! Instances: each world in play (a lobby room, a launched session, and in the space game
//! each star system) is one instance, an entity that owns its physics world, its spatial
//! grid, its stations and its zones. Every entity in play carries [`InInstance`]. Rooms
//! create and destroy theirs at run time through [`create_instance`] and
//! [`destroy_instance`], from a layout in [`RoomLayouts`]: the platform's blank arena, or
//! what a game adds (the space game adds its star systems, which it also starts and keeps
//! running: [`StarSystemsPlugin`]).

use std::collections::HashMap;
use std::sync::Arc;

use bevy_app::{App, Plugin};
use bevy_ecs::prelude::*;

use super::data::{GameData, SystemDef};
use super::markets::Market;
use super::physics::{PhysicsSpace, SpatialGrid};
use super::stations::Station;

/// The game data, shared.
#[derive(Resource, Clone)]
pub struct Data(pub Arc<GameData>);

/// One running instance.
#[derive(Component)]
pub struct Instance {
    /// What clients name it by in `session.join_system` (a system id or a room id).
    pub id: String,
    /// The system it was made from.
    pub def: Arc<SystemDef>,
    /// Events of the current tick (e.g. `projectile_fired`), as encoded JSON objects.
    pub events: Vec<(glam::Vec2, String)>,
}

/// Which instance an entity is in.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct InInstance(pub Entity);

/// Instances by id.
#[derive(Resource, Default)]
pub struct Instances {
    by_id: HashMap<String, Entity>,
}

impl Instances {
    pub fn get(&self, id: &str) -> Option<Entity> {
        self.by_id.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every instance's id.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.by_id.keys()
    }

    /// Every instance, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, Entity)> {
        self.by_id.iter().map(|(id, e)| (id, *e))
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Spawns an instance of `def` named `id` with its stations. Returns `None` if the id is
/// taken.
pub fn create_instance(world: &mut World, id: &str, def: Arc<SystemDef>) -> Option<Entity> {
    if world.resource::<Instances>().get(id).is_some() {
        return None;
    }
    let tick_hz = world.resource::<super::TickRate>().0;
    let instance = world
        .spawn((
            Instance {
                id: id.to_owned(),
                def: def.clone(),
                events: Vec::new(),
            },
            PhysicsSpace::new(tick_hz),
            SpatialGrid::default(),
        ))
        .id();
    for station in &def.stations {
        world.spawn((
            Station {
                station_id: station.station_id.clone(),
                pos: glam::Vec2::new(station.x, station.y),
            },
            Market::from_def(&station.market),
            InInstance(instance),
        ));
    }
    world
        .resource_mut::<Instances>()
        .by_id
        .insert(id.to_owned(), instance);
    Some(instance)
}

/// Despawns an instance and everything in it. Players in it should be moved out first.
pub fn destroy_instance(world: &mut World, id: &str) -> bool {
    let Some(instance) = world.resource_mut::<Instances>().by_id.remove(id) else {
        return false;
    };
    let members: Vec<Entity> = world
        .query::<(Entity, &InInstance)>()
        .iter(world)
        .filter(|(_, i)| i.0 == instance)
        .map(|(e, _)| e)
        .collect();
    for entity in members {
        world.despawn(entity);
    }
    world.despawn(instance);
    true
}

/// The worlds' shared state: the game data (ship classes, rules), the instances and the
/// room layouts, which start with the blank arena only.
pub struct InstancesPlugin {
    pub data: Arc<GameData>,
}

impl Plugin for InstancesPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Data(self.data.clone()))
            .init_resource::<Instances>()
            .insert_resource(RoomLayouts::arena());
    }
}

/// The space game's universe: an instance for every star system in the data, running from
/// the start, and each system a layout rooms may be made from (the first the default).
pub struct StarSystemsPlugin;

impl Plugin for StarSystemsPlugin {
    fn build(&self, app: &mut App) {
        let data = app.world().resource::<Data>().0.clone();
        for (n, system) in data.systems.iter().enumerate() {
            let layout = Arc::new(system.clone());
            create_instance(app.world_mut(), &system.system_id, layout.clone());
            app.world_mut()
                .resource_mut::<RoomLayouts>()
                .add(layout, n == 0);
        }
    }
}

/// The layouts room worlds are made from, by name, and the one a room gets when its game
/// names none.
#[derive(Resource)]
pub struct RoomLayouts {
    by_name: HashMap<String, Arc<SystemDef>>,
    default: Arc<SystemDef>,
}

impl RoomLayouts {
    /// The platform's own layout: an empty disc, no stations, no zones. Players appear at
    /// its centre.
    pub fn arena() -> Self {
        let arena = Arc::new(SystemDef {
            system_id: "arena".into(),
            name: "Arena".into(),
            radius: 4_000.0,
            home_station: String::new(),
            stations: Vec::new(),
            zones: Vec::new(),
        });
        Self {
            by_name: HashMap::from([(arena.system_id.clone(), arena.clone())]),
            default: arena,
        }
    }

    /// Adds `layout` under its system id; the default from now on if `default`.
    pub fn add(&mut self, layout: Arc<SystemDef>, default: bool) {
        if default {
            self.default = layout.clone();
        }
        self.by_name.insert(layout.system_id.clone(), layout);
    }

    /// The layout named `name`, or the default when no name is given.
    pub fn get(&self, name: Option<&str>) -> Option<Arc<SystemDef>> {
        match name {
            Some(name) => self.by_name.get(name).cloned(),
            None => Some(self.default.clone()),
        }
    }
}
