"""The journeys' daily scans and the referral reward read through indexes of their own at
tens of thousands of rows, in custom and generic plans (PostgreSQL): the birthday scan
reads the members born on three calendar days (ix_members_birthday_day), never the whole
members table; a claim of a referral code (and its replay), a first purchase (and a
replayed order event) find the code, the referee's referral, the shared marks, the earlier
orders and the referrer's rewarded count without a scan."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from campaigns import referrals, triggers
from loyalty import outbox
from loyalty.auth import scopes
from loyalty.batches import run_chunks
from loyalty.clock import utcnow
from loyalty.db import db
from tests.earning.factories import base_rate, order_body
from tests.factories import idem
from tests.journeys.helpers import journey
from tests.outbox.test_query_plans import _captured, _plans, _seq_scans

pytestmark = [pytest.mark.postgres, pytest.mark.query_plans]

PEOPLE = 50_000
FIRST_ID = 5_000_000  # above any id the tests' own members get


def _seed_members() -> None:
    """Members born on every day of the year (a few without a birthday)."""
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            f"""INSERT INTO members (id, status, locale, timezone, attributes, birthday,
                    created_at, updated_at)
                SELECT {FIRST_ID} + g, 'active', 'en', 'UTC', '{{}}',
                       CASE WHEN mod(g, 10) = 0 THEN NULL
                            ELSE date '1980-01-01' + mod(g, 365) END,
                       now(), now()
                FROM generate_series(1, {PEOPLE}) g"""
        )
        connection.exec_driver_sql("ANALYZE members")


def _without_seq_scans(statements: list, watched: set[str]) -> dict[str, list[str]]:
    scanned = {}
    for statement, parameters in statements:
        for kind, plan in _plans(statement, parameters).items():
            if _seq_scans(plan, watched):
                scanned[f"{kind}: {' '.join(statement.split())[:200]}"] = _seq_scans(plan, watched)
    return scanned


def test_the_birthday_scan_reads_three_days_of_birthdays_through_their_index(app):
    party = journey([{"type": "points", "points": 1}], trigger="birthday", reentry="always")
    _seed_members()
    now = datetime(2031, 6, 15, 12, 0, tzinfo=UTC)
    with _captured({"members"}) as statements:
        result = run_chunks(lambda cursor: triggers.birthdays_chunk(cursor, now), what="test")
    db.session.commit()

    born_today = sum(  # by the seed's rule
        1
        for g in range(1, PEOPLE + 1)
        if g % 10 and (date(1980, 1, 1) + timedelta(days=g % 365)).timetuple()[1:3] == (6, 15)
    )
    assert result.total == born_today > 0
    scans = [s for s in statements if "birthday IS NOT NULL" in s[0]]
    assert scans, "the scan ran no statement on members"
    assert _without_seq_scans(scans, {"members"}) == {}
    assert all(
        "ix_members_birthday_day" in str(plan)
        for statement, parameters in scans
        for plan in _plans(statement, parameters).values()
    )
    assert party.status == "active"


def test_a_first_purchase_and_its_replay_find_the_referral_through_indexes(app, client, make):
    _seed_members()
    watched = {"members", "referrals", "referral_marks", "referral_codes", "orders"}
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            f"""INSERT INTO referrals (referrer_id, referee_id, status, created_at)
                SELECT {FIRST_ID} + g, {FIRST_ID} + g + 1,
                       CASE WHEN mod(g, 4) = 1 THEN 'pending' ELSE 'rewarded' END, now()
                FROM generate_series(1, {PEOPLE} - 1, 2) g"""
        )
        connection.exec_driver_sql(
            f"""INSERT INTO referral_marks (member_id, kind, digest, created_at)
                SELECT {FIRST_ID} + g, 'device', md5(g::text), now()
                FROM generate_series(1, {PEOPLE}) g"""
        )
        connection.exec_driver_sql(
            f"""INSERT INTO referral_codes (member_id, code, created_at)
                SELECT {FIRST_ID} + g, 'S' || lpad(g::text, 7, '0'), now()
                FROM generate_series(1, {PEOPLE}) g"""
        )
        for table in sorted(watched):
            connection.exec_driver_sql(f"ANALYZE {table}")
    referrer, referee, shopper = make.member(), make.member(), make.member()
    base_rate()
    pos = make.api_key(scopes.ORDERS_WRITE)

    def buy(member_id: int) -> int:
        body = order_body({"member_id": member_id})
        posted = client.post("/v1/orders", json=body, headers=idem(pos))
        assert posted.status_code == 201
        return posted.json["id"]

    buy(shopper.id)  # the API client the seeded orders name
    with db.engine.begin() as connection:  # the seeded members' purchase history
        connection.exec_driver_sql(
            f"""INSERT INTO orders (client_id, external_id, channel, member_id, member_enrolled,
                    currency, subtotal_minor, discount_minor, total_minor, refunded_minor,
                    occurred_at, status, points_earned, points_reversed, fingerprint,
                    breakdown, coupons, created_at, updated_at)
                SELECT o.client_id, 'seed-' || g, 'online', {FIRST_ID} + g, false,
                       'EUR', 1000, 0, 1000, 0, now() - interval '9 days', 'posted', 10, 0,
                       md5(g::text), '[]', '[]', now(), now()
                FROM generate_series(1, {PEOPLE}) g, (SELECT client_id FROM orders LIMIT 1) o"""
        )
        connection.exec_driver_sql("ANALYZE orders")
    code = referrals.code_for(referrer.id, now=utcnow(), device_fingerprint="a")
    db.session.commit()

    with _captured(watched) as statements:
        for _ in range(2):  # the app sends the claim again: the same referral
            referrals.claim(referee.id, code.code, now=utcnow(), device_fingerprint="b")
            db.session.commit()
        event = outbox.Event(1, "order.posted", referee.id, {"order_id": buy(referee.id)}, utcnow())
        referrals.reward_first_purchase(event)
        db.session.commit()
        referrals.reward_first_purchase(event)  # the relay delivers it again
        db.session.commit()

    assert referrals.my_referrals(referrer.id)["rewarded"] == 1
    assert any("FROM referrals" in statement for statement, _ in statements)

    assert _without_seq_scans(statements, watched) == {}
