"""``restore_all`` decodes several partitions' changelogs in parallel, off the GIL: each state comes back as
``Partition.restore`` would bring it back alone, and a changelog it cannot read is named by partition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.aggregate._core import restore_all
from pulse.aggregate.partition import EVERY_USER, Details, StateConfig, new_partition, route
from pulse.generate.chaos import ChaosConfig
from tests.aggregate.test_batch import plain
from tests.aggregate.test_partition_vs_reference import SIZES, make_rows

CFG = StateConfig(window_sizes=SIZES)


def _changelogs(seed: int, partitions: int) -> list[list[tuple[int, bytes, bytes | None]]]:
    """Each partition's changelog after two flushes of routed input (the last of them, two at least, gets none)."""
    rows = make_rows(3_000, seed, ChaosConfig(late_fraction=0.03, invalid_fraction=0.03), partitions=partitions - 1)
    states = [new_partition(p, CFG) for p in range(partitions)]
    logs: list[list[tuple[int, bytes, bytes | None]]] = [[] for _ in states]
    half = len(rows) // 2
    for batch in (rows[:half], rows[half:]):
        for p, offset, value, ts in batch:
            route(states[p], offset, b"k", value, ts)
        for p, state in enumerate(states):
            out = state.flush(Details.DUE, 100, 7)
            if out is not None:
                logs[p].extend((len(logs[p]), r.key, r.value) for r in out.records)
            state.handed_over()
    return logs


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000), partitions=st.integers(2, 5))
def test_restoring_partitions_together_equals_restoring_each(seed: int, partitions: int) -> None:
    logs = _changelogs(seed, partitions)
    together = [new_partition(p, CFG) for p in range(partitions)]
    each = [new_partition(p, CFG) for p in range(partitions)]
    keys = restore_all(together, logs)
    assert keys[0] > 0 and keys[-1] == 0
    assert keys == [state.restore(log) for state, log in zip(each, logs, strict=True)]
    for a, b in zip(together, each, strict=True):
        assert (a.next_offset, a.watermark, a.counters.as_list(), a.sizes.users, a.pending_users()) == \
               (b.next_offset, b.watermark, b.counters.as_list(), b.sizes.users, b.pending_users())
        assert plain(a.flush(Details.ALL, EVERY_USER, 9)) == plain(b.flush(Details.ALL, EVERY_USER, 9))


def test_a_changelog_that_cannot_be_read_is_named_by_partition_and_the_others_are_not_blamed() -> None:
    logs = _changelogs(3, 3)
    logs[1] = [*logs[1], (len(logs[1]), b"e/999", b"\xc1 not msgpack")]
    with pytest.raises(ValueError, match=r"^partition 1: changelog record \"e/999\" is not readable"):
        restore_all([new_partition(p, CFG) for p in range(3)], logs)


def test_one_changelog_per_partition() -> None:
    with pytest.raises(ValueError, match="one changelog per partition"):
        restore_all([new_partition(0, CFG)], [])
