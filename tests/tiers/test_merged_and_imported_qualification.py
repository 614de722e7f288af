"""Tier qualification counts the person's whole history: merged duplicates, imported
qualifying points, and refunds (also the part the return policy forgave)."""

from __future__ import annotations

import io

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.members.importer import import_members
from loyalty.members.merge import merge_members
from loyalty.members.operations import find_member_by_identity
from loyalty.tiers import jobs
from loyalty.tiers import operations as tiers
from tests.earning.factories import base_rate, order_body
from tests.members.factories import csv_text
from tests.tiers.test_tiers import ladder, tier_code


@pytest.fixture
def pos(make):
    return make.api_key(scopes.ORDERS_WRITE)


def test_a_merged_gold_duplicate_keeps_gold_at_the_nightly_evaluation(app, make):
    ladder()  # silver 1,000, gold 5,000 qualifying points
    survivor, duplicate = make.member(points=200).id, make.member(points=6_000).id
    tiers.reevaluate_member_tier(duplicate, utcnow())
    db.session.commit()
    merge_members(survivor, duplicate, reason="dup", now=utcnow(), actor="t")
    db.session.commit()
    assert tier_code(survivor) == "gold"

    assert jobs.evaluate_tiers() == 0
    assert tier_code(survivor) == "gold"
    assert tiers.tier_progress(survivor, utcnow()).qualifying_value == 6_200


def import_csv(rows):
    import_members(
        io.StringIO(csv_text(rows)),
        batch="legacy",
        now=utcnow(),
        actor="import:test",
        after_chunk=lambda _: db.session.commit(),
    )
    db.session.commit()


def test_imported_gold_members_keep_gold_the_first_night(app):
    ladder()
    import_csv(
        [
            # no qualifying_points: the opening points count
            {"external_id": "G1", "email": "g1@shop.example", "tier": "gold",
             "opening_points": "50000", "qualifying_points": ""},
            # stated apart from the balance (points spent in the old program still qualify)
            {"external_id": "G2", "email": "g2@shop.example", "tier": "gold",
             "opening_points": "100", "qualifying_points": "5000"},
            # the balance says nothing about qualification here
            {"external_id": "G3", "email": "g3@shop.example", "tier": "gold",
             "opening_points": "50000", "qualifying_points": "0"},
        ]
    )  # fmt: skip
    g1, g2, g3 = (find_member_by_identity("email", f"g{n}@shop.example").id for n in (1, 2, 3))
    assert {tier_code(m) for m in (g1, g2, g3)} == {"gold"}

    assert jobs.evaluate_tiers() == 1
    assert (tier_code(g1), tier_code(g2), tier_code(g3)) == ("gold", "gold", "member")
    assert tiers.tier_progress(g2, utcnow()).qualifying_value == 5_000


def test_points_forgiven_by_the_return_policy_do_not_keep_the_tier(client, make, pos):
    """Buy, spend the points, return the goods: under cap-at-zero the balance can't pay the
    reversal back, but the points were never earned, so Gold goes at the next evaluation."""
    ladder()
    base_rate()
    member = make.member().id
    order = client.post(
        "/v1/orders",
        json=order_body({"member_id": member}, ("TV", None, 1, 600_000)),
        headers=pos,
    ).json
    assert order["points_earned"] == 6_000 and tier_code(member) == "gold"
    ledger.burn_points(member, 6_000, ledger.Cause("reward", "r"), now=utcnow(), actor="t")
    db.session.commit()

    refund = client.post(
        f"/v1/orders/{order['order_id']}/refunds",
        json={"refund_id": "R1", "amount_minor": 600_000},
        headers=pos,
    ).json
    assert (refund["forgiven"], refund["policy"]) == (6_000, "cap-at-zero")
    assert tiers.tier_progress(member, utcnow()).qualifying_value == 0
    assert jobs.evaluate_tiers() == 1
    assert tier_code(member) == "member"
