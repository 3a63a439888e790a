"""One partition's walk and tally in native code (``pulse.aggregate._core.VerifyWalk``): the rules of
:mod:`pulse.verify.walk`, :mod:`pulse.verify.order` and :mod:`pulse.verify.tally` written a second time, in Rust,
for speed. It shares only the contract's validator with the engine. The Python modules stay the reference it is
held to (``tests/verify/test_native.py``) and what the in-memory recompute uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pulse.aggregate import _core
from pulse.aggregate.model import (
    DIMENSIONS,
    EXACT_USERS_UP_TO_MS,
    FUNNEL,
    ITEMS_FROM_MS,
    SKETCH_USERS_FROM_MS,
    USERS_SKETCH,
    sketch_field,
)
from pulse.events.schema import Event
from pulse.events.validate import validate
from pulse.verify.lookahead import Lookahead
from pulse.verify.order import UNCHECKED, Counts, Decision, Marker, Taken
from pulse.verify.walk import Doc, Flow, Rules, Walked


class Record(Protocol):
    """An input record as a consumer hands it out (``confluent_kafka.Message``)."""

    def offset(self) -> int: ...

    def value(self) -> bytes | None: ...

    def timestamp(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class RowRecord:
    """A :data:`~pulse.verify.walk.Row` as a :class:`Record` (inputs held in memory: tests, ledgers)."""
    at: int
    data: bytes | None
    record_ts: int

    def offset(self) -> int:
        return self.at

    def value(self) -> bytes | None:
        return self.data

    def timestamp(self) -> tuple[int, int]:
        return 1, self.record_ts  # (TIMESTAMP_CREATE_TIME, ms)


@dataclass(frozen=True)
class Model:
    """The names and bounds the documents follow, handed to the native walk from the one place each is declared."""
    funnel: tuple[str, ...] = FUNNEL
    dimensions: tuple[str, ...] = DIMENSIONS
    items_from_ms: int = ITEMS_FROM_MS
    exact_users_up_to_ms: int = EXACT_USERS_UP_TO_MS
    sketch_users_from_ms: int = SKETCH_USERS_FROM_MS
    amount_field: str = sketch_field("amount")
    price_field: str = sketch_field("price")
    users_field: str = USERS_SKETCH
    unchecked: str = UNCHECKED
    event_class: type = Event
    marker_class: type = Marker


MODEL = Model()


class NativeWalk:
    """Partition ``partition``'s pass and documents (what :class:`~pulse.verify.walk.PartitionWalk` and
    :class:`~pulse.verify.tally.PartitionTally` do together). ``on_finished`` gets the owner watermark and the
    window documents it finished."""

    def __init__(self, partition: int, rules: Rules, sizes: Iterable[int], session_timeout_ms: int,
                 unseen_before: int | None, on_finished: Callable[[int, list[Doc]], None],
                 decisions: Iterable[Decision] = (), sent_markers: Iterable[tuple[int, int]] = (),
                 lookahead: Lookahead | None = None) -> None:
        self.partition = partition
        self._core = _core.VerifyWalk(partition=partition, rules=rules, sizes=list(sizes),
                                      session_timeout_ms=session_timeout_ms, unseen_before=unseen_before,
                                      model=MODEL, validate=validate, on_finished=on_finished, lookahead=lookahead)
        self.extend(decisions, sent_markers)

    def extend(self, decisions: Iterable[Decision], sent_markers: Iterable[tuple[int, int]]) -> None:
        """More recorded decisions and sent watermarks, later than those given so far."""
        self._core.extend(list(decisions), list(sent_markers))

    def feed(self, records: Iterable[Record], taken: Iterable[Taken] | None = None, until: int | None = None) -> None:
        """Walk more of the input (records in offset order; ``taken``: more of the repartition topic, read as it is
        needed). ``until``: stop walking records once every window ending up to it was handed out; the flows then
        count the early records apart (:class:`~pulse.verify.walk.Flow`)."""
        self._core.feed(records, taken, until)

    def read_to(self, offset: int) -> None:
        """The input was read up to ``offset`` (exclusive), past any transaction markers and aborted records
        before it: the decisions taken up to there apply now, not when the next record comes."""
        self._core.read_to(offset)

    def close(self) -> Walked:
        """The end of the input: every decision left, and what was forwarded but not taken yet."""
        self._core.close()
        return self.out

    def finish(self) -> tuple[list[Doc], list[Doc]]:
        """Everything left at the end of the input: the open window documents, and the users and items."""
        windows, entities = self._core.finish()
        return windows, entities

    def revisions(self, before: int | None = None) -> list[Doc]:
        """Every window document's corrections, summed over its revisions, of the windows ending at or before
        ``before`` (None: all); each is handed out once."""
        docs: list[Doc] = self._core.revisions(before)
        return docs

    @property
    def published(self) -> int:
        """The owner watermark up to which every window was handed out."""
        return int(self._core.published)

    @property
    def out(self) -> Walked:
        raw: dict[str, Any] = self._core.counts()
        counts = Counts(**raw)
        return Walked(self.partition, counts, _flows(self._core.flows(True)), _flows(self._core.flows(False)),
                      frozenset(self._core.early_whole()))


def _flows(raw: dict[int, dict[str, int]]) -> dict[int, Flow]:
    return {q: Flow(**f) for q, f in raw.items()}
