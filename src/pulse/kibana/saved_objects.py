"""Pulse's Kibana dashboard as code: data views, Lens visualisations and one dashboard, as saved objects.

`pulse kibana export` writes them as NDJSON (the file shipped in the package and imported by Compose's setup
service); `pulse kibana import --url` posts them to Kibana's saved-objects import API. Migration versions are
those of the oldest Kibana supported (8.11), so every 8.x ≥ 8.11 and 9.x migrates them forward on import.
"""

from __future__ import annotations

import json
from typing import Any

from pulse.aggregate.model import DIMENSIONS, FUNNEL

OLDEST_KIBANA = "8.11.0"
CORE_MIGRATION = "8.8.0"
TYPE_MIGRATION = {"index-pattern": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}
STEPS = FUNNEL

# data view id → (alias it reads, time field)
DATA_VIEWS = {
    "pulse-windows": ("pulse-windows", "start"),
    "pulse-users": ("pulse-users", "last_seen"),
    "pulse-items": ("pulse-items", None),
    "pulse-partitions": ("pulse-partitions", "flushed_at"),
    "pulse-heartbeat": ("pulse-heartbeat", "at"),
    "pulse-events": ("pulse-events", "ts"),
    "pulse-deadletter": ("pulse-deadletter", "routed_at"),
    "pulse-late": ("pulse-late", "ts"),
}


def _obj(kind: str, oid: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": kind, "id": oid, "attributes": attributes, "references": references, "managed": False,
            "coreMigrationVersion": CORE_MIGRATION, "typeMigrationVersion": TYPE_MIGRATION[kind]}


def data_view(oid: str) -> dict[str, Any]:
    title, time_field = DATA_VIEWS[oid]
    attributes = {"title": title, "name": f"Pulse {title.removeprefix('pulse-')}", "fields": "[]",
                  "runtimeFieldMap": "{}", "fieldFormatMap": "{}", "typeMeta": "{}", "allowNoIndex": True}
    if time_field:
        attributes["timeFieldName"] = time_field
    return _obj("index-pattern", oid, attributes, [])


# -- Lens columns ---------------------------------------------------------------------------------------------
def _sum(field: str, label: str) -> dict[str, Any]:
    return {"label": label, "customLabel": True, "dataType": "number", "operationType": "sum", "sourceField": field,
            "isBucketed": False, "scale": "ratio", "params": {"emptyAsNull": True}}


def _count(label: str) -> dict[str, Any]:
    return {"label": label, "customLabel": True, "dataType": "number", "operationType": "count",
            "sourceField": "___records___", "isBucketed": False, "scale": "ratio", "params": {"emptyAsNull": True}}


def _last(field: str, label: str, sort_field: str) -> dict[str, Any]:
    return {"label": label, "customLabel": True, "dataType": "number", "operationType": "last_value",
            "sourceField": field, "isBucketed": False, "scale": "ratio", "params": {"sortField": sort_field}}


def _histogram(field: str) -> dict[str, Any]:
    return {"label": field, "dataType": "date", "operationType": "date_histogram", "sourceField": field,
            "isBucketed": True, "scale": "interval", "params": {"interval": "auto", "includeEmptyRows": False}}


def _terms(field: str, order_by: str | None, size: int = 10) -> dict[str, Any]:
    order = {"type": "column", "columnId": order_by} if order_by else {"type": "alphabetical"}
    return {"label": field, "dataType": "string", "operationType": "terms", "sourceField": field, "isBucketed": True,
            "scale": "ordinal", "params": {"size": size, "orderBy": order, "orderDirection": "desc",
                                           "otherBucket": False, "missingBucket": False}}


def lens(oid: str, title: str, view: str, kql: str, columns: dict[str, dict[str, Any]],
         visualization_type: str, visualization: dict[str, Any]) -> dict[str, Any]:
    layer = "layer1"
    state = {
        "datasourceStates": {"formBased": {"layers": {layer: {
            "columns": columns, "columnOrder": list(columns), "incompleteColumns": {}}}}},
        "visualization": visualization | ({"layerId": layer} if "layers" not in visualization else {}),
        "query": {"query": kql, "language": "kuery"},
        "filters": [],
        "internalReferences": [], "adHocDataViews": {},
    }
    return _obj("lens", oid, {"title": title, "description": "", "visualizationType": visualization_type,
                              "state": state},
                [{"type": "index-pattern", "id": view, "name": f"indexpattern-datasource-layer-{layer}"}])


def _metric(oid: str, title: str, view: str, kql: str, column: dict[str, Any]) -> dict[str, Any]:
    return lens(oid, title, view, kql, {"m": column}, "lnsMetric", {"metricAccessor": "m", "layerType": "data"})


def _xy(oid: str, title: str, view: str, kql: str, x: str, ys: dict[str, dict[str, Any]],
        split: dict[str, Any] | None = None, series: str = "bar_stacked") -> dict[str, Any]:
    columns = {"x": _histogram(x), **({"split": split} if split else {}), **ys}
    layer = {"layerId": "layer1", "layerType": "data", "seriesType": series, "xAccessor": "x",
             "accessors": list(ys), **({"splitAccessor": "split"} if split else {})}
    return lens(oid, title, view, kql, columns, "lnsXY", {
        "layers": [layer], "preferredSeriesType": series, "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide", "fittingFunction": "None"})


def _table(oid: str, title: str, view: str, kql: str, columns: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return lens(oid, title, view, kql, columns, "lnsDatatable", {
        "layerType": "data", "columns": [{"columnId": c} for c in columns]})


SUMMARY = 'kind : "window" and window : "1m"'


def visualisations() -> list[dict[str, Any]]:
    w = "pulse-windows"
    return [
        _metric("pulse-kpi-events", "Events", w, SUMMARY, _sum("events", "events")),
        _metric("pulse-kpi-revenue", "Revenue (cents)", w, SUMMARY, _sum("revenue_cents", "revenue (cents)")),
        _metric("pulse-kpi-purchases", "Purchases", w, SUMMARY, _sum("purchases", "purchases")),
        _metric("pulse-kpi-users", "Active users (Σ per-minute uniques)", w, SUMMARY,
                _sum("unique_users", "user-minutes")),
        _metric("pulse-kpi-errors", "Errors", w, SUMMARY, _sum("errors", "errors")),
        _metric("pulse-kpi-conversions", "Sessions that purchased (funnel)", w, SUMMARY,
                _sum("funnel.purchase", "converted sessions")),
        _xy("pulse-events-by-type", "Events per minute by type", w, SUMMARY, "start",
            {f"y-{t}": _sum(f"counts.{t}", t) for t in STEPS}),
        _xy("pulse-revenue", "Revenue per minute (cents)", w, SUMMARY, "start",
            {"y": _sum("revenue_cents", "revenue (cents)")}, series="line"),
        _xy("pulse-errors", "Errors per minute", w, SUMMARY, "start", {"y": _sum("errors", "errors")},
            series="line"),
        _xy("pulse-funnel", "Ordered funnel per minute (sessions)", w, SUMMARY, "start",
            {f"y-{t}": _sum(f"funnel.{t}", t) for t in STEPS}, series="line"),
        # Pulse packs item partials into nested rows, which Lens cannot aggregate: top items come from raw events
        _table("pulse-top-items", "Top items (views, raw events)", "pulse-events", 'event_type : "view"', {
            "item": _terms("item_id", "views"), "views": _count("views")}),
        _xy("pulse-raw-events", "Raw events by type (filter by user, item, type)", "pulse-events", "", "ts",
            {"y": _count("events")}, split=_terms("event_type", "y", 8)),
        # the breakdowns are nested rows too: Lens splits the raw events by each dimension instead
        *(_xy(f"pulse-by-{dim}", f"Events by {dim} (raw events)", "pulse-events", "", "ts", {"y": _count("events")},
              split=_terms(dim, "y", 10)) for dim in DIMENSIONS),
        _table("pulse-pipeline-status", "Pipeline status (heartbeat)", "pulse-heartbeat", "", {
            "component": _terms("component", None, 20),
            "aggregator_lag": _last("aggregator_lag", "aggregator lag (records)", "at"),
            "store_lag": _last("store_lag", "writer lag (documents)", "at"),
            "retries": _last("retries", "Elasticsearch retries", "at")}),
        _table("pulse-dead-letters", "Dead letters by reason", "pulse-deadletter", "", {
            "reason": _terms("reason", "n", 20), "n": _count("records")}),
        _xy("pulse-late-events", "Events too late to correct, per interval", "pulse-late", "", "ts",
            {"y": _count("too-late events")}),
        _table("pulse-partition-accounting", "Record accounting per partition", "pulse-partitions",
               'kind : "partition"', {
                   "partition": _terms("partition", None, 64), "accepted": _last("accepted", "accepted", "flushed_at"),
                   "corrected": _last("corrected", "corrected", "flushed_at"),
                   "dead": _last("dead_lettered", "dead-lettered", "flushed_at"),
                   "late": _last("late", "late", "flushed_at"),
                   "dup": _last("duplicates", "duplicates", "flushed_at")}),
    ]


CONTROLS = (("ctl-type", "event_type", "Event type"), ("ctl-item", "item_id", "Item"), ("ctl-user", "user_id", "User"),
            *((f"ctl-{dim}", dim, dim.capitalize()) for dim in DIMENSIONS))


def dashboard(panels: list[dict[str, Any]]) -> dict[str, Any]:
    layout, refs = [], []
    widths = {"lnsMetric": (8, 6)}
    x = y = row_h = 0
    for i, vis in enumerate(panels):
        w, h = widths.get(vis["attributes"]["visualizationType"], (24, 12))
        if x + w > 48:
            x, y, row_h = 0, y + row_h, 0
        pid = f"p{i}"
        layout.append({"type": "lens", "panelIndex": pid, "gridData": {"x": x, "y": y, "w": w, "h": h, "i": pid},
                       "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{pid}"})
        refs.append({"type": "lens", "id": vis["id"], "name": f"{pid}:panel_{pid}"})
        x, row_h = x + w, max(row_h, h)
    controls = {cid: {"order": n, "width": "medium", "grow": True, "type": "optionsListControl",
                      "explicitInput": {"id": cid, "fieldName": field, "title": title, "selectedOptions": [],
                                        "enhancements": {}}}
                for n, (cid, field, title) in enumerate(CONTROLS)}
    refs.extend({"type": "index-pattern", "id": "pulse-events",
                 "name": f"controlGroup_{cid}:optionsListDataView"} for cid, _f, _t in CONTROLS)
    attributes = {
        "title": "Pulse — live interaction analytics",
        "description": "KPIs, series, top items, funnel, raw-event drill-down and pipeline status. Filters: event "
                       f"type, item, user, {', '.join(DIMENSIONS)} (controls) and the time picker; brush a chart "
                       "to drill into time.",
        "panelsJSON": json.dumps(layout),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "syncCursor": True,
                                   "syncTooltips": False, "hidePanelTitles": False}),
        "controlGroupInput": {"controlStyle": "oneLine", "chainingSystem": "HIERARCHICAL",
                              "panelsJSON": json.dumps(controls),
                              "ignoreParentSettingsJSON": json.dumps({"ignoreFilters": False, "ignoreQuery": False,
                                                                      "ignoreTimerange": False,
                                                                      "ignoreValidations": False})},
        "timeRestore": True, "timeFrom": "now-1h", "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 5000},
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                  "filter": []})},
        "version": 1,
    }
    return _obj("dashboard", "pulse-overview", attributes, refs)


def saved_objects() -> list[dict[str, Any]]:
    vis = visualisations()
    return [data_view(v) for v in DATA_VIEWS] + vis + [dashboard(vis)]


def ndjson() -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in saved_objects())
