"""Tiers: upgrade at once on qualifying points or spend, downgrade only in the daily job."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.jobs import periodic_jobs
from loyalty.ledger import operations as ledger
from loyalty.members.models import Member
from loyalty.outbox import OutboxEvent
from loyalty.tiers import jobs
from loyalty.tiers import operations as tiers
from tests.earning.factories import base_rate, order_body

PROBLEM = "application/problem+json"


@pytest.fixture
def pos(make):
    return make.api_key(scopes.ORDERS_WRITE)


@pytest.fixture
def admin(make):
    return {**make.api_key(scopes.ADMIN)}


def ladder(basis: str = "qualifying_points", **more):
    now = utcnow()
    made = [
        tiers.create_tier({"code": "member", "name": "Member", "rank": 0, "threshold": 0}, now=now),
        tiers.create_tier(
            {
                "code": "silver",
                "name": "Silver",
                "rank": 1,
                "threshold": 1_000,
                "basis": basis,
                "earn_multiplier_pct": 125,
                **more,
            },
            now=now,
        ),
        tiers.create_tier(
            {
                "code": "gold",
                "name": "Gold",
                "rank": 2,
                "threshold": 5_000,
                "basis": basis,
                "earn_multiplier_pct": 150,
                **more,
            },
            now=now,
        ),
    ]
    db.session.commit()
    return made


def tier_code(member_id: int) -> str | None:
    tier_id = db.session.scalar(
        sa.select(Member.tier_id)
        .where(Member.id == member_id)
        .execution_options(populate_existing=True)
    )
    return None if tier_id is None else tiers.get_tier(tier_id).code


def tier_events() -> list[dict]:
    return [
        e.payload
        for e in db.session.scalars(
            sa.select(OutboxEvent)
            .where(OutboxEvent.topic == "tier.changed")
            .order_by(OutboxEvent.id)
        )
    ]


def test_an_order_that_crosses_a_threshold_upgrades_the_member_at_once(client, make, pos):
    ladder()
    base_rate()
    member = make.member()
    client.post(
        "/v1/orders", json=order_body({"member_id": member.id}, ("A", None, 1, 60_000)), headers=pos
    )
    assert tier_code(member.id) == "member"
    client.post(
        "/v1/orders", json=order_body({"member_id": member.id}, ("A", None, 1, 50_000)), headers=pos
    )
    assert tier_code(member.id) == "silver"
    assert [(e["from"], e["to"], e["direction"]) for e in tier_events()] == [
        (None, "member", "up"),
        ("member", "silver", "up"),
    ]
    # The next order earns with Silver's multiplier.
    third = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=pos)
    assert third.json["points_earned"] == 125


def test_qualifying_points_are_earned_points_not_the_balance(app, make):
    ladder()
    member = make.member()
    make.earn(member.id, 1_200)
    ledger.burn_points(member.id, 1_200, ledger.Cause("reward", "r"), now=utcnow(), actor="t")
    tiers.reevaluate_member_tier(member.id, utcnow())
    db.session.commit()
    assert tier_code(member.id) == "silver"
    assert tiers.tier_progress(member.id, utcnow()).qualifying_value == 1_200


def test_reversed_points_do_not_qualify(client, make, pos):
    ladder()
    base_rate()
    member = make.member()
    order = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, ("A", None, 1, 120_000)),
        headers=pos,
    ).json
    client.post(f"/v1/orders/{order['order_id']}/cancel", headers=pos)
    progress = tiers.tier_progress(member.id, utcnow())
    assert progress.qualifying_value == 0
    assert tier_code(member.id) == "silver"  # no downgrade outside the evaluation job


def test_the_daily_job_downgrades_members_whose_window_has_passed(app, make):
    ladder()
    member_id, loyal_id = make.member().id, make.member().id
    long_ago = utcnow() - timedelta(days=400)
    make.earn(member_id, 6_000, now=long_ago)
    make.earn(loyal_id, 6_000)
    tiers.reevaluate_member_tier(member_id, long_ago)
    tiers.reevaluate_member_tier(loyal_id, utcnow())
    db.session.commit()
    assert (tier_code(member_id), tier_code(loyal_id)) == ("gold", "gold")
    assert jobs.evaluate_tiers(batch_size=1) == 1
    assert (tier_code(member_id), tier_code(loyal_id)) == ("member", "gold")
    assert tier_events()[-1] == {
        "member_id": member_id,
        "from": "gold",
        "to": "member",
        "direction": "down",
        "reason": "evaluation",
    }
    assert jobs.evaluate_tiers() == 0  # idempotent


def test_the_evaluation_job_runs_daily():
    assert [(s.name, s.every_seconds) for s in periodic_jobs() if s.name == "evaluate-tiers"] == [
        ("evaluate-tiers", 86400)
    ]


def test_spend_based_tiers_count_net_spend_in_their_currency(client, make, pos):
    ladder(basis="spend", currency="EUR")
    member = make.member()
    order = client.post(
        "/v1/orders", json=order_body({"member_id": member.id}, ("A", None, 1, 1_500)), headers=pos
    ).json
    assert tier_code(member.id) == "silver"
    client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, ("A", None, 1, 9_000), currency="USD"),
        headers=pos,
    )
    client.post(
        f"/v1/orders/{order['order_id']}/refunds",
        json={"refund_id": "r", "amount_minor": 1_000},
        headers=pos,
    )
    progress = tiers.tier_progress(member.id, utcnow())
    assert (progress.basis, progress.qualifying_value, progress.remaining) == ("spend", 500, 4_500)


def test_progress_names_the_next_tier_and_what_is_left(app, make):
    ladder()
    member = make.member(points=700)
    tiers.reevaluate_member_tier(member.id, utcnow())
    db.session.commit()
    progress = tiers.tier_progress(member.id, utcnow())
    assert (progress.current.code, progress.next.code) == ("member", "silver")
    assert (progress.qualifying_value, progress.remaining) == (700, 300)
    make.earn(member.id, 10_000)
    tiers.reevaluate_member_tier(member.id, utcnow())
    db.session.commit()
    top = tiers.tier_progress(member.id, utcnow())
    assert (top.current.code, top.next, top.remaining) == ("gold", None, 0)


def test_no_tiers_means_no_tier_and_no_progress(app, make):
    member = make.member(points=10)
    assert tiers.reevaluate_member_tier(member.id, utcnow()) is None
    assert tiers.tier_progress(member.id, utcnow()).current is None


# --- admin API ------------------------------------------------------------------------------


def test_admins_manage_tiers(client, make, admin):
    body = {
        "code": "gold",
        "name": "Gold",
        "rank": 2,
        "threshold": 5000,
        "earn_multiplier_pct": 150,
        "benefits": "free shipping",
    }
    created = client.post("/v1/tiers", json=body, headers={**admin, "Idempotency-Key": "1"})
    assert created.status_code == 201, created.json
    tier_id = created.json["id"]
    assert created.json["window_days"] == 365 and created.json["basis"] == "qualifying_points"
    clash = client.post(
        "/v1/tiers", json={**body, "code": "gold2"}, headers={**admin, "Idempotency-Key": "2"}
    )
    assert clash.status_code == 409 and clash.mimetype == PROBLEM
    patched = client.patch(
        f"/v1/tiers/{tier_id}", json={"threshold": 6000}, headers={**admin, "Idempotency-Key": "3"}
    )
    assert patched.json["threshold"] == 6000
    assert [t["code"] for t in client.get("/v1/tiers", headers=admin).json["items"]] == ["gold"]
    member = make.member()
    db.session.get(Member, member.id).tier_id = tier_id
    db.session.commit()
    held = client.delete(f"/v1/tiers/{tier_id}", headers={**admin, "Idempotency-Key": "4"})
    assert held.status_code == 409
    db.session.get(Member, member.id).tier_id = None
    db.session.commit()
    assert (
        client.delete(f"/v1/tiers/{tier_id}", headers={**admin, "Idempotency-Key": "5"}).status_code
        == 204
    )
    assert client.get(f"/v1/tiers/{tier_id}", headers=admin).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"code": "x", "name": "X", "rank": 1, "basis": "spend"},
        {"code": "x", "name": "X", "rank": 1, "basis": "spend", "currency": "XXX"},
        {"code": "x", "name": "X", "rank": 1, "earn_multiplier_pct": 50},
        {"code": "x", "name": "X", "rank": 1, "window_days": 0},
        {"code": "x", "name": "X", "rank": 1, "threshold": -1},
        {"code": "x", "name": "X", "rank": "1"},
        {"code": "Not A Code", "name": "X", "rank": 1},
        {"name": "X", "rank": 1},
    ],
)
def test_invalid_tiers_are_refused(client, admin, body):
    response = client.post("/v1/tiers", json=body, headers={**admin, "Idempotency-Key": "k"})
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert tiers.list_tiers() == []


def test_tiers_are_for_admins_only(client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    assert client.get("/v1/tiers").status_code == 401
    assert client.get("/v1/tiers", headers=pos).status_code == 403
