//! A window's exact breakdowns: for every value of every dimension, counts per event type and revenue.
//!
//! Partials merge across partitions by plain sums, like the window summary. Each dimension is broken down on
//! its own (not their cross product), so a window's breakdown has as many rows as it saw distinct values.

use rustc_hash::FxHashMap;

use crate::change::Change;
use crate::tables::Row;

/// The dimensions every window is broken down by, in index order. Declared once: the documents, the
/// changelog and Python (`pulse.aggregate.model.DIMENSIONS`, the mapping, the queries) follow this list.
pub const DIMENSIONS: [&str; 4] = ["category", "status", "country", "device"];
pub const CATEGORY: usize = 0;
pub const STATUS: usize = 1;
pub const COUNTRY: usize = 2;
pub const DEVICE: usize = 3;
pub const DIMS: usize = DIMENSIONS.len();

/// One event's value of each dimension, interned per dimension; None where it has none (an item-less event's
/// category).
pub type Values = [Option<u32>; DIMS];

#[derive(Default)]
pub struct Breakdown {
    pub rows: [FxHashMap<u32, Row>; DIMS],
    pub change: Change,
    pub logged_pages: u16,    // changelog pages written (to tombstone them all)
    pub legacy_records: bool, // restored from the older one-record-per-window category log, to tombstone too
}

impl Breakdown {
    pub fn add(&mut self, values: &Values, etype: u32, paid: Option<i64>) {
        self.change.touch();
        for (rows, value) in self.rows.iter_mut().zip(values) {
            if let Some(v) = value {
                rows.entry(*v).or_default().add(etype, paid);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.iter().all(|r| r.is_empty())
    }

    pub fn len(&self) -> usize {
        self.rows.iter().map(|r| r.len()).sum()
    }

    /// Every row as (dimension, value id, row), dimension by dimension.
    pub fn iter(&self) -> impl Iterator<Item = (usize, u32, &Row)> {
        self.rows.iter().enumerate().flat_map(|(d, rows)| rows.iter().map(move |(&v, row)| (d, v, row)))
    }

    pub fn capacity(&self) -> usize {
        self.rows.iter().map(|r| r.capacity()).sum()
    }
}
