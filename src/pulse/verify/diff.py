"""Compare expected documents (from the reference recompute) with what a projection holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pulse.aggregate.model import (
    PARTITION_COUNTERS,
    QUANTILES,
    SKETCH_ACCURACY,
    SKETCHED,
    USERS_SKETCH,
    USERS_STANDARD_ERROR,
    MergedSketch,
    MergedUsers,
    quantile_name,
    sketch_field,
)
from pulse.verify import revisions
from pulse.verify.order import UNCHECKED, Counts
from pulse.verify.reference import Expected

SKETCH_FIELDS = frozenset(sketch_field(name) for name in SKETCHED)
USERS_TOLERANCE = 4 * USERS_STANDARD_ERROR
"""How far a HyperLogLog's estimate may be from the exact count (4 standard errors, relative)."""


def exact_quantile(values: list[int], q: float) -> int:
    """The value at rank ⌊q·(n − 1)⌋ of the sorted values (what the sketch's bound is stated against)."""
    return sorted(values)[int(q * (len(values) - 1))]


def sketch_problem(exact: list[int], sketch: dict[str, Any] | None) -> str | None:
    """Why a document's sketch does not stand for the exact values (None: it counts every value and each
    quantile is within the stated relative bound of the exact one)."""
    merged = MergedSketch()
    merged.add(sketch)
    if merged.count != len(exact):
        return f"{merged.count} values sketched, {len(exact)} expected"
    if not exact:
        return None
    estimates = merged.quantiles()
    for q in QUANTILES:
        want, got = exact_quantile(exact, q), estimates[quantile_name(q)]
        if got is None or abs(got - want) > SKETCH_ACCURACY * want * (1 + 1e-9):
            return f"{quantile_name(q)} {got} is not within {SKETCH_ACCURACY:.0%} of {want}"
    return None


EXAMPLES = 20  # differences kept to show, of each sort


@dataclass
class DocDiff:
    """How documents compared: counts of each outcome, and the first few differences of each sort to show."""
    checked: int = 0
    matched: int = 0
    missing: int = 0
    extra: int = 0
    mismatched: int = 0
    examples: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # found in the input before any document
    by_kind: Counter[str] = field(default_factory=Counter)
    on_note: Callable[[str], None] | None = field(default=None, repr=False, compare=False)  # every difference

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.mismatched

    @property
    def ok(self) -> bool:
        return not (self.differences or self.problems)

    def note(self, what: str) -> None:
        if self.on_note is not None:
            self.on_note(what)
        if len(self.examples) < 3 * EXAMPLES:
            self.examples.append(what)

    def add(self, other: DocDiff) -> None:
        for name in ("checked", "matched", "missing", "extra", "mismatched"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.examples += other.examples[: max(0, 3 * EXAMPLES - len(self.examples))]
        self.problems += other.problems
        self.by_kind.update(other.by_kind)

    def summary(self, limit: int = 5) -> str:
        return "\n".join([f"checked {self.checked}, matched {self.matched}, missing {self.missing}, "
                          f"extra {self.extra}, mismatched {self.mismatched}", *self.problems,
                          *self.examples[: 3 * limit]])


def users_problem(exact: set[str], doc_hll: dict[str, Any] | None) -> str | None:
    """Why a window's HyperLogLog does not stand for its exact set of users (None: within the tolerance)."""
    merged = MergedUsers()
    merged.add(doc_hll)
    got, want = merged.estimate(), len(exact)
    # a few users read exactly while no two share a register; one such pair in a small set is a miss of one
    if abs(got - want) > USERS_TOLERANCE * want + 1.5:
        return f"estimate {got} is not within {USERS_TOLERANCE:.1%} of {want} distinct users"
    return None


def _field_problems(want: dict[str, Any], have: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    out = []
    unknown = want.get(UNCHECKED, ())
    for k, v in want.items():
        if k == UNCHECKED or k in unknown:
            continue
        if k in SKETCH_FIELDS:
            if problem := sketch_problem(v, have.get(k)):
                out.append((k, f"quantiles of {len(v)} values", problem))
        elif k == USERS_SKETCH:
            if problem := users_problem(v, have.get(k)):
                out.append((k, f"{len(v)} distinct users", problem))
        elif have.get(k) != v:
            out.append((k, v, have.get(k)))
    return out


def compare(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]], out: DocDiff) -> None:
    """Every expected document must exist with equal values for the fields the reference defines (quantile
    sketches: every value counted, each quantile within the stated bound; HyperLogLogs: within
    ``USERS_TOLERANCE``); every other document of ``actual`` is extra. ``actual`` holds packed documents
    expanded (:func:`pulse.aggregate.docs.expand`)."""
    for doc_id, want in expected.items():
        out.checked += 1
        out.by_kind[want["kind"]] += 1
        have = actual.get(doc_id)
        if have is None:
            out.missing += 1
            out.note(f"missing {doc_id}")
            continue
        bad = _field_problems(want, have)
        out.mismatched += len(bad)
        for name, e, a in bad:
            out.note(f"{doc_id}.{name}: expected {e!r}, got {a!r}")
        if not bad:
            out.matched += 1
    for doc_id in sorted(actual.keys() - expected.keys()):
        out.extra += 1
        out.note(f"extra {doc_id}")


def compare_totals(expected: Counts, partitions: list[dict[str, Any]], out: DocDiff) -> None:
    """The partition documents' counters, summed, must equal the recompute's (when there are any)."""
    if not partitions:
        return
    for name in PARTITION_COUNTERS:
        got, want = sum(int(d.get(name, 0)) for d in partitions), getattr(expected, name)
        out.checked += 1
        if got != want:
            out.mismatched += 1
            out.note(f"partition:*.{name}: expected {want!r}, got {got!r}")
        else:
            out.matched += 1


def diff_documents(expected: Expected, actual: dict[str, dict[str, Any]]) -> DocDiff:
    """:func:`compare` of a whole recompute with a whole projection (documents of kinds the recompute made
    none of are not looked at), and :func:`compare_totals`."""
    actual = revisions.summed(actual.items())
    out = DocDiff(problems=list(expected.problems))
    kinds = {doc["kind"] for doc in expected.docs.values()}
    compare(expected.docs, {i: d for i, d in actual.items() if d.get("kind") in kinds}, out)
    totals = Counts(read=expected.produced, dead_lettered=expected.dead_lettered, late=expected.late,
                    duplicates=expected.duplicates, accepted=expected.accepted, forwarded=expected.forwarded,
                    corrected=expected.corrected)
    compare_totals(totals, [d for d in actual.values() if d.get("kind") == "partition"], out)
    return out
