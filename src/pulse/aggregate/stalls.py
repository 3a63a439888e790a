"""Stalled sources: an owner closes a window only once every partition's watermark has passed it, so a source
whose watermark stops moving (its aggregator died and no other instance took its partitions yet, or it hangs)
would hold its owners' windows open for ever. After `--stall-timeout` without a new watermark from a source that
holds an owner back (and did not say it is idle), the owner treats it as idle until its next watermark: it then
holds windows back by at most `--forward-wait` of event time, and its records below the owner's watermark are
late there. It depends on the wall clock, so it is a decision, recorded for restore and for `pulse verify`."""

from __future__ import annotations

import time
from collections.abc import Mapping

from pulse.aggregate import decisions
from pulse.aggregate.partition import Partition


class StallRule:
    def __init__(self, topic: str, stall_timeout_s: float) -> None:
        self.topic, self.timeout_s = topic, stall_timeout_s
        self._since: dict[tuple[int, int], tuple[int, float]] = {}  # (owner, source) → (its watermark, since when)

    def check(self, states: Mapping[int, Partition], now_wall: int) -> dict[int, list[bytes]]:
        """The stall decisions of this flush, by owning partition."""
        now = time.monotonic()
        decided: dict[int, list[bytes]] = {}
        for p, st in states.items():
            owner_watermark = st.watermark
            for source, (value, idle) in enumerate(st.marks):
                key = (p, source)
                if source == p or idle or value > owner_watermark:  # not holding this owner back
                    self._since.pop(key, None)
                    continue
                seen = self._since.get(key)
                if seen is None or seen[0] != value:
                    self._since[key] = (value, now)
                elif now - seen[1] >= self.timeout_s and st.stalled(source):
                    self._since.pop(key)
                    decided.setdefault(p, []).append(decisions.encode(decisions.Decision(
                        self.topic, p, st.next_offset, stalled=source, decided_at=now_wall)))
        return decided
