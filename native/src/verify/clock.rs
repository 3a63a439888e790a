//! Which input records count, and where: the event-time rule of `pulse.verify.order`, written again for speed.
//!
//! It shares no code with the engine's (`progress.rs`, `forward.rs`): the same documented rule, a second
//! implementation. Tests hold it equal to the Python one on random inputs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use rustc_hash::FxHashMap;

/// No event time yet (`pulse.verify.order.NEVER`).
pub const NEVER: i64 = -(1 << 62);

/// Records read and what became of them (`pulse.verify.order.Counts`).
#[derive(Default, Clone)]
pub struct Counts {
    pub read: i64,
    pub dead_lettered: i64,
    pub late: i64,
    pub duplicates: i64,
    pub accepted: i64,
    pub forwarded: i64,
    pub corrected: i64,
    pub problems: Vec<String>,
}

/// Records sent from one partition to another: how many, and an order-free digest of them; the same of those
/// forwarded as corrections; and the same of the early ones, those that count in windows before the end of a
/// range (`until`), which both sides of a pair have seen whole when their walks stop there.
#[derive(Default, Clone, Copy)]
pub struct Flow {
    pub count: i64,
    pub digest: u64,
    pub corrections: i64,
    pub corrections_digest: u64,
    pub unsure: i64, // sent by a range's walk before its clock was the partition's own: perhaps not forwarded
    pub early: i64,
    pub early_digest: u64,
    pub early_unsure: i64,
}

impl Flow {
    /// A record forwarded; `early`: not a correction, and its event time before the range's end.
    pub fn add(&mut self, offset: i64, value: &[u8], correction: bool, early: bool) {
        // SipHash with fixed keys: the same in every worker of one build, which is all a digest needs
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        offset.hash(&mut h);
        value.hash(&mut h);
        let h = h.finish();
        self.count += 1;
        self.digest = self.digest.wrapping_add(h);
        if correction {
            self.corrections += 1;
            self.corrections_digest = self.corrections_digest.wrapping_add(h);
        }
        if early {
            self.early += 1;
            self.early_digest = self.early_digest.wrapping_add(h);
        }
    }
}

/// How a source judged a record.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum Judged {
    OnTime,
    Correction,
    TooLate,
}

/// A partition's clock as the source of its own input.
pub struct Source {
    pub grace: i64,
    pub horizon: i64,
    pub max_ts: i64,
    pub floor: i64,
    pub idle: bool,
}

impl Source {
    pub fn new(grace: i64, horizon: i64) -> Self {
        Source { grace, horizon, max_ts: NEVER, floor: NEVER, idle: false }
    }

    pub fn value(&self) -> i64 {
        (self.max_ts - self.grace).max(self.floor)
    }

    /// Judge an event at `ts`: on time (then the clock follows it), a correction, or too late.
    pub fn judge(&mut self, ts: i64, record_ts: i64) -> Judged {
        let wm = self.value();
        if ts < wm {
            return if ts < wm - self.horizon { Judged::TooLate } else { Judged::Correction };
        }
        self.max_ts = self.max_ts.max(ts.min(record_ts));
        Judged::OnTime
    }

    pub fn apply(&mut self, floor: Option<i64>, idle: bool) {
        if let Some(f) = floor {
            self.floor = self.floor.max(f);
        }
        self.idle = self.idle || idle;
    }
}

/// What the owner made of a record it took.
#[derive(PartialEq, Eq, Debug)]
pub enum Verdict {
    Late,
    Duplicate,
    Accepted,
    Corrected,
}

/// A partition's clock as the owner of its users' records, and the ids it counted within the horizon.
pub struct Owner {
    pub horizon: i64,
    pub forward_wait: i64,
    pub source: Source,
    marks: Vec<Option<(i64, bool)>>, // by source partition; None for itself (or a single partition)
    busy_min: Option<i64>,           // the smallest other source's watermark, when none of them is idle
    pub watermark: i64,
    first_seen: FxHashMap<Rc<str>, i64>,
    expiry: BinaryHeap<Reverse<(i64, Rc<str>)>>,
}

impl Owner {
    pub fn new(partition: usize, partitions: usize, horizon: i64, forward_wait: i64, grace: i64) -> Self {
        let marks = if partitions > 1 {
            (0..partitions).map(|q| (q != partition).then_some((NEVER, false))).collect()
        } else {
            Vec::new()
        };
        let mut owner = Owner {
            horizon,
            forward_wait,
            source: Source::new(grace, horizon),
            marks,
            busy_min: None,
            watermark: NEVER,
            first_seen: FxHashMap::default(),
            expiry: BinaryHeap::new(),
        };
        owner.summarize();
        owner
    }

    fn others(&self) -> impl Iterator<Item = (i64, bool)> + '_ {
        self.marks.iter().flatten().copied()
    }

    fn summarize(&mut self) {
        self.busy_min = if self.others().any(|(_, idle)| idle) { None } else { self.others().map(|(v, _)| v).min() };
    }

    pub fn refresh(&mut self) {
        let own = self.source.value();
        let low = if !self.source.idle && self.busy_min.is_some() {
            own.min(self.busy_min.unwrap_or(own)) // nothing idle: every source holds the owner back
        } else if !self.source.idle && self.others().next().is_none() {
            own
        } else {
            let sources: Vec<(i64, bool)> = std::iter::once((own, self.source.idle)).chain(self.others()).collect();
            let front = sources.iter().map(|s| s.0).max().unwrap_or(NEVER);
            let held = sources.iter().filter(|(v, idle)| !(*idle && *v < front - self.forward_wait)).map(|s| s.0);
            match held.min() {
                Some(low) => low,
                None => return,
            }
        };
        if low > self.watermark {
            self.watermark = low;
            self.forget(low - self.horizon);
        }
    }

    fn forget(&mut self, before: i64) {
        while let Some(Reverse((ts, _))) = self.expiry.peek() {
            if *ts >= before {
                break;
            }
            let Some(Reverse((ts, id))) = self.expiry.pop() else { break };
            if self.first_seen.get(&id) == Some(&ts) {
                self.first_seen.remove(&id);
            }
        }
    }

    fn mark_of(&mut self, source: usize) -> Option<&mut (i64, bool)> {
        self.marks.get_mut(source).and_then(|m| m.as_mut())
    }

    pub fn mark(&mut self, source: usize, value: i64, idle: bool) {
        if let Some(m) = self.mark_of(source) {
            *m = (m.0.max(value), idle);
            self.summarize();
            self.refresh();
        }
    }

    /// The other sources whose watermark, as taken here, reached `until`: every record they forwarded on time
    /// with an earlier event time came before that watermark.
    pub fn sources_past(&self, until: i64) -> Vec<usize> {
        let past = |(q, m): (usize, &Option<(i64, bool)>)| m.filter(|(value, _)| *value >= until).map(|_| q);
        self.marks.iter().enumerate().filter_map(past).collect()
    }

    pub fn stall(&mut self, source: usize) {
        if let Some(m) = self.mark_of(source) {
            m.1 = true;
            self.summarize();
            self.refresh();
        }
    }

    /// How an event at `ts` counts here; `correction`: its source judged it one.
    pub fn take(&mut self, ts: i64, event_id: &str, counts: &mut Counts, correction: bool) -> Verdict {
        let horizon = self.watermark - self.horizon;
        if ts < horizon {
            counts.late += 1;
            return Verdict::Late;
        }
        if let Some(&first) = self.first_seen.get(event_id) {
            if first >= horizon {
                counts.duplicates += 1;
                return Verdict::Duplicate;
            }
        }
        let id: Rc<str> = Rc::from(event_id);
        self.first_seen.insert(id.clone(), ts);
        self.expiry.push(Reverse((ts, id)));
        if correction || ts < self.watermark {
            counts.corrected += 1;
            return Verdict::Corrected;
        }
        counts.accepted += 1;
        Verdict::Accepted
    }
}

/// Kafka's default partitioner for keyed records (the engine's implementation: tests hold the walk that uses it
/// equal to the Python reference, which uses the generator's).
pub fn partition_for(key: &str, partitions: usize) -> usize {
    crate::tables::user_partition(key, partitions as u32) as usize
}
