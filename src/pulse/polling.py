"""Waiting for something outside Pulse's control to become true: a service healthy, replicas back in sync."""

from __future__ import annotations

import time
from collections.abc import Callable

from pulse.errors import PulseError


class WaitFailed(PulseError):
    """A wait timed out, or was ended because what it waited on can no longer happen."""


def poll_until(check: Callable[[], bool], timeout_s: float, what: str, *, every_s: float = 0.5,
               stop: Callable[[], str | None] | None = None) -> None:
    """Call ``check`` every ``every_s`` until it is true. Raises WaitFailed after ``timeout_s``, or at once when
    ``stop`` gives a reason (a process that was to become healthy has exited)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        reason = stop() if stop else None
        if reason:
            raise WaitFailed(f"{reason} while waiting for {what}")
        if time.monotonic() > deadline:
            raise WaitFailed(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)
