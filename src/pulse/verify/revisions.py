"""Corrections as `pulse verify` compares them: per window document and partition, summed over its revisions.

The engine publishes the corrections each flush counted as revision documents beside a window's own (ids ending
``:r<revision>``; see :mod:`pulse.aggregate.docs`), in as many revisions as flushes. Which flush counted which
correction depends on timing; their sum does not. So both sides are compared summed: the stored revisions of a
window document merged here (by verify's own merge, not the query module's), and the reference's corrections of
it (:meth:`pulse.verify.tally.PartitionTally.revisions`), each under the id ``<window document id>:revisions``.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable
from typing import Any

from pulse.aggregate.docs import expand
from pulse.aggregate.model import HLL_PRECISION, SKETCHED, USERS_SKETCH, MergedSketch, MergedUsers, sketch_field

Doc = tuple[str, dict[str, Any]]
SUFFIX = ":revisions"
_ADDED = ("events", "errors", "purchases", "revenue_cents")
_COUNTED = ("counts", "status", "funnel")
_SKETCHES = tuple(sketch_field(name) for name in SKETCHED)


def is_revision(doc: dict[str, Any]) -> bool:
    return "revision" in doc


def expected(docs: Iterable[Doc]) -> dict[str, dict[str, Any]]:
    """The reference's corrections of each window document, under the id they are compared by (none for a window
    whose corrections add up to nothing: see :func:`_nothing`)."""
    return {doc_id + SUFFIX: doc for doc_id, doc in docs if not _nothing(doc)}


def _nothing(doc: dict[str, Any]) -> bool:
    """A summary that adds nothing: funnel changes that cancel out. The engine publishes what one flush changed,
    and a later flush may take it back (an on-time event re-decides a step a correction moved), so whether such a
    window has revisions depends on where flushes fell."""
    return (doc["kind"] == "window" and not doc["events"] and not any((doc.get("funnel") or {}).values())
            and not doc.get("unique_users"))


def summed(docs: Iterable[Doc]) -> dict[str, dict[str, Any]]:
    """Stored documents as one per row (packed ones expanded), each window document's revisions summed into one
    (:func:`stored`): what does not depend on where the aggregator's flushes fell."""
    expanded = list(expand(docs))
    out = {i: d for i, d in expanded if not is_revision(d)}
    out.update(stored((i, d) for i, d in expanded if is_revision(d)))
    return out


def arrival_free(summed_docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What any arrival order of the same input gives (:func:`summed` documents): all but the funnels of
    revisions, since whether a correction joins its session depends on where the owner watermark stood when it
    was counted (each run's own, which `verify` follows). A revision holding funnel changes alone goes."""
    out = {}
    for doc_id, doc in summed_docs.items():
        if doc_id.endswith(SUFFIX) and doc["kind"] == "window":
            doc = {k: v for k, v in doc.items() if k != "funnel"}
            if _nothing(doc):
                continue
        out[doc_id] = doc
    return out


def stored(docs: Iterable[Doc]) -> dict[str, dict[str, Any]]:
    """Stored revision documents (expanded: one per row), summed per window document they revise."""
    out: dict[str, dict[str, Any]] = {}
    sketches: dict[tuple[str, str], MergedSketch] = {}
    users: dict[str, MergedUsers] = {}
    for doc_id, doc in docs:
        key = doc_id[:doc_id.rindex(":r")] + SUFFIX
        into = out.get(key)
        if into is None:
            into = out[key] = copy.deepcopy(doc)
            into.pop("revision")  # which flush, and when: positional, like the version
            into.pop("revised_at", None)
            for name in _ADDED:
                if name in into:
                    into[name] = 0
            for name in _COUNTED:
                if name in into:
                    into[name] = {}
            for name in ("min_cents", "max_cents"):
                into[name] = None
            if into.get("unique_users") is not None:
                into["unique_users"] = 0  # each revision counts the users it counted first: they add
        _add(into, doc)
        if doc["kind"] == "window":
            for name in _SKETCHES:
                sketches.setdefault((key, name), MergedSketch()).add(doc.get(name))
        elif doc["kind"] == "window_users":
            users.setdefault(key, MergedUsers()).add(doc.get(USERS_SKETCH))
    for (key, name), sketch in sketches.items():
        out[key][name] = {"zeros": sketch.zeros, "bins": sorted([i, n] for i, n in sketch.bins.items())}
    for key, merged in users.items():
        out[key][USERS_SKETCH] = {"p": HLL_PRECISION, "dense": base64.b64encode(bytes(merged.registers)).decode()}
    return {key: doc for key, doc in out.items() if not _nothing(doc)}


def _add(into: dict[str, Any], doc: dict[str, Any]) -> None:
    for name in _ADDED:
        if name in doc:
            into[name] += doc[name]
    if into.get("unique_users") is not None:
        into["unique_users"] += doc["unique_users"]
    for name in _COUNTED:
        for k, n in (doc.get(name) or {}).items():
            into[name][k] = into[name].get(k, 0) + n
    for name, pick in (("min_cents", min), ("max_cents", max)):
        if doc.get(name) is not None:
            into[name] = doc[name] if into[name] is None else pick(into[name], doc[name])
