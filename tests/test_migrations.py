"""The Alembic migrations build exactly the schema the models describe, and undo it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from loyalty.app import create_app
from loyalty.db import db
from tests.conftest import BACKEND, _admin_engine, _pg_url


@pytest.fixture
def empty_database_url(tmp_path) -> Iterator[str]:
    if BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    name = f"omniloyal_migrate_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield _pg_url(name)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def test_upgrade_matches_the_models_and_downgrade_returns_to_empty(empty_database_url):
    app = create_app(
        {
            "database_url": empty_database_url,
            "redis_url": None,
            "secret_key": "x" * 40,
            "run_embedded_worker": False,
        }
    )
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []
            tables = set(sa.inspect(connection).get_table_names())
        assert {t.name for t in db.metadata.sorted_tables} <= tables

        # The append-only triggers come with the migration, not only with create_all.
        with db.engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO ledger_transactions (member_id, kind, cause_type, cause_ref, amount,"
                " actor, details, created_at) VALUES (1, 'earn', 't', 't', 0, 't', '{}',"
                " CURRENT_TIMESTAMP)"
            )
        with pytest.raises(sa.exc.DBAPIError), db.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM ledger_transactions")

        downgrade(revision="base")
        with db.engine.connect() as connection:
            left = set(sa.inspect(connection).get_table_names()) - {"alembic_version"}
        assert left == set()
        db.engine.dispose()


def test_the_merges_revision_repoints_merge_chains_and_counts_imported_points(empty_database_url):
    """0003: every merged member names its person (one hop), and rows imported before it
    count their opening points toward tiers (the importer's default since)."""
    app = create_app(
        {
            "database_url": empty_database_url,
            "redis_url": None,
            "secret_key": "x" * 40,
            "run_embedded_worker": False,
        }
    )
    with app.app_context():
        upgrade(revision="0002")
        with db.engine.begin() as connection:
            for member_id, status, into in (
                (3, "active", None),
                (2, "merged", 3),
                (1, "merged", 2),
            ):
                connection.execute(
                    sa.text(
                        "INSERT INTO members (id, status, locale, timezone, attributes,"
                        " merged_into_id, created_at, updated_at) VALUES (:id, :status, 'en',"
                        " 'UTC', '{}', :into, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"id": member_id, "status": status, "into": into},
                )
            connection.execute(
                sa.text(
                    "INSERT INTO member_imports (batch, external_id, member_id, opening_points,"
                    " imported_at) VALUES ('legacy', 'G1', 3, 50000, CURRENT_TIMESTAMP)"
                )
            )
        upgrade()
        with db.engine.connect() as connection:
            chains = dict(
                connection.execute(sa.text("SELECT id, merged_into_id FROM members")).all()
            )
            qualifying = connection.execute(
                sa.text("SELECT qualifying_points FROM member_imports")
            ).scalar()
            transit = connection.execute(
                sa.text("SELECT count(*) FROM ledger_accounts WHERE code = 'merges'")
            ).scalar()
        assert (chains, qualifying, transit) == ({1: 3, 2: 3, 3: None}, 50000, 1)
        downgrade(revision="base")
        db.engine.dispose()


@pytest.mark.postgres
def test_migrated_indexes_are_the_models_indexes_predicates_included(app, empty_database_url):
    """compare_metadata does not compare partial-index predicates: a migration that keeps
    an old `WHERE` would leave production without the index its queries need."""
    migrated = create_app(
        {
            "database_url": empty_database_url,
            "redis_url": None,
            "secret_key": "x" * 40,
            "run_embedded_worker": False,
        }
    )
    query = (
        "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
    )
    with migrated.app_context():
        upgrade()
        with db.engine.connect() as connection:
            after_migrations = dict(connection.exec_driver_sql(query).all())
        db.engine.dispose()
    with db.engine.connect() as connection:  # the test database, built by create_all
        from_models = dict(connection.exec_driver_sql(query).all())
    assert after_migrations == from_models


def test_0003_backfills_lot_tallies_and_paid_orders_from_the_ledger(empty_database_url):
    """Built by the operations at head, taken down to 0002 and up again: the upgrade
    recomputes from the ledger entries what the operations counted."""
    from datetime import UTC, datetime, timedelta

    from loyalty.ledger import operations as ledger
    from loyalty.ledger.models import PointHold, PointLot
    from loyalty.ledger.policy import ReturnPolicy
    from loyalty.members.operations import enrol_member

    app = create_app(
        {
            "database_url": empty_database_url,
            "redis_url": None,
            "secret_key": "x" * 40,
            "run_embedded_worker": False,
        }
    )
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        upgrade()
        member = enrol_member(identities={"email": "m@example.com"}, now=t0, channel="online")
        for ref, points, days in (("order:1", 100, 10), ("order:12", 50, 10), ("x", 500, 900)):
            ledger.earn_points(
                member.id,
                points,
                ledger.Cause("order", ref),
                now=t0,
                actor="t",
                expires_at=t0 + timedelta(days=days),
            )
        reverse = {"policy": ReturnPolicy.CAP_AT_ZERO, "now": t0, "actor": "t"}
        ledger.reverse_earned(
            member.id,
            30,
            ledger.Cause("refund", "order:1/refund:R1"),
            earned_by="order:1",
            **reverse,
        )
        hold = ledger.hold_points(
            member.id, 20, now=t0, ttl_seconds=60, reference=None, client_id=None, store_id=None
        )
        ledger.capture_hold(
            hold.id, None, ledger.Cause("hold", "ORD-7"), now=t0, actor="t", order_ref="ORD-7"
        )
        ledger.expire_points(t0 + timedelta(days=11))
        db.session.commit()
        expected = db.session.execute(
            sa.select(
                PointLot.cause_ref, PointLot.expired_points, PointLot.reversed_points
            ).order_by(PointLot.id)
        ).all()
        assert [tuple(row) for row in expected] == [
            ("order:1", 50, 30),  # 20 paid the hold, 30 refunded, 50 expired
            ("order:12", 50, 0),
            ("x", 0, 0),
        ]
        db.session.remove()
        downgrade(revision="0002")
        upgrade()
        assert (
            db.session.execute(
                sa.select(
                    PointLot.cause_ref, PointLot.expired_points, PointLot.reversed_points
                ).order_by(PointLot.id)
            ).all()
            == expected
        )
        assert db.session.scalar(sa.select(PointHold.order_ref)) == "ORD-7"
        db.session.remove()
        db.engine.dispose()
