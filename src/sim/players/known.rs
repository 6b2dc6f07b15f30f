//! What each client has been sent: replication's bookkeeping per client.

use std::sync::Arc;

use bevy_ecs::prelude::*;

/// What a client has been sent of one entity.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The id the client knows it by (kept to name it in `entity_removed`).
    pub id: Arc<str>,
    /// The tick of the state last sent; newer changes are pending.
    pub sent_tick: u64,
    /// Grows every tick a pending change waits; the highest go out first.
    pub priority: f32,
}

/// The entities a client knows, sorted by entity.
///
/// Sorted rather than hashed because replication's full scan of an area of interest is a
/// merge of two sorted lists (what the grid holds there, what the client knows): one
/// sequential pass instead of a hash probe, and usually a cache miss, per entity in view.
/// With a thousand clients each knowing hundreds of entities, those probes were most of a
/// crowded tick.
#[derive(Debug, Default)]
pub struct Known {
    pub(crate) entries: Vec<(Entity, Seen)>,
}

impl Known {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Where `entity` is in the list, if known; valid until the list next changes.
    pub fn index_of(&self, entity: Entity) -> Option<usize> {
        self.entries.binary_search_by_key(&entity, |(e, _)| *e).ok()
    }

    pub fn get(&self, entity: Entity) -> Option<&Seen> {
        self.index_of(entity).map(|i| &self.entries[i].1)
    }

    pub fn contains(&self, entity: Entity) -> bool {
        self.index_of(entity).is_some()
    }

    /// The entry at `index` if it is still `entity`'s: a lookup without a search, for
    /// indexes taken since the list last changed.
    pub fn at(&self, index: usize, entity: Entity) -> Option<&Seen> {
        match self.entries.get(index) {
            Some((e, seen)) if *e == entity => Some(seen),
            _ => None,
        }
    }

    pub fn at_mut(&mut self, index: usize, entity: Entity) -> Option<&mut Seen> {
        match self.entries.get_mut(index) {
            Some((e, seen)) if *e == entity => Some(seen),
            _ => None,
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &Seen> {
        self.entries.iter().map(|(_, seen)| seen)
    }

    /// Replaces what is known with `entries`, in any order.
    pub fn replace(&mut self, mut entries: Vec<(Entity, Seen)>) {
        entries.sort_unstable_by_key(|(e, _)| *e);
        self.entries = entries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_entities_are_found_by_search_and_by_a_checked_index() {
        let mut world = World::new();
        let entities: Vec<Entity> = (0..50).map(|_| world.spawn_empty().id()).collect();
        let seen = |tick| Seen {
            id: Arc::from("s"),
            sent_tick: tick,
            priority: 0.0,
        };
        let mut known = Known::default();
        // Any order in, sorted inside.
        known.replace(
            entities
                .iter()
                .rev()
                .step_by(2)
                .map(|e| (*e, seen(7)))
                .collect(),
        );
        assert_eq!(known.len(), 25);
        for (i, entity) in entities.iter().enumerate() {
            assert_eq!(known.contains(*entity), i % 2 == 1, "entity {i}");
        }
        let entity = entities[11];
        let index = known.index_of(entity).unwrap();
        assert_eq!(known.at(index, entity).map(|s| s.sent_tick), Some(7));
        known.at_mut(index, entity).unwrap().sent_tick = 9;
        assert_eq!(known.get(entity).map(|s| s.sent_tick), Some(9));
        // An index that no longer holds the entity finds nothing rather than another's.
        assert!(known.at(index, entities[13]).is_none());
        assert!(known.at(1000, entity).is_none());
    }
}
