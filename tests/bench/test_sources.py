"""`compile_sources`: after it, Python loads every Pulse module from valid bytecode instead of compiling it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pulse.bench.aggregate import compile_sources


def test_every_module_has_bytecode_that_python_accepts_for_its_source() -> None:
    package = compile_sources()
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 20
    for source in sources:
        header = Path(importlib.util.cache_from_source(str(source))).read_bytes()[:16]
        stat = source.stat()
        # what the import system checks: this interpreter's magic number, then the source's mtime and size
        assert header[:4] == importlib.util.MAGIC_NUMBER, source
        assert int.from_bytes(header[4:8], "little") == 0, source  # timestamp-based, not hash-based
        assert int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF, source
        assert int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF, source
