"""Twilio's inbound SMS and status callbacks: signed by Twilio (RequestValidator) or refused;
STOP / START change consent with its source, HELP is answered, receipts move messages."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from twilio.request_validator import RequestValidator

from loyalty.clock import utcnow
from loyalty.db import db
from notifications import consent, pipeline, policies
from notifications.consent import Purpose
from notifications.jobs import providers as app_providers
from notifications.providers.base import Channel
from notifications.providers.settings import TwilioSettings
from notifications.providers.twilio_sms import TwilioSmsProvider
from notifications.templates import sms_segments
from tests.concurrency import open_transactions
from tests.notifications.factories import queue, reload, send_round, transitions
from tests.notifications.servers import LocalTwilioHttpClient, twilio_error, twilio_stub

ACCOUNT = "AC" + "c" * 32
TOKEN = "twilio-auth-token-0123456789abcdef"
BASE = "https://loyalty.example.com"
INBOUND = "/notifications/twilio/inbound"
STATUS = "/notifications/twilio/status"
PHONE = "+4915112345678"


@pytest.fixture(autouse=True)
def twilio_configured(app: Flask) -> Iterator[None]:
    settings = app.extensions["omniloyal.settings"]
    app.extensions["omniloyal.settings"] = replace(
        settings,
        twilio=TwilioSettings(ACCOUNT, TOKEN, messaging_service_sid="MG" + "d" * 32),
        public_base_url=BASE,
    )
    yield
    app.extensions["omniloyal.settings"] = settings


def signed(path: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    """What Twilio sends: the signature over the public URL (not the one the proxy used)."""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(BASE + path, params)}


def inbound(client, body: str, sender: str = PHONE, **extra: str):
    params = {"AccountSid": ACCOUNT, "MessageSid": "SM1", "From": sender, "To": "+15005550006",
              "Body": body, **extra}  # fmt: skip
    return client.post(INBOUND, data=params, headers=signed(INBOUND, params))


def sms_consent(member_id: int) -> tuple[bool, bool]:
    return (
        consent.allows(member_id, Channel.SMS, Purpose.TRANSACTIONAL),
        consent.allows(member_id, Channel.SMS, Purpose.MARKETING),
    )


def grant_marketing(member_id: int) -> None:
    from loyalty.clock import utcnow
    from loyalty.db import db

    consent.record_consent(member_id, Channel.SMS, Purpose.MARKETING, True,
                           source="app", now=utcnow(), actor="test")  # fmt: skip
    db.session.commit()


def test_stop_from_twilios_opt_out_type_revokes_sms_consent_with_its_source(client, make):
    member = make.member(phone=PHONE)
    grant_marketing(member.id)

    answer = inbound(client, "Stop please", OptOutType="STOP")

    assert answer.status_code == 200
    assert answer.mimetype == "text/xml"
    assert "<Message>" not in answer.text  # Twilio answered the STOP itself
    assert sms_consent(member.id) == (False, False)
    last = consent.history(member.id)[-1]
    assert (last.source, last.place, last.granted) == ("provider", "sms STOP", False)
    assert consent.allows(member.id, Channel.EMAIL, Purpose.TRANSACTIONAL)  # only SMS


@pytest.mark.parametrize("word", ["STOP", "stop", " Unsubscribe ", "QUIT", "stopall"])
def test_stop_keywords_without_opt_out_type_revoke_too(client, make, word):
    member = make.member(phone=PHONE)

    assert inbound(client, word).status_code == 200

    assert sms_consent(member.id) == (False, False)


def test_start_restores_transactional_sms_but_not_marketing(client, make):
    member = make.member(phone=PHONE)
    grant_marketing(member.id)
    inbound(client, "STOP")

    inbound(client, "START", OptOutType="START")

    assert sms_consent(member.id) == (True, False)
    assert consent.history(member.id)[-1].place == "sms START"


def test_help_is_answered_unless_twilio_answered_it(client, make):
    make.member(phone=PHONE)

    ours = inbound(client, "help")
    twilios = inbound(client, "HELP", OptOutType="HELP")

    assert "<Message>" in ours.text and "Reply STOP to unsubscribe" in ours.text
    assert "<Message>" not in twilios.text


def test_an_ordinary_reply_or_an_unknown_number_changes_nothing(client, make):
    member = make.member(phone=PHONE)

    assert inbound(client, "thanks, stop by tomorrow?").status_code == 200
    assert inbound(client, "STOP", sender="+4915199999999").status_code == 200

    assert sms_consent(member.id) == (True, False)
    assert consent.history(member.id) == []


def test_unsigned_forged_or_replayed_elsewhere_requests_are_refused_and_logged(
    client, make, caplog
):
    member = make.member(phone=PHONE)
    params = {"AccountSid": ACCOUNT, "From": PHONE, "Body": "STOP"}
    caplog.set_level(logging.WARNING, logger="notifications.inbound")

    unsigned = client.post(INBOUND, data=params)
    forged = client.post(INBOUND, data=params, headers=signed(INBOUND, params, "not-the-token"))
    tampered = client.post(
        INBOUND, data={**params, "From": "+4915100000000"}, headers=signed(INBOUND, params)
    )
    other_url = client.post(INBOUND, data=params, headers=signed(STATUS, params))
    as_an_admin = client.post(INBOUND, data=params, headers=make.api_key())

    for answer in (unsigned, forged, tampered, other_url, as_an_admin):
        assert answer.status_code == 403
        assert answer.headers["Content-Type"] == "application/problem+json"
    assert sms_consent(member.id) == (True, False)
    reasons = [r.getMessage() for r in caplog.records if r.name == "notifications.inbound"]
    assert len(reasons) == 5
    assert reasons[0].endswith("no signature") and reasons[1].endswith("wrong signature")
    assert all(PHONE not in reason for reason in reasons)


def test_another_accounts_signed_webhook_is_refused(client, make):
    params = {"AccountSid": "AC" + "e" * 32, "From": PHONE, "Body": "STOP"}

    assert client.post(INBOUND, data=params, headers=signed(INBOUND, params)).status_code == 403


def test_without_twilio_configured_every_webhook_is_refused(app, client):
    app.extensions["omniloyal.settings"] = replace(
        app.extensions["omniloyal.settings"], twilio=None
    )
    params = {"From": PHONE, "Body": "STOP"}

    assert client.post(INBOUND, data=params, headers=signed(INBOUND, params)).status_code == 403


def _sent_sms(app, make) -> int:
    """An SMS sent through the real twilio library to the local stub; its message id."""
    member = make.member(phone=PHONE)
    message = queue(member.id)
    with twilio_stub() as stub:
        provider = TwilioSmsProvider(
            app.extensions["omniloyal.settings"].twilio,
            http_client=LocalTwilioHttpClient(stub.base_url, timeout=5),
        )
        providers = dict(app_providers())
        providers[Channel.SMS] = provider
        send_round(providers=providers)
        [request] = stub.received
    assert request.form["StatusCallback"] == f"{BASE}{STATUS}?message_id={message.id}"
    return message.id


def status(client, message_id: int, state: str, **extra: str):
    path = f"{STATUS}?message_id={message_id}"
    sid = reload(message_id).provider_message_id or "SMx"
    params = {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": state, **extra}
    return client.post(path, data=params, headers=signed(path, params))


def test_a_delivered_receipt_marks_the_message_delivered(app, client, make):
    message_id = _sent_sms(app, make)

    answer = status(client, message_id, "delivered")

    assert answer.status_code == 204
    assert reload(message_id).state == "delivered"


def test_an_undelivered_receipt_fails_the_message_with_twilios_error_code(app, client, make):
    message_id = _sent_sms(app, make)

    status(client, message_id, "undelivered", ErrorCode="30003")

    failed = reload(message_id)
    assert (failed.state, failed.reason) == ("failed", "undelivered (Twilio error 30003)")


def test_intermediate_and_late_receipts_never_move_a_message_backwards(app, client, make):
    message_id = _sent_sms(app, make)
    status(client, message_id, "delivered")

    status(client, message_id, "sent")
    status(client, message_id, "failed", ErrorCode="30008")

    assert reload(message_id).state == "delivered"


def test_a_receipt_that_beats_the_send_job_to_the_database_keeps_what_was_sent(app, client, make):
    """Twilio calls back within seconds, while the send job is still at Twilio with the
    rest of its chunk: the receipt finds the message `sending`. It must still say when it
    was sent and under which sid, and count toward the marketing cap."""
    member = make.member(phone=PHONE)
    grant_marketing(member.id)
    message = queue(member.id, template="campaign_offer", purpose=Purpose.MARKETING)
    settings = app.extensions["omniloyal.settings"]
    stats = pipeline.SendStats()
    now = utcnow()
    with twilio_stub() as stub:
        provider = TwilioSmsProvider(
            settings.twilio, http_client=LocalTwilioHttpClient(stub.base_url, timeout=5)
        )
        claims = pipeline.claim_due(
            now, limit=10, settings=settings, providers={**app_providers(), Channel.SMS: provider},
            redis=app.extensions["omniloyal.redis"], stats=stats,
        )  # fmt: skip
        db.session.commit()
        [result] = pipeline.send_chunk(claims)
    path = f"{STATUS}?message_id={message.id}"
    params = {"AccountSid": ACCOUNT, "MessageSid": result.provider_message_id,
              "MessageStatus": "delivered"}  # fmt: skip
    assert client.post(path, data=params, headers=signed(path, params)).status_code == 204

    pipeline.record_results(claims, [result], now, max_attempts=8, stats=stats)
    db.session.commit()

    got = reload(message.id)
    assert got.state == "delivered"
    assert got.provider_message_id == result.provider_message_id
    assert got.sent_at is not None and got.sending_since is None
    assert policies.marketing_sent_count(member.id, now - timedelta(days=1)) == 1


def test_twilios_sent_receipt_settles_a_send_whose_worker_died_before_recording_it(
    app, client, make
):
    """Twilio has no idempotency key and can't be asked by our id, so a send left
    `sending` by a dead worker would be failed as "outcome unknown" after the lease. Its
    `sent` receipt says Twilio has it: the message is sent, and nothing is left to recover."""
    member = make.member(phone=PHONE)
    message = queue(member.id)
    settings = app.extensions["omniloyal.settings"]
    now = utcnow()
    with twilio_stub() as stub:
        provider = TwilioSmsProvider(
            settings.twilio, http_client=LocalTwilioHttpClient(stub.base_url, timeout=5)
        )
        providers = {**app_providers(), Channel.SMS: provider}
        claims = pipeline.claim_due(
            now, limit=10, settings=settings, providers=providers,
            redis=app.extensions["omniloyal.redis"], stats=pipeline.SendStats(),
        )  # fmt: skip
        db.session.commit()
        [result] = pipeline.send_chunk(claims)
    # the worker dies here, before record_results; Twilio calls back
    path = f"{STATUS}?message_id={message.id}"
    params = {"AccountSid": ACCOUNT, "MessageSid": result.provider_message_id,
              "MessageStatus": "sent"}  # fmt: skip
    assert client.post(path, data=params, headers=signed(path, params)).status_code == 204

    later = now + timedelta(minutes=10)
    assert pipeline.recover_orphans(later, lease=timedelta(minutes=5), providers=providers) == 0
    db.session.commit()
    got = reload(message.id)
    assert (got.state, got.provider_message_id) == ("sent", result.provider_message_id)
    assert got.sent_at is not None and len(stub.received) == 1
    assert transitions(message.id)[-1] == ("sent", "sent (Twilio receipt)")


def test_a_send_that_timed_out_after_twilio_took_it_is_not_sent_again(app, client, make):
    """A read timeout is ambiguous: Twilio may have created the message. The pipeline
    defers it for a retry; Twilio's receipt, naming our message id, arrives within seconds
    and settles it as sent, so the retry finds nothing to send (no duplicate SMS)."""
    import time as clock

    member = make.member(phone=PHONE)
    message = queue(member.id)
    now = utcnow()
    with twilio_stub() as stub:
        stub.on_request = lambda: clock.sleep(0.6)  # Twilio answers after we gave up
        provider = TwilioSmsProvider(
            app.extensions["omniloyal.settings"].twilio,
            http_client=LocalTwilioHttpClient(stub.base_url, timeout=0.2),
        )
        providers = {**app_providers(), Channel.SMS: provider}
        send_round(providers=providers, now=now)
        assert reload(message.id).state == "deferred"
        clock.sleep(0.6)  # the stub has created it by now
        [request] = stub.received
        path = f"{STATUS}?message_id={message.id}"
        params = {"AccountSid": ACCOUNT, "MessageSid": "SM" + "e" * 32,
                  "MessageStatus": "queued", "To": request.form["To"]}  # fmt: skip
        assert client.post(path, data=params, headers=signed(path, params)).status_code == 204

        send_round(providers=providers, now=now + timedelta(hours=2))  # the retry is due

        assert len(stub.received) == 1
    settled = reload(message.id)
    assert (settled.state, settled.provider_message_id) == ("sent", "SM" + "e" * 32)
    assert [state for state, _ in transitions(message.id)] == ["queued", "sending", "deferred",
                                                              "sent"]  # fmt: skip


@pytest.mark.postgres
def test_twilio_is_called_with_no_transaction_open(app, make):
    """While Twilio holds the request, no session of this database is inside a transaction:
    a slow provider holds no row locks and no snapshot (the claim committed before)."""

    member = make.member(phone=PHONE)
    queue(member.id)
    queue(member.id)
    seen: list[int] = []

    def count_open_transactions() -> None:
        seen.append(open_transactions(app.config["SQLALCHEMY_DATABASE_URI"]))

    with twilio_stub() as stub:
        stub.on_request = count_open_transactions
        provider = TwilioSmsProvider(
            app.extensions["omniloyal.settings"].twilio,
            http_client=LocalTwilioHttpClient(stub.base_url, timeout=5),
        )
        stats = send_round(providers={**app_providers(), Channel.SMS: provider})

    assert stats.sent == 2
    assert seen == [0, 0]


def test_a_marketing_sms_tells_the_member_to_reply_stop_and_a_transactional_one_does_not(app, make):
    member = make.member(phone=PHONE, locale="zh-CN")
    grant_marketing(member.id)
    offer = queue(member.id, template="campaign_offer", purpose=Purpose.MARKETING)
    earned = queue(member.id)
    with twilio_stub() as stub:
        provider = TwilioSmsProvider(
            app.extensions["omniloyal.settings"].twilio,
            http_client=LocalTwilioHttpClient(stub.base_url, timeout=5),
        )
        send_round(providers={**app_providers(), Channel.SMS: provider})
        bodies = {r.form["StatusCallback"].rsplit("=", 1)[1]: r.form["Body"] for r in stub.received}

    assert bodies[str(offer.id)].endswith("回复STOP退订")
    assert "STOP" not in bodies[str(earned.id)]
    kept = reload(offer.id)
    assert kept.body == bodies[str(offer.id)]
    assert kept.sms_segments == sms_segments(kept.body)


def test_a_receipt_signed_for_another_message_id_is_refused(app, client, make):
    message_id = _sent_sms(app, make)
    params = {"AccountSid": ACCOUNT, "MessageSid": "SMx", "MessageStatus": "failed"}
    signature = signed(f"{STATUS}?message_id={message_id + 1}", params)

    answer = client.post(f"{STATUS}?message_id={message_id}", data=params, headers=signature)

    assert answer.status_code == 403
    assert reload(message_id).state == "sent"


def test_a_receipt_naming_no_message_is_a_422(client):
    params = {"AccountSid": ACCOUNT, "MessageSid": "SMx", "MessageStatus": "delivered"}
    path = f"{STATUS}?message_id=abc"

    answer = client.post(path, data=params, headers=signed(path, params))

    assert answer.status_code == 422


def _send_with_twilio_answering(app, member_id: int, *replies):  # type: ignore[no-untyped-def]
    message = queue(member_id)
    with twilio_stub() as stub:
        stub.replies.extend(replies)
        provider = TwilioSmsProvider(
            app.extensions["omniloyal.settings"].twilio,
            http_client=LocalTwilioHttpClient(stub.base_url, timeout=5),
        )
        now = utcnow()
        send_round(providers={**app_providers(), Channel.SMS: provider}, now=now)
    return reload(message.id), now


def test_a_send_twilio_refuses_with_21610_revokes_sms_consent(app, make):
    member = make.member(phone=PHONE)

    message, _ = _send_with_twilio_answering(
        app, member.id, twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
    )

    assert message.state == "failed" and "21610" in message.reason
    assert sms_consent(member.id) == (False, False)
    assert consent.history(member.id)[-1].source == "provider"


def test_twilio_back_pressure_defers_the_message_no_sooner_than_retry_after(app, make):
    member = make.member(phone=PHONE)

    message, now = _send_with_twilio_answering(
        app, member.id, twilio_error(429, 20429, "Too Many Requests", **{"Retry-After": "600"})
    )

    assert message.state == "deferred"
    assert message.next_attempt_at >= now + timedelta(seconds=600)


def test_an_invalid_number_fails_for_good_with_the_reason(app, make):
    member = make.member(phone=PHONE)

    message, _ = _send_with_twilio_answering(
        app, member.id, twilio_error(400, 21211, "The 'To' number is not a valid phone number")
    )

    assert message.state == "failed"
    assert message.reason == "21211: invalid 'To' phone number"
