"""`pulse generate --summary-json FILE`: what a run produced and Kafka acknowledged, for programs (fault runs,
tests) instead of the table printed for people. One JSON object a line, one line a run: a generator that is
restarted (a `pulse run` stage) adds a line each time it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pulse.generate.producer import GenerateReport


def summary(r: GenerateReport) -> dict[str, Any]:
    return {"produced": r.produced, "delivered": r.delivered, "failed": r.failed, "bytes": r.bytes,
            "seconds": round(r.seconds, 3), "interrupted": r.interrupted,
            "by_tag": {tag.name.lower(): n for tag, n in sorted(r.by_tag.items())}}


def append_summary(path: Path, r: GenerateReport) -> None:
    with path.open("ab") as out:
        out.write(orjson.dumps(summary(r)) + b"\n")


def read_summaries(path: Path) -> list[dict[str, Any]]:
    """Every run's summary in ``path``, oldest first (none: the file is not there)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
