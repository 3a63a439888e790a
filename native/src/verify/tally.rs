//! The reference's arithmetic (`pulse.verify.tally`) written again for speed: one partition's counted events into
//! the documents the engine should have published, by the rules that module's docstring states.
//!
//! It shares no aggregation code with the engine (`state.rs`, `entities.rs`, `breakdown.rs`): exact values are
//! kept where the engine keeps sketches, and tests hold it equal to the Python reference on random inputs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::rows::{bump, Bucket, ByName, Names, Tallied, WindowDoc};
use crate::event::Event;

pub const HOUR_MS: i64 = 3_600_000;
/// The hours a user document keeps, up to the user's latest event.
pub const USER_HOURS: usize = 24;

/// One window size, and where its numbers come from (`pulse.verify.tally.Level`).
pub struct Level {
    pub size: i64,
    pub name: String,
    pub feeder: Option<i64>,
    pub items: bool, // broken down by item
    pub counts_items: bool,
    pub parents: Vec<usize>,
}

pub fn size_label(ms: i64) -> String {
    for (unit, n) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms % n == 0 {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

fn levels(sizes: &[i64], items_from_ms: i64) -> Vec<Level> {
    let mut ordered = sizes.to_vec();
    ordered.sort_unstable();
    ordered.dedup();
    let largest = ordered.last().copied().unwrap_or(0);
    let items_from = items_from_ms.min(largest);
    let feeders: Vec<Option<i64>> =
        ordered.iter().map(|&s| ordered.iter().copied().filter(|&f| f < s && s % f == 0).max()).collect();
    (0..ordered.len())
        .map(|i| {
            let s = ordered[i];
            Level {
                size: s,
                name: size_label(s),
                feeder: feeders[i],
                items: s >= items_from,
                counts_items: s >= items_from && feeders[i].is_none_or(|f| f < items_from),
                parents: (0..ordered.len()).filter(|&j| feeders[j] == Some(s)).collect(),
            }
        })
        .collect()
}

/// A dimension windows are broken down by: which event field it reads.
#[derive(Clone, Copy)]
pub enum Dim {
    Category,
    Status,
    Country,
    Device,
}

impl Dim {
    pub fn named(name: &str) -> Option<Dim> {
        Some(match name {
            "category" => Dim::Category,
            "status" => Dim::Status,
            "country" => Dim::Country,
            "device" => Dim::Device,
            _ => return None,
        })
    }

    fn of<'a>(self, e: &'a Event<'_>) -> Option<&'a str> {
        match self {
            Dim::Category => e.category.as_deref(),
            Dim::Status => Some(&e.status),
            Dim::Country => Some(&e.country),
            Dim::Device => Some(&e.device),
        }
    }
}

/// What the tally is told by the model and the verify command.
pub struct Rules {
    pub sizes: Vec<i64>,
    pub session_timeout_ms: i64,
    pub unseen_before: Option<i64>,
    pub items_from_ms: i64,
    pub exact_users_up_to_ms: i64,
    pub funnel: Vec<String>,
    pub dims: Vec<(String, Dim)>,
}

pub struct User {
    pub first_seen: i64,
    pub last_seen: i64,
    pub counts: ByName,
    pub spent_cents: i64,
    pub purchases: i64,
    pub last_item: Option<(i64, u32)>,
    pub hours: BTreeMap<i64, Tallied>,
}

impl User {
    pub fn oldest_hour(&self) -> i64 {
        self.last_seen.div_euclid(HOUR_MS) * HOUR_MS - (USER_HOURS as i64 - 1) * HOUR_MS
    }
}

pub struct Item {
    pub category: Option<Rc<str>>, // the first one seen in the partition
    pub tally: Tallied,
}

type Pending = Reverse<(i64, i32, u64, Rc<str>)>; // an unsettled ok event: (ts, step or -1, order, session)

/// One partition's documents, built event by event in the order the partition counted them.
pub struct Tally {
    pub rules: Rules,
    pub levels: Vec<Level>,
    roots: Vec<usize>,
    item_levels: Vec<usize>,                   // the levels whose item rows count events
    pub open: BTreeMap<(i64, i64), Bucket>,    // by (end, size): the order windows finish in
    revisions: BTreeMap<(i64, i64), Bucket>,   // corrections, by (end, size) of the window they revise
    pub on_time: FxHashSet<(usize, i64, u32)>, // (level, start, user), of the levels counting users exactly
    pub types: Names,
    pub statuses: Names,
    pub user_ids: Names,
    pub item_ids: Names,
    pub values: Names,
    funnel: BinaryHeap<Pending>,
    sessions: FxHashMap<Rc<str>, (i64, i64, bool)>, // steps done, last event time, unseen events may precede
    order: u64,
    kept_sessions: usize,
    revised: Revised,
    pub users: Vec<Option<User>>, // by user id number
    pub items: FxHashMap<u32, Item>,
}

/// The funnel with the corrections that joined, settled up to the owner watermark (see the Python module).
#[derive(Default)]
struct Revised {
    funnel: BinaryHeap<Pending>,
    sessions: FxHashMap<Rc<str>, (i64, Option<i64>)>, // steps done, last event time
    latest: FxHashMap<Rc<str>, i64>,                  // each session's latest on-time ok event
    on_time_step: FxHashMap<u64, i32>,                // by order: settled on time, not on this track yet
    kept: usize,
}

/// A window that no counted event can change any more.
pub struct Finished {
    pub level: usize,
    pub start: i64,
    pub bucket: Bucket,
    pub revision: bool, // the window's corrections, summed over its revisions
}

fn bucket<'a>(open: &'a mut BTreeMap<(i64, i64), Bucket>, lv: &Level, start: i64) -> &'a mut Bucket {
    open.entry((start + lv.size, lv.size)).or_default()
}

/// An event's names as numbers, and the cents of an ok purchase.
struct Counted {
    t: u32,
    status: u32,
    user: u32,
    item: Option<u32>,
    dims: Vec<(u8, u32)>,
    paid: Option<i64>,
}

/// One event in a window's summary (not its funnel) and breakdowns.
fn count_bucket(b: &mut Bucket, e: &Event<'_>, c: &Counted, steps: usize) {
    let w = b.window.get_or_insert_with(|| WindowDoc::new(steps));
    w.events += 1;
    bump(&mut w.counts, c.t, 1);
    bump(&mut w.status, c.status, 1);
    if e.status != "ok" {
        w.errors += 1;
    }
    if let Some(amount) = c.paid {
        w.purchases += 1;
        w.revenue_cents += amount;
        w.min_cents = Some(w.min_cents.map_or(amount, |m| m.min(amount)));
        w.max_cents = Some(w.max_cents.map_or(amount, |m| m.max(amount)));
        w.amounts.push(amount);
        if let Some(price) = e.price {
            w.prices.push(cents(price));
        }
    }
    w.users.insert(c.user);
    for &key in &c.dims {
        b.dims.entry(key).or_default().count(c.t, c.paid);
    }
}

impl Tally {
    pub fn new(rules: Rules) -> Self {
        let levels = levels(&rules.sizes, rules.items_from_ms);
        let roots = (0..levels.len()).filter(|&i| levels[i].feeder.is_none()).collect();
        let item_levels = (0..levels.len()).filter(|&i| levels[i].counts_items).collect();
        Tally {
            rules,
            levels,
            roots,
            item_levels,
            open: BTreeMap::new(),
            revisions: BTreeMap::new(),
            on_time: FxHashSet::default(),
            types: Names::default(),
            statuses: Names::default(),
            user_ids: Names::default(),
            item_ids: Names::default(),
            values: Names::default(),
            funnel: BinaryHeap::new(),
            sessions: FxHashMap::default(),
            order: 0,
            kept_sessions: 0,
            revised: Revised::default(),
            users: Vec::new(),
            items: FxHashMap::default(),
        }
    }

    /// An event counted on time: in its windows (of the sizes that count events), funnel, user and item.
    pub fn add(&mut self, e: &Event<'_>) {
        if e.status == "ok" {
            let step = self.rules.funnel.iter().position(|s| *s == e.event_type).map_or(-1, |i| i as i32);
            let session: Rc<str> = Rc::from(&*e.session_id);
            self.funnel.push(Reverse((e.ts, step, self.order, session.clone())));
            self.revised.funnel.push(Reverse((e.ts, step, self.order, session.clone())));
            self.order += 1;
            let latest = self.revised.latest.entry(session).or_insert(e.ts);
            *latest = (*latest).max(e.ts);
        }
        let c = self.names_of(e);
        for (li, lv) in self.levels.iter().enumerate() {
            if lv.size <= self.rules.exact_users_up_to_ms {
                self.on_time.insert((li, e.ts.div_euclid(lv.size) * lv.size, c.user));
            }
        }
        for &li in &self.roots {
            let lv = &self.levels[li];
            count_bucket(
                bucket(&mut self.open, lv, e.ts.div_euclid(lv.size) * lv.size),
                e,
                &c,
                self.rules.funnel.len(),
            );
        }
        if let Some(i) = c.item {
            for &li in &self.item_levels {
                let lv = &self.levels[li];
                bucket(&mut self.open, lv, e.ts.div_euclid(lv.size) * lv.size)
                    .items
                    .entry(i)
                    .or_default()
                    .count(c.t, c.paid);
            }
        }
        self.entities(e, &c);
    }

    /// A correction counted at owner watermark `watermark`: in the revisions of its windows of every size, its
    /// user and its item, and in its session's funnel if the session is held.
    pub fn correct(&mut self, e: &Event<'_>, watermark: i64) {
        if e.status == "ok" {
            if let Some(step) = self.rules.funnel.iter().position(|s| *s == e.event_type) {
                self.join(e, step as i64, watermark);
            }
        }
        let c = self.names_of(e);
        for lv in &self.levels {
            let b = bucket(&mut self.revisions, lv, e.ts.div_euclid(lv.size) * lv.size);
            count_bucket(b, e, &c, self.rules.funnel.len());
            if let (Some(i), true) = (c.item, lv.items) {
                b.items.entry(i).or_default().count(c.t, c.paid);
            }
        }
        self.entities(e, &c);
    }

    /// A funnel change corrections made at event time `ts`, in the revisions of its windows.
    fn revise_step(&mut self, ts: i64, step: i32, delta: i64) {
        let steps = self.rules.funnel.len();
        for lv in &self.levels {
            let b = bucket(&mut self.revisions, lv, ts.div_euclid(lv.size) * lv.size);
            b.window.get_or_insert_with(|| WindowDoc::new(steps)).funnel[step as usize] += delta;
        }
    }

    /// A correction's funnel step, with the corrections that joined before it, if its session is held.
    fn join(&mut self, e: &Event<'_>, step: i64, watermark: i64) {
        self.settle_funnel(Some(watermark)); // nothing on time can fall below the owner watermark any more
        self.settle_revised(Some(watermark));
        let timeout = self.rules.session_timeout_ms;
        let r = &mut self.revised;
        if r.latest.get(&*e.session_id).is_none_or(|&l| l < watermark.saturating_sub(timeout)) {
            return;
        }
        let entry = r.sessions.entry(Rc::from(&*e.session_id)).or_insert((0, None));
        if entry.0 == step {
            entry.0 += 1;
            self.revise_step(e.ts, step as i32, 1);
        }
    }

    /// Settle the with-corrections track up to `before` (all: None): each event's step there, against the one it
    /// counted for on time, goes to the revisions.
    fn settle_revised(&mut self, before: Option<i64>) {
        let timeout = self.rules.session_timeout_ms;
        while let Some(Reverse((ts, ..))) = self.revised.funnel.peek() {
            if before.is_some_and(|b| *ts >= b) {
                break;
            }
            let Some(Reverse((ts, step, order, session))) = self.revised.funnel.pop() else { break };
            let (mut done, last) = self.revised.sessions.get(&session).copied().unwrap_or((0, None));
            if last.is_some_and(|l| ts - l > timeout) {
                done = 0;
            }
            let revised = if step as i64 == done { step } else { -1 };
            let on_time = self.revised.on_time_step.remove(&order).unwrap_or(-1);
            if revised != on_time {
                if revised >= 0 {
                    self.revise_step(ts, revised, 1);
                }
                if on_time >= 0 {
                    self.revise_step(ts, on_time, -1);
                }
            }
            self.revised.sessions.insert(session, (done + (revised >= 0) as i64, Some(ts)));
        }
        let r = &mut self.revised;
        if let Some(b) = before {
            if r.sessions.len() > 2 * r.kept + 1024 {
                let stale = b - timeout; // not held any more, and a run starts over after it anyway
                r.sessions.retain(|_, &mut (_, last)| last.is_none_or(|l| l >= stale));
                r.latest.retain(|_, &mut latest| latest >= stale);
                r.kept = r.sessions.len();
            }
        }
    }

    /// The corrections of the windows ending at or before `before` (None: all), summed over their revisions.
    pub fn take_revisions(&mut self, before: Option<i64>) -> Vec<Finished> {
        let taken = match before {
            None => std::mem::take(&mut self.revisions),
            Some(b) => {
                let later = self.revisions.split_off(&(b.saturating_add(1), i64::MIN));
                std::mem::replace(&mut self.revisions, later)
            }
        };
        taken
            .into_iter()
            .map(|((end, size), bucket)| {
                let level = self.levels.iter().position(|lv| lv.size == size).unwrap_or(0);
                Finished { level, start: end - size, bucket, revision: true }
            })
            .collect()
    }

    /// The event's names, interned, and what it paid.
    fn names_of(&mut self, e: &Event<'_>) -> Counted {
        let item = e.item_id.as_deref().map(|i| self.item_ids.id(i));
        if let Some(i) = item {
            self.items
                .entry(i)
                .or_insert_with(|| Item { category: e.category.as_deref().map(Rc::from), tally: Tallied::default() });
        }
        let dims = (self.rules.dims.iter().enumerate())
            .filter_map(|(d, (_, dim))| dim.of(e).map(|v| (d as u8, v)))
            .map(|(d, v)| (d, self.values.id(v)))
            .collect();
        Counted {
            t: self.types.id(&e.event_type),
            status: self.statuses.id(&e.status),
            user: self.user_ids.id(&e.user_id),
            item,
            dims,
            paid: if e.status == "ok" && e.event_type == "purchase" { e.amount.map(cents) } else { None },
        }
    }

    fn entities(&mut self, e: &Event<'_>, c: &Counted) {
        if let Some(it) = c.item.and_then(|i| self.items.get_mut(&i)) {
            it.tally.count(c.t, c.paid);
        }
        self.user(e, c.user, c.t, c.item, c.paid);
    }

    fn user(&mut self, e: &Event<'_>, user: u32, t: u32, item: Option<u32>, paid: Option<i64>) {
        let ix = user as usize;
        if self.users.len() <= ix {
            self.users.resize_with(ix + 1, || None);
        }
        let u = self.users[ix].get_or_insert_with(|| User {
            first_seen: e.ts,
            last_seen: e.ts,
            counts: Vec::new(),
            spent_cents: 0,
            purchases: 0,
            last_item: None,
            hours: BTreeMap::new(),
        });
        u.first_seen = u.first_seen.min(e.ts);
        u.last_seen = u.last_seen.max(e.ts);
        if let Some(i) = item {
            let newer = match u.last_item {
                None => true,
                Some((ts, last)) => (e.ts, self.item_ids.name(i)) > (ts, self.item_ids.name(last)),
            };
            if newer {
                u.last_item = Some((e.ts, i));
            }
        }
        bump(&mut u.counts, t, 1);
        if let Some(cents) = paid {
            u.spent_cents += cents;
            u.purchases += 1;
        }
        let hour = e.ts.div_euclid(HOUR_MS) * HOUR_MS;
        if let std::collections::btree_map::Entry::Vacant(new) = u.hours.entry(hour) {
            new.insert(Tallied::default());
            if u.hours.len() > USER_HOURS {
                // only the hours up to the latest event are kept
                let oldest = u.oldest_hour();
                u.hours = u.hours.split_off(&oldest);
            }
        }
        if let Some(row) = u.hours.get_mut(&hour) {
            row.count(t, paid);
        }
    }

    /// The windows no counted event can change any more, now that nothing below `watermark` counts.
    /// `owner`: the owner watermark (at most `watermark`), up to which the with-corrections funnel settles.
    pub fn advance(&mut self, watermark: i64, owner: i64) -> Vec<Finished> {
        self.settle_funnel(Some(watermark));
        self.settle_revised(Some(owner));
        self.finish_windows(Some(watermark))
    }

    /// Every window left at the end of the input (users and items stay for the caller to read).
    pub fn finish(&mut self) -> Vec<Finished> {
        self.settle_funnel(None);
        self.settle_revised(None);
        self.finish_windows(None)
    }

    /// Count the funnel steps of the ok events before `before` (all: None), in (time, step) order.
    fn settle_funnel(&mut self, before: Option<i64>) {
        let timeout = self.rules.session_timeout_ms;
        let unseen = self.rules.unseen_before;
        while let Some(Reverse((ts, ..))) = self.funnel.peek() {
            if before.is_some_and(|b| *ts >= b) {
                break;
            }
            let Some(Reverse((ts, step, order, session))) = self.funnel.pop() else { break };
            let (mut done, last, mut unsure) =
                self.sessions.get(&session).copied().unwrap_or((0, ts, unseen.is_some_and(|u| ts - timeout < u)));
            if ts - last > timeout {
                done = 0;
                unsure = false;
            }
            let counted = step == done as i32;
            self.revised.on_time_step.insert(order, if counted { step } else { -1 });
            if counted || unsure {
                for &li in &self.roots {
                    let lv = &self.levels[li];
                    let start = ts.div_euclid(lv.size) * lv.size;
                    if let Some(w) = self.open.get_mut(&(start + lv.size, lv.size)).and_then(|b| b.window.as_mut()) {
                        if counted {
                            w.funnel[step as usize] += 1;
                        }
                        w.funnel_unchecked |= unsure;
                    }
                }
            }
            done += counted as i64;
            self.sessions.insert(session, (done, ts, unsure));
        }
        if let Some(b) = before {
            if self.sessions.len() > 2 * self.kept_sessions + 1024 {
                // a session quiet for longer than the timeout starts over anyway: forget it
                let stale = b - timeout;
                self.sessions.retain(|_, &mut (_, last, _)| last >= stale);
                self.kept_sessions = self.sessions.len();
            }
        }
    }

    fn finish_windows(&mut self, upto: Option<i64>) -> Vec<Finished> {
        let mut out = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let (end, size) = *entry.key();
            if upto.is_some_and(|u| end > u) {
                break;
            }
            let bucket = entry.remove();
            let level = self.levels.iter().position(|lv| lv.size == size).unwrap_or(0);
            let start = end - size;
            self.merge_up(level, start, &bucket);
            out.push(Finished { level, start, bucket, revision: false });
        }
        out
    }

    /// Add a finished window's documents to the windows it nests in.
    fn merge_up(&mut self, level: usize, start: i64, b: &Bucket) {
        for &pi in &self.levels[level].parents {
            let up = &self.levels[pi];
            let into = bucket(&mut self.open, up, start.div_euclid(up.size) * up.size);
            if let Some(w) = &b.window {
                into.window.get_or_insert_with(|| WindowDoc::new(w.funnel.len())).merge(w);
            }
            for (key, t) in &b.dims {
                into.dims.entry(*key).or_default().merge(t);
            }
            if !up.counts_items {
                for (key, t) in &b.items {
                    into.items.entry(*key).or_default().merge(t);
                }
            }
        }
    }
}

/// Money in integer cents, as Python's `round(x * 100)` (half to even).
pub fn cents(amount: f64) -> i64 {
    (amount * 100.0).round_ties_even() as i64
}
