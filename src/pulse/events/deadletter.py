"""The headers a dead letter (or a late event) carries in its side topic: why, and where it came from. Written by
the aggregator and the collector, read by the archive."""

from __future__ import annotations

REASON_HEADER = "pulse.reason"
DETAIL_HEADER = "pulse.detail"
SOURCE_TOPIC_HEADER = "pulse.source.topic"
DETAIL_BYTES = 1024


def letter_headers(reason: str, detail: str, source: str) -> list[tuple[str, bytes]]:
    """Why, and the topic (or, for the collector, the component) it was read from."""
    return [(REASON_HEADER, reason.encode()), (DETAIL_HEADER, detail.encode()[:DETAIL_BYTES]),
            (SOURCE_TOPIC_HEADER, source.encode())]
