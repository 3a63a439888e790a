"""The collector's request decoding, limits and clock correction (pure logic)."""

from __future__ import annotations

import gzip
import uuid

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulse.aggregate._core import Admitted
from pulse.collect import keys
from pulse.collect.intake import (
    DEVICE_TS_HEADER,
    RECEIVED_AT_HEADER,
    SENT_AT_HEADER,
    Invalid,
    Limits,
    Ready,
    Refused,
    headers,
    inflate,
    parse_batch,
    parse_event,
    prepare,
    prepare_all,
)
from pulse.errors import PulseError
from pulse.events.validate import validate

NOW = 1_796_000_000_000


def event(**fields: object) -> dict[str, object]:
    return {"event_id": str(uuid.uuid4()), "event_type": "click", "ts": NOW - 1000, "user_id": "u1",
            "session_id": "s1", **fields}


def sent(**fields: object) -> bytes:
    return orjson.dumps(event(**fields))


def refused(call: object) -> Refused:
    with pytest.raises(Refused) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_gzip_is_inflated_with_or_without_its_header_and_a_bomb_is_refused() -> None:
    body = orjson.dumps({"events": [event()]})
    assert inflate(gzip.compress(body), "gzip", Limits()) == body
    assert inflate(gzip.compress(body), None, Limits()) == body  # sendBeacon cannot set Content-Encoding
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    assert len(bomb) < 100_000
    assert refused(lambda: inflate(bomb, "gzip", Limits())).status == 413
    assert refused(lambda: inflate(gzip.compress(body)[:-10], "gzip", Limits())).reason == "bad_gzip"
    assert refused(lambda: inflate(body, "br", Limits())).status == 415
    assert refused(lambda: inflate(b"x" * 2000, None, Limits(body_bytes=1000))).status == 413


def test_batches_come_as_an_object_or_an_array_within_the_limits() -> None:
    one = event()
    batch = parse_batch(orjson.dumps({"events": [one], "sent_at": NOW, "key": "k" * 8}), Limits())
    assert (batch.events, batch.sent_at, batch.key) == ([orjson.dumps(one)], NOW, "k" * 8)
    assert parse_batch(orjson.dumps([one]), Limits()).events == [orjson.dumps(one)]
    assert refused(lambda: parse_batch(b'{"events": 3}', Limits())).reason == "no_events"
    assert refused(lambda: parse_batch(b"{nope", Limits())).reason == "malformed_json"
    assert refused(lambda: parse_batch(b'"text"', Limits())).status == 400
    assert refused(lambda: parse_batch(orjson.dumps([one] * 11), Limits(events=10))).reason == "too_many_events"
    assert refused(lambda: parse_event(orjson.dumps(event(category="x" * 5000)))).status == 413


def test_a_valid_event_is_keyed_by_user_and_keeps_its_clocks_in_headers() -> None:
    one = event()
    ready = prepare(orjson.dumps(one), None, NOW)
    assert isinstance(ready, Ready)
    assert ready.key == b"u1" and orjson.loads(ready.value) == one
    assert headers(ready, b"%d" % NOW) == {DEVICE_TS_HEADER: b"%d" % (NOW - 1000), RECEIVED_AT_HEADER: b"%d" % NOW}


@given(skew=st.integers(-86_400_000 * 30, 86_400_000 * 30), age=st.integers(0, 86_400_000),
       transit=st.integers(0, 60_000))
def test_the_device_clock_is_corrected_by_its_offset_at_sending(skew: int, age: int, transit: int) -> None:
    """A device clock ``skew`` ms off stamps an event ``age`` ms before sending it; it arrives ``transit`` later.
    The corrected time is the true event time, up to the transit."""
    true_ts = NOW - transit - age
    out = prepare(sent(ts=true_ts + skew, sent_at=NOW - transit + skew), None, NOW)
    if true_ts + skew < 946_684_800_000 or true_ts + skew > 4_102_444_800_000:
        assert isinstance(out, Invalid)  # the device's own time is outside the contract
        return
    assert isinstance(out, Ready), out
    assert orjson.loads(out.value)["ts"] == true_ts + transit
    found = headers(out, b"%d" % NOW)
    assert found[DEVICE_TS_HEADER] == b"%d" % (true_ts + skew)
    assert found[SENT_AT_HEADER] == b"%d" % (NOW - transit + skew)


def test_batch_sent_at_applies_unless_the_event_has_its_own() -> None:
    own = prepare(sent(ts=NOW - 5000, sent_at=NOW - 4000), NOW + 10_000, NOW)
    batch = prepare(sent(ts=NOW - 5000), NOW + 10_000, NOW)
    assert isinstance(own, Ready) and isinstance(batch, Ready)
    assert orjson.loads(own.value)["ts"] == NOW - 1000
    assert orjson.loads(batch.value)["ts"] == NOW - 15_000


def test_invalid_events_keep_their_reason_and_bytes() -> None:
    bad = prepare(sent(event_type="purchase"), None, NOW)
    assert isinstance(bad, Invalid) and bad.reason == "inconsistent" and bad.event_id is not None
    assert orjson.loads(bad.raw)["event_type"] == "purchase"
    assert prepare(b'"text"', None, NOW).reason == "not_an_object"  # type: ignore[union-attr]
    future = prepare(sent(ts=NOW + 3_600_000), None, NOW)
    assert isinstance(future, Invalid) and future.reason == "future_timestamp"
    extra = prepare(sent(color="red"), None, NOW)
    assert isinstance(extra, Invalid) and extra.reason == "unknown_field"


def texts() -> st.SearchStrategy[bytes]:
    """Events as clients write them, valid or not, in the shape the native core reads and in others."""
    value = st.one_of(st.integers(-2, 2**53), st.text(max_size=70), st.none(), st.floats(allow_nan=False),
                      st.sampled_from(["click", "purchase", "US", "us", "EUR", "ok", "Bad Name", "u1"]))
    fields = st.dictionaries(st.sampled_from(["event_id", "event_type", "ts", "user_id", "session_id", "item_id",
                                              "amount", "country", "currency", "status", "quantity", "sent_at",
                                              "color"]), value, max_size=4)
    base = st.builds(lambda ts, f: {**event(ts=ts), **f}, st.integers(NOW - 10**11, NOW + 10**9), fields)
    return st.one_of(base.map(orjson.dumps), base.map(lambda e: orjson.dumps(e, option=orjson.OPT_INDENT_2)),
                     st.binary(max_size=40))


@given(events=st.lists(texts(), max_size=8), sent_at=st.one_of(st.none(), st.integers(NOW - 10**10, NOW + 10**10)))
def test_the_native_fast_path_decides_as_the_contract_does(events: list[bytes], sent_at: int | None) -> None:
    """Differential: what the native core admits, the Python path admits with the same record; what it leaves,
    the Python path decides."""
    for fast, own in zip(prepare_all(events, sent_at, NOW), [prepare(e, sent_at, NOW) for e in events],
                         strict=True):
        assert isinstance(fast, Invalid) == isinstance(own, Invalid), (fast, own)
        if isinstance(own, Invalid):
            assert fast == own
            continue
        assert (fast.event_id, fast.key, fast.device_ts, fast.sent_at) == (own.event_id, own.key, own.device_ts,
                                                                           own.sent_at)
        assert validate(fast.value, NOW) == validate(own.value, NOW)  # the same event (defaults may be written)


def test_write_keys_name_their_origins_and_never_print_the_key() -> None:
    found = keys.parse("webkey-123=https://shop.example,https://www.shop.example/\n# a comment\nserverkey-1",
                       "test")
    web = found.find("webkey-123")
    assert web is not None and web.allows("https://shop.example") and web.allows("https://www.shop.example")
    assert not web.allows("https://evil.example") and web.allows(None)
    server = found.find("serverkey-1")
    assert server is not None and not server.allows("https://shop.example")
    assert found.find("wrong") is None and found.find(None) is None
    assert "webkey" not in repr(web)
    assert found.origin_known("https://shop.example") and not found.origin_known("https://evil.example")
    with pytest.raises(PulseError, match="8 characters"):
        keys.parse("short=*", "test")
    with pytest.raises(PulseError, match="not http"):
        keys.parse("longenough=shop.example", "test")


def test_a_sent_at_no_javascript_number_holds_is_ignored_not_an_error() -> None:
    one = event()
    batch = parse_batch(orjson.dumps({"events": [one], "sent_at": 2**63}), Limits())
    assert batch.sent_at is None
    assert isinstance(prepare_all(batch.events, batch.sent_at, NOW)[0], Admitted)


def test_a_spaced_out_event_is_judged_by_its_compact_size() -> None:
    spaced = orjson.dumps(event(category="c" * 60), option=orjson.OPT_INDENT_2).replace(b"\n", b"\n" + b" " * 600)
    assert len(spaced) > 4096
    ready = prepare(spaced, None, NOW)
    assert isinstance(ready, Ready) and len(ready.value) < 4096
