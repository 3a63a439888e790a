"""Strict, fast validation of raw Kafka record values into :class:`Event`, with a typed reason on failure.

The success path is one msgspec decode plus two comparisons; only failures pay for classification.
"""

from __future__ import annotations

import enum
import re

import msgspec

from pulse.events.schema import MAX_EVENT_BYTES, MAX_FUTURE_MS, NAME_PATTERN, Event


class Reason(enum.StrEnum):
    """Why an event was rejected; written with it to the dead-letter topic."""

    UNDECODABLE = "undecodable"  # not UTF-8
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    BAD_FORMAT = "bad_format"
    BAD_NAME = "bad_name"  # an event type or status that cannot be a field name
    UNSUPPORTED_VERSION = "unsupported_version"
    FUTURE_TIMESTAMP = "future_timestamp"
    OVERSIZED = "oversized"
    INCONSISTENT = "inconsistent"


class Rejection(msgspec.Struct, frozen=True):
    reason: Reason
    detail: str


_DECODER = msgspec.json.Decoder(Event)
_NEEDS_ITEM = frozenset({"add_to_cart", "purchase"})
_PATH = re.compile(r"at `\$\.(\w+)`")
# fullmatch, not the model's regex: msgspec searches, and `$` there also matches before a final newline
_NAME = re.compile(NAME_PATTERN.strip("^$"))


def validate(raw: bytes, ref_ts_ms: int) -> Event | Rejection:
    """Decode and check one record value. ``ref_ts_ms`` is the record's timestamp (so replays agree)."""
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection(Reason.OVERSIZED, f"{len(raw)} bytes > {MAX_EVENT_BYTES}")
    try:
        event = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        return _classify(str(exc))
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return _undecodable(raw, exc)
    if event.ts > ref_ts_ms + MAX_FUTURE_MS:
        return Rejection(Reason.FUTURE_TIMESTAMP, f"ts {event.ts} is {(event.ts - ref_ts_ms) // 1000}s ahead")
    for field, name in (("event_type", event.event_type), ("status", event.status)):
        if not _NAME.fullmatch(name):
            return Rejection(Reason.BAD_NAME, f"{field} {name!r} does not match {NAME_PATTERN}")
    if not (event.country.isalpha() and event.country.isupper()):
        return Rejection(Reason.BAD_FORMAT, f"country {event.country!r} is not ISO 3166-1 alpha-2")
    if not (event.currency.isalpha() and event.currency.isupper()):
        return Rejection(Reason.BAD_FORMAT, f"currency {event.currency!r} is not ISO 4217")
    if event.event_type in _NEEDS_ITEM:
        if event.item_id is None:
            return Rejection(Reason.INCONSISTENT, f"{event.event_type} without item_id")
        if event.event_type == "purchase" and event.amount is None:
            return Rejection(Reason.INCONSISTENT, "purchase without amount")
    return event


def _undecodable(raw: bytes, exc: Exception) -> Rejection:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Rejection(Reason.UNDECODABLE, f"not UTF-8 at byte {bad.start}")
    return Rejection(Reason.MALFORMED_JSON, str(exc))


def _classify(message: str) -> Rejection:
    """Map msgspec's validation message to a typed reason (only on the failure path)."""
    match = _PATH.search(message)
    field = match.group(1) if match else ""
    if message.startswith("Object missing required field"):
        reason = Reason.MISSING_FIELD
    elif message.startswith("Object contains unknown field"):
        reason = Reason.UNKNOWN_FIELD
    elif field == "schema_version":
        reason = Reason.UNSUPPORTED_VERSION
    elif message.startswith("Expected `object`"):
        reason = Reason.NOT_AN_OBJECT
    elif ", got `" in message:
        reason = Reason.WRONG_TYPE
    elif "of length <=" in message:
        reason = Reason.TOO_LONG
    elif "of length >=" in message:
        reason = Reason.TOO_SHORT
    elif "matching regex" in message:
        reason = Reason.BAD_FORMAT
    elif field == "ts" and "<=" in message:
        reason = Reason.FUTURE_TIMESTAMP
    else:
        reason = Reason.OUT_OF_RANGE
    return Rejection(reason, message)
