//! Where a partition is: its position in its inputs with the fate of every record, its event clock (the
//! watermark), and the event ids recent enough to make a duplicate.

use rustc_hash::FxHashMap;

use crate::tables::EventKey;

/// Below this many remembered event ids, pruning them is not worth a pass over the map.
pub const SEEN_MIN: usize = 4096;

/// Where the partition is in its two inputs, and what became of the records it read.
#[derive(Default)]
pub struct Position {
    pub next_offset: i64,
    // records from the repartition topic (input of other partitions whose users this partition owns): the next
    // one to take, and how many of this partition's own input records went to other partitions that way
    pub repart_next: i64,
    pub forwarded: u64,
    pub processed: u64,
    pub counters: [u64; 4], // accepted, dead-lettered, late, duplicates
    pub dirty: bool,        // moved since the last flush
}

/// The event clock the watermark follows. With one input (keyed by user id) it is `max_ts`. Once records
/// forwarded from other partitions arrive, each source is a stream with its own clock (this partition's input
/// is the stream numbered as the partition), and the clock is the slowest stream's, ignoring streams more
/// than `forward_wait` behind the fastest; it never goes back. A partition reads its own input as a backlog
/// faster than other partitions forward theirs, so a clock run by its own input alone would make the
/// forwarded records of the same time late.
pub struct EventClock {
    pub max_ts: i64, // the largest event clock of any record taken
    pub clock: i64,
    pub clocks: Vec<(i32, i64)>, // (stream, its largest event clock); empty until a forwarded record arrives
    pub floor: i64,              // raised by wall clock for an idle partition
}

impl EventClock {
    pub fn watermark(&self, grace: i64) -> i64 {
        (self.clock - grace).max(self.floor)
    }

    /// A record of `stream` (`own`: the partition's input; else the partition that forwarded it) with event clock
    /// `clock` was taken.
    pub fn observe(&mut self, own: i32, stream: i32, clock: i64, forward_wait: i64) {
        if self.clocks.is_empty() {
            if stream == own {
                if clock > self.max_ts {
                    self.max_ts = clock;
                    self.clock = clock;
                }
                return;
            }
            self.clocks.push((own, self.max_ts)); // every record so far was this partition's own
        }
        match self.clocks.iter_mut().find(|c| c.0 == stream) {
            Some(c) if clock <= c.1 => return,
            Some(c) => c.1 = clock,
            None => self.clocks.push((stream, clock)),
        }
        self.max_ts = self.max_ts.max(clock);
        let since = self.max_ts - forward_wait;
        let slowest = self.clocks.iter().map(|c| c.1).filter(|&c| c >= since).min().unwrap_or(self.max_ts);
        self.clock = self.clock.max(slowest);
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
