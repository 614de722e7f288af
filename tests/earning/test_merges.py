"""Orders and refunds after a merge: the person's history, wherever its rows live."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.members.merge import merge_members
from loyalty.tiers import operations as tiers
from tests.earning.factories import base_rate, order_body
from tests.ledger.invariants import assert_ledger_consistent
from tests.tiers.test_tiers import ladder


@pytest.fixture
def pos(make):
    return make.api_key(scopes.ORDERS_WRITE)


def test_a_refund_after_a_merge_reverses_on_the_survivor_against_the_whole_history(
    client, make, pos
):
    """The order's points were earned under the duplicate's id and stay there in the
    ledger; the refund lands on the survivor; qualification nets the two (6,000 earned,
    3,000 reversed, plus the survivor's own 1,000), as one person's history."""
    ladder()
    base_rate()
    survivor, duplicate = make.member().id, make.member().id
    make.earn(survivor, 1_000)
    tiers.reevaluate_member_tier(survivor, utcnow())
    order = client.post(
        "/v1/orders",
        json=order_body({"member_id": duplicate}, ("TV", None, 1, 600_000)),
        headers=pos,
    ).json
    merge_members(survivor, duplicate, reason="dup", now=utcnow(), actor="t")
    db.session.commit()

    refund = client.post(
        f"/v1/orders/{order['order_id']}/refunds",
        json={"refund_id": "R1", "amount_minor": 300_000},
        headers=pos,
    )
    assert refund.status_code == 201 and refund.json["revoked_available"] == 3_000
    assert ledger.member_balance(survivor).balance == 1_000 + 6_000 - 3_000
    assert tiers.tier_progress(survivor, utcnow()).qualifying_value == 4_000
    assert_ledger_consistent()


def test_an_order_naming_a_merged_member_earns_for_the_survivor(client, make, pos):
    base_rate()
    survivor, duplicate = make.member().id, make.member().id
    token = make.member_token(duplicate)  # the app of the duplicate, minted before the merge
    merge_members(survivor, duplicate, reason="dup", now=utcnow(), actor="t")
    db.session.commit()

    for member in ({"member_id": duplicate}, {"member_token": token["Authorization"][7:]}):
        response = client.post("/v1/orders", json=order_body(member), headers=pos)
        assert response.status_code == 201, response.json
        assert response.json["member_id"] == survivor
    assert ledger.member_balance(survivor).balance == 200
    assert_ledger_consistent()
