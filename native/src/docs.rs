//! The documents Pulse publishes (JSON), per window × owning partition (a summary and its breakdowns), per item shard and per
//! user, each with a deterministic id and `version` = the owning partition's position in its inputs. The field layout is
//! the contract with `pulse.store` (index templates, queries) and `pulse verify`; see `pulse.aggregate.docs`.

use crate::breakdown::DIMENSIONS;
use crate::change::Change;
use crate::hll::{self, Packed, PRECISION};
use crate::publish::Plan;
use crate::sketch::{Sketch, SKETCHED};
use crate::state::{Counts, Names, Row, State, Window, ABSENT, FUNNEL, OUTCOMES, PAGE_BYTES};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};

pub type Doc = (String, &'static str, Vec<u8>);

/// 10000 -> "10s": the shortest exact spelling, used in document ids.
pub fn label(size: i64) -> String {
    for (unit, ms) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if size % ms == 0 {
            return format!("{}{unit}", size / ms);
        }
    }
    format!("{size}ms")
}

/// The document field of each sketch in `SKETCHED` (`Obj::key` takes static names).
const SKETCH_FIELDS: [&str; SKETCHED.len()] = ["amount_sketch", "price_sketch"];

/// A JSON object under construction.
struct Obj(Vec<u8>);

impl Obj {
    fn new() -> Self {
        Obj(Vec::with_capacity(256))
    }
    /// `k` is one of this module's field names: plain ASCII, written without escaping.
    fn key(&mut self, k: &'static str) -> &mut Self {
        debug_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        self.0.push(if self.0.is_empty() { b'{' } else { b',' });
        self.0.push(b'"');
        self.0.extend_from_slice(k.as_bytes());
        self.0.extend_from_slice(b"\":");
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        serde_json::to_writer(&mut self.0, s).expect("string to JSON");
        self
    }
    fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.str(s),
            None => self.raw("null"),
        }
    }
    fn int(&mut self, n: impl itoa::Integer) -> &mut Self {
        self.0.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self
    }
    fn raw(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn counts(&mut self, names: &Names, counts: &Counts) -> &mut Self {
        // a handful of names (event types, statuses): sorted on the stack, not in a vector per row
        let mut stack = [("", 0u64); 8];
        let mut heap;
        let sorted: &mut [(&str, u64)] = if counts.len() <= stack.len() {
            for (slot, &(id, n)) in stack.iter_mut().zip(counts) {
                *slot = (names.name(id), n);
            }
            &mut stack[..counts.len()]
        } else {
            heap = counts.iter().map(|&(id, n)| (names.name(id), n)).collect::<Vec<_>>();
            &mut heap
        };
        sorted.sort_unstable();
        self.0.push(b'{');
        for (i, &mut (name, n)) in sorted.iter_mut().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.str(name).raw(":").int(n);
        }
        self.raw("}")
    }
    /// `{"zeros":n,"bins":[[bin,count],…]}` in bin order.
    fn sketch(&mut self, s: &Sketch) -> &mut Self {
        self.raw("{\"zeros\":").int(s.zeros).raw(",\"bins\":[");
        for (n, (&i, &c)) in s.bins.iter().enumerate() {
            self.raw(if n == 0 { "[" } else { ",[" }).int(i).raw(",").int(c).raw("]");
        }
        self.raw("]}")
    }
    /// `{"p":14,"sparse":[[register,rank],…]}` while few registers are set, else `{"p":14,"dense":"<base64>"}`.
    fn hll(&mut self, registers: &[u8]) -> &mut Self {
        self.raw("{\"p\":").int(PRECISION);
        match Packed::of(registers) {
            Packed::Sparse(pairs) => {
                self.raw(",\"sparse\":[");
                for (n, (i, r)) in pairs.into_iter().enumerate() {
                    self.raw(if n == 0 { "[" } else { ",[" }).int(i).raw(",").int(r).raw("]");
                }
                self.raw("]}")
            }
            Packed::Dense(r) => self.raw(",\"dense\":\"").raw(&BASE64.encode(r)).raw("\"}"),
        }
    }
    fn done(mut self) -> Vec<u8> {
        self.0.push(b'}');
        self.0
    }
}

/// Whose window documents: a partition's own, or one of its revisions (corrections counted by one flush, beside
/// the window's own documents; readers merge them all).
#[derive(Clone, Copy)]
struct Of {
    partition: i32,
    revision: Option<Revision>,
}

/// A revision: the version of the flush that published it (which no later flush repeats), and its wall clock.
#[derive(Clone, Copy)]
struct Revision {
    version: i64,
    at: i64,
}

fn window_head(kind: &str, win: &Window, of: Of) -> Obj {
    let mut o = Obj::new();
    o.key("kind").str(kind).key("window").str(&label(win.size)).key("window_ms").int(win.size);
    o.key("start").int(win.start).key("end").int(win.end()).key("partition").int(of.partition);
    if let Some(r) = of.revision {
        o.key("revision").int(r.version).key("revised_at").int(r.at);
    }
    o
}

fn window_base(kind: &str, win: &Window, of: Of, is_final: bool, version: i64) -> Obj {
    let mut o = window_head(kind, win, of);
    o.key("final").raw(if is_final { "true" } else { "false" }).key("version").int(version);
    o
}

/// `window:10s:<start>:p3`, `window_dims:10s:<start>:page1:p3`; a revision's end in `:r<revision>`.
fn window_id(kind: &str, win: &Window, of: Of, dim: Option<&str>) -> String {
    let middle = dim.map_or(String::new(), |d| format!("{d}:"));
    let id = format!("{kind}:{}:{}:{middle}p{}", label(win.size), win.start, of.partition);
    match of.revision {
        Some(r) => format!("{id}:r{}", r.version),
        None => id,
    }
}

fn summary(st: &State, win: &Window, of: Of, is_final: bool, v: i64) -> Doc {
    let mut o = window_base("window", win, of, is_final, v);
    let events: u64 = win.counts.iter().map(|c| c.1).sum();
    let errors: u64 = win.status.iter().filter(|c| st.catalog.types.name(c.0) != "ok").map(|c| c.1).sum();
    let [n, total, lo, hi] = win.rev;
    o.key("events").int(events).key("counts").counts(&st.catalog.types, &win.counts);
    o.key("status").counts(&st.catalog.types, &win.status).key("errors").int(errors);
    o.key("purchases").int(n).key("revenue_cents").int(total);
    if n > 0 {
        o.key("min_cents").int(lo).key("max_cents").int(hi);
    } else {
        o.key("min_cents").raw("null").key("max_cents").raw("null");
    }
    if win.exact_users() {
        o.key("unique_users").int(win.unique_users());
    } else {
        o.key("unique_users").raw("null"); // only its HyperLogLog (`window_users`)
    }
    o.key("funnel");
    for (i, step) in FUNNEL.iter().enumerate() {
        o.raw(if i == 0 { "{" } else { "," }).str(step).raw(":").int(win.funnel[i] as i64);
        // a revision's may be negative
    }
    o.raw("}");
    for (sketch, key) in win.quantiles.sketches.iter().zip(SKETCH_FIELDS) {
        o.key(key).sketch(sketch);
    }
    (window_id("window", win, of, None), "window", o.done())
}

/// Rows written straight into documents (an object per row cost an allocation and a copy each) that `head`
/// starts up to the rows' key: one page while the rows fit in `PAGE_BYTES`, further pages after that, so that no
/// document outgrows Kafka's message limit. Rows come in a stable order and only grow, so a set of rows never
/// has fewer pages than it had before (next-fit packing has no anomalies) and a page once published is never
/// left stale. `row` writes one row's fields after its opening brace; `tail` writes what a page says of its own
/// rows (their positions in `rows`) after them.
fn paged<T>(
    rows: impl Iterator<Item = T>,
    hint: usize,
    head: impl Fn() -> Obj,
    row: impl Fn(&mut Obj, T),
    tail: impl Fn(&mut Obj, std::ops::Range<usize>),
) -> Vec<Obj> {
    let mut pages = Vec::new();
    let mut o = head();
    o.0.reserve(hint.min(4096) * 128);
    o.raw("[");
    let (mut from, mut at) = (0, 0);
    for r in rows {
        if at > from && o.0.len() >= PAGE_BYTES {
            o.raw("]");
            tail(&mut o, from..at);
            pages.push(std::mem::replace(&mut o, head()));
            o.raw("[");
            from = at;
        }
        o.raw(if at == from { "{" } else { ",{" });
        row(&mut o, r);
        o.raw("}");
        at += 1;
    }
    o.raw("]");
    tail(&mut o, from..at);
    pages.push(o);
    pages
}

/// A row's totals: counts per event type, revenue and purchases.
fn totals(o: &mut Obj, types: &Names, row: &Row) {
    o.raw(",\"counts\":").counts(types, &row.counts);
    o.raw(",\"revenue_cents\":").int(row.cents).raw(",\"purchases\":").int(row.purchases);
}

/// Item rows in item order, paged (see `paged`).
fn paged_rows(st: &State, map: &rustc_hash::FxHashMap<u32, Row>, head: impl Fn() -> Obj) -> Vec<Obj> {
    let mut items: Vec<(&str, &Row, u32)> = map.iter().map(|(&it, row)| (st.catalog.items.name(it), row, it)).collect();
    items.sort_unstable_by_key(|r| r.0);
    let hint = items.len();
    let row = |o: &mut Obj, (name, row, it): (&str, &Row, u32)| {
        o.raw("\"item_id\":").str(name).raw(",\"category\":").opt_str(st.category(it));
        totals(o, &st.catalog.types, row);
    };
    paged(items.into_iter(), hint, head, row, |_, _| ())
}

/// A shard's `page`: page 0 is the shard itself (`s7`), further pages are `s7.1`, `s7.2`, …
fn page_name(shard: usize, page: usize) -> String {
    if page == 0 {
        format!("s{shard}")
    } else {
        format!("s{shard}.{page}")
    }
}

/// The shards of `mask` with their items. They say nothing of finality: a window's summary does, so closing a
/// window re-sends only the shards that changed since they last went out.
fn shard_docs(st: &State, win: &Window, of: Of, v: i64, mask: u32, out: &mut Vec<Doc>) {
    for s in win.items.shards(mask) {
        let head = || {
            let mut o = window_head("window_items", win, of);
            o.key("version").int(v);
            o.key("shard").int(s).key("items");
            o
        };
        for (page, o) in paged_rows(st, &win.items.maps[s], head).into_iter().enumerate() {
            let id = window_id("window_items", win, of, Some(&page_name(s, page)));
            out.push((id, "window_items", o.done()));
        }
    }
}

/// The window's breakdown rows (`dim`, `value`, totals) in dimension then value order, stored for readers to pick
/// from (`breakdown`, not indexed: a nested document per row made the breakdowns most of what Elasticsearch
/// indexed), and every dimension's values as keywords (`values`) to find the documents holding a value. One
/// document per window and partition, not one per value; past `PAGE_BYTES` further pages, each listing the values
/// of its own rows (a search for a value finds the one page that holds its row).
fn dims_docs(st: &State, win: &Window, of: Of, is_final: bool, v: i64, out: &mut Vec<Doc>) {
    let mut rows: Vec<(usize, &str, &Row)> =
        win.dims.iter().map(|(d, value, row)| (d, st.catalog.labels[d].name(value), row)).collect();
    rows.sort_unstable_by_key(|r| (r.0, r.1));
    let head = || {
        let mut o = window_base("window_dims", win, of, is_final, v);
        o.key("breakdown");
        o
    };
    let values = |o: &mut Obj, on_page: std::ops::Range<usize>| {
        let page = &rows[on_page];
        o.key("values").raw("{");
        for (d, name) in DIMENSIONS.iter().enumerate() {
            o.raw(if d == 0 { "\"" } else { ",\"" }).raw(name).raw("\":[");
            for (n, (_, value, _)) in page.iter().filter(|r| r.0 == d).enumerate() {
                if n > 0 {
                    o.raw(",");
                }
                o.str(value);
            }
            o.raw("]");
        }
        o.raw("}");
    };
    let row = |o: &mut Obj, (d, value, row): (usize, &str, &Row)| {
        o.raw("\"dim\":").str(DIMENSIONS[d]).raw(",\"value\":").str(value);
        totals(o, &st.catalog.types, row);
    };
    let pages = paged(rows.iter().copied(), rows.len(), head, row, values);
    for (page, o) in pages.into_iter().enumerate() {
        let middle = (page > 0).then(|| format!("page{page}"));
        out.push((window_id("window_dims", win, of, middle.as_deref()), "window_dims", o.done()));
    }
}

/// The window's HyperLogLog of its users (windows from `SKETCH_USERS_FROM` on), apart from the summary so that it
/// goes out only when one of its registers rose.
fn users_doc(win: &Window, of: Of, is_final: bool, v: i64) -> Doc {
    let mut o = window_base("window_users", win, of, is_final, v);
    o.key(hll::FIELD).hll(&win.user_sketch.registers);
    (window_id("window_users", win, of, None), "window_users", o.done())
}

fn user(st: &State, id: u32, v: i64) -> Option<Doc> {
    let u = &st.users.list[id as usize];
    if u.first == ABSENT {
        return None;
    }
    let name = st.users.ids.name(id);
    let mut o = Obj::new();
    o.key("kind").str("user").key("user_id").str(name).key("partition").int(st.partition);
    o.key("first_seen").int(u.first).key("last_seen").int(u.last).key("counts").counts(&st.catalog.types, &u.counts);
    o.key("spent_cents").int(u.spent).key("purchases").int(u.purchases);
    o.key("last_item").opt_str(u.last_item.map(|i| st.catalog.items.name(i))).key("hours").raw("[");
    for (n, (hour, row)) in u.hours.iter().enumerate() {
        o.raw(if n == 0 { "{\"start\":" } else { ",{\"start\":" }).int(*hour);
        totals(&mut o, &st.catalog.types, row);
        o.raw("}");
    }
    o.raw("]").key("version").int(v);
    Some((format!("user:{name}"), "user", o.done()))
}

fn partition(st: &State, v: i64, flushed_at: i64) -> Doc {
    let mut o = Obj::new();
    o.key("kind").str("partition").key("partition").int(st.partition).key("watermark").int(st.watermark());
    o.key("max_event_ts").int(st.time.max_ts).key("next_offset").int(st.pos.next_offset);
    for (name, n) in OUTCOMES.iter().zip(st.pos.counters) {
        o.key(name).int(n);
    }
    o.key("forwarded").int(st.pos.forwarded as i64).key("repartition_offset").int(st.pos.repart_next);
    o.key("version").int(v).key("flushed_at").int(flushed_at);
    (format!("partition:{}", st.partition), "partition", o.done())
}

/// Documents for this flush: changed summaries provisionally, closing windows' summaries, breakdowns and sketches
/// as final; the breakdowns, user sketches and item shards `plan` says; the revisions of the windows corrections
/// fell in since the last flush (numbered by this flush's version, which no later flush repeats); the first
/// `users` of the user documents changed since they last went out; and the partition document when anything
/// moved.
pub fn changed_docs(st: &State, finals: &[(i64, i64)], flushed_at: i64, plan: &Plan, users: usize) -> Vec<Doc> {
    let (v, mut out) = (st.version(), Vec::new());
    let own = Of { partition: st.partition, revision: None };
    for (key, win) in &st.windows {
        let is_final = finals.contains(key);
        if is_final || win.summary.to_publish() {
            out.push(summary(st, win, own, is_final, v));
        }
        if plan.items_of(key) {
            shard_docs(st, win, own, v, win.items.change.pieces_to_publish(), &mut out);
        }
        // a closing window's breakdowns and sketch say it is final, changed or not
        let due = |c: Change| is_final || (plan.breakdowns_of(key) && c.to_publish());
        if due(win.dims.change) && !win.dims.is_empty() {
            dims_docs(st, win, own, is_final, v, &mut out);
        }
        if due(win.user_sketch.change) && !win.user_sketch.registers.is_empty() {
            out.push(users_doc(win, own, is_final, v));
        }
    }
    let revision = Of { partition: st.partition, revision: Some(Revision { version: v, at: flushed_at }) };
    for win in st.revisions.values() {
        out.push(summary(st, win, revision, true, v));
        shard_docs(st, win, revision, v, u32::MAX, &mut out); // every non-empty shard
        if !win.dims.is_empty() {
            dims_docs(st, win, revision, true, v, &mut out);
        }
        if !win.user_sketch.registers.is_empty() {
            out.push(users_doc(win, revision, true, v));
        }
    }
    out.extend(st.users.pending.iter().take(users).filter_map(|&u| user(st, u, v)));
    if plan.item_state {
        for s in st.catalog.item_state.shards(st.catalog.item_state.change.pieces_to_publish()) {
            let head = || {
                let mut o = Obj::new();
                o.key("kind").str("items").key("partition").int(st.partition).key("shard").int(s).key("items");
                o
            };
            for (page, mut o) in paged_rows(st, &st.catalog.item_state.maps[s], head).into_iter().enumerate() {
                o.key("version").int(v);
                out.push((format!("items:{}:p{}", page_name(s, page), st.partition), "items", o.done()));
            }
        }
    }
    if st.pos.dirty || !out.is_empty() {
        out.push(partition(st, v, flushed_at));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketch_fields_follow_the_sketched_names() {
        for (field, name) in SKETCH_FIELDS.iter().zip(SKETCHED) {
            assert_eq!(*field, format!("{name}_sketch"));
        }
    }
}
