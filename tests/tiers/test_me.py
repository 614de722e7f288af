"""GET /v1/me: the member app's home call."""

from __future__ import annotations

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.tiers import operations as tiers

PROBLEM = "application/problem+json"


def test_me_shows_who_i_am_my_tier_progress_and_points(client, make):
    now = utcnow()
    tiers.create_tier({"code": "member", "name": "Member", "rank": 0}, now=now)
    tiers.create_tier(
        {
            "code": "silver",
            "name": "Silver",
            "rank": 1,
            "threshold": 1000,
            "earn_multiplier_pct": 125,
        },
        now=now,
    )
    db.session.commit()
    member = make.member(name="Ana", timezone="Europe/Lisbon", points=400)
    make.earn(member.id, 100, pending_days=14)
    tiers.reevaluate_member_tier(member.id, now)
    db.session.commit()
    response = client.get("/v1/me", headers=make.member_token(member.id))
    assert response.status_code == 200, response.json
    data = response.json
    assert (data["member_id"], data["name"], data["timezone"]) == (
        member.id,
        "Ana",
        "Europe/Lisbon",
    )
    assert data["tier"]["current"]["code"] == "member"
    assert data["tier"]["next"]["code"] == "silver"
    assert (data["tier"]["qualifying_value"], data["tier"]["remaining"]) == (500, 500)
    assert data["balance"] == {
        "member_id": member.id,
        "balance": 400,
        "available": 400,
        "pending": 100,
        "held": 0,
        "debt": 0,
    }


def test_me_without_tiers_still_answers(client, make):
    member = make.member(points=5)
    data = client.get("/v1/me", headers=make.member_token(member.id)).json
    assert data["tier"]["current"] is None and data["balance"]["available"] == 5


def test_me_needs_a_member_token(client, make):
    assert client.get("/v1/me").status_code == 401
    response = client.get("/v1/me", headers=make.api_key(scopes.ADMIN))
    assert response.status_code == 403 and response.mimetype == PROBLEM
    forged = client.get("/v1/me", headers={"Authorization": "Bearer omt_forged"})
    assert forged.status_code == 401


def test_me_uses_a_handful_of_queries(app, client, make):
    import sqlalchemy as sa

    member = make.member(points=5)
    headers = make.member_token(member.id)
    statements = []

    def count(*_args, **_kwargs):
        statements.append(1)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        client.get("/v1/me", headers=headers)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert len(statements) <= 5
