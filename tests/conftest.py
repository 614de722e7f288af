"""Test harness: one database per test run, wiped between tests.

OMNILOYAL_TEST_DB selects the database:
- ``sqlite`` (default): a temporary SQLite file, the embedded default's engine;
- ``postgres``: a fresh database created on OMNILOYAL_TEST_PG (default
  postgresql://postgres@127.0.0.1:5432/test) and dropped at the end; Redis tests use a
  real server at OMNILOYAL_TEST_REDIS (default redis://127.0.0.1:6379/<n>).

With CI=true an unreachable PostgreSQL or Redis fails the run; it never skips.
Tests marked ``postgres`` need real row locks and concurrent connections and run only on
PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty import cache
from loyalty.app import create_app
from loyalty.db import db
from loyalty.ledger.models import LedgerAccount, program_account_rows
from loyalty.ledger.operations import forget_program_accounts
from tests.factories import Factories

BACKEND = os.environ.get("OMNILOYAL_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("OMNILOYAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND == "postgres":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run with OMNILOYAL_TEST_DB=postgres")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def _admin_engine() -> sa.Engine:
    return sa.create_engine(_pg_url(PG_ADMIN_URL.rsplit("/", 1)[1]), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'omniloyal.db'}"
        return
    name = f"omniloyal_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = _admin_engine()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        pytest.exit(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {error}", returncode=3)
    yield _pg_url(name)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


# The limiter runs on every test request but never limits the suite's own traffic (one
# client IP, a few keys, thousands of requests); tests/test_rate_limits.py tests the limits.
UNREACHABLE = "1000000/second"
NO_RATE_LIMITS = {
    "rate_limit_per_ip": UNREACHABLE,
    "rate_limit_per_caller": UNREACHABLE,
    "rate_limit_member_tokens": UNREACHABLE,
    "rate_limit_identify": UNREACHABLE,
}


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    """A real Redis on the PostgreSQL run, the embedded fakeredis on the SQLite run."""
    if BACKEND != "postgres":
        return None
    url = os.environ.get("OMNILOYAL_TEST_REDIS", f"redis://127.0.0.1:6379/{1 + os.getpid() % 15}")
    import redis

    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError as error:
        pytest.exit(f"Redis unreachable at {url}: {error}", returncode=3)
    return url


@pytest.fixture(scope="session")
def app(
    database_url: str, redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    os.environ.setdefault("OMNILOYAL_INSTANCE_PATH", str(tmp_path_factory.mktemp("instance")))
    app = create_app(
        {
            "database_url": database_url,
            "redis_url": redis_url,
            "secret_key": "test-secret-key-that-is-long-enough-0123456789",
            "run_embedded_worker": False,
            **NO_RATE_LIMITS,
        }
    )
    app.config["TESTING"] = True
    with app.app_context():
        db.create_all()
        if BACKEND == "sqlite":
            db.engine.dispose()
            path = Path(database_url.removeprefix("sqlite:///"))
            shutil.copyfile(path, path.with_suffix(".template"))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _fresh_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts from empty tables (the code under test commits, like production)."""
    if "app" not in request.fixturenames:
        yield
        return
    app: Flask = request.getfixturevalue("app")
    with app.app_context():
        _wipe(app, truncate=request.node.get_closest_marker("query_plans") is not None)
        forget_program_accounts()
        cache.clear_all()
        redis_connection = app.extensions["omniloyal.redis"]
        redis_connection.flushdb()
    with app.app_context():
        yield
        db.session.remove()


def _postgres_wipe_sql(truncate: bool, superuser: bool) -> str:
    """DELETE every row, with triggers off (the ledger's append-only triggers, the foreign
    keys), and restart the sequences: 15 ms with the VACUUM after it. TRUNCATE gives each
    table and index a new file that PostgreSQL fsyncs (0.2 s per test on these disks) but
    also resets the tables' sizes, which the tests of query plans need (marked
    `query_plans`). TRUNCATE keeps the columns' statistics (pg_statistic) gathered during
    earlier tests, and an ANALYZE of an empty table keeps them too: the planner would
    judge a plan test's rows by another test's data, so those go as well (superusers, as
    in CI), as on a new database."""
    tables = db.metadata.sorted_tables
    if truncate:
        names = ", ".join(f'"{table.name}"' for table in tables)
        statistics = (
            "; DELETE FROM pg_statistic WHERE starelid IN"
            " (SELECT oid FROM pg_class WHERE relnamespace = current_schema()::regnamespace)"
            if superuser
            else ""
        )
        return f"TRUNCATE {names} RESTART IDENTITY CASCADE{statistics}"
    deletes = "; ".join(f'DELETE FROM "{table.name}"' for table in tables)
    return (
        "SET LOCAL session_replication_role = replica; "
        f"{deletes}; "
        "SELECT setval(quote_ident(schemaname) || '.' || quote_ident(sequencename), "
        "start_value, false) FROM pg_sequences WHERE schemaname = current_schema(); "
        "SELECT pg_stat_force_next_flush()"
    )


def _wipe(app: Flask, *, truncate: bool) -> None:
    db.session.remove()
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as connection:
            # Turning triggers off takes a superuser (as in CI); others get TRUNCATE.
            superuser = connection.exec_driver_sql("SHOW is_superuser").scalar() == "on"
            deleted = superuser and not truncate
            connection.exec_driver_sql(_postgres_wipe_sql(not deleted, superuser))
        if deleted:
            # VACUUM gives the emptied tables back their pages (to zero, as TRUNCATE would),
            # so every connection inserts from the first page again and rows read back in
            # the order they were written, as on fresh tables.
            names = ", ".join(f'"{table.name}"' for table in db.metadata.sorted_tables)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as autocommit:
                autocommit.exec_driver_sql(f"VACUUM {names}")
        with db.engine.begin() as connection:
            # The schema's seed rows, as create_all and the migrations insert them.
            connection.execute(LedgerAccount.__table__.insert(), program_account_rows())
        return
    # SQLite: the ledger tables refuse DELETE (append-only triggers), so restore the
    # empty template file instead.
    db.engine.dispose()
    path = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    shutil.copyfile(path.with_suffix(".template"), path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make() -> Factories:
    from tests.factories import Factories

    return Factories()


@pytest.fixture
def allow_private(app: Flask) -> Iterator[None]:
    """The explicit setting that lets tests subscribe webhooks on 127.0.0.1 (off by default)."""
    settings = app.extensions["omniloyal.settings"]
    app.extensions["omniloyal.settings"] = replace(settings, webhook_allow_private_targets=True)
    yield
    app.extensions["omniloyal.settings"] = settings
