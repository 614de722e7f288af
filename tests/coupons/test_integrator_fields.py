"""What integrators send comes back as sent: rollback reasons, a checkout's or order's
redemptions rolled back together, counters on every offer, `metadata`, one name for
max uses, one basket line price limit, terms in the units sent, prefixes kept or refused."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from loyalty.coupons.codes import MAX_BATCH
from loyalty.db import db
from loyalty.schemas import MAX_UNIT_PRICE
from tests.coupons import factories as f
from tests.factories import error_fields, idem

pytestmark = pytest.mark.usefixtures("app")
DISCOUNT = 1100  # 10 % of the factory basket (11,000)


@pytest.fixture
def pos(make):
    make.store("S1")
    return make.api_key(scopes.COUPONS_REDEEM, store_id="S1")


@pytest.fixture
def admin(make):
    return make.api_key(scopes.COUPONS_ADMIN)


def redeem(client, pos, codes, **extra):
    extra.setdefault("order_ref", "order-1")
    return client.post("/v1/coupons/redeem", json=f.body(codes, **extra), headers=idem(pos))


def counts(client, admin, offer_id):
    offer = client.get(f"/v1/coupons/offers/{offer_id}", headers=admin).json
    return offer["redemptions_count"], offer["discount_spent_minor"]


def test_an_uncapped_offer_counts_its_redemptions_and_discount_and_gives_them_back(
    client, pos, admin
):
    offer = f.offer()  # no cap, no budget
    code = f.shared(offer.id, "EVERYONE")
    assert counts(client, admin, offer.id) == (0, 0)
    first = redeem(client, pos, [code], order_ref="o-1")
    redeem(client, pos, [code], order_ref="o-2")
    assert counts(client, admin, offer.id) == (2, 2 * DISCOUNT)
    listed = client.get("/v1/coupons/offers", headers=admin).json["items"]
    assert (listed[0]["redemptions_count"], listed[0]["discount_spent_minor"]) == (2, 2 * DISCOUNT)

    redemption_id = first.json["redemptions"][0]["id"]
    back = client.post(
        f"/v1/coupons/redemptions/{redemption_id}/rollback",
        json={"reason": "customer returned the shoes"},
        headers=idem(pos),
    )
    assert back.status_code == 200, back.json
    assert back.json["rollback_reason"] == "customer returned the shoes"
    assert counts(client, admin, offer.id) == (1, DISCOUNT)

    held = client.post("/v1/coupons/holds", json=f.body([code]), headers=idem(pos))
    assert counts(client, admin, offer.id) == (2, 2 * DISCOUNT)  # held uses count
    ref = held.json["checkout_ref"]
    client.post(f"/v1/coupons/holds/{ref}/release", headers=idem(pos))
    assert counts(client, admin, offer.id) == (1, DISCOUNT)


def test_one_checkout_counts_each_of_its_uncapped_offers_once(client, pos, admin):
    """Two stackable codes of two uncapped offers: each offer's counter moves by one use
    and its own discount, in the checkout's one statement on PostgreSQL."""
    first = f.offer(stacking="stackable")
    second = f.offer(stacking="stackable", name="Second offer")
    codes = [f.shared(first.id, "STACK-A"), f.shared(second.id, "STACK-B")]
    redeemed = redeem(client, pos, codes, order_ref="o-stack")
    assert redeemed.status_code == 201, redeemed.json
    discounts = {r["offer_id"]: r["discount_minor"] for r in redeemed.json["redemptions"]}
    assert counts(client, admin, first.id) == (1, discounts[first.id])
    assert counts(client, admin, second.id) == (1, discounts[second.id])


def test_a_checkouts_redemptions_roll_back_together_once(client, pos, admin):
    offer = f.offer(stacking="stackable")
    other = f.offer(kind="fixed_amount", amount_minor=500, stacking="stackable")
    codes = [f.shared(offer.id, "TEN"), f.shared(other.id, "FIVE")]
    redeemed = redeem(client, pos, codes, order_ref="receipt-77")
    assert redeemed.status_code == 201, redeemed.json
    checkout_ref = redeemed.json["checkout_ref"]

    body = {"checkout_ref": checkout_ref, "reason": "till voided the sale"}
    back = client.post("/v1/coupons/rollbacks", json=body, headers=idem(pos))
    assert back.status_code == 200, back.json
    assert back.json["rolled_back"] == 2
    assert {r["status"] for r in back.json["redemptions"]} == {"rolled_back"}
    assert {r["rollback_reason"] for r in back.json["redemptions"]} == {"till voided the sale"}
    assert counts(client, admin, offer.id) == (0, 0) == counts(client, admin, other.id)

    again = client.post("/v1/coupons/rollbacks", json=body, headers=idem(pos))
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["rolled_back"] == 0
    assert again.json["redemptions"] == back.json["redemptions"]
    by_order = client.post(
        "/v1/coupons/rollbacks", json={"order_ref": "receipt-77"}, headers=idem(pos)
    )
    assert by_order.status_code == 200 and by_order.json["rolled_back"] == 0


def test_rollbacks_by_order_ref_refuse_holds_and_strangers(client, pos, make):
    offer = f.offer()
    code = f.shared(offer.id, "HELDONE")
    client.post("/v1/coupons/holds", json=f.body([code], order_ref="cart-1"), headers=idem(pos))
    held = client.post("/v1/coupons/rollbacks", json={"order_ref": "cart-1"}, headers=idem(pos))
    assert held.status_code == 409 and held.json["reason"] == "held"
    make.store("S2")
    stranger = make.api_key(scopes.COUPONS_REDEEM, store_id="S2")
    hidden = client.post(
        "/v1/coupons/rollbacks", json={"order_ref": "cart-1"}, headers=idem(stranger)
    )
    assert hidden.status_code == 404
    neither = client.post("/v1/coupons/rollbacks", json={"reason": "x"}, headers=idem(pos))
    assert neither.status_code == 422 and "checkout_ref" in error_fields(neither.json)


def test_metadata_on_offers_and_redemptions_comes_back_as_sent(client, pos, admin):
    created = client.post(
        "/v1/coupons/offers",
        json={
            "name": "Spring",
            "kind": "percent",
            "percent": 15,
            "currency": "EUR",
            "metadata": {"campaign": "spring-26", "channel_owner": "crm"},
        },
        headers=idem(admin),
    )
    assert created.status_code == 201, created.json
    assert created.json["metadata"] == {"campaign": "spring-26", "channel_owner": "crm"}
    code = f.shared(created.json["id"], "SPRING15")
    redeemed = redeem(client, pos, [code], metadata={"cart_id": "c-1", "lane": 4})
    assert redeemed.json["redemptions"][0]["metadata"] == {"cart_id": "c-1", "lane": 4}
    redemption_id = redeemed.json["redemptions"][0]["id"]
    stored = client.get(f"/v1/coupons/redemptions/{redemption_id}", headers=pos)
    assert stored.json["metadata"] == {"cart_id": "c-1", "lane": 4}
    changed = client.patch(
        f"/v1/coupons/offers/{created.json['id']}",
        json={"metadata": {"campaign": "spring-26b"}},
        headers=idem(admin),
    )
    assert changed.json["metadata"] == {"campaign": "spring-26b"}
    assert changed.json["version"] == 1  # metadata isn't a term


def test_a_percent_offer_comes_back_in_percent_without_free_item_fields(client, admin):
    created = client.post(
        "/v1/coupons/offers",
        json={"name": "15 off", "kind": "percent", "percent": 15, "currency": "EUR"},
        headers=idem(admin),
    )
    terms = created.json["terms"]
    assert (terms["percent"], terms["percent_bp"]) == (15, 1500)
    assert "free_quantity" not in terms and "free_sku" not in terms
    half = client.post(
        "/v1/coupons/offers",
        json={"name": "12.5 off", "kind": "percent", "percent_bp": 1250, "currency": "EUR"},
        headers=idem(admin),
    )
    assert half.json["terms"]["percent"] == 12.5
    versions = client.get(f"/v1/coupons/offers/{half.json['id']}/versions", headers=admin)
    assert versions.json["items"][0]["terms"]["percent"] == 12.5
    free = client.post(
        "/v1/coupons/offers",
        json={"name": "Socks", "kind": "free_item", "free_sku": "SOCK-1", "currency": "EUR"},
        headers=idem(admin),
    )
    assert free.json["terms"]["free_quantity"] == 1 and "percent" not in free.json["terms"]


def test_a_prefix_is_kept_or_refused_never_silently_changed(client, admin):
    offer = f.offer()
    url = f"/v1/coupons/offers/{offer.id}/batches"
    refused = client.post(url, json={"count": 2, "prefix": "WS-"}, headers=idem(admin))
    assert refused.status_code == 422
    assert list(error_fields(refused.json)) == ["prefix"]
    kept = client.post(url, json={"count": 2, "prefix": "WS"}, headers=idem(admin))
    assert kept.status_code == 201 and kept.json["prefix"] == "WS"


def test_max_uses_is_one_name_and_max_uses_per_code_its_deprecated_alias(app, client, admin):
    offer = f.offer()
    url = f"/v1/coupons/offers/{offer.id}/batches"
    new = client.post(url, json={"count": 1, "max_uses": 3}, headers=idem(admin))
    old = client.post(url, json={"count": 1, "max_uses_per_code": 3}, headers=idem(admin))
    default = client.post(url, json={"count": 1}, headers=idem(admin))
    assert (new.json["max_uses"], old.json["max_uses"], default.json["max_uses"]) == (3, 3, 1)
    assert old.json["max_uses_per_code"] == 3
    both = client.post(
        url, json={"count": 1, "max_uses": 3, "max_uses_per_code": 4}, headers=idem(admin)
    )
    assert both.status_code == 422 and "max_uses" in error_fields(both.json)
    imported = client.post(
        f"/v1/coupons/offers/{offer.id}/imports",
        json={"codes": ["IMPORTED0001"], "max_uses": 2},
        headers=idem(admin),
    )
    assert imported.json["batch"]["max_uses"] == 2
    unlimited = client.post(url, json={"count": 1, "max_uses": None}, headers=idem(admin))
    assert unlimited.json["max_uses"] is None

    # The CLI's --max-uses takes what the API's max_uses takes, `unlimited` for its null.
    for given, expected in (("3", 3), ("unlimited", None)):
        made = app.test_cli_runner().invoke(
            args=["coupons", "generate", "--offer", str(offer.id), "--count", "1",
                  "--max-uses", given]
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        batch_id = made.output.split()[1].rstrip(":")
        batch = client.get(f"/v1/coupons/batches/{batch_id}", headers=admin).json
        assert batch["max_uses"] == expected
    refused = app.test_cli_runner().invoke(
        args=["coupons", "generate", "--offer", str(offer.id), "--count", "1", "--max-uses", "0"]
    )
    assert refused.exit_code == 2


def test_one_batch_size_limit_for_the_api_and_the_cli_larger_batches_made_in_the_background(
    app, client, admin, monkeypatch
):
    from loyalty.queue import get_queue, make_worker

    offer = f.offer()
    url = f"/v1/coupons/offers/{offer.id}/batches"
    too_many = client.post(url, json={"count": MAX_BATCH + 1}, headers=idem(admin))
    assert too_many.status_code == 422 and "count" in error_fields(too_many.json)
    refused = app.test_cli_runner().invoke(
        args=["coupons", "generate", "--offer", str(offer.id), "--count", str(MAX_BATCH + 1)]
    )
    assert refused.exit_code == 2 and f"{MAX_BATCH}" in refused.output

    monkeypatch.setattr("loyalty.coupons.api.MAX_BATCH_AT_ONCE", 100)  # instead of 200,000
    at_once = client.post(url, json={"count": 100}, headers=idem(admin))
    assert at_once.status_code == 201, at_once.json
    assert (at_once.json["status"], at_once.json["created_count"]) == ("done", 100)

    body = {"count": 250, "prefix": "BIG", "suffix": "X", "max_uses": 2}
    headers = idem(admin)
    started = client.post(url, json=body, headers=headers)
    assert started.status_code == 202, started.json
    assert (started.json["status"], started.json["created_count"]) == ("running", 0)
    again = client.post(url, json=body, headers=headers)
    assert (again.status_code, again.json) == (202, started.json)
    assert get_queue("default").count == 1  # one job, not one per retry

    db.session.remove()
    make_worker(app, ("default",)).work(burst=True)
    batch_url = f"/v1/coupons/batches/{started.json['id']}"
    done = client.get(batch_url, headers=admin).json
    assert (done["status"], done["created_count"], done["max_uses"]) == ("done", 250, 2)
    codes = client.get(f"{batch_url}/codes.csv", headers=admin).get_data(as_text=True)
    rows = codes.splitlines()[1:]
    assert len(rows) == 250 and all(
        r.startswith("BIG") and r.split(",")[0].endswith("X") for r in rows
    )


def test_a_basket_line_that_validates_can_be_posted_as_an_order(client, make):
    make.store("S1")
    key = make.api_key(store_id="S1")
    code = f.shared(f.offer().id, "LIMITS")
    line = {"sku": "X", "category": "c", "quantity": 1, "unit_price_minor": MAX_UNIT_PRICE + 1}
    validate = client.post("/v1/coupons/validate", json=f.body([code], lines=[line]), headers=key)
    order = client.post(
        "/v1/orders",
        json={
            "order_id": "LIM-1",
            "channel": "store",
            "store_id": "S1",
            "currency": "EUR",
            "member": {"email": "lim@example.com"},
            "lines": [{"sku": "X", "quantity": 1, "unit_price_minor": MAX_UNIT_PRICE + 1}],
        },
        headers=idem(key),
    )
    assert validate.status_code == order.status_code == 422
    assert "lines.0.unit_price_minor" in error_fields(validate.json)
    assert "lines.0.unit_price_minor" in error_fields(order.json)
