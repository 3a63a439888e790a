"""`pulse bench e2e` on the real stack at a small rate: the whole pipeline runs, probes sent by a plain client
are found in the aggregates, and Elasticsearch's own indexing statistics split the writes the way the pipeline's
design says they must fall (the archive: one document per event)."""

from __future__ import annotations

from pathlib import Path

from elasticsearch import Elasticsearch

from pulse.bench import e2e
from pulse.bench.indexing import IndexCost, index_parts
from pulse.bench.plot import freshness_plot
from pulse.bench.scratch import scratch
from pulse.cli.bench_cmd import e2e_verdict
from pulse.config import Settings


def test_a_small_step_holds_with_every_probe_seen_and_writes_split_by_kind(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "e2e.log"
    with scratch(settings):
        run = e2e.run(settings, [400.0], archive=True, hold_s=8, settle_s=4, limit_s=5, log=log, probe_every_s=0.25,
                      drain_s=10)
    assert [s.offered for s in run.steps] == [400.0]
    step = run.steps[0]
    assert not step.problems(), (step, log.read_text()[-2000:])
    assert run.sustained is step
    # the input topic got the offered rate over the measured span
    assert 0.8 * 400 * step.seconds <= step.events <= 1.2 * 400 * step.seconds + 50
    # a probe every 0.25 s over 8 s, each found, none faster than a flush can publish it or slower than the limit
    assert len(step.probes) >= 28 and step.lost_probes == 0
    assert all(0.0 < p.seconds <= 5 + e2e.FORWARD_HOP_S for p in step.probes)
    # half the probes come from a client partitioning as Pulse does, half from one that mostly does not
    assert 0 < sum(p.forwarded for p in step.probes) < len(step.probes)
    # the archive indexes one document per event, each one Lucene document; the aggregates publish what changed
    # (at this low rate nearly every event touches a user not seen in the last 30 s); heartbeats a few
    assert 800 <= step.ops_per_1000("archive") <= 1200, step.index
    assert 700 <= step.lucene_per_1000("archive") <= 1200, step.index
    assert step.ms_per_1000("archive") > 0 and step.time_ratio is not None and step.time_ratio > 0
    assert 0 < step.ops_per_1000("aggregates") < 1500, step.index
    # every family's share adds up to the aggregates'
    families = [step.index[f] for f in ("windows", "users", "items", "partitions") if f in step.index]
    assert sum(c.ops for c in families) == step.index["aggregates"].ops
    assert step.index["heartbeats"].ops > 0
    assert {"aggregate", "store", "archive", "generate", "kafka", "elasticsearch"} <= step.cores.keys()
    assert "Traceback" not in log.read_text()
    es = Elasticsearch(settings.es_url)
    leftovers = es.indices.get(index="bench-e2e-*", expand_wildcards="all", allow_no_indices=True).body
    assert not leftovers


def _probes(seconds: list[float]) -> list[e2e.Probe]:
    return [e2e.Probe(float(i), s, i % 2 == 0) for i, s in enumerate(seconds)]


def _step(**changes: object) -> e2e.StepResult:
    base = {"offered": 1000.0, "seconds": 10.0, "events": 10_000, "probes": _probes([0.5] * 20), "lost_probes": 0,
            "lag_growth": {"aggregate": 0.0}, "lag_peak": {"aggregate": 0}, "index": {}, "cores": {},
            "limit_s": 3.0}
    return e2e.StepResult(**(base | changes))  # type: ignore[arg-type]


def test_a_step_holds_only_at_the_offered_rate_with_fresh_probes_and_no_growing_lag() -> None:
    assert _step().problems() == []
    assert "offered" in _step(events=9_000).problems()[0]
    assert "never became visible" in _step(lost_probes=1).problems()[0]
    assert "direct freshness p99" in _step(probes=_probes([0.5] * 19 + [4.0])).problems()[0]
    # the forwarded path may take one flush interval more
    assert _step(probes=_probes([3.9, 0.5] * 10)).problems() == []
    assert "forwarded freshness p99" in _step(probes=_probes([4.1, 0.5] * 10)).problems()[0]
    assert "lag grew" in _step(lag_growth={"aggregate": 1_500.0}, lag_peak={"aggregate": 5_000}).problems()[0]
    # a lag that rose by less than a second of input is a pipeline at work (commits once per flush), not behind
    assert _step(lag_growth={"aggregate": 900.0}, lag_peak={"aggregate": 2_000}).problems() == []


def test_indices_are_told_apart_by_part() -> None:
    assert index_parts("p-windows-000001", "p") == ("aggregates", "windows")
    assert index_parts("p-users-000002", "p") == ("aggregates", "users")
    assert index_parts("p-events-2026.12.01", "p") == ("archive",)
    assert index_parts("p-deadletter-2026.12.01", "p") == ("archive",)
    assert index_parts("p-heartbeat", "p") == ("heartbeats",)
    assert index_parts("p-meta", "p") == ()
    assert index_parts("pother-windows-000001", "p") == ()


def test_the_plot_is_a_png_of_every_run(tmp_path: Path) -> None:
    runs = [e2e.RunResult(archive, [_step(offered=r) for r in (3_000.0, 10_000.0)]) for archive in (False, True)]
    path = freshness_plot(runs, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_the_verdict_names_every_target() -> None:
    low = _step(offered=3_000.0, events=30_000, index={"aggregates": IndexCost(600, 90, 900),
                                                       "archive": IndexCost(30_000, 600, 30_000)})
    high = _step(offered=50_000.0, events=500_000, index={"aggregates": IndexCost(2_000, 10, 20_000)})
    line = e2e_verdict(e2e.RunResult(True, [low, high]))
    assert "sustained 50,000 events/s" in line and "meets >= 20k/s" in line
    assert "20.0 aggregate index ops per 1000 events (meets <= 30)" in line
    assert "indexing time 0.15x the archive's (MISSES <= 0.1x)" in line
    line = e2e_verdict(e2e.RunResult(False, [low, high]))
    assert "meets >= 50k/s" in line and "4.0 aggregate index ops per 1000 events (meets <= 5)" in line
