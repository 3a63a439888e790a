"""Interaction event schema v1: the contract between producers and the aggregator.

The msgspec model below is the single source of truth; ``event-v1.schema.json`` (for users' own producers)
is generated from it by ``pulse events schema`` and a test keeps the two identical.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1
MAX_EVENT_BYTES: Final = 4096
"""Larger payloads are rejected before parsing (reason ``oversized``)."""
MIN_TS_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z: anything older is a unit mistake (seconds instead of milliseconds)."""
MAX_FUTURE_MS: Final = 5 * 60 * 1000
"""How far ahead of the record's broker timestamp an event time may be before it is rejected."""

NAME_PATTERN: Final = "^[a-z][a-z0-9_]*$"
"""Event types and statuses: they become field names in Elasticsearch (``counts.<type>``), where a dot makes a
path and a leading underscore a metadata name. Others are rejected as ``bad_name``."""

CORE_EVENT_TYPES: Final = ("view", "click", "add_to_cart", "purchase")
"""The ordered funnel. Other lower-case event types are accepted (the schema is extensible)."""
OK_STATUS: Final = "ok"

# No regex patterns on hot fields: msgspec runs a regex per value, on every event; lengths are nearly free.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]


# Only scalars inside, so an event is never part of a reference cycle: ``gc=False`` keeps the hundreds of
# thousands decoded per second out of the cyclic garbage collector's bookkeeping.
class Event(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, gc=False):
    """One user interaction. ``ts`` is event time in UTC epoch milliseconds."""

    event_id: Annotated[Id, msgspec.Meta(description="Unique, client-generated; duplicates count once.")]
    event_type: Annotated[Name, msgspec.Meta(description="view, click, add_to_cart, purchase, or another.")]
    ts: Annotated[int, msgspec.Meta(ge=MIN_TS_MS, le=4_102_444_800_000, description="Event time, UTC ms.")]
    user_id: Id
    session_id: Id
    item_id: Id | None = None
    category: Label | None = None
    price: Annotated[Money, msgspec.Meta(description="Unit price.")] | None = None
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    amount: Annotated[Money, msgspec.Meta(description="Revenue; required on purchases.")] | None = None
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3, description="ISO 4217, upper case.")] = "USD"
    status: Annotated[Name, msgspec.Meta(description="ok, error, timeout, payment_failed, …")] = OK_STATUS
    device: Annotated[str, msgspec.Meta(min_length=1, max_length=16)] = "unknown"
    country: Annotated[str, msgspec.Meta(min_length=2, max_length=2, description="ISO 3166-1 alpha-2.")] = "ZZ"
    schema_version: Literal[1] = SCHEMA_VERSION


def json_schema() -> dict[str, object]:
    """The JSON Schema document shipped for users' producers (with the rules JSON Schema can express)."""
    schema = msgspec.json.schema(Event)
    body = schema["$defs"]["Event"]
    body["additionalProperties"] = False
    for name in ("event_type", "status"):
        body["properties"][name]["pattern"] = NAME_PATTERN  # checked after decoding (see validate)
    body["allOf"] = [{
        "if": {"properties": {"event_type": {"const": "purchase"}}, "required": ["event_type"]},
        "then": {"required": ["amount", "item_id"]},
    }]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "pulse/event-v1.schema.json",
        "title": "Pulse interaction event, schema version 1",
        "description": (
            "One JSON object per Kafka record, keyed by user_id. Beyond this schema, Pulse rejects: payloads "
            f"over {MAX_EVENT_BYTES} bytes; ts more than {MAX_FUTURE_MS // 1000}s ahead of the record's "
            "timestamp; add_to_cart/purchase without item_id; currency or country not upper-case letters. "
            "Every rejection has a typed reason; an event_type or status outside its pattern is `bad_name`."
        ),
        **body,
        # not JSON Schema's to say, and the native validator's too: see native/build.rs
        "x-pulse-limits": {"max_event_bytes": MAX_EVENT_BYTES, "max_future_ms": MAX_FUTURE_MS},
    }
