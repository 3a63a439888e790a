"""The independent recompute of every Pulse aggregate from raw input records, held in memory.

It shares no aggregation code with the engine: which records count, and where, follows
:mod:`pulse.verify.order` (walked per partition by :mod:`pulse.verify.walk`), and the documents are built by
:mod:`pulse.verify.tally`. Its output has the engine's document ids and fields, so the two can be diffed exactly.
This form serves tests and small inputs; `pulse verify` streams the same walk (:mod:`pulse.verify.audit`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pulse.verify import revisions
from pulse.verify.lookahead import Entry, Lookahead, index
from pulse.verify.order import Counts, Decisions, Floor, Forward, Forwarded, Marker, Stall, Take, Taken
from pulse.verify.tally import PartitionTally
from pulse.verify.walk import Doc, PartitionWalk, Row, Rules, check_flows, sent_markers

__all__ = ["Decisions", "Expected", "Floor", "Forward", "Forwarded", "Marker", "Stall", "Take", "recompute"]


@dataclass
class Expected:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    produced: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    late: int = 0
    duplicates: int = 0
    forwarded: int = 0  # valid records counted by the partition that owns their user, not where they were read
    corrected: int = 0
    problems: list[str] = field(default_factory=list)  # the repartition topic disagrees with the input

    @classmethod
    def of(cls, counts: Counts, docs: dict[str, dict[str, Any]]) -> Expected:
        return cls(docs, counts.read, counts.accepted, counts.dead_lettered, counts.late, counts.duplicates,
                   counts.forwarded, counts.corrected, list(counts.problems))


def recompute(records: Iterable[tuple[int, int, bytes | None, int]], window_sizes: Iterable[int], grace_ms: int,
              horizon_ms: int, session_timeout_ms: int = 30 * 60_000, decisions: Decisions | None = None,
              forwarded: Forwarded | None = None, partitions: int = 0, forward_wait_ms: int = 300_000,
              starts: dict[int, int] | None = None, unseen_before: int | None = None,
              unread_before: int | None = None, native: bool = False) -> Expected:
    """``records``: (partition, offset, value, record timestamp ms) in any order. ``partitions``: the input topic's
    partition count, to tell records whose user another partition owns (0: every record counts where read).
    ``forwarded`` may name records by position alone: their values are taken from ``records``. ``starts``: walk
    each partition from this offset on, the records before it stamped before ``unread_before`` (a range; see
    :func:`pulse.verify.ranges.rebuild_from`). ``native``: walk with :class:`pulse.verify.native.NativeWalk`,
    the second implementation `pulse verify` streams with."""
    starts = starts or {}
    rows: dict[int, list[Row]] = defaultdict(list)
    for partition, offset, value, record_ts in records:
        if offset >= starts.get(partition, 0):
            rows[partition].append((offset, value, record_ts))
    for p in rows:
        rows[p].sort(key=lambda r: r[0])
    decisions, forwarded = decisions or {}, forwarded or {}
    at = {(p, offset): (value, ts) for p, rs in rows.items() for offset, value, ts in rs}
    taken = {q: [(o, _filled(item, at)) for o, item in items] for q, items in forwarded.items()}
    markers = sent_markers(item for items in taken.values() for item in items)
    rules = Rules(grace_ms, horizon_ms, forward_wait_ms, partitions, starts, unread_before)
    sizes = list(window_sizes)
    docs: dict[str, dict[str, Any]] = {}
    counts, walks = Counts(), []

    def keep(_watermark: int, finished: list[Doc]) -> None:
        docs.update(finished)

    for p in sorted(rows.keys() | taken.keys()):
        if native:
            from pulse.verify.native import NativeWalk, RowRecord

            fast = NativeWalk(p, rules, sizes, session_timeout_ms, unseen_before, keep, decisions.get(p, []),
                              markers.get(p, []), _lookahead(taken.get(p, [])))
            fast.feed([RowRecord(*row) for row in rows.get(p, [])], taken.get(p, []))
            walks.append(fast.close())
            windows, entities = fast.finish()
            corrections = fast.revisions()
        else:
            tally = PartitionTally(p, sizes, session_timeout_ms, unseen_before)
            walk = PartitionWalk(p, rules, decisions.get(p, []), markers.get(p, []), tally, keep,
                                 _lookahead(taken.get(p, [])))
            walks.append(walk.run(rows.get(p, []), taken.get(p, [])))
            windows, entities = tally.finish()
            corrections = tally.revisions()
        counts.add(walks[-1].counts)
        docs.update(windows)
        docs.update(entities)
        docs.update(revisions.expected(corrections))
    counts.problems += check_flows(walks, corrections=not any(starts.values()))
    return Expected.of(counts, docs)


def _lookahead(items: list[Taken]) -> Lookahead:
    entries: list[Entry] = [(o, item.partition, item.value if isinstance(item, Marker) else None) for o, item in items]
    return index(entries, items[-1][0] + 1 if items else 0)


def _filled(item: Forward | Marker, at: dict[tuple[int, int], tuple[bytes | None, int]]) -> Forward | Marker:
    if isinstance(item, Forward) and item.value is None and (item.partition, item.offset) in at:
        value, ts = at[(item.partition, item.offset)]
        return Forward(item.partition, item.offset, item.record_ts or ts, value, item.correction)
    return item
