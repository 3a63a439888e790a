"""Logging for every command: one line per notable event (rebalance, restore, retry, outage start and end), as
text for people or JSON lines for log shippers."""

from __future__ import annotations

import datetime as dt
import logging

import orjson

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message (and the error, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure(level: str = "info", fmt: str = "text") -> None:
    """Pulse's loggers at ``level``; libraries' at warning (the Elasticsearch transport's at error: it logs a
    traceback per retried request, which Pulse reports itself)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pulse").setLevel(level.upper())
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
