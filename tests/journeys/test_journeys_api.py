"""The journeys, store events and referral APIs: what each caller may do (scopes, store
binding, member tokens) and the flows end to end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from tests.factories import idem
from tests.journeys.helpers import advance

PROBLEM = "application/problem+json"
STEPS = [{"type": "wait", "hours": 1}, {"type": "points", "points": 25}]


@pytest.fixture
def marketer(make):
    return make.api_key(scopes.JOURNEYS_READ, scopes.JOURNEYS_WRITE)


@pytest.fixture
def analyst(make):
    return make.api_key(scopes.JOURNEYS_READ)


def _create(client, headers, **more):
    # Everyone goes through (the control group has its own tests, tests/journeys/test_holdout.py)
    body = {"name": "Welcome", "trigger": "manual", "steps": STEPS, "holdout_pct": 0, **more}
    response = client.post("/v1/journeys", json=body, headers=idem(headers))
    assert response.status_code == 201, response.json
    return response.json


def test_a_marketer_creates_versions_activates_pauses_and_reads_progress_and_results(
    client, make, marketer, analyst
):
    journey = _create(client, marketer)
    assert (journey["status"], journey["version"]) == ("draft", 1)
    activated = client.post(f"/v1/journeys/{journey['id']}/activate", headers=marketer)
    assert activated.json["status"] == "active"
    member = make.member()
    entered = client.post(
        f"/v1/journeys/{journey['id']}/entries",
        json={"member_ids": [member.id]},
        headers=idem(marketer),
    )
    assert entered.status_code == 201 and len(entered.json["entered"]) == 1
    edited = client.post(
        f"/v1/journeys/{journey['id']}/versions",
        json={"steps": [{"type": "points", "points": 1}]},
        headers=idem(marketer),
    )
    assert edited.json["version"] == 2
    versions = client.get(f"/v1/journeys/{journey['id']}/versions", headers=analyst)
    assert [v["version"] for v in versions.json["items"]] == [1, 2]

    advance(utcnow() + timedelta(hours=2))
    progress = client.get(f"/v1/journeys/{journey['id']}/members/{member.id}", headers=analyst)
    assert progress.status_code == 200
    (entry,) = progress.json["entries"]
    assert (entry["version"], entry["status"]) == (1, "completed")
    assert [(h["step_index"], h["outcome"]) for h in entry["history"]] == [
        (0, "waited"),
        (1, "credited"),
    ]
    results = client.get(f"/v1/journeys/{journey['id']}/results", headers=analyst)
    assert results.json["entries"] == {"active": 0, "completed": 1, "exited": 0, "held_out": 0}

    paused = client.post(f"/v1/journeys/{journey['id']}/pause", headers=marketer)
    assert paused.json["status"] == "paused"
    listed = client.get("/v1/journeys", headers=analyst)
    assert [item["id"] for item in listed.json["items"]] == [journey["id"]]


def test_invalid_steps_are_refused_naming_each_step(client, marketer):
    response = client.post(
        "/v1/journeys",
        json={
            "name": "Bad",
            "trigger": "manual",
            "steps": [
                {"type": "wait"},
                {"type": "condition", "check": "purchased_since_entry", "otherwise": 0},
                {"type": "message", "template": "x", "channels": ["fax"]},
            ],
        },
        headers=idem(marketer),
    )
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    fields = {error["field"] for error in response.json["errors"]}
    assert {"steps.2.channels.0", "steps.1.otherwise"} <= fields or "steps.2.channels" in str(
        fields
    )


def test_who_may_call_what(client, make, marketer, analyst):
    journey = _create(client, marketer)
    member = make.member()
    token = make.member_token(member.id)
    segments_key = make.api_key(scopes.SEGMENTS_READ, scopes.SEGMENTS_WRITE)
    assert client.get("/v1/journeys", headers=segments_key).status_code == 403
    assert client.get("/v1/journeys", headers=token).status_code == 403
    assert client.post(f"/v1/journeys/{journey['id']}/pause", headers=analyst).status_code == 403
    assert (
        client.get(f"/v1/journeys/{journey['id']}/members/{member.id}", headers=token).status_code
        == 403
    )
    assert client.get("/v1/me/referral", headers=marketer).status_code == 403


def _event(client, marketer, store_id, capacity=2, **more):
    now = utcnow()
    body = {
        "name": "Launch night",
        "store_id": store_id,
        "starts_at": (now + timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=4)).isoformat(),
        "capacity": capacity,
        "checkin_points": 100,
        "attribution_days": 7,
        **more,
    }
    response = client.post("/v1/o2o/events", json=body, headers=idem(marketer))
    assert response.status_code == 201, response.json
    return response.json


def test_reserve_check_in_earn_points_and_a_purchase_is_attributed(client, make, marketer):
    from tests.earning.factories import base_rate, order_body
    from tests.journeys.helpers import relay

    make.store("S1")
    make.store("S2")
    event = _event(client, marketer, "S1", capacity=2)
    first, second, third = (make.member() for _ in range(3))
    tokens = [make.member_token(m.id) for m in (first, second, third)]
    url = f"/v1/me/events/{event['id']}/reservation"
    assert client.post(url, headers=tokens[0]).status_code == 201
    again = client.post(url, headers=tokens[0])
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert client.post(url, headers=tokens[1]).status_code == 201
    full = client.post(url, headers=tokens[2])
    assert (full.status_code, full.json["type"]) == (409, "/problems/event-full")
    assert client.get(url, headers=tokens[2]).status_code == 404  # nobody else's reservation

    other_till = make.api_key(scopes.ORDERS_WRITE, store_id="S2")
    refused = client.post(
        f"/v1/o2o/events/{event['id']}/check-ins", json={"member_id": first.id}, headers=other_till
    )
    assert refused.status_code == 404  # another store's event looks unknown to a store key

    # Check-in opens two hours before the start: the event starts in an hour.
    till = make.api_key(scopes.ORDERS_WRITE, store_id="S1")
    checked = client.post(
        f"/v1/o2o/events/{event['id']}/check-ins", json={"member_id": first.id}, headers=till
    )
    assert checked.status_code == 201, checked.json
    assert checked.json["points"] == 100
    repeat = client.post(
        f"/v1/o2o/events/{event['id']}/check-ins", json={"member_id": first.id}, headers=till
    )
    assert repeat.headers.get("Idempotent-Replayed") == "true"
    balance = client.get("/v1/me/balance", headers=tokens[0]).json
    assert balance["available"] == 100

    base_rate()
    pos = make.api_key(scopes.ORDERS_WRITE)
    body = order_body({"member_id": first.id}, channel="store", store_id="S2")
    assert client.post("/v1/orders", json=body, headers=idem(pos)).status_code == 201
    relay()
    results = client.get(f"/v1/o2o/events/{event['id']}/results", headers=marketer).json
    assert results == {
        "event_id": event["id"],
        "capacity": 2,
        "reserved": 2,
        "checked_in": 1,
        "cancelled": 0,
        "purchasers": 1,
        "attributed_revenue_minor": 10_000,
    }
    cancelled = client.delete(url, headers=tokens[1])
    assert cancelled.json["status"] == "cancelled"
    assert client.post(url, headers=tokens[2]).status_code == 201  # the freed place


def test_book_online_experience_in_store_codes_work_only_at_the_members_nearest_stores(
    client, make, marketer
):
    from campaigns import profiles
    from loyalty.coupons.models import CouponCode
    from tests.coupons.factories import body as coupon_body
    from tests.coupons.factories import offer
    from tests.journeys.helpers import consent

    for store_id, region in (("N1", "north"), ("N2", "north"), ("N3", "north"), ("S9", "south")):
        make.store(store_id, region=region)
    member_id = make.member(region="north").id
    consent(member_id, "email")
    profiles.refresh_people([member_id], utcnow())
    db.session.commit()
    segments_key = make.api_key(scopes.SEGMENTS_WRITE, scopes.SEGMENTS_READ)
    segment = client.post(
        "/v1/segments",
        json={"name": "North", "rule": {"field": "region", "op": "eq", "value": "north"}},
        headers=idem(segments_key),
    ).json
    journey = client.post(
        "/v1/o2o/book-in-store",
        json={
            "name": "Try it in store",
            "segment_id": segment["id"],
            "offer_id": offer().id,
            "nearest_stores": 2,
            "template": "coupon_issued",
            "channels": ["email"],
            "holdout_pct": 0,
        },
        headers=idem(marketer),
    )
    assert journey.status_code == 201, journey.json
    activated = client.post(f"/v1/journeys/{journey.json['id']}/activate", headers=marketer)
    assert activated.status_code == 200
    from campaigns.journey_jobs import enter_segment_audience

    enter_segment_audience(journey.json["id"])
    advance(utcnow())
    code = db.session.query(CouponCode).filter_by(member_id=member_id).one()
    assert code.store_ids == ["N1", "N2"]  # home/favourite unknown: the region's, by id

    def applies(store_id: str | None, channel: str = "store") -> bool:
        till = make.api_key(scopes.COUPONS_REDEEM)
        answer = client.post(
            "/v1/coupons/validate",
            json=coupon_body([code.code], store_id=store_id, channel=channel, member_id=member_id),
            headers=till,
        )
        assert answer.status_code == 200, answer.json
        return answer.json["results"][0]["applies"]

    assert applies("N1") and applies("N2")
    assert not applies("N3") and not applies("S9")
    assert not applies(None, channel="online")


def test_referral_code_share_link_claim_and_rewards(client, make):
    from tests.earning.factories import order_body
    from tests.journeys.helpers import relay

    referrer, friend = make.member(), make.member()
    referrer_token, friend_token = make.member_token(referrer.id), make.member_token(friend.id)
    assert client.get("/v1/me/referral", headers=referrer_token).status_code == 404
    made = client.post("/v1/me/referral", json={}, headers=referrer_token)
    assert made.status_code == 200
    code = made.json["code"]
    assert made.json["share_link"].endswith(f"/r/{code}")
    assert client.post("/v1/me/referral", json={}, headers=referrer_token).json["code"] == code
    # The link opens a page naming the code (and nothing about the referrer), no credential.
    page = client.get(f"/r/{code.lower()}")
    assert (page.status_code, page.mimetype) == (200, "text/html")
    assert f'id="referral-code">{code}<' in page.get_data(as_text=True)
    referrer_email = referrer.identities[0].value
    assert referrer_email not in page.get_data(as_text=True)
    assert client.get("/r/NOSUCHCODE").status_code == 404
    assert client.get("/v1/me/referral", headers=referrer_token).json["code"] == code

    mine = client.post("/v1/me/referral/claim", json={"code": code}, headers=referrer_token)
    assert (mine.status_code, mine.json["type"]) == (409, "/problems/referral-refused")
    claimed = client.post("/v1/me/referral/claim", json={"code": code}, headers=friend_token)
    assert claimed.status_code == 201, claimed.json

    pos = make.api_key(scopes.ORDERS_WRITE)
    for _ in range(2):  # only the first purchase rewards
        body = order_body({"member_id": friend.id})
        assert client.post("/v1/orders", json=body, headers=idem(pos)).status_code == 201
    relay()
    relay()
    assert client.get("/v1/me/balance", headers=referrer_token).json["available"] == 500
    assert client.get("/v1/me/balance", headers=friend_token).json["available"] == 250
    assert client.get("/v1/me/referral", headers=referrer_token).json["rewarded"] == 1


def test_a_product_launch_from_its_template_announce_reserve_check_in_buy(client, make, marketer):
    """The launch template end to end: the event and a draft journey; activated, it
    announces the event to the segment (control group held out, recorded); a member who
    got it reserves, the store's till checks them in (points) and their purchase in the
    following days is attributed to the event."""
    from campaigns import journeys, profiles
    from campaigns.journey_jobs import enter_segment_audience
    from notifications.models import Message
    from tests.earning.factories import base_rate, order_body
    from tests.journeys.helpers import consent, relay

    make.store("S1", region="north")
    fans = [make.member(region="north").id for _ in range(12)]
    for member_id in fans:
        consent(member_id, "email")
    profiles.refresh_people(fans, utcnow())
    db.session.commit()
    segments_key = make.api_key(scopes.SEGMENTS_WRITE, scopes.SEGMENTS_READ)
    segment = client.post(
        "/v1/segments",
        json={"name": "North", "rule": {"field": "region", "op": "eq", "value": "north"}},
        headers=idem(segments_key),
    ).json
    now = utcnow()
    made = client.post(
        "/v1/o2o/launches",
        json={
            "name": "Phone X",
            "store_id": "S1",
            "starts_at": (now + timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(hours=4)).isoformat(),
            "capacity": 50,
            "checkin_points": 200,
            "attribution_days": 3,
            "segment_id": segment["id"],
            "template": "welcome",
            "channels": ["push", "email"],
            "holdout_pct": 25,
        },
        headers=idem(marketer),
    )
    assert made.status_code == 201, made.json
    event, flow = made.json["event"], made.json["journey"]
    assert (flow["status"], flow["kind"], event["journey_id"]) == ("draft", "launch", flow["id"])
    assert client.post(f"/v1/journeys/{flow['id']}/activate", headers=marketer).status_code == 200
    enter_segment_audience(flow["id"])
    advance(utcnow())

    journey = journeys.get_journey(flow["id"])
    held = {m for m in fans if journeys.is_held_out(journey, m)}
    told = [m for m in fans if m not in held]
    assert held and told
    announced = {
        message.member_id: message.variables
        for message in db.session.query(Message).filter(Message.template == "welcome")
    }
    assert set(announced) == set(told)  # the control group got nothing
    assert {v["event_id"] for v in announced.values()} == {event["id"]}
    results = client.get(f"/v1/journeys/{flow['id']}/results", headers=marketer).json
    assert (results["entered"], results["held_out"]) == (len(fans), len(held))

    member = told[0]
    token = make.member_token(member)
    reserved = client.post(f"/v1/me/events/{event['id']}/reservation", headers=token)
    assert reserved.status_code == 201
    till = make.api_key(scopes.ORDERS_WRITE, store_id="S1")
    checked = client.post(
        f"/v1/o2o/events/{event['id']}/check-ins", json={"member_id": member}, headers=till
    )
    assert (checked.status_code, checked.json["points"]) == (201, 200)
    base_rate()
    pos = make.api_key(scopes.ORDERS_WRITE)
    body = order_body({"member_id": member}, channel="online")
    assert client.post("/v1/orders", json=body, headers=idem(pos)).status_code == 201
    relay()
    figures = client.get(f"/v1/o2o/events/{event['id']}/results", headers=marketer).json
    assert (figures["checked_in"], figures["purchasers"]) == (1, 1)
    assert figures["attributed_revenue_minor"] > 0
