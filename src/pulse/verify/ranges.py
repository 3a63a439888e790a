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


TO_MARGIN_MS = 60_000
"""Where the input past ``--to`` is expected to end (beyond the grace), for the progress bar: the walk reads on
until every owner watermark passed ``--to``, however far that is (forwarded records and other partitions'
watermarks arrive at the aggregator's takes)."""


@dataclass(frozen=True)
class Scope:
    """Which documents a run compares, and what its walk cannot know."""
    windows_from: int | None = None  # only windows starting at or after this (a range)
    windows_to: int | None = None  # only windows ending at or before this; the walk stops soon after
    unseen_before: int | None = None  # events before this time may exist unread (see PartitionTally)
    unread_before: int | None = None  # the records before the walk's start were stamped before this
    whole: bool = True  # the walk reads all the aggregates were built from: users, items and counters compared

    def wants(self, doc: dict[str, object]) -> bool:
        """True for a window document this scope compares."""
        start, end = int(doc["start"]), int(doc["end"])  # type: ignore[call-overload]
        return ((self.windows_from is None or start >= self.windows_from)
                and (self.windows_to is None or end <= self.windows_to))


def plan_scope(range_from: int | None, range_to: int | None, base: int | None, grace_ms: int,
               session_timeout_ms: int) -> tuple[int | None, Scope]:
    """Where to start reading (record time; None: the beginning) and what to compare, for windows starting at or
    after ``range_from`` and ending at or before ``range_to``, when the aggregates were built from the input since
    ``base`` (a replay's start; None: all of it). Whether the start turns out to be the aggregates' own beginning is
    known only once offsets are looked up: see :func:`exact`."""
    if range_from is None:
        return base, Scope(windows_to=range_to, whole=range_to is None)
    lead = rebuild_from(range_from, grace_ms, session_timeout_ms)
    start = lead.start if base is None else max(lead.start, base)
    return start, Scope(range_from, range_to, lead.unseen_before, start, whole=False)


def exact(scope: Scope, starts_at_base: bool, range_to: int | None) -> Scope:
    """The scope once it is known whether the walk starts where the aggregates' input began (nothing unread)."""
    if not starts_at_base:
        return scope
    return Scope(scope.windows_from, scope.windows_to, None, None, whole=range_to is None)
