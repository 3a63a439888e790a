"""Compare expected documents (from the reference recompute) with what a projection holds."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pulse.aggregate.docs import expand
from pulse.aggregate.model import (
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


@dataclass
class DocDiff:
    checked: int = 0
    matched: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, Any, Any]] = field(default_factory=list)  # id, field, expected, actual
    problems: list[str] = field(default_factory=list)  # found in the input before any document
    by_kind: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched or self.problems)

    def summary(self, limit: int = 5) -> str:
        parts = [f"checked {self.checked}, matched {self.matched}, missing {len(self.missing)}, "
                 f"extra {len(self.extra)}, mismatched {len(self.mismatched)}"]
        parts += self.problems
        parts += [f"missing {m}" for m in self.missing[:limit]]
        parts += [f"extra {m}" for m in self.extra[:limit]]
        parts += [f"{i}.{f}: expected {e!r}, got {a!r}" for i, f, e, a in self.mismatched[:limit]]
        return "\n".join(parts)


def users_problem(exact: set[str], doc_hll: dict[str, Any] | None) -> str | None:
    """Why a window's HyperLogLog does not stand for its exact set of users (None: within the tolerance)."""
    merged = MergedUsers()
    merged.add(doc_hll)
    got, want = merged.estimate(), len(exact)
    if abs(got - want) > USERS_TOLERANCE * want + 0.5:
        return f"estimate {got} is not within {USERS_TOLERANCE:.1%} of {want} distinct users"
    return None


def _field_problems(doc_id: str, want: dict[str, Any], have: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    out = []
    for k, v in want.items():
        if k in SKETCH_FIELDS:
            if problem := sketch_problem(v, have.get(k)):
                out.append((doc_id, k, f"quantiles of {len(v)} values", problem))
        elif k == USERS_SKETCH:
            if problem := users_problem(v, have.get(k)):
                out.append((doc_id, k, f"{len(v)} distinct users", problem))
        elif have.get(k) != v:
            out.append((doc_id, k, v, have.get(k)))
    return out


COUNTER_FIELDS = ("accepted", "dead_lettered", "late", "duplicates", "forwarded")


def diff_documents(expected: Expected, actual: dict[str, dict[str, Any]]) -> DocDiff:
    """Every expected document must exist with equal values for the fields the reference defines (quantile
    sketches: every value counted, each quantile within the stated bound; HyperLogLogs: within
    ``USERS_TOLERANCE``); documents of the same kinds that the reference
    does not expect are extra. Partition documents are compared by
    their summed counters. Packed item documents are compared item by item."""
    actual = dict(expand(actual.items()))
    out = DocDiff(problems=list(expected.problems))
    kinds = {doc["kind"] for doc in expected.docs.values()}
    for doc_id, want in expected.docs.items():
        out.checked += 1
        out.by_kind[want["kind"]] += 1
        have = actual.get(doc_id)
        if have is None:
            out.missing.append(doc_id)
            continue
        bad = _field_problems(doc_id, want, have)
        if bad:
            out.mismatched.extend(bad)
        else:
            out.matched += 1
    out.extra = sorted(i for i, d in actual.items() if d.get("kind") in kinds and i not in expected.docs)
    partitions = [d for d in actual.values() if d.get("kind") == "partition"]
    if partitions:
        for name in COUNTER_FIELDS:
            got = sum(int(d.get(name, 0)) for d in partitions)
            want_n = getattr(expected, name)
            out.checked += 1
            if got != want_n:
                out.mismatched.append(("partition:*", name, want_n, got))
            else:
                out.matched += 1
    return out
