"""Integrators' own ids and data: the external id (`ext:<id>` in any member path, search,
orders), `metadata` returned as sent, `enrol: false`, one phone rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loyalty.db import db
from loyalty.members.models import Member
from tests.factories import error_fields, idem
from tests.members.factories import PROBLEM

pytestmark = pytest.mark.usefixtures("app")


def enrol(client, headers, **body):
    return client.post("/v1/members", json=body, headers=idem(headers))


def order(client, headers, order_id, member, **extra):
    body = {
        "order_id": order_id,
        "channel": "online",
        "currency": "EUR",
        "member": member,
        "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 1000}],
        **extra,
    }
    return client.post("/v1/orders", json=body, headers=idem(headers))


@pytest.fixture
def admin(make):
    return make.api_key()


@pytest.fixture
def program_region(app):
    original = app.extensions["omniloyal.settings"]

    def set_region(region):
        app.extensions["omniloyal.settings"] = replace(original, default_region=region)

    yield set_region
    app.extensions["omniloyal.settings"] = original


def test_a_member_enrolled_with_an_external_id_is_addressed_by_it_in_every_member_path(
    client, admin
):
    created = enrol(client, admin, identities={"email": "c1001@example.com"}, external_id="C-1001")
    assert created.status_code == 201, created.json
    member_id = created.json["member"]["id"]

    balance = client.get("/v1/members/ext:C-1001/balance", headers=admin)
    assert balance.status_code == 200, balance.json
    assert balance.json == client.get(f"/v1/members/{member_id}/balance", headers=admin).json
    profile = client.get("/v1/members/ext:C-1001", headers=admin)
    assert profile.json["id"] == member_id and profile.json["external_id"] == "C-1001"
    assert client.get("/v1/members/ext:C-1001/ledger", headers=admin).status_code == 200
    assert client.get("/v1/members/ext:C-1001/coupons", headers=admin).status_code == 200

    found = client.get("/v1/members/search?external_id=C-1001", headers=admin)
    assert [m["id"] for m in found.json["items"]] == [member_id]
    nobody = client.get("/v1/members/search?external_id=C-9999", headers=admin)
    assert nobody.status_code == 200 and nobody.json["items"] == []


def test_an_unknown_external_id_in_a_path_is_member_not_found_and_needs_credentials(client, admin):
    unknown = client.get("/v1/members/ext:NOPE/balance", headers=admin)
    assert unknown.status_code == 404
    assert unknown.content_type == PROBLEM
    assert unknown.json["type"] == "/problems/member-not-found"
    # Without credentials nothing is looked up: the answer is the 401.
    assert client.get("/v1/members/ext:NOPE/balance").status_code == 401


def test_the_external_id_is_unique_in_the_program(client, admin):
    first = enrol(client, admin, identities={"email": "one@example.com"}, external_id="C-1")
    two = enrol(client, admin, identities={"email": "two@example.com"})
    clash = enrol(client, admin, identities={"email": "two@example.com"}, external_id="C-1")
    assert clash.status_code == 409  # the id and the email name two people
    assert clash.json["type"] == "/problems/external-id-taken"
    # The id alone finds its member, like any one identity does.
    found = enrol(client, admin, identities={"email": "three@example.com"}, external_id="C-1")
    assert found.status_code == 200
    assert found.json["member"]["id"] == first.json["member"]["id"] != two.json["member"]["id"]
    other = enrol(client, admin, identities={"email": "two@example.com"})
    taken = client.patch(
        f"/v1/members/{other.json['member']['id']}",
        json={"external_id": "C-1"},
        headers=idem(admin),
    )
    assert taken.status_code == 409 and taken.json["type"] == "/problems/external-id-taken"


def test_enrolling_by_external_id_finds_the_member_and_links_an_unlinked_one(client, admin):
    first = enrol(client, admin, identities={"email": "a@example.com"})
    linked = enrol(client, admin, identities={"email": "a@example.com"}, external_id="C-7")
    assert linked.status_code == 200 and linked.json["member"]["id"] == first.json["member"]["id"]
    assert db.session.get(Member, first.json["member"]["id"]).external_id == "C-7"
    other = enrol(client, admin, identities={"email": "b@example.com"}, external_id="C-8")
    again = enrol(client, admin, identities={"email": "b@example.com"}, external_id="C-7")
    assert again.status_code == 409  # that member has another id already
    assert other.json["member"]["id"] != first.json["member"]["id"]


def test_update_sets_and_clears_the_external_id_and_metadata(client, admin):
    member_id = enrol(client, admin, identities={"email": "m@example.com"}).json["member"]["id"]
    metadata = {"crm_segment": "vip", "score": 12.5, "opt": True, "none": None, "ünï": "ç"}
    changed = client.patch(
        f"/v1/members/{member_id}",
        json={"external_id": "CRM-42", "metadata": metadata},
        headers=idem(admin),
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["external_id"] == "CRM-42"
    assert changed.json["metadata"] == metadata
    assert list(changed.json["metadata"]) == list(metadata)  # the order as sent
    read = client.get("/v1/members/ext:CRM-42", headers=admin)
    assert read.json["metadata"] == metadata
    cleared = client.patch(
        "/v1/members/ext:CRM-42", json={"external_id": None}, headers=idem(admin)
    )
    assert cleared.json["external_id"] is None


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({f"k{i}": i for i in range(51)}, "at most 50 keys"),
        ({"k" * 41: 1}, "keys are 1-40 characters"),
        ({"nested": {"a": 1}}, "values are text, numbers"),
        ({"list": [1]}, "values are text, numbers"),
        ({f"k{i}": "x" * 400 for i in range(30)}, "bytes as JSON"),
    ],
)
def test_too_big_or_nested_metadata_is_a_422_naming_the_field(client, admin, metadata, message):
    refused = enrol(
        client, admin, identities={"email": "x@example.com"}, profile={"metadata": metadata}
    )
    assert refused.status_code == 422
    fields = error_fields(refused.json)
    assert list(fields) == ["profile.metadata"], fields
    assert message in fields["profile.metadata"][0]


def test_an_order_names_its_member_by_external_id_and_keeps_its_metadata(client, admin):
    member_id = enrol(
        client, admin, identities={"email": "o@example.com"}, external_id="C-55"
    ).json["member"]["id"]
    posted = order(
        client, admin, "O-1", {"external_id": "C-55"}, metadata={"basket_id": "b-9", "n": 3}
    )
    assert posted.status_code == 201, posted.json
    assert posted.json["member_id"] == member_id
    assert posted.json["metadata"] == {"basket_id": "b-9", "n": 3}
    stored = client.get("/v1/orders/O-1", headers=admin)
    assert stored.json["metadata"] == {"basket_id": "b-9", "n": 3}
    unknown = order(client, admin, "O-2", {"external_id": "C-56"})
    assert unknown.status_code == 404 and unknown.json["type"] == "/problems/member-not-found"


def test_enrol_false_refuses_an_unknown_member_instead_of_creating_one(client, admin):
    members_before = db.session.query(Member).count()
    refused = order(client, admin, "O-typo", {"email": "typo@exmaple.com", "enrol": False})
    assert refused.status_code == 404
    assert refused.json["type"] == "/problems/member-not-found"
    assert db.session.query(Member).count() == members_before
    # The default is still enrol-on-first-order.
    enrolled = order(client, admin, "O-new", {"email": "new@example.com"})
    assert enrolled.status_code == 201 and enrolled.json["member_enrolled"] is True
    known = order(client, admin, "O-known", {"email": "new@example.com", "enrol": False})
    assert known.status_code == 201 and known.json["member_id"] == enrolled.json["member_id"]


def test_identify_of_an_unknown_member_is_member_not_found(client, admin):
    missing = client.post("/v1/members/identify", json={"email": "no@example.com"}, headers=admin)
    assert missing.status_code == 404
    assert missing.json["type"] == "/problems/member-not-found"


def test_a_national_phone_number_is_the_same_member_in_identify_and_in_an_order(client, make):
    store = make.store("LYON-1")
    store.country = "FR"
    db.session.commit()
    till = make.api_key(store_id="LYON-1")
    posted = order(
        client, till, "T-1", {"phone": "06 12 34 56 78"}, channel="store", store_id="LYON-1"
    )
    assert posted.status_code == 201, posted.json
    found = client.post("/v1/members/identify", json={"phone": "06 12 34 56 78"}, headers=till)
    assert found.status_code == 200 and found.json["member"]["id"] == posted.json["member_id"]
    member = db.session.get(Member, posted.json["member_id"])
    assert [i.value for i in member.identities] == ["+33612345678"]


def test_without_a_store_national_numbers_use_the_programs_region(client, admin, program_region):
    refused = order(client, admin, "P-1", {"phone": "0612345678"})
    assert refused.status_code == 422  # no region anywhere: which country is it?
    program_region("FR")
    posted = order(client, admin, "P-1", {"phone": "0612345678"})
    assert posted.status_code == 201, posted.json
    same = client.get("/v1/members/search?phone=%2B33612345678", headers=admin)
    assert [m["id"] for m in same.json["items"]] == [posted.json["member_id"]]


def test_a_merge_moves_the_external_id_to_the_survivor_and_erasure_blanks_it(client, admin):
    survivor = enrol(client, admin, identities={"email": "s@example.com"}).json["member"]["id"]
    merged = enrol(client, admin, identities={"email": "d@example.com"}, external_id="DUP-1").json[
        "member"
    ]["id"]
    merge = client.post(
        f"/v1/members/{survivor}/merge",
        json={"merged_member_id": merged, "reason": "duplicate"},
        headers=idem(admin),
    )
    assert merge.status_code == 200, merge.json
    assert merge.json["summary"]["external_id"] == "moved"
    assert client.get("/v1/members/ext:DUP-1", headers=admin).json["id"] == survivor

    erased = client.post("/v1/members/ext:DUP-1/erase", headers=idem(admin))
    assert erased.status_code == 200, erased.json
    person = db.session.get(Member, survivor)
    db.session.refresh(person)
    assert person.external_id is None and person.extra is None
    assert client.get("/v1/members/ext:DUP-1", headers=admin).status_code == 404


def test_when_both_have_external_ids_the_survivor_keeps_its_own_and_both_find_it(client, admin):
    survivor = enrol(
        client, admin, identities={"email": "s2@example.com"}, external_id="KEEP"
    ).json["member"]["id"]
    merged = enrol(client, admin, identities={"email": "d2@example.com"}, external_id="OLD").json[
        "member"
    ]["id"]
    merge = client.post(
        "/v1/members/ext:KEEP/merge",
        json={"merged_member_id": merged, "reason": "duplicate"},
        headers=idem(admin),
    )
    assert merge.json["summary"]["external_id"] == "kept_both"
    assert client.get("/v1/members/ext:KEEP", headers=admin).json["id"] == survivor
    assert client.get("/v1/members/ext:OLD", headers=admin).json["id"] == survivor
    assert (
        client.get("/v1/members/search?external_id=OLD", headers=admin).json["items"][0]["id"]
        == survivor
    )


def test_erasure_blanks_the_metadata_of_the_members_orders_and_redemptions(client, admin):
    from loyalty.coupons.models import CouponRedemption
    from loyalty.earning.models import Order
    from tests.coupons import factories as coupons

    member_id = enrol(
        client, admin, identities={"email": "e@example.com"}, profile={"metadata": {"a": 1}}
    ).json["member"]["id"]
    order(client, admin, "E-1", {"member_id": member_id}, metadata={"note": "gift for Ann"})
    code = coupons.shared(coupons.offer().id, "ERASEME")
    redeemed = client.post(
        "/v1/coupons/redeem",
        json=coupons.body(
            [code], channel="online", order_ref="r-1", member_id=member_id, metadata={"x": "y"}
        ),
        headers=idem(admin),
    )
    assert redeemed.status_code == 201, redeemed.json
    erased = client.post(f"/v1/members/{member_id}/erase", headers=idem(admin))
    assert erased.status_code == 200, erased.json
    db.session.expire_all()
    assert db.session.get(Member, member_id).extra is None
    assert db.session.scalar(db.select(Order.extra)) is None
    assert db.session.scalar(db.select(CouponRedemption.extra)) is None


def test_request_bodies_name_a_member_by_external_id_too(client, admin):
    enrol(client, admin, identities={"email": "b1@example.com"}, external_id="B-1")
    survivor = enrol(client, admin, identities={"email": "b2@example.com"}, external_id="B-2")
    basket = {
        "codes": ["NOSUCHCODE"],
        "channel": "online",
        "currency": "EUR",
        "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 1000}],
    }

    unknown = client.post(
        "/v1/coupons/validate", json={**basket, "member_id": "ext:NOBODY"}, headers=admin
    )
    assert unknown.status_code == 422
    assert set(error_fields(unknown.json)) == {"member_id"}
    known = client.post(
        "/v1/coupons/validate", json={**basket, "member_id": "ext:B-1"}, headers=admin
    )
    assert known.status_code == 200, known.json

    merge = client.post(
        "/v1/members/ext:B-2/merge",
        json={"merged_member_id": "ext:B-1", "reason": "duplicate"},
        headers=idem(admin),
    )
    assert merge.status_code == 200, merge.json
    survivor_id = survivor.json["member"]["id"]
    assert client.get("/v1/members/ext:B-1", headers=admin).json["id"] == survivor_id


def _member_names(document):
    """Every place a request names a member: (where, name, schema)."""
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
                if parameter["name"] in ("member_id", "survivor_id"):
                    yield f"{method} {path}", parameter["name"], parameter["schema"]
            for content in operation.get("requestBody", {}).get("content", {}).values():
                schema = content["schema"]
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
                for name, field in schema.get("properties", {}).items():
                    if name in ("member_id", "member_ids") or name.endswith("_member_id"):
                        yield f"{method} {path}", name, field.get("items", field)


def test_every_member_a_request_names_may_be_named_by_external_id(app):
    document = app.test_client().get("/openapi.json").json
    names = list(_member_names(document))
    assert len(names) >= 30  # paths and bodies
    for where, name, schema in names:
        accepts_ext = "ext:" in schema.get("pattern", "") or "string" in schema.get("type", [])
        assert accepts_ext and "ext:" in schema["description"], (where, name, schema)


def test_member_tokens_coupon_issues_journeys_previews_and_referrals_take_external_ids(
    client, make, admin
):
    from tests.coupons import factories as coupons
    from tests.earning.factories import rule

    ada = enrol(client, admin, identities={"email": "ada@example.com"}, external_id="C-1")
    ada_id = ada.json["member"]["id"]
    bob = enrol(client, admin, identities={"email": "bob@example.com"}, external_id="C-2")
    bob_id = bob.json["member"]["id"]

    token = client.post("/v1/member-tokens", json={"member_id": "ext:C-1"}, headers=admin)
    assert token.status_code == 201, token.json
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {token.json['token']}"})
    assert me.json["member_id"] == ada_id

    offer = coupons.offer()
    issue = f"/v1/coupons/offers/{offer.id}/issue"
    unknown = client.post(
        issue, json={"member_ids": [bob_id, "ext:NOBODY", "ext:C-1"]}, headers=idem(admin)
    )
    assert unknown.status_code == 422
    assert set(error_fields(unknown.json)) == {"member_ids.1"}
    issued = client.post(issue, json={"member_ids": ["ext:C-1", bob_id]}, headers=idem(admin))
    assert issued.status_code == 201, issued.json
    assert [c["member_id"] for c in issued.json["items"]] == [ada_id, bob_id]

    journey = client.post(
        "/v1/journeys",
        json={"name": "Hi", "trigger": "manual", "steps": [{"type": "points", "points": 1}]},
        headers=idem(admin),
    ).json
    client.post(f"/v1/journeys/{journey['id']}/activate", headers=admin)
    entered = client.post(
        f"/v1/journeys/{journey['id']}/entries",
        json={"member_ids": ["ext:C-2"]},
        headers=idem(admin),
    )
    assert entered.status_code == 201, entered.json
    progress = client.get(f"/v1/journeys/{journey['id']}/members/ext:C-2", headers=admin)
    assert progress.status_code == 200 and progress.json["member_id"] == bob_id
    assert len(progress.json["entries"]) == 1

    preview = client.post(
        "/v1/notifications/templates/preview",
        json={"key": "points_earned", "channel": "email", "member_id": "ext:C-1",
              "variables": {"points": 5, "balance": 5}},
        headers=admin,
    )  # fmt: skip
    assert preview.status_code == 200, preview.json

    rule(name="referral", kind="event_bonus", activity_kind="referral", bonus_points=500)
    referral = client.post(
        "/v1/members/ext:C-1/activities",
        json={"kind": "referral", "referred_member_id": "ext:C-2"},
        headers=idem(admin),
    )
    assert referral.status_code == 201, referral.json
    assert referral.json["referred_member_id"] == bob_id and referral.json["points"] == 500
