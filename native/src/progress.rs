//! Where a partition is: its position in its inputs with the fate of every record, its event clocks (as the
//! source of its own input, and as the owner of its users' records), and the event ids recent enough to make a
//! duplicate.

use rustc_hash::FxHashMap;

use crate::tables::EventKey;

/// Below this many remembered event ids, pruning them is not worth a pass over the map.
pub const SEEN_MIN: usize = 4096;
/// No event time yet.
pub const NEVER: i64 = -(1 << 62);

/// Where the partition is in its two inputs, and what became of the records it read.
#[derive(Default)]
pub struct Position {
    pub next_offset: i64,
    // records from the repartition topic (input of other partitions whose users this partition owns, and their
    // watermarks): the next one to take, and how many of this partition's own input records went elsewhere
    pub repart_next: i64,
    pub forwarded: u64,
    pub processed: u64,
    pub counters: [u64; 4], // accepted, dead-lettered, late, duplicates
    pub dirty: bool,        // moved since the last flush
}

/// A source partition's watermark as an owner sees it: its value, and whether the source said it is idle
/// (nothing to read, and quiet for the idle timeout) since its last input record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mark {
    pub value: i64,
    pub idle: bool,
}

impl Mark {
    pub const UNSEEN: Mark = Mark { value: NEVER, idle: false };
}

/// Event time, decided where each record is read and carried to the owner of its user (Flink's rule across a
/// network shuffle):
/// - as a *source*, the partition judges every record of its own input in offset order against its own
///   watermark (`source`): the largest event clock of its on-time records minus grace, or a floor the idle rule
///   recorded. A record below it is late, wherever its user is owned; an on-time record of another partition's
///   user is forwarded, and the watermark follows it to every other partition as a marker;
/// - as an *owner*, its watermark (`owner`) is the smallest of its sources' (its own and every other
///   partition's, as their markers arrived), never going back. An idle source more than `forward_wait` behind
///   the most advanced one holds nobody back (an empty or long-quiet partition).
///
/// A record forwarded on time is never below its owner's watermark (the owner has only seen markers its source
/// sent before it), so windows hold the same records whatever the order of arrival.
pub struct EventClock {
    pub max_ts: i64, // the largest event clock (event time capped by the record's timestamp) of an on-time input record
    pub floor: i64,  // raised by the idle rule
    pub idle: bool,  // the idle rule said so, and no input record was read since
    pub marks: Vec<Mark>, // per input partition, its watermark as last received here (own slot unused); empty: no forwarding
    pub owner: i64,
    pub sent: Mark, // the source watermark last sent to the other partitions
}

impl EventClock {
    pub fn new(partitions: u32) -> Self {
        let marks = if partitions > 1 { vec![Mark::UNSEEN; partitions as usize] } else { Vec::new() };
        EventClock { max_ts: NEVER, floor: NEVER, idle: false, marks, owner: NEVER, sent: Mark::UNSEEN }
    }

    /// This partition's watermark as the source of its own input.
    pub fn source(&self, grace: i64) -> Mark {
        Mark { value: (self.max_ts - grace).max(self.floor), idle: self.idle }
    }

    /// Recompute the owner watermark from the sources' marks (call after any of them changed).
    pub fn refresh(&mut self, own: i32, grace: i64, forward_wait: i64) {
        let mine = self.source(grace);
        let others = self.marks.iter().enumerate().filter(|(q, _)| *q != own as usize).map(|(_, m)| *m);
        let all = || std::iter::once(mine).chain(others.clone());
        let front = all().map(|m| m.value).max().unwrap_or(NEVER);
        let held = all().filter(|m| !(m.idle && m.value < front.saturating_sub(forward_wait))).map(|m| m.value).min();
        if let Some(v) = held {
            self.owner = self.owner.max(v);
        }
    }

    /// A marker from source partition `from`.
    pub fn mark(&mut self, from: usize, mark: Mark) {
        if let Some(m) = self.marks.get_mut(from) {
            *m = Mark { value: m.value.max(mark.value), idle: mark.idle };
        }
    }
}

/// Event ids seen recently enough to make a duplicate, with the event time each was first seen at.
pub struct Dedup {
    pub seen: FxHashMap<EventKey, i64>,
    pub cap: usize, // prune when the map outgrows this
}

impl Dedup {
    /// Remember an id. Ids older than `horizon` can never make a duplicate again (the watermark only rises), so
    /// they are dropped whenever the map has doubled since it was last pruned: a backlog read between flushes
    /// (which prune too) would otherwise keep every id it read.
    pub fn insert(&mut self, id: EventKey, ts: i64, horizon: i64) {
        self.seen.insert(id, ts);
        if self.seen.len() > self.cap {
            self.prune(horizon);
            self.cap = (2 * self.seen.len()).max(SEEN_MIN);
        }
    }

    pub fn prune(&mut self, horizon: i64) {
        self.seen.retain(|_, first| *first >= horizon);
    }
}
