"""The journey scheduler's due-members scan, the trigger lookups, re-entry checks, progress,
the lapsed-customer scan, reservations and referral lookups use indexes at tens of
thousands of rows, in custom and generic plans (see tests/outbox/test_query_plans.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns import journeys, o2o, referrals, triggers
from loyalty import outbox
from loyalty.batches import BatchCursor
from loyalty.clock import utcnow
from loyalty.db import db
from tests.journeys.helpers import journey
from tests.outbox.test_query_plans import _captured, _plans, _seq_scans

WATCHED = {
    "journey_entries",
    "journey_step_runs",
    "member_profiles",
    "event_reservations",
    "referrals",
    "referral_marks",
}
PEOPLE = 20_000
FIRST_ID = 5_000_000  # above any id the tests' own members get


def _seed(journey_ids: list[int]) -> None:
    ids = ", ".join(map(str, journey_ids))
    statements = [
        f"""INSERT INTO members (id, status, locale, timezone, attributes, created_at, updated_at)
            SELECT {FIRST_ID} + g, 'active', 'en', 'UTC', '{{}}', now(), now()
            FROM generate_series(1, {PEOPLE}) g""",
        # Three passes per person and journey, nearly all finished, a few due, some later.
        f"""INSERT INTO journey_entries (journey_id, version, member_id, cause_key, status,
                step_index, next_run_at, entered_at, updated_at, state)
            SELECT j, 1, {FIRST_ID} + g, 'seed:' || g || ':' || k,
                   CASE WHEN mod(g, 400) = 0 AND k = 3 THEN 'active'
                        WHEN mod(g, 50) = 0 AND k = 3 THEN 'active' ELSE 'completed' END,
                   0,
                   CASE WHEN mod(g, 400) = 0 AND k = 3 THEN now() - interval '1 hour'
                        WHEN mod(g, 50) = 0 AND k = 3 THEN now() + interval '3 days' END,
                   now() - k * interval '30 days', now(), '{{}}'
            FROM generate_series(1, {PEOPLE}) g, generate_series(1, 3) k,
                 unnest(ARRAY[{ids}]) j""",
        """INSERT INTO journey_step_runs (entry_id, step_index, step_type, outcome, details,
                ran_at)
            SELECT id, 0, 'points', 'credited', '{}', now() FROM journey_entries""",
        f"""INSERT INTO member_profiles (person_id, points_balance, orders_lifetime,
                spend_lifetime_minor, orders_30d, spend_30d_minor, orders_90d, spend_90d_minor,
                orders_365d, spend_365d_minor, online_orders, store_orders, last_order_at,
                refreshed_at)
            SELECT {FIRST_ID} + g, 0, 1, 100, 0, 0, 0, 0, 1, 100, 1, 0,
                   now() - (mod(g, 700)) * interval '1 day', now()
            FROM generate_series(1, {PEOPLE}) g""",
        f"""INSERT INTO referrals (referrer_id, referee_id, status, created_at)
            SELECT {FIRST_ID} + g, {FIRST_ID} + g + 1, 'rewarded', now()
            FROM generate_series(1, {PEOPLE} - 1, 2) g""",
        f"""INSERT INTO referral_marks (member_id, kind, digest, created_at)
            SELECT {FIRST_ID} + g, 'device', md5(g::text), now()
            FROM generate_series(1, {PEOPLE}) g""",
        *(f"ANALYZE {table}" for table in sorted(WATCHED)),
    ]
    with db.engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


@pytest.mark.postgres
@pytest.mark.query_plans
def test_due_scan_trigger_lookups_and_member_reads_use_indexes(app, make):
    steps = [{"type": "points", "points": 1}]
    flows = [
        journey(steps, trigger="manual", reentry="after_days", reentry_days=10),
        journey(steps, trigger="no_purchase", trigger_days=30, reentry="always"),
    ]
    _seed([flow.id for flow in flows])
    member = make.member()
    store = make.store("S1")
    event = o2o.create_event(
        {
            "name": "Launch",
            "store_id": store.id,
            "starts_at": utcnow() + timedelta(days=1),
            "ends_at": utcnow() + timedelta(days=1, hours=2),
            "capacity": 100_000,
        },
        now=utcnow(),
    )
    db.session.commit()
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            f"""INSERT INTO event_reservations (event_id, member_id, status, reserved_at)
                SELECT {event.id}, {FIRST_ID} + g, 'checked_in', now()
                FROM generate_series(1, {PEOPLE}) g"""
        )
        connection.exec_driver_sql("ANALYZE event_reservations")
    now = utcnow()
    with _captured(WATCHED) as statements:
        assert journeys.advance_due_chunk(BatchCursor(), now, limit=20) == 20
        db.session.rollback()
        triggers.active_journeys("member.enrolled")
        journeys.enter(flows[0], FIRST_ID + 7, cause_key="probe", now=now)
        journeys.enter_many(flows[0], [FIRST_ID + 9, FIRST_ID + 11], cause="probe", now=now)
        journeys.progress(flows[0].id, FIRST_ID + 7)
        db.session.rollback()
        triggers.lapsed_chunk(BatchCursor(), now, limit=50)
        db.session.rollback()
        o2o.reserve(event.id, member.id, now=now)
        referrals.my_referrals(FIRST_ID + 1)
        referrals.code_for(member.id, now=now, device_fingerprint="x")
        db.session.rollback()
        o2o.attribute_order(
            outbox.Event(1, "order.posted", FIRST_ID + 3, {"order_id": 1, "total_minor": 5}, now)
        )
        db.session.rollback()

    assert len(statements) >= 8
    scanned = {}
    for statement, parameters in statements:
        for kind, plan in _plans(statement, parameters).items():
            if _seq_scans(plan, WATCHED):
                scanned[f"{kind}: {' '.join(statement.split())[:200]}"] = _seq_scans(plan, WATCHED)
    assert scanned == {}
