//! `VerifyWalk`: one input partition's pass for `pulse verify`, native (`pulse.verify.walk.PartitionWalk` with
//! `pulse.verify.tally.PartitionTally`, written again for speed).
//!
//! Verify's own implementation of the documented rules: it shares the contract's validator (`event.rs`) with the
//! engine and nothing else. `tests/verify/test_native.py` holds it equal to the Python walk on random inputs.

mod clock;
mod inputs;
mod lookahead;
mod output;
mod rows;
mod tally;

use std::collections::{BTreeMap, VecDeque};

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyIterator, PyList};

use crate::event::{fast_validate, Event};
use clock::{partition_for, Counts, Flow, Judged, Owner, Verdict};
use inputs::{attr, owned_event, Decision, Taken};
use lookahead::{Lookahead, SenderLog, ALWAYS};
use output::Fields;
use tally::{Dim, Rules, Tally};

/// Input records between two look-ahead bounds (`pulse.verify.walk.LOOK_EVERY`).
const LOOK_EVERY: i64 = 1_000;

/// One partition's pass, as source and as owner (see `pulse.verify.walk`).
#[pyclass(unsendable, module = "pulse.aggregate._core")]
pub struct VerifyWalk {
    p: usize,
    partitions: usize,
    starts: BTreeMap<usize, i64>,
    unread_before: Option<i64>,
    until: Option<i64>,
    owner: Owner,
    counts: Counts,
    sent: BTreeMap<usize, Flow>,
    received: BTreeMap<usize, Flow>,
    decisions: VecDeque<Decision>,
    markers: VecDeque<(i64, i64)>,
    tally: Tally,
    fields: Fields,
    validate: PyObject,
    event_class: PyObject,
    marker_class: PyObject,
    on_finished: PyObject,
    published: i64,
    lookahead: Option<Lookahead>,
    look_at: i64,
    start: i64,
    position: i64,
    taken: VecDeque<Py<PyIterator>>,
    pending: Option<Taken>,
}

#[pymethods]
impl VerifyWalk {
    /// `rules`: a `pulse.verify.walk.Rules`; `model`: a `pulse.verify.native.Model` (the names and sizes the
    /// documents follow); `validate`: the contract's validator, for what the fast path is not sure of;
    /// `on_finished(watermark, docs)`: gets the window documents as they finish; `lookahead`: a
    /// `pulse.verify.lookahead.Lookahead`.
    #[new]
    #[pyo3(signature = (*, partition, rules, sizes, session_timeout_ms, unseen_before, model, validate, on_finished, lookahead=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        partition: usize,
        rules: &Bound<'_, PyAny>,
        sizes: Vec<i64>,
        session_timeout_ms: i64,
        unseen_before: Option<i64>,
        model: &Bound<'_, PyAny>,
        validate: PyObject,
        on_finished: PyObject,
        lookahead: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let partitions: usize = attr(rules, "partitions")?;
        let starts: BTreeMap<usize, i64> = attr(rules, "starts")?;
        let mut dims = Vec::new();
        for name in attr::<Vec<String>>(model, "dimensions")? {
            let dim = Dim::named(&name).ok_or_else(|| PyValueError::new_err(format!("unknown dimension {name}")))?;
            dims.push((name, dim));
        }
        let tally = Tally::new(Rules {
            sizes,
            session_timeout_ms,
            unseen_before,
            items_from_ms: attr(model, "items_from_ms")?,
            exact_users_up_to_ms: attr(model, "exact_users_up_to_ms")?,
            funnel: attr(model, "funnel")?,
            dims,
        });
        let lookahead = match lookahead {
            None => None,
            Some(la) => {
                let mut senders = Vec::new();
                for log in la.getattr("senders")?.call_method0("values")?.try_iter()? {
                    let log = log?;
                    senders.push(SenderLog {
                        marker_offsets: attr(&log, "marker_offsets")?,
                        marker_values: attr(&log, "marker_values")?,
                        batches: attr(&log, "batches")?,
                    });
                }
                Some(Lookahead { end: attr(la, "end")?, senders })
            }
        };
        let owner = Owner::new(
            partition,
            partitions,
            attr(rules, "horizon_ms")?,
            attr(rules, "forward_wait_ms")?,
            attr(rules, "grace_ms")?,
        );
        let start = starts.get(&partition).copied().unwrap_or(0);
        Ok(VerifyWalk {
            p: partition,
            partitions,
            starts,
            unread_before: attr(rules, "unread_before_ms")?,
            until: None,
            published: owner.watermark,
            owner,
            counts: Counts::default(),
            sent: BTreeMap::new(),
            received: BTreeMap::new(),
            decisions: VecDeque::new(),
            markers: VecDeque::new(),
            tally,
            fields: Fields::new(model)?,
            validate,
            event_class: attr(model, "event_class")?,
            marker_class: attr(model, "marker_class")?,
            on_finished,
            lookahead,
            look_at: 0,
            start,
            position: start,
            taken: VecDeque::new(),
            pending: None,
        })
    }

    /// More recorded decisions (`Floor`, `Take`, `Stall`) and sent watermarks ((input offset, value)), later than
    /// those given so far.
    fn extend(&mut self, decisions: &Bound<'_, PyAny>, sent_markers: Vec<(i64, i64)>) -> PyResult<()> {
        for d in decisions.try_iter()? {
            self.decisions.push_back(Decision::of(&d?)?);
        }
        self.markers.extend(sent_markers);
        Ok(())
    }

    /// Walk more of the input: `records` (consumed messages: `offset()`, `value()`, `timestamp()`) continue the
    /// partition's input in offset order, `taken` its repartition topic records ((offset there, `Forward` or
    /// `Marker`)), read as they are needed. With `until`, records stop being walked once every window ending
    /// up to it was handed out, and the flows count the early records apart (`Flow`).
    #[pyo3(signature = (records, taken=None, until=None))]
    fn feed(
        &mut self,
        py: Python<'_>,
        records: &Bound<'_, PyAny>,
        taken: Option<&Bound<'_, PyAny>>,
        until: Option<i64>,
    ) -> PyResult<()> {
        self.until = until.or(self.until);
        if let Some(t) = taken {
            self.taken.push_back(t.try_iter()?.unbind());
        }
        if self.pending.is_none() {
            self.pending = self.next_taken(py)?;
        }
        for rec in records.try_iter()? {
            if until.is_some_and(|u| self.published >= u) {
                break;
            }
            let rec = rec?;
            let offset: i64 = rec.call_method0(intern!(py, "offset"))?.extract()?;
            let value = rec.call_method0(intern!(py, "value"))?;
            let record_ts: i64 = rec.call_method0(intern!(py, "timestamp"))?.get_item(1)?.extract()?;
            self.counts.read += 1;
            self.decide(py, Some(offset))?;
            self.check_markers(Some(offset + 1));
            self.owner.source.idle = false;
            let raw: &[u8] = value.downcast::<PyBytes>().map(|b| b.as_bytes()).unwrap_or(b"");
            let event = match fast_validate(raw, record_ts) {
                Some(e) => e,
                None => match self.slow_validate(py, raw, record_ts)? {
                    Some(e) => e,
                    None => {
                        self.counts.dead_lettered += 1;
                        continue;
                    }
                },
            };
            let judged = self.owner.source.judge(event.ts, record_ts);
            if judged == Judged::TooLate {
                self.counts.late += 1;
                continue;
            }
            self.owner.refresh();
            let correction = judged == Judged::Correction;
            let to = if self.partitions > 0 { partition_for(&event.user_id, self.partitions) } else { self.p };
            if to != self.p {
                self.counts.forwarded += 1;
                let early = self.early(event.ts, correction);
                let flow = self.sent.entry(to).or_default();
                flow.add(offset, raw, correction, early);
                if self.unread_before.is_some_and(|u| self.owner.source.max_ts < u) {
                    flow.unsure += 1;
                    flow.early_unsure += i64::from(early);
                }
            } else {
                self.count(&event, correction);
            }
            self.publish(py)?;
            self.position = offset + 1;
        }
        self.decide(py, Some(self.position)) // the decisions taken once the input was read up to here
    }

    /// The input was read up to `offset` (exclusive): no record before it is still to come, including what a
    /// read_committed reader passes without a record (transaction markers, aborted records), where the
    /// aggregator's decisions can sit. Applies the decisions taken up to there.
    fn read_to(&mut self, py: Python<'_>, offset: i64) -> PyResult<()> {
        self.position = self.position.max(offset);
        self.decide(py, Some(self.position))
    }

    /// The end of the input: every decision left, and what was forwarded but not taken yet.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        self.decide(py, None)?;
        self.check_markers(None);
        self.take(py, None)?;
        self.publish(py)
    }

    /// Everything left at the end of the input: the open window documents, and the users and items.
    fn finish(&mut self, py: Python<'_>) -> PyResult<(Py<PyList>, Py<PyList>)> {
        let windows = PyList::empty(py);
        for f in self.tally.finish() {
            output::windows(py, &self.tally, &self.fields, self.p, &f, &windows)?;
        }
        let entities = output::entities(py, &self.tally, &self.fields, self.p)?;
        Ok((windows.unbind(), entities.unbind()))
    }

    /// Every window document's corrections, summed over its revisions (ids as the window's own), of the windows
    /// ending at or before `before` (None: all); each is handed out once.
    #[pyo3(signature = (before=None))]
    fn revisions(&mut self, py: Python<'_>, before: Option<i64>) -> PyResult<Py<PyList>> {
        let out = PyList::empty(py);
        for f in self.tally.take_revisions(before) {
            output::windows(py, &self.tally, &self.fields, self.p, &f, &out)?;
        }
        Ok(out.unbind())
    }

    /// The owner watermark up to which every window was handed out.
    #[getter]
    fn published(&self) -> i64 {
        self.published
    }

    /// What the walk counted, by the names of `pulse.verify.order.Counts`.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.counts;
        let out = PyDict::new(py);
        for (name, n) in [
            ("read", c.read),
            ("dead_lettered", c.dead_lettered),
            ("late", c.late),
            ("duplicates", c.duplicates),
            ("accepted", c.accepted),
            ("forwarded", c.forwarded),
            ("corrected", c.corrected),
        ] {
            out.set_item(name, n)?;
        }
        out.set_item("problems", c.problems.clone())?;
        Ok(out)
    }

    /// The partitions whose early records (`Flow`) this walk has seen whole: itself as their sender once its own
    /// clock passed the range's end, and each sender whose watermark it took passed it (none without a range end).
    fn early_whole(&self) -> Vec<usize> {
        let Some(until) = self.until else {
            return Vec::new();
        };
        let mut whole = self.owner.sources_past(until);
        if self.owner.source.value() >= until {
            whole.push(self.p);
        }
        whole
    }

    /// The flows sent (by owner) or received (by source), as {partition: {"count", "digest"}}.
    fn flows<'py>(&self, py: Python<'py>, sent: bool) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (q, f) in if sent { &self.sent } else { &self.received } {
            let flow = PyDict::new(py);
            flow.set_item("count", f.count)?;
            flow.set_item("digest", f.digest)?;
            flow.set_item("corrections", f.corrections)?;
            flow.set_item("corrections_digest", f.corrections_digest)?;
            flow.set_item("unsure", f.unsure)?;
            flow.set_item("early", f.early)?;
            flow.set_item("early_digest", f.early_digest)?;
            flow.set_item("early_unsure", f.early_unsure)?;
            out.set_item(q, flow)?;
        }
        Ok(out)
    }
}

impl VerifyWalk {
    /// The contract's own validator, for what the fast path is not sure of (None: invalid).
    fn slow_validate(&self, py: Python<'_>, raw: &[u8], record_ts: i64) -> PyResult<Option<Event<'static>>> {
        let verdict = self.validate.bind(py).call1((PyBytes::new(py, raw), record_ts))?;
        if !verdict.is_instance(self.event_class.bind(py))? {
            return Ok(None);
        }
        owned_event(&verdict).map(Some)
    }

    fn next_taken(&mut self, py: Python<'_>) -> PyResult<Option<Taken>> {
        while let Some(it) = self.taken.front() {
            match it.bind(py).clone().next() {
                Some(item) => return Taken::of(&item?, self.marker_class.bind(py)).map(Some),
                None => {
                    self.taken.pop_front();
                }
            }
        }
        Ok(None)
    }

    /// Hand out the windows nothing left to count can reach (see `PartitionWalk._publish`).
    fn publish(&mut self, py: Python<'_>) -> PyResult<()> {
        let mut target = self.owner.watermark;
        if let Some(la) = &self.lookahead {
            if self.counts.read >= self.look_at {
                self.look_at = self.counts.read + LOOK_EVERY;
                let ahead = self.pending.as_ref().map_or(ALWAYS, |t| la.bound(t.at()));
                target = target.max(self.owner.source.value().min(ahead));
            }
        }
        if target > self.published {
            self.published = target;
            let finished = self.tally.advance(target, self.owner.watermark);
            if !finished.is_empty() {
                let docs = PyList::empty(py);
                for f in &finished {
                    output::windows(py, &self.tally, &self.fields, self.p, f, &docs)?;
                }
                self.on_finished.bind(py).call1((target, docs))?;
            }
        }
        Ok(())
    }

    /// Apply the recorded decisions up to input offset `upto` (all: None).
    fn decide(&mut self, py: Python<'_>, upto: Option<i64>) -> PyResult<()> {
        while let Some(d) = self.decisions.front() {
            if upto.is_some_and(|u| d.offset() > u) {
                break;
            }
            let d = self.decisions.pop_front().expect("a decision");
            self.check_markers(Some(d.offset()));
            match d {
                Decision::Floor { floor, idle, .. } => {
                    self.owner.source.apply(floor, idle);
                    self.owner.refresh();
                }
                Decision::Stall { source, .. } => self.owner.stall(source),
                Decision::Take { until, .. } => self.take(py, Some(until))?,
            }
            self.publish(py)?;
        }
        Ok(())
    }

    /// Check the watermarks this partition sent at input offsets before `before` (all: None) against its clock.
    fn check_markers(&mut self, before: Option<i64>) {
        let allowed = self.owner.source.value();
        // in a range, the clock is the partition's own only once it passed every record before the range's start
        let known = self.unread_before.is_none_or(|u| self.owner.source.max_ts >= u);
        while let Some(&(offset, value)) = self.markers.front() {
            if before.is_some_and(|b| offset >= b) {
                break;
            }
            self.markers.pop_front();
            if value > allowed && known && offset >= self.start {
                self.counts.problems.push(format!(
                    "partition {} sent a watermark of {value} after offset {offset}, beyond its input's {allowed}",
                    self.p
                ));
            }
        }
    }

    /// Take the repartition topic's records before offset `until` (all: None).
    fn take(&mut self, py: Python<'_>, until: Option<i64>) -> PyResult<()> {
        while let Some(item) = self.pending.take() {
            if until.is_some_and(|u| item.at() >= u) {
                self.pending = Some(item);
                break;
            }
            self.pending = self.next_taken(py)?;
            match item {
                Taken::Marker { partition, value, idle, .. } => self.owner.mark(partition, value, idle),
                Taken::Forward { partition, offset, record_ts, value, correction, .. } => {
                    if offset >= self.starts.get(&partition).copied().unwrap_or(0) {
                        let raw: &[u8] = value.as_ref().map(|b| b.as_bytes(py)).unwrap_or(b"");
                        let event = self.forwarded_event(py, raw, record_ts)?;
                        let early = event.as_ref().is_some_and(|e| self.early(e.ts, correction));
                        self.received.entry(partition).or_default().add(offset, raw, correction, early);
                        if let Some(event) = event {
                            self.count(&event, correction);
                        }
                    }
                }
            }
            self.publish(py)?;
        }
        Ok(())
    }

    /// A forwarded record's event (None: invalid, which a sender does not forward).
    fn forwarded_event<'a>(&self, py: Python<'_>, raw: &'a [u8], record_ts: i64) -> PyResult<Option<Event<'a>>> {
        Ok(match fast_validate(raw, record_ts) {
            Some(e) => Some(e),
            None => self.slow_validate(py, raw, record_ts)?,
        })
    }

    /// A forwarded record that counts in windows before the range's end: the sender walked all of them before
    /// its clock passed the end, and the owner took all of them before its watermark did.
    fn early(&self, ts: i64, correction: bool) -> bool {
        !correction && self.until.is_some_and(|u| ts < u)
    }

    /// An event this partition owns, as the owner takes it (`correction`: its source judged it one).
    fn count(&mut self, event: &Event<'_>, correction: bool) {
        match self.owner.take(event.ts, &event.event_id, &mut self.counts, correction) {
            Verdict::Accepted => self.tally.add(event),
            Verdict::Corrected => self.tally.correct(event, self.owner.watermark),
            Verdict::Late | Verdict::Duplicate => {}
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<VerifyWalk>()
}
