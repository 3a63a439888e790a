"""Import Pulse's saved objects into Kibana through its saved-objects import API, checking the answer."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import orjson

from pulse.errors import PulseError
from pulse.kibana.saved_objects import ndjson


@dataclass(frozen=True)
class ImportResult:
    count: int
    errors: list[str]


def import_objects(url: str, space: str | None = None, auth: tuple[str, str] | None = None,
                   timeout: float = 60.0) -> ImportResult:
    """POST the NDJSON (overwriting Pulse's own objects); raise PulseError unless Kibana reports success."""
    base = url.rstrip("/") + (f"/s/{space}" if space else "")
    try:
        resp = httpx.post(f"{base}/api/saved_objects/_import", params={"overwrite": "true"},
                          headers={"kbn-xsrf": "pulse"}, auth=auth, timeout=timeout,
                          files={"file": ("pulse-kibana.ndjson", ndjson().encode(), "application/ndjson")})
    except httpx.HTTPError as exc:
        raise PulseError(f"cannot reach Kibana at {url}: {exc}") from None
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        raise PulseError(f"Kibana at {url} answered {resp.status_code} without JSON: {resp.text[:200]}") from None
    if resp.status_code >= 400:
        raise PulseError(f"Kibana refused the import ({resp.status_code}): {body.get('message', body)}")
    errors = [f"{e.get('type')}/{e.get('id')}: {e.get('error', {}).get('type', e.get('error'))}"
              for e in body.get("errors") or []]
    if not body.get("success") or errors:
        raise PulseError(f"Kibana imported {body.get('successCount', 0)} objects with {len(errors)} errors: "
                         + "; ".join(errors[:5]))
    return ImportResult(int(body.get("successCount", 0)), errors)
