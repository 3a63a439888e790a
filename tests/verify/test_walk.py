"""The verify walk on its own: a repartition topic that lost, repeated or changed a record, or a watermark a
source could not have sent, is named; and what the walk holds follows the live state, not the input's length."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from pulse.generate.chaos import ChaosConfig
from pulse.verify import revisions
from pulse.verify.lookahead import Entry, Lookahead, index
from pulse.verify.order import Forward, Marker, Take
from pulse.verify.reference import _filled, recompute
from pulse.verify.tally import PartitionTally
from pulse.verify.walk import PartitionWalk, Rules, sent_markers
from tests.aggregate.test_partition_vs_reference import SIZES, make_rows
from tests.aggregate.test_repartition import CFG, PARTITIONS, Cluster, _rows, in_order


def _problems(rows: list[tuple[int, int, bytes, int]], forwarded: dict[int, list[Any]], decisions: Any) -> list[str]:
    return recompute(rows, SIZES, CFG.grace_ms, CFG.correct_within_ms, decisions=decisions, forwarded=forwarded,
                     partitions=PARTITIONS).problems


def test_a_lost_repeated_or_changed_forwarded_record_and_an_impossible_watermark_are_named() -> None:
    rows = _rows(5, 0.0, 0.0, 0.0, n=2_000)
    c = in_order(rows)
    clean = c.forwarded()
    assert _problems(rows, clean, c.decisions) == []
    owner = next(q for q, items in clean.items() if any(isinstance(i, Forward) for _, i in items))
    at = next(n for n, (_, i) in enumerate(clean[owner]) if isinstance(i, Forward))
    offset, first = clean[owner][at]

    lost = copy.deepcopy(clean)
    del lost[owner][at]
    assert any("lost or sent twice" in p for p in _problems(rows, lost, c.decisions))

    twice = copy.deepcopy(clean)
    twice[owner].insert(at, (offset, first))
    assert any("lost or sent twice" in p for p in _problems(rows, twice, c.decisions))

    other = next(v for p, _, v, _ in rows if v not in {r[2] for r in rows if (r[0], r[1]) == (first.partition,
                                                                                                first.offset)})
    changed = copy.deepcopy(clean)
    changed[owner][at] = (offset, Forward(first.partition, first.offset, 1, other))
    assert any("changed on the way" in p for p in _problems(rows, changed, c.decisions))

    ahead = copy.deepcopy(clean)
    n, (moffset, mark) = next((n, x) for n, x in enumerate(ahead[owner]) if isinstance(x[1], Marker)
                              and x[1].value > 0)
    ahead[owner][n] = (moffset, replace(mark, value=mark.value + 3_600_000))
    assert any(f"partition {mark.partition} sent a watermark" in p for p in _problems(rows, ahead, c.decisions))


def test_held_state_follows_the_horizon_and_finished_windows_never_change() -> None:
    """Hours of input at 50 events/s: the ids within the horizon and the open windows are all that is held, and
    every window handed out as finished is final: its end is behind the owner watermark, and the rest of the input
    never touches it."""
    rows = [(o, v, ts) for p, o, v, ts in make_rows(40_000, 3, ChaosConfig(0.01, 0.01, 0.01, 0.01), partitions=1)]
    assert rows[-1][2] - rows[0][2] > 600_000
    tally = PartitionTally(0, [10_000, 60_000], 30 * 60_000)
    handed: dict[str, dict[str, Any]] = {}
    largest_open = 0

    def finished(watermark: int, docs: list[tuple[str, dict[str, Any]]]) -> None:
        nonlocal largest_open
        for doc_id, doc in docs:
            assert doc["end"] <= watermark and doc_id not in handed
            handed[doc_id] = copy.deepcopy(doc)
        largest_open = max(largest_open, len(tally._open))

    walk = PartitionWalk(0, Rules(30_000, 30_000), [], [], tally, finished)
    walked = walk.run(iter(rows), iter(()))
    c = walked.counts
    assert c.accepted > 30_000 and c.late > 0 and c.corrected > 0 and c.duplicates > 0
    # ids: at most what arrives within horizon + grace (50/s over a minute), not the 40,000 read
    assert len(walk.owner.first_seen) < 4_000
    assert largest_open < 2_000
    windows, _ = tally.finish()
    whole = recompute([(0, o, v, ts) for o, v, ts in rows], [10_000, 60_000], 30_000, 30_000).docs
    assert handed and all(whole[i] == d for i, d in handed.items())
    own = {i for i, d in whole.items() if d["kind"] not in ("user", "item") and not i.endswith(revisions.SUFFIX)}
    assert own == handed.keys() | dict(windows).keys()
    assert {i for i in whole if i.endswith(revisions.SUFFIX)} == set(revisions.expected(tally.revisions()))


def test_the_look_ahead_hands_windows_out_long_before_a_late_take_and_counts_the_same() -> None:
    """Input keyed by user id, read as a backlog by an aggregator that flushed each partition in small steps but
    took the other partitions' watermarks only at the very end: the owner watermark stays at "never" until then.
    Nothing is forwarded, so the look-ahead (the owner's own clock, as no sender has records left for it) hands its
    windows out as the input goes, and the documents are the same as without it."""
    rows = make_rows(6_000, 9, ChaosConfig(0.01, 0.01, 0.01, 0.01), partitions=PARTITIONS)
    c = Cluster(rows)
    for _ in range(30):  # every partition read and flushed in steps; nothing taken yet
        for p in range(PARTITIONS):
            c.read(p, 60)
            c.flush(p)
    c.drain()
    owner = 0
    at = {(p, o): (v, ts) for p, o, v, ts in rows}
    items = [(o, _filled(i, at)) for o, i in c.forwarded()[owner]]
    own = [(o, v, ts) for p, o, v, ts in sorted(rows) if p == owner]
    assert {type(d) for d in c.decisions[owner]} == {Take} and min(d.offset for d in c.decisions[owner]) == len(own)

    def walk(ahead: Lookahead | None) -> tuple[dict[str, Any], int]:
        tally = PartitionTally(owner, list(SIZES), 30 * 60_000)
        docs: dict[str, Any] = {}
        early = [0]  # documents handed out before the last input record

        def finished(_watermark: int, out: list[tuple[str, dict[str, Any]]]) -> None:
            docs.update(out)
            if w.out.counts.read < len(own):
                early[0] += len(out)

        rules = Rules(CFG.grace_ms, CFG.correct_within_ms, partitions=PARTITIONS)
        w = PartitionWalk(owner, rules, c.decisions[owner], [], tally, finished, ahead)
        w.run(iter(own), iter(items))
        windows, entities = tally.finish()
        docs.update(windows)
        docs.update(entities)
        return docs, early[0]

    plain, none_early = walk(None)
    entries: list[Entry] = [(o, i.partition, i.value if isinstance(i, Marker) else None) for o, i in items]
    ahead, early = walk(index(entries, items[-1][0] + 1))
    assert ahead == plain
    short = sum(1 for d in plain.values() if d.get("window") in ("10s", "1m"))
    assert none_early == 0 and early > short // 3  # short windows were handed out while the input was read


def test_a_walk_fed_a_piece_at_a_time_as_a_follower_reads_finds_what_one_pass_finds() -> None:
    """`verify --follow` walks each partition a round at a time: the input up to what the aggregator committed,
    the decisions recorded so far, the repartition topic read to its end. Documents and counts must not depend on
    where the rounds cut."""
    rows = _rows(11, 0.02, 0.02, 0.02, n=3_000)
    c = in_order(rows)
    at = {(p, o): (v, ts) for p, o, v, ts in rows}
    forwarded = {q: [(o, _filled(i, at)) for o, i in items] for q, items in c.forwarded().items()}
    markers = sent_markers(i for items in forwarded.values() for i in items)
    whole = recompute(rows, SIZES, CFG.grace_ms, CFG.correct_within_ms, decisions=c.decisions,
                      forwarded=c.forwarded(), partitions=PARTITIONS)
    rules = Rules(CFG.grace_ms, CFG.correct_within_ms, partitions=PARTITIONS)
    docs: dict[str, dict[str, Any]] = {}
    read = accepted = 0
    for p in range(PARTITIONS):
        mine = sorted((o, v, ts) for q, o, v, ts in rows if q == p)
        tally = PartitionTally(p, SIZES, 30 * 60_000)
        walk = PartitionWalk(p, rules, [], [], tally, lambda _w, d: docs.update(d))
        ds, ms, taken = c.decisions.get(p, []), markers.get(p, []), forwarded.get(p, [])
        given, until = 0, 0
        for lo in range(0, len(mine), 173):
            piece, cut = mine[lo:lo + 173], (mine[lo + 172][0] + 1 if lo + 173 < len(mine) else 1 << 62)
            new = [d for d in ds if (mine[lo][0] if lo else -1) < d.offset <= cut]
            walk.extend(new, [m for m in ms if (mine[lo][0] if lo else -1) < m[0] <= cut])
            until = max([until, *(d.until for d in new if isinstance(d, Take))])
            more = [t for t in taken[given:] if t[0] < until + 3]  # to its end: a little past the last take
            given += len(more)
            walk.feed(piece, more)
        walk.feed([], taken[given:])
        walked = walk.close()
        assert walked.counts.problems == []
        read, accepted = read + walked.counts.read, accepted + walked.counts.accepted
        windows, entities = tally.finish()
        docs.update(windows)
        docs.update(entities)
        docs.update(revisions.expected(tally.revisions()))
    assert (read, accepted) == (whole.produced, whole.accepted)
    assert docs == whole.docs
