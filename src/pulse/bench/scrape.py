"""One value from a Pulse process's Prometheus endpoint, for fault runs and benchmarks that watch it from outside."""

from __future__ import annotations

import re

import httpx


def metric(port: int, name: str) -> float | None:
    """The value of the unlabelled metric ``name`` at ``127.0.0.1:port`` (None: not there, or not answering)."""
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    return float(found.group(1)) if found else None
