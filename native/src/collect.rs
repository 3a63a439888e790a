//! The collector's hot path (`pulse.collect`): a batch of events from a web or mobile client, each validated as
//! the aggregator will and moved to the collector's clock (see `event::admit`). An event it is not sure about
//! comes back as None, and Python's `pulse.collect.intake.prepare` decides, and names the reason of a rejection.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::event;

/// A valid event ready for the input topic, keyed by its user.
#[pyclass(frozen, get_all, module = "pulse.aggregate._core")]
pub struct Admitted {
    pub event_id: Py<PyString>,
    pub key: Py<PyBytes>,
    /// The event as sent, with `ts` on the collector's clock.
    pub value: Py<PyBytes>,
    /// The device's own time for the event, as sent.
    pub device_ts: i64,
    /// The device's clock when it sent the event (None: it did not say).
    pub sent_at: Option<i64>,
}

/// One entry per event of `events` (each one's JSON text as sent): an [`Admitted`], or None.
#[pyfunction]
#[pyo3(signature = (events, sent_at, received_ms))]
pub fn admit_events<'py>(
    py: Python<'py>,
    events: &Bound<'py, PyList>,
    sent_at: Option<i64>,
    received_ms: i64,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for item in events.iter() {
        let raw = item.downcast::<PyBytes>()?;
        match event::admit(raw.as_bytes(), sent_at, received_ms) {
            Some(ok) => {
                let value = match ok.value {
                    std::borrow::Cow::Borrowed(_) => raw.clone().unbind(),
                    std::borrow::Cow::Owned(moved) => PyBytes::new(py, &moved).unbind(),
                };
                let admitted = Admitted {
                    event_id: PyString::new(py, &ok.event.event_id).unbind(),
                    key: PyBytes::new(py, ok.event.user_id.as_bytes()).unbind(),
                    value,
                    device_ts: ok.device_ts,
                    sent_at,
                };
                out.append(Py::new(py, admitted)?)?;
            }
            None => out.append(py.None())?,
        }
    }
    Ok(out)
}
