//! The partition's compacted changelog: what changed since the last flush, and restore from it.
//!
//! Keys are short ASCII paths (deterministic, so compaction keeps one value per piece of state); values are
//! msgpack. Item partials are logged per item shard (the whole shard), a window's breakdowns as one paged record,
//! window user sets as append-only chunks, and users and sessions as a log-structured pair: a delta record per
//! flush, folded into a fresh snapshot (and the deltas tombstoned) once deltas outgrow the live state, so
//! restore time follows live state.
//! A tombstone (no value) removes state that is final and already emitted.

mod records;
mod restore;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::breakdown::DIMENSIONS;
use crate::dedup::key::Key;
use crate::dedup::pack;
use crate::hll::Packed;
use crate::progress::Dedup;
use crate::state::{Counts, Names, Row, Session, State, Window, ABSENT, ITEM_SHARDS, PAGE_BYTES};
use records::{
    Bin, BreakdownRow, Count, Counters, Entry, Forwarding, Hour, ItemRow, MarkRecord, Meta, OpenStep, Revenue,
    SeenRecord, SessionRecord, SketchRecord, Summary, User, FORMAT, SESSION, SESSION_GONE, USER, USER_PENDING,
};
pub use restore::restore;

pub type Record = (Vec<u8>, Option<Vec<u8>>);

/// Every pending detail (item shards, breakdowns, user sketches) went out with the flush that logged this marker.
pub const ITEMS_PUBLISHED: &[u8] = b"pub/items";
pub const USERS_PUBLISHED: &[u8] = b"pub/users";
const META: &[u8] = b"m";
/// The owner side of the meta record (`Forwarding`), apart from it so that a partition of a one-partition topic
/// logs nothing more.
const FORWARDING: &[u8] = b"r";
const CHUNK: usize = 5_000; // ids or entries per record: well under the broker's 1 MB message limit

fn enc<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec(value).expect("msgpack encoding of plain data")
}

fn named<'a>(names: &'a Names, counts: &Counts) -> Vec<Count<&'a str>> {
    counts.iter().map(|&(id, n)| Count { name: names.name(id), n }).collect()
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
    let rows = map.iter().map(|(&it, row)| ItemRow {
        item: st.catalog.items.name(it),
        category: st.category(it),
        counts: named(&st.catalog.types, &row.counts),
        cents: row.cents,
        purchases: row.purchases,
    });
    pages(rows, map.len())
}

/// A window's breakdown rows, paged.
fn dims_pages(st: &State, win: &Window) -> Vec<Vec<u8>> {
    let rows = win.dims.iter().map(|(d, value, row)| BreakdownRow {
        dimension: DIMENSIONS[d],
        value: st.catalog.labels[d].name(value),
        counts: named(&st.catalog.types, &row.counts),
        cents: row.cents,
        purchases: row.purchases,
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
    if is_final && !win.logged() {
        return written;
    }
    if is_final {
        out.push((key("s"), None));
        for s in (0..ITEM_SHARDS).filter(|&s| win.items.logged_pages[s] > 0 || !win.items.maps[s].is_empty()) {
            let pages = win.items.logged_pages[s].max(1) as usize;
            out.extend((0..pages).map(|page| (key(&format!("i/{}", page_key(s, page))), None)));
        }
        out.extend((0..win.dims.logged_pages).map(|page| (key(&format!("d/{page}")), None)));
        if win.dims.legacy_records {
            out.push((key("c"), None));
        }
        if win.quantiles.change.logged() {
            out.push((key("q"), None));
        }
        if win.user_sketch.change.logged() {
            out.push((key("h"), None));
        }
        out.extend((0..win.user_chunks).map(|seq| (key(&format!("u/{seq}")), None)));
        return written;
    }
    if win.summary.to_log() {
        let value = Summary {
            counts: named(&st.catalog.types, &win.counts),
            status: named(&st.catalog.types, &win.status),
            revenue: Revenue::of(win.rev),
            funnel: win.funnel,
        };
        out.push((key("s"), Some(enc(&value))));
    }
    for s in win.items.shards(win.items.change.pieces_to_log()) {
        let pages = shard_pages(st, &win.items.maps[s]);
        written.item_pages.push((s, pages.len() as u16));
        for (page, value) in pages.into_iter().enumerate() {
            out.push((key(&format!("i/{}", page_key(s, page))), Some(value)));
        }
    }
    if win.quantiles.change.to_log() {
        let value: Vec<SketchRecord> = win
            .quantiles
            .sketches
            .iter()
            .map(|s| SketchRecord {
                zeros: s.zeros,
                bins: s.bins.iter().map(|(&index, &count)| Bin { index, count }).collect(),
            })
            .collect();
        out.push((key("q"), Some(enc(&value))));
    }
    if win.user_sketch.change.to_log() {
        out.push((key("h"), Some(enc(&Packed::of(&win.user_sketch.registers)))));
    }
    if win.dims.change.to_log() {
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

fn user_entry(st: &State, id: u32, kind: u8) -> Option<Entry<&str>> {
    let u = &st.users.list[id as usize];
    if u.first == ABSENT {
        return None;
    }
    let types = &st.catalog.types;
    let hours = u
        .hours
        .iter()
        .map(|(h, row)| Hour {
            start: *h,
            counts: named(types, &row.counts),
            cents: row.cents,
            purchases: row.purchases,
        })
        .collect();
    let user = User {
        first: u.first,
        last: u.last,
        counts: named(types, &u.counts),
        spent: u.spent,
        purchases: u.purchases,
        last_item: u.last_item.map(|i| st.catalog.items.name(i)),
        hours,
        item_ts: Some(u.item_ts),
        seen: (!u.seen.is_empty()).then(|| SeenRecord {
            sizes: st.cfg.layout.sizes(),
            hours: u.seen.hours(&st.cfg.layout).map(|(h, bits)| (h, bits.to_vec())).collect(),
        }),
    };
    Some(Entry { kind, id: st.users.ids.name(id), user: Some(user), session: None })
}

fn session_entry<'a>(kind: u8, id: &'a str, session: Option<&Session>) -> Entry<&'a str> {
    Entry { kind, id, user: None, session: session.map(session_record) }
}

/// Records for everything that changed since the last flush (`users_published`: this flush publishes the user
/// documents too), tombstones for the `finals` windows, and the partition's position. Advances the log counters.
pub fn changed_records(st: &mut State, finals: &[(i64, i64)], users_published: bool) -> Vec<Record> {
    let mut out = Vec::new();
    let mut logged = Vec::new();
    for (key, win) in &st.windows {
        let written = window_records(st, win, finals.contains(key), &mut out);
        logged.push((*key, written));
    }
    for (key, written) in logged {
        if let Some(win) = st.windows.get_mut(&key) {
            win.user_chunks += written.user_chunks;
            for (s, pages) in written.item_pages {
                win.items.logged_pages[s] = win.items.logged_pages[s].max(pages);
            }
            win.dims.logged_pages = win.dims.logged_pages.max(written.dims_pages);
        }
    }
    for s in st.catalog.item_state.shards(st.catalog.item_state.change.pieces_to_log()) {
        for (page, value) in shard_pages(st, &st.catalog.item_state.maps[s]).into_iter().enumerate() {
            out.push((format!("it/{}", page_key(s, page)).into_bytes(), Some(value)));
        }
    }
    entity_records(st, users_published, &mut out);
    id_records(st, &mut out);
    let meta = Meta {
        next_offset: st.pos.next_offset,
        max_ts: st.time.max_ts,
        floor: st.time.floor,
        counters: Counters::of(st.pos.counters),
        snap_epoch: st.log.snap_epoch,
        snap_chunks: st.log.snap_chunks,
        delta_first: st.log.delta_first,
        delta_next: st.log.delta_next,
        entries: st.log.entries,
        format: FORMAT,
    };
    out.push((META.to_vec(), Some(enc(&meta))));
    if owner_logged(st) {
        let t = &st.time;
        let value = Forwarding {
            repartition_next: st.pos.repart_next,
            forwarded: st.pos.forwarded,
            marks: t.marks.iter().map(|m| MarkRecord { value: m.value, idle: m.idle }).collect(),
            owner: t.owner,
            sent: MarkRecord { value: t.sent.value, idle: t.sent.idle },
            idle: t.idle,
        };
        out.push((FORWARDING.to_vec(), Some(enc(&value))));
    }
    out
}

/// The event ids remembered since the last flush, by event-time hour, and tombstones for the hours now past the
/// horizon. A record's key names its flush by the partition's positions: any two flushes that remembered ids
/// differ in them, since an id is remembered only for a record read or taken after the flush before.
fn id_records(st: &mut State, out: &mut Vec<Record>) {
    let mut by_hour: BTreeMap<i64, Vec<(Key, i64)>> = BTreeMap::new();
    for (key, ts) in st.dedup.pending.drain(..) {
        by_hour.entry(Dedup::hour(ts)).or_default().push((key, ts));
    }
    for (hour, ids) in by_hour {
        for (n, chunk) in ids.chunks(CHUNK).enumerate() {
            let key = format!("d/{hour}/{}-{}/{n}", st.pos.next_offset, st.pos.repart_next);
            out.push((key.clone().into_bytes(), Some(pack(chunk))));
            st.dedup.logged.entry(hour).or_default().push(key);
        }
    }
    out.extend(st.dedup.tombstones.drain(..).map(|key| (key.into_bytes(), None)));
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
    let mut entries: Vec<Entry<&str>> =
        st.users.dirty.iter().filter_map(|&u| user_entry(st, u, USER_PENDING)).collect();
    for sid in &st.sessions.dirty {
        if let Some(s) = st.sessions.map.get(sid) {
            entries.push(session_entry(SESSION, sid, Some(s)));
        }
    }
    entries.extend(st.sessions.gone.iter().map(|sid| session_entry(SESSION_GONE, sid, None)));
    let mut seq = st.log.delta_next;
    for page in entry_pages(entries) {
        out.push((format!("e/{seq}").into_bytes(), Some(page)));
        seq += 1;
    }
    st.log.delta_next = seq;
}

/// Entries in records of at most `CHUNK` entries and about `PAGE_BYTES` each (none for none).
fn entry_pages(entries: Vec<Entry<&str>>) -> Vec<Vec<u8>> {
    if entries.is_empty() {
        return Vec::new();
    }
    entries.chunks(CHUNK).flat_map(|chunk| pages(chunk.iter(), chunk.len())).collect()
}

fn session_record(s: &Session) -> SessionRecord {
    let open = (s.open.iter())
        .map(|o| OpenStep { ts: o.ts, step: o.kind, counted: o.counted, revised: Some(o.revised) })
        .collect();
    SessionRecord { steps: s.steps, last: s.last, open, revised: s.revised }
}

/// Every live user and session in fresh chunks; the deltas and the previous snapshot are tombstoned.
fn snapshot(st: &mut State, users_published: bool, out: &mut Vec<Record>) {
    let epoch = st.log.snap_epoch + 1;
    let mut entries: Vec<Entry<&str>> = (0..st.users.list.len() as u32)
        .filter_map(|u| {
            let kind = if st.users.list[u as usize].pending && !users_published { USER_PENDING } else { USER };
            user_entry(st, u, kind)
        })
        .collect();
    entries.extend(st.sessions.map.iter().map(|(sid, s)| session_entry(SESSION, sid, Some(s))));
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
