//! `pulse.aggregate._core`: the aggregator's per-partition state in native code.
//!
//! Python keeps the edges (Kafka clients, transactions, rebalancing, classifying rejections); this module owns
//! the per-record hot path and everything derived from state: folding, the changelog, and the documents.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList};

// Millions of small, short-lived strings per second (event and session ids): mimalloc is much faster at that
// than glibc malloc. Only Rust's allocations use it; Python's objects keep Python's allocator. Built without
// transparent huge pages (feature `no_thp`): on a VM every first touch of a 2 MiB huge page zeroes all of it, a
// large share of the aggregator's CPU while its state grows.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub mod batch;
mod boundary;
pub mod breakdown;
pub mod change;
pub mod changelog;
mod collect;
pub mod dedup;
pub mod docs;
pub mod entities;
pub mod event;
mod footprint;
pub mod forward;
pub mod hll;
mod message;
pub mod progress;
pub mod publish;
pub mod seen;
pub mod sessions;
pub mod sketch;
pub mod state;
pub mod tables;
pub mod verify;
mod workers;

use boundary::{ChangelogRecord, Counters, Document, FlushOutput, ForwardBatch, SideRecord, StateSizes};
use event::{fast_validate, Event};
use publish::{Details, Plan};
use state::{Config, Outcome, State};

/// User documents one flush (one transaction) sends at most: a stop after a million users changed publishes
/// them in several transactions, so the documents in flight (rendered, converted, queued in the producer) stay
/// bounded.
pub const USERS_PER_FLUSH: usize = 50_000;

/// A record routed away from the aggregates, to the dead-letter or late-events topic. `source`: the input
/// partition and offset it was read from (for a record forwarded here, where it was first read).
pub(crate) struct Side {
    pub(crate) source: (i64, i64),
    pub(crate) key: PyObject,
    pub(crate) value: PyObject,
    pub(crate) reason: String,
    pub(crate) detail: String,
}

impl Side {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<SideRecord>> {
        Py::new(
            py,
            SideRecord {
                source_partition: self.source.0,
                source_offset: self.source.1,
                key: self.key,
                value: self.value,
                reason: self.reason,
                detail: self.detail,
            },
        )
    }
}

/// A valid input record whose user another partition owns, on its way to that partition's repartition topic
/// partition (`owner`), packed with the others of the flush (see `forward`).
pub(crate) struct Forward {
    pub(crate) offset: i64,
    pub(crate) record_ts: i64,
    pub(crate) owner: u32,
    pub(crate) value: PyObject,
    pub(crate) correction: bool, // its source judged it a correction
}

/// A changelog record as a restore is given it: (offset, key, value), a tombstone's value None. The bytes stay
/// Python's (no copy), and can be read off the GIL.
type Logged = (i64, PyBackedBytes, Option<PyBackedBytes>);

fn restore_logged(st: &mut State, records: &[Logged]) -> Result<usize, String> {
    changelog::restore(st, records.iter().map(|(offset, key, value)| (*offset, &key[..], value.as_deref())))
}

/// A flush's changelog records and documents, before they become Python objects.
struct Rendered {
    records: Vec<changelog::Record>,
    docs: Vec<docs::Doc>,
    marker: Option<state::Mark>, // the source watermark, for every other partition
}

/// One input partition's aggregation state (see `pulse.aggregate.partition` for the Python side of the protocol).
#[pyclass(unsendable, module = "pulse.aggregate._core")]
pub struct Partition {
    pub(crate) st: batch::StateBox, // shared with the routing thread (see `batch`)
    pub(crate) dead: Vec<Side>,
    pub(crate) late: Vec<Side>,
    pub(crate) forward: Vec<Forward>,
    finals: Vec<(i64, i64)>,
    plan: Plan,             // the pending documents the last flush rendered
    flushed_at: i64,        // the last flush's wall clock
    users_out: usize,       // user documents the last flush rendered (the first of the pending ones)
    pub(crate) busy: usize, // batches in flight that route into this partition (see `batch`)
}

impl Partition {
    /// Err while a batch that routes into this partition is in flight: its state is the routing thread's.
    fn ready(&self) -> PyResult<()> {
        if self.busy > 0 {
            return Err(PyRuntimeError::new_err(
                "a batch is still being routed: call settle() before using partitions",
            ));
        }
        Ok(())
    }

    /// Route one valid input record; `key` is fetched only for a late event (it goes to the late-events topic).
    fn route(
        &mut self,
        offset: i64,
        key: impl FnOnce() -> PyResult<PyObject>,
        value: PyObject,
        e: &Event,
        record_ts: i64,
    ) -> PyResult<()> {
        self.st.begin(offset);
        let source = (self.st.partition as i64, offset);
        match self.st.accept(e, record_ts) {
            Outcome::Late(detail) => {
                self.late.push(Side { source, key: key()?, value, reason: state::BEYOND_HORIZON.into(), detail })
            }
            Outcome::Forward { owner, correction } => {
                self.forward.push(Forward { offset, record_ts, owner, value, correction })
            }
            Outcome::Accepted | Outcome::Duplicate => {}
        }
        Ok(())
    }

    fn remember_owned(&mut self, event_id: &str, user_id: &str, ts: i64, horizon: i64) {
        if self.st.owner_elsewhere(user_id).is_none() {
            self.st.remember(event_id, ts, horizon);
        }
    }

    /// The Rust half of a flush (no Python objects, so it can run off the GIL): None when nothing changed.
    /// The first `users` pending user documents (oldest change first, at most `USERS_PER_FLUSH`) go out; only the
    /// flush that sends the last of them marks the users published (a crash before it re-publishes the earlier
    /// ones, which versions make harmless).
    fn render(&mut self, details: Details, users: usize, flushed_at: i64) -> Option<Rendered> {
        let st = &mut self.st;
        st.expire();
        let finals = st.final_windows();
        let plan = publish::plan(st, &finals, details, flushed_at);
        let delay = st.cfg.user_max_delay;
        let overdue = st.users.overdue(flushed_at, delay);
        let out = st.users.pending.len().min(users.max(overdue)).min(USERS_PER_FLUSH);
        let all_users = out > 0 && out == st.users.pending.len();
        let mut records = changelog::changed_records(st, &finals, all_users);
        let changed = records.len() > changelog::meta_records(st);
        // users within the budget ride along with a flush that happens anyway; overdue ones, or all of them when
        // everything is published, make one happen (else every timed flush of a quiet partition would commit)
        let users_due = out > 0 && (overdue > 0 || details == Details::All);
        let heavy = users_due || plan.publishes_any();
        let busy = st.pos.dirty || !finals.is_empty() || changed || heavy;
        let docs = if busy { docs::changed_docs(st, &finals, flushed_at, &plan, out) } else { Vec::new() };
        if !docs.is_empty() {
            // every pending document went out on a details flush: a restore owes none of those logged before
            let all_items = plan.complete && details != Details::Closing;
            records.extend(changelog::published_markers(all_items, all_users));
        }
        self.finals = finals;
        self.plan = plan;
        self.flushed_at = flushed_at;
        self.users_out = if busy { out } else { 0 };
        let marker = st.marker_due();
        let quiet = docs.is_empty() && !changed && !st.pos.dirty && marker.is_none();
        if quiet && self.dead.is_empty() && self.late.is_empty() && self.forward.is_empty() {
            return None;
        }
        Some(Rendered { records, docs, marker })
    }

    /// The Python half of a flush: the rendered output plus the side outputs, as `flush` returns them.
    fn output(&mut self, py: Python<'_>, rendered: Option<Rendered>) -> PyResult<Option<Py<FlushOutput>>> {
        let Some(Rendered { records, docs, marker }) = rendered else { return Ok(None) };
        let recs = PyList::empty(py);
        for (k, v) in records {
            let value = v.map(|v| PyBytes::new(py, &v).unbind());
            recs.append(Py::new(py, ChangelogRecord { key: PyBytes::new(py, &k).unbind(), value })?)?;
        }
        let documents = PyList::empty(py);
        for (id, kind, json) in docs {
            documents.append(Py::new(py, Document { id, kind, value: PyBytes::new(py, &json).unbind() })?)?;
        }
        let dead = PyList::empty(py);
        for side in self.dead.drain(..) {
            dead.append(side.into_py(py)?)?;
        }
        let late = PyList::empty(py);
        for side in self.late.drain(..) {
            late.append(side.into_py(py)?)?;
        }
        let forward = self.batches(py, marker)?;
        let out = FlushOutput {
            records: recs.unbind(),
            documents: documents.unbind(),
            dead: dead.unbind(),
            late: late.unbind(),
            forward: forward.unbind(),
        };
        Ok(Some(Py::new(py, out)?))
    }

    /// The flush's forwarded records, one batch per owner with the source watermark after them; every other
    /// partition gets one (perhaps of no records) when the watermark moved (`marker`).
    fn batches<'py>(&mut self, py: Python<'py>, marker: Option<state::Mark>) -> PyResult<Bound<'py, PyList>> {
        let st = &self.st;
        let mut by_owner: std::collections::BTreeMap<u32, Vec<Forward>> = Default::default();
        if marker.is_some() {
            by_owner.extend((0..st.cfg.partitions).filter(|&q| q != st.partition as u32).map(|q| (q, Vec::new())));
        }
        for f in self.forward.drain(..) {
            by_owner.entry(f.owner).or_default().push(f);
        }
        let mark = st.source();
        let out = PyList::empty(py);
        for (owner, records) in by_owner {
            let bytes: Vec<Bound<'_, PyBytes>> =
                records.iter().map(|f| f.value.bind(py).downcast::<PyBytes>().cloned()).collect::<Result<_, _>>()?;
            // pages well under Kafka's message limit; only the last carries the watermark, which holds for all
            let mut pages: Vec<std::ops::Range<usize>> = Vec::new();
            let (mut from, mut size) = (0, 0);
            for (i, b) in bytes.iter().enumerate() {
                if i > from && size + b.as_bytes().len() > state::PAGE_BYTES {
                    pages.push(from..i);
                    (from, size) = (i, 0);
                }
                size += b.as_bytes().len() + 24;
            }
            pages.push(from..bytes.len());
            let last = pages.len() - 1;
            for (n, page) in pages.into_iter().enumerate() {
                let value = (!page.is_empty()).then(|| {
                    let items = records[page.clone()].iter().zip(&bytes[page.clone()]);
                    PyBytes::new(
                        py,
                        &forward::pack(items.map(|(f, b)| (f.offset, f.record_ts, b.as_bytes(), f.correction))),
                    )
                    .unbind()
                });
                let batch = ForwardBatch {
                    owner,
                    value,
                    records: page.len(),
                    offset: st.pos.next_offset,
                    watermark: (n == last).then_some(mark.value),
                    idle: mark.idle,
                };
                out.append(Py::new(py, batch)?)?;
            }
        }
        Ok(out)
    }

    /// The fast path: route `value` if it is certainly valid; false (nothing changed) when Python must decide.
    fn fast_route(
        &mut self,
        offset: i64,
        key: impl FnOnce() -> PyResult<PyObject>,
        value: &Bound<'_, PyAny>,
        record_ts: i64,
    ) -> PyResult<bool> {
        let Ok(bytes) = value.downcast::<PyBytes>() else { return Ok(false) };
        let Some(e) = fast_validate(bytes.as_bytes(), record_ts) else { return Ok(false) };
        self.route(offset, key, value.clone().unbind(), &e, record_ts)?;
        Ok(true)
    }
}

#[pymethods]
impl Partition {
    #[new]
    #[pyo3(signature = (partition, window_sizes, grace_ms, correct_within_ms, session_timeout_ms, compact_after = 50_000,
                        partitions = 0, forward_wait_ms = 300_000, user_max_delay_ms = 60_000, ids_dir = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        partition: i32,
        window_sizes: Vec<i64>,
        grace_ms: i64,
        correct_within_ms: i64,
        session_timeout_ms: i64,
        compact_after: u64,
        partitions: u32,
        forward_wait_ms: i64,
        user_max_delay_ms: i64,
        ids_dir: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        if window_sizes.iter().any(|&s| s <= 0) {
            return Err(PyValueError::new_err("window sizes must be positive"));
        }
        let cfg = Config {
            items_from: publish::items_from(&window_sizes),
            layout: seen::Layout::new(&window_sizes),
            sizes: window_sizes,
            grace: grace_ms,
            horizon: correct_within_ms,
            session_timeout: session_timeout_ms,
            compact_after,
            partitions,
            forward_wait: forward_wait_ms,
            user_max_delay: user_max_delay_ms,
            ids_dir: ids_dir.unwrap_or_else(|| dedup::scratch_dir(&format!("p{partition}"))),
        };
        Ok(Partition {
            st: batch::StateBox::new(State::new(partition, cfg)),
            dead: Vec::new(),
            late: Vec::new(),
            forward: Vec::new(),
            finals: Vec::new(),
            plan: Plan::default(),
            flushed_at: 0,
            users_out: 0,
            busy: 0,
        })
    }

    /// True while a batch that routes into this partition is in flight (other methods refuse until `settle`).
    #[getter]
    fn busy(&self) -> bool {
        self.busy > 0
    }

    #[getter]
    fn partition(&self) -> PyResult<i32> {
        self.ready()?;
        Ok(self.st.partition)
    }
    #[getter]
    fn next_offset(&self) -> PyResult<i64> {
        self.ready()?;
        Ok(self.st.pos.next_offset)
    }
    /// The owner watermark: the smallest of its sources' (see `EventClock`); windows up to it are final.
    #[getter]
    fn watermark(&self) -> PyResult<i64> {
        self.ready()?;
        Ok(self.st.watermark())
    }
    /// The watermark of the partition's own input, as the source that judges its records on time or late.
    #[getter]
    fn source_watermark(&self) -> PyResult<i64> {
        self.ready()?;
        Ok(self.st.source().value)
    }
    /// Every partition's source watermark as this partition last received it, with whether it was idle (its own
    /// slot as it is now); empty for a topic of one partition.
    #[getter]
    fn marks(&self) -> PyResult<Vec<(i64, bool)>> {
        self.ready()?;
        let own = self.st.source();
        let slot = |(q, m): (usize, &state::Mark)| if q == self.st.partition as usize { own } else { *m };
        Ok(self.st.time.marks.iter().enumerate().map(slot).map(|m| (m.value, m.idle)).collect())
    }
    /// The idle rule said the partition's input is idle, and no record was read since.
    #[getter]
    fn idle(&self) -> PyResult<bool> {
        self.ready()?;
        Ok(self.st.time.idle)
    }
    /// The largest event time accepted so far (None before the first).
    #[getter]
    fn max_event_ts(&self) -> PyResult<Option<i64>> {
        self.ready()?;
        Ok((self.st.time.max_ts != state::NEVER).then_some(self.st.time.max_ts))
    }
    /// Valid input records of this partition forwarded to the partition that owns their user (by Kafka's default
    /// partitioner, murmur2 of the user id): input not keyed by user id. Always 0 when `partitions` was not given.
    #[getter]
    fn forwarded(&self) -> PyResult<u64> {
        self.ready()?;
        Ok(self.st.pos.forwarded)
    }
    /// The next record of the repartition topic's partition to take (records forwarded here).
    #[getter]
    fn repartition_offset(&self) -> PyResult<i64> {
        self.ready()?;
        Ok(self.st.pos.repart_next)
    }
    /// The documents' version: the position in both inputs (input and repartition topic) as one growing number.
    #[getter]
    fn version(&self) -> PyResult<i64> {
        self.ready()?;
        Ok(self.st.version())
    }
    /// Input records routed so far by this object (changes whenever a batch read the partition's own input).
    #[getter]
    fn processed(&self) -> PyResult<u64> {
        self.ready()?;
        Ok(self.st.pos.processed)
    }
    /// Where this partition's records ended: every record lands in exactly one outcome.
    #[getter]
    fn counters(&self) -> PyResult<Counters> {
        self.ready()?;
        Ok(Counters::from(self.st.pos.counters))
    }
    /// The restored changelog held the event ids within the horizon (format 3 on): restore need not re-read the
    /// input for them.
    #[getter]
    fn ids_logged(&self) -> PyResult<bool> {
        self.ready()?;
        Ok(self.st.dedup.from_log)
    }

    /// Entries of the live state: open windows, users, sessions, remembered event ids.
    #[getter]
    fn sizes(&self) -> PyResult<StateSizes> {
        self.ready()?;
        let st = &self.st;
        Ok(StateSizes {
            windows: st.windows.len(),
            users: st.users.list.len(),
            sessions: st.sessions.map.len(),
            event_ids: st.dedup.len(),
        })
    }

    /// Approximate heap bytes of the live state (collection capacities and interned strings; a lower bound).
    #[getter]
    fn state_bytes(&self) -> PyResult<usize> {
        self.ready()?;
        Ok(self.st.footprint())
    }

    /// Route one record on the fast path; False when Python must validate it (then `accept` or `reject`).
    fn process(&mut self, offset: i64, key: PyObject, value: Bound<'_, PyAny>, record_ts: i64) -> PyResult<bool> {
        self.ready()?;
        self.fast_route(offset, || Ok(key), &value, record_ts)
    }

    /// Route one record that Python's validator accepted (`event`: a `pulse.events.schema.Event`).
    fn accept(
        &mut self,
        offset: i64,
        key: PyObject,
        value: PyObject,
        record_ts: i64,
        event: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.ready()?;
        let e = boundary::event_from(event)?;
        self.route(offset, || Ok(key), value, &e, record_ts)
    }

    /// Move the input position to `offset`, past records the consumer skipped without returning them (transaction
    /// markers, aborted transactions): only ever forward, and only to where the consumer has really read.
    fn skip_to(&mut self, offset: i64) -> PyResult<()> {
        self.ready()?;
        self.st.skip_to(offset);
        Ok(())
    }

    /// Dead-letter one record that Python's validator rejected (with its typed reason).
    fn reject(&mut self, offset: i64, key: PyObject, value: PyObject, reason: String, detail: String) -> PyResult<()> {
        self.ready()?;
        self.st.begin(offset);
        self.st.rejected();
        self.dead.push(Side { source: (self.st.partition as i64, offset), key, value, reason, detail });
        Ok(())
    }

    /// Restore: remember a consumed record's event id for duplicate detection if its time is within `horizon`
    /// and this partition owns its user (records of other users were forwarded, never checked here).
    /// False when Python must validate it (then `remember_id` if valid).
    fn remember(&mut self, value: &[u8], record_ts: i64, horizon: i64) -> PyResult<bool> {
        self.ready()?;
        Ok(match fast_validate(value, record_ts) {
            Some(e) => {
                self.remember_owned(&e.event_id, &e.user_id, e.ts, horizon);
                true
            }
            None => false,
        })
    }

    fn remember_id(&mut self, event_id: &str, user_id: &str, ts: i64, horizon: i64) -> PyResult<()> {
        self.ready()?;
        self.remember_owned(event_id, user_id, ts, horizon);
        Ok(())
    }

    /// The largest end of an open window that is not final yet but would be with the watermark at `target`:
    /// how far an idle partition's watermark must move to close what it holds (None: nothing to close).
    fn idle_floor(&self, target: i64) -> PyResult<Option<i64>> {
        self.ready()?;
        Ok(self.st.closable_until(target))
    }

    /// Idle partitions: raise the source watermark to `value` by wall clock, and say the input is `idle` until its
    /// next record (recorded in the changelog, and carried to the other partitions); True if anything changed.
    #[pyo3(signature = (value, idle = false))]
    fn advance_to(&mut self, value: i64, idle: bool) -> PyResult<bool> {
        self.ready()?;
        Ok(self.st.advance_to(value, idle))
    }

    /// A source whose watermark has not moved for long is treated as idle here until its next one (see
    /// `State::stalled`); True if anything changed.
    fn stalled(&mut self, source: usize) -> PyResult<bool> {
        self.ready()?;
        Ok(self.st.stalled(source))
    }

    /// Users whose documents are behind their state.
    fn pending_users(&self) -> PyResult<usize> {
        self.ready()?;
        Ok(self.st.users.pending.len())
    }

    /// One flush's output, or None when nothing changed. `details`: which item shards to publish; `users`: how
    /// many of the pending user documents to publish, oldest change first. Call `handed_over` once they are handed
    /// to the transaction.
    fn flush(
        &mut self,
        py: Python<'_>,
        details: Details,
        users: usize,
        flushed_at: i64,
    ) -> PyResult<Option<Py<FlushOutput>>> {
        self.ready()?;
        let rendered = self.render(details, users, flushed_at);
        self.output(py, rendered)
    }

    /// Once the flush is handed to its transaction: evict final windows and clear what was written. A
    /// transaction that then fails reloads the partition from the changelog, so nothing cleared here is lost.
    fn handed_over(&mut self) -> PyResult<()> {
        self.ready()?;
        let finals = std::mem::take(&mut self.finals);
        let plan = std::mem::take(&mut self.plan);
        let out = std::mem::take(&mut self.users_out);
        self.st.handed_over(&finals, &plan, out, self.flushed_at);
        Ok(())
    }

    /// Rebuild from changelog records `(offset, key, value)` on an empty state; returns the live keys.
    fn restore(&mut self, records: Vec<Logged>) -> PyResult<usize> {
        self.ready()?;
        restore_logged(&mut self.st, &records).map_err(PyValueError::new_err)
    }
}

/// `work` on each partition with its own argument (`args[i]` is `partitions[i]`'s), in parallel without the GIL,
/// then `finish` on each with its result, in order, with the GIL. `mismatch`: the error when the counts differ.
fn each_partition<'py, A: Sync, R: Send, T>(
    py: Python<'py>,
    partitions: &[Bound<'py, Partition>],
    args: &[A],
    mismatch: &str,
    work: impl Fn(&mut Partition, &A) -> R + Sync,
    mut finish: impl FnMut(&mut Partition, R) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    if args.len() != partitions.len() {
        return Err(PyValueError::new_err(mismatch.to_string()));
    }
    let mut refs: Vec<PyRefMut<'py, Partition>> = partitions.iter().map(|p| p.borrow_mut()).collect();
    for part in &refs {
        part.ready()?;
    }
    let mut parts: Vec<&mut Partition> = refs.iter_mut().map(|r| &mut **r).collect();
    let results: Vec<R> = py.allow_threads(|| batch::each_in_parallel(&mut parts, args, |part, arg| work(part, arg)));
    parts.into_iter().zip(results).map(|(part, r)| finish(part, r)).collect()
}

/// Flush several partitions at once: their documents are rendered in parallel without the GIL (a flush after a
/// backlog renders megabytes of JSON), then converted in order. `users[i]` is partition i's `users` count; the
/// result lines up with `partitions` (None: nothing changed), as `Partition.flush` returns for each.
#[pyfunction]
fn flush_all<'py>(
    py: Python<'py>,
    partitions: Vec<Bound<'py, Partition>>,
    details: Details,
    users: Vec<usize>,
    flushed_at: i64,
) -> PyResult<Vec<Option<Py<FlushOutput>>>> {
    let render = |part: &mut Partition, &users: &usize| part.render(details, users, flushed_at);
    each_partition(py, &partitions, &users, "one users count per partition", render, |part, r| part.output(py, r))
}

/// Restore several partitions at once, each as `Partition.restore` with its own changelog records (`logs[i]` is
/// `partitions[i]`'s): decoding a changelog is the restore's work, and partitions decode in parallel without the
/// GIL. Returns each one's live keys; a changelog that cannot be read raises ValueError naming its partition.
#[pyfunction]
fn restore_all<'py>(
    py: Python<'py>,
    partitions: Vec<Bound<'py, Partition>>,
    logs: Vec<Vec<Logged>>,
) -> PyResult<Vec<usize>> {
    let restore = |part: &mut Partition, log: &Vec<Logged>| {
        restore_logged(&mut part.st, log).map_err(|e| format!("partition {}: {e}", part.st.partition))
    };
    each_partition(py, &partitions, &logs, "one changelog per partition", restore, |_, r| {
        r.map_err(PyValueError::new_err)
    })
}

/// A window size as document ids spell it: 10000 -> "10s" (the shortest exact unit).
#[pyfunction]
fn label(size_ms: i64) -> String {
    docs::label(size_ms)
}

/// The partition Kafka's default partitioner (murmur2, as Java clients) gives a user id among `partitions`.
#[pyfunction]
fn user_partition(user: &str, partitions: u32) -> u32 {
    state::user_partition(user, partitions)
}

/// The item shard of an item id (CRC-32 mod 32), as the documents use.
#[pyfunction]
fn item_shard(item: &str) -> usize {
    state::item_shard(item)
}

/// The `qs` quantiles of a sketch given as its zero count and (bin, count) pairs (as documents carry it, after
/// readers merged partitions by adding counts per bin); None for each when it is empty.
#[pyfunction]
fn sketch_quantiles(zeros: u64, bins: Vec<(i32, u64)>, qs: Vec<f64>) -> Vec<Option<f64>> {
    let mut s = sketch::Sketch { zeros, ..Default::default() };
    for (i, n) in bins {
        *s.bins.entry(i).or_default() += n;
    }
    qs.into_iter().map(|q| s.quantile(q)).collect()
}

/// The distinct count a HyperLogLog's registers estimate (after readers merged them by maximum).
#[pyfunction]
fn hll_estimate(registers: &[u8]) -> f64 {
    hll::estimate(registers)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Partition>()?;
    m.add_class::<FlushOutput>()?;
    m.add_class::<ChangelogRecord>()?;
    m.add_class::<Document>()?;
    m.add_class::<SideRecord>()?;
    m.add_class::<ForwardBatch>()?;
    m.add_class::<Counters>()?;
    m.add_class::<StateSizes>()?;
    m.add_class::<collect::Admitted>()?;
    m.add_function(wrap_pyfunction!(collect::admit_events, m)?)?;
    m.add_class::<Details>()?;
    verify::register(m)?;
    m.add_class::<dedup::measure::IdsMeasured>()?;
    m.add_function(wrap_pyfunction!(dedup::measure::measure_ids, m)?)?;
    m.add("ITEMS_FROM_MS", publish::ITEMS_FROM)?;
    m.add_function(wrap_pyfunction!(batch::process_batch, m)?)?;
    m.add_function(wrap_pyfunction!(batch::settle, m)?)?;
    m.add_function(wrap_pyfunction!(flush_all, m)?)?;
    m.add_function(wrap_pyfunction!(restore_all, m)?)?;
    m.add_function(wrap_pyfunction!(item_shard, m)?)?;
    m.add_function(wrap_pyfunction!(user_partition, m)?)?;
    m.add_function(wrap_pyfunction!(label, m)?)?;
    m.add("ITEM_SHARDS", state::ITEM_SHARDS)?;
    m.add("FUNNEL", state::FUNNEL.to_vec())?;
    m.add("SEAL_AT", progress::SEAL_AT)?;
    m.add("PAGE_BYTES", state::PAGE_BYTES)?;
    m.add("PARALLELISM", batch::threads())?;
    m.add("DIMENSIONS", breakdown::DIMENSIONS.to_vec())?;
    m.add("SKETCHED", sketch::SKETCHED.to_vec())?;
    m.add("QUANTILES", sketch::QUANTILES.to_vec())?;
    m.add("SKETCH_ACCURACY", sketch::ACCURACY)?;
    m.add("HLL_PRECISION", hll::PRECISION)?;
    m.add("USERS_SKETCH", hll::FIELD)?;
    m.add("EXACT_USERS_UP_TO_MS", hll::EXACT_USERS_UP_TO)?;
    m.add("SKETCH_USERS_FROM_MS", hll::SKETCH_USERS_FROM)?;
    m.add_function(wrap_pyfunction!(hll_estimate, m)?)?;
    m.add_function(wrap_pyfunction!(sketch_quantiles, m)?)?;
    m.add("SOURCE_PARTITION_HEADER", message::SOURCE_PARTITION)?;
    m.add("SOURCE_OFFSET_HEADER", message::SOURCE_OFFSET)?;
    m.add("WATERMARK_HEADER", message::WATERMARK)?;
    m.add("IDLE_HEADER", message::IDLE)?;
    Ok(())
}
