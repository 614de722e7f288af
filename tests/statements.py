"""Record the SQL statements a block of code sends (to count round trips in tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from loyalty.db import db


@contextmanager
def statements() -> Iterator[list[str]]:
    """The statements sent inside the block, transaction control (BEGIN, SAVEPOINT,
    RELEASE) left out."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "BEGIN")):
            seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
