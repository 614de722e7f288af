"""Coupons after a merge: points and uses go back to the person who holds them now."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.coupons import operations
from loyalty.coupons.models import CouponMemberUse
from loyalty.db import db
from loyalty.ledger.operations import member_balance
from loyalty.members.merge import merge_members
from tests.concurrency import run_between
from tests.coupons import factories as f
from tests.factories import idem
from tests.ledger.invariants import assert_ledger_consistent

pytestmark = pytest.mark.usefixtures("app")


def merge(survivor_id: int, merged_id: int) -> None:
    merge_members(survivor_id, merged_id, reason="dup", now=utcnow(), actor="t")
    db.session.commit()


def test_returning_a_reward_bought_before_a_merge_credits_the_survivor(client, make):
    admin = make.api_key(scopes.COUPONS_ADMIN)
    offer = f.offer(kind="fixed_amount", amount_minor=500, percent_bp=None)
    reward = client.post("/v1/coupons/rewards", json={"offer_id": offer.id, "name": "5 off",
                         "points_cost": 300}, headers=idem(admin)).json  # fmt: skip
    buyer, survivor = make.member(points=300).id, make.member().id
    bought = client.post(
        f"/v1/me/rewards/{reward['id']}/redeem", headers=idem(make.member_token(buyer))
    ).json
    merge(survivor, buyer)

    returned = client.post(
        f"/v1/me/coupons/{bought['id']}/return", headers=idem(make.member_token(survivor))
    )
    assert returned.status_code == 200, returned.json
    assert member_balance(survivor).available == 300
    assert member_balance(buyer).balance == 0  # nothing stranded on the merged id
    assert_ledger_consistent()


def test_a_rollback_after_a_merge_gives_the_use_back_to_the_survivor(client, make):
    """Limit 1 per member: A uses the code, A is merged into B (B now holds A's use), the
    redemption is rolled back: B may use the code."""
    make.store("S1")
    pos = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    code = f.shared(f.offer(per_member_limit=1).id, "ONCE")
    used_by, survivor = make.member().id, make.member().id
    first = client.post("/v1/coupons/redeem", json=f.body([code], member_id=used_by,
                        order_ref="o1"), headers=idem(pos))  # fmt: skip
    assert first.status_code == 201
    merge(survivor, used_by)
    blocked = client.post("/v1/coupons/redeem", json=f.body([code], member_id=survivor,
                          order_ref="o2"), headers=idem(pos))  # fmt: skip
    assert blocked.status_code == 409 and blocked.json["reason"] == "member_limit_reached"

    [redemption] = first.json["redemptions"]
    rolled_back = client.post(
        f"/v1/coupons/redemptions/{redemption['id']}/rollback", headers=idem(pos)
    )
    assert rolled_back.status_code == 200, rolled_back.json
    again = client.post("/v1/coupons/redeem", json=f.body([code], member_id=survivor,
                        order_ref="o3"), headers=idem(pos))  # fmt: skip
    assert again.status_code == 201, again.json


@pytest.mark.postgres
def test_a_rollback_racing_a_merge_gives_the_use_back_to_the_survivor(app, client, make):
    """The rollback looks the counter up under the merged id; the merge folds that counter
    into the survivor's and commits while the rollback waits on the row: the rollback
    resolves again and gives the use back to the survivor."""
    make.store("S1")
    pos = make.api_key(scopes.COUPONS_REDEEM, store_id="S1")
    offer_id = f.offer(per_member_limit=1).id
    code = f.shared(offer_id, "ONCE")
    used_by, survivor = make.member().id, make.member().id
    first = client.post("/v1/coupons/redeem", json=f.body([code], member_id=used_by,
                        order_ref="o1"), headers=idem(pos))  # fmt: skip
    [redemption] = first.json["redemptions"]

    def merging() -> None:
        merge_members(survivor, used_by, reason="dup", now=utcnow(), actor="t")

    def rolling_back() -> None:
        operations.rollback_redemption(redemption["id"], now=utcnow(), actor="t")

    assert run_between(app, merging, rolling_back) == []
    db.session.expire_all()
    uses = db.session.execute(
        sa.select(CouponMemberUse.member_id, CouponMemberUse.uses).where(
            CouponMemberUse.offer_id == offer_id
        )
    ).all()
    assert uses == [(survivor, 0)]
