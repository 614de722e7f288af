"""Orders and activities follow a member merge and appear in the member's data export."""

from __future__ import annotations

import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.earning import operations
from loyalty.earning.models import ActivityEvent, Order
from loyalty.ledger import operations as ledger
from loyalty.members.merge import merge_members
from loyalty.members.privacy import export_member
from tests.earning.factories import base_rate, order_body, rule
from tests.ledger.invariants import assert_ledger_consistent


def _activity(member_id: int, kind: str) -> None:
    operations.record_activity(
        member_id,
        kind,
        reference=None,
        referred_member_id=None,
        client_id=None,
        now=utcnow(),
        actor="t",
    )
    db.session.commit()


def test_a_merge_moves_orders_and_activities_to_the_survivor(client, make):
    base_rate()
    rule(name="welcome", kind="event_bonus", activity_kind="signup", bonus_points=10)
    pos = make.api_key(scopes.ORDERS_WRITE)
    survivor, merged = make.member(), make.member()
    order = client.post("/v1/orders", json=order_body({"member_id": merged.id}), headers=pos).json
    _activity(survivor.id, "signup")
    _activity(merged.id, "signup")
    _activity(merged.id, "profile_completed")
    merge_members(survivor.id, merged.id, reason="same person", now=utcnow(), actor="support")
    db.session.commit()
    assert db.session.scalar(sa.select(Order.member_id)) == survivor.id
    kinds = db.session.execute(
        sa.select(ActivityEvent.member_id, ActivityEvent.kind).order_by(ActivityEvent.id)
    ).all()
    # The survivor's own sign-up bonus stays the only one it has; the other stays as history.
    assert kinds == [
        (survivor.id, "signup"),
        (merged.id, "signup"),
        (survivor.id, "profile_completed"),
    ]
    # A refund after the merge takes the points back from the survivor.
    response = client.post(f"/v1/orders/{order['order_id']}/cancel", headers=pos)
    assert response.json["cancellation"]["revoked_available"] == 100
    assert ledger.member_balance(survivor.id).balance == 10 + 10  # both sign-up bonuses' points
    assert_ledger_consistent()


def test_the_member_export_lists_orders_and_activities(client, make):
    base_rate()
    pos = make.api_key(scopes.ORDERS_WRITE)
    member = make.member()
    order = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, ("A", "shoes", 2, 1_000)),
        headers=pos,
    ).json
    client.post(
        f"/v1/orders/{order['order_id']}/refunds",
        json={"refund_id": "R1", "lines": [{"index": 0, "quantity": 1}]},
        headers=pos,
    )
    _activity(member.id, "signup")
    exported = export_member(member.id, now=utcnow())
    section = exported["sections"]["orders"]
    assert section["orders"][0]["order_id"] == order["order_id"]
    assert section["orders"][0]["lines"][0]["sku"] == "A"
    assert section["orders"][0]["refunds"][0]["refund_id"] == "R1"
    assert [a["kind"] for a in section["activities"]] == ["signup"]
