"""Type stubs of the native core (``native/``, Rust): the shapes that cross the boundary with Python."""

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Final

from pulse.events.schema import Event
from pulse.events.validate import Rejection

ITEM_SHARDS: Final[int]
FUNNEL: Final[list[str]]
SEAL_AT: Final[int]  # ids the engine's id store holds in memory before it seals them into a run on disk
PARALLELISM: Final[int]  # threads the core's parallel work (routing, rendering) spreads over
PAGE_BYTES: Final[int]  # how large a packed document (item or breakdown rows) grows before further pages start
DIMENSIONS: Final[list[str]]
SKETCHED: Final[list[str]]
QUANTILES: Final[list[float]]
SKETCH_ACCURACY: Final[float]
HLL_PRECISION: Final[int]
USERS_SKETCH: Final[str]
EXACT_USERS_UP_TO_MS: Final[int]
SKETCH_USERS_FROM_MS: Final[int]
ITEMS_FROM_MS: Final[int]

def hll_estimate(registers: bytes) -> float: ...

def sketch_quantiles(zeros: int, bins: list[tuple[int, int]], qs: list[float]) -> list[float | None]: ...
SOURCE_PARTITION_HEADER: Final[str]
SOURCE_OFFSET_HEADER: Final[str]
WATERMARK_HEADER: Final[str]
IDLE_HEADER: Final[str]

class Details:
    """What a flush does about item shards: those of closing windows, also those whose cadence has come, or
    every pending one."""
    CLOSING: ClassVar[Details]
    DUE: ClassVar[Details]
    ALL: ClassVar[Details]

class Counters:
    """Where a partition's records ended: each lands in exactly one."""

    accepted: int
    dead_lettered: int
    late: int
    duplicates: int
    corrected: int
    @staticmethod
    def names() -> list[str]: ...
    def as_list(self) -> list[int]: ...

class StateSizes:
    windows: int
    users: int
    sessions: int
    event_ids: int
    def as_list(self) -> list[int]: ...

class ChangelogRecord:
    key: bytes
    value: bytes | None  # None: a tombstone

class Document:
    id: str  # the aggregates topic's key
    kind: str
    value: bytes  # JSON

class Admitted:
    """A collector's event, valid on the device's clock and on the collector's, ready for the input topic."""

    event_id: str
    key: bytes  # its user id
    value: bytes  # as sent, with ``ts`` on the collector's clock
    device_ts: int  # as sent
    sent_at: int | None

def admit_events(events: list[bytes], sent_at: int | None, received_ms: int) -> list[Admitted | None]: ...

class SideRecord:
    """A dead letter or a late event, with where it was read."""

    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str

class ForwardBatch:
    """The records a partition forwards to another (``owner``) in a flush, packed (msgpack: ``[offset, record_ts,
    value]`` each; None for none), with the partition's source watermark after its input up to ``offset``."""

    owner: int
    value: bytes | None
    records: int
    offset: int
    watermark: int
    idle: bool

class FlushOutput:
    records: list[ChangelogRecord]
    documents: list[Document]
    dead: list[SideRecord]
    late: list[SideRecord]
    forward: list[ForwardBatch]

class Partition:
    def __init__(self, partition: int, window_sizes: list[int], grace_ms: int, correct_within_ms: int,
                 session_timeout_ms: int, compact_after: int = 50_000, partitions: int = 0,
                 forward_wait_ms: int = 300_000, user_max_delay_ms: int = 60_000,
                 ids_dir: Path | None = None) -> None: ...
    busy: bool
    partition: int
    next_offset: int
    watermark: int
    source_watermark: int
    idle: bool
    marks: list[tuple[int, bool]]
    max_event_ts: int | None
    forwarded: int
    repartition_offset: int
    version: int
    processed: int
    counters: Counters
    sizes: StateSizes
    state_bytes: int
    ids_logged: bool
    def process(self, offset: int, key: bytes | None, value: bytes | None, record_ts: int) -> bool: ...
    def accept(self, offset: int, key: bytes | None, value: bytes, record_ts: int, event: Event) -> None: ...
    def skip_to(self, offset: int) -> None: ...
    def reject(self, offset: int, key: bytes | None, value: bytes, reason: str, detail: str) -> None: ...
    def remember(self, value: bytes, record_ts: int, horizon: int) -> bool: ...
    def remember_id(self, event_id: str, user_id: str, ts: int, horizon: int) -> None: ...
    def idle_floor(self, target: int) -> int | None: ...
    def advance_to(self, value: int, idle: bool = False) -> bool: ...
    def stalled(self, source: int) -> bool: ...
    def pending_users(self) -> int: ...
    def flush(self, details: Details, users: int, flushed_at: int) -> FlushOutput | None: ...
    def handed_over(self) -> None: ...
    def restore(self, records: list[tuple[int, bytes, bytes | None]]) -> int: ...

def process_batch(states: dict[int, Partition], batch: list[Any], start: int,
                  verdict: Callable[[bytes | None, int], Event | Rejection], forwarded: bool) -> int: ...
def settle() -> None: ...
def flush_all(partitions: list[Partition], details: Details, users: list[int],
              flushed_at: int) -> list[FlushOutput | None]: ...
def restore_all(partitions: list[Partition], logs: list[list[tuple[int, bytes, bytes | None]]]) -> list[int]: ...
def label(size_ms: int) -> str: ...
def user_partition(user: str, partitions: int) -> int: ...
def item_shard(item: str) -> int: ...

class VerifyWalk:
    def __init__(self, *, partition: int, rules: Any, sizes: list[int], session_timeout_ms: int,
                 unseen_before: int | None, model: Any, validate: Callable[[bytes, int], Any],
                 on_finished: Callable[[int, list[tuple[str, dict[str, Any]]]], None],
                 lookahead: Any | None = None) -> None: ...
    published: int
    def extend(self, decisions: Any, sent_markers: list[tuple[int, int]]) -> None: ...
    def feed(self, records: Any, taken: Any | None = None, until: int | None = None) -> None: ...
    def read_to(self, offset: int) -> None: ...
    def early_whole(self) -> list[int]: ...
    def close(self) -> None: ...
    def finish(self) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]: ...
    def revisions(self, before: int | None = None) -> list[tuple[str, dict[str, Any]]]: ...
    def counts(self) -> dict[str, Any]: ...
    def flows(self, sent: bool) -> dict[int, dict[str, int]]: ...

class IdsMeasured:
    inserted: int
    insert_s: float
    lookups: int
    lookup_s: float
    wrong: int
    restore_s: float
    runs: int
    disk_bytes: int
    memory_bytes: int

def measure_ids(kind: str, count: int, dir: Path, seal_at: int = ..., lookups: int = ...) -> IdsMeasured: ...
