"""Unique names for what a test creates (topics, groups, indices), remembered so that the session deletes only
topics it made: a test shares the broker with whatever else runs on it."""

from __future__ import annotations

import uuid

MADE: set[str] = set()


def unique(prefix: str, length: int = 8) -> str:
    """``<prefix>-<random hex>``; topics named after it (``<name>.changelog``, ``<name>.dlq``) count as made too."""
    name = f"{prefix}-{uuid.uuid4().hex[:length]}"
    MADE.add(name)
    return name


def made_here(topic: str) -> bool:
    return any(topic == name or topic.startswith(f"{name}.") for name in MADE)
