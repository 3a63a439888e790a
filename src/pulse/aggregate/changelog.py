"""Serialise a partition's changed state to its compacted changelog, and rebuild state from it.

Keys are msgpack tuples (deterministic bytes, so compaction keeps one value per piece of state); values are
msgpack lists; a tombstone (None) removes state that is final and already emitted, so restore time follows
live state rather than history. Written in the same Kafka transaction as the input offsets.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from pulse.aggregate.state import PartitionState, WindowAgg

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()

Record = tuple[bytes, bytes | None]

META = _enc.encode(("m",))
# Written after a flush published every pending item shard / user document: on restore, state logged before
# the marker's offset is already in Elasticsearch's input, and only what came after is re-published.
ITEMS_PUBLISHED = _enc.encode(("pub", "items"))
USERS_PUBLISHED = _enc.encode(("pub", "users"))


def _k(*parts: object) -> bytes:
    return _enc.encode(parts)


def changed_records(st: PartitionState, finals: list[WindowAgg]) -> list[Record]:
    """Changelog records for everything that changed since the last flush, and tombstones for what ended."""
    out: list[Record] = []
    final_ids = {id(w) for w in finals}
    for win in st.windows.values():
        size, start = win.size, win.start
        if id(win) in final_ids:
            out.append((_k("w", size, start, "s"), None))
            out.extend((_k("w", size, start, "i", item), None) for item in win.items.members())
            out.extend((_k("w", size, start, "c", cat), None) for cat in win.cats.members())
            out.extend((_k("w", size, start, "u", user), None) for user in win.users)
            continue
        if win.dirty:
            out.append((_k("w", size, start, "s"), _enc.encode((win.counts, win.status, win.rev, win.funnel))))
        out.extend((_k("w", size, start, "i", item), _enc.encode(win.items.row(item))) for item in win.items.dirty)
        out.extend((_k("w", size, start, "c", cat), _enc.encode(win.cats.row(cat))) for cat in win.cats.dirty)
        out.extend((_k("w", size, start, "u", user), b"\x01") for user in win.new_users)
    out.extend((_k("u", user), _enc.encode(st.users[user])) for user in st.dirty_users)
    out.extend((_k("it", item), _enc.encode(st.items.row(item))) for item in st.items.dirty)
    out.extend((_k("s", sid), _enc.encode(st.sessions[sid])) for sid in st.dirty_sessions)
    out.extend((_k("s", sid), None) for sid in st.gone_sessions)
    wm = st.watermark
    out.append((META, _enc.encode((st.next_offset, wm.max_ts, wm.floor, st.counters.as_list()))))
    return out


def published_markers(items: bool, users: bool) -> list[Record]:
    """Markers for a flush that published all pending item shards (``items``) and/or user documents."""
    return [(marker, b"") for marker, done in ((ITEMS_PUBLISHED, items), (USERS_PUBLISHED, users)) if done]


def restore(st: PartitionState, records: Iterable[tuple[int, bytes, bytes | None]]) -> int:
    """Apply changelog records ``(offset, key, value)`` in offset order to an empty state; returns how many
    keys are live. Item and user state logged after the last matching published marker is marked unpublished."""
    latest: dict[bytes, tuple[int, bytes]] = {}
    for offset, key, value in records:
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = (offset, value)
    items_at = latest.pop(ITEMS_PUBLISHED, (-1, b""))[0]
    users_at = latest.pop(USERS_PUBLISHED, (-1, b""))[0]
    for key, (offset, value) in latest.items():
        _apply(st, _dec.decode(key), value, offset > items_at, offset > users_at)
    return len(latest)


def _apply(st: PartitionState, key: list, value: bytes, items_pending: bool, users_pending: bool) -> None:
    kind = key[0]
    if kind == "m":
        next_offset, max_ts, floor, counters = _dec.decode(value)
        st.next_offset = next_offset
        st.watermark.max_ts, st.watermark.floor = max_ts, floor
        c = st.counters
        c.accepted, c.dead_lettered, c.late, c.duplicates = counters
        return
    if kind == "u":
        st.users[key[1]] = _dec.decode(value)
        if users_pending:
            st.unpublished_users.add(key[1])
    elif kind == "it":
        st.items.load(key[1], *_dec.decode(value), unpublished=items_pending)
    elif kind == "s":
        st.sessions[key[1]] = _dec.decode(value)
    elif kind == "w":
        size, start, part = key[1], key[2], key[3]
        win = st.window(size, start)
        if part == "s":
            counts, status, win.rev, win.funnel = _dec.decode(value)
            win.counts.update(counts)
            win.status.update(status)
        elif part == "i":
            win.items.load(key[4], *_dec.decode(value), unpublished=items_pending)
        elif part == "c":
            win.cats.load(key[4], *_dec.decode(value), unpublished=False)  # published on every flush
        elif part == "u":
            win.users.add(key[4])
