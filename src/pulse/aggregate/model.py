"""The analytics model's names, declared once in the native core (``native/src/state.rs``, ``breakdown.rs``).

- ``FUNNEL``: the ordered funnel steps (event types) a session advances through;
- ``DIMENSIONS``: what every window is broken down by, exactly, one dimension at a time.

The documents, the Elasticsearch mapping, the queries, the dashboard, the Kibana export and `pulse verify`'s
reference read these names from here, so adding a step or a dimension is one change in the core.
"""

from __future__ import annotations

from pulse.aggregate import _core

FUNNEL: tuple[str, ...] = tuple(_core.FUNNEL)
DIMENSIONS: tuple[str, ...] = tuple(_core.DIMENSIONS)
