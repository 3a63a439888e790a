"""`pulse generate --via URL`: the generator's traffic through a `pulse collect` front door instead of straight to
Kafka, as a web app's events come: in batches, each event resent with its own id until the collector answers
it for good (accepted, duplicate or rejected)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import httpx
import orjson

from pulse.errors import PulseError
from pulse.generate.chaos import Record
from pulse.generate.producer import GenerateReport, RunLimits

_LOG = logging.getLogger("pulse.generate")

BATCH = 100
FINAL = ("accepted", "duplicate", "rejected")
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
PACED_BATCH_S = 0.2


def as_event(value: bytes) -> bytes:
    """A record value as an element of a JSON batch: one that is not JSON goes as a string (the collector
    rejects it with its reason, as the aggregator would)."""
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        return orjson.dumps(value.decode(errors="replace"))
    return value


class HttpSender:
    def __init__(self, url: str, key: str | None = None, timeout_s: float = 30.0) -> None:
        base = url.rstrip("/").removesuffix("/v1/batch")
        self.url = f"{base}/v1/batch"
        self._client = httpx.Client(timeout=timeout_s, headers={"X-Pulse-Key": key} if key else {})
        self.report = GenerateReport(requested=None)
        try:  # a wrong address is a mistake to say at once; an outage later is waited out
            self._client.get(f"{base}/healthz", timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            self._client.close()
            raise PulseError(f"cannot reach the collector at {base}: {exc.__class__.__name__}") from None

    def run(self, records: Iterator[Record], limits: RunLimits, clock_elapsed: Callable[[], float],
            on_progress: Callable[[GenerateReport], None] | None = None) -> GenerateReport:
        """Send until the count or duration is reached, or Ctrl-C; then until every event is answered for good."""
        report = self.report
        report.requested = limits.count
        count = limits.count if limits.count is not None else 1 << 62
        deadline = time.monotonic() + limits.duration_s if limits.duration_s else float("inf")
        t0 = time.monotonic()
        batch: list[bytes] = []
        opened = 0.0  # when the batch got its first event
        try:
            for tag, _key, value, _ts in records:
                if report.produced >= count or time.monotonic() >= deadline:
                    break
                if not batch:
                    opened = time.monotonic()
                batch.append(as_event(value))
                report.produced += 1
                report.by_tag[tag] += 1
                report.bytes += len(value)
                if limits.pace:
                    ahead = clock_elapsed() - (time.monotonic() - t0)
                    if ahead > 0.002:
                        time.sleep(min(ahead, 0.5))
                # a paced run sends what it has every PACED_BATCH_S, as an app's snippet does
                if len(batch) >= BATCH or (limits.pace and time.monotonic() - opened >= PACED_BATCH_S):
                    self._send(batch)
                    batch = []
                    report.seconds = time.monotonic() - t0
                    if on_progress:
                        on_progress(report)
            if batch:
                self._send(batch)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            self._client.close()
        report.seconds = time.monotonic() - t0
        return report

    def _send(self, events: list[bytes]) -> None:
        """Post until every event has a final answer (a ``retry`` one goes again in the next request)."""
        tries = 0
        while events:
            body = b'{"events":[' + b",".join(events) + b"]}"
            try:
                answer = self._client.post(self.url, content=body, headers={"Content-Type": "application/json"})
            except httpx.TransportError as exc:
                answer, reason = None, f"the collector at {self.url} is unreachable ({exc.__class__.__name__})"
            if answer is not None and answer.status_code in (200, 207, 503):
                results = answer.json().get("results") if answer.status_code != 503 else None
                if results is not None:
                    for r in results:
                        # a rejected event is delivered too: to the dead-letter topic, with its reason
                        self.report.delivered += r["result"] in FINAL
                    events = [e for e, r in zip(events, results, strict=True) if r["result"] not in FINAL]
                    if not events:
                        return
                reason = f"the collector answered {answer.status_code}"
            elif answer is not None and answer.status_code != 429:
                raise PulseError(f"the collector at {self.url} refused a batch: {answer.status_code} "
                                 f"{answer.text[:200]}")
            elif answer is not None:
                reason = "the collector's rate limit"
            wait = BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]
            if answer is not None and answer.headers.get("retry-after", "").isdigit():
                wait = max(wait, float(answer.headers["retry-after"]))
            if tries == 2:
                _LOG.warning("%s; resending %d events with the same ids", reason, len(events))
            tries += 1
            time.sleep(wait)
