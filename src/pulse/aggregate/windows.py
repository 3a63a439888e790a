"""Window sizes: parsing them (in the one duration spelling, :mod:`pulse.durations`) and the labels used in
document ids (pure functions, no I/O).

The rules themselves live in the native core (``native/src/state.rs``): windows are tumbling and aligned to
the epoch; a partition's watermark is the largest event time it has seen (in offset order) minus the grace
period; an event below the watermark on arrival is late and counts nowhere but the late-events topic; a window
is final once the watermark reaches its end, so by that rule it can never change afterwards.
"""

from __future__ import annotations

from pulse.aggregate._core import label
from pulse.durations import parse_ms

__all__ = ["label", "parse_sizes"]


def parse_sizes(text: str) -> tuple[int, ...]:
    """'10s,1m,1h' -> (10000, 60000, 3600000), sorted and de-duplicated."""
    sizes = sorted({parse_ms(part) for part in text.split(",") if part.strip()})
    if not sizes:
        raise ValueError("at least one window size is needed")
    return tuple(sizes)
