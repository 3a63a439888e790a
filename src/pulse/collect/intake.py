"""From an HTTP request body to records ready for Kafka: decoding (JSON; ``text/plain`` so that ``sendBeacon`` needs
no CORS preflight; gzip), the collector's limits, the event contract's validation, and the device clock's
correction.

A device's clock may be off by hours. The client stamps a batch (or an event) with ``sent_at`` on the same clock
as ``ts``; the collector moves ``ts`` by the difference between its own receive time and ``sent_at``:
``ts' = received - (sent_at - ts)``, as PostHog and Segment do. The corrected time is what the input topic holds,
so ``pulse verify`` reads it as a fact; the device's own ``ts``, ``sent_at`` and the receive time ride along as
record headers (schema v1 stays as it is: it forbids unknown fields).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from pulse.aggregate._core import Admitted, admit_events
from pulse.events.schema import MAX_EVENT_BYTES, Event
from pulse.events.validate import Reason, Rejection, validate

DEVICE_TS_HEADER = "pulse.device.ts"
SENT_AT_HEADER = "pulse.sent.at"
RECEIVED_AT_HEADER = "pulse.received.at"

CLIENT_FIELDS = ("sent_at", "key")
"""Fields a client may add to an event or a batch beside the contract's: they are the collector's, not the
event's, and are taken off before validation."""
MAX_SAFE_INTEGER = 2**53 - 1
_CLIENT_NAMES = tuple(b'"%s"' % name.encode() for name in CLIENT_FIELDS)


@dataclass(frozen=True)
class Limits:
    body_bytes: int = 1024 * 1024  # as sent, compressed or not
    inflated_bytes: int = 4 * 1024 * 1024  # after gzip
    ratio: int = 100  # inflated / compressed: more is a decompression bomb
    events: int = 1000  # per batch


class Refused(Exception):
    """A whole request refused: its HTTP status and a reason a client can act on."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True)
class Batch:
    events: list[bytes]  # each event's JSON text as sent (not yet known to be an object)
    sent_at: int | None
    key: str | None  # a write key sent in the body (sendBeacon cannot set headers)


class _Envelope(msgspec.Struct):
    """A batch's wrapper: the events stay undecoded (each is validated on its own, and produced as sent)."""

    events: list[msgspec.Raw] | None = None
    sent_at: Any = None
    key: Any = None


_BATCH = msgspec.json.Decoder(_Envelope | list[msgspec.Raw])


@dataclass(frozen=True, slots=True)
class Ready:
    """A valid event, as the input topic will hold it (the shape of the native core's ``Admitted``)."""

    event_id: str
    key: bytes  # user id: Kafka's default partitioner puts it where the aggregator owns the user
    value: bytes  # with ts on the collector's clock
    device_ts: int
    sent_at: int | None


Prepared = Ready | Admitted


@dataclass(frozen=True, slots=True)
class Invalid:
    """An event the contract rejects: it goes to the dead-letter topic with its reason."""

    event_id: str | None
    reason: str
    detail: str
    raw: bytes


def inflate(body: bytes, encoding: str | None, limits: Limits) -> bytes:
    """The body as JSON text: gzip is recognised by its header too (``sendBeacon`` cannot say it compressed)."""
    if len(body) > limits.body_bytes:
        raise Refused(413, "body_too_large", f"{len(body)} bytes > {limits.body_bytes}")
    encoding = (encoding or "identity").strip().lower()
    if encoding == "gzip" or (encoding == "identity" and body[:2] == b"\x1f\x8b"):
        cap = min(limits.inflated_bytes, max(len(body), 1) * limits.ratio)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(body, cap + 1)
        except zlib.error as exc:
            raise Refused(400, "bad_gzip", str(exc)) from None
        if len(out) > cap:
            raise Refused(413, "inflated_too_large", f"gzip body inflates past {cap} bytes")
        if not inflater.eof:
            raise Refused(400, "bad_gzip", "truncated gzip body")
        return out
    if encoding != "identity":
        raise Refused(415, "unsupported_encoding", f"Content-Encoding {encoding!r} (gzip or none)")
    return body


def parse_batch(text: bytes, limits: Limits) -> Batch:
    """``{"events": [...], "sent_at": ms, "key": "..."}`` or a bare array of events."""
    try:
        doc = _BATCH.decode(text)
    except msgspec.ValidationError as exc:
        reason = "no_events" if "$.events" in str(exc) else Reason.NOT_AN_OBJECT
        raise Refused(400, reason, "expected {\"events\": [...]} or an array of events") from None
    except msgspec.DecodeError as exc:
        raise Refused(400, Reason.MALFORMED_JSON, str(exc)) from None
    if isinstance(doc, list):
        events, sent_at, key = doc, None, None
    elif doc.events is None:
        raise Refused(400, "no_events", "expected {\"events\": [...]} or an array of events")
    else:
        events, sent_at, key = doc.events, doc.sent_at, doc.key
    if len(events) > limits.events:
        raise Refused(413, "too_many_events", f"{len(events)} events > {limits.events} per batch")
    return Batch([bytes(e) for e in events], _millis(sent_at), key if isinstance(key, str) else None)


def parse_event(text: bytes) -> Batch:
    """The single-event form: one event object (it may carry ``sent_at`` and ``key``)."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, Reason.MALFORMED_JSON, str(exc)) from None
    if not isinstance(doc, dict):
        raise Refused(400, Reason.NOT_AN_OBJECT, "expected one event object")
    if len(text) > MAX_EVENT_BYTES and len(orjson.dumps(doc)) > MAX_EVENT_BYTES:
        raise Refused(413, Reason.OVERSIZED, f"event over {MAX_EVENT_BYTES} bytes")
    key = doc.get("key")
    return Batch([text], None, key if isinstance(key, str) else None)


def prepare_all(events: list[bytes], sent_at: int | None, received_ms: int) -> list[Prepared | Invalid]:
    """Every event of a batch: the native core takes the shape producers write; anything else is decided here."""
    fast = admit_events(events, sent_at, received_ms)
    return [prepare(events[i], sent_at, received_ms) if ok is None else ok for i, ok in enumerate(fast)]


def headers(event: Prepared, received: bytes) -> dict[str, bytes]:
    """The device's clocks and the receive time (``received``: as the header holds it), beside the record."""
    found = {DEVICE_TS_HEADER: b"%d" % event.device_ts, RECEIVED_AT_HEADER: received}
    if event.sent_at is not None:
        found[SENT_AT_HEADER] = b"%d" % event.sent_at
    return found


def prepare(sent: bytes, sent_at: int | None, received_ms: int) -> Ready | Invalid:
    """Validate one event (its JSON text as sent) as the aggregator will, against the receive time as the broker
    stamps it, with its clock corrected; the device's own time is checked against its own ``sent_at``."""
    raw = sent
    if len(sent) > MAX_EVENT_BYTES:  # its size is judged as Kafka would hold it: compact, not as spaced out
        compact = _object(sent)
        if isinstance(compact, dict):
            raw = sent = orjson.dumps(compact)
    if _CLIENT_NAMES[0] in sent or _CLIENT_NAMES[1] in sent:  # may hold the collector's fields: take them off
        fields = _object(sent)
        if isinstance(fields, Invalid):
            return fields
        own_sent_at = _millis(fields.pop("sent_at", None))
        sent_at = own_sent_at if own_sent_at is not None else sent_at
        fields.pop("key", None)
        raw = orjson.dumps(fields)
    checked = validate(raw, received_ms if sent_at is None else sent_at)  # on the device's clock, as sent
    if isinstance(checked, Rejection):
        found = _object(raw)
        event_id = found.get("event_id") if isinstance(found, dict) else None
        return Invalid(event_id if isinstance(event_id, str) else None, checked.reason, checked.detail, raw)
    device_ts = checked.ts
    if sent_at is not None:
        moved = msgspec.json.encode(msgspec.structs.replace(checked, ts=received_ms - (sent_at - checked.ts)))
        corrected = validate(moved, received_ms)  # the move may take it out of the contract's range
        if isinstance(corrected, Rejection):
            return Invalid(checked.event_id, corrected.reason, f"after the clock correction: {corrected.detail}", raw)
        raw, checked = moved, corrected
    assert isinstance(checked, Event)
    return Ready(checked.event_id, checked.user_id.encode(), raw, device_ts, sent_at)


def _object(sent: bytes) -> dict[str, Any] | Invalid:
    """One event's JSON text as a dict, or why it is not an event object."""
    try:
        doc = orjson.loads(sent)
    except orjson.JSONDecodeError as exc:
        return Invalid(None, Reason.MALFORMED_JSON, str(exc), sent)
    if not isinstance(doc, dict):
        return Invalid(None, Reason.NOT_AN_OBJECT, f"expected an event object, got {type(doc).__name__}", sent)
    return doc


def _millis(value: Any) -> int | None:
    """``sent_at`` as epoch milliseconds (an integer a JavaScript number holds exactly); anything else is ignored,
    as if absent."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SAFE_INTEGER
    return value if ok else None
