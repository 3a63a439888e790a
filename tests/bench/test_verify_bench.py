"""`pulse bench verify` on the real stack at small sizes: every step is produced, aggregated, stored and verified
exact, with its records counted from the topic and its memory sampled."""

from __future__ import annotations

from pathlib import Path

from pulse.bench import verify
from pulse.bench.scratch import scratch
from pulse.config import Settings


def test_each_step_is_verified_exact_with_its_memory_sampled(settings: Settings, tmp_path: Path) -> None:
    with scratch(settings):
        # half the input keyed as librdkafka clients do: verify walks the repartition topic too
        steps = verify.run(settings, [20_000, 40_000], tmp_path / "verify.log", workers=2, crc32_keys=0.5)
    assert [s.records for s in steps] == [20_000, 40_000]
    for s in steps:
        assert s.ok, (tmp_path / "verify.log").read_text()[-3000:]
        assert s.documents > 1000 and s.seconds > 0
        assert 50 * 1024**2 < s.peak_rss_bytes < 4 * 1024**3  # the verify process and its workers were sampled
