"""The generator's ledger: exactly what was produced, where it landed, and what it was meant to be.

Tests and `pulse verify` recompute expected results from it without touching the engine. Format: a gzip
stream of length-prefixed (u32 little-endian) msgpack objects:
a header map, one array per record ``[tag, partition, key, value, send_ms]`` in
production order, and a trailer map with each partition's delivered offsets (delivery order per partition
equals production order, which the idempotent producer guarantees) and, for a topic whose broker stamps the
records (``LogAppendTime``), their record timestamps.
"""

from __future__ import annotations

import gzip
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from pulse.generate.chaos import Tag

FORMAT = "pulse-ledger/1"


@dataclass(frozen=True)
class LedgerRecord:
    partition: int
    offset: int
    tag: Tag
    key: bytes | None  # None: sent without a key
    value: bytes
    send_ms: int
    record_ts: int  # the record's Kafka timestamp: the broker's where it stamps records, else send_ms


class LedgerWriter:
    """Appends produced records; call :meth:`delivered` from delivery reports and :meth:`close` at the end."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self._file = gzip.open(path, "wb", compresslevel=1)  # noqa: SIM115 - closed by close()
        self._enc = msgspec.msgpack.Encoder()
        self._offsets: dict[int, list[int]] = defaultdict(list)
        self._stamps: dict[int, list[int]] = defaultdict(list)
        self._buf = bytearray()  # gzip is costly per call: hand it ~1 MiB at a time
        self._write({"format": FORMAT, **header})

    def _write(self, obj: object) -> None:
        body = self._enc.encode(obj)
        buf = self._buf
        buf += len(body).to_bytes(4, "little")
        buf += body
        if len(buf) > 1 << 20:
            self._file.write(buf)
            buf.clear()

    def produced(self, tag: int, partition: int, key: bytes | None, value: bytes, send_ms: int) -> None:
        self._write((tag, partition, key, value, send_ms))

    def delivered(self, partition: int, offset: int, broker_ts: int | None = None) -> None:
        """``broker_ts``: the timestamp the broker gave the record (LogAppendTime topics)."""
        self._offsets[partition].append(offset)
        if broker_ts is not None:
            self._stamps[partition].append(broker_ts)

    def close(self, summary: dict[str, Any]) -> None:
        self._write({"offsets": {str(p): o for p, o in self._offsets.items()},
                     "stamps": {str(p): t for p, t in self._stamps.items()}, **summary})
        self._file.write(self._buf)
        self._file.close()


@dataclass
class Ledger:
    header: dict[str, Any]
    trailer: dict[str, Any]
    records: list[LedgerRecord] = field(default_factory=list)

    def __iter__(self) -> Iterator[LedgerRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def read_ledger(path: Path) -> Ledger:
    """Load a ledger, pairing each record with its delivered offset. Undelivered records are dropped."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dec = msgspec.msgpack.Decoder()
    items: list[Any] = []
    buf = memoryview(data)
    pos = 0
    while pos + 4 <= len(buf):
        size = int.from_bytes(buf[pos: pos + 4], "little")
        items.append(dec.decode(buf[pos + 4: pos + 4 + size]))
        pos += 4 + size
    if not items or not isinstance(items[0], dict) or items[0].get("format") != FORMAT:
        raise ValueError(f"{path} is not a Pulse ledger")
    header, trailer, rows = items[0], items[-1], items[1:-1]
    if not isinstance(trailer, dict) or "offsets" not in trailer:
        raise ValueError(f"{path} is truncated (the generator did not finish writing it)")
    offsets = {int(p): iter(o) for p, o in trailer["offsets"].items()}
    stamps = {int(p): iter(t) for p, t in trailer.get("stamps", {}).items()}
    ledger = Ledger(header=header, trailer=trailer)
    for tag, partition, key, value, send_ms in rows:
        offset = next(offsets.get(partition, iter(())), None)
        if offset is not None:
            stamp = next(stamps[partition]) if partition in stamps else send_ms
            ledger.records.append(LedgerRecord(partition, offset, Tag(tag), key, value, send_ms, stamp))
    return ledger


def open_ledger(path: Path | None, topic: str, partitions: int, params: dict[str, Any]) -> LedgerWriter | None:
    """A writer for ``--ledger PATH`` (None without one), its header saying what was generated and how."""
    if path is None:
        return None
    return LedgerWriter(path, {"topic": topic, "partitions": partitions, "params": params, "created_at": time.time()})
