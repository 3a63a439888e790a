//! Routing consumed batches on background threads, without the GIL, while Python consumes the next one.
//!
//! `process_batch` reads the messages (partition, offset, timestamp, value) with the GIL and hands the rest to
//! a routing thread: (1) parse and fast-validate every value, in parallel chunks (stateless); (2) let the
//! contract's Python validator decide the few records the fast path could not (one GIL acquisition per batch);
//! (3) route each partition's records in offset order into its own state, one thread per group of partitions.
//! Batches form a pipeline: the reader stays up to two batches ahead, each batch is parsed as soon as it is read,
//! and routes into a partition only once the earlier batches have routed into it (a `Gate` per batch and
//! partition), so a batch that starts the next partition routes it alongside the previous partition's last
//! batches (a consumer reads a backlog partition after partition). `process_batch` settles the oldest batch,
//! adding its side outputs (dead letters, late events), which live outside the states. `settle` waits for every batch in flight. Until a batch is settled,
//! the partitions it routes into belong to the routing threads and their methods refuse to run
//! (`Partition::busy`); other partitions stay usable (the engine publishes a partition read to its end while the
//! next ones are routed). Partitions share nothing, so this makes the same decisions as routing record by
//! record, in the same order per partition.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crate::event::{fast_validate, Event};
use crate::message;
use crate::progress::Mark;
use crate::state::{Outcome, State, BEYOND_HORIZON};
use crate::{forward, workers, Forward, Partition, Side};

/// Below this many records per thread, spawning threads costs more than it saves (a live stream's batches).
const PER_THREAD_MIN: usize = 1_000;

pub(crate) fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(8))
}

/// `work` on every unit, one worker thread each; results in unit order.
fn in_threads<U: Send, R: Send>(units: Vec<U>, work: impl Fn(U) -> R + Sync) -> Vec<R> {
    workers::each(units, work)
}

/// `work(item, arg)` for every item, spread over the cores (items are whole partitions: their work is
/// independent); results in item order.
pub(crate) fn each_in_parallel<T: Send, A: Sync, R: Send>(
    items: &mut [T],
    args: &[A],
    work: impl Fn(&mut T, &A) -> R + Sync,
) -> Vec<R> {
    let n = threads().min(items.len()).max(1);
    if n == 1 {
        return items.iter_mut().zip(args).map(|(item, arg)| work(item, arg)).collect();
    }
    let size = items.len().div_ceil(n);
    let units: Vec<_> = items.chunks_mut(size).zip(args.chunks(size)).collect();
    in_threads(units, |(chunk, args)| chunk.iter_mut().zip(args).map(|(item, arg)| work(item, arg)).collect::<Vec<R>>())
        .into_iter()
        .flatten()
        .collect()
}

/// What a record is, once validated. Most records are valid, so the event stays inline: boxing it would
/// allocate once per record.
#[allow(clippy::large_enum_variant)]
enum Verdict<'a> {
    Valid(Event<'a>),
    Invalid { reason: String, detail: String },
    Open, // the fast path left it to the contract's validator (phase 3)
}

/// A record of an owned partition, as phase 1 read it.
struct Rec<'a> {
    slot: usize,
    offset: i64,
    ts: i64,
    stream: i32,           // the input partition it was first read from
    raw: Option<&'a [u8]>, // None: not bytes (a tombstone), so the Python validator decides
    mark: Option<Mark>,    // a watermark marker from partition `stream`, not a record
    sub: u32,              // its place in a repartition topic record (a batch: its records, then the marker)
    correction: bool,      // a forwarded record its source judged a correction
}

/// Where phase 1 found a record (see `Rec`); `span`: a forwarded record's bytes inside its batch's value.
#[derive(Clone, Copy)]
struct Meta {
    slot: usize,
    offset: i64,
    ts: i64,
    stream: i32,
    mark: Option<Mark>,
    sub: u32,
    span: Option<(usize, usize)>,
    correction: bool,
}

/// Where phase 4 sent a record other than into the state.
enum Route {
    Late(String),         // detail
    Dead(String, String), // reason, detail
    Forward { owner: u32, correction: bool },
}

/// A batch's side outputs for one partition, by record index.
type Routed = Vec<(usize, Route)>;

/// Phase 2: fast-validate every record, in parallel chunks when the batch is large, straight into the one
/// verdict per record that phase 4 reads (a fresh vector per step faulted in ~80 MB per 300k records).
fn parse_all<'a>(recs: &[Rec<'a>]) -> Vec<Verdict<'a>> {
    let parse = |(out, recs): (&mut [Verdict<'a>], &[Rec<'a>])| {
        for (verdict, r) in out.iter_mut().zip(recs) {
            if let Some(e) = r.raw.and_then(|raw| fast_validate(raw, r.ts)) {
                *verdict = Verdict::Valid(e);
            }
        }
    };
    let mut verdicts = spare_verdicts(recs.len());
    verdicts.resize_with(recs.len(), || Verdict::Open);
    let n = threads().min(recs.len() / PER_THREAD_MIN).max(1);
    if n == 1 {
        parse((&mut verdicts, recs));
    } else {
        let size = recs.len().div_ceil(n);
        in_threads(verdicts.chunks_mut(size).zip(recs.chunks(size)).collect(), parse);
    }
    verdicts
}

/// Verdict vectors kept from one batch for the next: a fresh vector of several megabytes per batch costs a page
/// fault per 4 KiB page on first touch.
static SPARE: Mutex<Vec<Vec<Verdict<'static>>>> = Mutex::new(Vec::new());

fn spare_verdicts<'a>(len: usize) -> Vec<Verdict<'a>> {
    let mut verdicts: Vec<Verdict<'a>> = SPARE.lock().expect("spare lock").pop().unwrap_or_default();
    verdicts.reserve(len);
    verdicts
}

fn recycle(mut verdicts: Vec<Verdict<'_>>) {
    verdicts.clear();
    // an empty vector: in-place collection keeps its allocation under the 'static lifetime
    let empty: Vec<Verdict<'static>> = verdicts.into_iter().map(|_| -> Verdict<'static> { unreachable!() }).collect();
    let mut spare = SPARE.lock().expect("spare lock");
    if spare.len() < 4 {
        spare.push(empty);
    }
}

/// Route one partition's records (`indices`, in batch order) into its state. Returns its side outputs. Records
/// of the repartition topic (`forwarded`) are taken here whoever their user: the partition that forwarded them
/// already chose this one, and judged them on time; its watermark markers move this partition's owner clock.
fn route_partition(
    st: &mut State,
    recs: &[Rec<'_>],
    verdicts: &[Verdict<'_>],
    indices: &[usize],
    forwarded: bool,
) -> Routed {
    let mut out = Vec::new();
    let mut inside = false; // the current repartition topic record is already inside the state
    for &i in indices {
        let r = &recs[i];
        if forwarded {
            if r.sub == 0 {
                inside = r.offset < st.pos.repart_next;
                if !inside {
                    st.begin_forwarded(r.offset);
                }
            }
            if inside {
                continue;
            }
            if let Some(mark) = r.mark {
                st.marked(r.stream as i64, mark);
                continue;
            }
        } else {
            if r.offset < st.pos.next_offset {
                continue;
            }
            st.begin(r.offset);
        }
        match &verdicts[i] {
            Verdict::Valid(e) => match if forwarded { st.accept_here(e, r.correction) } else { st.accept(e, r.ts) } {
                Outcome::Late(detail) => out.push((i, Route::Late(detail))),
                Outcome::Forward { owner, correction } => out.push((i, Route::Forward { owner, correction })),
                Outcome::Accepted | Outcome::Duplicate => {}
            },
            Verdict::Invalid { reason, detail } => {
                st.rejected();
                out.push((i, Route::Dead(reason.clone(), detail.clone())));
            }
            Verdict::Open => unreachable!("phase 3 decides every open record before routing"),
        }
    }
    out
}

/// One partition's part of phase 4: wait for the earlier batches' records of the same partition (`after`),
/// route, and open this batch's gate for it (`done`). None if an earlier batch failed for this partition.
struct Lane<'s> {
    slot: usize,
    state: &'s mut State,
    after: Option<Arc<Gate>>,
    done: OpenOnDrop,
}

/// Phase 4: partitions route independently, each after its own records of earlier batches, so a batch that
/// starts the next partition routes it while the previous partition's batches are still routing (a consumer
/// reads a backlog partition after partition). One thread per partition when the batch is large enough.
fn route_all(
    lanes: Vec<Lane<'_>>,
    groups: &[Vec<usize>],
    recs: &[Rec<'_>],
    verdicts: &[Verdict<'_>],
    forwarded: bool,
) -> JobOut {
    let slots = groups.len();
    let route = |mut lane: Lane<'_>| -> Option<(usize, Routed)> {
        if !lane.after.take().is_none_or(|gate| gate.wait()) {
            return None; // `done` opens as failed: later batches skip this partition too
        }
        let out = route_partition(lane.state, recs, verdicts, &groups[lane.slot], forwarded);
        lane.done.1 = true;
        Some((lane.slot, out))
    };
    let parallel = lanes.len() > 1 && recs.len() / lanes.len() >= PER_THREAD_MIN;
    let done: Vec<_> = if parallel { in_threads(lanes, route) } else { lanes.into_iter().map(route).collect() };
    let mut routed: Vec<Routed> = (0..slots).map(|_| Vec::new()).collect();
    let mut failed = false;
    for out in done {
        match out {
            Some((slot, out)) => routed[slot] = out,
            None => failed = true,
        }
    }
    if failed {
        return Err(PyRuntimeError::new_err("the previous batch was not routed"));
    }
    Ok(routed)
}

/// Phase 3: the contract's validator decides a record the fast path left open; `verdict(value, record_ts)`
/// returns a `Rejection` (reason, detail) or the accepted `Event`.
fn decide(verdict: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, ts: i64) -> PyResult<Verdict<'static>> {
    let out = verdict.call1((value, ts))?;
    let py = out.py();
    if out.hasattr(intern!(py, "reason"))? {
        let reason: String = out.getattr(intern!(py, "reason"))?.extract()?;
        let detail: String = out.getattr(intern!(py, "detail"))?.extract()?;
        return Ok(Verdict::Invalid { reason, detail });
    }
    Ok(Verdict::Valid(crate::boundary::event_from(&out)?))
}

/// A partition's state in its own allocation, so that the routing thread can change it through a pointer while
/// Python holds the `Partition` (to add the previous batch's side outputs, which live outside the state). Python
/// reaches the state only through `Partition` methods, which refuse to run while a batch that routes into it is
/// in flight (`Partition::busy`).
pub(crate) struct StateBox(NonNull<State>);
// SAFETY: it owns its state as a `Box` would
unsafe impl Send for StateBox {}

impl StateBox {
    pub(crate) fn new(st: State) -> Self {
        StateBox(NonNull::from(Box::leak(Box::new(st))))
    }
    fn ptr(&self) -> StatePtr {
        StatePtr(self.0.as_ptr())
    }
}

impl Deref for StateBox {
    type Target = State;
    fn deref(&self) -> &State {
        // SAFETY: allocated by `new`, freed only by `drop`; no routing thread uses it (`busy` was checked)
        unsafe { self.0.as_ref() }
    }
}

impl DerefMut for StateBox {
    fn deref_mut(&mut self) -> &mut State {
        // SAFETY: as `deref`
        unsafe { self.0.as_mut() }
    }
}

impl Drop for StateBox {
    fn drop(&mut self) {
        // SAFETY: allocated by `new`; a job in flight keeps its `Partition`, hence this box, alive
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A `*mut State` the routing thread may use: its `Partition` is kept alive by the job and refuses every call
/// (`busy`) until the job is settled; one job at a time routes into a partition (see `Gate`).
struct StatePtr(*mut State);
unsafe impl Send for StatePtr {}

/// Opens when a job has finished routing into a partition (`Some(true)`) or given up (`Some(false)`): the next
/// batch's job parses meanwhile and routes into that partition only once the gate is open, and not at all after
/// a failure (its records would skip the failed batch's).
#[derive(Default)]
struct Gate {
    state: Mutex<Option<bool>>,
    opened: Condvar,
}

impl Gate {
    fn open(&self, routed: bool) {
        *self.state.lock().expect("gate lock") = Some(routed);
        self.opened.notify_all();
    }
    fn wait(&self) -> bool {
        let mut state = self.state.lock().expect("gate lock");
        loop {
            if let Some(routed) = *state {
                return routed;
            }
            state = self.opened.wait(state).expect("gate lock");
        }
    }
}

/// Opens the gate as failed unless the job reached its end (an error or a panic on the way).
struct OpenOnDrop(Arc<Gate>, bool);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open(self.1);
    }
}

/// A value's bytes, kept alive by the job's reference to the value.
struct Raw(*const u8, usize);
unsafe impl Send for Raw {}

/// What the routing thread hands back: each owned partition's side outputs, or the validator's exception.
type JobOut = PyResult<Vec<Routed>>;

/// A batch being routed.
struct Job {
    handle: workers::Pending<(JobOut, Vec<Py<PyAny>>)>,
    parts: Vec<Py<Partition>>, // owned partitions in the batch, by slot
    msgs: Vec<Py<PyAny>>,
    origins: Origins,
    routed: Vec<(*mut State, Arc<Gate>)>, // per partition: opens when this batch has routed into it
}

// SAFETY: the state pointers are only compared, never dereferenced, through `Job`
unsafe impl Send for Job {}

/// Per record of a job: its Kafka timestamp (for a forwarded record, its input record's), where it was first
/// read (input partition, offset), and a forwarded record's bytes inside its batch's value.
struct Origins {
    stamps: Vec<i64>,
    sources: Vec<(i64, i64)>,
    spans: Vec<Option<(usize, usize)>>,
}

/// Batches being routed, oldest first (at most three: the reader stays up to two batches ahead of routing).
static INFLIGHT: Mutex<VecDeque<Job>> = Mutex::new(VecDeque::new());

/// Phases 2-4 on a routing thread; phase 4 routes into each partition after the earlier batches (`after`) and
/// opens this batch's gate for it (`routed`).
fn route_job(
    raws: Vec<Option<Raw>>,
    meta: Vec<Meta>,
    values: &[Py<PyAny>],
    states: Vec<StatePtr>,
    verdict: Py<PyAny>,
    (after, routed): (Vec<Option<Arc<Gate>>>, Vec<Arc<Gate>>),
    forwarded: bool,
) -> JobOut {
    let done: Vec<OpenOnDrop> = routed.into_iter().map(|gate| OpenOnDrop(gate, false)).collect();
    let recs: Vec<Rec<'_>> = meta
        .iter()
        .zip(raws)
        .map(|(&Meta { slot, offset, ts, stream, mark, sub, correction, .. }, raw)| Rec {
            slot,
            offset,
            ts,
            stream,
            mark,
            sub,
            correction,
            // SAFETY: `values` holds a reference to every value, so its bytes live and do not move
            raw: raw.map(|Raw(ptr, len)| unsafe { std::slice::from_raw_parts(ptr, len) }),
        })
        .collect();
    let mut verdicts = parse_all(&recs);
    let open: Vec<usize> = verdicts
        .iter()
        .enumerate()
        .filter(|(i, v)| matches!(v, Verdict::Open) && recs[*i].mark.is_none())
        .map(|(i, _)| i)
        .collect();
    if !open.is_empty() {
        Python::with_gil(|py| -> PyResult<()> {
            let verdict = verdict.bind(py);
            for &i in &open {
                let value = match (forwarded, recs[i].raw) {
                    (true, Some(raw)) => PyBytes::new(py, raw).into_any(), // its bytes inside the batch
                    _ => values[i].bind(py).clone(),
                };
                verdicts[i] = decide(verdict, &value, recs[i].ts)?;
            }
            Ok(())
        })?;
    }
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); states.len()];
    for (i, r) in recs.iter().enumerate() {
        groups[r.slot].push(i);
    }
    let lanes = states
        .into_iter()
        .zip(after)
        .zip(done)
        .enumerate()
        .map(|(slot, ((ptr, after), done))| Lane {
            slot,
            // SAFETY: each pointer is a distinct partition's state, untouched by Python until this job is settled,
            // and dereferenced by its lane only once earlier batches routing into it are done (`after`)
            state: unsafe { &mut *ptr.0 },
            after,
            done,
        })
        .collect();
    let out = route_all(lanes, &groups, &recs, &verdicts, forwarded);
    recycle(verdicts);
    out
}

/// Wait for every batch being routed and add their side outputs (in offset order per partition). If one failed,
/// the later ones did not route; the first error is raised once all are settled.
#[pyfunction]
pub fn settle(py: Python<'_>) -> PyResult<()> {
    settle_older(py, 0)
}

/// Settle the oldest batches in flight until `keep` remain.
fn settle_older(py: Python<'_>, keep: usize) -> PyResult<()> {
    let mut first_err = None;
    loop {
        let job = {
            let mut inflight = INFLIGHT.lock().expect("job lock");
            if inflight.len() <= keep {
                break;
            }
            inflight.pop_front().expect("a job in flight")
        };
        let Job { handle, parts, msgs, origins, .. } = job;
        let joined = py.allow_threads(move || handle.recv().unwrap_or_else(|_| Err(Box::new("gone"))));
        for part in &parts {
            part.bind(py).borrow_mut().busy -= 1;
        }
        let result = match joined {
            Ok((out, values)) => out.and_then(|out| add_sides(py, &parts, &msgs, &origins, out, &values)),
            Err(_) => Err(PyRuntimeError::new_err("the routing thread panicked")),
        };
        if let Err(e) = result {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// A settled batch's dead letters, late events and forwarded records, appended to its partitions (outside their
/// states, so this is safe while the next batch is routed).
fn add_sides(
    py: Python<'_>,
    parts: &[Py<Partition>],
    msgs: &[Py<PyAny>],
    Origins { stamps, sources, spans }: &Origins,
    out: Vec<Routed>,
    values: &[Py<PyAny>],
) -> PyResult<()> {
    for (slot, routed) in out.into_iter().enumerate() {
        let mut part = parts[slot].bind(py).borrow_mut();
        for (i, route) in routed {
            let source = sources[i];
            let key = || msgs[i].bind(py).call_method0(intern!(py, "key")).map(Bound::unbind);
            // a forwarded record's own bytes, out of its batch
            let value = || -> PyResult<PyObject> {
                Ok(match spans[i] {
                    Some((a, b)) => PyBytes::new(py, &values[i].bind(py).downcast::<PyBytes>()?.as_bytes()[a..b])
                        .into_any()
                        .unbind(),
                    None => values[i].clone_ref(py),
                })
            };
            match route {
                Route::Late(detail) => {
                    let key = if spans[i].is_some() { py.None() } else { key()? }; // the batch's key is no one's
                    part.late.push(Side { source, key, value: value()?, reason: BEYOND_HORIZON.into(), detail })
                }
                Route::Dead(reason, detail) => {
                    let value = if values[i].is_none(py) {
                        PyBytes::new(py, b"").into_any().unbind()
                    } else {
                        values[i].clone_ref(py)
                    };
                    part.dead.push(Side { source, key: key()?, value, reason, detail });
                }
                Route::Forward { owner, correction } => part.forward.push(Forward {
                    offset: source.1,
                    record_ts: stamps[i],
                    owner,
                    value: value()?,
                    correction,
                }),
            }
        }
    }
    Ok(())
}

/// Start routing a consumed batch (confluent-kafka messages) into `states` (partition → Partition), from
/// `start`. The messages are read while the previous batch is still being routed; this batch is then parsed
/// while the previous one finishes (and is settled here), and routed after it. Records of unowned partitions, or
/// already inside the state, are skipped. `verdict(value, record_ts)` is the contract's validator for the
/// records the fast path leaves open. Returns -1, or the index of the first message carrying an error
/// (everything before it is being routed): Python handles it and calls again from the next index.
/// `forwarded`: the messages come from the repartition topic (records other partitions forwarded to these).
#[pyfunction]
#[pyo3(signature = (states, batch, start, verdict, forwarded = false))]
pub fn process_batch(
    py: Python<'_>,
    states: &Bound<'_, PyDict>,
    batch: &Bound<'_, PyList>,
    start: usize,
    verdict: &Bound<'_, PyAny>,
    forwarded: bool,
) -> PyResult<isize> {
    // Phase 1 reads the messages while the previous batch may still be routing: it touches no state.
    let mut slots: Vec<(i64, Option<Bound<'_, Partition>>)> = Vec::new(); // (partition, state if owned)
    let n = batch.len().saturating_sub(start); // sized up front: growing them faulted in fresh pages per batch
    let mut msgs = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(n);
    let mut raws = Vec::with_capacity(n);
    let mut meta: Vec<Meta> = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut stop = -1isize;
    let reader = message::Reader::new(py);
    for i in start..batch.len() {
        let msg = batch.get_item(i)?;
        let (fields, sender) = if forwarded {
            let f = reader.read_forwarded(&msg)?;
            (f.fields, Some((f.partition, f.mark)))
        } else {
            (reader.read(&msg)?, None)
        };
        if fields.failed {
            stop = i as isize;
            break;
        }
        let p = fields.partition;
        let slot = match slots.iter().position(|s| s.0 == p) {
            Some(slot) => slot,
            None => {
                let part = match states.get_item(p)? {
                    Some(obj) => Some(obj.downcast_into::<Partition>()?),
                    None => None,
                };
                slots.push((p, part));
                slots.len() - 1
            }
        };
        if slots[slot].1.is_none() {
            continue;
        }
        let (offset, ts, value) = (fields.offset, fields.ts, fields.value);
        let msg = msg.unbind();
        let bytes = value.downcast::<PyBytes>().ok();
        let Some((from, mark)) = sender else {
            raws.push(bytes.map(|b| Raw(b.as_bytes().as_ptr(), b.as_bytes().len())));
            values.push(value.unbind());
            msgs.push(msg);
            meta.push(Meta { slot, offset, ts, stream: p as i32, mark: None, sub: 0, span: None, correction: false });
            sources.push((p, offset));
            continue;
        };
        // a batch: each forwarded record (borrowing the batch's bytes, which `values` keeps alive), then the marker
        let packed = match &bytes {
            Some(b) => forward::unpack(b.as_bytes()).map_err(PyValueError::new_err)?,
            None => Vec::new(),
        };
        let base = bytes.as_ref().map_or(std::ptr::null(), |b| b.as_bytes().as_ptr());
        for (k, rec) in packed.iter().enumerate() {
            // SAFETY: `span` lies inside the batch's bytes
            raws.push(Some(Raw(unsafe { base.add(rec.span.0) }, rec.value.len())));
            values.push(value.clone().unbind());
            msgs.push(msg.clone_ref(py));
            let stream = from as i32;
            meta.push(Meta {
                slot,
                offset,
                ts: rec.record_ts,
                stream,
                mark: None,
                sub: k as u32,
                span: Some(rec.span),
                correction: rec.correction,
            });
            sources.push((from, rec.offset));
        }
        let sub = packed.len() as u32;
        drop(packed);
        if mark.is_some() {
            raws.push(None);
            values.push(value.clone().unbind());
            msgs.push(msg);
            meta.push(Meta { slot, offset, ts, stream: from as i32, mark, sub, span: None, correction: false });
            sources.push((from, -1));
        }
    }
    if msgs.is_empty() {
        return Ok(stop);
    }
    // renumber to the owned partitions only
    let mut renumber = vec![usize::MAX; slots.len()];
    let mut parts = Vec::new();
    let mut ptrs = Vec::new();
    for (slot, (_, part)) in slots.iter().enumerate() {
        if let Some(part) = part {
            renumber[slot] = parts.len();
            ptrs.push(part.borrow().st.ptr()); // the job keeps the partition, so the pointer stays valid
            parts.push(part.clone().unbind());
        }
    }
    for m in meta.iter_mut() {
        m.slot = renumber[m.slot];
    }
    let stamps = meta.iter().map(|m| m.ts).collect();
    let spans = meta.iter().map(|m| m.span).collect();
    let verdict = verdict.clone().unbind();
    let mut inflight = INFLIGHT.lock().expect("job lock");
    // each partition routes after the latest batch in flight that routes into it
    let after: Vec<Option<Arc<Gate>>> = ptrs
        .iter()
        .map(|ptr| {
            inflight.iter().rev().find_map(|job| job.routed.iter().find(|(p, _)| *p == ptr.0).map(|(_, g)| g.clone()))
        })
        .collect();
    let routed: Vec<(*mut State, Arc<Gate>)> = ptrs.iter().map(|ptr| (ptr.0, Arc::new(Gate::default()))).collect();
    let gates = routed.iter().map(|(_, gate)| gate.clone()).collect();
    let handle = workers::spawn(move || {
        let out = route_job(raws, meta, &values, ptrs, verdict, (after, gates), forwarded);
        (out, values) // back to `settle`, which needs them for the side outputs
    });
    for part in &parts {
        part.bind(py).borrow_mut().busy += 1; // its methods refuse until this job is settled
    }
    inflight.push_back(Job { handle, parts, msgs, origins: Origins { stamps, sources, spans }, routed });
    drop(inflight);
    settle_older(py, 2)?; // the oldest batch, while this one is parsed and the previous one routes
    Ok(stop)
}
