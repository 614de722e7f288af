"""Enrol anywhere (POS, web shop) and identify at the till."""

from __future__ import annotations

import time

from itsdangerous.timed import TimestampSigner

from loyalty.auth import scopes
from loyalty.auth.tokens import mint_member_qr
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.models import Member
from tests.factories import error_fields, idem
from tests.members.factories import PROBLEM, make_tier, topics


def enrol(client, headers, **body):
    return client.post("/v1/members", json=body, headers=idem(headers))


def test_enrolling_a_new_person_creates_a_member_with_its_profile(client, make):
    make.store("PAR-01")
    pos = make.api_key(scopes.MEMBERS_WRITE)
    response = enrol(
        client,
        pos,
        identities={"phone": "+33 6 12 34 56 78", "email": "A@B.FR"},
        profile={"name": "Zoé Ñandú 🌟", "locale": "fr-FR", "timezone": "Europe/Paris"},
        channel="store",
        store_id="PAR-01",
    )
    assert response.status_code == 201, response.json
    assert response.json["created"] is True
    assert response.json["member"]["masked_name"] == "Z*** Ñ*** 🌟***"
    member = db.session.get(Member, response.json["member"]["id"])
    assert member.name == "Zoé Ñandú 🌟" and member.timezone == "Europe/Paris"
    assert member.enrolled_store_id == "PAR-01" and member.home_store_id == "PAR-01"
    assert {(i.kind, i.value) for i in member.identities} == {
        ("phone", "+33612345678"),
        ("email", "a@b.fr"),
    }
    assert topics(member.id) == ["member.enrolled"]


def test_enrolling_a_known_identity_finds_the_member_and_leaves_its_profile(client, make):
    pos = make.api_key(scopes.MEMBERS_WRITE)
    first = enrol(client, pos, identities={"email": "jo@example.com"}, profile={"name": "Jo"})
    again = enrol(
        client,
        pos,
        identities={"email": " JO@example.com ", "card": "CARD1234"},
        profile={"name": "Somebody Else"},
    )
    assert again.status_code == 200
    assert again.json == {"created": False, "member": first.json["member"]}
    assert db.session.get(Member, first.json["member"]["id"]).name == "Jo"


def test_phone_numbers_without_country_code_use_default_region_or_the_stores_country(client, make):
    store = make.store("BER-01")
    store.country = "DE"
    db.session.commit()
    plain = make.api_key(scopes.MEMBERS_WRITE)
    no_region = enrol(client, plain, identities={"phone": "030 12345678"})
    assert no_region.status_code == 422
    assert "phone" in error_fields(no_region.json)
    given = enrol(client, plain, identities={"phone": "06 12 34 56 78"}, default_region="FR")
    assert given.status_code == 201
    store_key = make.api_key(scopes.MEMBERS_WRITE, store_id="BER-01")
    by_store = enrol(client, store_key, identities={"phone": "030 12345678"}, channel="store")
    assert by_store.status_code == 201, by_store.json
    member = db.session.get(Member, by_store.json["member"]["id"])
    assert member.identities[0].value == "+493012345678"
    assert member.enrolled_store_id == "BER-01"


def test_a_store_key_enrols_only_for_its_own_store(client, make):
    make.store("OWN")
    make.store("OTHER")
    key = make.api_key(scopes.MEMBERS_WRITE, store_id="OWN")
    response = enrol(client, key, identities={"email": "x@y.fr"}, store_id="OTHER")
    assert response.status_code == 403 and response.mimetype == PROBLEM


def test_enrolment_input_is_checked_field_by_field(client, make):
    pos = make.api_key(scopes.MEMBERS_WRITE)
    cases = [
        ({"identities": {"phone": "+33 1"}}, "phone"),
        ({"identities": {"email": "not-an-email"}}, "email"),
        ({"identities": {}}, "identities"),
        ({"identities": {"email": "a@b.fr"}, "nickname": "x"}, "nickname"),
        ({"identities": {"email": "a@b.fr"}, "profile": {"name": "Bad\u0000Name"}}, "profile"),
        ({"identities": {"email": "a@b.fr"}, "profile": {"status": "vip"}}, "profile"),
        ({"identities": {"email": "a@b.fr"}, "profile": {"timezone": "Nowhere"}}, "profile"),
        ({"identities": {"email": "a@b.fr"}, "channel": "fax"}, "channel"),
        ({"identities": {"email": "a@b.fr"}, "channel": "store"}, "store_id"),
        ({"identities": {"email": "a@b.fr"}, "store_id": "NOPE"}, "store_id"),
        (
            {"identities": {"email": "a@b.fr"}, "profile": {"home_store_id": "NOPE"}},
            "home_store_id",
        ),
        ({"identities": {"email": "a@b.fr"}, "default_region": "France"}, "default_region"),
    ]
    for body, field in cases:
        response = client.post("/v1/members", json=body, headers=idem(pos))
        assert response.status_code == 422, (body, response.json)
        assert response.mimetype == PROBLEM
        named = error_fields(response.json)
        assert any(path.split(".")[0] == field for path in named), (body, response.json)
    assert db.session.query(Member).count() == 0


def test_enrolment_needs_members_write_and_an_idempotency_key(client, make):
    body = {"identities": {"email": "a@b.fr"}}
    assert client.post("/v1/members", json=body).status_code == 401
    read_only = make.api_key(scopes.MEMBERS_READ)
    assert client.post("/v1/members", json=body, headers=idem(read_only)).status_code == 403
    writer = make.api_key(scopes.MEMBERS_WRITE)
    assert client.post("/v1/members", json=body, headers=writer).status_code == 428
    token = make.member_token(make.member().id)
    assert client.post("/v1/members", json=body, headers=idem(token)).status_code == 403


def test_a_retried_enrolment_replays_the_first_answer(client, make):
    pos = make.api_key(scopes.MEMBERS_WRITE)
    headers = idem(pos, "same-key")
    first = client.post("/v1/members", json={"identities": {"card": "ABC123"}}, headers=headers)
    second = client.post("/v1/members", json={"identities": {"card": "ABC123"}}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert db.session.query(Member).count() == 1


# --- identify -------------------------------------------------------------------------------


def test_the_till_identifies_a_member_by_any_identity_with_balance_and_tier(client, make):
    gold = make_tier("gold", 2)
    member = make.member(
        phone="+33612345678", email="ana@example.com", points=120, name="Ana Lopez"
    )
    member = db.session.get(Member, member.id)
    member.tier_id = gold.id
    db.session.commit()
    pos = make.api_key(scopes.MEMBERS_READ)
    for body in (
        {"phone": "06 12 34 56 78", "default_region": "FR"},
        {"email": "ANA@example.com"},
        {"qr_token": mint_member_qr(member.id, now=utcnow()).token},
    ):
        response = client.post("/v1/members/identify", json=body, headers=pos)
        assert response.status_code == 200, (body, response.json)
        assert response.json["member"] == {
            "id": member.id,
            "masked_name": "A*** L***",
            "tier": "gold",
            "status": "active",
        }
        assert response.json["balance"]["available"] == 120


def test_identify_says_nothing_about_other_identities(client, make):
    make.member(phone="+33612345678", email="ana@example.com", name="Ana")
    pos = make.api_key(scopes.MEMBERS_READ)
    response = client.post("/v1/members/identify", json={"email": "ana@example.com"}, headers=pos)
    text = response.get_data(as_text=True)
    assert "+33612345678" not in text and "ana@example.com" not in text
    assert set(response.json) == {"member", "balance"}


def test_identify_answers_404_for_unknown_forged_or_expired_codes(client, make, app, monkeypatch):
    member = make.member()
    pos = make.api_key(scopes.MEMBERS_READ)
    ttl = app.extensions["omniloyal.settings"].member_qr_ttl_seconds
    with monkeypatch.context() as past:  # a code shown longer ago than its lifetime
        past.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - ttl - 5)
        expired = mint_member_qr(member.id, now=utcnow()).token
    for body in (
        {"email": "nobody@example.com"},
        {"card": "NOSUCH99"},
        {"qr_token": "omq_forged.token"},
        {"qr_token": expired},
    ):
        response = client.post("/v1/members/identify", json=body, headers=pos)
        assert response.status_code == 404 and response.mimetype == PROBLEM, body
    assert response.json["type"].endswith("member-code-invalid")


def test_identify_needs_exactly_one_reference_and_members_read(client, make):
    pos = make.api_key(scopes.MEMBERS_READ)
    both = client.post(
        "/v1/members/identify", json={"email": "a@b.fr", "card": "ABC123"}, headers=pos
    )
    assert both.status_code == 422 and both.mimetype == PROBLEM
    assert client.post("/v1/members/identify", json={}, headers=pos).status_code == 422
    bad_phone = client.post("/v1/members/identify", json={"phone": "12"}, headers=pos)
    assert bad_phone.status_code == 422 and "phone" in error_fields(bad_phone.json)
    assert client.post("/v1/members/identify", json={"email": "a@b.fr"}).status_code == 401
    writer = make.api_key(scopes.MEMBERS_WRITE)
    assert (
        client.post("/v1/members/identify", json={"email": "a@b.fr"}, headers=writer).status_code
        == 403
    )


def test_identify_finds_the_survivor_of_a_merge(client, make):
    from loyalty.members.merge import merge_members

    survivor = make.member(email="keep@example.com")
    duplicate = make.member(email="dup@example.com")
    qr = mint_member_qr(duplicate.id, now=utcnow()).token
    merge_members(survivor.id, duplicate.id, reason="same person", now=utcnow(), actor="test")
    db.session.commit()
    pos = make.api_key(scopes.MEMBERS_READ)
    by_qr = client.post("/v1/members/identify", json={"qr_token": qr}, headers=pos)
    assert by_qr.json["member"]["id"] == survivor.id
    by_email = client.post("/v1/members/identify", json={"email": "dup@example.com"}, headers=pos)
    assert by_email.json["member"]["id"] == survivor.id
