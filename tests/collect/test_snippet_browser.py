"""A real page in headless Chromium sends clicks with `pulse.js` through `pulse collect` while the broker is down for
20 s and the page is reloaded with events unsent: every click reaches the topic, and the aggregator counts each
once. The reference is the page's own tally of the clicks it made."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from pulse.config import Settings
from pulse.topics import aggregates_topic, ensure_topics, input_topics
from tests.aggregate.harness import read_latest_docs
from tests.collect.test_collect_kafka import PARTITIONS, read_all
from tests.names import unique
from tests.realworld.private_stack import PrivateStack, free_port, private_stack

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
KEY = "page-key-2024"
PAGE = """<!doctype html><html><body><button id="buy">click</button>
<script src="{collector}/pulse.js"></script>
<script>
  Pulse.init({{ key: "{key}", flushMs: 200 }});
  window.tally = function () {{ return JSON.parse(localStorage.getItem("tally") || "[]"); }};
  window.click = function () {{
    var t = tally();
    t.push(Pulse.track("click", {{ item_id: "sku-1" }}));
    localStorage.setItem("tally", JSON.stringify(t));
  }};
</script></body></html>"""


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[PrivateStack]:
    with private_stack(settings, "test-collect-browser") as s:
        yield s


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM and DRIVER):
        pytest.fail("chromium and chromium-driver (Debian packages) are required; .ci/run installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def page_server(root: Path) -> Iterator[str]:
    """The app's own origin, another port than the collector's: its requests are cross-origin."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined,assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_clicks_survive_a_broker_outage_and_a_reload_and_count_once(stack: PrivateStack, browser: WebDriver,
                                                                    tmp_path: Path) -> None:
    bootstrap = stack.settings.bootstrap
    topic = unique("snippet")
    ensure_topics(bootstrap, input_topics(topic, PARTITIONS))
    port = free_port()
    collector_url = f"http://127.0.0.1:{port}"
    with page_server(tmp_path) as origin:
        (tmp_path / "page.html").write_text(PAGE.format(collector=collector_url, key=KEY))
        proc = subprocess.Popen(
            [sys.executable, "-m", "pulse", "collect", "--topic", topic, "--port", str(port), "--delivery-wait", "2s"],
            env={**os.environ, **stack.env, "PULSE_COLLECT_KEYS": f"{KEY}={origin}"}, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: _ready(collector_url), 30, "the collector")
            browser.get(f"{origin}/page.html")
            for _ in range(20):
                browser.execute_script("click()")
            wait_for(lambda: browser.execute_script("return Pulse.pending()") == 0, 30, "the first clicks")
            with stack.stopped("kafka"):
                down = time.monotonic()
                for _ in range(15):
                    browser.execute_script("click()")
                    time.sleep(0.3)
                assert browser.execute_script("return Pulse.pending()") > 0  # nothing acknowledged while down
                browser.refresh()  # unsent events wait in localStorage
                for _ in range(15):
                    browser.execute_script("click()")
                time.sleep(max(0.0, 20 - (time.monotonic() - down)))
            wait_for(lambda: browser.execute_script("return Pulse.pending()") == 0, 120, "the queue to empty")
            tally = browser.execute_script("return tally()")
        finally:
            proc.send_signal(2)
            assert proc.wait(timeout=30) == 0
    assert len(tally) == len(set(tally)) == 50
    ids = [orjson.loads(v)["event_id"] for *_, v, _ in read_all(bootstrap, topic)]
    assert set(ids) == set(tally)  # every click arrived (some more than once: retries while Kafka was away)
    group = unique("snippet-agg")
    done = stack.pulse("aggregate", "--topic", topic, "--group", group, "--exit-when-idle", "2", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = [d for d in read_latest_docs(bootstrap, aggregates_topic(group)).values() if d["kind"] == "partition"]
    assert sum(d["accepted"] for d in parts) == 50
    assert sum(d["duplicates"] for d in parts) == len(ids) - 50


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
