"""When a producer's acknowledgements stop and start again: one line for each, whatever librdkafka reports."""

from __future__ import annotations

from dataclasses import dataclass

ACK_STALL_S = 10.0
"""Records waiting this long with none acknowledged is an outage even with every broker reachable: a quorum or
too few in-sync replicas to take a write (``min.insync.replicas``), which librdkafka retries without a word."""


@dataclass
class AckWatch:
    """Follows acknowledged counts over time and answers the line to log, if any.

    librdkafka's "all brokers down" comes and goes while it reconnects, even with a broker still up, so it only
    words the announcement; the outage itself is acknowledgements stopping for ``stall_s`` with records waiting.
    """

    bootstrap: str
    started: float  # monotonic time of the first observation
    stall_s: float = ACK_STALL_S
    _acked: int = 0  # records acknowledged as of _acked_at
    _acked_at: float | None = None  # when a record was last acknowledged, or nothing was waiting
    _outage: float | None = None  # when acknowledgements stopped, once that was announced
    _unreachable: bool = False  # librdkafka found every broker down since the last acknowledgement

    def all_brokers_down(self) -> None:
        self._unreachable = True

    @property
    def in_outage(self) -> bool:
        return self._outage is not None

    def observe(self, delivered: int, waiting: int, now: float) -> str | None:
        """``delivered`` so far and ``waiting`` in the queue at ``now``; the line to log, or None."""
        acked_at = self.started if self._acked_at is None else self._acked_at
        if delivered > self._acked or not waiting:
            self._acked_at, self._acked, self._unreachable = now, delivered, False
            if self._outage is None:
                return None
            began, self._outage = self._outage, None
            return f"Kafka acknowledges again after {now - began:.0f}s; resuming"
        if self._outage is not None or now - acked_at < self.stall_s:
            return None
        self._outage = acked_at
        stalled = now - acked_at
        cause = (f"Kafka at {self.bootstrap} has been unreachable for {stalled:.0f}s with {waiting} records waiting"
                 if self._unreachable else f"Kafka has acknowledged none of {waiting} records for {stalled:.0f}s "
                 "(brokers down, or too few replicas in sync to take a write)")
        return f"{cause}; waiting (records are kept and resent, none is dropped)"
