//! One input partition's aggregation state: late check → de-duplicate → session funnel → windows → entities.
//!
//! Deterministic in the partition's offset order, so a replay after a crash makes the same decisions. Money is
//! integer cents. Names (event types, statuses, items, categories, users) are interned per partition, so the
//! hot path counts small integers and a million users cost a few hundred bytes each.

use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::breakdown::{Breakdown, Values, CATEGORY, COUNTRY, DEVICE, DIMS, STATUS};
use crate::event::{cents, Event};
use crate::hll::{user_hash, Hll, EXACT_USERS_UP_TO, SKETCH_USERS_FROM};
use crate::sketch::{Quantiles, AMOUNT, PRICE};

pub const ITEM_SHARDS: usize = 32;
/// Item rows per document and per changelog record are cut into pages of about this many bytes: far below the
/// topics' 1 MB message limit however many items a partition sees in a window.
pub const PAGE_BYTES: usize = 256 * 1024;
pub const FUNNEL: [&str; 4] = ["view", "click", "add_to_cart", "purchase"];
pub const ACCEPTED: usize = 0;
pub const DEAD_LETTERED: usize = 1;
pub const LATE: usize = 2;
pub const DUPLICATES: usize = 3;

/// Stable across processes and versions: CRC-32 of the item id (as `pulse.aggregate.docs.item_shard`).
pub fn item_shard(item: &str) -> usize {
    crc32fast::hash(item.as_bytes()) as usize % ITEM_SHARDS
}

/// Kafka's `Utils.murmur2` (Java's default partitioner for keyed records), as `pulse.generate.partitioner`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]).wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// `toPositive(murmur2(user)) % partitions`: the partition a Java client keys a user's events to.
pub fn user_partition(user: &str, partitions: u32) -> u32 {
    (murmur2(user.as_bytes()) & 0x7fff_ffff) % partitions.max(1)
}

/// Strings interned to dense ids; the id is an index into `list`.
#[derive(Default)]
pub struct Names {
    pub list: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u32>,
}

impl Names {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.list.len() as u32;
        let rc: Arc<str> = Arc::from(s);
        self.list.push(rc.clone());
        self.ids.insert(rc, id);
        id
    }
    pub fn name(&self, id: u32) -> &str {
        &self.list[id as usize]
    }
}

/// An event id as a key of the duplicate set. Ids of up to 15 bytes (the generator's are about a dozen) are packed
/// with their length into two integers, so remembering one allocates nothing (with a string per event, accepting
/// 300k events took about 15 % longer, interleaved in one process); longer ids keep their text. Exact: two ids
/// make equal keys only if they are equal.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum EventKey {
    Short(u64, u64),
    Long(Box<str>),
}

impl EventKey {
    pub fn new(id: &str) -> Self {
        let b = id.as_bytes();
        if b.len() > 15 {
            return EventKey::Long(id.into());
        }
        let mut packed = [0u8; 16];
        packed[..b.len()].copy_from_slice(b);
        packed[15] = b.len() as u8;
        let (lo, hi) = packed.split_at(8);
        EventKey::Short(
            u64::from_le_bytes(lo.try_into().expect("8 bytes")),
            u64::from_le_bytes(hi.try_into().expect("8 bytes")),
        )
    }
}

/// Counts per interned name; a handful of entries, so a vector beats a map, and up to four of them live inline
/// (no pointer to follow per event: accepting events 6-10 % faster, interleaved in one process; the memory
/// benchmark's peak for 1.27M users rose from 1,605 to 1,738 MiB).
pub type Counts = smallvec::SmallVec<[(u32, u64); 4]>;

pub fn bump(counts: &mut Counts, name: u32, n: u64) {
    for entry in counts.iter_mut() {
        if entry.0 == name {
            entry.1 += n;
            return;
        }
    }
    counts.push((name, n));
}

/// Counts per event type plus revenue, for one item or category.
#[derive(Default, Clone)]
pub struct Row {
    pub counts: Counts,
    pub cents: i64,
    pub purchases: u64,
}

impl Row {
    /// One event of type `etype`; `paid`: the cents of an ok purchase.
    pub fn add(&mut self, etype: u32, paid: Option<i64>) {
        bump(&mut self.counts, etype, 1);
        if let Some(amount) = paid {
            self.cents += amount;
            self.purchases += 1;
        }
    }
}

/// Item rows split into the 32 shards that are each one changelog record and one document (or a few pages of
/// each, past `PAGE_BYTES`).
pub struct Shards {
    pub maps: Vec<FxHashMap<u32, Row>>,
    pub dirty: u32,                       // bit per shard changed since the last flush (changelog)
    pub unpublished: u32,                 // bit per shard changed since its document was last published
    pub logged_pages: [u16; ITEM_SHARDS], // changelog pages written per shard (to tombstone them all)
}

impl Default for Shards {
    fn default() -> Self {
        Shards {
            maps: (0..ITEM_SHARDS).map(|_| FxHashMap::default()).collect(),
            dirty: 0,
            unpublished: 0,
            logged_pages: [0; ITEM_SHARDS],
        }
    }
}

impl Shards {
    pub fn row(&mut self, shard: usize, item: u32) -> &mut Row {
        self.dirty |= 1 << shard;
        self.maps[shard].entry(item).or_default()
    }
    pub fn to_publish(&self) -> u32 {
        self.dirty | self.unpublished
    }
    /// The non-empty shards among `mask` (a bit per shard), in order.
    pub fn shards(&self, mask: u32) -> impl Iterator<Item = usize> + '_ {
        (0..ITEM_SHARDS).filter(move |&s| mask & (1 << s) != 0 && !self.maps[s].is_empty())
    }
    pub fn flushed(&mut self, published: bool) {
        if published {
            self.unpublished = 0;
        } else {
            self.unpublished |= self.dirty;
        }
        self.dirty = 0;
    }
}

/// Partial aggregates of one tumbling window for one partition.
#[derive(Default)]
pub struct Window {
    pub size: i64,
    pub start: i64,
    pub counts: Counts,
    pub status: Counts,
    pub rev: [i64; 4], // ok purchases: count, sum, min, max (cents)
    pub funnel: [u64; 4],
    pub users: FxHashSet<u32>,
    pub new_users: Vec<u32>,
    pub user_chunks: u32, // changelog records holding this window's user ids so far
    pub logged: bool,     // some record of it is in the changelog, so evicting it takes tombstones
    pub items: Shards,
    pub dims: Breakdown,
    pub quantiles: Quantiles,
    pub user_sketch: Hll, // windows from `SKETCH_USERS_FROM` on
    pub dirty: bool,
}

impl Window {
    pub fn end(&self) -> i64 {
        self.start + self.size
    }
    /// Whether the window counts its users exactly (a set), or only with its HyperLogLog.
    pub fn exact_users(&self) -> bool {
        self.size <= EXACT_USERS_UP_TO
    }
    pub fn add_revenue(&mut self, amount: i64) {
        let r = &mut self.rev;
        r[2] = if r[0] == 0 { amount } else { r[2].min(amount) };
        r[3] = if r[0] == 0 { amount } else { r[3].max(amount) };
        r[0] += 1;
        r[1] += amount;
    }
}

#[derive(Default, Clone)]
pub struct User {
    pub first: i64,
    pub last: i64,
    pub counts: Counts,
    pub spent: i64,
    pub purchases: u64,
    pub last_item: Option<u32>,
    pub dirty: bool,   // changed since the last flush (changelog)
    pub pending: bool, // changed since its document was last published
}

pub struct Session {
    pub steps: u8,
    pub last: i64,
    pub dirty: bool,
}

pub struct Config {
    pub sizes: Vec<i64>,
    pub grace: i64,
    pub horizon: i64,
    pub session_timeout: i64,
    pub compact_after: u64,
    pub partitions: u32, // the input topic's partition count, to tell events not keyed by user id (0: unknown)
    pub forward_wait: i64, // how far (event time) the clock waits for a stream of forwarded records that lags
}

/// What happened to one record, for the caller's side outputs.
pub enum Outcome {
    Accepted,
    Duplicate,
    Late(String),
    /// Another partition owns the event's user: the record goes to it through the repartition topic.
    Forward(u32),
}

pub struct State {
    pub cfg: Config,
    pub partition: i32,
    pub next_offset: i64,
    pub max_ts: i64, // the largest event clock of any record taken
    // The event clock the watermark follows. With one input (keyed by user id) it is `max_ts`. Once records
    // forwarded from other partitions arrive, each source is a stream with its own clock (this partition's input
    // is the stream numbered as the partition), and the clock is the slowest stream's, ignoring streams more
    // than `forward_wait` behind the fastest; it never goes back. A partition reads its own input as a backlog
    // faster than other partitions forward theirs, so a clock run by its own input alone would make the
    // forwarded records of the same time late.
    pub clock: i64,
    pub clocks: Vec<(i32, i64)>, // (stream, its largest event clock); empty until a forwarded record arrives
    pub floor: i64,
    pub counters: [u64; 4],
    pub windows: BTreeMap<(i64, i64), Window>,
    pub types: Names, // event types and statuses
    pub items: Names,
    pub labels: [Names; DIMS], // each dimension's values (categories are also the items' categories)
    pub user_ids: Names,
    pub item_cat: Vec<Option<Option<u32>>>, // item → category, first seen wins (shared by all windows)
    pub users: Vec<User>,
    pub dirty_users: Vec<u32>,
    pub pending_users: Vec<u32>,
    pub item_state: Shards,
    pub sessions: FxHashMap<String, Session>,
    pub dirty_sessions: Vec<String>,
    pub gone_sessions: Vec<String>,
    pub seen: FxHashMap<EventKey, i64>,
    pub seen_cap: usize,
    pub meta_dirty: bool,
    pub processed: u64,
    // records from the repartition topic (input of other partitions whose users this partition owns): the next
    // one to take, and how many of this partition's own input records went to other partitions that way
    pub repart_next: i64,
    pub forwarded: u64,
    // the entity log (users and sessions): snapshot chunks plus delta records since
    pub snap_epoch: u64,
    pub snap_chunks: u64,
    pub delta_first: u64,
    pub delta_next: u64,
    pub log_entries: u64,
}

pub const NEVER: i64 = -(1 << 62);
/// Below this many remembered event ids, pruning them is not worth a pass over the map.
const SEEN_MIN: usize = 4096;
/// `User::first` of an interned id without user state (seen only in a window's user set so far).
pub const ABSENT: i64 = i64::MIN;

impl State {
    pub fn new(partition: i32, cfg: Config) -> Self {
        State {
            cfg,
            partition,
            next_offset: 0,
            max_ts: NEVER,
            clock: NEVER,
            clocks: Vec::new(),
            floor: NEVER,
            counters: [0; 4],
            windows: BTreeMap::new(),
            types: Names::default(),
            items: Names::default(),
            labels: Default::default(),
            user_ids: Names::default(),
            item_cat: Vec::new(),
            users: Vec::new(),
            dirty_users: Vec::new(),
            pending_users: Vec::new(),
            item_state: Shards::default(),
            sessions: FxHashMap::default(),
            dirty_sessions: Vec::new(),
            gone_sessions: Vec::new(),
            seen: FxHashMap::default(),
            seen_cap: SEEN_MIN,
            meta_dirty: false,
            processed: 0,
            repart_next: 0,
            forwarded: 0,
            snap_epoch: 0,
            snap_chunks: 0,
            delta_first: 0,
            delta_next: 0,
            log_entries: 0,
        }
    }

    pub fn watermark(&self) -> i64 {
        (self.clock - self.cfg.grace).max(self.floor)
    }

    /// A record of `stream` (this partition's input: its number; else the partition that forwarded it) with event
    /// clock `clock` was taken: move the clocks (see `clock`).
    pub fn observe(&mut self, stream: i32, clock: i64) {
        if self.clocks.is_empty() {
            if stream == self.partition {
                if clock > self.max_ts {
                    self.max_ts = clock;
                    self.clock = clock;
                }
                return;
            }
            self.clocks.push((self.partition, self.max_ts)); // every record so far was this partition's own
        }
        match self.clocks.iter_mut().find(|c| c.0 == stream) {
            Some(c) if clock <= c.1 => return,
            Some(c) => c.1 = clock,
            None => self.clocks.push((stream, clock)),
        }
        self.max_ts = self.max_ts.max(clock);
        let since = self.max_ts - self.cfg.forward_wait;
        let slowest = self.clocks.iter().map(|c| c.1).filter(|&c| c >= since).min().unwrap_or(self.max_ts);
        self.clock = self.clock.max(slowest);
    }

    /// Raise the watermark to at least `value` (idle partitions, by wall clock); true if it moved.
    pub fn advance_to(&mut self, value: i64) -> bool {
        if value > self.watermark() {
            self.floor = value;
            self.meta_dirty = true;
            return true;
        }
        false
    }

    /// The partition's position in its two inputs as one number that only grows: the documents' version.
    pub fn version(&self) -> i64 {
        self.next_offset + self.repart_next
    }

    /// Before routing the input record at `offset`.
    pub fn begin(&mut self, offset: i64) {
        self.next_offset = offset + 1;
        self.meta_dirty = true;
        self.processed += 1;
    }

    /// Before routing the repartition topic's record at `offset` (a record another partition forwarded here).
    pub fn begin_forwarded(&mut self, offset: i64) {
        self.repart_next = offset + 1;
        self.meta_dirty = true;
        self.processed += 1;
    }

    /// After `begin`: the record was dead-lettered.
    pub fn rejected(&mut self) {
        self.counters[DEAD_LETTERED] += 1;
    }

    /// The partition that owns `user` if it is not this one (None when the partition count is unknown).
    pub fn owner_elsewhere(&self, user: &str) -> Option<u32> {
        if self.cfg.partitions == 0 {
            return None;
        }
        let owner = user_partition(user, self.cfg.partitions);
        (owner != self.partition as u32).then_some(owner)
    }

    /// Route one valid input record (after `begin`): forwarded to the partition that owns its user
    /// (`Outcome::Forward`), or taken here (`accept_here`).
    pub fn accept(&mut self, e: &Event, record_ts: i64) -> Outcome {
        if let Some(owner) = self.owner_elsewhere(&e.user_id) {
            self.forwarded += 1;
            return Outcome::Forward(owner);
        }
        self.accept_here(e, record_ts, self.partition)
    }

    /// Route one valid event this partition owns (after `begin` or `begin_forwarded`): late, duplicate, or
    /// folded into windows and entities. `stream`: where it was read (see `clock`).
    /// `record_ts` is the record's Kafka timestamp: the partition's event clock never runs ahead of it, so one
    /// event from a fast clock (up to the contract's future limit) counts in its window but cannot make the
    /// partition's on-time events late. With `LogAppendTime` (how `pulse setup` creates the topic) it is the
    /// broker's clock, which producers do not control.
    pub fn accept_here(&mut self, e: &Event, record_ts: i64, stream: i32) -> Outcome {
        let ts = e.ts;
        let wm = self.watermark();
        let key = EventKey::new(&e.event_id);
        if ts < wm {
            self.counters[LATE] += 1;
            if !self.seen.contains_key(&key) {
                self.seen_insert(key, ts);
            }
            return Outcome::Late(format!("ts {ts} < watermark {wm}"));
        }
        self.observe(stream, ts.min(record_ts));
        let wm = self.watermark();
        match self.seen.get_mut(&key) {
            Some(first) if *first >= wm - self.cfg.horizon => {
                self.counters[DUPLICATES] += 1;
                return Outcome::Duplicate;
            }
            Some(first) => *first = ts,
            None => self.seen_insert(key, ts),
        }
        self.counters[ACCEPTED] += 1;
        let ok = e.status == "ok";
        let step = if ok { self.advance_session(&e.session_id, &e.event_type, ts, wm) } else { -1 };
        self.fold(e, ok, step);
        Outcome::Accepted
    }

    /// Remember an event id. Ids older than the horizon can never make a duplicate again (the watermark only
    /// rises), so they are dropped whenever the map has doubled since it was last pruned: a backlog read between
    /// flushes (which prune too) would otherwise keep every id it read.
    fn seen_insert(&mut self, id: EventKey, ts: i64) {
        self.seen.insert(id, ts);
        if self.seen.len() > self.seen_cap {
            let horizon = self.watermark() - self.cfg.horizon;
            self.seen.retain(|_, first| *first >= horizon);
            self.seen_cap = (2 * self.seen.len()).max(SEEN_MIN);
        }
    }

    /// Ordered funnel: a step counts once per session, only right after the previous step. A session idle past
    /// the timeout (judged against the watermark on arrival, so replays agree) starts over.
    fn advance_session(&mut self, sid: &str, etype: &str, ts: i64, wm: i64) -> i32 {
        let step = FUNNEL.iter().position(|&s| s == etype).map_or(-1, |i| i as i32);
        let timeout = self.cfg.session_timeout;
        let session = match self.sessions.get_mut(sid) {
            Some(s) => s,
            None => self.sessions.entry(sid.to_owned()).or_insert(Session { steps: 0, last: ts, dirty: false }),
        };
        if session.last < wm - timeout {
            session.steps = 0;
            session.last = ts;
        }
        session.last = session.last.max(ts);
        if !session.dirty {
            session.dirty = true;
            self.dirty_sessions.push(sid.to_owned());
        }
        if step >= 0 && session.steps as i32 == step {
            session.steps = step as u8 + 1;
            return step;
        }
        -1
    }

    fn fold(&mut self, e: &Event, ok: bool, step: i32) {
        let ts = e.ts;
        let etype = self.types.id(&e.event_type);
        let status = self.types.id(&e.status);
        let user = self.user_ids.id(&e.user_id);
        let item = e.item_id.as_deref().map(|i| self.items.id(i));
        let mut values: Values = [None; DIMS];
        values[CATEGORY] = e.category.as_deref().map(|c| self.labels[CATEGORY].id(c));
        values[STATUS] = Some(self.labels[STATUS].id(&e.status));
        values[COUNTRY] = Some(self.labels[COUNTRY].id(&e.country));
        values[DEVICE] = Some(self.labels[DEVICE].id(&e.device));
        let shard = e.item_id.as_deref().map_or(0, item_shard);
        let paid = if ok && e.event_type == "purchase" { e.amount.map(cents) } else { None };
        if let Some(it) = item {
            self.set_category(it, values[CATEGORY]);
        }
        let mut hash = None; // the user id's, once a window sketches users
        for i in 0..self.cfg.sizes.len() {
            let size = self.cfg.sizes[i];
            let start = ts - ts.rem_euclid(size);
            let win = self.windows.entry((size, start)).or_insert_with(|| Window { size, start, ..Default::default() });
            win.dirty = true;
            bump(&mut win.counts, etype, 1);
            bump(&mut win.status, status, 1);
            let new_here = !win.exact_users() || win.users.insert(user);
            if new_here && win.exact_users() {
                win.new_users.push(user);
            }
            if new_here && size >= SKETCH_USERS_FROM {
                win.user_sketch.add(*hash.get_or_insert_with(|| user_hash(&e.user_id)));
            }
            if let Some(it) = item {
                win.items.row(shard, it).add(etype, paid);
            }
            win.dims.add(&values, etype, paid);
            if let Some(amount) = paid {
                win.add_revenue(amount);
                win.quantiles.add(AMOUNT, amount);
                if let Some(price) = e.price {
                    win.quantiles.add(PRICE, cents(price));
                }
            }
            if step >= 0 {
                win.funnel[step as usize] += 1;
            }
        }
        if let Some(it) = item {
            self.item_state.row(shard, it).add(etype, paid);
        }
        let u = self.user_mut(user);
        if u.first == ABSENT {
            u.first = ts;
            u.last = ts;
        } else if ts < u.first {
            u.first = ts;
        }
        if ts >= u.last {
            u.last = ts;
            if item.is_some() {
                u.last_item = item;
            }
        }
        bump(&mut u.counts, etype, 1);
        if let Some(amount) = paid {
            u.spent += amount;
            u.purchases += 1;
        }
        let (was_dirty, was_pending) = (u.dirty, u.pending);
        (u.dirty, u.pending) = (true, true);
        if !was_dirty {
            self.dirty_users.push(user);
        }
        if !was_pending {
            self.pending_users.push(user);
        }
    }

    /// An item's category: the first one seen wins (an event without one counts as seen).
    pub fn set_category(&mut self, item: u32, cat: Option<u32>) {
        let it = item as usize;
        if self.item_cat.len() <= it {
            self.item_cat.resize(it + 1, None);
        }
        self.item_cat[it].get_or_insert(cat);
    }

    pub fn category(&self, item: u32) -> Option<&str> {
        self.item_cat.get(item as usize).copied().flatten().flatten().map(|c| self.labels[CATEGORY].name(c))
    }

    /// Restore's duplicate detection: remember an id consumed before the restored position, if within `horizon`.
    pub fn remember(&mut self, event_id: &str, ts: i64, horizon: i64) {
        if ts < horizon {
            return;
        }
        let key = EventKey::new(event_id);
        match self.seen.get_mut(&key) {
            Some(first) if *first >= horizon => {}
            Some(first) => *first = ts,
            None => {
                self.seen.insert(key, ts);
            }
        }
    }

    /// The user's state, created (with `first` = `ABSENT`) when the id is new.
    pub fn user_mut(&mut self, user: u32) -> &mut User {
        let ux = user as usize;
        if ux >= self.users.len() {
            self.users.resize(ux + 1, User { first: ABSENT, ..Default::default() });
        }
        &mut self.users[ux]
    }

    /// Forget idle sessions (tombstoned on this flush) and duplicate ids past the horizon.
    pub fn expire(&mut self) {
        let wm = self.watermark();
        let horizon = wm - self.cfg.horizon;
        if self.seen.len() > SEEN_MIN {
            self.seen.retain(|_, ts| *ts >= horizon);
        }
        let idle = wm - self.cfg.session_timeout;
        let gone = &mut self.gone_sessions;
        self.sessions.retain(|sid, s| {
            if s.last < idle {
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

    pub fn has_unpublished(&self) -> bool {
        !self.pending_users.is_empty()
            || self.item_state.to_publish() != 0
            || self.windows.values().any(|w| w.items.to_publish() != 0)
    }

    /// After a committed flush: `details` (item shards went out) and `users` (user documents went out).
    pub fn committed(&mut self, finals: &[(i64, i64)], details: bool, users: bool) {
        for key in finals {
            self.windows.remove(key);
        }
        for win in self.windows.values_mut() {
            win.dirty = false;
            win.items.flushed(details);
            win.dims.dirty = false;
            win.quantiles.dirty = false;
            win.user_sketch.dirty = false;
            win.new_users.clear();
        }
        self.item_state.flushed(details);
        for &u in &self.dirty_users {
            self.users[u as usize].dirty = false;
        }
        self.dirty_users.clear();
        if users {
            for &u in &self.pending_users {
                self.users[u as usize].pending = false;
            }
            self.pending_users.clear();
        }
        for sid in self.dirty_sessions.drain(..) {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.dirty = false;
            }
        }
        self.gone_sessions.clear();
        self.meta_dirty = false;
    }
}
