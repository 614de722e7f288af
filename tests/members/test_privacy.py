"""Export everything about a member; erase personal data with the ledger intact."""

from __future__ import annotations

import json

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.ledger import queries
from loyalty.members import privacy
from loyalty.members.merge import merge_members
from loyalty.members.models import Member, MemberIdentity
from loyalty.members.privacy import erase_member, register_erase_step, register_export_section
from tests.factories import idem
from tests.ledger.invariants import assert_ledger_consistent
from tests.members.factories import PROBLEM, topics


@pytest.fixture
def admin(make):
    return make.api_key(scopes.ADMIN)


def test_export_holds_profile_identities_ledger_lots_holds_and_merges(client, make, admin):
    member = make.member(email="me@example.com", phone="+33612345678", points=80, name="Léa")
    duplicate = make.member(email="old@example.com", points=20, name="Léa old")
    merge_members(member.id, duplicate.id, reason="dup", now=utcnow(), actor="support")
    ledger.hold_points(
        member.id, 10, now=utcnow(), ttl_seconds=60, reference="cart", client_id=None, store_id=None
    )
    db.session.commit()
    response = client.get(f"/v1/members/{member.id}/export", headers=admin)
    assert response.status_code == 200
    data = response.json
    assert data["member"]["name"] == "Léa"
    assert {i["value"] for i in data["identities"]} == {
        "me@example.com",
        "+33612345678",
        "old@example.com",
    }
    assert [m["name"] for m in data["merged_members"]] == ["Léa old"]
    assert {tx["kind"] for tx in data["ledger_transactions"]} == {"earn", "merge"}
    assert sum(lot["remaining"] for lot in data["point_lots"]) == 100
    assert [h["reference"] for h in data["point_holds"]] == ["cart"]
    assert [m["merged_id"] for m in data["merges"]] == [duplicate.id]
    assert data["balance"]["available"] == 90
    # the merged id exports the same person
    assert (
        client.get(f"/v1/members/{duplicate.id}/export", headers=admin).json["member"]["id"]
        == member.id
    )


def test_other_domains_add_export_sections_and_erase_steps(make, monkeypatch):
    monkeypatch.setattr(privacy, "_export_sections", {})
    monkeypatch.setattr(privacy, "_erase_steps", {})
    register_export_section("coupons", lambda member_id: [{"code": "X", "member": member_id}])
    seen = []
    register_erase_step("coupons", lambda member_id, now: seen.append(member_id) or {"n": 1})
    member = make.member()
    exported = privacy.export_member(member.id, now=utcnow())
    assert exported["sections"] == {"coupons": [{"code": "X", "member": member.id}]}
    json.dumps(exported)  # JSON-able as it is
    summary = erase_member(member.id, now=utcnow(), actor="test")
    assert seen == [member.id] and summary["coupons"] == {"n": 1}


def test_erasure_removes_personal_data_and_keeps_the_ledger_totals(client, make, admin):
    member = make.member(
        email="gone@example.com",
        phone="+33612345678",
        points=300,
        name="Forget Me",
        birthday=None,
        attributes={"vip": True},
    )
    duplicate = make.member(email="gone-too@example.com", points=50, name="Old Me")
    make.earn(member.id, 40, pending_days=10)
    merge_members(member.id, duplicate.id, reason="dup", now=utcnow(), actor="support")
    ledger.burn_points(member.id, 30, ledger.Cause("order", "o1"), now=utcnow(), actor="t")
    other = make.member(points=7)
    db.session.commit()
    before = queries.liability(utcnow())
    balance_before = ledger.member_balance(member.id)

    response = client.post(f"/v1/members/{member.id}/erase", headers=idem(admin))
    assert response.status_code == 200, response.json
    db.session.expire_all()
    for person in (db.session.get(Member, member.id), db.session.get(Member, duplicate.id)):
        assert person.name is None and person.birthday is None and person.attributes == {}
        assert person.erased_at is not None
    erased = db.session.get(Member, member.id)
    assert erased.status == "erased"
    assert (
        db.session.query(MemberIdentity)
        .filter(MemberIdentity.member_id.in_([member.id, duplicate.id]))
        .count()
        == 0
    )
    after = queries.liability(utcnow())
    assert {k: after[k] for k in ("outstanding", "pending", "debt", "by_expiry_month")} == {
        k: before[k] for k in ("outstanding", "pending", "debt", "by_expiry_month")
    }
    assert ledger.member_balance(member.id) == balance_before
    assert ledger.member_balance(other.id).balance == 7
    assert_ledger_consistent()
    assert topics(member.id)[-1] == "member.erased"
    assert "Forget" not in json.dumps(response.json)


def test_an_erased_members_phone_and_email_can_enrol_again(client, make, admin):
    member = make.member(email="again@example.com", phone="+33612345678")
    client.post(f"/v1/members/{member.id}/erase", headers=idem(admin))
    pos = make.api_key(scopes.MEMBERS_WRITE, scopes.MEMBERS_READ)
    identify = client.post("/v1/members/identify", json={"email": "again@example.com"}, headers=pos)
    assert identify.status_code == 404
    enrolled = client.post(
        "/v1/members",
        json={"identities": {"email": "again@example.com", "phone": "+33612345678"}},
        headers=idem(pos),
    )
    assert enrolled.status_code == 201 and enrolled.json["member"]["id"] != member.id


def test_an_erased_member_cannot_be_erased_changed_or_merged_again(client, make, admin):
    member, other = make.member(), make.member()
    client.post(f"/v1/members/{member.id}/erase", headers=idem(admin))
    for method, url, body in [
        ("POST", f"/v1/members/{member.id}/erase", None),
        ("PATCH", f"/v1/members/{member.id}", {"name": "Back"}),
        ("POST", f"/v1/members/{member.id}/block", {"reason": "x"}),
        ("POST", f"/v1/members/{other.id}/merge", {"merged_member_id": member.id, "reason": "x"}),
        ("POST", f"/v1/members/{member.id}/merge", {"merged_member_id": other.id, "reason": "x"}),
    ]:
        response = client.open(url, method=method, json=body, headers=idem(admin))
        assert response.status_code == 409 and response.mimetype == PROBLEM, url
    token = make.member_token(member.id)  # an erased member's token doesn't authenticate
    assert (
        client.patch("/v1/me/profile", json={"name": "x"}, headers=idem(token)).status_code == 401
    )


def test_privacy_endpoints_answer_404_for_unknown_members(client, admin):
    assert client.get("/v1/members/424242/export", headers=admin).status_code == 404
    assert client.post("/v1/members/424242/erase", headers=idem(admin)).status_code == 404
