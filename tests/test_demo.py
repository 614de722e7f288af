"""The demo data `make run` seeds: a year of history that keeps the books, the recent part
through the real write path."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.coupons.models import CouponRedemption
from loyalty.db import db
from loyalty.demo import DEMO_MEMBER, database_is_empty, demo_member, seed_demo
from loyalty.earning.models import Order, Refund
from loyalty.members.models import Member
from tests.ledger.invariants import assert_ledger_consistent


def test_demo_seeding_spreads_a_year_of_orders_and_keeps_the_ledger_consistent(app, client):
    assert database_is_empty()
    now = utcnow()
    keys = seed_demo(member_count=80, now=now)
    db.session.commit()

    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 80
    assert_ledger_consistent()
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    liability = client.get("/v1/reports/liability", headers=admin)
    assert liability.status_code == 200 and liability.json["outstanding"] > 0

    # A history, not one spike: points issued in most weeks of the past year, on their day.
    since = (now - timedelta(days=364)).date()
    days = client.get(
        "/v1/reports/points-activity",
        query_string={"since": str(since), "until": str(now.date())},
        headers=admin,
    ).json["days"]
    busy_months = {day["day"][:7] for day in days if day["issued"] > 0}
    assert len(busy_months) >= 10, busy_months
    assert max(day["issued"] for day in days) < sum(day["issued"] for day in days) / 10
    # The recent weeks have what a retailer's do: coupon redemptions, returns, points spent.
    recent = [day for day in days if day["day"] >= str((now - timedelta(days=28)).date())]
    assert sum(day["redeemed"] for day in recent) > 0
    assert sum(day["reversed"] for day in recent) > 0
    used = db.session.scalar(sa.select(sa.func.count()).select_from(CouponRedemption))
    refunds = db.session.scalar(sa.select(sa.func.count()).select_from(Refund))
    assert used > 0 and refunds > 0
    # Older orders than the API accepts exist (the bulk era), and recent ones too.
    ages = [now - at for at in db.session.scalars(sa.select(Order.occurred_at))]
    assert any(age > timedelta(days=60) for age in ages)
    assert any(age < timedelta(days=20) for age in ages)

    member = demo_member()
    assert member is not None and member["email"] == DEMO_MEMBER["email"]
    assert member["tier"] is not None and member["balance"] > 0
    pos = {"Authorization": f"Bearer {keys['pos PAR-01']}"}
    balance = client.get(f"/v1/members/{member['id']}/balance", headers=pos)
    assert balance.status_code == 200 and balance.json["balance"] == member["balance"]
