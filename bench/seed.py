"""Seed the benchmark database through the product's own operations (no hand-written rows)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.appctx import bench_app
from bench.database import BenchDatabase
from bench.environment import BenchError

STORE_ID = "BENCH-S1"


@dataclass
class Seeded:
    store_id: str
    pos_key: str  # a store-bound POS key (orders, points, coupons for STORE_ID)
    pos_client_id: int
    member_ids: list[int]
    tokens: list[str] = field(default_factory=list)
    seconds: float = 0.0


def seed_core(members: int, *, opening_points: int = 1000) -> Seeded:
    """A store, a POS key bound to it, `members` members each with `opening_points`."""
    from loyalty.auth import scopes
    from loyalty.auth.keys import create_api_client
    from loyalty.clock import utcnow
    from loyalty.db import db
    from loyalty.ledger.operations import Cause, earn_points
    from loyalty.members.operations import enrol_member
    from loyalty.stores.models import Store

    started = time.perf_counter()
    with bench_app().app_context():
        now = utcnow()
        db.session.add(
            Store(
                id=STORE_ID,
                name="Bench flagship",
                region="bench",
                timezone="Europe/Paris",
                partner=False,
                active=True,
                created_at=now,
            )
        )
        db.session.flush()
        issued = create_api_client(
            name="bench POS", scopes=sorted(scopes.POS), store_id=STORE_ID, now=now
        )
        db.session.commit()
        member_ids: list[int] = []
        for n in range(members):
            member = enrol_member(
                identities={"email": f"bench-member-{n}@example.com"},
                now=now,
                channel="store",
                store_id=STORE_ID,
            )
            if opening_points:
                earn_points(
                    member.id,
                    opening_points,
                    Cause("adjustment", f"bench-opening-{n}"),
                    now=now,
                    actor="bench",
                )
            member_ids.append(member.id)
            if n % 250 == 249:
                db.session.commit()
        db.session.commit()
        seed_earning_rules(now)
        db.session.commit()
        return Seeded(
            store_id=STORE_ID,
            pos_key=issued.key,
            pos_client_id=issued.client.id,
            member_ids=member_ids,
            seconds=time.perf_counter() - started,
        )


def seed_earning_rules(now: datetime) -> int:
    """A retailer's usual rules: 1 point per euro, double on shoes, a bonus on socks."""
    try:
        from loyalty.earning.operations import create_rule
    except ImportError:  # earning not there yet: orders earn nothing to measure anyway
        return 0
    rules = [
        {
            "name": "1 point per EUR",
            "kind": "base_rate",
            "currency": "EUR",
            "points": 1,
            "per_minor": 100,
        },
        {"name": "Shoes x2", "kind": "multiplier", "categories": ["shoes"], "multiplier_pct": 200},
        {"name": "Socks bonus", "kind": "bonus", "skus": ["SKU-SOCKS"], "bonus_points": 5},
    ]
    for rule in rules:
        create_rule(rule, now=now)
    return len(rules)


def mint_tokens(member_ids: list[int], count: int) -> list[str]:
    """App tokens for `count` different members, as an app backend would mint them."""
    from loyalty.auth import scopes
    from loyalty.auth.keys import create_api_client
    from loyalty.auth.tokens import mint_member_token
    from loyalty.clock import utcnow
    from loyalty.db import db

    with bench_app().app_context():
        now = utcnow()
        # Tokens name the client that minted them; it must exist and stay active.
        backend = create_api_client(
            name="bench app backend", scopes=[scopes.MEMBER_TOKENS], store_id=None, now=now
        )
        db.session.commit()
        return [
            mint_member_token(member_id, issued_by_client=backend.client.id, epoch=0, now=now).token
            for member_id in member_ids[:count]  # fresh members: token epoch 0
        ]


def prepare_raw(database: BenchDatabase, seeded: Seeded) -> None:
    """Fresh statistics, so pgbench and the API start from the same planner view."""
    database.psql("VACUUM ANALYZE")


def earn_exact_ids(database: BenchDatabase, seeded: Seeded) -> dict[str, object]:
    """pgbench variables for earn_exact.sql: ids the API would look up or cache."""
    first, last = min(seeded.member_ids), max(seeded.member_ids)
    if last - first + 1 != len(seeded.member_ids):
        raise BenchError("seeded member ids are not contiguous; earn_exact.sql needs a range")
    issued = database.psql("SELECT id FROM ledger_accounts WHERE code = 'issued'")
    return {
        "first_member": first,
        "last_member": last,
        "api_client": seeded.pos_client_id,  # not client_id: pgbench's own per-connection id
        "key_prefix": seeded.pos_key.removeprefix("olk_").split("_", 1)[0],
        "store_id": seeded.store_id,
        "issued_account": int(issued),
        "actor": f"client:{seeded.pos_client_id}:bench POS",
    }


def seed_history(
    database: BenchDatabase, seeded: Seeded, offer_id: int, factor: float, say: Any
) -> dict[str, str]:
    """A retailer's history (bench/history.py) times `factor`, then VACUUM ANALYZE.

    Inserted with INSERT ... SELECT generate_series beside the members the scenarios use;
    the running gunicorn keeps its connections and their prepared statements."""
    import sqlalchemy as sa

    from bench.history import GROWING_TABLES, HistoryScale, SeedRefs, analyze
    from bench.history import seed_history as insert_history

    scale = HistoryScale.retailer(factor)
    version_id = database.psql(
        f"SELECT id FROM coupon_offer_versions WHERE offer_id = {offer_id} AND version = 1"
    )
    accounts = dict(
        line.split("|")
        for line in database.psql(
            "SELECT code, id FROM ledger_accounts WHERE code IN ('issued', 'redeemed')"
        ).splitlines()
    )
    refs = SeedRefs(
        client_id=seeded.pos_client_id,
        store_id=seeded.store_id,
        offer_id=offer_id,
        offer_version_id=int(version_id),
        issued_account_id=int(accounts["issued"]),
        redeemed_account_id=int(accounts["redeemed"]),
    )
    url = database.url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            insert_history(connection, scale, refs, say=say)
            connection.commit()
        inserted = time.perf_counter() - started
        say("VACUUM ANALYZE of the grown tables")
        with engine.connect() as connection:
            analyze(connection.execution_options(isolation_level="AUTOCOMMIT"))
    finally:
        engine.dispose()
    analyzed = time.perf_counter() - started - inserted
    sizes = database.psql(
        "SELECT relname || ' ' || to_char(reltuples, 'FM999,999,999,999') FROM pg_class "
        f"WHERE relname IN ({', '.join(repr(t) for t in GROWING_TABLES)}) ORDER BY relname"
    )
    return {
        "history (seeded phase)": (
            f"{scale.members:,} members, {scale.entries:,} ledger entries, "
            f"{scale.orders:,} orders, {scale.redemptions:,} redemptions, "
            f"{scale.idempotency:,} idempotency records, {scale.outbox:,} published events, "
            f"{scale.holds:,} holds, {scale.refunds:,} refunds: INSERT ... SELECT "
            f"generate_series in {inserted:.0f} s, VACUUM ANALYZE in {analyzed:.0f} s"
        ),
        "rows per table after ANALYZE (seeded phase)": ", ".join(sizes.splitlines()),
    }
