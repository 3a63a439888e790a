//! How early an owner's windows can be handed out (`pulse.verify.lookahead`, whose docstring gives the reasoning):
//! a bound below which no record the owner has yet to take from the repartition topic can fall.

use super::clock::NEVER;

/// No bound: nothing left that could fall below it.
pub const ALWAYS: i64 = 1 << 62;

/// What one sender put in an owner's repartition partition.
pub struct SenderLog {
    pub marker_offsets: Vec<i64>,
    pub marker_values: Vec<i64>, // running largest
    pub batches: Vec<i64>,       // offsets of its batches that carry records
}

impl SenderLog {
    fn bound(&self, position: i64) -> i64 {
        let i = self.batches.partition_point(|&b| b < position);
        let Some(&batch) = self.batches.get(i) else { return ALWAYS };
        let j = self.marker_offsets.partition_point(|&m| m < batch);
        if j == 0 {
            NEVER
        } else {
            self.marker_values[j - 1]
        }
    }
}

/// One owner's repartition partition, indexed up to offset `end`.
pub struct Lookahead {
    pub end: i64,
    pub senders: Vec<SenderLog>,
}

impl Lookahead {
    pub fn bound(&self, position: i64) -> i64 {
        if position >= self.end {
            return NEVER;
        }
        self.senders.iter().map(|s| s.bound(position)).min().unwrap_or(ALWAYS)
    }
}
