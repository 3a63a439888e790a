"""The live dashboard in real headless Chromium, against the real pipeline started by `pulse run`.

One `pulse run` (generator, aggregator, writer, archive, dashboard) feeds every test in this module. Numbers on
the page are compared with an independent recompute of the input topic (``pulse.verify.reference``, which shares
no code with the query module that serves the page) over a time range that is already final (older than the
grace period), so they cannot move while we compare.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from elasticsearch import Elasticsearch
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from pulse.aggregate.config import StateConfig
from pulse.aggregate.model import FUNNEL, QUANTILES, SKETCH_ACCURACY, SKETCHED, quantile_name, sketch_field
from pulse.config import Settings
from pulse.stack.private import free_port
from pulse.stack.process import interrupt
from pulse.store import query
from pulse.store.indices import alias
from pulse.verify.diff import exact_quantile
from pulse.verify.reference import Expected, recompute
from pulse.verify.source import recorded_decisions, topic_rows
from tests.names import unique
from tests.realworld.plain import produce

ARTIFACTS = Path(os.environ.get("PULSE_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
USER_MAX_DELAY_S = 5
"""The pipeline's `--user-max-delay`: a user's document is at most this (and a flush) behind the user."""
KPIS = ("events_per_s", "revenue_per_min", "active_users", "conversion_rate", "error_rate")


@dataclass
class Pipeline:
    url: str
    prefix: str
    topic: str
    es: Elasticsearch
    proc: subprocess.Popen[bytes]
    started_ms: int
    bootstrap: str

    def reference(self, until_ms: int | None = None) -> Expected:
        """Every aggregate recomputed from the input topic (`pulse run`'s defaults; its group is the topic), or
        from the records the broker took up to ``until_ms`` (a prefix of every partition)."""
        rows = [r for r in topic_rows(self.bootstrap, self.topic) if until_ms is None or r[3] <= until_ms]
        return recompute(rows, StateConfig.window_sizes, StateConfig.grace_ms, StateConfig.correct_within_ms,
                         decisions=recorded_decisions(self.bootstrap, self.topic, self.topic), partitions=6)


@dataclass
class Shown:
    """What the page should show for one filter over a final range of 10 s windows, from the reference."""
    events_per_s: float
    revenue_per_min: float
    conversion_rate: float | None
    error_rate: float | None
    active_users: int | None
    top: list[str]


def _expected(ref: Expected, start: int, end: int, dim: str | None = None, value: str | None = None) -> Shown:
    def chosen(kind: str) -> list[dict]:
        return [d for d in ref.docs.values() if d["kind"] == kind and d["window"] == "10s"
                and start <= d["start"] < end and (dim is None or (d["dim"], d["value"]) == (dim, value))]
    windows = chosen("window" if dim is None else "window_dim")
    events = sum(sum(d["counts"].values()) for d in windows)
    first = min(d["start"] for d in windows if d["counts"])
    span_s = max(1.0, (end - max(start, first)) / 1000)  # rates over the span the data covers
    revenue = sum(d["revenue_cents"] for d in windows)
    funnel = {k: sum(d["funnel"][k] for d in windows) for k in ("view", "purchase")} if dim is None else None
    errors = sum(d["errors"] for d in windows) if dim is None else None
    if dim == "status":
        errors = 0 if value == "ok" else events
    latest = max((d["start"] for d in windows), default=None)
    users = sum(d["unique_users"] or 0 for d in windows if d["start"] == latest) if dim is None else None
    views: dict[str, int] = {}
    for d in ref.docs.values():
        # items are broken down from minute windows on: the top items are those of the minutes starting in the range
        if d["kind"] == "window_item" and d["window"] == "1m" and start <= d["start"] < end \
                and (dim is None or (dim == "category" and d["category"] == value)):
            views[d["item_id"]] = views.get(d["item_id"], 0) + d["counts"].get("view", 0)
    top = [i for i, n in sorted(views.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0][:10]
    return Shown(events / span_s, revenue / 100 / (span_s / 60),
                 funnel["purchase"] / funnel["view"] if funnel and funnel["view"] else None,
                 errors / events if errors is not None and events else None, users, top)


@pytest.fixture(scope="module")
def pipeline(es_url: str, bootstrap: str) -> Iterator[Pipeline]:
    tag = unique("dash")[len("dash-"):]
    port = free_port()
    env = dict(os.environ) | {"PULSE_TOPIC": f"dash-{tag}", "PULSE_GROUP": f"dash-{tag}",
                              "PULSE_INDEX_PREFIX": f"d{tag}", "PULSE_DASHBOARD_PORT": str(port),
                              "PULSE_COLLECT_PORT": str(free_port()),
                              "PULSE_GEN_RATE": "300", "PULSE_USER_MAX_DELAY": f"{USER_MAX_DELAY_S}s",
                              "PULSE_RUN_VERIFY": "true",
                              # late records up to 15 s beyond the grace: windows settle sooner (see SETTLED_MS)
                              "PULSE_GENERATE_LATE_MAX": "15s"}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = (ARTIFACTS / "pulse-run.log").open("wb")
    started = int(time.time() * 1000)
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "run", "--keep-stack"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    es = Elasticsearch(es_url)
    p = Pipeline(f"http://127.0.0.1:{port}", f"d{tag}", f"dash-{tag}", es, proc, started, bootstrap)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (ARTIFACTS / "pulse-run.log").read_text()[-3000:]
            try:
                # every writer has started: the aggregates and the raw archive (its alias comes with its first index)
                if httpx.get(f"{p.url}/api/health", timeout=2).json().get("partitions", 0) >= 1 \
                        and es.indices.exists_alias(name=alias("events", p.prefix)):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the pipeline did not write aggregates and archive events within 120s:\n"
                        + (ARTIFACTS / "pulse-run.log").read_text()[-3000:])
        yield p
    finally:
        interrupt(proc, 60)
        log.close()
        es.indices.delete(index=f"d{tag}-*", ignore_unavailable=True)
        # the checkpoint `pulse run --verify` kept
        (Settings.from_env().home / "verify" / f"dash-{tag}-d{tag}.json").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM and DRIVER):
        pytest.fail("chromium and chromium-driver (Debian packages) are required; .ci/run installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--window-size=1400,1100", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: WebDriver, script: str, timeout: float = 20) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def _rendered(driver: WebDriver) -> None:
    _wait(driver, "return document.body.dataset.rendered === '1'")


def _attrs(driver: WebDriver, selector: str, attr: str) -> list[str | None]:
    """Read in one script call: the page re-renders every second, so element handles go stale."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll(arguments[0])].map(e => arguments[1] === 'text' ? e.textContent "
        ": e.getAttribute(arguments[1]))", selector, attr)


def _kpi(driver: WebDriver, name: str) -> float | None:
    raw = _attrs(driver, f"#kpi-{name}", "data-value")[0]
    return None if raw in (None, "") else float(raw)


def _same(page: float | None, ours: float | None) -> bool:
    if page is None or ours is None:
        return page is None and ours is None
    return math.isclose(page, ours, rel_tol=1e-9, abs_tol=1e-9)


SETTLED_MS = 70_000
"""How long ago a window must have ended to take no more corrections from `pulse run`'s traffic: its late records
are up to 15 s beyond the 30 s grace (``PULSE_GENERATE_LATE_MAX``), and a flush or two on the way."""


def _final_range(p: Pipeline) -> tuple[int, int]:
    """A range that is complete and settled: from the pipeline start to ``SETTLED_MS`` ago."""
    while time.time() * 1000 - p.started_ms < SETTLED_MS + 35_000:
        time.sleep(1)
    end = (int(time.time() * 1000) - SETTLED_MS) // 10_000 * 10_000
    return (p.started_ms - 60_000) // 10_000 * 10_000, end  # whole seconds: the form's datetime fields have no ms


def _severe(driver: WebDriver) -> list[dict[str, object]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@contextlib.contextmanager
def _archive_hidden(p: Pipeline) -> Iterator[None]:
    """The raw event archive's read alias taken away (its daily indices keep being written), then given back."""
    name = alias("events", p.prefix)
    p.es.indices.refresh(index=f"{p.prefix}-*")
    indices = list(p.es.indices.get_alias(name=name))
    assert indices, "the archive has written nothing yet"
    p.es.indices.update_aliases(actions=[{"remove": {"index": i, "alias": name}} for i in indices])
    try:
        yield
    finally:
        p.es.indices.update_aliases(actions=[{"add": {"index": i, "alias": name}} for i in indices])


def test_every_number_equals_the_reference_without_the_archive(pipeline: Pipeline, browser: WebDriver) -> None:
    """Every filter reads the aggregates: the page shows every number with the raw archive out of reach."""
    with _archive_hidden(pipeline):
        _every_number_equals_the_reference(pipeline, browser)


def _every_number_equals_the_reference(pipeline: Pipeline, browser: WebDriver) -> None:
    start, end = _final_range(pipeline)
    t0 = time.monotonic()
    browser.get(f"{pipeline.url}/?from={start}&to={end}")
    _rendered(browser)
    load_s = time.monotonic() - t0
    first_render_ms = float(browser.execute_script("return document.body.dataset.firstRenderMs"))
    (ARTIFACTS / "dashboard-timing.txt").write_text(
        f"time to first render (performance.now at first render): {first_render_ms:.0f} ms\n"
        f"navigation start to rendered, seen by the test: {load_s * 1000:.0f} ms\n")
    ref = pipeline.reference()
    want = _expected(ref, start, end)
    for name in KPIS:
        assert _same(_kpi(browser, name), getattr(want, name)), name
    for step, n in ((k, sum(d["funnel"][k] for d in ref.docs.values() if d["kind"] == "window"
                            and d["window"] == "10s" and start <= d["start"] < end)) for k in FUNNEL):
        assert int(_attrs(browser, f'#funnel [data-step="{step}"]', "data-value")[0]) == n  # type: ignore[arg-type]
    assert _attrs(browser, "#top-items tbody tr a", "text") == want.top
    for name in SKETCHED:  # merged over 6 partitions and every window of the range, within the stated bound
        exact = [v for d in ref.docs.values() if d["kind"] == "window" and d["window"] == "10s"
                 and start <= d["start"] < end for v in d[sketch_field(name)]]
        assert len(exact) > 20, name
        for q in QUANTILES:
            shown = float(_attrs(browser, f'#quantiles tr[data-key="{name}"] td[data-q="{quantile_name(q)}"]',
                                 "data-value")[0])  # type: ignore[arg-type]
            assert abs(shown - exact_quantile(exact, q)) <= SKETCH_ACCURACY * exact_quantile(exact, q) * (1 + 1e-9)
    health = query.pipeline_health(pipeline.es, pipeline.prefix)
    fresh = _kpi(browser, "freshness_s")  # a live pipeline flushing every second: its newest aggregate is recent
    assert fresh is not None and 0 <= fresh < 10, fresh
    lag_s = _kpi(browser, "aggregator_lag_s")  # a pipeline keeping up at 300 events/s: its oldest record is fresh
    assert lag_s is not None and 0 <= lag_s < 10
    assert health["partitions"] == 6

    # filter by event type through the form: the URL and the numbers follow
    Select(browser.find_element(By.NAME, "event_type")).select_by_visible_text("purchase")
    browser.find_element(By.ID, "apply").click()
    _wait(browser, "return location.search.includes('event_type=purchase')")
    _rendered(browser)
    assert _same(_kpi(browser, "revenue_per_min"), want.revenue_per_min)
    assert _attrs(browser, "#source", "text") == ["windows"]

    # every dimension through the form, one at a time: the window breakdowns answer, equal to the reference
    browser.get(f"{pipeline.url}/?from={start}&to={end}")
    _rendered(browser)
    for dim in ("country", "device", "status", "category"):
        values = [d["value"] for d in ref.docs.values() if d["kind"] == "window_dim" and d["dim"] == dim
                  and d["window"] == "10s" and start <= d["start"] < end]
        value = max(set(values), key=lambda v: (values.count(v), v))
        browser.get(f"{pipeline.url}/?from={start}&to={end}")
        _rendered(browser)
        _wait(browser, f"return document.querySelector('select[name={dim}]').options.length > 1")
        Select(browser.find_element(By.NAME, dim)).select_by_value(value)
        browser.find_element(By.ID, "apply").click()
        _wait(browser, f"return new URLSearchParams(location.search).get('{dim}') === {value!r}")
        _rendered(browser)
        assert _attrs(browser, "#source", "text") == ["dims"]
        shown = _expected(ref, start, end, dim, value)
        for name in ("events_per_s", "revenue_per_min", "error_rate"):
            assert _same(_kpi(browser, name), getattr(shown, name)), (dim, name)
        if dim == "category":
            assert _attrs(browser, "#top-items tbody tr a", "text") == shown.top

    # by user: that user's own hourly series (the hours the range touches, the current one still growing), not
    # the raw archive: between the reference of what the broker had a user document's longest delay and a few
    # flushes before the page loaded and of everything after it rendered
    user = max((d for d in ref.docs.values() if d["kind"] == "user"),
               key=lambda d: (sum(sum(h["counts"].values()) for h in d["hours"] if h["start"] < end), d["user_id"]))
    loaded = int(time.time() * 1000)
    browser.get(f"{pipeline.url}/?from={start}&to={end}&user={user['user_id']}")
    _rendered(browser)
    assert _attrs(browser, "#source", "text") == ["user"] and _attrs(browser, "#window", "text") == ["1h"]
    shown = [float(_attrs(browser, f"#chart-{c}", "data-total")[0]) for c in ("types", "revenue")]  # type: ignore[arg-type]

    def totals(r: Expected) -> list[float]:
        hours = [h for h in r.docs[f"user:{user['user_id']}"]["hours"] if h["start"] + 3_600_000 > start
                 and h["start"] < end]
        return [sum(sum(h["counts"].values()) for h in hours), sum(h["revenue_cents"] for h in hours) / 100]
    low = totals(pipeline.reference(until_ms=loaded - USER_MAX_DELAY_S * 1000 - 10_000))
    high = totals(pipeline.reference())
    assert low[0] > 0 and all(lo - 1e-6 <= s <= hi + 1e-6 for lo, s, hi in zip(low, shown, high, strict=True)), \
        (low, shown, high)

    # by item: the per-item window partials
    item = want.top[0]
    browser.get(f"{pipeline.url}/?from={start}&to={end}&item={item}")
    _rendered(browser)
    assert _attrs(browser, "#source", "text") == ["items"]
    views = sum(d["counts"].get("view", 0) for d in ref.docs.values() if d["kind"] == "window_item"
                and d["item_id"] == item and d["window"] == "1m" and start <= d["start"] < end)
    assert views > 0 and _kpi(browser, "events_per_s") > 0
    assert _severe(browser) == []


def test_charts_update_live(pipeline: Pipeline, browser: WebDriver) -> None:
    browser.get(f"{pipeline.url}/?range=5m")
    _rendered(browser)
    _wait(browser, "return Number(document.getElementById('live').dataset.updates) >= 1")
    before = float(_attrs(browser, "#chart-types", "data-total")[0])  # type: ignore[arg-type]
    updates = int(_attrs(browser, "#live", "data-updates")[0])  # type: ignore[arg-type]
    _wait(browser, f"return Number(document.getElementById('chart-types').dataset.total) > {before}", 30)
    assert int(_attrs(browser, "#live", "data-updates")[0]) > updates  # type: ignore[arg-type]
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    assert _severe(browser) == []


def test_the_follower_pulse_run_started_shows_how_far_every_window_is_verified(pipeline: Pipeline,
                                                                              browser: WebDriver) -> None:
    browser.get(f"{pipeline.url}/?range=5m")
    _rendered(browser)
    _wait(browser, "return /^[0-9]+$/.test(document.getElementById('kpi-verified').dataset.value || '')", 120)
    assert _attrs(browser, "#kpi-verified", "hidden")[0] is None
    shown = int(_attrs(browser, "#kpi-verified", "data-value")[0])  # type: ignore[arg-type]
    health = httpx.get(f"{pipeline.url}/api/health", timeout=10).json()
    assert health["verify_differences"] == 0 and health["verify_first_difference"] is None
    # windows are final 30 s (the grace) after they end: what is verified lies between the start and that
    assert pipeline.started_ms - 60_000 < shown <= health["verified_up_to"] <= time.time() * 1000 - 30_000
    assert "up to" in _attrs(browser, "#kpi-verified .value", "text")[0]  # type: ignore[operator]


def test_drill_down_to_item_and_user(pipeline: Pipeline, browser: WebDriver) -> None:
    browser.get(f"{pipeline.url}/?range=15m")
    _rendered(browser)
    # items are broken down from minute windows on: the first rows come with the first closed minute
    _wait(browser, "return document.querySelectorAll('#top-items tbody tr a').length > 0", timeout=150)
    item = _attrs(browser, "#top-items tbody tr a", "text")[0]
    views_before = (query.item_detail(pipeline.es, item, pipeline.prefix) or {"counts": {}})["counts"].get("view", 0)
    browser.execute_script("document.querySelector('#top-items tbody tr a').click()")  # a real click on the link
    _wait(browser, f"return location.pathname === '/items/{item}'")
    _rendered(browser)
    shown = browser.find_element(By.CSS_SELECTOR, '#state tr[data-key="view"] td').text.replace(",", "")
    views_after = query.item_detail(pipeline.es, item, pipeline.prefix)["counts"]["view"]  # type: ignore[index]
    assert views_before <= float(shown) <= views_after  # counts only grow while the pipeline runs
    assert int(browser.find_element(By.ID, "chart-types").get_attribute("data-points")) >= 1

    pipeline.es.indices.refresh(index=alias("events", pipeline.prefix))
    user = pipeline.es.search(index=alias("events", pipeline.prefix), size=1,
                              sort=[{"ts": "asc"}])["hits"]["hits"][0]["_source"]["user_id"]
    browser.get(f"{pipeline.url}/users/{user}")
    _rendered(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    archived = pipeline.es.count(index=alias("events", pipeline.prefix), query={"term": {"user_id": user}})["count"]
    assert 1 <= len(rows) <= max(archived, 1) and len(rows) <= 200
    first = rows[0].get_attribute("data-event-id")
    assert pipeline.es.exists(index=alias("events", pipeline.prefix), id=first) or pipeline.es.count(
        index=alias("events", pipeline.prefix), query={"term": {"event_id": first}})["count"] == 1
    assert _severe(browser) == []


def test_api_validates_inputs_and_documents_itself(pipeline: Pipeline) -> None:
    api = httpx.Client(base_url=pipeline.url, timeout=10)
    spec = api.get("/openapi.json").json()
    for path in ("/api/overview", "/api/top-items", "/api/health", "/api/items/{item_id}", "/api/users/{user_id}",
                 "/api/stream"):
        assert path in spec["paths"], path
    assert api.get("/api/overview", params={"country": "de"}).status_code == 422
    two = api.get("/api/overview", params={"country": "DE", "device": "mobile"})
    assert two.status_code == 422 and "one of category, status, country, device" in two.json()["detail"]
    assert api.get("/api/overview", params={"item": "x" * 65}).status_code == 422
    assert api.get("/api/overview", params={"user": '" OR 1=1'}).status_code == 422
    assert api.get("/api/overview", params={"from": 2000, "to": 1000}).status_code == 422
    assert api.get("/api/overview", params={"range": "2y"}).status_code == 422
    assert api.get("/api/items/no-such-item").status_code == 404
    body = api.get("/api/overview", params={"range": "15m"}).json()
    assert body["kpis"]["events"] > 0 and body["health"]["partitions"] == 6


def test_late_events_mark_the_window_they_revised(pipeline: Pipeline, browser: WebDriver) -> None:
    """A plain client sends 25 events from twenty minutes ago (before the pipeline started: that window has nothing
    else). The page marks the window "+25 late events", and its revisions add up to the 25."""
    window = (int(time.time() * 1000) - 20 * 60_000) // 10_000 * 10_000
    late = [{"event_id": f"late-{window}-{i}", "event_type": "view", "ts": window + i * 300, "user_id": f"late-u{i}",
             "session_id": f"late-s{i}", "item_id": "late-item", "status": "ok"} for i in range(25)]
    produce(pipeline.bootstrap, pipeline.topic, late, key=lambda e: e["user_id"])
    page = f"{pipeline.url}/?from={window - 60_000}&to={window + 60_000}"
    browser.get(page)
    _rendered(browser)
    row = f'#revised tbody tr[data-start="{window}"]'
    _wait(browser, f"return document.querySelector('{row}')?.dataset.value === '25'", 60)
    assert _attrs(browser, f"{row} td.n", "text") == ["+25 late events"]
    assert float(_attrs(browser, "#chart-types", "data-total")[0]) == 25  # type: ignore[arg-type]
    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    _wait(browser, "return !document.getElementById('revisions').hidden")
    counted = [int(v) for v in _attrs(browser, "#revisions tbody tr", "data-value")]  # type: ignore[arg-type]
    assert sum(counted) == 25 and all(n > 0 for n in counted)
    assert _severe(browser) == []


def test_ctrl_c_stops_everything_it_started(pipeline: Pipeline) -> None:
    pipeline.proc.send_signal(signal.SIGINT)
    assert pipeline.proc.wait(60) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{pipeline.url}/api/health", timeout=2)
