//! The partition's compacted changelog: what changed since the last flush, and restore from it.
//!
//! Keys are short ASCII paths (deterministic, so compaction keeps one value per piece of state); values are
//! msgpack. Item partials are logged per item shard (the whole shard), a window's breakdowns as one paged record,
//! window user sets as append-only chunks, and users and sessions as a log-structured pair: a delta record per
//! flush, folded into a fresh snapshot (and the deltas tombstoned) once deltas outgrow the live state, so
//! restore time follows live state.
//! A tombstone (no value) removes state that is final and already emitted.

use serde::{Deserialize, Serialize};

use crate::breakdown::{CATEGORY, DIMENSIONS, DIMS};
use crate::entities::Step;
use crate::hll::Packed;
use crate::sketch::Sketch;
use crate::state::{bump, Counts, Mark, Names, Row, Session, State, Window, ABSENT, ITEM_SHARDS, PAGE_BYTES};

pub type Record = (Vec<u8>, Option<Vec<u8>>);

/// Every pending detail (item shards, breakdowns, user sketches) went out with the flush that logged this marker.
pub const ITEMS_PUBLISHED: &[u8] = b"pub/items";
pub const USERS_PUBLISHED: &[u8] = b"pub/users";
const META: &[u8] = b"m";
/// The owner side of the meta record (position in the repartition topic, records forwarded, the sources'
/// watermarks as received, the owner watermark, the source watermark last sent and whether the source is idle),
/// apart from it so that a partition of a one-partition topic logs nothing more.
const FORWARDING: &[u8] = b"r";
const CHUNK: usize = 5_000; // ids or entries per record: well under the broker's 1 MB message limit

const USER: u8 = 0; // user entry, already published
const USER_PENDING: u8 = 3; // user entry, unpublished unless a users marker follows it
const SESSION: u8 = 1;
const SESSION_GONE: u8 = 2;

type Named<'a> = Vec<(&'a str, u64)>;
type RowOut<'a> = (&'a str, Option<&'a str>, Named<'a>, i64, u64);
type RowIn = (String, Option<String>, Vec<(String, u64)>, i64, u64);
type DimOut<'a> = (&'a str, &'a str, Named<'a>, i64, u64); // dimension, value, counts, cents, purchases
type DimIn = (Dimension, String, Vec<(String, u64)>, i64, u64);
/// A breakdown row's dimension as logged: by name, or (older logs) by its index in `DIMENSIONS` then.
#[derive(Deserialize)]
#[serde(untagged)]
enum Dimension {
    Name(String),
    Index(u8),
}
type CatIn = (String, Vec<(String, u64)>, i64, u64); // the category log before breakdowns (restore only)
type SketchLog = Vec<(u64, Vec<(i32, u64)>)>; // per sketched value: zeros, (bin, count)
type SummaryIn = (Vec<(String, u64)>, Vec<(String, u64)>, [i64; 4], [u64; 4]);
type Logged = (Vec<u8>, (i64, Vec<u8>)); // key, (offset, value)
type HourOut<'a> = (i64, Named<'a>, i64, u64); // hour start, counts, cents, purchases
type HourIn = (i64, Vec<(String, u64)>, i64, u64);
type UserOut<'a> = (i64, i64, Named<'a>, i64, u64, Option<&'a str>, Vec<HourOut<'a>>, i64);

/// A user entry as logged: with the time of its last item, before that with the user's hours, or as logged
/// before users had them.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserIn {
    WithItemTime(i64, i64, Vec<(String, u64)>, i64, u64, Option<String>, Vec<HourIn>, i64),
    WithHours(i64, i64, Vec<(String, u64)>, i64, u64, Option<String>, Vec<HourIn>),
    Before(i64, i64, Vec<(String, u64)>, i64, u64, Option<String>),
}
type StepLog = (i64, i8, i8); // an open session event: time, funnel step, step counted
type SessionOut = (u8, i64, Vec<StepLog>);
/// A session entry as logged: with its open events, or (before sessions followed event time) without.
#[derive(Deserialize)]
#[serde(untagged)]
enum SessionIn {
    Open(u8, i64, Vec<StepLog>),
    Before(u8, i64),
}
type EntryOut<'a> = (u8, &'a str, Option<UserOut<'a>>, Option<SessionOut>);
type EntryIn = (u8, String, Option<UserIn>, Option<SessionIn>);
type MarkLog = (i64, bool);
type OwnerOut<'a> = (i64, u64, Vec<MarkLog>, i64, MarkLog, bool);
/// The owner side as logged, or as logged before watermarks were carried to owners (its clocks are dropped).
#[derive(Deserialize)]
#[serde(untagged)]
enum OwnerIn {
    Marks(i64, u64, Vec<MarkLog>, i64, MarkLog, bool),
    Before(i64, u64, serde::de::IgnoredAny, serde::de::IgnoredAny),
}
type Meta = (i64, i64, i64, [u64; 4], u64, u64, u64, u64, u64);

fn enc<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec(value).expect("msgpack encoding of plain data")
}

fn named<'a>(names: &'a Names, counts: &Counts) -> Named<'a> {
    counts.iter().map(|&(id, n)| (names.name(id), n)).collect()
}

/// Rows as msgpack arrays of at most about `PAGE_BYTES` each (page 0 first): any number of them stays within
/// the changelog topic's message limit. Restore merges the pages.
fn pages<R: Serialize>(rows: impl Iterator<Item = R>, hint: usize) -> Vec<Vec<u8>> {
    let (mut pages, mut body, mut n) = (Vec::new(), Vec::with_capacity(hint.min(4096) * 64), 0u32);
    for rec in rows {
        if n > 0 && body.len() >= PAGE_BYTES {
            pages.push(msgpack_array(n, &body));
            (n, body) = (0, Vec::with_capacity(body.capacity()));
        }
        rmp_serde::encode::write(&mut body, &rec).expect("msgpack encoding of plain data");
        n += 1;
    }
    pages.push(msgpack_array(n, &body));
    pages
}

/// A shard's item rows, paged.
fn shard_pages(st: &State, map: &rustc_hash::FxHashMap<u32, Row>) -> Vec<Vec<u8>> {
    let rows = map.iter().map(|(&it, row)| -> RowOut {
        (st.catalog.items.name(it), st.category(it), named(&st.catalog.types, &row.counts), row.cents, row.purchases)
    });
    pages(rows, map.len())
}

/// A window's breakdown rows, paged.
fn dims_pages(st: &State, win: &Window) -> Vec<Vec<u8>> {
    let rows = win.dims.iter().map(|(d, value, row)| -> DimOut {
        (
            DIMENSIONS[d],
            st.catalog.labels[d].name(value),
            named(&st.catalog.types, &row.counts),
            row.cents,
            row.purchases,
        )
    });
    pages(rows, win.dims.len())
}

/// A msgpack array of `n` already encoded elements.
fn msgpack_array(n: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    match n {
        0..=15 => out.push(0x90 | n as u8),
        16..=0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdd);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(body);
    out
}

/// The key suffix of a shard's page: `7` for page 0, `7.2` for page 2.
fn page_key(shard: usize, page: usize) -> String {
    if page == 0 {
        shard.to_string()
    } else {
        format!("{shard}.{page}")
    }
}

/// (shard, page) from a key suffix written by `page_key`.
fn parse_page(part: &str) -> Option<(usize, u16)> {
    let (shard, page) = part.split_once('.').unwrap_or((part, "0"));
    Some((shard.parse::<usize>().ok()? % ITEM_SHARDS, page.parse().ok()?))
}

/// What `window_records` wrote that the window must remember.
struct Written {
    user_chunks: u32,
    item_pages: Vec<(usize, u16)>, // (shard, pages)
    dims_pages: u16,
}

/// A window's changed records, or its tombstones once final (none if it never reached the changelog: a window
/// opened and closed between two flushes, as most are while a backlog is read).
fn window_records(st: &State, win: &Window, is_final: bool, out: &mut Vec<Record>) -> Written {
    let (size, start) = (win.size, win.start);
    let key = |rest: &str| format!("w/{size}/{start}/{rest}").into_bytes();
    let mut written = Written { user_chunks: 0, item_pages: Vec::new(), dims_pages: 0 };
    if is_final && !win.logged {
        return written;
    }
    if is_final {
        out.push((key("s"), None));
        for s in win.items.shards(u32::MAX) {
            let pages = win.items.logged_pages[s].max(1) as usize;
            out.extend((0..pages).map(|page| (key(&format!("i/{}", page_key(s, page))), None)));
        }
        out.extend((0..win.dims.logged_pages).map(|page| (key(&format!("d/{page}")), None)));
        if win.dims.legacy_records {
            out.push((key("c"), None));
        }
        if win.quantiles.logged {
            out.push((key("q"), None));
        }
        if win.user_sketch.logged {
            out.push((key("h"), None));
        }
        out.extend((0..win.user_chunks).map(|seq| (key(&format!("u/{seq}")), None)));
        return written;
    }
    if win.dirty {
        let value = (named(&st.catalog.types, &win.counts), named(&st.catalog.types, &win.status), win.rev, win.funnel);
        out.push((key("s"), Some(enc(&value))));
    }
    for s in win.items.shards(win.items.dirty) {
        let pages = shard_pages(st, &win.items.maps[s]);
        written.item_pages.push((s, pages.len() as u16));
        for (page, value) in pages.into_iter().enumerate() {
            out.push((key(&format!("i/{}", page_key(s, page))), Some(value)));
        }
    }
    if win.quantiles.dirty {
        let value: SketchLog =
            win.quantiles.sketches.iter().map(|s| (s.zeros, s.bins.iter().map(|(&i, &n)| (i, n)).collect())).collect();
        out.push((key("q"), Some(enc(&value))));
    }
    if win.user_sketch.change.dirty {
        out.push((key("h"), Some(enc(&Packed::of(&win.user_sketch.registers)))));
    }
    if win.dims.change.dirty {
        // the whole breakdown, a page per few thousand rows, not a record per value
        let pages = dims_pages(st, win);
        written.dims_pages = pages.len() as u16;
        for (page, value) in pages.into_iter().enumerate() {
            out.push((key(&format!("d/{page}")), Some(value)));
        }
    }
    for ids in win.new_users.chunks(CHUNK) {
        let names: Vec<&str> = ids.iter().map(|&u| st.users.ids.name(u)).collect();
        out.push((key(&format!("u/{}", win.user_chunks + written.user_chunks)), Some(enc(&names))));
        written.user_chunks += 1;
    }
    written
}

fn user_entry(st: &State, id: u32, kind: u8) -> Option<EntryOut<'_>> {
    let u = &st.users.list[id as usize];
    if u.first == ABSENT {
        return None;
    }
    let last_item = u.last_item.map(|i| st.catalog.items.name(i));
    let types = &st.catalog.types;
    let hours = u.hours.iter().map(|(h, row)| (*h, named(types, &row.counts), row.cents, row.purchases)).collect();
    let rec = (u.first, u.last, named(types, &u.counts), u.spent, u.purchases, last_item, hours, u.item_ts);
    Some((kind, st.users.ids.name(id), Some(rec), None))
}

/// Records for everything that changed since the last flush (`users_published`: this flush publishes the user
/// documents too), tombstones for the `finals` windows, and the partition's position. Advances the log counters.
pub fn changed_records(st: &mut State, finals: &[(i64, i64)], users_published: bool) -> Vec<Record> {
    let mut out = Vec::new();
    let mut logged = Vec::new();
    for (key, win) in &st.windows {
        let before = out.len();
        let written = window_records(st, win, finals.contains(key), &mut out);
        logged.push((*key, out.len() > before, written));
    }
    for (key, wrote, written) in logged {
        if let Some(win) = st.windows.get_mut(&key) {
            win.user_chunks += written.user_chunks;
            win.logged |= wrote;
            for (s, pages) in written.item_pages {
                win.items.logged_pages[s] = win.items.logged_pages[s].max(pages);
            }
            win.dims.logged_pages = win.dims.logged_pages.max(written.dims_pages);
            win.quantiles.logged |= win.quantiles.dirty && wrote;
            win.user_sketch.logged |= win.user_sketch.change.dirty && wrote;
        }
    }
    for s in st.catalog.item_state.shards(st.catalog.item_state.dirty) {
        for (page, value) in shard_pages(st, &st.catalog.item_state.maps[s]).into_iter().enumerate() {
            out.push((format!("it/{}", page_key(s, page)).into_bytes(), Some(value)));
        }
    }
    entity_records(st, users_published, &mut out);
    let meta: Meta = (
        st.pos.next_offset,
        st.time.max_ts,
        st.time.floor,
        st.pos.counters,
        st.log.snap_epoch,
        st.log.snap_chunks,
        st.log.delta_first,
        st.log.delta_next,
        st.log.entries,
    );
    out.push((META.to_vec(), Some(enc(&meta))));
    if owner_logged(st) {
        let t = &st.time;
        let marks: Vec<MarkLog> = t.marks.iter().map(|m| (m.value, m.idle)).collect();
        let value: OwnerOut =
            (st.pos.repart_next, st.pos.forwarded, marks, t.owner, (t.sent.value, t.sent.idle), t.idle);
        out.push((FORWARDING.to_vec(), Some(enc(&value))));
    }
    out
}

fn owner_logged(st: &State) -> bool {
    !st.time.marks.is_empty() || st.pos.repart_next > 0 || st.pos.forwarded > 0
}

/// How many of `changed_records`' records (the last ones) are the partition's position and counters, which every
/// flush writes: the rest are state that changed.
pub fn meta_records(st: &State) -> usize {
    1 + usize::from(owner_logged(st))
}

fn entity_records(st: &mut State, users_published: bool, out: &mut Vec<Record>) {
    let changed = st.users.dirty.len() + st.sessions.dirty.len() + st.sessions.gone.len();
    if changed == 0 {
        return;
    }
    st.log.entries += changed as u64;
    let live = (st.users.list.len() + st.sessions.map.len()) as u64;
    if st.log.entries > st.cfg.compact_after && st.log.entries > 2 * live {
        return snapshot(st, users_published, out);
    }
    let mut entries: Vec<EntryOut> = st.users.dirty.iter().filter_map(|&u| user_entry(st, u, USER_PENDING)).collect();
    for sid in &st.sessions.dirty {
        if let Some(s) = st.sessions.map.get(sid) {
            entries.push((SESSION, sid, None, Some(session_out(s))));
        }
    }
    entries.extend(st.sessions.gone.iter().map(|sid| (SESSION_GONE, sid.as_str(), None, None)));
    let mut seq = st.log.delta_next;
    for page in entry_pages(entries) {
        out.push((format!("e/{seq}").into_bytes(), Some(page)));
        seq += 1;
    }
    st.log.delta_next = seq;
}

/// Entries in records of at most `CHUNK` entries and about `PAGE_BYTES` each (none for none).
fn entry_pages(entries: Vec<EntryOut<'_>>) -> Vec<Vec<u8>> {
    if entries.is_empty() {
        return Vec::new();
    }
    entries.chunks(CHUNK).flat_map(|chunk| pages(chunk.iter(), chunk.len())).collect()
}

fn session_out(s: &Session) -> SessionOut {
    (s.steps, s.last, s.open.iter().map(|o| (o.ts, o.kind, o.counted)).collect())
}

/// Every live user and session in fresh chunks; the deltas and the previous snapshot are tombstoned.
fn snapshot(st: &mut State, users_published: bool, out: &mut Vec<Record>) {
    let epoch = st.log.snap_epoch + 1;
    let mut entries: Vec<EntryOut> = (0..st.users.list.len() as u32)
        .filter_map(|u| {
            let kind = if st.users.list[u as usize].pending && !users_published { USER_PENDING } else { USER };
            user_entry(st, u, kind)
        })
        .collect();
    entries.extend(st.sessions.map.iter().map(|(sid, s)| (SESSION, sid.as_str(), None, Some(session_out(s)))));
    let mut n = 0;
    for page in entry_pages(entries) {
        out.push((format!("S/{epoch}/{n}").into_bytes(), Some(page)));
        n += 1;
    }
    out.extend((st.log.delta_first..st.log.delta_next).map(|seq| (format!("e/{seq}").into_bytes(), None)));
    if st.log.snap_epoch > 0 {
        out.extend((0..st.log.snap_chunks).map(|i| (format!("S/{}/{i}", st.log.snap_epoch).into_bytes(), None)));
    }
    st.log.snap_epoch = epoch;
    st.log.snap_chunks = n;
    st.log.delta_first = st.log.delta_next;
    st.log.entries = 0;
}

/// Markers for a flush that published every pending detail (`items`) and/or user document (`users`).
pub fn published_markers(items: bool, users: bool) -> Vec<Record> {
    let mut out = Vec::new();
    if items {
        out.push((ITEMS_PUBLISHED.to_vec(), Some(Vec::new())));
    }
    if users {
        out.push((USERS_PUBLISHED.to_vec(), Some(Vec::new())));
    }
    out
}

fn bad(key: &[u8], why: impl std::fmt::Display) -> String {
    format!(
        "changelog record {:?} is not readable ({why}): it was written by another Pulse version; \
         rebuild with `pulse replay`",
        String::from_utf8_lossy(key)
    )
}

fn dec<'a, T: Deserialize<'a>>(key: &[u8], value: &'a [u8]) -> Result<T, String> {
    rmp_serde::from_slice(value).map_err(|e| bad(key, e))
}

fn load_counts(types: &mut Names, named: Vec<(String, u64)>) -> Counts {
    let mut counts = Counts::new();
    for (name, n) in named {
        bump(&mut counts, types.id(&name), n);
    }
    counts
}

fn load_rows(st: &mut State, rows: Vec<RowIn>) -> Vec<(u32, Row)> {
    rows.into_iter()
        .map(|(item, cat, counts, cents, purchases)| {
            let it = st.catalog.items.id(&item);
            let cat = cat.map(|c| st.catalog.labels[CATEGORY].id(&c));
            st.set_category(it, cat);
            (it, Row { counts: load_counts(&mut st.catalog.types, counts), cents, purchases })
        })
        .collect()
}

/// Apply changelog records `(offset, key, value)` (in offset order) to an empty state; returns the live keys.
/// Details (item shards, breakdowns, user sketches) and users logged after the last matching published marker are
/// marked unpublished.
pub fn restore(st: &mut State, records: Vec<(i64, Vec<u8>, Option<Vec<u8>>)>) -> Result<usize, String> {
    let mut latest: rustc_hash::FxHashMap<Vec<u8>, (i64, Vec<u8>)> = Default::default();
    for (offset, key, value) in records {
        match value {
            Some(v) => latest.insert(key, (offset, v)),
            None => latest.remove(&key),
        };
    }
    let items_at = latest.remove(ITEMS_PUBLISHED).map_or(-1, |r| r.0);
    let users_at = latest.remove(USERS_PUBLISHED).map_or(-1, |r| r.0);
    let n = latest.len();
    let mut live: Vec<Logged> = latest.into_iter().collect();
    live.sort_by_key(|(_, (offset, _))| *offset);
    for (key, (offset, value)) in live {
        apply(st, &key, &value, offset > items_at, offset > users_at)?;
    }
    st.users.requeue((0..st.users.list.len() as u32).filter(|&u| st.users.list[u as usize].pending).collect());
    st.time.refresh(st.partition, st.cfg.grace, st.cfg.forward_wait); // never lower than what was logged
    Ok(n)
}

fn apply(st: &mut State, key: &[u8], value: &[u8], details_pending: bool, users_pending: bool) -> Result<(), String> {
    let path = std::str::from_utf8(key).map_err(|e| bad(key, e))?;
    let parts: Vec<&str> = path.splitn(5, '/').collect();
    let num = |i: usize| -> Result<i64, String> {
        parts.get(i).and_then(|p| p.parse().ok()).ok_or_else(|| bad(key, "malformed key"))
    };
    match parts[0] {
        "m" => {
            let m: Meta = dec(key, value)?;
            (st.pos.next_offset, st.time.max_ts, st.time.floor, st.pos.counters) = (m.0, m.1, m.2, m.3);
            (st.log.snap_epoch, st.log.snap_chunks, st.log.delta_first, st.log.delta_next, st.log.entries) =
                (m.4, m.5, m.6, m.7, m.8);
        }
        "r" => match dec(key, value)? {
            OwnerIn::Marks(next, forwarded, marks, owner, (sent, sent_idle), idle) => {
                (st.pos.repart_next, st.pos.forwarded, st.time.owner, st.time.idle) = (next, forwarded, owner, idle);
                st.time.sent = Mark { value: sent, idle: sent_idle };
                for (q, (value, idle)) in marks.into_iter().enumerate() {
                    st.time.mark(q, Mark { value, idle });
                }
            }
            OwnerIn::Before(next, forwarded, _, _) => (st.pos.repart_next, st.pos.forwarded) = (next, forwarded),
        },
        "it" => {
            let (shard, _) = parts.get(1).and_then(|p| parse_page(p)).ok_or_else(|| bad(key, "malformed key"))?;
            let rows: Vec<RowIn> = dec(key, value)?;
            let rows = load_rows(st, rows);
            st.catalog.item_state.maps[shard].extend(rows);
            if details_pending {
                st.catalog.item_state.unpublished |= 1 << shard;
            }
        }
        "e" | "S" => {
            let entries: Vec<EntryIn> = dec(key, value)?;
            for (kind, id, user, session) in entries {
                match (kind, user, session) {
                    (USER | USER_PENDING, Some(user), _) => {
                        let (first, last, counts, spent, purchases, last_item, hours, item_ts) = match user {
                            UserIn::WithItemTime(f, l, c, s, p, i, h, t) => (f, l, c, s, p, i, h, t),
                            UserIn::WithHours(f, l, c, s, p, i, h) => (f, l, c, s, p, i, h, l),
                            UserIn::Before(f, l, c, s, p, i) => (f, l, c, s, p, i, Vec::new(), l),
                        };
                        let uid = st.users.ids.id(&id);
                        let counts = load_counts(&mut st.catalog.types, counts);
                        let last_item = last_item.map(|i| st.catalog.items.id(&i));
                        let hours = hours
                            .into_iter()
                            .map(|(h, c, cents, purchases)| {
                                (h, Row { counts: load_counts(&mut st.catalog.types, c), cents, purchases })
                            })
                            .collect();
                        let u = st.users.get_mut(uid);
                        (u.first, u.last, u.counts, u.spent, u.purchases) = (first, last, counts, spent, purchases);
                        (u.last_item, u.hours, u.item_ts) = (last_item, hours, item_ts);
                        u.pending = kind == USER_PENDING && users_pending;
                    }
                    (SESSION, _, Some(session)) => {
                        let s = match session {
                            SessionIn::Open(steps, last, open) => Session {
                                steps,
                                last,
                                open: open.into_iter().map(|(ts, kind, counted)| Step { ts, kind, counted }).collect(),
                                dirty: false,
                            },
                            // its last event time stands for the run so far
                            SessionIn::Before(steps, last) => Session { steps, last, open: Vec::new(), dirty: false },
                        };
                        st.sessions.map.insert(id, s);
                    }
                    (SESSION_GONE, _, _) => {
                        st.sessions.map.remove(&id);
                    }
                    _ => return Err(bad(key, "unknown entry")),
                }
            }
        }
        "w" => {
            let (size, start) = (num(1)?, num(2)?);
            let part = parts.get(3).copied().unwrap_or("");
            match part {
                "s" => {
                    let (counts, status, rev, funnel): SummaryIn = dec(key, value)?;
                    let counts = load_counts(&mut st.catalog.types, counts);
                    let status = load_counts(&mut st.catalog.types, status);
                    let win = window(st, size, start);
                    (win.counts, win.status, win.rev, win.funnel) = (counts, status, rev, funnel);
                }
                "i" => {
                    let (shard, page) =
                        parts.get(4).and_then(|p| parse_page(p)).ok_or_else(|| bad(key, "malformed key"))?;
                    let rows: Vec<RowIn> = dec(key, value)?;
                    let rows = load_rows(st, rows);
                    // an older version kept item rows for every window: logged (so eviction tombstones them), dropped
                    let keeps = st.cfg.keeps_items(size);
                    let win = window(st, size, start);
                    win.items.logged_pages[shard] = win.items.logged_pages[shard].max(page + 1);
                    if keeps {
                        win.items.maps[shard].extend(rows);
                        if details_pending {
                            win.items.unpublished |= 1 << shard;
                        }
                    }
                }
                "d" => {
                    let page = num(4)? as u16;
                    let rows: Vec<DimIn> = dec(key, value)?;
                    for (dim, name, counts, cents, purchases) in rows {
                        let d = match dim {
                            Dimension::Name(n) => DIMENSIONS.iter().position(|&known| known == n),
                            Dimension::Index(i) => Some(usize::from(i)).filter(|&i| i < DIMS),
                        };
                        let Some(d) = d else { return Err(bad(key, "unknown dimension")) };
                        let id = st.catalog.labels[d].id(&name);
                        let counts = load_counts(&mut st.catalog.types, counts);
                        window(st, size, start).dims.rows[d].insert(id, Row { counts, cents, purchases });
                    }
                    let dims = &mut window(st, size, start).dims;
                    dims.logged_pages = dims.logged_pages.max(page + 1);
                    if details_pending {
                        dims.change.restored_unpublished();
                    }
                }
                "q" => {
                    let logged: SketchLog = dec(key, value)?;
                    let q = &mut window(st, size, start).quantiles;
                    for (sketch, (zeros, bins)) in q.sketches.iter_mut().zip(logged) {
                        *sketch = Sketch { zeros, bins: bins.into_iter().collect() };
                    }
                    q.logged = true;
                }
                "h" => {
                    let packed: Packed = dec(key, value)?;
                    let h = &mut window(st, size, start).user_sketch;
                    h.registers = packed.registers();
                    h.logged = true;
                    if details_pending {
                        h.change.restored_unpublished();
                    }
                }
                "c" => {
                    // logged before breakdowns: the categories alone; the next flush of the window logs them anew
                    let rows: Vec<CatIn> = dec(key, value)?;
                    for (name, counts, cents, purchases) in rows {
                        let id = st.catalog.labels[CATEGORY].id(&name);
                        let counts = load_counts(&mut st.catalog.types, counts);
                        window(st, size, start).dims.rows[CATEGORY].insert(id, Row { counts, cents, purchases });
                    }
                    window(st, size, start).dims.legacy_records = true;
                }
                "u" => {
                    let seq = num(4)? as u32;
                    let names: Vec<String> = dec(key, value)?;
                    let ids: Vec<u32> = names.iter().map(|n| st.users.ids.id(n)).collect();
                    let win = window(st, size, start);
                    win.users.extend(ids);
                    win.user_chunks = win.user_chunks.max(seq + 1);
                }
                _ => return Err(bad(key, "unknown window part")),
            }
        }
        _ => return Err(bad(key, "unknown kind")),
    }
    Ok(())
}

fn window(st: &mut State, size: i64, start: i64) -> &mut Window {
    st.windows.entry((size, start)).or_insert_with(|| Window { size, start, logged: true, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::state::Config;
    use std::borrow::Cow;

    fn state() -> State {
        let cfg = Config {
            sizes: vec![60_000],
            grace: 1_000,
            horizon: 1_000,
            session_timeout: 60_000,
            compact_after: 1_000,
            partitions: 0,
            forward_wait: 60_000,
            user_max_delay: 60_000,
            items_from: 60_000,
        };
        State::new(0, cfg)
    }

    fn breakdown_record(st: &mut State) -> (Vec<u8>, Vec<u8>) {
        let e = Event {
            event_id: Cow::Borrowed("e1"),
            event_type: Cow::Borrowed("view"),
            ts: 120_000,
            user_id: Cow::Borrowed("u1"),
            session_id: Cow::Borrowed("s1"),
            item_id: Some(Cow::Borrowed("i1")),
            category: Some(Cow::Borrowed("books")),
            price: None,
            amount: None,
            status: Cow::Borrowed("ok"),
            device: Cow::Borrowed("mobile"),
            country: Cow::Borrowed("DE"),
        };
        st.begin(0);
        st.accept(&e, 120_000);
        let records = changed_records(st, &[], false);
        records.into_iter().find(|(k, _)| k.ends_with(b"/d/0")).map(|(k, v)| (k, v.unwrap())).unwrap()
    }

    #[test]
    fn breakdown_rows_are_logged_by_dimension_name_and_older_logs_by_index_restore() {
        let (key, value) = breakdown_record(&mut state());
        type Logged = (String, String, Vec<(String, u64)>, i64, u64);
        let rows: Vec<Logged> = rmp_serde::from_slice(&value).unwrap();
        let dims: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(dims, DIMENSIONS.to_vec());
        let by_index: Vec<_> = rows
            .into_iter()
            .map(|(d, v, c, cents, n)| (DIMENSIONS.iter().position(|&x| x == d).unwrap() as u8, v, c, cents, n))
            .collect();
        for value in [value, rmp_serde::to_vec(&by_index).unwrap()] {
            let mut st = state();
            restore(&mut st, vec![(0, key.clone(), Some(value))]).unwrap();
            let win = st.windows.values().next().unwrap();
            for (d, name) in DIMENSIONS.iter().enumerate() {
                let expected = ["books", "ok", "DE", "mobile"][d];
                let rows: Vec<&str> = win.dims.rows[d].keys().map(|&v| st.catalog.labels[d].name(v)).collect();
                assert_eq!(rows, vec![expected], "{name}");
            }
        }
    }

    #[test]
    fn an_unknown_dimension_is_refused() {
        let (key, _) = breakdown_record(&mut state());
        let row = vec![("planet", "mars", Vec::<(String, u64)>::new(), 0i64, 0u64)];
        let err = restore(&mut state(), vec![(0, key, Some(rmp_serde::to_vec(&row).unwrap()))]).err().unwrap();
        assert!(err.contains("unknown dimension"), "{err}");
    }
}
