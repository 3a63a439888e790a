"""Realistic, deterministic interaction traffic: users in sessions walking an ordered purchase funnel.

Many sessions are open at once and interleave, as on a real site. Each session browses a few items
(Zipf-popular, from categories, with per-item prices); for each item it views, it may click, then add to
cart, then purchase, with configurable conversion rates. A share of steps fail with an error status.
Event time follows a synthetic clock whose rate follows a shape (steady, diurnal, bursts), so the same
seed and start time always give the same events.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

import orjson

CATEGORIES = (
    "books", "music", "movies", "games", "electronics", "computers", "phones", "cameras", "home", "garden",
    "kitchen", "tools", "toys", "baby", "beauty", "health", "grocery", "pets", "sports", "outdoors",
    "fashion", "shoes", "jewelry", "automotive",
)
COUNTRIES = (("US", 30), ("DE", 10), ("GB", 10), ("FR", 8), ("IN", 8), ("BR", 7), ("JP", 7), ("CA", 6),
             ("NL", 5), ("PL", 5), ("ES", 4))
DEVICES = (("mobile", 55), ("desktop", 35), ("tablet", 10))
SHAPES = ("steady", "diurnal", "bursts")


@dataclass(frozen=True)
class TrafficConfig:
    seed: int = 42
    users: int = 10_000
    items: int = 10_000
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z; `pulse generate` defaults to now
    rate: float = 1000.0  # events per second of event time (the mean, for shaped traffic)
    shape: str = "steady"
    shape_period_s: float = 600.0  # diurnal period / burst cycle
    zipf_s: float = 1.1
    click_rate: float = 0.35  # P(click | view)
    cart_rate: float = 0.30  # P(add_to_cart | click)
    purchase_rate: float = 0.50  # P(purchase | add_to_cart)
    error_rate: float = 0.02  # share of steps failing with error/timeout
    payment_failure_rate: float = 0.05  # share of purchases with payment_failed
    items_per_session: float = 3.0  # mean items browsed per session
    open_sessions: int = 500

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        if self.users < 1 or self.items < 1 or self.rate <= 0:
            raise ValueError("users, items and rate must be positive")
        for name in ("click_rate", "cart_rate", "purchase_rate", "error_rate", "payment_failure_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


class EventClock:
    """Synthetic event time in ms: gaps of 1/rate(t), where the rate follows the configured shape."""

    def __init__(self, cfg: TrafficConfig) -> None:
        self._cfg = cfg
        self._t = 0.0  # seconds since start

    @property
    def elapsed_s(self) -> float:
        return self._t

    @property
    def now_ms(self) -> int:
        return self._cfg.start_ms + int(self._t * 1000)

    def rate_at(self, t: float) -> float:
        cfg = self._cfg
        if cfg.shape == "diurnal":  # a compressed day: night at 25 % of the mean, peak at 175 %
            return cfg.rate * (1.0 - 0.75 * math.cos(2 * math.pi * t / cfg.shape_period_s))
        if cfg.shape == "bursts":  # 10 % of each cycle runs at 5x, the rest slower, same mean
            phase = (t % cfg.shape_period_s) / cfg.shape_period_s
            return cfg.rate * (5.0 if phase < 0.1 else 0.5 / 0.9)
        return cfg.rate

    def tick(self) -> int:
        cfg = self._cfg
        self._t += 1.0 / (cfg.rate if cfg.shape == "steady" else self.rate_at(self._t))
        return cfg.start_ms + int(self._t * 1000)


@dataclass(slots=True)
class _Session:
    user_key: bytes
    head: bytes  # pre-encoded JSON members constant for the session (user, session, device, country)
    items_left: int
    item: int = -1
    stage: int = 0  # index into the funnel of the next step for the current item


_FUNNEL = (b"view", b"click", b"add_to_cart", b"purchase")
_EVENT = (b'{"event_id":"e%x-%x","event_type":"%b","ts":%d,%b%b"quantity":%d,%b"currency":"USD",'
          b'"status":"%b","schema_version":1}')

Clean = tuple[bytes, int, bytes]
"""(key, event time ms, JSON value) of one valid event."""


class Traffic:
    """An endless, deterministic stream of clean events, already encoded as schema v1 JSON.

    Encoding is template-based (per-item and per-session JSON members are encoded once), because
    generation is the producer's hot path; tests check the output against the schema.
    """

    def __init__(self, cfg: TrafficConfig) -> None:
        self.cfg = cfg
        self.clock = EventClock(cfg)
        self._rng = random.Random(cfg.seed)
        rng = random.Random(0x5EED ^ cfg.items)  # the catalogue is the same whatever the traffic seed
        weights = [1.0 / (rank ** cfg.zipf_s) for rank in range(1, cfg.items + 1)]
        total = sum(weights)
        self._item_cdf = list(accumulate(w / total for w in weights))
        self.item_categories = [CATEGORIES[rng.randrange(len(CATEGORIES))] for _ in range(cfg.items)]
        self.item_prices = [round(min(50_000.0, rng.lognormvariate(3.2, 1.0)), 2) for _ in range(cfg.items)]
        self._item_json = [
            b'"item_id":"i%06d","category":"%b","price":%b,' % (i, c.encode(), orjson.dumps(p))
            for i, (c, p) in enumerate(zip(self.item_categories, self.item_prices, strict=True))
        ]
        self._countries, self._country_cdf = _cdf(COUNTRIES)
        self._devices, self._device_cdf = _cdf(DEVICES)
        self._sessions: list[_Session] = []
        self._session_seq = 0
        self._event_seq = 0
        self._step_rates = (1.0, cfg.click_rate, cfg.cart_rate, cfg.purchase_rate)

    def _new_session(self) -> _Session:
        rnd = self._rng.random
        self._session_seq += 1
        items = 1 + int(-math.log(1.0 - rnd()) * (self.cfg.items_per_session - 1))
        user = b"u%07d" % int(rnd() * self.cfg.users)
        device = self._devices[bisect.bisect(self._device_cdf, rnd())]
        country = self._countries[bisect.bisect(self._country_cdf, rnd())]
        head = b'"user_id":"%b","session_id":"s%x-%x","device":"%b","country":"%b",' % (
            user, self.cfg.seed, self._session_seq, device.encode(), country.encode())
        return _Session(user, head, items)

    def __iter__(self) -> Iterator[Clean]:
        return self

    def __next__(self) -> Clean:
        cfg, rnd = self.cfg, self._rng.random
        sessions = self._sessions
        while len(sessions) < cfg.open_sessions:
            sessions.append(self._new_session())
        slot = int(rnd() * len(sessions))
        s = sessions[slot]
        stage = s.stage
        if stage == 0:
            s.item = min(bisect.bisect(self._item_cdf, rnd()), cfg.items - 1)
        status = b"ok"
        if stage == 3 and rnd() < cfg.payment_failure_rate:
            status = b"payment_failed"
        elif rnd() < cfg.error_rate:
            status = b"error" if rnd() < 0.7 else b"timeout"
        quantity = 1 if stage < 2 else 1 + (rnd() < 0.25) + (rnd() < 0.1)
        amount = b'"amount":%b,' % orjson.dumps(round(self.item_prices[s.item] * quantity, 2)) if stage == 3 else b""
        self._event_seq += 1
        ts = self.clock.tick()
        value = _EVENT % (cfg.seed, self._event_seq, _FUNNEL[stage], ts, self._item_json[s.item], s.head,
                          quantity, amount, status)
        # Advance the funnel: a failed step or a non-conversion ends this item; the session moves on.
        if status == b"ok" and stage < 3 and rnd() < self._step_rates[stage + 1]:
            s.stage = stage + 1
        else:
            s.stage = 0
            s.items_left -= 1
            if s.items_left <= 0:
                sessions[slot] = sessions[-1]
                sessions.pop()
        return s.user_key, ts, value


def _cdf(weighted: tuple[tuple[str, int], ...]) -> tuple[list[str], list[float]]:
    total = sum(w for _, w in weighted)
    names = [n for n, _ in weighted]
    cdf = list(accumulate(w / total for _, w in weighted))
    cdf[-1] = 1.0 + 1e-9
    return names, cdf
