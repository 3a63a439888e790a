//! Where a partition is: its position in its inputs with the fate of every record, its event clocks (as the
//! source of its own input, and as the owner of its users' records), and the event ids recent enough to make a
//! duplicate.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::dedup::key::Key;
use crate::dedup::SeenIds;

/// No event time yet.
pub const NEVER: i64 = -(1 << 62);

pub const ACCEPTED: usize = 0;
pub const DEAD_LETTERED: usize = 1;
pub const LATE: usize = 2;
pub const DUPLICATES: usize = 3;
pub const CORRECTED: usize = 4;
/// The fates of a record, in the order of `counters` (the partition document's fields, the metrics'
/// `outcome` label and `Counters` follow it).
pub const OUTCOMES: [&str; 5] = ["accepted", "dead_lettered", "late", "duplicates", "corrected"];

/// Where the partition is in its two inputs, and what became of the records it read.
#[derive(Default)]
pub struct Position {
    pub next_offset: i64,
    // records from the repartition topic (input of other partitions whose users this partition owns, and their
    // watermarks): the next one to take, and how many of this partition's own input records went elsewhere
    pub repart_next: i64,
    pub forwarded: u64,
    pub processed: u64,
    pub counters: [u64; OUTCOMES.len()],
    pub dirty: bool, // moved since the last flush
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

/// Event ids seen recently enough to make a duplicate, with the event time each was first seen at (in the id
/// store, `dedup/`), and what the changelog owes: ids remembered since the last flush, and the id records of
/// event-time hours now past the horizon.
pub struct Dedup {
    store: SeenIds,
    pub pending: Vec<(Key, i64)>,
    pub logged: BTreeMap<i64, Vec<String>>, // the changelog's id records by event-time hour
    pub tombstones: Vec<String>,
    pub from_log: bool, // the changelog logs ids: restore need not re-read the input
}

/// Ids the store holds in memory before it seals them into a run on disk.
pub const SEAL_AT: usize = 1 << 17;

const HOUR_MS: i64 = 3_600_000;

impl Dedup {
    pub fn new(dir: PathBuf) -> Self {
        let store = SeenIds::new(dir.clone(), SEAL_AT)
            .unwrap_or_else(|e| panic!("cannot keep event ids in {}: {e}", dir.display()));
        Dedup { store, pending: Vec::new(), logged: BTreeMap::new(), tombstones: Vec::new(), from_log: false }
    }

    /// The event time `key` was first counted at, if it is still held.
    pub fn first(&self, key: &Key) -> Option<i64> {
        self.store.get_key(key).unwrap_or_else(|e| panic!("reading the event id store: {e}"))
    }

    /// Remember an id (logged at the next flush). Ids older than `horizon` can never make a duplicate again (the
    /// watermark only rises): the store drops them as it goes.
    pub fn insert(&mut self, key: Key, ts: i64, horizon: i64) {
        self.pending.push((key.clone(), ts));
        self.store.insert_key(key, ts, horizon).unwrap_or_else(|e| panic!("writing the event id store: {e}"));
    }

    /// Forget the ids past `horizon`, and owe tombstones for the id records of the hours wholly past it.
    pub fn expire(&mut self, horizon: i64) {
        self.store.expire(horizon).unwrap_or_else(|e| panic!("expiring the event id store: {e}"));
        let past: Vec<i64> = self.logged.range(..horizon - HOUR_MS + 1).map(|(h, _)| *h).collect();
        for hour in past {
            self.tombstones.extend(self.logged.remove(&hour).unwrap_or_default());
        }
    }

    /// An id the changelog logged (in log order: of an id logged twice, the later counts). Not logged again.
    pub fn restored(&mut self, key: Key, ts: i64) {
        self.store.insert_key(key, ts, i64::MIN).unwrap_or_else(|e| panic!("restoring the event id store: {e}"));
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Bytes held in memory: the store's, and the ids the next flush logs.
    pub fn memory_bytes(&self) -> usize {
        self.store.memory_bytes() + self.pending.capacity() * std::mem::size_of::<(Key, i64)>()
    }

    /// The event-time hour an id's record is logged under.
    pub fn hour(ts: i64) -> i64 {
        ts.div_euclid(HOUR_MS) * HOUR_MS
    }
}
