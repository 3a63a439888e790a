"""How long a consumer group stopped making progress: its committed offsets sampled twice a second, for fault runs
that give the stall a fault causes (a rolling restart of the brokers)."""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from types import TracebackType

from confluent_kafka import KafkaException, TopicPartition

from pulse.kafkaio import lag_reader


class StallWatch:
    """Samples the sum of ``group``'s committed offsets on ``topic`` on a thread, from start to close."""

    def __init__(self, bootstrap: str, group: str, topic: str, every_s: float = 0.5) -> None:
        self._lookup = lag_reader(bootstrap, group)
        self._topic, self._every = topic, every_s
        self._samples: list[tuple[float, int]] = []  # (monotonic, committed records), when the lookup answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-watch", daemon=True)

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(10)
        self._lookup.close()

    def _committed(self) -> int | None:
        try:
            partitions = self._lookup.list_topics(self._topic, timeout=2).topics[self._topic].partitions
            committed = self._lookup.committed([TopicPartition(self._topic, p) for p in partitions], timeout=2)
        except (KafkaException, KeyError):
            return None  # the brokers are away: the next answer tells how far the group got meanwhile
        return sum(max(0, tp.offset) for tp in committed)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            found = self._committed()
            if found is not None:
                self._samples.append((time.monotonic(), found))

    def longest_stall(self, start: float, end: float) -> float:
        """The longest span within [start, end] (monotonic) in which the committed offsets did not move."""
        moves = [start] + [t for (_, before), (t, n) in pairwise(self._samples)
                           if start <= t <= end and n > before] + [end]
        return max(b - a for a, b in pairwise(moves))
