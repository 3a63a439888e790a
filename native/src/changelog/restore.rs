//! Restore: the live records of a partition's changelog, applied in offset order to an empty state.

use serde::Deserialize;

use super::records::{
    BreakdownRow, CategoryRow, Count, Dimension, Entry, ForwardingIn, Hour, ItemRow, Meta, SessionRecord, SketchRecord,
    Summary, FORMAT, IDS_LOGGED, SESSION, SESSION_GONE, USER, USER_PENDING,
};
use super::{ITEMS_PUBLISHED, META, USERS_PUBLISHED};
use crate::breakdown::{CATEGORY, DIMENSIONS, DIMS};
use crate::dedup::unpack;
use crate::hll::Packed;
use crate::seen::Seen;
use crate::sessions::Step;
use crate::sketch::Sketch;
use crate::state::{bump, Counts, Mark, Names, Row, Session, State, Window, ITEM_SHARDS};

type Logged<'a> = (&'a [u8], (i64, &'a [u8])); // key, (offset, value)

/// (shard, page) from a key suffix written by `page_key`.
fn parse_page(part: &str) -> Option<(usize, u16)> {
    let (shard, page) = part.split_once('.').unwrap_or((part, "0"));
    Some((shard.parse::<usize>().ok()? % ITEM_SHARDS, page.parse().ok()?))
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

fn load_counts(types: &mut Names, named: Vec<Count<String>>) -> Counts {
    let mut counts = Counts::new();
    for Count { name, n } in named {
        bump(&mut counts, types.id(&name), n);
    }
    counts
}

fn load_rows(st: &mut State, rows: Vec<ItemRow<String>>) -> Vec<(u32, Row)> {
    rows.into_iter()
        .map(|r| {
            let it = st.catalog.items.id(&r.item);
            let cat = r.category.map(|c| st.catalog.labels[CATEGORY].id(&c));
            st.set_category(it, cat);
            (it, Row { counts: load_counts(&mut st.catalog.types, r.counts), cents: r.cents, purchases: r.purchases })
        })
        .collect()
}

/// Apply changelog records `(offset, key, value)` (in offset order) to an empty state; returns the live keys.
/// Details (item shards, breakdowns, user sketches) and users logged after the last matching published marker are
/// marked unpublished.
pub fn restore<'a>(
    st: &mut State,
    records: impl IntoIterator<Item = (i64, &'a [u8], Option<&'a [u8]>)>,
) -> Result<usize, String> {
    let mut latest: rustc_hash::FxHashMap<&[u8], (i64, &[u8])> = Default::default();
    for (offset, key, value) in records {
        match value {
            Some(v) => latest.insert(key, (offset, v)),
            None => latest.remove(key),
        };
    }
    let mut format = FORMAT; // no meta: nothing was logged, so nothing is owed either
    if let Some((_, meta)) = latest.get(META) {
        format = dec::<Meta>(META, meta)?.format;
        if format > FORMAT {
            return Err(format!(
                "the changelog was written by a newer Pulse (format {format}; this one reads up to {FORMAT}): \
                 run that version, or rebuild with `pulse replay`"
            ));
        }
    }
    let items_at = latest.remove(ITEMS_PUBLISHED).map_or(-1, |r| r.0);
    let users_at = latest.remove(USERS_PUBLISHED).map_or(-1, |r| r.0);
    let n = latest.len();
    let mut live: Vec<Logged> = latest.into_iter().collect();
    live.sort_by_key(|(_, (offset, _))| *offset);
    for (key, (offset, value)) in live {
        apply(st, key, value, offset > items_at, offset > users_at)?;
    }
    st.dedup.from_log = format >= IDS_LOGGED;
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
            (st.pos.next_offset, st.time.max_ts, st.time.floor) = (m.next_offset, m.max_ts, m.floor);
            st.pos.counters = m.counters.array();
            (st.log.snap_epoch, st.log.snap_chunks, st.log.delta_first, st.log.delta_next, st.log.entries) =
                (m.snap_epoch, m.snap_chunks, m.delta_first, m.delta_next, m.entries);
        }
        "r" => match dec(key, value)? {
            ForwardingIn::Now(f) => {
                (st.pos.repart_next, st.pos.forwarded) = (f.repartition_next, f.forwarded);
                (st.time.owner, st.time.idle) = (f.owner, f.idle);
                st.time.sent = Mark { value: f.sent.value, idle: f.sent.idle };
                for (q, m) in f.marks.into_iter().enumerate() {
                    st.time.mark(q, Mark { value: m.value, idle: m.idle });
                }
            }
            ForwardingIn::Before(f) => (st.pos.repart_next, st.pos.forwarded) = (f.repartition_next, f.forwarded),
        },
        "it" => {
            let (shard, _) = parts.get(1).and_then(|p| parse_page(p)).ok_or_else(|| bad(key, "malformed key"))?;
            let rows: Vec<ItemRow<String>> = dec(key, value)?;
            let rows = load_rows(st, rows);
            st.catalog.item_state.maps[shard].extend(rows);
            st.catalog.item_state.change.restored(shard, details_pending);
        }
        "e" | "S" => {
            let entries: Vec<Entry<String>> = dec(key, value)?;
            for Entry { kind, id, user, session } in entries {
                match (kind, user, session) {
                    (USER | USER_PENDING, Some(user), _) => {
                        let uid = st.users.ids.id(&id);
                        let counts = load_counts(&mut st.catalog.types, user.counts);
                        let last_item = user.last_item.map(|i| st.catalog.items.id(&i));
                        let hours = user
                            .hours
                            .into_iter()
                            .map(|Hour { start, counts, cents, purchases }| {
                                (start, Row { counts: load_counts(&mut st.catalog.types, counts), cents, purchases })
                            })
                            .collect();
                        let u = st.users.get_mut(uid);
                        (u.first, u.last, u.counts, u.spent, u.purchases) =
                            (user.first, user.last, counts, user.spent, user.purchases);
                        // logged before the time of the last item: the last event's stands for it
                        (u.last_item, u.hours, u.item_ts) = (last_item, hours, user.item_ts.unwrap_or(user.last));
                        // bitmaps made under other window sizes say nothing of these
                        let layout = &st.cfg.layout;
                        u.seen = match user.seen {
                            Some(s) if s.sizes == layout.sizes() => Seen::from_hours(layout, s.hours),
                            _ => Seen::default(),
                        };
                        u.pending = kind == USER_PENDING && users_pending;
                    }
                    (SESSION, _, Some(SessionRecord { steps, last, open, revised })) => {
                        // logged before sessions followed event time: no open events, its last time stands for them
                        let open = (open.into_iter())
                            .map(|o| Step {
                                ts: o.ts,
                                kind: o.step,
                                counted: o.counted,
                                revised: o.revised.unwrap_or(o.counted),
                            })
                            .collect();
                        st.sessions.map.insert(id, Session { steps, revised, last, open, dirty: false });
                    }
                    (SESSION_GONE, _, _) => {
                        st.sessions.map.remove(&id);
                    }
                    _ => return Err(bad(key, "unknown entry")),
                }
            }
        }
        "d" => {
            let hour = num(1)?;
            for (id, ts) in unpack(value).ok_or_else(|| bad(key, "malformed event ids"))? {
                st.dedup.restored(id, ts);
            }
            st.dedup.logged.entry(hour).or_default().push(path.to_string());
        }
        "w" => {
            let (size, start) = (num(1)?, num(2)?);
            let part = parts.get(3).copied().unwrap_or("");
            match part {
                "s" => {
                    let summary: Summary<String> = dec(key, value)?;
                    let counts = load_counts(&mut st.catalog.types, summary.counts);
                    let status = load_counts(&mut st.catalog.types, summary.status);
                    let win = window(st, size, start);
                    (win.counts, win.status) = (counts, status);
                    (win.rev, win.funnel) = (summary.revenue.array(), summary.funnel);
                    win.summary.restored(0, false);
                }
                "i" => {
                    let (shard, page) =
                        parts.get(4).and_then(|p| parse_page(p)).ok_or_else(|| bad(key, "malformed key"))?;
                    let rows: Vec<ItemRow<String>> = dec(key, value)?;
                    let rows = load_rows(st, rows);
                    // an older version kept item rows for every window: logged (so eviction tombstones them), dropped
                    let keeps = st.cfg.keeps_items(size);
                    let win = window(st, size, start);
                    win.items.logged_pages[shard] = win.items.logged_pages[shard].max(page + 1);
                    win.items.change.restored(shard, keeps && details_pending);
                    if keeps {
                        win.items.maps[shard].extend(rows);
                    }
                }
                "d" => {
                    let page = num(4)? as u16;
                    let rows: Vec<BreakdownRow<Dimension, String>> = dec(key, value)?;
                    for BreakdownRow { dimension, value: name, counts, cents, purchases } in rows {
                        let d = match dimension {
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
                    dims.change.restored(0, details_pending);
                }
                "q" => {
                    let logged: Vec<SketchRecord> = dec(key, value)?;
                    let q = &mut window(st, size, start).quantiles;
                    for (sketch, SketchRecord { zeros, bins }) in q.sketches.iter_mut().zip(logged) {
                        *sketch = Sketch { zeros, bins: bins.into_iter().map(|b| (b.index, b.count)).collect() };
                    }
                    q.change.restored(0, false);
                }
                "h" => {
                    let packed: Packed = dec(key, value)?;
                    let h = &mut window(st, size, start).user_sketch;
                    h.registers = packed.registers();
                    h.change.restored(0, details_pending);
                }
                "c" => {
                    // logged before breakdowns: the categories alone; the next flush of the window logs them anew
                    let rows: Vec<CategoryRow> = dec(key, value)?;
                    for CategoryRow { category, counts, cents, purchases } in rows {
                        let id = st.catalog.labels[CATEGORY].id(&category);
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
    st.windows.entry((size, start)).or_insert_with(|| Window { size, start, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::changed_records;
    use crate::event::Event;
    use crate::state::Config;
    use std::borrow::Cow;

    fn restore_owned(st: &mut State, records: Vec<(i64, Vec<u8>, Option<Vec<u8>>)>) -> Result<usize, String> {
        restore(st, records.iter().map(|(offset, k, v)| (*offset, k.as_slice(), v.as_deref())))
    }

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
            ids_dir: crate::dedup::scratch_dir("test"),
            layout: crate::seen::Layout::new(&[60_000]),
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
            restore_owned(&mut st, vec![(0, key.clone(), Some(value))]).unwrap();
            let win = st.windows.values().next().unwrap();
            for (d, name) in DIMENSIONS.iter().enumerate() {
                let expected = ["books", "ok", "DE", "mobile"][d];
                let rows: Vec<&str> = win.dims.rows[d].keys().map(|&v| st.catalog.labels[d].name(v)).collect();
                assert_eq!(rows, vec![expected], "{name}");
            }
        }
    }

    fn event(id: &'static str, ts: i64) -> Event<'static> {
        Event {
            event_id: Cow::Borrowed(id),
            event_type: Cow::Borrowed("view"),
            ts,
            user_id: Cow::Borrowed("u1"),
            session_id: Cow::Borrowed("s1"),
            item_id: None,
            category: None,
            price: None,
            amount: None,
            status: Cow::Borrowed("ok"),
            device: Cow::Borrowed("mobile"),
            country: Cow::Borrowed("DE"),
        }
    }

    fn logged(records: Vec<crate::changelog::Record>) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
        records.into_iter().enumerate().map(|(n, (k, v))| (n as i64, k, v)).collect()
    }

    /// Each flush logs the ids it remembered under their event-time hour; a restore from the log alone then
    /// knows them (no input re-read owed), and once an hour is past the horizon its records are tombstoned.
    #[test]
    fn event_ids_are_logged_restored_and_tombstoned_by_hour() {
        let mut st = state();
        st.cfg.horizon = 3_600_000;
        st.begin(0);
        st.accept(&event("a", 7_200_000), 7_200_000);
        st.begin(1);
        st.accept(&event("b", 7_300_000), 7_300_000);
        let first = changed_records(&mut st, &[], false);
        let ids: Vec<&Vec<u8>> = first.iter().map(|(k, _)| k).filter(|k| k.starts_with(b"d/")).collect();
        assert_eq!(ids, vec![b"d/7200000/2-0/0"]);
        let mut again = state();
        again.cfg.horizon = 3_600_000;
        restore_owned(&mut again, logged(first.clone())).unwrap();
        assert!(again.dedup.from_log);
        assert!(matches!(again.accept(&event("a", 7_300_000), 7_300_000), crate::state::Outcome::Duplicate));
        assert!(matches!(again.accept(&event("c", 7_300_000), 7_300_000), crate::state::Outcome::Accepted));
        // hours later: the owner watermark passed 7,200,000 + 1 h + the horizon, so that hour is let go
        st.begin(2);
        st.accept(&event("z", 14_500_000), 14_500_000);
        st.time.owner = 14_400_000;
        st.expire();
        let later = changed_records(&mut st, &[], false);
        assert!(later.iter().any(|(k, v)| k.as_slice() == b"d/7200000/2-0/0" && v.is_none()));
        assert!(later.iter().any(|(k, v)| k.starts_with(b"d/14400000/") && v.is_some()));
        let mut all = logged(first);
        all.extend(logged(later).into_iter().map(|(n, k, v)| (n + 100, k, v)));
        let mut third = state();
        restore_owned(&mut third, all).unwrap();
        assert_eq!(third.dedup.len(), 1); // "z" alone
    }

    #[test]
    fn an_unknown_dimension_is_refused() {
        let (key, _) = breakdown_record(&mut state());
        let row = vec![("planet", "mars", Vec::<(String, u64)>::new(), 0i64, 0u64)];
        let err = restore_owned(&mut state(), vec![(0, key, Some(rmp_serde::to_vec(&row).unwrap()))]).err().unwrap();
        assert!(err.contains("unknown dimension"), "{err}");
    }

    #[test]
    fn a_changelog_of_a_newer_format_is_refused_and_one_before_formats_restores() {
        let mut st = state();
        breakdown_record(&mut st);
        let records = changed_records(&mut st, &[], false);
        let (key, meta) = records.iter().find(|(k, _)| k.as_slice() == META).cloned().unwrap();
        let mut m: Meta = rmp_serde::from_slice(meta.as_ref().unwrap()).unwrap();
        assert_eq!(m.format, FORMAT);
        m.format = FORMAT + 1;
        let newer = vec![(0, key.clone(), Some(rmp_serde::to_vec(&m).unwrap()))];
        let err = restore_owned(&mut state(), newer).err().unwrap();
        assert!(err.contains("newer Pulse"), "{err}");
        // the meta record before formats: the same fields, without the last
        let before = (m.next_offset, m.max_ts, m.floor, m.counters.array(), 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut again = state();
        restore_owned(&mut again, vec![(0, key, Some(rmp_serde::to_vec(&before).unwrap()))]).unwrap();
        assert_eq!((again.pos.next_offset, again.pos.counters), (st.pos.next_offset, st.pos.counters));
    }

    #[test]
    fn a_user_logged_before_hours_and_item_times_restores_with_its_last_event_time() {
        type Before<'a> = (i64, i64, Vec<(&'a str, u64)>, i64, u64, Option<&'a str>);
        let user: Before = (1_000, 5_000, vec![("view", 3)], 250, 1, Some("i9"));
        let entries = vec![(USER, "u7", Some(user), None::<()>)];
        let mut st = state();
        restore_owned(&mut st, vec![(0, b"e/0".to_vec(), Some(rmp_serde::to_vec(&entries).unwrap()))]).unwrap();
        let u = &st.users.list[st.users.ids.id("u7") as usize];
        assert_eq!((u.first, u.last, u.spent, u.purchases, u.item_ts), (1_000, 5_000, 250, 1, 5_000));
        assert!(u.hours.is_empty());
        assert_eq!(st.catalog.items.name(u.last_item.unwrap()), "i9");
    }
}
