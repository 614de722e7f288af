"""Structured (JSON lines) logging for the service and its workers."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

SQL_LOGGER = "sqlalchemy.engine.Engine"


class NoResultRows(logging.Filter):
    """Drops SQLAlchemy's "Row (...)" records: result rows hold personal data.

    With SQL echo at DEBUG (LOG_LEVEL=DEBUG, or someone debugging), SQLAlchemy logs every
    row it reads. Parameters are hidden by the engine (hide_parameters); rows have no such
    switch, so they are filtered on the logger that creates them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Row %r"


_no_result_rows = NoResultRows()


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=True)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The access log is noisy under load; keep it at INFO only when asked for DEBUG/INFO.
    logging.getLogger("omniloyal.access").setLevel(level)
    sql = logging.getLogger(SQL_LOGGER)
    if _no_result_rows not in sql.filters:
        sql.addFilter(_no_result_rows)
