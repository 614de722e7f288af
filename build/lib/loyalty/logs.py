"""Logging for the service and its workers: JSON lines in production, short lines on a console.

JSON lines (the default) are what log collectors read. `omniloyal run --log-format console`
(what `make run` uses) prints one short line per request instead, so what the command
printed at start (addresses, demo keys) doesn't scroll away under request noise.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "console"]
ACCESS_LOGGER = "omniloyal.access"


class ConsoleFormatter(logging.Formatter):
    """`12:04:31 GET /v1/orders 201 12 ms`; other records: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        clock = self.formatTime(record, "%H:%M:%S")
        if record.name == ACCESS_LOGGER and hasattr(record, "status"):
            duration = getattr(record, "duration_ms", 0.0)
            return f"{clock} {record.method} {record.path} {record.status} {duration:.0f} ms"  # type: ignore[attr-defined]
        line = f"{clock} {record.levelname} {record.name}: {record.getMessage()}"
        request_id = getattr(record, "request_id", None)
        if request_id:
            line += f" (request {request_id})"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str, log_format: LogFormat = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "console":
        handler.setFormatter(ConsoleFormatter())
    else:
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=True)
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The access log is noisy under load; keep it at INFO only when asked for DEBUG/INFO.
    logging.getLogger(ACCESS_LOGGER).setLevel(level)
