"""The database handle, the declarative base and the column types every model shares."""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached

# Stable constraint names so Alembic migrations can name what they create and drop.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every database (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Points and money are integers; BIGINT on PostgreSQL, INTEGER (64-bit anyway) on SQLite so
# that autoincrement primary keys keep working there.
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BIGINT_MAX = 2**63 - 1  # the largest id or amount either database can store
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# `metadata` columns: JSON text on both backends (JSONB would reorder the keys), so the
# integrator's object comes back exactly as sent.
MetadataJSON = sa.JSON(none_as_null=True)


# --- SQLite transactions: deferred for reads, IMMEDIATE for writes ----------------------------
#
# SQLite has one writer at a time. A write transaction must take the write lock at BEGIN
# (BEGIN IMMEDIATE): a deferred one that reads first and writes later fails at once
# (SQLITE_BUSY, no waiting) when another writer committed in between. A read must NOT take
# it, or every balance read queues behind a background job. So the mode is chosen per unit
# of work: jobs, CLI commands and anything else write by default; a request reads (deferred
# BEGIN, a WAL snapshot that never waits) until `write_endpoint` calls `prepare_to_write`.
# PostgreSQL ignores all of this (the listener is SQLite's only).

SQLITE_BEGIN_READ = "BEGIN"
SQLITE_BEGIN_WRITE = "BEGIN IMMEDIATE"
_sqlite_begin: ContextVar[str] = ContextVar("omniloyal_sqlite_begin", default=SQLITE_BEGIN_WRITE)


def sqlite_begin_statement() -> str:
    """How the current unit of work begins a SQLite transaction."""
    return _sqlite_begin.get()


def start_reading() -> Token[str]:
    """A request starts as a reader; give the token back to `stop_reading` at its end."""
    return _sqlite_begin.set(SQLITE_BEGIN_READ)


def stop_reading(token: Token[str]) -> None:
    _sqlite_begin.reset(token)


def prepare_to_write() -> None:
    """From now on this unit of work writes: the next SQLite transaction takes the write lock
    at BEGIN. A read transaction already open (authentication) is ended first, since it
    can't be upgraded safely; it holds no changes."""
    if _sqlite_begin.get() == SQLITE_BEGIN_WRITE:
        return
    _sqlite_begin.set(SQLITE_BEGIN_WRITE)
    if db.engine.dialect.name == "sqlite" and db.session().in_transaction():
        db.session.commit()


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def any_of(column: Any, values: Any) -> Any:
    """`column IN values` for a chunk's worth of ids or keys. On PostgreSQL it is sent as
    `column = ANY(%s)` with one array parameter: the statement's text is the same for any
    number of values, so it is compiled once, its conversion is cached by psycopg (which
    parses again every statement over 4 KB or 50 parameters: a 500-id IN list was a fifth
    of a send worker's CPU) and it can be prepared. Elsewhere a plain IN."""
    values = list(values)
    if is_postgres():
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def any_of_parameter(column: Any, name: str, dialect: str) -> Any:
    """`column IN :name` for a statement built once (per dialect) whose list is given at
    execution: on PostgreSQL `column = ANY(:name)`, one array parameter, so the SQL text
    never changes (an expanding IN is rendered again on every execution); elsewhere an
    expanding IN. See `any_of` for lists known when the statement is built."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def upsert_insert(table: Any, dialect: str | None = None) -> Any:
    """An INSERT that supports ON CONFLICT on `dialect` (default: the current one)."""
    if (dialect or db.engine.dialect.name) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def insert_unless_present(table: sa.Table, unique: tuple[str, ...]) -> Any:
    """`INSERT ... ON CONFLICT (unique) DO NOTHING RETURNING id`, the values given as
    parameters at execution. Built once per table and dialect: hot paths (the idempotency
    claim, the order row) run it on every request, and a statement built per call costs
    its construction and cache key every time."""
    return _insert_unless_present(table, unique, db.engine.dialect.name)


@cache
def _insert_unless_present(table: sa.Table, unique: tuple[str, ...], dialect: str) -> Any:
    return (
        upsert_insert(table, dialect)
        .on_conflict_do_nothing(index_elements=list(unique))
        .returning(table.c.id)
    )


def json_rows(parameter: str, columns: dict[str, Any]) -> Any:
    """PostgreSQL: the rows of one JSON parameter (a list of objects; other keys ignored)
    as a derived table of `columns` (name: SQL type), with jsonb_to_recordset. One parameter
    for any number of rows, so the SQL never changes; and one JSON document costs the client
    far less than an array per column (bench.instructions: about 0.5 million instructions
    less per order). Only for rows that are inserted: the planner counts 100 rows for it
    whatever the parameter holds, so a join to it (an UPDATE ... FROM) may scan the table;
    unnest over arrays gives the true count."""
    return (
        sa.func.jsonb_to_recordset(sa.bindparam(parameter, type_=postgresql.JSONB))
        .table_valued(*(sa.column(name, type_) for name, type_ in columns.items()))
        .render_derived(with_types=True)
    )


@cache
def plain_insert(table: sa.Table) -> sa.Insert:
    """`INSERT INTO table`, the values given as parameters at execution (one row or an
    executemany), built once per table."""
    return sa.insert(table)


def constant(value: str) -> Any:
    """`value` written into the SQL text instead of sent as a parameter.

    For a column a partial index is filtered on (`WHERE status = 'held'`): PostgreSQL uses
    such an index only when the query's own predicate proves the index's, and a parameter
    proves nothing to a plan made for any value (a prepared statement's generic plan).
    Only for fixed values in code, never for input.
    """
    return sa.literal(str(value), sa.String(), literal_execute=True)


def utc_day(column: Any) -> Any:
    """The UTC calendar day of a timestamp column, as text YYYY-MM-DD, on both dialects."""
    if is_postgres():
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.strftime("%Y-%m-%d", column)


class month_day(sa.sql.functions.FunctionElement[int]):
    """A date's month and day as one integer, MMDD (15 March: 315), written the same way on
    both dialects: the expression the birthday index is built on and the birthday scan
    reads (an index on an expression serves only queries repeating it)."""

    type = sa.Integer()
    name = "month_day"
    inherit_cache = True


@compiles(month_day)
def _month_day_sqlite(element: month_day, compiler: Any, **kw: Any) -> str:
    day = compiler.process(element.clauses, **kw)
    return f"CAST(strftime('%m%d', {day}) AS INTEGER)"


@compiles(month_day, "postgresql")
def _month_day_postgresql(element: month_day, compiler: Any, **kw: Any) -> str:
    day = compiler.process(element.clauses, **kw)
    return (
        f"(CAST(EXTRACT(MONTH FROM {day}) AS INTEGER) * 100"
        f" + CAST(EXTRACT(DAY FROM {day}) AS INTEGER))"
    )


def utc_month(column: Any) -> Any:
    """The UTC month of a timestamp column, as text YYYY-MM."""
    if is_postgres():
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM")
    return sa.func.strftime("%Y-%m", column)


M = TypeVar("M")


@cache
def _column_names(model: type[Any]) -> dict[str, str]:
    """ORM attribute name -> column name, per model (read once: the mapper doesn't change)."""
    return {attr.key: attr.columns[0].name for attr in sa.inspect(model).column_attrs}


def column_values(model: type[Any], values: dict[str, Any]) -> dict[str, Any]:
    """ORM attribute names -> column names, for a Core statement: an attribute named apart
    from its column (`extra` for the `metadata` column) would otherwise be dropped."""
    names = _column_names(model)
    return {names.get(name, name): value for name, value in values.items()}


@cache
def _insert_returning_id(table: sa.Table) -> sa.Insert:
    """Built once per table: a statement built per call costs its cache key every time."""
    return sa.insert(table).returning(table.c.id)


def insert_persistent(model: type[M], values: dict[str, Any]) -> M:
    """INSERT one row with Core (RETURNING id) and hand back a persistent ORM object for it.

    For hot paths: no unit-of-work flush, no SELECT. `values` must name every column except
    the id (a column left out would be loaded lazily on first access).
    """
    return as_persistent(model, insert_row(model, values), values)


def insert_row(model: type[Any], values: dict[str, Any]) -> int:
    """INSERT one row with Core; its id."""
    return db.session.execute(
        _insert_returning_id(model.__table__),  # type: ignore[attr-defined]
        column_values(model, values),
    ).scalar_one()


def as_persistent(model: type[M], new_id: int, values: dict[str, Any]) -> M:
    """The persistent ORM object for a row just inserted with Core (no SELECT)."""
    instance = model(id=new_id, **values)
    make_transient_to_detached(instance)
    db.session.add(instance)
    return instance


# --- SQL logging without personal data -------------------------------------------------------


class NoResultRows(logging.Filter):
    """Drops SQLAlchemy's "Row (...)" records: result rows hold personal data.

    With SQL echo at DEBUG (LOG_LEVEL=DEBUG, or someone debugging), SQLAlchemy logs every
    row it reads. Parameters are hidden by the engine (`hide_parameters`, loyalty.app);
    rows have no such switch, so they are filtered on the logger that creates them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Row %r"


_no_result_rows = NoResultRows()


def keep_result_rows_out_of_logs() -> None:
    sql = logging.getLogger("sqlalchemy.engine.Engine")
    if _no_result_rows not in sql.filters:
        sql.addFilter(_no_result_rows)
