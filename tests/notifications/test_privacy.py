"""Messages and consent are in the privacy export, and erasure blanks the messages."""

from __future__ import annotations

import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from notifications import consent
from notifications.consent import Purpose
from notifications.models import Message, RecordedMessage
from notifications.providers.base import Channel
from tests.factories import idem
from tests.notifications.factories import queue, reload, send_round

PHONE, NAME = "+4915112345678", "Ada Quintessa"


def test_export_has_messages_consents_and_history_and_erasure_blanks_them(client, make):
    member = make.member(phone=PHONE, name=NAME)
    consent.record_consent(member.id, Channel.SMS, Purpose.MARKETING, True,
                           source="store", now=utcnow(), actor="client:1:till")  # fmt: skip
    db.session.commit()
    sent = queue(member.id)
    send_round()
    waiting = queue(member.id)  # still queued when the erasure comes
    admin = make.api_key(scopes.ADMIN)

    export = client.get(f"/v1/members/{member.id}/export", headers=admin).json["sections"][
        "notifications"
    ]
    assert [m["id"] for m in export["messages"]] == [sent.id, waiting.id]
    assert export["messages"][0]["destination"] == PHONE and NAME in export["messages"][0]["body"]
    assert export["consents"][0]["granted"] is True
    assert export["consent_history"][0]["source"] == "store"

    erased = client.post(f"/v1/members/{member.id}/erase", headers=idem(admin))
    assert erased.status_code == 200, erased.json
    assert erased.json["summary"]["notifications"]["queued_messages_suppressed"] == 1
    rows = db.session.execute(sa.select(Message.destination, Message.body, Message.variables)).all()
    assert all(r == (None, None, {}) for r in rows)
    recorded = db.session.execute(sa.select(RecordedMessage.destination, RecordedMessage.body))
    assert all(r == (None, None) for r in recorded)
    assert reload(waiting.id).state == "suppressed"
    assert not consent.allows(member.id, Channel.SMS, Purpose.MARKETING)
