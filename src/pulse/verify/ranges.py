"""What a range of the input (`pulse verify --from/--to`) can check, and where its walk must start.

A window whose events all lie in the range depends on state carried in from before it: the partitions' clocks
(which records were late), the event ids within the duplicate horizon, and the sessions' funnel progress. The walk
starts early enough to rebuild the first two exactly, and marks what the third leaves unknown:
- input records before the walk's first offset have record times before ``start`` (the broker stamps input
  records: pulse setup sets ``LogAppendTime``), so their event times are before ``start + max_future`` (later
  ones are dead-lettered). None of them can be a first copy of an event in the range, nor move a clock past it,
  once the range begins ``max(max_future, grace)`` after ``start``;
- a session may run on across ``start``: its funnel progress is unknown until a gap longer than the session
  timeout, so the windows its events fall in are compared without their funnel (``UNCHECKED``). Starting a
  session timeout earlier leaves only sessions active over the whole lead-in unknown;
- an item row's category is the first one its partition saw, perhaps long before: not compared;
- users, items and the partition counters accumulate over all time: a range does not compare them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pulse.events.schema import MAX_FUTURE_MS


@dataclass(frozen=True)
class Lead:
    """Where a range's walk starts (record time) and what it can never see."""
    start: int  # read input records from this record time on
    unseen_before: int  # event times of records before ``start`` are all before this


def rebuild_from(range_from: int, grace_ms: int, session_timeout_ms: int, max_future_ms: int = MAX_FUTURE_MS) -> Lead:
    """The lead-in of a range whose windows start at or after ``range_from``."""
    start = range_from - max(max_future_ms, grace_ms) - session_timeout_ms
    return Lead(start, start + max_future_ms)
