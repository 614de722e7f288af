"""Support's member tools and the member's own profile."""

from __future__ import annotations

import pytest

from loyalty.auth import scopes
from loyalty.db import db
from loyalty.errors import MemberNotActive
from loyalty.ledger import operations as ledger
from loyalty.members.models import Member
from loyalty.outbox import OutboxEvent
from tests.factories import error_fields, idem
from tests.members.factories import PROBLEM, topics


@pytest.fixture
def admin(make):
    return make.api_key(scopes.ADMIN)


def test_support_reads_a_member_with_identities(client, make, admin):
    member = make.member(phone="+4915112345678", email="max@example.de", name="Max")
    response = client.get(f"/v1/members/{member.id}", headers=admin)
    assert response.status_code == 200
    assert response.json["name"] == "Max" and response.json["status"] == "active"
    assert [i["kind"] for i in response.json["identities"]] == ["email", "phone"]
    assert client.get("/v1/members/999999", headers=admin).status_code == 404


def test_support_changes_the_profile_and_an_event_names_the_fields(client, make, admin):
    make.store("PAR-01")
    member = make.member(name="Old")
    changes = {
        "name": "Ünïcode Näme",
        "birthday": "1990-02-03",
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "home_store_id": "PAR-01",
        "region": "north",
        "attributes": {"vip": True, "size": "M", "kids": 2},
    }
    response = client.patch(f"/v1/members/{member.id}", json=changes, headers=idem(admin))
    assert response.status_code == 200, response.json
    assert {k: response.json[k] for k in changes} == changes
    event = db.session.query(OutboxEvent).filter_by(topic="member.updated").one()
    assert event.payload["fields"] == sorted(changes)
    assert "Ünïcode" not in str(event.payload)  # events carry no personal data
    cleared = client.patch(f"/v1/members/{member.id}", json={"name": None}, headers=idem(admin))
    assert cleared.json["name"] is None


def test_profile_input_is_checked_field_by_field(client, make, admin):
    member = make.member()
    for body, field in [
        ({"status": "active"}, "status"),
        ({"tier_id": 1}, "tier_id"),
        ({"name": "tab\tinside"}, "name"),
        ({"name": ""}, "name"),
        ({"birthday": "2999-01-01"}, "birthday"),
        ({"locale": "english please"}, "locale"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"home_store_id": "NOPE"}, "home_store_id"),
        ({"attributes": {"x": {"nested": 1}}}, "attributes"),
        ({"attributes": {"x": "a\x1bb"}}, "attributes"),
    ]:
        response = client.patch(f"/v1/members/{member.id}", json=body, headers=idem(admin))
        assert response.status_code == 422 and response.mimetype == PROBLEM, body
        assert field in error_fields(response.json), (body, response.json)
    assert topics(member.id) == ["member.enrolled"]


def test_support_adds_and_removes_identities_but_never_the_last_one(client, make, admin):
    member = make.member(email="one@example.com")
    added = client.post(
        f"/v1/members/{member.id}/identities",
        json={"kind": "phone", "value": "06 12 34 56 78", "default_region": "FR"},
        headers=idem(admin),
    )
    assert added.status_code == 201 and added.json["value"] == "+33612345678"
    removed = client.delete(f"/v1/members/{member.id}/identities/email", headers=idem(admin))
    assert removed.status_code == 200
    assert [i["kind"] for i in removed.json["identities"]] == ["phone"]
    last = client.delete(f"/v1/members/{member.id}/identities/phone", headers=idem(admin))
    assert last.status_code == 409 and last.mimetype == PROBLEM
    missing = client.delete(f"/v1/members/{member.id}/identities/card", headers=idem(admin))
    assert missing.status_code == 404
    odd = client.delete(f"/v1/members/{member.id}/identities/fax", headers=idem(admin))
    assert odd.status_code == 422
    assert topics(member.id).count("member.updated") == 2


def test_an_identity_of_another_member_cannot_be_added(client, make, admin):
    make.member(email="taken@example.com")
    member = make.member()
    response = client.post(
        f"/v1/members/{member.id}/identities",
        json={"kind": "email", "value": "TAKEN@example.com"},
        headers=idem(admin),
    )
    assert response.status_code == 409 and response.json["type"].endswith("identity-taken")
    bad = client.post(
        f"/v1/members/{member.id}/identities",
        json={"kind": "email", "value": "nope"},
        headers=idem(admin),
    )
    assert bad.status_code == 422 and "email" in error_fields(bad.json)


def test_blocking_stops_earning_until_unblocked(client, make, admin):
    member = make.member(points=10)
    blocked = client.post(
        f"/v1/members/{member.id}/block", json={"reason": "fraud check"}, headers=idem(admin)
    )
    assert blocked.status_code == 200 and blocked.json["status"] == "blocked"
    with pytest.raises(MemberNotActive):
        ledger.earn_points(
            member.id, 5, ledger.Cause("test", "x"), now=member.created_at, actor="test"
        )
    db.session.rollback()
    assert (
        client.post(f"/v1/members/{member.id}/block", json={}, headers=idem(admin)).status_code
        == 422
    )
    unblocked = client.post(f"/v1/members/{member.id}/unblock", headers=idem(admin))
    assert unblocked.json["status"] == "active"
    assert topics(member.id)[-2:] == ["member.blocked", "member.unblocked"]


def test_support_searches_by_any_identity(client, make, admin):
    member = make.member(phone="+33612345678", email="find@example.com")
    for query in (
        "phone=%2B33612345678",
        "phone=0612345678&default_region=FR",
        "email=FIND@example.com",
    ):
        response = client.get(f"/v1/members/search?{query}", headers=admin)
        assert response.status_code == 200, response.json
        assert [m["id"] for m in response.json["items"]] == [member.id]
    nobody = client.get("/v1/members/search?card=NOBODY123", headers=admin)
    assert nobody.json == {"items": [], "next_cursor": None}
    assert client.get("/v1/members/search", headers=admin).status_code == 422
    assert (
        client.get("/v1/members/search?email=a@b.fr&card=ABC123", headers=admin).status_code == 422
    )
    assert client.get("/v1/members/search?phone=12", headers=admin).status_code == 422


def test_support_endpoints_need_the_admin_scope(client, make):
    member = make.member()
    pos = make.api_key(*scopes.POS)
    token = make.member_token(member.id)
    calls = [
        ("GET", f"/v1/members/{member.id}", None),
        ("PATCH", f"/v1/members/{member.id}", {"name": "x"}),
        ("POST", f"/v1/members/{member.id}/identities", {"kind": "card", "value": "ABC123"}),
        ("DELETE", f"/v1/members/{member.id}/identities/email", None),
        ("POST", f"/v1/members/{member.id}/block", {"reason": "x"}),
        ("POST", f"/v1/members/{member.id}/unblock", None),
        ("GET", "/v1/members/search?card=ABC123", None),
        ("POST", f"/v1/members/{member.id}/merge", {"merged_member_id": 2, "reason": "x"}),
        ("GET", f"/v1/members/{member.id}/export", None),
        ("POST", f"/v1/members/{member.id}/erase", None),
    ]
    for method, url, body in calls:
        assert client.open(url, method=method, json=body).status_code == 401, url
        for headers in (pos, token):
            response = client.open(url, method=method, json=body, headers=idem(headers))
            assert response.status_code == 403 and response.mimetype == PROBLEM, url
    assert db.session.get(Member, member.id).name is None


# --- the member's own profile ---------------------------------------------------------------


def test_a_member_reads_and_changes_their_own_profile(client, make):
    make.store("PAR-01")
    member = make.member(email="me@example.com")
    token = make.member_token(member.id)
    mine = client.get("/v1/me/profile", headers=token)
    assert mine.status_code == 200 and mine.json["id"] == member.id
    assert mine.json["identities"][0]["value"] == "me@example.com"
    changed = client.patch(
        "/v1/me/profile",
        json={"name": "Me Myself", "birthday": "1985-05-05", "home_store_id": "PAR-01"},
        headers=idem(token),
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["name"] == "Me Myself" and changed.json["birthday"] == "1985-05-05"
    assert "member.updated" in topics(member.id)


def test_a_member_cannot_change_status_tier_region_attributes_or_reset_the_birthday(client, make):
    member = make.member(birthday=None)
    token = make.member_token(member.id)
    for body in (
        {"status": "active"},
        {"tier": "gold"},
        {"tier_id": 3},
        {"region": "x"},
        {"attributes": {"vip": True}},
        {"id": 7},
    ):
        response = client.patch("/v1/me/profile", json=body, headers=idem(token))
        assert response.status_code == 422 and response.mimetype == PROBLEM, body
    client.patch("/v1/me/profile", json={"birthday": "1990-01-01"}, headers=idem(token))
    again = client.patch("/v1/me/profile", json={"birthday": "1990-06-01"}, headers=idem(token))
    assert again.status_code == 422 and "birthday" in error_fields(again.json)


def test_a_member_token_only_ever_reaches_its_own_member(client, make):
    me = make.member(email="me@example.com")
    other = make.member(email="other@example.com", name="Other")
    token = make.member_token(me.id)
    assert "other@example.com" not in client.get("/v1/me/profile", headers=token).get_data(
        as_text=True
    )
    assert client.get(f"/v1/members/{other.id}", headers=token).status_code == 403
    response = client.patch(f"/v1/members/{other.id}", json={"name": "Hacked"}, headers=idem(token))
    assert response.status_code == 403
    assert db.session.get(Member, other.id).name == "Other"


def test_me_profile_needs_a_member_token(client, make):
    assert client.get("/v1/me/profile").status_code == 401
    api = make.api_key()
    assert client.get("/v1/me/profile", headers=api).status_code == 403
    assert client.patch("/v1/me/profile", json={"name": "x"}, headers=idem(api)).status_code == 403
