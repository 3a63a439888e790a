"""Event schema v1: the shipped JSON Schema, the msgspec model, and typed rejection reasons."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pulse.events.schema import MAX_EVENT_BYTES, MAX_FUTURE_MS, Event, json_schema
from pulse.events.validate import Reason, Rejection, validate

NOW = 1_795_000_000_000
GOOD = {
    "event_id": "e1-1", "event_type": "purchase", "ts": NOW - 1000, "user_id": "u0000001", "session_id": "s1",
    "item_id": "i000001", "category": "books", "price": 12.5, "quantity": 2, "amount": 25.0, "currency": "USD",
    "status": "ok", "device": "mobile", "country": "US", "schema_version": 1,
}
SHIPPED = json.loads((resources.files("pulse.events") / "event-v1.schema.json").read_text())


def test_shipped_json_schema_is_generated_from_the_model() -> None:
    assert json_schema() == SHIPPED, "run `pulse events schema > src/pulse/events/event-v1.schema.json`"


def test_good_event_passes_both_the_model_and_the_json_schema() -> None:
    assert isinstance(validate(orjson.dumps(GOOD), NOW), Event)
    jsonschema.validate(GOOD, SHIPPED)


@pytest.mark.parametrize(("change", "reason"), [
    ({"price": -1.0}, Reason.OUT_OF_RANGE),
    ({"quantity": 0}, Reason.OUT_OF_RANGE),
    ({"ts": "yesterday"}, Reason.WRONG_TYPE),
    ({"user_id": 42}, Reason.WRONG_TYPE),
    ({"event_id": ""}, Reason.TOO_SHORT),
    ({"event_id": "x" * 65}, Reason.TOO_LONG),
    ({"ts": NOW + MAX_FUTURE_MS + 1}, Reason.FUTURE_TIMESTAMP),
    ({"ts": 1_700_000_000}, Reason.OUT_OF_RANGE),  # seconds, not milliseconds
    ({"schema_version": 2}, Reason.UNSUPPORTED_VERSION),
    ({"surprise": True}, Reason.UNKNOWN_FIELD),
    ({"country": "us"}, Reason.BAD_FORMAT),
    ({"currency": "usd"}, Reason.BAD_FORMAT),
    ({"event_type": "view.x"}, Reason.BAD_NAME),
    ({"event_type": "_id"}, Reason.BAD_NAME),
    ({"event_type": "View"}, Reason.BAD_NAME),
    ({"event_type": "view\n"}, Reason.BAD_NAME),
    ({"status": "a.b"}, Reason.BAD_NAME),
    ({"amount": None}, Reason.INCONSISTENT),
    ({"item_id": None}, Reason.INCONSISTENT),
])
def test_each_rule_gives_its_typed_reason(change: dict[str, object], reason: Reason) -> None:
    result = validate(orjson.dumps(GOOD | change), NOW)
    assert isinstance(result, Rejection)
    assert result.reason is reason, result.detail


@pytest.mark.parametrize("field", ["event_id", "event_type", "ts", "user_id", "session_id"])
def test_missing_required_field(field: str) -> None:
    result = validate(orjson.dumps({k: v for k, v in GOOD.items() if k != field}), NOW)
    assert isinstance(result, Rejection) and result.reason is Reason.MISSING_FIELD
    assert field in result.detail


def test_bytes_level_failures() -> None:
    assert validate(b"\xff\xfe\x00garbage", NOW).reason is Reason.UNDECODABLE  # type: ignore[union-attr]
    assert validate(b'{"event_id": "e1", ', NOW).reason is Reason.MALFORMED_JSON  # type: ignore[union-attr]
    assert validate(b"[1, 2]", NOW).reason is Reason.NOT_AN_OBJECT  # type: ignore[union-attr]
    big = orjson.dumps(GOOD | {"category": "x" * MAX_EVENT_BYTES})
    assert validate(big, NOW).reason is Reason.OVERSIZED  # type: ignore[union-attr]


def test_json_schema_rejects_what_the_model_rejects_structurally() -> None:
    for change in ({"price": -1.0}, {"user_id": 42}, {"surprise": True}, {"amount": None, "item_id": None}):
        bad = {k: v for k, v in (GOOD | change).items() if v is not None}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SHIPPED)


ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=64)
valid_events = st.fixed_dictionaries({
    "event_id": ids, "event_type": st.sampled_from(["view", "click", "add_to_cart", "purchase", "search"]),
    "ts": st.integers(946_684_800_000, NOW + MAX_FUTURE_MS), "user_id": ids, "session_id": ids,
    "item_id": ids, "category": st.text(min_size=1, max_size=64),
    "price": st.floats(0, 1_000_000, allow_nan=False), "quantity": st.integers(1, 10_000),
    "amount": st.floats(0, 1_000_000, allow_nan=False), "country": st.sampled_from(["US", "DE", "JP"]),
})


@settings(max_examples=300, deadline=None)
@given(valid_events)
def test_any_event_within_the_rules_is_accepted(event: dict[str, object]) -> None:
    result = validate(orjson.dumps(event), NOW)
    assert isinstance(result, Event), result
    jsonschema.validate(event, SHIPPED)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(validate(raw, NOW), Event | Rejection)


@settings(max_examples=200, deadline=None)
@given(valid_events, st.floats(max_value=-0.01, allow_nan=False, allow_infinity=False))
def test_negative_prices_are_always_rejected(event: dict[str, object], price: float) -> None:
    result = validate(orjson.dumps(event | {"price": price}), NOW)
    assert isinstance(result, Rejection) and result.reason is Reason.OUT_OF_RANGE


@settings(max_examples=400, deadline=None)
@given(st.text(min_size=1, max_size=32), st.sampled_from(["event_type", "status"]))
def test_a_name_is_accepted_exactly_when_the_json_schema_accepts_it(name: str, field: str) -> None:
    """Event types and statuses become field names in Elasticsearch: the validator and the shipped schema agree
    on which are allowed, and the native fast path never accepts one they refuse."""
    from pulse.aggregate.partition import StateConfig, new_partition

    # Python's jsonschema searches with `re`, whose `$` also matches before a final newline (ECMA-262's does
    # not); that case is among the typed-reason cases above
    assume(not name.endswith("\n"))
    event = GOOD | {field: name}
    by_schema = jsonschema.Draft202012Validator(SHIPPED).is_valid(event)
    result = validate(orjson.dumps(event), NOW)
    assert isinstance(result, Event) == by_schema, (name, result)
    if not by_schema:
        assert result.reason is Reason.BAD_NAME  # type: ignore[union-attr]
        assert not new_partition(0, StateConfig()).process(0, None, orjson.dumps(event), NOW)
