//! Weapons: `fire_primary` launches a projectile (an entity with a lifetime) when the
//! ship's cooldown allows. Each tick a projectile sweeps the segment it travels and the
//! first ship on it takes the damage (a ray cast against the ships near that segment in
//! the instance's spatial grid). Players
//! hurt players only inside zones that allow PvP. A ship at zero hull is destroyed: a
//! pirate is gone; a player loses their cargo and respawns docked at the home station
//! after `respawn_delay_ms`. Hits, kills and respawns reach the players involved as
//! `combat.event`.

use std::sync::Arc;

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;
use glam::Vec2;

use super::instances::{Data, InInstance, Instance};
use super::physics::{Body, GridEntry, Kinematics, PhysicsSpace, SpatialGrid};
use super::players::{Client, NetIds, Pilot, persist};
use super::replication::{Replicated, WorldEncoder};
use super::ships::{Controls, Docked, Fuel, Hull, OutOfPlay, Ship};
use super::{Tick, TickRate, TickSet};
use crate::services::play::{CombatEvent, GameOut};

/// When the ship may fire next.
#[derive(Component, Debug, Default, Clone, Copy)]
pub struct Weapon {
    pub ready_tick: u64,
}

#[derive(Component, Debug, Clone)]
pub struct Projectile {
    pub owner: Entity,
    pub owner_id: Arc<str>,
    pub owner_is_player: bool,
    pub pos: Vec2,
    pub vel: Vec2,
    pub expires_tick: u64,
    pub damage: u32,
}

/// A projectile struck a ship this tick.
#[derive(Debug, Clone)]
pub struct Hit {
    pub source: Entity,
    pub source_id: Arc<str>,
    pub target: Entity,
    pub damage: u32,
}

/// Hits waiting to be resolved this tick.
#[derive(Resource, Default)]
pub struct Hits(pub Vec<Hit>);

fn ticks_for(ms: u32, hz: u32) -> u64 {
    (u64::from(ms) * u64::from(hz)).div_ceil(1000).max(1)
}

#[allow(clippy::type_complexity)]
fn fire_weapons(
    tick: Res<Tick>,
    rate: Res<TickRate>,
    encoder: Res<WorldEncoder>,
    mut commands: Commands,
    mut ids: ResMut<NetIds>,
    mut instances: Query<&mut Instance>,
    mut ships: Query<
        (
            Entity,
            &Ship,
            &Controls,
            &Kinematics,
            &InInstance,
            &Replicated,
            &mut Weapon,
            Has<Pilot>,
        ),
        (Without<Docked>, Without<OutOfPlay>),
    >,
) {
    for (entity, ship, controls, kin, instance, rep, mut weapon, is_player) in &mut ships {
        if !controls.fire || tick.0 < weapon.ready_tick {
            continue;
        }
        let def = &ship.class.weapon;
        weapon.ready_tick = tick.0 + ticks_for(def.cooldown_ms, rate.0);
        let facing = kin.facing();
        let pos = kin.pos + facing * (ship.class.radius + 2.0);
        let vel = kin.vel + facing * def.projectile_speed;
        let projectile_id = ids.next("pr_");
        commands.spawn((
            Projectile {
                owner: entity,
                owner_id: rep.net_id.clone(),
                owner_is_player: is_player,
                pos,
                vel,
                expires_tick: tick.0 + ticks_for(def.lifetime_ms, rate.0),
                damage: def.damage,
            },
            InInstance(instance.0),
        ));
        if let Ok(mut inst) = instances.get_mut(instance.0) {
            let event = encoder
                .0
                .projectile_fired(&rep.net_id, &projectile_id, pos, vel);
            inst.events.push((pos, event));
        }
    }
}

fn move_projectiles(
    tick: Res<Tick>,
    rate: Res<TickRate>,
    mut commands: Commands,
    mut hits: ResMut<Hits>,
    instances: Query<(&Instance, &SpatialGrid)>,
    mut projectiles: Query<(Entity, &mut Projectile, &InInstance)>,
) {
    let dt = rate.dt();
    for (entity, mut shot, instance) in &mut projectiles {
        if tick.0 >= shot.expires_tick {
            commands.entity(entity).despawn();
            continue;
        }
        let Ok((inst, grid)) = instances.get(instance.0) else {
            commands.entity(entity).despawn();
            continue;
        };
        let delta = shot.vel * dt;
        let (owner, owner_is_player) = (shot.owner, shot.owner_is_player);
        let accept = |target: &GridEntry| -> bool {
            target.entity != owner
                && (!(owner_is_player && target.player)
                    || super::zones::pvp_allowed_at(&inst.def, target.pos))
        };
        match grid.cast_segment(shot.pos, delta, accept) {
            Some(target) => {
                hits.0.push(Hit {
                    source: shot.owner,
                    source_id: shot.owner_id.clone(),
                    target,
                    damage: shot.damage,
                });
                commands.entity(entity).despawn();
            }
            None => shot.pos += delta,
        }
    }
}

fn notify(world: &World, entities: &[Entity], event: CombatEvent) {
    let msg = GameOut::Combat(event);
    let mut sent = Vec::with_capacity(2);
    for &e in entities {
        if let Some(client) = world.get::<Client>(e)
            && !sent.contains(&client.link.conn)
        {
            sent.push(client.link.conn);
            client.link.send(msg.clone());
        }
    }
}

/// Applies this tick's hits: damage, kills, and what a kill costs the victim.
fn resolve_hits(world: &mut World) {
    let hits = std::mem::take(&mut world.resource_mut::<Hits>().0);
    let tick = world.resource::<Tick>().0;
    let hz = world.resource::<TickRate>().0;
    let respawn_ms = world.resource::<Data>().0.rules.respawn_delay_ms;
    for hit in hits {
        if world.get::<OutOfPlay>(hit.target).is_some() {
            continue;
        }
        let Some(mut hull) = world.get_mut::<Hull>(hit.target) else {
            continue;
        };
        hull.hp = hull.hp.saturating_sub(hit.damage);
        let hp = hull.hp;
        world.write_message(super::facts::ProjectileHit {
            source: hit.source,
            target: hit.target,
            damage: hit.damage,
            hull_left: hp,
        });
        let Some((target_id, target_kind)) = world
            .get::<Replicated>(hit.target)
            .map(|r| (r.net_id.clone(), r.kind))
        else {
            continue;
        };
        let involved = [hit.source, hit.target];
        notify(
            world,
            &involved,
            CombatEvent {
                kind: "hit",
                source_id: hit.source_id.clone(),
                target_id: target_id.clone(),
                damage: hit.damage,
                target_hp: hp,
            },
        );
        if hp > 0 {
            continue;
        }
        notify(
            world,
            &involved,
            CombatEvent {
                kind: "destroyed",
                source_id: hit.source_id.clone(),
                target_id: target_id.clone(),
                damage: hit.damage,
                target_hp: 0,
            },
        );
        let user = |e: Entity| world.get::<Pilot>(e).map(|p| p.user_id);
        let destroyed = super::facts::ShipDestroyed {
            victim: hit.target,
            killer: hit.source,
            victim_id: target_id.clone(),
            victim_kind: target_kind,
            victim_user: user(hit.target),
            killer_user: user(hit.source),
        };
        world.write_message(destroyed);
        if world.get::<Pilot>(hit.target).is_some() {
            knock_out(world, hit.target, tick + ticks_for(respawn_ms, hz));
        } else {
            super::players::despawn_ship(world, hit.target);
        }
    }
}

/// A destroyed player: cargo lost (saved at once), body removed until respawn.
fn knock_out(world: &mut World, ship: Entity, respawn_tick: u64) {
    let user_id = world.get_mut::<Pilot>(ship).map(|mut pilot| {
        pilot.cargo.clear();
        pilot.user_id
    });
    if let Some(&Docked(station)) = world.get::<Docked>(ship) {
        world.write_message(super::facts::ShipUndocked {
            ship,
            station,
            user_id,
        });
    }
    let body = world.get::<Body>(ship).copied();
    let instance = world.get::<InInstance>(ship).copied();
    if let (Some(body), Some(instance)) = (body, instance)
        && let Some(mut space) = world.get_mut::<PhysicsSpace>(instance.0)
    {
        space.remove(body.0);
    }
    world
        .entity_mut(ship)
        .remove::<(Body, Docked)>()
        .insert((OutOfPlay { respawn_tick }, Controls::default()));
    persist(world, ship);
}

/// Players whose respawn time has come reappear docked at the home station, repaired.
fn respawn_players(world: &mut World) {
    let tick = world.resource::<Tick>().0;
    let due: Vec<Entity> = world
        .query::<(Entity, &OutOfPlay)>()
        .iter(world)
        .filter(|(_, o)| o.respawn_tick <= tick)
        .map(|(e, _)| e)
        .collect();
    for ship in due {
        let Some(instance) = world.get::<InInstance>(ship).map(|i| i.0) else {
            continue;
        };
        let Some((station, pos)) = super::stations::home_station(world, instance) else {
            continue;
        };
        let Some(handle) = world
            .get_mut::<PhysicsSpace>(instance)
            .map(|mut space| space.add_ship(ship, pos, 0.0))
        else {
            continue;
        };
        let mut entity = world.entity_mut(ship);
        entity.remove::<OutOfPlay>().insert((
            Body(handle),
            Docked(station),
            Kinematics {
                pos,
                vel: Vec2::ZERO,
                rot: 0.0,
            },
        ));
        if let Some(mut hull) = entity.get_mut::<Hull>() {
            hull.hp = hull.max;
        }
        if let Some(mut fuel) = entity.get_mut::<Fuel>() {
            fuel.level = fuel.max;
        }
        let (id, hp) = (
            world.get::<Replicated>(ship).map(|r| r.net_id.clone()),
            world.get::<Hull>(ship).map_or(0, |h| h.hp),
        );
        if let Some(id) = id {
            notify(
                world,
                &[ship],
                CombatEvent {
                    kind: "respawned",
                    source_id: id.clone(),
                    target_id: id,
                    damage: 0,
                    target_hp: hp,
                },
            );
        }
        if let Some(mut client) = world.get_mut::<Client>(ship) {
            client.needs_snapshot = true;
        }
        persist(world, ship);
    }
}

pub struct WeaponsPlugin;

impl Plugin for WeaponsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Hits>().add_systems(
            FixedUpdate,
            (
                fire_weapons,
                move_projectiles,
                resolve_hits,
                respawn_players,
            )
                .chain()
                .in_set(TickSet::Combat),
        );
    }
}
