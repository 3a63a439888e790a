"""Event-time tumbling windows and the per-partition watermark rule (pure functions, no I/O).

A partition's watermark is the largest event time it has seen (in offset order) minus the grace period. An
event whose time is below the watermark on arrival is late: it counts nowhere but the late-events topic.
A window is final once the watermark reaches its end; by the rule above it can never change afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SPEC = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str) -> int:
    """'10s' -> 10000 (milliseconds). Raises ValueError with a readable message."""
    match = _SPEC.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 10s, 1m, 1h)")
    return int(match.group(1)) * _UNITS[match.group(2)]


@cache
def label(size_ms: int) -> str:
    """10000 -> '10s': the shortest exact spelling, used in document ids."""
    for unit in ("d", "h", "m", "s"):
        if size_ms % _UNITS[unit] == 0:
            return f"{size_ms // _UNITS[unit]}{unit}"
    return f"{size_ms}ms"


def parse_sizes(text: str) -> tuple[int, ...]:
    """'10s,1m,1h' -> (10000, 60000, 3600000), sorted and de-duplicated."""
    sizes = sorted({parse_duration(part) for part in text.split(",") if part.strip()})
    if not sizes:
        raise ValueError("at least one window size is needed")
    return tuple(sizes)


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window (aligned to the epoch) that contains ``ts_ms``."""
    return ts_ms - ts_ms % size_ms


@dataclass
class Watermark:
    """Max event time seen minus grace. ``advance_to`` covers idle partitions closed by the wall clock."""

    grace_ms: int
    max_ts: int = -(1 << 62)
    floor: int = -(1 << 62)  # set by idle advances; never decreases

    @property
    def value(self) -> int:
        return max(self.max_ts - self.grace_ms, self.floor)

    def is_late(self, ts_ms: int) -> bool:
        return ts_ms < self.value

    def observe(self, ts_ms: int) -> None:
        if ts_ms > self.max_ts:
            self.max_ts = ts_ms

    def advance_to(self, value: int) -> bool:
        """Raise the watermark to at least ``value``; True if it moved."""
        if value > self.value:
            self.floor = value
            return True
        return False

    def is_final(self, start_ms: int, size_ms: int) -> bool:
        return start_ms + size_ms <= self.value
