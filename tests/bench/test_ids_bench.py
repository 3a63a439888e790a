"""`pulse bench ids` at a small size: both ways of holding ids answer every lookup exactly, the store through
sealed and merged runs on disk and again after a rebuild, each measured in a process of its own."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from pulse.bench import ids
from tests.cli_helpers import run_pulse


def test_both_kinds_answer_exactly_and_the_store_keeps_most_ids_on_disk(tmp_path: Path) -> None:
    held = {h.kind: h for h in ids.run(300_000, tmp_path, seal_at=20_000)}
    store, plain, restored = held["store"], held["map"], held["restore"]
    for h in held.values():
        assert h.wrong == 0 and h.lookups > 0
    assert store.insert_s > 0 and plain.insert_s > 0 and restored.restore_s > 0
    for h in (store, restored):
        assert 2 <= h.runs < 15  # 15 seals, merged by level
        assert h.disk_bytes > 300_000 * 17  # every id is on disk: 16 bytes each and more
    # the store's memory is its filters and indexes, not its ids: well under the map's, restored or not
    assert store.peak_rss_bytes < plain.peak_rss_bytes and restored.peak_rss_bytes < plain.peak_rss_bytes
    assert not list(tmp_path.iterdir())  # its files are gone with the run


def test_json_gives_programs_the_figures_the_table_shows(tmp_path: Path) -> None:
    """`--json`: one JSON object on stdout, nothing else there; the ids each way held, none answered wrongly."""
    proc = run_pulse("bench", "ids", "--count", "20k", "--json", env={**os.environ, "PULSE_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    found = orjson.loads(proc.stdout)
    assert found["bench"] == "ids" and found["count"] == 20_000
    assert {h["kind"] for h in found["held"]} == {"store", "map", "restore"}
    assert all(h["wrong"] == 0 and h["count"] == 20_000 for h in found["held"])
