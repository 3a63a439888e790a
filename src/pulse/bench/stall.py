"""How long a consumer group stopped making progress while it had input to read: its committed offsets and the
topic's ends sampled twice a second, for fault runs that give the stall a fault causes (a rolling restart of the
brokers)."""

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
        self._samples: list[tuple[float, int, int]] = []  # (monotonic, committed, written), when the lookup answered
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

    def _sample(self) -> tuple[int, int] | None:
        """(records committed by the group, records in the topic)."""
        try:
            partitions = self._lookup.list_topics(self._topic, timeout=2).topics[self._topic].partitions
            committed = self._lookup.committed([TopicPartition(self._topic, p) for p in partitions], timeout=2)
            written = sum(self._lookup.get_watermark_offsets(tp, timeout=2)[1] for tp in committed)
        except (KafkaException, KeyError, TypeError):
            return None  # the brokers are away: the next answer tells how far the group got meanwhile
        return sum(max(0, tp.offset) for tp in committed), written

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            found = self._sample()
            if found is not None:
                self._samples.append((time.monotonic(), *found))

    def longest_stall(self, start: float, end: float) -> float:
        """The longest span within [start, end] (monotonic) in which the group had records to read and committed
        none of them."""
        longest, since = 0.0, None
        for (t0, before, _), (t, committed, written) in pairwise(self._samples):
            if not start <= t <= end:
                continue
            if committed == before and committed < written:
                since = t0 if since is None else since  # nothing moved since the sample before
                longest = max(longest, t - since)
            else:
                since = None
        return longest
