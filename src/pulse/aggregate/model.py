"""The analytics model's names and rules, declared once in the native core (``native/src/state.rs``,
``breakdown.rs``, ``sketch.rs``).

- ``OUTCOMES``: where an input record ends (``PARTITION_COUNTERS``: a partition document's counters);
- ``FUNNEL``: the ordered funnel steps (event types) a session advances through;
- ``DIMENSIONS``: what every window is broken down by, exactly, one dimension at a time;
- ``SKETCHED``: the values of ok purchases whose quantiles (``QUANTILES``) every window summary carries as a
  mergeable sketch (``<name>_sketch``), each quantile within a relative ``SKETCH_ACCURACY`` of the exact one;
- distinct users: exact (``unique_users``) in windows up to ``EXACT_USERS_UP_TO_MS``; windows from
  ``SKETCH_USERS_FROM_MS`` on carry a HyperLogLog (``window_users`` documents, standard error
  ``USERS_STANDARD_ERROR``), and longer windows only that;
- item rows: windows from ``ITEMS_FROM_MS`` on keep them (if no window is that long, the longest does); shorter
  windows are not broken down by item.

The documents, the Elasticsearch mapping, the queries, the dashboard, the Kibana export and `pulse verify`'s
reference read these names from here, so adding a step, a dimension or a sketched value is one change in the
core. Readers merge sketches as the engine would (adding counts per bin) and read quantiles with the core's
own rule (:meth:`MergedSketch.quantiles`).
"""

from __future__ import annotations

import base64
import math
from typing import Any

from pulse.aggregate import _core

OUTCOMES: tuple[str, ...] = tuple(_core.Counters.names())
"""Where an input record ends, in the order the state's counters give them: every record lands in exactly one
(a record forwarded to the partition that owns its user lands there)."""
PARTITION_COUNTERS: tuple[str, ...] = (*OUTCOMES, "forwarded")
"""The counters of a ``partition`` document: the outcomes, and the records it forwarded to their user's owner."""
FUNNEL: tuple[str, ...] = tuple(_core.FUNNEL)
DIMENSIONS: tuple[str, ...] = tuple(_core.DIMENSIONS)
SKETCHED: tuple[str, ...] = tuple(_core.SKETCHED)
QUANTILES: tuple[float, ...] = tuple(_core.QUANTILES)
SKETCH_ACCURACY: float = _core.SKETCH_ACCURACY
HLL_PRECISION: int = _core.HLL_PRECISION
USERS_SKETCH: str = _core.USERS_SKETCH  # the field of ``window_users`` documents
USERS_STANDARD_ERROR: float = 1.04 / math.sqrt(1 << HLL_PRECISION)
EXACT_USERS_UP_TO_MS: int = _core.EXACT_USERS_UP_TO_MS
SKETCH_USERS_FROM_MS: int = _core.SKETCH_USERS_FROM_MS
ITEMS_FROM_MS: int = _core.ITEMS_FROM_MS


def sketch_field(name: str) -> str:
    """The document field of a sketched value."""
    return f"{name}_sketch"


def quantile_name(q: float) -> str:
    """0.95 -> "p95"."""
    return f"p{round(q * 100)}"


class MergedSketch:
    """Sketches of several partitions or windows, merged as the engine merges them: counts per bin add."""

    def __init__(self) -> None:
        self.zeros = 0
        self.bins: dict[int, int] = {}

    def add(self, doc_sketch: dict[str, Any] | None) -> None:
        """Fold in a document's ``{"zeros": n, "bins": [[bin, count], …]}``."""
        if not doc_sketch:
            return
        self.zeros += doc_sketch["zeros"]
        for i, n in doc_sketch["bins"]:
            self.bins[i] = self.bins.get(i, 0) + n

    def merge(self, other: MergedSketch) -> None:
        self.zeros += other.zeros
        for i, n in other.bins.items():
            self.bins[i] = self.bins.get(i, 0) + n

    @property
    def count(self) -> int:
        return self.zeros + sum(self.bins.values())

    def quantiles(self, qs: tuple[float, ...] = QUANTILES) -> dict[str, float | None]:
        """Each quantile (in the sketched unit, cents) by name: ``{"p50": …, …}``; None when empty."""
        values = _core.sketch_quantiles(self.zeros, sorted(self.bins.items()), list(qs))
        return {quantile_name(q): v for q, v in zip(qs, values, strict=True)}


class MergedUsers:
    """HyperLogLogs of several partitions or windows, merged as the engine would: the maximum per register."""

    def __init__(self) -> None:
        self.registers = bytearray(1 << HLL_PRECISION)
        self.empty = True

    def add(self, doc_hll: dict[str, Any] | None) -> None:
        """Fold in a document's ``{"p": 14, "sparse": [[register, rank], …]}`` or ``{"p": 14, "dense": base64}``."""
        if not doc_hll:
            return
        if doc_hll["p"] != HLL_PRECISION:
            raise ValueError(f"a HyperLogLog of precision {doc_hll['p']}, not {HLL_PRECISION}")
        regs = self.registers
        pairs = enumerate(base64.b64decode(doc_hll["dense"])) if "dense" in doc_hll else doc_hll["sparse"]
        for i, rank in pairs:
            if rank > regs[i]:
                regs[i] = rank
        self.empty = False

    def estimate(self) -> int:
        return 0 if self.empty else round(_core.hll_estimate(bytes(self.registers)))
