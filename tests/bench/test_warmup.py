"""When the benchmark's untimed warm-up stops: once Pulse's time no longer improves by more than 10 % and the
broker's JIT compiler was quiet during the last run."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from pulse.bench.aggregate import JIT_QUIET_S, jit_seconds, warmed
from pulse.config import Settings
from pulse.stack.manager import services


def test_a_single_run_is_never_steady() -> None:
    assert not warmed([])
    assert not warmed([1.4])


def test_still_improving_runs_keep_warming() -> None:
    assert not warmed([3.9, 2.5])
    assert not warmed([3.9, 2.5, 2.6, 2.2])  # 12 % faster than the best before it


def test_a_run_within_ten_percent_of_the_best_is_steady() -> None:
    assert warmed([3.9, 2.5, 2.6])
    assert warmed([1.7, 1.6])
    assert warmed([2.0, 1.81])


@given(st.lists(st.floats(0.1, 100.0), min_size=1, max_size=8), st.floats(0.1, 100.0))
def test_steady_exactly_when_the_latest_is_not_much_faster_than_every_earlier_run(
        earlier: list[float], latest: float) -> None:
    improved = all(latest < 0.9 * t for t in earlier)  # over 10 % faster than each earlier run
    assert warmed([*earlier, latest]) is not improved


def test_steady_times_are_not_enough_while_the_broker_is_still_compiling() -> None:
    assert not warmed([1.7, 1.6], jit=[0.6, 0.4])
    assert warmed([1.7, 1.6], jit=[0.6, JIT_QUIET_S])
    assert not warmed([2.5, 1.6], jit=[0.6, 0.0])  # quiet, but Pulse's time still improved by more than 10 %


@given(st.lists(st.floats(0.1, 100.0), min_size=2, max_size=8), st.floats(0.0, 2.0))
def test_the_jit_condition_only_ever_delays_the_verdict(seconds: list[float], last_jit: float) -> None:
    jit = [1.0] * (len(seconds) - 1) + [last_jit]
    assert warmed(seconds, jit) == (warmed(seconds) and last_jit <= JIT_QUIET_S)


def test_jit_seconds_reads_the_brokers_compiler_threads(settings: Settings) -> None:
    """The real broker has compiled code since it started; a process without a JIT has none."""
    broker = next(svc.process.pid() for svc in services(settings) if svc.name == "kafka")
    assert broker is not None
    first = jit_seconds(broker)
    assert first > 0
    assert jit_seconds(broker) >= first
    assert jit_seconds(os.getpid()) == 0.0
