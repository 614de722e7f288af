"""POST /v1/coupons/validate: what applies, the discount per line, and why not. It never
changes anything."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.coupons import offers
from loyalty.db import db
from tests.coupons import factories as f
from tests.factories import idem

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def pos(make):
    make.store("S1", region="north")
    make.store("S2", region="south")
    return make.api_key(scopes.COUPONS_REDEEM)


def reasons(client, pos, codes, **basket):
    response = client.post("/v1/coupons/validate", json=f.body(codes, **basket), headers=pos)
    assert response.status_code == 200, response.json
    return {r["code"]: r["reasons"] for r in response.json["results"]}


def test_a_valid_code_reports_its_discount_per_line_and_changes_nothing(client, pos):
    [code] = f.codes(f.offer().id)
    response = client.post(
        "/v1/coupons/validate", json=f.body([code.lower()], store_id="S1"), headers=pos
    )
    assert response.json["results"][0] | {"offer": None} == {
        "code": code, "applies": True, "reasons": [], "discount_minor": 1100,
        "line_discounts": [{"line": 0, "discount_minor": 1000}, {"line": 1, "discount_minor": 100}],
        "bonus_points": 0, "points_multiplier_pct": 100, "offer": None,
    }  # fmt: skip
    assert response.json["total_discount_minor"] == 1100
    assert f.code_row(code).uses == 0


def test_codes_are_case_insensitive_and_ignore_hyphens_and_spaces(client, pos):
    [code] = f.codes(f.offer().id)
    typed = f"{code[:4].lower()}-{code[4:8]} {code[8:]}"
    assert reasons(client, pos, [typed], store_id="S1") == {code: []}


def test_unknown_codes_are_reported_as_unknown(client, pos):
    assert reasons(client, pos, ["NOSUCHCODE1", "!!"], store_id="S1") == {
        "NOSUCHCODE1": ["unknown_code"],
        "!!": ["unknown_code"],
    }


def test_expired_and_not_yet_valid(client, pos):
    now = utcnow()
    [old] = f.codes(f.offer(valid_until=now - timedelta(days=1)).id)
    [future] = f.codes(f.offer(valid_from=now + timedelta(days=1)).id)
    assert reasons(client, pos, [old], store_id="S1") == {old: ["expired"]}
    assert reasons(client, pos, [future], store_id="S1") == {future: ["not_yet_valid"]}


def test_n_days_from_issue_expires_each_code_on_its_own_clock(client, pos):
    offer = f.offer(valid_days_after_issue=7)
    [fresh] = f.codes(offer.id)
    [stale] = f.codes(offer.id, now=utcnow() - timedelta(days=8))
    assert reasons(client, pos, [fresh], store_id="S1") == {fresh: []}
    assert reasons(client, pos, [stale], store_id="S1") == {stale: ["expired"]}


def test_wrong_channel_store_region_and_currency(client, pos):
    [app_only] = f.codes(f.offer(channels=["app", "online"]).id)
    [s2_only] = f.codes(f.offer(store_ids=["S2"]).id)
    [north] = f.codes(f.offer(regions=["north"]).id)
    assert reasons(client, pos, [app_only], store_id="S1") == {app_only: ["wrong_channel"]}
    assert reasons(client, pos, [s2_only], store_id="S1") == {s2_only: ["wrong_store"]}
    assert reasons(client, pos, [north], store_id="S1") == {north: []}
    assert reasons(client, pos, [north], store_id="S2") == {north: ["wrong_store"]}
    assert reasons(client, pos, [north], channel="online") == {north: ["wrong_store"]}
    [eur] = f.codes(f.offer().id)
    assert reasons(client, pos, [eur], store_id="S1", currency="USD") == {eur: ["wrong_currency"]}


def test_minimum_spend_counts_eligible_lines_only(client, pos):
    [code] = f.codes(f.offer(min_spend_minor=10_500, eligible_categories=["shoes"]).id)
    assert reasons(client, pos, [code], store_id="S1") == {code: ["min_spend_not_met"]}
    big = [{**f.SHOES, "quantity": 2}]
    assert reasons(client, pos, [code], store_id="S1", lines=big) == {code: []}


def test_no_eligible_items_and_a_missing_free_item(client, pos):
    [hats] = f.codes(f.offer(eligible_skus=["HAT"]).id)
    [free] = f.codes(f.offer(kind="free_item", free_sku="HAT", percent_bp=None).id)
    assert reasons(client, pos, [hats], store_id="S1") == {hats: ["no_eligible_items"]}
    assert reasons(client, pos, [free], store_id="S1") == {free: ["free_item_not_in_basket"]}


def test_used_up_codes_and_offers_report_limit_reached(client, pos, make):
    offer = f.offer()
    [code] = f.codes(offer.id)
    redeemed = client.post("/v1/coupons/redeem", json=f.body([code], store_id="S1",
                           order_ref="o1"), headers=idem(pos))  # fmt: skip
    assert redeemed.status_code == 201
    assert reasons(client, pos, [code], store_id="S1") == {code: ["limit_reached"]}
    capped = f.offer(max_redemptions=1)
    first, second = f.codes(capped.id, 2)
    client.post("/v1/coupons/redeem", json=f.body([first], store_id="S1", order_ref="o2"),
                headers=idem(pos))  # fmt: skip
    assert reasons(client, pos, [second], store_id="S1") == {second: ["limit_reached"]}


def test_a_budget_too_small_for_this_discount_is_exhausted(client, pos):
    [code] = f.codes(f.offer(budget_minor=1000).id)  # 10 % of the basket is 11.00
    assert reasons(client, pos, [code], store_id="S1") == {code: ["budget_exhausted"]}


def test_per_member_limits_need_a_member_and_count_their_uses(client, pos, make):
    member = make.member()
    offer = f.offer(per_member_limit=1)
    shared = f.shared(offer.id, "SPRING25")
    assert reasons(client, pos, ["spring25"], store_id="S1") == {shared: ["member_required"]}
    client.post("/v1/coupons/redeem", json=f.body([shared], store_id="S1", order_ref="o1",
                member_id=member.id), headers=idem(pos))  # fmt: skip
    assert reasons(client, pos, [shared], store_id="S1", member_id=member.id) == {
        shared: ["member_limit_reached"]
    }


def test_another_members_coupon_belongs_to_another_member(client, pos, make):
    owner, other = make.member(), make.member()
    [code] = [c.code for c in _issue(f.offer().id, owner.id)]
    assert reasons(client, pos, [code], store_id="S1", member_id=other.id) == {
        code: ["belongs_to_another_member"]
    }
    assert reasons(client, pos, [code], store_id="S1", member_id=owner.id) == {code: []}


def test_paused_offers_and_void_codes_are_inactive(client, pos):
    offer = f.offer()
    first, second = f.codes(offer.id, 2)
    offers.void_code(f.code_row(first).id, now=utcnow())
    db.session.commit()
    assert reasons(client, pos, [first], store_id="S1") == {first: ["inactive"]}
    offers.update_offer(offer.id, {"status": "paused"}, now=utcnow(), actor="t")
    db.session.commit()
    assert reasons(client, pos, [second], store_id="S1") == {second: ["inactive"]}


def test_exclusive_codes_do_not_stack_and_the_first_given_wins(client, pos):
    [a] = f.codes(f.offer().id)
    [b] = f.codes(f.offer(kind="fixed_amount", amount_minor=500, percent_bp=None).id)
    result = reasons(client, pos, [a, b], store_id="S1")
    assert result == {a: [], b: [f"not_stackable_with:{a}"]}


def test_stackable_codes_of_one_group_combine_in_the_defined_order(client, pos):
    fixed = f.offer(kind="fixed_amount", amount_minor=500, percent_bp=None, stacking="stackable")
    pct = f.offer(stacking="stackable")
    vip = f.offer(stacking="stackable", stack_group="vip")
    [a], [b], [c] = f.codes(fixed.id), f.codes(pct.id), f.codes(vip.id)
    lines = [{"sku": "X", "quantity": 1, "unit_price_minor": 10_000}]
    response = client.post("/v1/coupons/validate", json=f.body([a, b, c], store_id="S1",
                           lines=lines), headers=pos)  # fmt: skip
    results = {r["code"]: r for r in response.json["results"]}
    assert results[b]["discount_minor"] == 1000  # percent first, on 100.00
    assert results[a]["discount_minor"] == 500  # then 5.00 off the rest
    assert results[c]["reasons"] == [f"not_stackable_with:{a}"]
    assert response.json["total_discount_minor"] == 1500


def test_the_same_code_twice_is_a_duplicate(client, pos):
    [code] = f.codes(f.offer().id)
    assert reasons(client, pos, [code, code.lower()], store_id="S1") == {code: ["duplicate_code"]}


def test_points_offers_report_bonus_points_and_multipliers(client, pos):
    bonus = f.offer(kind="bonus_points", bonus_points=300, percent_bp=None,
                    stacking="stackable")  # fmt: skip
    double = f.offer(kind="points_multiplier", points_multiplier_pct=200, percent_bp=None,
                     stacking="stackable")  # fmt: skip
    [a], [b] = f.codes(bonus.id), f.codes(double.id)
    response = client.post("/v1/coupons/validate", json=f.body([a, b], store_id="S1"), headers=pos)
    assert (response.json["bonus_points"], response.json["points_multiplier_pct"]) == (300, 200)
    assert response.json["total_discount_minor"] == 0


def _issue(offer_id, member_id):
    from loyalty.coupons.wallet import issue_to_members

    issued = issue_to_members(offer_id, [member_id], now=utcnow(), actor="t")
    db.session.commit()
    return issued
