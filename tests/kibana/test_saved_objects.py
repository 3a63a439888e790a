"""Offline checks of the Kibana saved objects: they parse, references resolve, fields exist, versions are old enough."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pulse.kibana.saved_objects import DATA_VIEWS, OLDEST_KIBANA, ndjson
from pulse.store.indices import HEARTBEAT_PROPERTIES, archive_template_body, heartbeat_index, template_body
from tests.cli_helpers import one_line_error, run_pulse

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "kibana" / "pulse-kibana.ndjson"


def _objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SHIPPED.read_text().splitlines() if line.strip()]


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _mapping(alias: str) -> dict[str, Any]:
    """The mapping Pulse's own index templates give the indices behind an alias."""
    family = alias.removeprefix("pulse-")
    if family in ("events", "deadletter", "late"):
        return archive_template_body(family)["template"]["mappings"]
    if alias == heartbeat_index():
        return {"properties": HEARTBEAT_PROPERTIES}
    return template_body(family)["template"]["mappings"]


def _field_exists(mapping: dict[str, Any], field: str) -> bool:
    props = mapping["properties"]
    if field in props:
        return True
    parent, _, _child = field.partition(".")
    # counts.*, funnel.*, status.*: dynamic objects whose members the template maps as long
    return parent in props and props[parent].get("dynamic") is True and bool(mapping.get("dynamic_templates"))


def test_shipped_file_is_what_the_code_generates() -> None:
    assert SHIPPED.read_text() == ndjson(), "regenerate with `pulse kibana export -o deploy/kibana/pulse-kibana.ndjson`"


def test_every_line_parses_and_ids_are_unique() -> None:
    objs = _objects()
    assert len(objs) == len(SHIPPED.read_text().splitlines())
    keys = [(o["type"], o["id"]) for o in objs]
    assert len(set(keys)) == len(keys)
    assert {o["type"] for o in objs} == {"index-pattern", "lens", "dashboard"}
    for o in objs:
        assert set(o) >= {"type", "id", "attributes", "references"}
        for field in ("panelsJSON", "optionsJSON"):
            if field in o["attributes"]:
                json.loads(o["attributes"][field])


def test_every_reference_resolves() -> None:
    objs = _objects()
    present = {(o["type"], o["id"]) for o in objs}
    for o in objs:
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in present, (o["id"], ref)
    board = next(o for o in objs if o["type"] == "dashboard")
    names = {r["name"] for r in board["references"]}
    for panel in json.loads(board["attributes"]["panelsJSON"]):
        assert f"{panel['panelIndex']}:{panel['panelRefName']}" in names
    controls = json.loads(board["attributes"]["controlGroupInput"]["panelsJSON"])
    for cid in controls:
        assert f"controlGroup_{cid}:optionsListDataView" in names
    for lens in (o for o in objs if o["type"] == "lens"):
        layers = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        for layer in layers:
            assert f"indexpattern-datasource-layer-{layer}" in {r["name"] for r in lens["references"]}


def _kql_fields(kql: str) -> list[str]:
    return re.findall(r"([\w.]+)\s*:", kql)


def test_every_field_used_exists_in_the_index_templates() -> None:
    objs = _objects()
    views = {o["id"]: o["attributes"] for o in objs if o["type"] == "index-pattern"}
    used = 0
    for vid, attrs in views.items():
        assert attrs["title"] == DATA_VIEWS[vid][0]
        if "timeFieldName" in attrs:
            assert _field_exists(_mapping(attrs["title"]), attrs["timeFieldName"]), vid
    for lens in (o for o in objs if o["type"] == "lens"):
        view = views[lens["references"][0]["id"]]
        mapping = _mapping(view["title"])
        state = lens["attributes"]["state"]
        for layer in state["datasourceStates"]["formBased"]["layers"].values():
            for col in layer["columns"].values():
                fields = [col["sourceField"], col.get("params", {}).get("sortField")]
                for field in filter(None, fields):
                    if field != "___records___":
                        used += 1
                        assert _field_exists(mapping, field), (lens["id"], field)
        for field in _kql_fields(state["query"]["query"]):
            assert _field_exists(mapping, field), (lens["id"], field)
    board = next(o for o in objs if o["type"] == "dashboard")
    for control in json.loads(board["attributes"]["controlGroupInput"]["panelsJSON"]).values():
        assert _field_exists(_mapping("pulse-events"), control["explicitInput"]["fieldName"])
    assert used > 20


def test_migration_versions_are_not_newer_than_the_oldest_supported_kibana() -> None:
    for o in _objects():
        for key in ("coreMigrationVersion", "typeMigrationVersion"):
            assert _version(o[key]) <= _version(OLDEST_KIBANA), (o["id"], key, o[key])


class _FakeKibana(BaseHTTPRequestHandler):
    """Stands in for Kibana's import endpoint to exercise the client's answer handling (not a Kibana test)."""

    answer: ClassVar[dict[str, Any]] = {}
    seen: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(body)
        assert self.headers["kbn-xsrf"] and "overwrite=true" in self.path
        payload = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def fake_kibana() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _FakeKibana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_import_checks_success_and_errors(fake_kibana: str) -> None:
    n = len(_objects())
    _FakeKibana.answer = {"success": True, "successCount": n, "errors": []}
    ok = run_pulse("kibana", "import", "--url", fake_kibana)
    assert ok.returncode == 0, ok.stderr
    assert f"imported {n} saved objects" in ok.stdout
    assert _FakeKibana.seen and b'"pulse-overview"' in _FakeKibana.seen[-1]
    failure = {"type": "lens", "id": "pulse-top-items", "error": {"type": "missing_references"}}
    _FakeKibana.answer = {"success": False, "successCount": n - 1, "errors": [failure]}
    bad = run_pulse("kibana", "import", "--url", fake_kibana)
    assert "pulse-top-items: missing_references" in one_line_error(bad)


def test_import_with_kibana_down_is_one_line() -> None:
    down = run_pulse("kibana", "import", "--url", "http://127.0.0.1:9")
    assert "cannot reach Kibana" in one_line_error(down)
