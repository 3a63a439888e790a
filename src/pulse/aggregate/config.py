"""The aggregation's settings, in a module of their own: the command line checks them before it loads the
engine (which it imports while the consumer joins its group)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StateConfig:
    window_sizes: tuple[int, ...] = (10_000, 60_000, 3_600_000, 86_400_000)
    grace_ms: int = 30_000
    # an event below the watermark by up to this much is counted as a correction (in revisions of its windows),
    # and an event_id is a duplicate while an event with it could still count
    correct_within_ms: int = 3 * 86_400_000
    session_timeout_ms: int = 30 * 60_000
    # users and sessions are logged as per-flush deltas; past this many entries (and twice the live state) they
    # are folded into a fresh snapshot, so restore reads live state, not history
    compact_after: int = 50_000
    # how far (event time) an idle partition may be behind the most advanced one and still hold back the windows
    # of the partitions it sends its watermark to (an empty or long-quiet partition must not stop them)
    forward_wait_ms: int = 300_000
    # a changed user's document goes out within the user budget (FlushPolicy), and after this long whatever it
    user_max_delay_ms: int = 300_000

    def __post_init__(self) -> None:
        if self.correct_within_ms < 0:
            raise ValueError("the correction horizon cannot be negative")
