//! What the walk is handed from Python, read into its own types: recorded decisions, repartition topic records and
//! the events only the contract's slow path accepted.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::event::Event;

/// A decision the aggregator recorded (`pulse.verify.order`'s `Floor`, `Take`, `Stall`).
pub enum Decision {
    Floor { offset: i64, floor: Option<i64>, idle: bool },
    Take { offset: i64, until: i64 },
    Stall { offset: i64, source: usize },
}

impl Decision {
    pub fn offset(&self) -> i64 {
        match self {
            Decision::Floor { offset, .. } | Decision::Take { offset, .. } | Decision::Stall { offset, .. } => *offset,
        }
    }
}

/// A repartition topic record: a forwarded record or a source's watermark, at offset `at` there.
pub enum Taken {
    Forward { at: i64, partition: usize, offset: i64, record_ts: i64, value: Option<Py<PyBytes>>, correction: bool },
    Marker { at: i64, partition: usize, value: i64, idle: bool },
}

impl Taken {
    pub fn at(&self) -> i64 {
        match self {
            Taken::Forward { at, .. } | Taken::Marker { at, .. } => *at,
        }
    }
}

impl Decision {
    pub fn of(d: &Bound<'_, PyAny>) -> PyResult<Decision> {
        let offset: i64 = attr(d, "offset")?;
        Ok(if d.hasattr("until")? {
            Decision::Take { offset, until: attr(d, "until")? }
        } else if d.hasattr("source")? {
            Decision::Stall { offset, source: attr(d, "source")? }
        } else {
            Decision::Floor { offset, floor: attr(d, "floor")?, idle: attr(d, "idle")? }
        })
    }
}

impl Taken {
    /// An `(offset there, Forward | Marker)` item of the repartition topic.
    pub fn of(item: &Bound<'_, PyAny>, marker_class: &Bound<'_, PyAny>) -> PyResult<Taken> {
        let at: i64 = item.get_item(0)?.extract()?;
        let what = item.get_item(1)?;
        let partition: usize = attr(&what, "partition")?;
        Ok(if what.is_instance(marker_class)? {
            Taken::Marker { at, partition, value: attr(&what, "value")?, idle: attr(&what, "idle")? }
        } else {
            Taken::Forward {
                at,
                partition,
                offset: attr(&what, "offset")?,
                record_ts: attr(&what, "record_ts")?,
                value: attr(&what, "value")?,
                correction: attr(&what, "correction")?,
            }
        })
    }
}

pub fn attr<'py, T: FromPyObject<'py>>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<T> {
    obj.getattr(name)?.extract()
}

/// An event Python's validator accepted (the fast path was not sure), with its own strings.
pub fn owned_event(e: &Bound<'_, PyAny>) -> PyResult<Event<'static>> {
    let text = |name: &str| -> PyResult<std::borrow::Cow<'static, str>> { Ok(attr::<String>(e, name)?.into()) };
    let maybe = |name: &str| -> PyResult<Option<std::borrow::Cow<'static, str>>> {
        Ok(attr::<Option<String>>(e, name)?.map(Into::into))
    };
    Ok(Event {
        event_id: text("event_id")?,
        event_type: text("event_type")?,
        ts: attr(e, "ts")?,
        user_id: text("user_id")?,
        session_id: text("session_id")?,
        item_id: maybe("item_id")?,
        category: maybe("category")?,
        price: attr(e, "price")?,
        amount: attr(e, "amount")?,
        status: text("status")?,
        device: text("device")?,
        country: text("country")?,
    })
}
