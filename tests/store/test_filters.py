"""Filters follow the model's dimensions: each is a filter of the query module and of the dashboard's API, and
only combinations the aggregates can answer exactly are accepted."""

from __future__ import annotations

import inspect
from dataclasses import fields

from pulse.aggregate.model import DIMENSIONS
from pulse.dashboard import app
from pulse.store.query import Filters


def test_every_dimension_is_a_filter_of_the_query_module_and_the_api() -> None:
    assert set(DIMENSIONS) <= {f.name for f in fields(Filters)}
    assert set(DIMENSIONS) <= set(inspect.signature(app.filters).parameters)


def test_the_source_follows_the_filters_and_unanswerable_combinations_are_refused() -> None:
    assert Filters(0, 1).source == "windows"
    assert Filters(0, 1, event_type="view").source == "windows"
    for dim in DIMENSIONS:
        one = Filters(0, 1, **{dim: "x"})
        assert (one.source, one.dimension, one.problem()) == ("dims", (dim, "x"), None)
    assert Filters(0, 1, item_id="i", category="c").problem() is None
    assert Filters(0, 1, item_id="i", category="c").source == "items"
    assert "item filter combines only with a category" in (Filters(0, 1, item_id="i", country="DE").problem() or "")
    assert "at a time" in (Filters(0, 1, country="DE", device="mobile").problem() or "")
    assert Filters(0, 1, user_id="u", event_type="view").problem() is None  # the user's own hours answer
    assert "user filter combines only with an event type" in (Filters(0, 1, user_id="u", country="DE").problem() or "")
