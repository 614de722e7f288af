"""Non-purchase activities earn through event bonus rules, once; rules are managed by admins."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.earning import operations
from loyalty.ledger import operations as ledger
from loyalty.members.models import Member
from tests.earning.factories import rule

PROBLEM = "application/problem+json"


@pytest.fixture
def pos(make):
    return make.api_key(scopes.ORDERS_WRITE)


@pytest.fixture
def admin(make):
    return make.api_key(scopes.ADMIN)


def activity(client, headers, member_id, **body):
    return client.post(f"/v1/members/{member_id}/activities", json=body, headers=headers)


def test_a_signup_bonus_is_earned_once(client, make, pos):
    rule(name="welcome", kind="event_bonus", activity_kind="signup", bonus_points=200)
    member = make.member()
    first = activity(client, pos, member.id, kind="signup")
    assert first.status_code == 201
    assert first.json["points"] == 200 and first.json["already_earned"] is False
    assert first.json["breakdown"] == [
        {"rule_id": 1, "name": "welcome", "kind": "event_bonus", "points": 200}
    ]
    again = activity(client, pos, member.id, kind="signup", key="retry")
    assert again.status_code == 200
    assert (again.json["points"], again.json["already_earned"]) == (0, True)
    assert ledger.member_balance(member.id).available == 200


def test_checkin_dedupe_follows_the_members_local_day(app, make):
    rule(name="check-in", kind="event_bonus", activity_kind="app_checkin", bonus_points=5)
    member = make.member(timezone="Asia/Tokyo")
    late_utc = datetime(2026, 3, 1, 14, 30, tzinfo=UTC)  # 23:30 in Tokyo, 1 March
    after_midnight = late_utc + timedelta(hours=1)  # 00:30 in Tokyo, 2 March
    results = []
    for moment in (late_utc, late_utc + timedelta(minutes=10), after_midnight):
        act, created = operations.record_activity(
            member.id,
            "app_checkin",
            reference=None,
            referred_member_id=None,
            client_id=None,
            now=moment,
            actor="t",
        )
        db.session.commit()
        results.append((act.dedupe_key, created))
    assert results == [("2026-03-01", True), ("2026-03-01", False), ("2026-03-02", True)]
    assert ledger.member_balance(member.id).available == 10


def test_a_birthday_bonus_is_earned_once_a_year_near_the_birthday(app, make):
    rule(name="birthday", kind="event_bonus", activity_kind="birthday", bonus_points=100)
    member = make.member(birthday=date(1990, 5, 4))
    keys = []
    for moment in (
        datetime(2026, 5, 4, 9, tzinfo=UTC),
        datetime(2026, 5, 9, tzinfo=UTC),
        datetime(2027, 4, 28, 9, tzinfo=UTC),
    ):
        act, created = operations.record_activity(
            member.id,
            "birthday",
            reference=None,
            referred_member_id=None,
            client_id=None,
            now=moment,
            actor="t",
        )
        db.session.commit()
        keys.append((act.dedupe_key, created))
    assert keys == [("2026", True), ("2026", False), ("2027", True)]
    from loyalty.errors import InvalidInput

    with pytest.raises(InvalidInput, match="within 7 days"):
        operations.record_activity(
            member.id,
            "birthday",
            reference=None,
            referred_member_id=None,
            client_id=None,
            now=datetime(2028, 12, 1, tzinfo=UTC),
            actor="t",
        )
    no_birthday = make.member()

    with pytest.raises(InvalidInput):
        operations.record_activity(
            no_birthday.id,
            "birthday",
            reference=None,
            referred_member_id=None,
            client_id=None,
            now=utcnow(),
            actor="t",
        )


def test_a_referral_pays_once_per_referred_member(client, make, pos):
    rule(name="referral", kind="event_bonus", activity_kind="referral", bonus_points=500)
    referrer, other, friend = make.member(), make.member(), make.member()
    first = activity(client, pos, referrer.id, kind="referral", referred_member_id=friend.id)
    assert first.status_code == 201 and first.json["points"] == 500
    again = activity(client, pos, referrer.id, kind="referral", referred_member_id=friend.id)
    assert again.status_code == 200 and again.json["points"] == 0
    stolen = activity(client, pos, other.id, kind="referral", referred_member_id=friend.id)
    assert stolen.status_code == 409 and stolen.mimetype == PROBLEM
    for bad in (
        {"kind": "referral"},
        {"kind": "referral", "referred_member_id": referrer.id},
        {"kind": "referral", "referred_member_id": 999_999},
        {"kind": "signup", "referred_member_id": friend.id},
    ):
        response = activity(client, pos, referrer.id, **bad)
        assert response.status_code == 422, bad
    # An older member can't be "referred" by a newer one.
    assert (
        activity(
            client, pos, friend.id, kind="referral", referred_member_id=referrer.id
        ).status_code
        == 422
    )
    assert ledger.member_balance(referrer.id).available == 500


def test_an_activity_without_a_rule_earns_nothing_but_counts_as_done(client, make, pos):
    member = make.member()
    first = activity(client, pos, member.id, kind="profile_completed")
    assert first.status_code == 201 and first.json["points"] == 0
    rule(name="profile", kind="event_bonus", activity_kind="profile_completed", bonus_points=50)
    assert activity(client, pos, member.id, kind="profile_completed").json["points"] == 0


def test_activities_refuse_unknown_members_kinds_and_callers(client, make, pos):
    member = make.member()
    assert activity(client, pos, 999_999, kind="signup").status_code == 422
    assert activity(client, pos, member.id, kind="dancing").status_code == 422
    assert activity(client, {}, member.id, kind="signup").status_code == 401
    reader = make.api_key(scopes.MEMBERS_READ)
    assert activity(client, reader, member.id, kind="signup").status_code == 403
    blocked = make.member()
    db.session.get(Member, blocked.id).status = "blocked"
    db.session.commit()
    assert activity(client, pos, blocked.id, kind="signup").status_code == 409


# --- rules (admin) --------------------------------------------------------------------------


def test_admins_create_read_update_and_delete_earning_rules(client, make, admin):
    body = {
        "name": "1 per euro online",
        "kind": "base_rate",
        "currency": "EUR",
        "points": 1,
        "per_minor": 100,
        "channels": ["online"],
    }
    created = client.post(
        "/v1/earning-rules", json=body, headers={**admin, "Idempotency-Key": "r1"}
    )
    assert created.status_code == 201, created.json
    rule_id = created.json["id"]
    assert client.get(f"/v1/earning-rules/{rule_id}", headers=admin).json["points"] == 1
    patched = client.patch(
        f"/v1/earning-rules/{rule_id}",
        json={"points": 2},
        headers={**admin, "Idempotency-Key": "r2"},
    )
    assert patched.status_code == 200 and patched.json["points"] == 2
    listed = client.get("/v1/earning-rules?kind=base_rate", headers=admin).json["items"]
    assert [r["id"] for r in listed] == [rule_id]
    deleted = client.delete(
        f"/v1/earning-rules/{rule_id}", headers={**admin, "Idempotency-Key": "r3"}
    )
    assert deleted.status_code == 204
    assert client.get(f"/v1/earning-rules/{rule_id}", headers=admin).status_code == 404


def test_a_rule_change_applies_to_the_next_order_at_once(client, make, admin):
    from tests.earning.factories import order_body

    member = make.member()
    pos = make.api_key(scopes.ORDERS_WRITE)
    created = client.post(
        "/v1/earning-rules",
        headers={**admin, "Idempotency-Key": "a"},
        json={
            "name": "base",
            "kind": "base_rate",
            "currency": "EUR",
            "points": 1,
            "per_minor": 100,
        },
    )
    first = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=pos)
    client.patch(
        f"/v1/earning-rules/{created.json['id']}",
        json={"points": 3},
        headers={**admin, "Idempotency-Key": "b"},
    )
    second = client.post("/v1/orders", json=order_body({"member_id": member.id}), headers=pos)
    assert (first.json["points_earned"], second.json["points_earned"]) == (100, 300)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "kind": "base_rate", "currency": "XXX", "points": 1},
        {"name": "x", "kind": "base_rate", "points": 1},
        {"name": "x", "kind": "base_rate", "currency": "EUR", "points": 0},
        {"name": "x", "kind": "multiplier", "multiplier_pct": 100},
        {"name": "x", "kind": "multiplier", "multiplier_pct": 50},
        {"name": "x", "kind": "promotion", "multiplier_pct": 200},
        {
            "name": "x",
            "kind": "promotion",
            "multiplier_pct": 200,
            "starts_at": "2026-06-02T00:00:00+00:00",
            "ends_at": "2026-06-01T00:00:00+00:00",
        },
        {"name": "x", "kind": "order_cap"},
        {"name": "x", "kind": "event_bonus", "bonus_points": 5},
        {"name": "x", "kind": "bonus", "bonus_points": 5, "min_spend_minor": 100},
        {"name": "x", "kind": "bonus", "bonus_points": "5"},
        {"name": "x", "kind": "bonus", "bonus_points": 5, "channels": ["fax"]},
        {"name": "x", "kind": "teleport"},
        {"kind": "bonus", "bonus_points": 5},
    ],
)
def test_invalid_rules_are_refused(client, make, admin, body):
    response = client.post(
        "/v1/earning-rules", json=body, headers={**admin, "Idempotency-Key": "k"}
    )
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert operations.list_rules() == []


def test_a_patch_that_breaks_a_rule_is_refused(client, make, admin):
    rule_id = rule(name="cap", kind="order_cap", max_points=100)
    response = client.patch(
        f"/v1/earning-rules/{rule_id}",
        json={"max_points": None},
        headers={**admin, "Idempotency-Key": "k"},
    )
    assert response.status_code == 422
    assert operations.get_rule(rule_id).max_points == 100


def test_rules_are_for_admins_only(client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    assert client.get("/v1/earning-rules").status_code == 401
    assert client.get("/v1/earning-rules", headers=pos).status_code == 403
    response = client.post(
        "/v1/earning-rules",
        json={"name": "x", "kind": "bonus", "bonus_points": 1},
        headers={**pos, "Idempotency-Key": "k"},
    )
    assert response.status_code == 403
