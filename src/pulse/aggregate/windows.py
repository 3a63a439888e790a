"""Window sizes: parsing operators' durations and the labels used in document ids (pure functions, no I/O).

The rules themselves live in the native core (``native/src/state.rs``): windows are tumbling and aligned to
the epoch; a partition's watermark is the largest event time it has seen (in offset order) minus the grace
period; an event below the watermark on arrival is late and counts nowhere but the late-events topic; a window
is final once the watermark reaches its end, so by that rule it can never change afterwards.
"""

from __future__ import annotations

import re

from pulse.aggregate._core import label

__all__ = ["label", "parse_duration", "parse_sizes"]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SPEC = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str) -> int:
    """'10s' -> 10000 (milliseconds). Raises ValueError with a readable message."""
    match = _SPEC.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 10s, 1m, 1h)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_sizes(text: str) -> tuple[int, ...]:
    """'10s,1m,1h' -> (10000, 60000, 3600000), sorted and de-duplicated."""
    sizes = sorted({parse_duration(part) for part in text.split(",") if part.strip()})
    if not sizes:
        raise ValueError("at least one window size is needed")
    return tuple(sizes)
