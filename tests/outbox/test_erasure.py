"""Erasure reaches the outbox: a delivery's last error may quote the member's contact data."""

from __future__ import annotations

from loyalty import outbox
from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.models import MemberIdentity
from tests.factories import idem
from tests.outbox.conftest import delivery, emit, relay

PHONE = "+4915199887766"


class ProviderRefused(RuntimeError):
    pass


def test_erasing_a_member_blanks_delivery_errors_that_quote_their_phone(client, make, register):
    def send_sms(event: outbox.Event) -> None:
        phone = db.session.scalar(
            MemberIdentity.__table__.select()
            .with_only_columns(MemberIdentity.value)
            .where(MemberIdentity.member_id == event.member_id, MemberIdentity.kind == "phone")
        )
        raise ProviderRefused(f"21610: {phone} has opted out")

    register("test.sms", send_sms, "t.notify")
    member = make.member(phone=PHONE)
    other = make.member(phone="+4915100000001")
    mine, theirs = emit("t.notify", member.id, utcnow()), emit("t.notify", other.id, utcnow())
    relay(utcnow())
    assert PHONE in delivery("test.sms", mine).last_error

    admin = make.api_key(scopes.ADMIN)
    response = client.post(f"/v1/members/{member.id}/erase", headers=idem(admin))
    assert response.status_code == 200
    assert response.json["summary"]["outbox"] == {"delivery_errors_blanked": 1}

    assert delivery("test.sms", mine).last_error == "(erased)"
    assert "+4915100000001" in delivery("test.sms", theirs).last_error
