//! An estimate of the heap a partition's state holds, from the capacities of its collections: what the
//! aggregator's `pulse_state_bytes` metric reports. It counts table slots and interned strings, not allocator
//! overhead, so it is a lower bound of the memory the state costs.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::mem::size_of;

use crate::state::{Names, Row, Shards, State, Window};

/// Bytes of a hash table with `cap` slots of `K`, `V` (one control byte per slot, as hashbrown keeps).
fn table<K, V, S: BuildHasher>(map: &HashMap<K, V, S>) -> usize {
    map.capacity() * (size_of::<K>() + size_of::<V>() + 1)
}

fn names(n: &Names) -> usize {
    n.list.capacity() * size_of::<std::sync::Arc<str>>()
        + n.list.iter().map(|s| s.len() + 16).sum::<usize>()
        + n.list.len() * (size_of::<std::sync::Arc<str>>() + size_of::<u32>() + 1)
}

fn shards(s: &Shards) -> usize {
    s.maps.iter().map(table).sum::<usize>()
}

fn window(w: &Window) -> usize {
    size_of::<Window>()
        + w.users.capacity() * (size_of::<u32>() + 1)
        + w.new_users.capacity() * size_of::<u32>()
        + shards(&w.items)
        + w.dims.capacity() * (size_of::<u32>() + size_of::<Row>() + 1)
        + w.user_sketch.registers.capacity()
        + w.quantiles.sketches.iter().map(|s| s.bins.len() * 2 * (size_of::<i32>() + size_of::<u64>())).sum::<usize>()
}

impl State {
    /// Approximate heap bytes of this partition's state (see the module's note).
    pub fn footprint(&self) -> usize {
        let windows: usize = self.windows.values().map(window).sum();
        let sessions = table(&self.sessions.map) + self.sessions.map.keys().map(String::capacity).sum::<usize>();
        windows
            + sessions
            + self.dedup.memory_bytes()
            + shards(&self.catalog.item_state)
            + self.users.list.capacity() * size_of::<crate::state::User>()
            + self
                .users
                .list
                .iter()
                .map(|u| u.hours.capacity() * size_of::<(i64, Row)>() + u.seen.heap_bytes())
                .sum::<usize>()
            + [&self.catalog.types, &self.catalog.items, &self.users.ids]
                .into_iter()
                .chain(&self.catalog.labels)
                .map(names)
                .sum::<usize>()
            + self.catalog.item_cat.capacity() * size_of::<Option<Option<u32>>>()
    }
}
