//! The typed boundary with Python: what a flush hands over, the state's counters and sizes, and the contract
//! validator's verdict read back by field name (no positional tuples; `_core.pyi` declares the same shapes).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::borrow::Cow;

use crate::event::Event;
use crate::progress::{ACCEPTED, CORRECTED, DEAD_LETTERED, DUPLICATES, LATE, OUTCOMES};

/// A record routed away from the aggregates, to the dead-letter or late-events topic.
#[pyclass(frozen, get_all, module = "pulse.aggregate._core")]
pub struct SideRecord {
    /// The input partition and offset it was read from (for a record forwarded here, where it was first read).
    pub source_partition: i64,
    pub source_offset: i64,
    pub key: PyObject,
    pub value: PyObject,
    pub reason: String,
    pub detail: String,
}

/// Records a partition forwards to another (`owner`) in a flush, packed (`value`, None for none: see `forward`);
/// the flush's last batch for that owner carries the partition's source watermark after its input up to `offset`.
#[pyclass(frozen, get_all, module = "pulse.aggregate._core")]
pub struct ForwardBatch {
    pub owner: u32,
    pub value: Option<Py<PyBytes>>,
    pub records: usize,
    pub offset: i64,
    pub watermark: Option<i64>,
    pub idle: bool,
}

/// A document for the aggregates topic: its id (the Kafka key), its kind and its JSON.
#[pyclass(frozen, get_all, module = "pulse.aggregate._core")]
pub struct Document {
    pub id: String,
    pub kind: &'static str,
    pub value: Py<PyBytes>,
}

/// A changelog record (a None value is a tombstone).
#[pyclass(frozen, get_all, module = "pulse.aggregate._core")]
pub struct ChangelogRecord {
    pub key: Py<PyBytes>,
    pub value: Option<Py<PyBytes>>,
}

/// One partition's flush: everything its transaction writes.
#[pyclass(frozen, get_all, module = "pulse.aggregate._core")]
pub struct FlushOutput {
    pub records: Py<PyList>,   // ChangelogRecord
    pub documents: Py<PyList>, // Document
    pub dead: Py<PyList>,      // SideRecord
    pub late: Py<PyList>,      // SideRecord
    pub forward: Py<PyList>,   // ForwardBatch
}

/// Where the records of a partition ended: each lands in exactly one (a forwarded record lands at its owner).
/// Held in the order of `OUTCOMES`, which names them.
#[pyclass(frozen, eq, module = "pulse.aggregate._core")]
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct Counters {
    counts: [u64; OUTCOMES.len()],
}

#[pymethods]
impl Counters {
    /// The outcomes' names, in the order of `as_list` (`pulse.aggregate.model.OUTCOMES` is this).
    #[staticmethod]
    fn names() -> Vec<&'static str> {
        OUTCOMES.to_vec()
    }
    /// The counts in the order of `names`.
    fn as_list(&self) -> Vec<u64> {
        self.counts.to_vec()
    }
    #[getter]
    fn accepted(&self) -> u64 {
        self.counts[ACCEPTED]
    }
    #[getter]
    fn dead_lettered(&self) -> u64 {
        self.counts[DEAD_LETTERED]
    }
    #[getter]
    fn late(&self) -> u64 {
        self.counts[LATE]
    }
    #[getter]
    fn duplicates(&self) -> u64 {
        self.counts[DUPLICATES]
    }
    #[getter]
    fn corrected(&self) -> u64 {
        self.counts[CORRECTED]
    }
    fn __repr__(&self) -> String {
        let fields: Vec<String> = OUTCOMES.iter().zip(self.counts).map(|(k, v)| format!("{k}={v}")).collect();
        format!("Counters({})", fields.join(", "))
    }
}

impl From<[u64; OUTCOMES.len()]> for Counters {
    fn from(counts: [u64; OUTCOMES.len()]) -> Self {
        Counters { counts }
    }
}

/// Entries of the live state.
#[pyclass(frozen, get_all, module = "pulse.aggregate._core")]
pub struct StateSizes {
    pub windows: usize,
    pub users: usize,
    pub sessions: usize,
    pub event_ids: usize,
}

#[pymethods]
impl StateSizes {
    /// The sizes in the order of `pulse.aggregate.observed.STATE_KINDS`.
    fn as_list(&self) -> Vec<usize> {
        vec![self.windows, self.users, self.sessions, self.event_ids]
    }
}

/// An accepted event as the contract's validator gives it (`pulse.events.schema.Event`), read by field name.
pub fn event_from(e: &Bound<'_, PyAny>) -> PyResult<Event<'static>> {
    let py = e.py();
    let text = |name: &Bound<'_, pyo3::types::PyString>| -> PyResult<Cow<'static, str>> {
        Ok(Cow::Owned(e.getattr(name)?.extract::<String>()?))
    };
    let optional = |name: &Bound<'_, pyo3::types::PyString>| -> PyResult<Option<Cow<'static, str>>> {
        Ok(e.getattr(name)?.extract::<Option<String>>()?.map(Cow::Owned))
    };
    Ok(Event {
        event_id: text(intern!(py, "event_id"))?,
        event_type: text(intern!(py, "event_type"))?,
        ts: e.getattr(intern!(py, "ts"))?.extract()?,
        user_id: text(intern!(py, "user_id"))?,
        session_id: text(intern!(py, "session_id"))?,
        item_id: optional(intern!(py, "item_id"))?,
        category: optional(intern!(py, "category"))?,
        price: e.getattr(intern!(py, "price"))?.extract()?,
        amount: e.getattr(intern!(py, "amount"))?.extract()?,
        status: text(intern!(py, "status"))?,
        device: text(intern!(py, "device"))?,
        country: text(intern!(py, "country"))?,
    })
}
