"""Redeeming, holding, capturing, releasing and rolling back coupons, and the orders hooks."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.coupons import jobs, operations
from loyalty.coupons.models import CouponMemberUse, CouponOffer, CouponRedemption
from loyalty.coupons.wallet import issue_to_members
from loyalty.db import db
from loyalty.outbox import OutboxEvent
from tests.coupons import factories as f
from tests.factories import error_fields, idem
from tests.statements import statements

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def pos(make):
    make.store("S1")
    return make.api_key(scopes.COUPONS_REDEEM, store_id="S1")


def redeem(client, pos, codes, key=None, **extra):
    extra.setdefault("order_ref", "order-1")
    return client.post("/v1/coupons/redeem", json=f.body(codes, **extra), headers=idem(pos, key))


def offer_row(offer_id):
    db.session.expire_all()
    return db.session.get(CouponOffer, offer_id)


def test_redeeming_records_the_use_discount_store_channel_order_and_version(client, pos):
    offer = f.offer(max_redemptions=5, budget_minor=10_000)
    [code] = f.codes(offer.id)
    response = redeem(client, pos, [code])
    assert response.status_code == 201
    [redemption] = response.json["redemptions"]
    assert redemption | {"id": 0, "checkout_ref": "", "created_at": "", "redeemed_at": ""} == {
        "id": 0, "code": code, "offer_id": offer.id, "offer_version": 1, "status": "redeemed",
        "checkout_ref": "", "order_ref": "order-1", "order_id": None, "member_id": None,
        "store_id": "S1", "channel": "store", "currency": "EUR", "discount_minor": 1100,
        "line_discounts": [{"line": 0, "discount_minor": 1000}, {"line": 1, "discount_minor": 100}],
        "bonus_points": 0, "points_multiplier_pct": 100, "source_type": None, "source_ref": None,
        "campaign_id": None, "expires_at": None, "created_at": "", "redeemed_at": "",
        "closed_at": None, "rollback_reason": None, "metadata": {},
    }  # fmt: skip
    assert f.code_row(code).uses == 1
    assert (offer_row(offer.id).redemptions_count, offer_row(offer.id).discount_spent_minor) == (
        1,
        1100,
    )
    assert db.session.scalar(sa.select(OutboxEvent.topic)) == "coupon.redeemed"


def test_a_retry_with_the_same_idempotency_key_replays_the_first_response(client, pos):
    [code] = f.codes(f.offer().id)
    first = redeem(client, pos, [code], key="k-1")
    again = redeem(client, pos, [code], key="k-1")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert f.code_row(code).uses == 1


def test_the_same_codes_for_the_same_order_with_a_new_key_return_the_first_redemption(client, pos):
    offer = f.offer()
    code = f.shared(offer.id, "WELCOME10", max_uses=100)
    first = redeem(client, pos, [code])
    again = redeem(client, pos, [code])
    assert again.status_code == 201 and again.json["replayed"] is True
    assert again.json["redemptions"][0]["id"] == first.json["redemptions"][0]["id"]
    assert f.code_row(code).uses == 1


def test_all_codes_redeem_together_or_none_does(client, pos):
    stackable = f.offer(stacking="stackable")
    other = f.offer(stacking="stackable", kind="fixed_amount", amount_minor=100, percent_bp=None)
    [good] = f.codes(stackable.id)
    [used] = f.codes(other.id)
    assert redeem(client, pos, [used], order_ref="earlier").status_code == 201
    response = redeem(client, pos, [good, used])
    assert response.status_code == 409
    assert response.json["reason"] == "limit_reached"
    assert response.json["reasons"] == {used: ["limit_reached"]}
    assert f.code_row(good).uses == 0


def test_a_code_that_does_not_apply_is_a_422_with_its_reasons(client, pos):
    [code] = f.codes(f.offer(channels=["online"]).id)
    response = redeem(client, pos, [code])
    assert response.status_code == 422
    assert response.json["type"].endswith("/coupon-not-applicable")
    assert response.json["reasons"] == {code: ["wrong_channel"]}


def test_a_redeem_needs_an_idempotency_key_and_an_order_ref(client, pos):
    [code] = f.codes(f.offer().id)
    no_key = client.post("/v1/coupons/redeem", json=f.body([code], order_ref="o"), headers=pos)
    assert no_key.status_code == 428
    no_order = client.post("/v1/coupons/redeem", json=f.body([code]), headers=idem(pos))
    assert no_order.status_code == 422 and "order_ref" in error_fields(no_order.json)


def test_rollback_restores_the_use_and_budget_once(client, pos):
    offer = f.offer(max_redemptions=1, budget_minor=5000)
    [code] = f.codes(offer.id)
    redemption_id = redeem(client, pos, [code]).json["redemptions"][0]["id"]
    url = f"/v1/coupons/redemptions/{redemption_id}/rollback"
    first = client.post(url, headers=idem(pos))
    second = client.post(url, headers=idem(pos))
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json["status"] == second.json["status"] == "rolled_back"
    assert f.code_row(code).uses == 0
    assert (offer_row(offer.id).redemptions_count, offer_row(offer.id).discount_spent_minor) == (
        0,
        0,
    )
    assert redeem(client, pos, [code], order_ref="order-2").status_code == 201


def test_a_redemption_keeps_the_terms_version_it_was_redeemed_under(client, pos, make):
    offer = f.offer()
    first, second = f.codes(offer.id, 2)
    before = redeem(client, pos, [first]).json
    admin = make.api_key(scopes.COUPONS_ADMIN)
    changed = client.patch(f"/v1/coupons/offers/{offer.id}", json={"percent_bp": 2000},
                           headers=idem(admin))  # fmt: skip
    assert changed.status_code == 200 and changed.json["version"] == 2
    after = redeem(client, pos, [second], order_ref="order-2").json
    assert before["redemptions"][0]["offer_version"] == 1
    assert after["redemptions"][0]["offer_version"] == 2
    assert (before["total_discount_minor"], after["total_discount_minor"]) == (1100, 2200)
    versions = client.get(f"/v1/coupons/offers/{offer.id}/versions", headers=admin).json
    assert [v["terms"]["percent_bp"] for v in versions["items"]] == [1000, 2000]


def test_per_member_limits_count_each_members_uses(client, pos, make):
    member = make.member()
    code = f.shared(f.offer(per_member_limit=2).id, "TWICE")
    for n in range(2):
        response = redeem(client, pos, [code], member_id=member.id, order_ref=f"o{n}")
        assert response.status_code == 201
    third = redeem(client, pos, [code], member_id=member.id, order_ref="o3")
    assert third.status_code == 409 and third.json["reason"] == "member_limit_reached"


class TestHolds:
    def hold(self, client, pos, codes, **extra):
        return client.post("/v1/coupons/holds", json=f.body(codes, **extra), headers=idem(pos))

    def test_a_held_code_is_taken_until_captured(self, client, pos):
        [code] = f.codes(f.offer().id)
        held = self.hold(client, pos, [code], ttl_seconds=600)
        assert held.status_code == 201 and held.json["status"] == "held"
        assert redeem(client, pos, [code], order_ref="other").status_code == 409
        ref = held.json["checkout_ref"]
        captured = client.post(f"/v1/coupons/holds/{ref}/capture", json={"order_ref": "web-9"},
                               headers=idem(pos))  # fmt: skip
        assert captured.status_code == 200
        assert captured.json["redemptions"][0]["status"] == "redeemed"
        assert captured.json["redemptions"][0]["order_ref"] == "web-9"
        assert f.code_row(code).uses == 1

    def test_a_released_hold_gives_the_use_back(self, client, pos):
        [code] = f.codes(f.offer(max_redemptions=1).id)
        ref = self.hold(client, pos, [code]).json["checkout_ref"]
        released = client.post(f"/v1/coupons/holds/{ref}/release", headers=idem(pos))
        assert released.status_code == 200 and released.json["status"] == "released"
        again = client.post(f"/v1/coupons/holds/{ref}/release", headers=idem(pos))
        assert again.status_code == 200
        assert f.code_row(code).uses == 0
        assert redeem(client, pos, [code]).status_code == 201

    def test_expired_holds_release_themselves_through_the_job(self, client, pos):
        offer = f.offer(max_redemptions=1)
        [code] = f.codes(offer.id)
        ref = self.hold(client, pos, [code], ttl_seconds=10).json["checkout_ref"]
        assert operations.expire_holds(utcnow()) == 0  # not yet
        db.session.commit()
        assert operations.expire_holds(utcnow() + timedelta(seconds=11)) == 1
        db.session.commit()
        assert f.code_row(code).uses == 0 and offer_row(offer.id).redemptions_count == 0
        status = db.session.scalar(sa.select(CouponRedemption.status))
        assert status == "expired"
        late = client.post(f"/v1/coupons/holds/{ref}/capture", json={}, headers=idem(pos))
        assert late.status_code == 409 and late.json["reason"] == "hold_expired"

    def test_the_expiry_job_is_scheduled(self):
        from loyalty.jobs import periodic_jobs

        assert jobs.expire_coupon_holds in [s.job for s in periodic_jobs()]
        assert jobs.expire_coupon_holds() == 0


class TestOrdersIntegration:
    def test_redeem_for_order_returns_the_discounts_and_replays_on_retry(self, make):
        member = make.member()
        [code] = f.codes(f.offer().id)
        basket = f.basket(store_id=None, channel="online")
        kwargs = dict(order_id=77, codes=[code.lower()], member_id=member.id, client_id=1,
                      basket=basket, now=utcnow(), actor="test")  # fmt: skip
        discounts = operations.redeem_for_order(**kwargs)
        db.session.commit()
        assert discounts.total_discount_minor == 1100
        assert discounts.line_discounts == {0: 1000, 1: 100}
        assert operations.redeem_for_order(**kwargs).redemptions == discounts.redemptions
        assert f.code_row(code).uses == 1

    def test_a_code_that_does_not_apply_refuses_the_order_with_its_reason(self):
        with pytest.raises(operations.CouponNotApplicable) as refused:
            operations.redeem_for_order(
                order_id=1, codes=["NOPE-NOPE"], member_id=None, client_id=1,
                basket=f.basket(channel="online"), now=utcnow(), actor="t",
            )  # fmt: skip
        assert refused.value.extra["reason"] == "unknown_code"

    def test_rolling_back_an_order_restores_its_codes_once(self, make):
        member = make.member()
        offer = f.offer(per_member_limit=1, budget_minor=100_000)
        a = f.shared(offer.id, "ONEPERMEMBER")
        operations.redeem_for_order(
            order_id=5,
            codes=[a],
            member_id=member.id,
            client_id=1,
            basket=f.basket(channel="online"),
            now=utcnow(),
            actor="t",
        )
        db.session.commit()
        assert operations.rollback_order_redemptions(order_id=5, now=utcnow(), actor="t") == 1
        assert operations.rollback_order_redemptions(order_id=5, now=utcnow(), actor="t") == 0
        db.session.commit()
        uses = db.session.scalar(sa.select(CouponMemberUse.uses))
        assert (f.code_row(a).uses, uses, offer_row(offer.id).discount_spent_minor) == (0, 0, 0)


def test_redemptions_carry_the_campaign_that_issued_the_code(client, pos, make):
    member = make.member()
    [coupon] = issue_to_members(
        f.offer().id,
        [member.id],
        now=utcnow(),
        actor="t",
        source_type="campaign",
        source_ref="spring",
        campaign_id=12,
    )
    db.session.commit()
    response = redeem(client, pos, [coupon.code], member_id=member.id)
    redemption = response.json["redemptions"][0]
    assert (redemption["campaign_id"], redemption["source_type"], redemption["member_id"]) == (
        12, "campaign", member.id,
    )  # fmt: skip


def test_an_offer_with_codes_keeps_its_kind_of_caps(client, make):
    admin = make.api_key(scopes.COUPONS_ADMIN)
    offer = f.offer(max_redemptions=10)
    f.codes(offer.id)
    add_budget = client.patch(f"/v1/coupons/offers/{offer.id}", json={"per_member_limit": 1},
                              headers=idem(admin))  # fmt: skip
    assert add_budget.status_code == 409 and add_budget.json["reason"] == "offer_has_codes"
    raise_cap = client.patch(f"/v1/coupons/offers/{offer.id}", json={"max_redemptions": 20},
                             headers=idem(admin))  # fmt: skip
    assert raise_cap.status_code == 200 and raise_cap.json["max_redemptions"] == 20


def test_redemptions_come_back_in_the_order_the_codes_were_given_also_on_a_replay(client, pos):
    """Uses are taken in ascending code id (the lock order); the answer keeps the request's
    order, and a repeat for the same order (new key) answers in that order too."""
    first_made = f.codes(f.offer(stacking="stackable").id)[0]
    kind = {"kind": "fixed_amount", "amount_minor": 100, "percent_bp": None}
    second_made = f.codes(f.offer(stacking="stackable", **kind).id)[0]
    first = redeem(client, pos, [second_made, first_made])
    assert first.status_code == 201
    assert [r["code"] for r in first.json["redemptions"]] == [second_made, first_made]
    again = redeem(client, pos, [second_made, first_made])
    assert again.json["replayed"] is True
    assert again.json["redemptions"] == first.json["redemptions"]


@pytest.mark.postgres
def test_on_postgresql_a_code_use_and_its_redemption_are_one_statement(client, pos):
    """The conditional UPDATE that takes the use is a CTE of the redemption's INSERT, so a
    code with no use left inserts nothing and nothing else runs after it."""
    [code] = f.codes(f.offer().id)
    with statements() as sent:
        assert redeem(client, pos, [code]).status_code == 201
    touching_codes = [s for s in sent if "UPDATE coupon_codes" in s]
    assert len(touching_codes) == 1
    assert "INSERT INTO coupon_redemptions" in touching_codes[0]
    assert f.code_row(code).uses == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CouponRedemption)) == 1
