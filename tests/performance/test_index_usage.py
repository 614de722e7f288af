"""Every hot path finds its rows through an index, however long the history, and keeps
doing so once its statements are prepared.

The scenario of a fresh deployment: the app's one pooled connection runs each hot path on
(nearly) empty, analyzed tables, long enough for psycopg to prepare its statements and for
PostgreSQL to consider a plan made once for all parameter values. Then the history
arrives (bench/history.py: tens of thousands of rows here, the seed `make bench` uses at
a million) before autovacuum analyzes it, and each hot path runs a hundred times more on
the same connection; then the tables are analyzed and each runs again with generic plans
forced. PostgreSQL's own counters (`pg_stat_user_tables`, `pg_stat_user_indexes`) must show no
sequential scan of a growing table and no call reading more than a small share of one;
auto_explain reports the plan of every statement actually sent (foreign-key checks
included), so a failure names the statement and its plan.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from bench.history import GROWING_TABLES, HistoryScale, SeedRefs, analyze, seed_history
from loyalty import outbox
from loyalty.clock import utcnow
from loyalty.coupons import operations as coupon_ops
from loyalty.coupons.models import CouponOfferVersion
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import ProgramAccount
from loyalty.tiers import operations as tiers
from tests.coupons import factories as coupons
from tests.factories import Factories, idem

pytestmark = [pytest.mark.postgres, pytest.mark.query_plans]

SCALE = HistoryScale(
    members=20_000,
    entries=40_000,
    orders=20_000,
    redemptions=20_000,
    idempotency=30_000,
    outbox=20_000,
    holds=5_000,
    refunds=2_000,
)
WARM_UP = 15  # on the empty tables: psycopg prepares from the 6th call, PostgreSQL then
# plans the prepared statement for any value ("generic plan") from its 6th execution on
RUNS = 80  # per hot path once the tables have grown, then RUNS // 4 once analyzed
JOB_RUNS = 20  # batch jobs run less often; still past the switch to generic plans
READ_SHARE = 0.05  # rows a call may read of a growing table (the tier job reads a batch's)
STORE = "S-HIST"
SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")


class Plans:
    """auto_explain's plans of the statements the app's connection sends (as notices),
    kept when they scan a growing table while a hot path is being measured."""

    def __init__(self) -> None:
        self.label: str | None = None
        self.scanning: dict[str, list[str]] = defaultdict(list)

    def notice(self, diagnostic: Any) -> None:
        message = diagnostic.message_primary or ""
        if self.label is None or "Seq Scan" not in message:
            return
        growing = any(table in GROWING_TABLES for table in SEQ_SCAN.findall(message))
        if growing and len(self.scanning[self.label]) < 2:
            self.scanning[self.label].append(message[:1200])


@pytest.fixture
def plans(app: Flask) -> Iterator[Plans]:
    """Every new connection of the app's engine explains its statements to the client."""
    seen = Plans()

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("LOAD 'auto_explain'")
        cursor.execute("SET auto_explain.log_min_duration = 0")
        cursor.execute("SET auto_explain.log_nested_statements = on")
        cursor.execute("SET auto_explain.log_level = 'notice'")
        cursor.execute("SET client_min_messages = 'notice'")
        cursor.close()
        dbapi_connection.commit()
        dbapi_connection.add_notice_handler(seen.notice)

    db.session.remove()
    db.engine.dispose()  # the next checkout opens a connection with the hook
    sa.event.listen(db.engine, "connect", on_connect)
    yield seen
    sa.event.remove(db.engine, "connect", on_connect)
    db.session.remove()
    db.engine.dispose()


TABLE_COUNTERS = """
    SELECT t.relname, t.seq_scan, t.seq_tup_read + coalesce(sum(i.idx_tup_read), 0),
        t.n_live_tup
    FROM pg_stat_user_tables t
    LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid
    WHERE t.relname = ANY(%(tables)s)
    GROUP BY t.relname, t.seq_scan, t.seq_tup_read, t.n_live_tup
"""


def _table_counters(admin: sa.Connection) -> dict[str, tuple[int, int, int]]:
    """Per growing table: sequential scans, rows read (by any scan), live rows."""
    rows = admin.exec_driver_sql(TABLE_COUNTERS, {"tables": list(GROWING_TABLES)}).all()
    return {name: (scans, read, live) for name, scans, read, live in rows}


def _flush_app_stats() -> None:
    """Have the app's backend publish its table counters now (PostgreSQL 15 batches them)."""
    db.session.execute(sa.text("SELECT pg_stat_force_next_flush()"))
    db.session.commit()


LINES = [{"sku": "SKU-1", "category": "shoes", "quantity": 1, "unit_price_minor": 5000}]


def _order_body(order_id: str, member_id: int, **more: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "channel": "store",
        "store_id": STORE,
        "member": {"member_id": member_id},
        "lines": LINES,
        "currency": "EUR",
        **more,
    }


class World:
    """What the hot paths act on: a few members made through the operations first, then
    (once the history is seeded) members, orders and identities from the history."""

    def __init__(self, make: Factories, pos: dict[str, str], codes: list[str]) -> None:
        self.make, self.pos, self.codes = make, pos, codes
        members = [make.member(points=500).id for _ in range(WARM_UP)]
        self.use(members, refundable=[], emails=[])

    def use(self, members: list[int], refundable: list[str], emails: list[str]) -> None:
        self.members = members
        self.refundable = refundable  # external ids of orders to refund
        self.emails = emails or [
            identity.value for m in members for identity in _member(m).identities
        ]
        self.tokens = [self.make.member_token(m) for m in members[:10]]
        self.orders: list[str] = []
        self.round = getattr(self, "round", 0) + 1

    def next_round(self) -> None:
        self.round += 1  # new order, refund and checkout references

    def member(self, n: int) -> int:
        return self.members[n % len(self.members)]

    def code(self, n: int) -> str:
        return self.codes.pop()


def _member(member_id: int) -> Any:
    from loyalty.members.models import Member

    return db.session.get(Member, member_id)


def _setup(make: Factories) -> tuple[dict[str, str], SeedRefs, list[str]]:
    """The reference rows (store, POS key, offer, tier), made through the operations."""
    make.store(STORE)
    pos = make.api_key(store_id=STORE, name="history POS")
    offer = coupons.offer()
    version_id = db.session.scalar(
        sa.select(CouponOfferVersion.id).where(CouponOfferVersion.offer_id == offer.id)
    )
    refs = SeedRefs(
        client_id=db.session.scalar(sa.text("SELECT max(id) FROM api_clients")),
        store_id=STORE,
        offer_id=offer.id,
        offer_version_id=version_id,
        issued_account_id=ledger.program_account_id(ProgramAccount.ISSUED),
        redeemed_account_id=ledger.program_account_id(ProgramAccount.REDEEMED),
    )
    tiers.create_tier(
        {"code": "silver", "name": "Silver", "rank": 1, "threshold": 10**6}, now=utcnow()
    )
    db.session.commit()
    return pos, refs, coupons.codes(offer.id, 5 * (WARM_UP + 2 * RUNS))


def _maintenance(work: Callable[[sa.Connection], None]) -> None:
    """Run `work` on a connection of its own, so the app's pool keeps its one connection."""
    db.session.remove()
    engine = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        work(connection)
        connection.commit()
    engine.dispose()


@pytest.fixture
def no_autovacuum(app: Flask) -> Iterator[None]:
    """Autovacuum stays away while the test runs: the tables grow unanalyzed exactly as
    long as the test says (its server-wide naptime is a minute; the test is shorter)."""

    def autovacuum(setting: str) -> None:
        _maintenance(
            lambda c: [c.exec_driver_sql(f"ALTER TABLE {t} {setting}") for t in GROWING_TABLES]
        )

    autovacuum("SET (autovacuum_enabled = false)")
    yield
    autovacuum("RESET (autovacuum_enabled)")


def _analyze() -> None:
    _maintenance(lambda c: analyze(c.execution_options(isolation_level="AUTOCOMMIT")))


def _seed_history(refs: SeedRefs) -> None:
    _maintenance(lambda c: seed_history(c, SCALE, refs))


def hot_paths(client: FlaskClient, world: World) -> dict[str, Callable[[int], None]]:
    """Each hot path as one call (n: the call's number), through the API like a till."""
    pos = world.pos

    def ok(response: Any, status: int = 200) -> Any:
        assert response.status_code == status, response.json
        return response.json

    def order(n: int) -> None:
        order_id = f"HOT-{world.round}-{n}"
        body = _order_body(order_id, world.member(n))
        ok(client.post("/v1/orders", json=body, headers=idem(pos, order_id)), 201)
        world.orders.append(order_id)

    def order_with_coupon(n: int) -> None:
        body = _order_body(
            f"HOT-C-{world.round}-{n}", world.member(n), coupon_codes=[world.code(n)]
        )
        ok(client.post("/v1/orders", json=body, headers=idem(pos)), 201)

    def replay(n: int) -> None:
        order_id = world.orders[n % len(world.orders)]
        body = _order_body(order_id, world.member(n))
        response = client.post("/v1/orders", json=body, headers=idem(pos, order_id))
        assert response.headers.get("Idempotent-Replayed") == "true", response.json

    def refund(n: int) -> None:
        refundable = world.refundable or world.orders
        external = refundable[n % len(refundable)]
        data = {"refund_id": f"R-{world.round}-{n}", "amount_minor": 100}
        ok(client.post(f"/v1/orders/{external}/refunds", json=data, headers=idem(pos)), 201)

    def redeem(n: int) -> None:
        data = coupons.body([world.code(n)], store_id=STORE, order_ref=f"till-{world.round}-{n}")
        ok(client.post("/v1/coupons/redeem", json=data, headers=idem(pos)), 201)

    def validate(n: int) -> None:
        data = coupons.body([world.code(n)], store_id=STORE)
        ok(client.post("/v1/coupons/validate", json=data, headers=pos))

    def coupon_hold_and_capture(n: int) -> None:
        data = coupons.body([world.code(n)], store_id=STORE, ttl_seconds=600)
        held = ok(client.post("/v1/coupons/holds", json=data, headers=idem(pos)), 201)
        capture = {"order_ref": f"captured-{world.round}-{n}"}
        url = f"/v1/coupons/holds/{held['checkout_ref']}/capture"
        ok(client.post(url, json=capture, headers=idem(pos)))

    def points_hold_and_capture(n: int) -> None:
        data = {"points": 20, "ttl_seconds": 600, "reference": f"basket-{n}"}
        url = f"/v1/members/{world.member(n)}/holds"
        hold = ok(client.post(url, json=data, headers=idem(pos)), 201)
        ok(client.post(f"/v1/holds/{hold['id']}/capture", json={}, headers=idem(pos)))

    def balance(n: int) -> None:
        ok(client.get(f"/v1/members/{world.member(n)}/balance", headers=pos))
        ok(client.get("/v1/me/balance", headers=world.tokens[n % len(world.tokens)]))

    def history_page(n: int) -> None:
        token = world.tokens[n % len(world.tokens)]
        page = ok(client.get("/v1/me/history?limit=2", headers=token))
        if page["next_cursor"]:
            ok(client.get(f"/v1/me/history?limit=2&cursor={page['next_cursor']}", headers=token))
        ok(client.get(f"/v1/members/{world.member(n)}/ledger?limit=5", headers=pos))

    def identify(n: int) -> None:
        data = {"email": world.emails[n % len(world.emails)]}
        ok(client.post("/v1/members/identify", json=data, headers=pos))

    def by_external_id(n: int) -> None:
        # `ext:<id>` in a path: one probe of uq_members_external_id (here nobody has it).
        ok(client.get(f"/v1/members/ext:NOBODY-{n}/balance", headers=pos), 404)
        ok(client.get(f"/v1/members/search?external_id=NOBODY-{n}", headers=pos))

    def order_preview(n: int) -> None:
        data = _order_body("unused", world.member(n), coupon_codes=[world.code(n)])
        del data["order_id"]
        ok(client.post("/v1/orders/preview", json=data, headers=pos))

    def relay(_n: int) -> None:
        # Chunks are to the seeded tables what the relay's 500 are to a million rows: an
        # id list a sizeable share of a small table is rightly read by a sequential scan.
        outbox.relay_batch(utcnow(), limit=10)
        db.session.commit()

    def jobs(n: int) -> None:
        # Work that falls due a day from now: pending points, expiring points, a hold.
        member_id, today = world.member(n), utcnow()
        world.make.earn(member_id, 10, pending_days=1)
        world.make.earn(member_id, 10, expires_at=today + timedelta(days=1))
        ledger.hold_points(
            member_id, 5, now=today, ttl_seconds=60, reference=None, client_id=None, store_id=None
        )
        db.session.commit()
        now = today + timedelta(days=2)
        ledger.expire_points(now)
        ledger.release_pending_points(now)
        ledger.expire_holds(now)
        ledger.announce_expiring_points(now)
        coupon_ops.expire_holds(now)
        db.session.commit()

    def tier_evaluation(_n: int) -> None:
        # A batch is to the seeded members what the job's 500 are to a million members.
        after = 0
        while True:
            after, _ = tiers.evaluate_tier_batch(utcnow(), after_id=after, batch_size=20)
            db.session.commit()
            if after == 0 or after > world.members[-1]:
                return

    campaign: dict[str, int] = {}

    def campaign_results(_n: int) -> None:
        # Set up on the first (unmeasured) call; then the results' queries, by index.
        from campaigns import lifecycle, results
        from tests.campaigns.campaign_factories import launched_to

        if not campaign:
            campaign["id"] = launched_to(world.members[:10], holdout_pct=20)
        results.results(lifecycle.get_campaign(campaign["id"]), now=utcnow())
        db.session.commit()

    return {
        "order": order,
        "order with a coupon": order_with_coupon,
        "idempotent replay": replay,
        "refund": refund,
        "coupon redemption": redeem,
        "coupon validate": validate,
        "coupon hold + capture": coupon_hold_and_capture,
        "points hold + capture": points_hold_and_capture,
        "balance": balance,
        "history page": history_page,
        "identify": identify,
        "member by external id": by_external_id,
        "order preview": order_preview,
        "outbox relay": relay,
        "batch jobs": jobs,
        "tier evaluation": tier_evaluation,
        "campaign results": campaign_results,
    }


JOBS = {"outbox relay", "batch jobs", "tier evaluation"}


class Scans:
    """What each hot path read of the growing tables, from PostgreSQL's counters: any
    sequential scan, or more rows per call than READ_SHARE of the table (an index read from
    end to end, e.g. a partial index unusable for a parameter, is no better)."""

    def __init__(self, plans: Plans) -> None:
        self.plans = plans
        self.admin = sa.create_engine(db.engine.url, isolation_level="AUTOCOMMIT")
        self.found: dict[str, dict[str, str]] = {}

    def _counters(self) -> dict[str, tuple[int, int, int]]:
        _flush_app_stats()
        with self.admin.connect() as admin:
            return _table_counters(admin)

    def run(self, label: str, path: Callable[[int], None], runs: int) -> None:
        before = self._counters()
        self.plans.label = label
        for n in range(runs):
            path(n)
        self.plans.label = None
        after = self._counters()
        found = {}
        for table, (scans, read, live) in after.items():
            seq_scans = scans - before[table][0]
            read_per_call = (read - before[table][1]) / runs
            if seq_scans:
                found[table] = f"{seq_scans} sequential scans"
            elif read_per_call > READ_SHARE * max(live, before[table][2]):
                found[table] = f"{read_per_call:,.0f} rows read per call of {live:,}"
        if found:
            self.found[label] = found


def test_no_hot_path_scans_a_growing_table_after_hundreds_of_prepared_executions(
    app: Flask, client: FlaskClient, make: Factories, plans: Plans, no_autovacuum: None
) -> None:
    pos, refs, codes = _setup(make)
    world = World(make, pos, codes)
    paths = hot_paths(client, world)
    # A fresh database: the growing tables are (nearly) empty and analyzed as such, and
    # the app's connection prepares its statements against them.
    _analyze()
    for path in paths.values():
        for n in range(WARM_UP):
            path(n)
    # The history arrives while the connection keeps its prepared statements; autovacuum
    # has not analyzed the tables yet.
    _seed_history(refs)
    first = (
        db.session.scalar(sa.text("SELECT max(member_id) FROM ledger_accounts")) - SCALE.members + 1
    )
    history_members = [first + n for n in range(RUNS)]
    world.use(
        history_members,
        refundable=[f"history-{k}" for k in range(1, RUNS + 1)],
        emails=[f"history-{m}@example.com" for m in history_members],
    )
    scans = Scans(plans)
    for label, path in paths.items():
        scans.run(f"{label} (grown)", path, JOB_RUNS if label in JOBS else RUNS)
    # Then autovacuum analyzes, and the plans are made again against real statistics. Even
    # plans made once for any parameter value (forced here) find every row by an index:
    # partial indexes are matched by literal predicates, never by parameters.
    _analyze()
    db.session.execute(sa.text("SET plan_cache_mode = force_generic_plan"))
    db.session.commit()
    world.next_round()
    for label, path in paths.items():
        runs = JOB_RUNS if label in JOBS else RUNS // 4
        scans.run(f"{label} (analyzed, generic plans)", path, runs)
    scans.admin.dispose()

    plans_text = "\n\n".join(
        f"--- {label}:\n" + "\n".join(found) for label, found in plans.scanning.items()
    )
    assert not scans.found, f"sequential scans per hot path: {scans.found}\n\n{plans_text}"
    assert db.engine.pool.checkedin() + db.engine.pool.checkedout() == 1, "one connection"


SMALL_RETAILER = HistoryScale.retailer(0.002)  # 2,000 members, 6,000 accounts


def test_a_small_retailers_postings_update_balances_by_primary_key(
    app: Flask, make: Factories, plans: Plans, no_autovacuum: None
) -> None:
    """A posting's balances are joined to the accounts they update. Fed as JSON rows,
    PostgreSQL counted them as 100 rows whatever they held, and against a few thousand
    accounts (6,000 here) it scanned the whole table; the 20,000-member history above
    hides that. The balances go as arrays, whose row count the planner knows."""
    _, refs, _ = _setup(make)
    _maintenance(lambda c: seed_history(c, SMALL_RETAILER, refs))
    _analyze()
    member_id = db.session.scalar(sa.text("SELECT max(member_id) FROM ledger_accounts"))
    plans.label = "posting"
    for n in range(WARM_UP):
        ledger.earn_points(
            member_id, 10, ledger.Cause("test", f"small-{n}"), now=utcnow(), actor="t"
        )
        db.session.commit()

    assert not plans.scanning, "\n\n".join(plans.scanning["posting"])
