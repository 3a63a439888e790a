"""Controlled faults layered over clean traffic, so downstream correctness can be tested.

Every fraction is a share of all produced records, drawn from the seeded RNG, so runs are reproducible:
- late: event time pushed behind the clock by more than the grace period, up to ``late_max_ms`` more (a client
  flushing a buffer): within the correction horizon, the aggregator counts it as a correction;
- too late: pushed behind by more than grace plus the correction horizon (``horizon_ms``): dropped to ``.late``;
- disorder: event time pushed back by less than grace (out of order, still on time);
- duplicate: a recent valid record sent again, byte for byte (same ``event_id``);
- invalid: one of :data:`INVALID_KINDS`, in equal shares.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from pulse.aggregate.config import StateConfig
from pulse.events.schema import MAX_EVENT_BYTES
from pulse.generate.traffic import Traffic


class Tag(enum.IntEnum):
    """What the generator meant a record to be (kept in the ledger, never in the record)."""

    VALID = 0
    DISORDERED = 1
    LATE = 2
    DUPLICATE = 3
    TOO_LATE = 4
    UNDECODABLE = 10
    MALFORMED_JSON = 11
    WRONG_TYPE = 12
    MISSING_FIELD = 13
    NEGATIVE_PRICE = 14
    FAR_FUTURE = 15
    OVERSIZED = 16

    @property
    def invalid(self) -> bool:
        return self >= Tag.UNDECODABLE


INVALID_KINDS = tuple(t for t in Tag if t.invalid)


@dataclass(frozen=True)
class ChaosConfig:
    late_fraction: float = 0.0
    disorder_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    invalid_fraction: float = 0.0
    grace_ms: int = 30_000
    too_late_fraction: float = 0.0
    late_max_ms: int = 90_000  # how far beyond grace a late event may be
    horizon_ms: int = StateConfig.correct_within_ms  # the aggregator's correction horizon

    def __post_init__(self) -> None:
        fractions = (self.late_fraction, self.disorder_fraction, self.duplicate_fraction, self.invalid_fraction,
                     self.too_late_fraction)
        total = sum(fractions)
        if self.late_max_ms <= 5_000:
            raise ValueError("late events must be allowed more than 5 s beyond grace")
        if min(fractions) < 0:
            raise ValueError("chaos fractions must be >= 0")
        if total > 0.9:
            raise ValueError("chaos fractions add up to more than 0.9; nothing realistic would be left")


Record = tuple[Tag, bytes, bytes, int]
"""(tag, key, value, send time ms) as produced to Kafka; the send time becomes the record timestamp."""


class Chaos:
    """Turns clean traffic into the records to produce, injecting faults at the configured rates."""

    def __init__(self, traffic: Traffic, cfg: ChaosConfig) -> None:
        self.traffic = traffic
        self.cfg = cfg
        self._rng = random.Random(traffic.cfg.seed ^ 0xC4A05)
        self._recent: deque[tuple[bytes, bytes, int]] = deque(maxlen=64)  # (key, value, ts) of valid records
        c = cfg
        late = c.invalid_fraction + c.duplicate_fraction + c.late_fraction
        self._cuts = (c.invalid_fraction, c.invalid_fraction + c.duplicate_fraction, late,
                      late + c.disorder_fraction, late + c.disorder_fraction + c.too_late_fraction)

    def __iter__(self) -> Iterator[Record]:
        return self

    def __next__(self) -> Record:
        u = self._rng.random()
        cut_invalid, cut_dup, cut_late, cut_disorder, cut_too_late = self._cuts
        if cut_invalid <= u < cut_dup:
            dup = self._duplicate()
            if dup is not None:
                return dup
        key, ts, value = next(self.traffic)
        sent = self.traffic.clock.now_ms
        if u >= cut_too_late:
            self._recent.append((key, value, ts))
            return Tag.VALID, key, value, sent
        if u < cut_invalid:
            kind = INVALID_KINDS[int(self._rng.random() * len(INVALID_KINDS))]
            return kind, key, self._corrupt(kind, orjson.loads(value)), sent
        if u < cut_late:
            tag, shift = Tag.LATE, self.cfg.grace_ms + self._rng.randrange(5_000, self.cfg.late_max_ms)
        elif u < cut_disorder:
            tag, shift = Tag.DISORDERED, self._rng.randrange(500, max(1000, self.cfg.grace_ms // 2))
        else:
            tag, shift = Tag.TOO_LATE, self.cfg.grace_ms + self.cfg.horizon_ms + self._rng.randrange(5_000, 90_000)
        event = orjson.loads(value)
        event["ts"] = ts - shift
        return tag, key, orjson.dumps(event), sent

    def _duplicate(self) -> Record | None:
        """Resend a recent on-time record, young enough that it is still inside the duplicate horizon."""
        if not self._recent:
            return None
        key, value, ts = self._recent[self._rng.randrange(len(self._recent))]
        if ts < self.traffic.clock.now_ms - self.cfg.grace_ms // 3:
            key, value, ts = self._recent[-1]
            if ts < self.traffic.clock.now_ms - self.cfg.grace_ms // 3:
                return None
        return Tag.DUPLICATE, key, value, self.traffic.clock.now_ms

    def _corrupt(self, kind: Tag, event: dict[str, object]) -> bytes:
        rnd = self._rng
        if kind is Tag.UNDECODABLE:
            return b"\xff\xfe" + bytes(rnd.randrange(256) for _ in range(rnd.randrange(8, 64)))
        if kind is Tag.MALFORMED_JSON:
            text = orjson.dumps(event)
            return text[: rnd.randrange(1, len(text) - 1)]
        if kind is Tag.WRONG_TYPE:
            field = ("ts", "price", "quantity", "user_id")[rnd.randrange(4)]
            event[field] = {"ts": str(event["ts"]), "price": "cheap", "quantity": "two", "user_id": 12345}[field]
        elif kind is Tag.MISSING_FIELD:
            del event[("event_id", "event_type", "ts", "user_id", "session_id")[rnd.randrange(5)]]
        elif kind is Tag.NEGATIVE_PRICE:
            event["price"] = -abs(float(event["price"]) or 1.0)  # type: ignore[arg-type]
        elif kind is Tag.FAR_FUTURE:
            event["ts"] = int(event["ts"]) + rnd.randrange(1, 365) * 86_400_000  # type: ignore[call-overload]
        elif kind is Tag.OVERSIZED:
            event["category"] = "x" * (MAX_EVENT_BYTES + rnd.randrange(1, 4096))
        return orjson.dumps(event)
