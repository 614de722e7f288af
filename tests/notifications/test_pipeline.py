"""The delivery pipeline: queued at most once, sent outside any transaction, every state
change recorded with its reason; retries, permanent failures, opt-outs and gone
destinations each handled as the provider's outcome says."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.db import db
from notifications import consent, pipeline
from notifications.consent import Purpose
from notifications.models import Message
from notifications.providers.base import Channel, Outcome, SendResult
from tests.notifications.factories import (
    ScriptedProvider,
    providers_with,
    queue,
    recorded,
    reload,
    send_round,
    transitions,
)

PHONE = "+4915112345678"


def test_a_cause_queues_its_message_at_most_once(make):
    member = make.member(phone=PHONE)
    first = queue(member.id, dedupe_key="points.earned:1:sms")
    again = pipeline.queue_message(
        member_id=member.id, channel=Channel.SMS, template="points_earned",
        purpose=Purpose.TRANSACTIONAL, dedupe_key="points.earned:1:sms",
        variables={"points": 10}, now=utcnow(),
    )  # fmt: skip
    db.session.commit()
    assert again is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 1
    assert first.state == "queued" and first.destination is None  # resolved at send time


def test_a_cause_reaching_many_members_creates_their_messages_in_bulk_at_most_once(make):
    members = [make.member(phone=f"+49151000000{n:02d}") for n in range(12)]
    drafts = [
        pipeline.Draft(member_id=m.id, channel=Channel.SMS, template="points_earned",
                       purpose=Purpose.TRANSACTIONAL, dedupe_key=f"offer:7:{m.id}:sms",
                       variables={"points": 10})
        for m in members
    ]  # fmt: skip
    created = pipeline.create_messages(drafts, utcnow())
    again = pipeline.create_messages(drafts[:5], utcnow())  # the cause run a second time
    db.session.commit()
    assert len(created) == 12 and again == {}
    from flask import current_app

    from notifications.jobs import providers

    stats = pipeline.send_due(
        settings=current_app.extensions["omniloyal.settings"], providers=providers(),
        redis=current_app.extensions["omniloyal.redis"], clock=utcnow, chunk=5,
    )  # three chunks: 5, 5, 2 # fmt: skip
    assert stats.sent == 12
    assert sorted(r.message_id for r in recorded()) == sorted(created.values())
    first = min(created.values())
    assert [state for state, _ in transitions(first)] == ["queued", "sending", "sent"]


def test_a_message_queued_in_a_rolled_back_transaction_never_exists(make):
    member = make.member(phone=PHONE)
    pipeline.queue_message(
        member_id=member.id, channel=Channel.SMS, template="points_earned",
        purpose=Purpose.TRANSACTIONAL, dedupe_key="k", variables={}, now=utcnow(),
    )  # fmt: skip
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_a_sent_message_records_destination_rendered_text_version_and_each_transition(make):
    member = make.member(phone=PHONE, name="Ada", points=250)
    message = queue(member.id, variables={"points": 40})
    stats = send_round()
    assert stats.sent == 1
    sent = reload(message.id)
    assert sent.state == "sent" and sent.destination == PHONE
    assert "40" in sent.body and "250" in sent.body and "Ada" in sent.body
    assert sent.template_version == 0 and sent.locale == "en"  # the shipped default
    assert sent.sms_segments == 1 and sent.attempts == 1 and sent.sent_at is not None
    assert [state for state, _ in transitions(message.id)] == ["queued", "sending", "sent"]
    (row,) = recorded()
    assert row.message_id == message.id and row.destination == PHONE and row.calls == 1


def test_chinese_members_get_chinese_text_counted_in_ucs2_segments(make):
    member = make.member(phone=PHONE, name="李雷", locale="zh-CN", timezone="Asia/Shanghai")
    message = queue(member.id, variables={"points": 1234})
    send_round()
    sent = reload(message.id)
    assert sent.locale == "zh-CN" and "积分" in sent.body and "1,234" in sent.body
    assert sent.sms_segments == (1 if len(sent.body) <= 70 else -(-len(sent.body) // 67))


def test_an_unknown_locale_falls_back_to_the_language_then_english(make):
    member = make.member(phone=PHONE, locale="zh-TW")
    message = queue(member.id)
    send_round()
    assert reload(message.id).locale == "en"  # no zh-TW, no zh: English


def test_a_member_without_a_phone_number_is_suppressed_with_the_reason(make):
    member = make.member()
    message = queue(member.id)
    send_round()
    assert reload(message.id).state == "suppressed"
    assert transitions(message.id)[-1] == ("suppressed", "no sms destination on file")


def test_a_transient_failure_is_retried_with_backoff_and_then_sent(make):
    member = make.member(phone=PHONE)
    provider = ScriptedProvider(
        Channel.SMS, SendResult(Outcome.RETRY, error_code="20429", reason="too many requests")
    )
    message = queue(member.id)
    now = utcnow()
    send_round(now=now, providers=providers_with(provider))
    waiting = reload(message.id)
    assert waiting.state == "deferred" and waiting.reason == "retry: 20429: too many requests"
    assert now + timedelta(seconds=15) <= waiting.next_attempt_at <= now + timedelta(seconds=30)
    send_round(now=now + timedelta(seconds=10), providers=providers_with(provider))
    assert len(provider.calls) == 1  # not due yet
    send_round(now=now + timedelta(seconds=31), providers=providers_with(provider))
    assert reload(message.id).state == "sent" and len(provider.calls) == 2


def test_retries_stop_after_the_maximum_attempts(make):
    member = make.member(phone=PHONE)
    provider = ScriptedProvider(Channel.SMS, *[SendResult(Outcome.RETRY)] * 5)
    message = queue(member.id)
    now = utcnow()
    for hour in range(3):
        send_round(now=now + timedelta(hours=hour), providers=providers_with(provider),
                   notify_max_attempts=3)  # fmt: skip
    failed = reload(message.id)
    assert failed.state == "failed" and failed.reason.startswith("gave up after 3 attempts")
    assert len(provider.calls) == 3


def test_a_permanent_failure_is_not_retried(make):
    member = make.member(phone=PHONE)
    provider = ScriptedProvider(
        Channel.SMS, SendResult(Outcome.FAILED, error_code="21614", reason="not a mobile number")
    )
    message = queue(member.id)
    now = utcnow()
    send_round(now=now, providers=providers_with(provider))
    send_round(now=now + timedelta(hours=2), providers=providers_with(provider))
    failed = reload(message.id)
    assert (failed.state, failed.reason) == ("failed", "21614: not a mobile number")
    assert len(provider.calls) == 1


def test_an_unsubscribed_recipient_revokes_consent_recorded_as_the_providers(make):
    member = make.member(phone=PHONE)
    consent.record_consent(member.id, Channel.SMS, Purpose.MARKETING, True,
                           source="store", now=utcnow(), actor="client:1:till")  # fmt: skip
    db.session.commit()
    provider = ScriptedProvider(Channel.SMS, SendResult(Outcome.UNSUBSCRIBED, error_code="21610"))
    message = queue(member.id)
    send_round(providers=providers_with(provider))
    assert reload(message.id).state == "failed"
    assert not consent.allows(member.id, Channel.SMS, Purpose.MARKETING)
    assert not consent.allows(member.id, Channel.SMS, Purpose.TRANSACTIONAL)
    assert consent.allows(member.id, Channel.EMAIL, Purpose.TRANSACTIONAL)
    last = consent.history(member.id)[-1]
    assert (last.source, last.actor, last.granted) == ("provider", "provider:scripted-sms", False)


def test_a_gone_destination_is_reported_to_its_owner(make):
    member = make.member(phone=PHONE)
    told = []
    pipeline.on_gone(Channel.SMS)(lambda member_id, to, now: told.append((member_id, to)))
    try:
        provider = ScriptedProvider(Channel.SMS, SendResult(Outcome.GONE, error_code="410"))
        message = queue(member.id)
        send_round(providers=providers_with(provider))
    finally:
        pipeline._gone_handlers[Channel.SMS].clear()
    assert told == [(member.id, PHONE)]
    assert reload(message.id).reason == "destination no longer exists (410)"


def test_a_provider_that_raises_is_a_transient_failure(make):
    member = make.member(phone=PHONE)

    class Broken(ScriptedProvider):
        def send(self, message):
            raise TimeoutError("read timed out")

    message = queue(member.id)
    send_round(providers=providers_with(Broken(Channel.SMS)))
    waiting = reload(message.id)
    assert (waiting.state, waiting.reason) == ("deferred", "retry: provider raised TimeoutError")


def test_status_callbacks_move_sent_messages_forward_never_back(make):
    member = make.member(phone=PHONE)
    message = queue(member.id)
    send_round()
    now = utcnow()
    assert pipeline.record_provider_event(message.id, "delivered", reason=None, now=now)
    db.session.commit()
    assert not pipeline.record_provider_event(message.id, "failed", reason="late", now=now)
    db.session.commit()
    delivered = reload(message.id)
    assert delivered.state == "delivered" and delivered.delivered_at is not None


def test_a_login_code_goes_to_the_given_number_without_a_member(make):
    message = queue(None, template="login_code", variables={"code": "493817"},
                    destination="+8613800138000")  # fmt: skip
    send_round()
    sent = reload(message.id)
    assert sent.state == "sent" and "493817" in sent.body and sent.destination == "+8613800138000"


@pytest.mark.postgres
def test_two_workers_claiming_at_once_send_each_message_once(make):
    from flask import current_app

    from tests.concurrency import in_threads

    member = make.member(phone=PHONE)
    ids = [queue(member.id).id for _ in range(60)]
    in_threads(current_app._get_current_object(), 2, lambda i: send_round())
    rows = recorded()
    assert sorted(r.message_id for r in rows) == ids
    assert all(r.calls == 1 for r in rows)
