//! Reading a consumed `confluent_kafka.Message`: five accessor calls per record cost the reader thread about as
//! much as a tenth of a batch's routing, so the fields are read in place when the type's layout is known.
//!
//! The layout is not guessed: it is found once by building probe messages with distinctive field values and
//! locating each value in the object, twice with different values; if anything does not match exactly (another
//! confluent-kafka version, another type such as a test double), every message goes through the accessors.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use std::sync::OnceLock;

use crate::progress::Mark;

/// The fields the router reads from one consumed record.
pub(crate) struct Fields<'py> {
    pub failed: bool, // the record carries an error (end of partition, broker error)
    pub partition: i64,
    pub offset: i64,
    pub ts: i64,
    pub value: Bound<'py, PyAny>,
}

/// Byte offsets of the fields inside a `confluent_kafka.Message` object.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Layout {
    ty: usize, // the exact type these offsets are valid for
    error: usize,
    value: usize,
    partition: usize,
    offset: usize,
    ts: usize,
}

static LAYOUT: OnceLock<Option<Layout>> = OnceLock::new();

/// Reads a batch's messages; the layout is looked up once per batch, not per message.
pub(crate) struct Reader(Option<&'static Layout>);

impl Reader {
    pub(crate) fn new(py: Python<'_>) -> Self {
        Reader(LAYOUT.get_or_init(|| probe(py).ok().flatten()).as_ref())
    }

    /// `msg`'s fields: in place for a genuine `confluent_kafka.Message`, else through its accessors.
    pub(crate) fn read<'py>(&self, msg: &Bound<'py, PyAny>) -> PyResult<Fields<'py>> {
        match self.0 {
            // SAFETY: `msg` is a live object; its type pointer is only compared
            Some(l) if unsafe { ffi::Py_TYPE(msg.as_ptr()) } as usize == l.ty => Ok(in_place(msg, l)),
            _ => by_accessors(msg),
        }
    }
}

/// Headers of a record in the repartition topic (a batch of forwarded records, see `forward`): the partition
/// that sent it, its input position then, and its source watermark there (and whether it is idle).
pub const SOURCE_PARTITION: &str = "pulse.source.partition";
pub const SOURCE_OFFSET: &str = "pulse.source.offset";
pub const WATERMARK: &str = "pulse.watermark";
pub const IDLE: &str = "pulse.idle";

/// A repartition topic record: forwarded records (its value) and the sender's watermark after them.
pub(crate) struct Forwarded<'py> {
    pub fields: Fields<'py>,
    pub partition: i64,     // the partition that sent it
    pub mark: Option<Mark>, // on the last batch of a flush
}

impl Reader {
    /// A repartition topic record's fields, the partition that sent it and its watermark. The headers through
    /// their accessor (one record per sender and flush).
    pub(crate) fn read_forwarded<'py>(&self, msg: &Bound<'py, PyAny>) -> PyResult<Forwarded<'py>> {
        let fields = self.read(msg)?;
        if fields.failed {
            return Ok(Forwarded { fields, partition: -1, mark: None });
        }
        let py = msg.py();
        let (mut partition, mut watermark, mut idle) = (None, None, false);
        let headers = msg.call_method0(intern!(py, "headers"))?;
        if !headers.is_none() {
            for header in headers.try_iter()? {
                let (name, value): (String, Option<Vec<u8>>) = header?.extract()?;
                let number = value.and_then(|v| std::str::from_utf8(&v).ok().and_then(|t| t.parse::<i64>().ok()));
                match name.as_str() {
                    SOURCE_PARTITION => partition = number,
                    WATERMARK => watermark = number,
                    IDLE => idle = number == Some(1),
                    _ => {}
                }
            }
        }
        let Some(partition) = partition else {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "record {} of the repartition topic lacks the header {SOURCE_PARTITION}: only Pulse may write that \
                 topic",
                fields.offset
            )));
        };
        Ok(Forwarded { fields, partition, mark: watermark.map(|value| Mark { value, idle }) })
    }
}

fn by_accessors<'py>(msg: &Bound<'py, PyAny>) -> PyResult<Fields<'py>> {
    let py = msg.py();
    if !msg.call_method0(intern!(py, "error"))?.is_none() {
        // the reader stops at it: Python handles the error
        return Ok(Fields { failed: true, partition: -1, offset: -1, ts: 0, value: py.None().into_bound(py) });
    }
    Ok(Fields {
        failed: false,
        partition: msg.call_method0(intern!(py, "partition"))?.extract()?,
        offset: msg.call_method0(intern!(py, "offset"))?.extract()?,
        ts: msg.call_method0(intern!(py, "timestamp"))?.downcast::<PyTuple>()?.get_item(1)?.extract()?,
        value: msg.call_method0(intern!(py, "value"))?,
    })
}

fn in_place<'py>(msg: &Bound<'py, PyAny>, l: &Layout) -> Fields<'py> {
    let py = msg.py();
    let base = msg.as_ptr() as *const u8;
    // SAFETY: `msg` is alive and of exactly the probed type, whose fields sit at these offsets
    unsafe {
        let object = |at: usize| std::ptr::read_unaligned(base.add(at) as *const *mut ffi::PyObject);
        let error = object(l.error);
        let value = object(l.value);
        Fields {
            failed: !error.is_null() && error != ffi::Py_None(),
            partition: std::ptr::read_unaligned(base.add(l.partition) as *const i32) as i64,
            offset: std::ptr::read_unaligned(base.add(l.offset) as *const i64),
            ts: std::ptr::read_unaligned(base.add(l.ts) as *const i64),
            value: if value.is_null() { py.None().into_bound(py) } else { Bound::from_borrowed_ptr(py, value) },
        }
    }
}

/// A `confluent_kafka.Message` with these fields (`value` and `error` only if given).
fn sample<'py>(
    message: &Bound<'py, PyAny>,
    (partition, offset, ts): (i32, i64, i64),
    value: Option<&Bound<'py, PyAny>>,
    error: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let kw = PyDict::new(message.py());
    kw.set_item("topic", "pulse-probe")?;
    kw.set_item("partition", partition)?;
    kw.set_item("offset", offset)?;
    kw.set_item("timestamp", (1, ts))?;
    if let Some(value) = value {
        kw.set_item("value", value)?;
    }
    if let Some(error) = error {
        kw.set_item("error", error)?;
    }
    message.call((), Some(&kw))
}

/// Find the layout from probe messages; None if it cannot be established beyond doubt.
fn probe(py: Python<'_>) -> PyResult<Option<Layout>> {
    let kafka = py.import("confluent_kafka")?;
    let message = kafka.getattr("Message")?;
    let error_type = kafka.getattr("KafkaError")?;
    let samples = [
        (0x1234_5678i32, 0x0123_4567_89ab_cdefi64, 0x0fed_cba9_8765_4321i64),
        (0x0765_4321, 0x0777_6655_4433_2211, 0x0111_2233_4455_6677),
    ];
    let mut found: Option<Layout> = None;
    for (i, (partition, offset, ts)) in samples.into_iter().enumerate() {
        let value = PyBytes::new(py, format!("pulse-probe-{i}").as_bytes()).into_any();
        let error = error_type.call1((-191,))?; // _PARTITION_EOF
        let msg = sample(&message, (partition, offset, ts), Some(&value), Some(&error))?;
        let size: usize = msg.get_type().getattr("__basicsize__")?.extract()?;
        let base = msg.as_ptr() as *const u8;
        let head = std::mem::size_of::<ffi::PyObject>();
        // SAFETY: every read lies inside the object's fixed part (`__basicsize__` bytes)
        let word = |at: usize| unsafe { std::ptr::read_unaligned(base.add(at) as *const u64) };
        let int = |at: usize| unsafe { std::ptr::read_unaligned(base.add(at) as *const u32) };
        let only = |hits: Vec<usize>| if hits.len() == 1 { Some(hits[0]) } else { None };
        let find8 = |want: u64| only((head..=size - 8).step_by(8).filter(|&at| word(at) == want).collect());
        let find4 = |want: u32| only((head..=size - 4).step_by(4).filter(|&at| int(at) == want).collect());
        let layout = (|| {
            Some(Layout {
                ty: msg.get_type().as_ptr() as usize,
                error: find8(error.as_ptr() as u64)?,
                value: find8(value.as_ptr() as u64)?,
                partition: find4(partition as u32)?,
                offset: find8(offset as u64)?,
                ts: find8(ts as u64)?,
            })
        })();
        match (layout, found) {
            (Some(l), None) => found = Some(l),
            (Some(l), Some(f)) if l == f => {}
            _ => return Ok(None),
        }
    }
    // the accessors must agree with the layout on a record without an error or a value
    let Some(l) = found else { return Ok(None) };
    let msg = sample(&message, (3, 41, 1_700_000_000_000), None, None)?;
    let (a, b) = (in_place(&msg, &l), by_accessors(&msg)?);
    let agree = !a.failed
        && !b.failed
        && a.value.is_none()
        && b.value.is_none()
        && (a.partition, a.offset, a.ts) == (b.partition, b.offset, b.ts);
    Ok(agree.then_some(l))
}
