"""Events carry ids, not personal data: consumers read contact details when they act."""

from __future__ import annotations

import json

import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.db import db
from loyalty.outbox import OutboxEvent
from tests.earning import factories as earning_factories
from tests.earning.factories import order_body
from tests.factories import idem

NAME, PHONE, EMAIL = "Ada Quintessa Lovelace", "+4915112345678", "ada.lovelace@example.org"
NEW_NAME, CARD = "Ada Byron", "6012345678901234"
DUPLICATE_EMAIL = "a.byron@example.net"


def test_no_event_payload_carries_a_members_name_phone_email_or_free_text(client, make):
    admin = make.api_key(scopes.ADMIN, scopes.MEMBERS_WRITE, scopes.ORDERS_WRITE)
    earning_factories.base_rate()

    def call(method: str, path: str, body: dict | None = None) -> dict:
        response = client.open(path, method=method, json=body, headers=idem(admin))
        assert response.status_code in (200, 201), (path, response.json)
        return response.json

    enrolled = call(
        "POST",
        "/v1/members",
        {"identities": {"phone": PHONE, "email": EMAIL}, "profile": {"name": NAME}},
    )
    member_id = enrolled["member"]["id"]
    call("PATCH", f"/v1/members/{member_id}", {"name": NEW_NAME})
    call("POST", f"/v1/members/{member_id}/identities", {"kind": "card", "value": CARD})
    call("POST", "/v1/orders", order_body({"phone": PHONE}))
    call(
        "POST",
        f"/v1/members/{member_id}/adjustments",
        {"points": 25, "reason": f"goodwill: {NAME} ({EMAIL}) called from {PHONE}"},
    )
    call("POST", f"/v1/members/{member_id}/block", {"reason": f"{NEW_NAME} asked, {PHONE}"})
    call("POST", f"/v1/members/{member_id}/unblock")
    duplicate = call(
        "POST",
        "/v1/members",
        {"identities": {"email": DUPLICATE_EMAIL}, "profile": {"name": NEW_NAME}},
    )
    call(
        "POST",
        f"/v1/members/{member_id}/merge",
        {"merged_member_id": duplicate["member"]["id"], "reason": f"same person: {NEW_NAME}"},
    )

    events = db.session.execute(sa.select(OutboxEvent.topic, OutboxEvent.payload)).all()
    assert {topic for topic, _ in events} >= {
        "member.enrolled",
        "member.updated",
        "points.earned",
        "points.adjusted",
        "member.blocked",
        "member.unblocked",
        "member.merged",
    }
    personal = [NAME, "Lovelace", NEW_NAME, "Byron", PHONE, PHONE[1:], "15112345678", EMAIL]
    personal += [CARD, DUPLICATE_EMAIL, "example.org"]
    for topic, payload in events:
        text = json.dumps(payload, ensure_ascii=False)
        leaked = [value for value in personal if value.lower() in text.lower()]
        assert not leaked, f"{topic} carries {leaked}: {text}"
