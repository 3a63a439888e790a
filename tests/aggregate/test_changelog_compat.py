"""A partition whose changelog an earlier Pulse wrote restores and goes on exactly.

The fixture was written by the version before item rows got their own cadence (and before windows shorter than
a minute stopped keeping them): a partition's changelog and the documents it had published after half of its
records (``fixtures/``, made by running that version's core). Restored by this version and fed the rest, every
document equals the reference over all the records. The older version's item documents of windows shorter than a
minute stay in Elasticsearch untouched; readers no longer use them, so they are left out of the comparison.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

from pulse.aggregate.model import ITEMS_FROM_MS
from pulse.aggregate.partition import StateConfig, new_partition, remember_recent, route
from pulse.verify.diff import diff_documents
from pulse.verify.reference import recompute
from tests.aggregate.test_partition_vs_reference import flush

FIXTURE = Path(__file__).parent / "fixtures" / "changelog-before-item-cadence.json.gz"


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _load() -> dict[str, Any]:
    with gzip.open(FIXTURE, "rt") as fh:
        return json.load(fh)


def test_a_changelog_of_the_previous_version_restores_and_continues_exactly() -> None:
    fixture = _load()
    sizes = tuple(fixture["sizes"])
    rows = [(p, offset, _bytes(value), ts) for p, offset, value, ts in fixture["rows"]]
    cut = fixture["cut"]
    log = [(_bytes(k), _bytes(v)) for k, v in fixture["changelog"]]
    assert any(k.startswith(b"w/10000/") and b"/i/" in k for k, _ in log)  # it logged item rows of 10 s windows
    cfg = StateConfig(window_sizes=sizes, correct_within_ms=0)  # that version's rule: no corrections
    st_ = new_partition(0, cfg)
    st_.restore([(offset, k, v) for offset, (k, v) in enumerate(log)])
    resume = st_.next_offset  # its last flush: what it read after that was lost with it
    assert 0 < resume <= rows[cut][1]
    before = [r for r in rows if r[1] < resume]
    remember_recent(st_, ((value, ts) for _, _, value, ts in before), st_.watermark - cfg.correct_within_ms)
    out: dict[str, dict[str, Any]] = dict(fixture["documents"])
    for _, offset, value, ts in rows[len(before):]:
        route(st_, offset, None, value, ts)
    published = flush(st_, out)
    assert published and not any(d.kind == "window_items" and d.id.startswith("window_items:10s:") for d in published)
    kept = {i: d for i, d in out.items() if d["kind"] != "window_items" or d["window_ms"] >= ITEMS_FROM_MS}
    diff = diff_documents(recompute(rows, sizes, cfg.grace_ms, cfg.correct_within_ms), kept)
    assert diff.ok, diff.summary()
