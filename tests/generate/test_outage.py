"""The producer's outage lines: one when acknowledgements stop with records waiting, one when they resume,
however often librdkafka says every broker is down in between."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.generate.outage import AckWatch

STALL = 10.0

# one observation: seconds since the last, records newly acknowledged, records waiting, "all brokers down" before it
steps = st.lists(st.tuples(st.floats(0.0, 4.0), st.integers(0, 3), st.integers(0, 5), st.booleans()), max_size=80)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_one_line_per_outage_announced_only_after_a_stall_and_closed_only_by_an_acknowledgement(
        trace: list[tuple[float, int, int, bool]]) -> None:
    watch = AckWatch("127.0.0.1:9092", started=0.0, stall_s=STALL)
    now, delivered, last_progress, open_since = 0.0, 0, 0.0, None
    for gap, acked, waiting, down in trace:
        now += gap
        delivered += acked
        if down:
            watch.all_brokers_down()
        line = watch.observe(delivered, waiting, now)
        progressed = acked > 0 or waiting == 0
        # the reference: an outage opens when nothing progressed for STALL seconds, and closes at the next progress
        began = open_since
        if progressed:
            expected = "resumes" if open_since is not None else None
            open_since, last_progress = None, now
        elif open_since is None and now - last_progress >= STALL:
            expected, open_since = "opens", last_progress
        else:
            expected = None
        if expected is None:
            assert line is None, (now, line)
        elif expected == "opens":
            assert line is not None and line.endswith("; waiting (records are kept and resent, none is dropped)")
            assert f"{waiting} records" in line
        else:
            assert began is not None and line == f"Kafka acknowledges again after {now - began:.0f}s; resuming", line
        assert watch.in_outage == (open_since is not None)


def test_the_announcement_names_unreachable_brokers_only_when_librdkafka_found_them_down_since_the_last_ack() -> None:
    watch = AckWatch("127.0.0.1:9092", started=0.0, stall_s=STALL)
    assert watch.observe(5, 3, 1.0) is None
    watch.all_brokers_down()
    assert watch.observe(6, 3, 2.0) is None  # a flap while acknowledgements go on says nothing and is forgotten
    assert watch.observe(6, 3, 11.0) is None
    line = watch.observe(6, 4, 12.0)
    assert line and line.startswith("Kafka has acknowledged none of 4 records for 10s (brokers down, or too few")
    assert watch.observe(6, 4, 40.0) is None  # said once
    assert watch.observe(7, 0, 41.0) == "Kafka acknowledges again after 39s; resuming"

    watch.all_brokers_down()
    assert watch.observe(7, 2, 50.0) is None
    line = watch.observe(7, 2, 51.5)
    assert line and line.startswith("Kafka at 127.0.0.1:9092 has been unreachable for 10s with 2 records waiting")
