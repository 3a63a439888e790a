"""The collectors' counters for the dashboard: each `pulse collect` answers ``/stats`` with its own counts since
it started; the dashboard adds them up. A collector that does not answer is named, not left out silently."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

TIMEOUT_S = 1.0


def collector_stats(urls: tuple[str, ...], client: httpx.Client) -> dict[str, Any] | None:
    """The sum over ``urls`` (None: no collector configured)."""
    if not urls:
        return None
    events: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    unreachable: list[str] = []
    ready = 0
    for url in urls:
        try:
            answer = client.get(f"{url.rstrip('/')}/stats", timeout=TIMEOUT_S)
            answer.raise_for_status()
            found = answer.json()
        except (httpx.HTTPError, ValueError):
            unreachable.append(url)
            continue
        events.update(found.get("events", {}))
        refused.update(found.get("refused", {}))
        ready += bool(found.get("ready"))
    return {"collectors": len(urls), "ready": ready, "unreachable": unreachable, "events": dict(events),
            "refused_requests": sum(refused.values()), "refused": dict(refused)}
