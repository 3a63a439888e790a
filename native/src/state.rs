//! One input partition's aggregation state: late check → de-duplicate → session funnel → windows → entities.
//!
//! Deterministic in the partition's offset order, so a replay after a crash makes the same decisions. Money is
//! integer cents. Names (event types, statuses, items, categories, users) are interned per partition, so the
//! hot path counts small integers and a million users cost a few hundred bytes each.

use rustc_hash::FxHashSet;
use std::collections::BTreeMap;

pub use crate::entities::{EntityLog, User, Users, ABSENT, USER_HOURS, USER_HOUR_MS};
pub use crate::progress::{
    Dedup, EventClock, Mark, Position, ACCEPTED, CORRECTED, DEAD_LETTERED, DUPLICATES, LATE, NEVER, OUTCOMES,
};
pub use crate::sessions::{FunnelChanges, Session, Sessions, FUNNEL};
pub use crate::tables::{
    bump, item_shard, murmur2, user_partition, Counts, Names, Row, Shards, ITEM_SHARDS, PAGE_BYTES,
};

use crate::breakdown::{Breakdown, Values, CATEGORY, COUNTRY, DEVICE, DIMS, STATUS};
use crate::change::Change;
use crate::dedup::key::encode;
use crate::event::{cents, Event};
use crate::hll::{user_hash, Hll, EXACT_USERS_UP_TO, SKETCH_USERS_FROM};
use crate::publish::Plan;
use crate::seen::Layout;
use crate::sketch::{Quantiles, AMOUNT, PRICE};

/// The `.late` topic's reason for an event too late to correct.
pub const BEYOND_HORIZON: &str = "beyond_horizon";

/// Partial aggregates of one tumbling window for one partition.
#[derive(Default)]
pub struct Window {
    pub size: i64,
    pub start: i64,
    pub counts: Counts,
    pub status: Counts,
    pub rev: [i64; 4], // ok purchases: count, sum, min, max (cents)
    pub funnel: [u64; 4],
    pub users: FxHashSet<u32>, // counted on time (a revision: counted first by a correction)
    pub user_delta: i64,       // a revision's: users an earlier revision counted, then counted on time (negative)
    pub new_users: Vec<u32>,
    pub user_chunks: u32, // changelog records holding this window's user ids so far
    pub summary: Change,
    pub items: Shards,
    pub dims: Breakdown,
    pub quantiles: Quantiles,
    pub user_sketch: Hll, // windows from `SKETCH_USERS_FROM` on
}

impl Window {
    pub fn end(&self) -> i64 {
        self.start + self.size
    }
    /// Whether some record of the window is in the changelog, so that evicting it takes tombstones.
    pub fn logged(&self) -> bool {
        self.summary.logged()
            || self.items.change.logged()
            || self.dims.change.logged()
            || self.dims.legacy_records
            || self.quantiles.change.logged()
            || self.user_sketch.change.logged()
            || self.user_chunks > 0
    }
    /// Once a flush is handed to its transaction at wall clock `now` (summaries go out whenever they changed).
    fn flushed(&mut self, items: bool, breakdowns: bool, now: i64) {
        self.summary.flushed(true);
        self.quantiles.change.flushed(true);
        self.items.flushed(items.then_some(now));
        self.dims.change.flushed(breakdowns);
        self.user_sketch.change.flushed(breakdowns);
        self.new_users.clear();
    }
    /// Whether the window counts its users exactly (a set), or only with its HyperLogLog.
    pub fn exact_users(&self) -> bool {
        self.size <= EXACT_USERS_UP_TO
    }
    /// Distinct users this document adds to the window: its own document counts every user counted on time; its
    /// revisions, summed, every other user a correction counted (a revision takes back a user it counted first
    /// and the window then counted on time), so the sum does not depend on arrival order.
    pub fn unique_users(&self) -> i64 {
        self.users.len() as i64 + self.user_delta
    }
    /// One event in the window's counts, breakdowns, item rows (`items`: the window keeps them), revenue and
    /// quantiles (not its users, nor its funnel).
    fn count(&mut self, f: &Facts<'_>, items: bool) {
        bump(&mut self.counts, f.etype, 1);
        bump(&mut self.status, f.status, 1);
        if let Some(it) = f.item.filter(|_| items) {
            self.items.row(f.shard, it).add(f.etype, f.paid);
        }
        self.dims.add(f.values, f.etype, f.paid);
        if let Some(amount) = f.paid {
            self.add_revenue(amount);
            self.quantiles.add(AMOUNT, amount);
            if let Some(price) = f.price {
                self.quantiles.add(PRICE, cents(price));
            }
        }
    }
    pub fn add_revenue(&mut self, amount: i64) {
        let r = &mut self.rev;
        r[2] = if r[0] == 0 { amount } else { r[2].min(amount) };
        r[3] = if r[0] == 0 { amount } else { r[3].max(amount) };
        r[0] += 1;
        r[1] += amount;
    }
}

/// An event's names as numbers, and what it paid: what a window counts of it.
struct Facts<'a> {
    etype: u32,
    status: u32,
    item: Option<u32>,
    shard: usize,
    values: &'a Values,
    paid: Option<i64>,
    price: Option<f64>,
}

pub struct Config {
    pub sizes: Vec<i64>,
    pub grace: i64,
    pub horizon: i64, // the correction horizon: how far below the watermark an event still counts (as a correction)
    pub session_timeout: i64,
    pub compact_after: u64,
    pub partitions: u32, // the input topic's partition count, to tell events not keyed by user id (0: unknown)
    pub forward_wait: i64, // how far (event time) behind the others an idle source may be and still hold owners back
    pub user_max_delay: i64, // wall clock a changed user's document waits at most, whatever the budget
    pub items_from: i64, // the shortest window that keeps item rows (`publish::items_from`)
    pub ids_dir: std::path::PathBuf, // where the event id store keeps its runs (a cache of this partition's)
    pub layout: Layout,  // where a user's bitmap of the windows it was counted in keeps each size
}

impl Config {
    pub fn keeps_items(&self, size: i64) -> bool {
        size >= self.items_from
    }
}

/// What happened to one record, for the caller's side outputs.
pub enum Outcome {
    Accepted,
    Duplicate,
    Late(String),
    /// Another partition owns the event's user: the record goes to it through the repartition topic, saying
    /// whether its source judged it a correction.
    Forward {
        owner: u32,
        correction: bool,
    },
}

/// Interned names and the current state of items.
#[derive(Default)]
pub struct Catalog {
    pub types: Names, // event types and statuses
    pub items: Names,
    pub labels: [Names; DIMS], // each dimension's values (categories are also the items' categories)
    pub item_cat: Vec<Option<Option<u32>>>, // item → category, first seen wins (shared by all windows)
    pub item_state: Shards,
}

pub struct State {
    pub cfg: Config,
    pub partition: i32,
    pub pos: Position,
    pub time: EventClock,
    pub windows: BTreeMap<(i64, i64), Window>,
    /// Corrections since the last flush, per window they fall in: each goes out as a revision of that window
    /// (documents beside its own, merged by readers) and is then dropped.
    pub revisions: BTreeMap<(i64, i64), Window>,
    pub catalog: Catalog,
    pub users: Users,
    pub sessions: Sessions,
    pub dedup: Dedup,
    pub log: EntityLog,
}

/// The revision of window (`size`, `start`) this flush is building, begun empty.
fn revision(revisions: &mut BTreeMap<(i64, i64), Window>, size: i64, start: i64) -> &mut Window {
    revisions.entry((size, start)).or_insert_with(|| Window { size, start, ..Default::default() })
}

impl State {
    pub fn new(partition: i32, cfg: Config) -> Self {
        State {
            time: EventClock::new(cfg.partitions),
            dedup: Dedup::new(cfg.ids_dir.clone()),
            cfg,
            partition,
            pos: Position::default(),
            windows: BTreeMap::new(),
            revisions: BTreeMap::new(),
            catalog: Catalog::default(),
            users: Users::default(),
            sessions: Sessions::default(),
            log: EntityLog::default(),
        }
    }

    /// The owner watermark: windows up to it are final, and it is the clock of duplicates and sessions.
    pub fn watermark(&self) -> i64 {
        self.time.owner
    }

    /// The watermark of this partition's own input, as a source (see `EventClock`).
    pub fn source(&self) -> Mark {
        self.time.source(self.cfg.grace)
    }

    fn refresh(&mut self) {
        self.time.refresh(self.partition, self.cfg.grace, self.cfg.forward_wait);
    }

    /// Idle partitions: raise the source watermark to at least `value` by wall clock (recorded), and say the
    /// source is idle until its next input record; true if anything changed.
    pub fn advance_to(&mut self, value: i64, idle: bool) -> bool {
        let before = self.source();
        self.time.floor = self.time.floor.max(value);
        self.time.idle |= idle;
        if self.source() == before {
            return false;
        }
        self.refresh();
        self.pos.dirty = true;
        true
    }

    /// A watermark marker another partition sent this one through the repartition topic (after `begin_forwarded`).
    pub fn marked(&mut self, from: i64, mark: Mark) {
        if from >= 0 && from != self.partition as i64 {
            self.time.mark(from as usize, mark);
            self.refresh();
        }
    }

    /// Treat source partition `from` as idle here until its next watermark (its watermark has not moved for a
    /// long while: its aggregator died or hangs), so that it holds this partition's windows back by at most
    /// `forward_wait` of event time; a recorded decision. True if anything changed.
    pub fn stalled(&mut self, from: usize) -> bool {
        match self.time.marks.get_mut(from) {
            Some(m) if from != self.partition as usize && !m.idle => {
                m.idle = true;
                self.refresh();
                self.pos.dirty = true;
                true
            }
            _ => false,
        }
    }

    /// Markers to send to the other partitions: the source watermark if it changed since it was last sent.
    pub fn marker_due(&mut self) -> Option<Mark> {
        let now = self.source();
        if self.time.marks.is_empty() || now == self.time.sent {
            return None;
        }
        self.time.sent = now;
        Some(now)
    }

    /// The partition's position in its two inputs as one number that only grows: the documents' version.
    pub fn version(&self) -> i64 {
        self.pos.next_offset + self.pos.repart_next
    }

    /// Before routing the input record at `offset`.
    pub fn begin(&mut self, offset: i64) {
        self.time.idle = false; // a record was read: the source is not idle (refreshed when it is judged)
        self.pos.next_offset = offset + 1;
        self.pos.dirty = true;
        self.pos.processed += 1;
    }

    /// The consumer passed `offset` without a record to route: transaction markers and the records of aborted
    /// transactions, which a read_committed consumer never returns. Not input activity (the idle rule).
    pub fn skip_to(&mut self, offset: i64) {
        if offset > self.pos.next_offset {
            self.pos.next_offset = offset;
            self.pos.dirty = true;
        }
    }

    /// Before routing the repartition topic's record at `offset` (a record or a watermark another partition
    /// sent here). Not counted in `processed`, which says whether the partition's own input is active.
    pub fn begin_forwarded(&mut self, offset: i64) {
        self.pos.repart_next = offset + 1;
        self.pos.dirty = true;
    }

    /// After `begin`: the record was dead-lettered.
    pub fn rejected(&mut self) {
        self.pos.counters[DEAD_LETTERED] += 1;
    }

    /// The partition that owns `user` if it is not this one (None when the partition count is unknown).
    pub fn owner_elsewhere(&self, user: &str) -> Option<u32> {
        if self.cfg.partitions == 0 {
            return None;
        }
        let owner = user_partition(user, self.cfg.partitions);
        (owner != self.partition as u32).then_some(owner)
    }

    /// Route one valid input record (after `begin`), as its source, against its own watermark (wherever its user
    /// is owned): too late below the watermark minus the correction horizon; a correction below the watermark
    /// (it does not move the clock); else on time. Forwarded to the partition that owns its user
    /// (`Outcome::Forward`, with the verdict), or taken here (`accept_here`). `record_ts` is the record's Kafka
    /// timestamp: the event clock never runs ahead of it, so one event from a fast clock (up to the contract's
    /// future limit) counts in its window but cannot make the partition's on-time events late. With
    /// `LogAppendTime` (how `pulse setup` creates the topic) it is the broker's clock, which producers do not
    /// control.
    pub fn accept(&mut self, e: &Event, record_ts: i64) -> Outcome {
        let wm = self.source().value;
        let correction = e.ts < wm;
        if correction {
            self.refresh(); // the source is no longer idle
            if e.ts < wm.saturating_sub(self.cfg.horizon) {
                self.pos.counters[LATE] += 1;
                return Outcome::Late(format!("ts {} < watermark {wm} - correction horizon", e.ts));
            }
        } else {
            self.time.max_ts = self.time.max_ts.max(e.ts.min(record_ts));
            self.refresh();
        }
        if let Some(owner) = self.owner_elsewhere(&e.user_id) {
            self.pos.forwarded += 1;
            return Outcome::Forward { owner, correction };
        }
        self.accept_here(e, correction)
    }

    /// Take one event this partition owns, judged by its source (after `begin`, or `begin_forwarded` for a record
    /// another partition forwarded): too late below the owner watermark minus the correction horizon; a
    /// duplicate if its id was counted within the horizon; a correction if its source judged it one or it is
    /// below the owner watermark (a source that was idle and far behind); else on time. A correction counts
    /// only in revisions of its windows, never in a window's own documents: those hold exactly the on-time
    /// events, whatever the flushes. It joins its session's funnel while the session is held (see `sessions`).
    pub fn accept_here(&mut self, e: &Event, correction: bool) -> Outcome {
        let ts = e.ts;
        let wm = self.watermark();
        let horizon = wm.saturating_sub(self.cfg.horizon);
        if ts < horizon {
            self.pos.counters[LATE] += 1;
            return Outcome::Late(format!("ts {ts} < watermark {wm} of the owning partition - correction horizon"));
        }
        let key = encode(&e.event_id);
        match self.dedup.first(&key) {
            Some(first) if first >= horizon => {
                self.pos.counters[DUPLICATES] += 1;
                return Outcome::Duplicate;
            }
            _ => self.dedup.insert(key, ts, horizon), // unseen, or seen before the horizon
        }
        let correction = correction || ts < wm;
        let counter = if correction { CORRECTED } else { ACCEPTED };
        self.pos.counters[counter] += 1;
        let (sid, etype, timeout) = (&e.session_id, &e.event_type, self.cfg.session_timeout);
        let steps = match (e.status == "ok", correction) {
            (false, _) => FunnelChanges::default(),
            (true, false) => self.sessions.advance(sid, etype, ts, wm, timeout),
            (true, true) => self.sessions.correct(sid, etype, ts, wm, timeout),
        };
        self.fold(e, &steps, correction);
        Outcome::Accepted
    }

    /// Count an event in its windows (a correction: in their revisions), its item and its user.
    fn fold(&mut self, e: &Event, steps: &FunnelChanges, correction: bool) {
        let ok = e.status == "ok";
        let ts = e.ts;
        let etype = self.catalog.types.id(&e.event_type);
        let status = self.catalog.types.id(&e.status);
        let user = self.users.ids.id(&e.user_id);
        let item = e.item_id.as_deref().map(|i| self.catalog.items.id(i));
        let mut values: Values = [None; DIMS];
        values[CATEGORY] = e.category.as_deref().map(|c| self.catalog.labels[CATEGORY].id(c));
        values[STATUS] = Some(self.catalog.labels[STATUS].id(&e.status));
        values[COUNTRY] = Some(self.catalog.labels[COUNTRY].id(&e.country));
        values[DEVICE] = Some(self.catalog.labels[DEVICE].id(&e.device));
        let shard = e.item_id.as_deref().map_or(0, item_shard);
        let paid = if ok && e.event_type == "purchase" { e.amount.map(cents) } else { None };
        if let Some(it) = item {
            self.set_category(it, values[CATEGORY]);
        }
        let facts = Facts { etype, status, item, shard, values: &values, paid, price: e.price };
        // the windows this event is the user's first count in (a closed window's user set is gone: the user's
        // bitmap of the windows it was counted in answers for it)
        let keep_from = (self.watermark().saturating_sub(self.cfg.horizon)).div_euclid(USER_HOUR_MS) * USER_HOUR_MS;
        let seen = &mut self.users.get_mut(user).seen;
        seen.forget_before(&self.cfg.layout, keep_from);
        let firsts: smallvec::SmallVec<[bool; 8]> = (self.cfg.sizes.iter().enumerate())
            .map(|(i, &size)| seen.mark(&self.cfg.layout, i, ts - ts.rem_euclid(size)))
            .collect();
        let mut hash = None; // the user id's, once a window sketches users
        let mut retracted: smallvec::SmallVec<[(i64, i64); 2]> = smallvec::SmallVec::new();
        for i in 0..self.cfg.sizes.len() {
            let size = self.cfg.sizes[i];
            let start = ts - ts.rem_euclid(size);
            if correction {
                // counted before the bitmaps were logged: only the open window's own set knows
                let counted = self.windows.get(&(size, start)).is_some_and(|w| w.users.contains(&user));
                let win = revision(&mut self.revisions, size, start);
                if win.exact_users() && firsts[i] && !counted {
                    win.users.insert(user);
                }
                if size >= SKETCH_USERS_FROM {
                    win.user_sketch.add(*hash.get_or_insert_with(|| user_hash(&e.user_id)));
                }
                win.count(&facts, self.cfg.keeps_items(size));
                continue;
            }
            let win = self.windows.entry((size, start)).or_insert_with(|| Window { size, start, ..Default::default() });
            win.summary.touch();
            let new_here = !win.exact_users() || win.users.insert(user);
            if new_here && win.exact_users() {
                win.new_users.push(user);
                if !firsts[i] {
                    retracted.push((size, start)); // a revision counted this user first: it takes it back
                }
            }
            if new_here && size >= SKETCH_USERS_FROM {
                win.user_sketch.add(*hash.get_or_insert_with(|| user_hash(&e.user_id)));
            }
            win.count(&facts, self.cfg.keeps_items(size));
        }
        for (size, start) in retracted {
            let win = revision(&mut self.revisions, size, start);
            win.user_delta -= 1;
        }
        for &(at, step, delta) in &steps.own {
            self.count_step(at, step, delta);
        }
        for &(at, step, delta) in &steps.revised {
            self.revise_step(at, step, delta);
        }
        if let Some(it) = item {
            self.catalog.item_state.row(shard, it).add(etype, paid);
        }
        let u = self.users.get_mut(user);
        if u.first == ABSENT {
            u.first = ts;
            u.last = ts;
        } else if ts < u.first {
            u.first = ts;
        }
        u.last = u.last.max(ts);
        if let Some(it) = item {
            // the item of the latest event that has one (the greater id on a tie), whatever the arrival order
            let names = &self.catalog.items;
            let later = match u.last_item {
                None => true,
                Some(was) => ts > u.item_ts || (ts == u.item_ts && names.name(it) > names.name(was)),
            };
            if later {
                (u.last_item, u.item_ts) = (Some(it), ts);
            }
        }
        bump(&mut u.counts, etype, 1);
        u.count_hour(ts, etype, paid);
        if let Some(amount) = paid {
            u.spent += amount;
            u.purchases += 1;
        }
        let (was_dirty, was_pending) = (u.dirty, u.pending);
        (u.dirty, u.pending) = (true, true);
        if !was_dirty {
            self.users.dirty.push(user);
        }
        if !was_pending {
            self.users.queue(user);
        }
    }

    /// Move a session's funnel step counted at event time `at` in or out of its windows (all still open).
    fn count_step(&mut self, at: i64, step: usize, delta: i64) {
        for &size in &self.cfg.sizes {
            if let Some(win) = self.windows.get_mut(&(size, at - at.rem_euclid(size))) {
                win.funnel[step] = win.funnel[step].wrapping_add_signed(delta);
                win.summary.touch();
            }
        }
    }

    /// A funnel change corrections made at event time `at`, in the revisions of its windows.
    fn revise_step(&mut self, at: i64, step: usize, delta: i64) {
        for &size in &self.cfg.sizes {
            let start = at - at.rem_euclid(size);
            let win = revision(&mut self.revisions, size, start);
            win.funnel[step] = win.funnel[step].wrapping_add_signed(delta);
        }
    }

    /// An item's category: the first one seen wins (an event without one counts as seen).
    pub fn set_category(&mut self, item: u32, cat: Option<u32>) {
        let it = item as usize;
        if self.catalog.item_cat.len() <= it {
            self.catalog.item_cat.resize(it + 1, None);
        }
        self.catalog.item_cat[it].get_or_insert(cat);
    }

    pub fn category(&self, item: u32) -> Option<&str> {
        self.catalog
            .item_cat
            .get(item as usize)
            .copied()
            .flatten()
            .flatten()
            .map(|c| self.catalog.labels[CATEGORY].name(c))
    }

    /// Restore's duplicate detection: remember an id consumed before the restored position, if within `horizon`.
    pub fn remember(&mut self, event_id: &str, ts: i64, horizon: i64) {
        if ts < horizon {
            return;
        }
        let key = encode(event_id);
        if self.dedup.first(&key).is_none_or(|first| first < horizon) {
            self.dedup.insert(key, ts, horizon);
        }
    }

    /// Forget idle sessions (tombstoned on this flush) and duplicate ids past the horizon.
    pub fn expire(&mut self) {
        let wm = self.watermark();
        self.dedup.expire(wm - self.cfg.horizon);
        let timeout = self.cfg.session_timeout;
        let gone = &mut self.sessions.gone;
        self.sessions.map.retain(|sid, s| {
            s.settle(wm, timeout); // only its form changes, not its steps: it need not be logged again
            if s.latest() < wm - timeout {
                gone.push(sid.clone());
                false
            } else {
                true
            }
        });
    }

    /// See `Partition.idle_floor`.
    pub fn closable_until(&self, target: i64) -> Option<i64> {
        let wm = self.watermark();
        self.windows.values().map(Window::end).filter(|&end| end > wm && end <= target).max()
    }

    pub fn final_windows(&self) -> Vec<(i64, i64)> {
        let wm = self.watermark();
        self.windows.values().filter(|w| w.end() <= wm).map(|w| (w.size, w.start)).collect()
    }

    /// Once a flush at wall clock `now` is handed to its transaction: the documents `plan` planned went out, and
    /// `users` of the pending user documents (from the first).
    pub fn handed_over(&mut self, finals: &[(i64, i64)], plan: &Plan, users: usize, now: i64) {
        for key in finals {
            self.windows.remove(key);
        }
        for (key, win) in self.windows.iter_mut() {
            win.flushed(plan.items_of(key), plan.breakdowns_of(key), now);
        }
        self.catalog.item_state.flushed(plan.item_state.then_some(now));
        self.users.flushed(users);
        self.sessions.flushed();
        self.revisions.clear();
        self.pos.dirty = false;
    }
}
