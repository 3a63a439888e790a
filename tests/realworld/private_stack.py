"""The private stack of the restart tests: Pulse's own (`pulse.stack.private`), named per test module."""

from __future__ import annotations

import time

from pulse.stack.private import PrivateStack, free_port, private_stack

__all__ = ["PrivateStack", "free_port", "private_stack", "restart"]


def restart(stack: PrivateStack, service: str, down_s: float) -> None:
    """Stop one service for ``down_s`` seconds, then start it again and wait until it is healthy."""
    with stack.stopped(service):
        time.sleep(down_s)
