"""`pulse bench ids`: what holding a partition's event ids for a long duplicate horizon costs.

Ways of holding ``count`` ids (UUIDv7s, as SDKs make them) exactly, each in a Python process of its own so that
its peak RSS (the kernel's ``VmHWM``) is its own:
- ``map``: an in-memory map, as the engine held ids before the store (``EventKey`` keys);
- ``store``: the id store the engine keeps (``native/src/dedup``): recent ids in memory, sealed runs on local disk
  found through Bloom filters and sparse indexes, the ids inserted one by one as live;
- ``restore``: the same store built from the ids as a restore builds it from the changelog, and timed.
A process that only loads the core gives the baseline all are measured against. Half the lookups are of
held ids (each must come back with its event time), half of ids never inserted (each must not): any wrong
answer fails the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pulse.aggregate import _core
from pulse.errors import PulseError

KINDS = ("map", "store", "restore")


@dataclass(frozen=True)
class Held:
    kind: str
    count: int
    peak_rss_bytes: int  # above the baseline process's
    insert_s: float
    lookups: int
    lookup_s: float
    wrong: int
    restore_s: float
    runs: int
    disk_bytes: int

    @property
    def bytes_per_id(self) -> float:
        return self.peak_rss_bytes / max(self.count, 1)


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


SEAL_AT = _core.SEAL_AT
"""Ids the store holds in memory before it seals them into a run (the engine's setting)."""


def measure(kind: str, count: int, directory: str, seal_at: int = SEAL_AT) -> dict[str, float]:
    """Run in the measured process: ``kind`` ("none" for the baseline) with ``count`` ids."""
    out: dict[str, float] = {}
    if kind != "none":
        m = _core.measure_ids(kind, count, Path(directory), seal_at)
        out = {name: getattr(m, name) for name in ("insert_s", "lookups", "lookup_s", "wrong", "restore_s", "runs",
                                                    "disk_bytes")}
    out["peak_rss_bytes"] = _peak_rss()
    return out


def _child(kind: str, count: int, directory: Path, seal_at: int, timeout: float) -> dict[str, float]:
    code = ("import json, sys; from pulse.bench.ids import measure; "
            "print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))")
    done = subprocess.run([sys.executable, "-c", code, kind, str(count), str(directory), str(seal_at)],
                          capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise PulseError(f"measuring {kind} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def run(count: int, workdir: Path | None = None, seal_at: int = SEAL_AT, timeout: float = 1800) -> list[Held]:
    """Both kinds, ``count`` ids each, against a baseline process measured in the same run."""
    with tempfile.TemporaryDirectory(prefix="pulse-bench-ids-", dir=workdir) as tmp:
        base = _child("none", 0, Path(tmp), seal_at, timeout)["peak_rss_bytes"]
        out = []
        for kind in KINDS:
            m = _child(kind, count, Path(tmp) / kind, seal_at, timeout)
            out.append(Held(kind, count, int(m["peak_rss_bytes"] - base), m["insert_s"], int(m["lookups"]),
                            m["lookup_s"], int(m["wrong"]), m["restore_s"], int(m["runs"]), int(m["disk_bytes"])))
    return out
