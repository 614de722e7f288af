"""Record the SQL one API request sends, to check the pgbench scripts mirror it.

The request runs in-process through Flask's test client on the benchmark database; every
statement SQLAlchemy sends (and each COMMIT / ROLLBACK) is recorded with its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from psycopg.pq import TransactionStatus

from bench.appctx import bench_app


@dataclass(frozen=True)
class Captured:
    status: int
    statements: list[str]
    response: str

    @property
    def count(self) -> int:
        """Round trips to the database, BEGIN / COMMIT / ROLLBACK included."""
        return len(self.statements)

    def as_sql(self) -> str:
        return "\n".join(f"{s.rstrip(';')};" for s in self.statements)


def capture_request(
    method: str, path: str, *, headers: dict[str, str], json: Any | None = None
) -> Captured:
    from loyalty.db import db

    app = bench_app()
    statements: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        text = " ".join(statement.split())
        statements.append(f"{text}  -- {parameters!r}" if parameters else text)

    def on_the_wire(conn: Any) -> bool:
        # In autocommit psycopg sends no BEGIN / COMMIT / ROLLBACK (SQLAlchemy still fires
        # its events): a single-statement read runs that way (ledger member_balance).
        return not getattr(conn.connection.dbapi_connection, "autocommit", False)

    def on_begin(conn: Any) -> None:
        if on_the_wire(conn):
            statements.append("BEGIN")

    def on_commit(conn: Any) -> None:
        if on_the_wire(conn):
            statements.append("COMMIT")

    def on_rollback(conn: Any) -> None:
        if on_the_wire(conn):
            statements.append("ROLLBACK")

    def on_checkout(*_: Any) -> None:
        # pool_pre_ping runs its SELECT 1 straight on the DBAPI cursor, unseen by the
        # execute events, right before every checkout.
        if getattr(engine.pool, "_pre_ping", False):
            statements.append("SELECT 1  -- pool_pre_ping on checkout")

    def on_reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
        # A session closed without a commit hands its connection back with a rollback;
        # psycopg sends it only when a transaction is open (after a read, not a commit).
        if dbapi_connection.info.transaction_status != TransactionStatus.IDLE:
            statements.append("ROLLBACK  -- pool reset")

    with app.app_context():
        engine = db.engine
        db.session.remove()  # start from a checked-in connection, as a new request does
        hooks = {
            "before_cursor_execute": on_execute,
            "begin": on_begin,
            "commit": on_commit,
            "rollback": on_rollback,
        }
        for name, hook in hooks.items():
            sa.event.listen(engine, name, hook)
        sa.event.listen(engine.pool, "reset", on_reset)
        sa.event.listen(engine.pool, "checkout", on_checkout)
        try:
            response = app.test_client().open(path, method=method, headers=headers, json=json)
            # The request shares our app context, so end its session here, as the request's
            # own teardown would (a read hands its connection back with a ROLLBACK).
            db.session.remove()
        finally:
            for name, hook in hooks.items():
                sa.event.remove(engine, name, hook)
            sa.event.remove(engine.pool, "reset", on_reset)
            sa.event.remove(engine.pool, "checkout", on_checkout)
    return Captured(response.status_code, statements, response.get_data(as_text=True)[:500])
