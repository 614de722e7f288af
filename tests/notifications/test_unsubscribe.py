"""Unsubscribe links: a marketing mail sent over SMTP to a real server carries a signed
one-click link; the page asks, the POST (RFC 8058) unsubscribes without a login."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from loyalty.clock import utcnow
from loyalty.db import db
from notifications import consent, unsubscribe
from notifications.consent import Purpose
from notifications.jobs import providers as app_providers
from notifications.providers.base import Channel
from notifications.providers.settings import SmtpSettings, SmtpTls
from notifications.providers.smtp_email import SmtpEmailProvider
from tests.notifications.factories import queue, reload, send_round
from tests.notifications.servers import smtp_server

BASE = "https://loyalty.example.com"


@pytest.fixture(autouse=True)
def public_base_url(app: Flask) -> Iterator[None]:
    settings = app.extensions["omniloyal.settings"]
    app.extensions["omniloyal.settings"] = replace(settings, public_base_url=BASE)
    yield
    app.extensions["omniloyal.settings"] = settings


def opted_in(make, **profile):  # type: ignore[no-untyped-def]
    member = make.member(email="jane@example.com", **profile)
    consent.record_consent(member.id, Channel.EMAIL, Purpose.MARKETING, True,
                           source="app", now=utcnow(), actor="test")  # fmt: skip
    db.session.commit()
    return member


def marketing_allowed(member_id: int) -> bool:
    allowed = consent.allows(member_id, Channel.EMAIL, Purpose.MARKETING)
    db.session.rollback()
    return allowed


def link_path(member_id: int, channel: Channel = Channel.EMAIL) -> str:
    return urlsplit(unsubscribe.unsubscribe_url(member_id, channel)).path


def test_a_marketing_mail_carries_a_link_that_unsubscribes_in_one_click(client, make):
    member = opted_in(make)
    message = queue(member.id, channel=Channel.EMAIL, purpose=Purpose.MARKETING)
    with smtp_server() as server:
        smtp = SmtpEmailProvider(
            SmtpSettings("127.0.0.1", server.port, "news@loyalty.example.com", tls=SmtpTls.NONE)
        )
        send_round(providers={**app_providers(), Channel.EMAIL: smtp})
        [mail] = server.mails
    assert reload(message.id).state == "sent"
    received = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"\s*<([^>]+)>", received["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    assert url.startswith(f"{BASE}/notifications/unsubscribe/")

    # What a mail client does for RFC 8058: a form POST, no cookies, no credentials.
    answer = client.post(urlsplit(url).path, data={"List-Unsubscribe": "One-Click"})

    assert answer.status_code == 200
    assert not marketing_allowed(member.id)
    last = consent.history(member.id)[-1]
    assert (last.source, last.place, last.actor) == ("web", "one-click", "unsubscribe link")
    assert consent.allows(member.id, Channel.EMAIL, Purpose.TRANSACTIONAL)


def test_a_marketing_mail_shows_the_same_link_in_its_text_and_html(make):
    member = opted_in(make)
    message = queue(member.id, channel=Channel.EMAIL, purpose=Purpose.MARKETING,
                    template="campaign_offer")  # fmt: skip
    with smtp_server() as server:
        smtp = SmtpEmailProvider(
            SmtpSettings("127.0.0.1", server.port, "news@loyalty.example.com", tls=SmtpTls.NONE)
        )
        send_round(providers={**app_providers(), Channel.EMAIL: smtp})
        [mail] = server.mails
    received = email.message_from_bytes(mail.data, policy=email.policy.default)
    url = received["List-Unsubscribe"].strip()[1:-1]
    text = received.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html = received.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f"Unsubscribe: {url}" in text
    assert f'<a href="{url}">Unsubscribe</a>' in html
    assert reload(message.id).body == text.rstrip("\n")  # what was sent is what is kept


def test_a_transactional_mail_has_no_unsubscribe_link(make):
    member = make.member(email="jane@example.com")
    queue(member.id, channel=Channel.EMAIL)
    with smtp_server() as server:
        smtp = SmtpEmailProvider(
            SmtpSettings("127.0.0.1", server.port, "news@loyalty.example.com", tls=SmtpTls.NONE)
        )
        send_round(providers={**app_providers(), Channel.EMAIL: smtp})
        [mail] = server.mails

    assert b"List-Unsubscribe" not in mail.data


def test_the_page_asks_and_changes_nothing(client, make):
    member = opted_in(make)

    page = client.get(link_path(member.id))

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert '<form method="post"' in page.text and "offers and news from us by email" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert marketing_allowed(member.id)


def test_the_pages_button_unsubscribes_and_a_second_post_is_harmless(client, make):
    member = opted_in(make)
    path = link_path(member.id)

    first = client.post(path, data={"List-Unsubscribe": "One-Click"})
    second = client.post(path)

    assert (first.status_code, second.status_code) == (200, 200)
    assert "no longer receive offers by email" in second.text
    assert not marketing_allowed(member.id)


def test_the_page_speaks_the_members_language(client, make):
    member = opted_in(make, locale="zh-CN")

    page = client.get(link_path(member.id))

    assert "退订" in page.text and "电子邮件" in page.text


def test_a_link_only_unsubscribes_its_own_channel(client, make):
    member = opted_in(make)
    consent.record_consent(member.id, Channel.SMS, Purpose.MARKETING, True,
                           source="app", now=utcnow(), actor="test")  # fmt: skip
    db.session.commit()

    client.post(link_path(member.id, Channel.SMS))

    assert marketing_allowed(member.id)
    assert not consent.allows(member.id, Channel.SMS, Purpose.MARKETING)


def tampered(token: str) -> str:
    """The token with the signature's first character changed: always a different signature
    (changing its last character may not be, as base64 ignores that character's low bits)."""
    payload, timestamp, signature = token.rsplit(".", 2)
    first = "B" if signature[0] == "A" else "A"
    return f"{payload}.{timestamp}.{first}{signature[1:]}"


def test_forged_tampered_and_foreign_tokens_change_nothing(client, app, make):
    member = opted_in(make)
    path = link_path(member.id)
    foreign = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="member-app").dumps(
        {"m": member.id, "c": "email"}
    )
    other_secret = URLSafeTimedSerializer("x" * 40, salt=unsubscribe.SALT).dumps(
        {"m": member.id, "c": "email"}
    )
    prefix = "/notifications/unsubscribe/"

    for token in (tampered(path.removeprefix(prefix)), foreign, other_secret, "nonsense"):
        posted = client.post(prefix + token)
        shown = client.get(prefix + token)
        assert posted.status_code == 404
        assert posted.headers["Content-Type"] == "application/problem+json"
        assert shown.status_code == 404 and "not valid or has expired" in shown.text
    assert marketing_allowed(member.id)


def test_an_expired_link_is_410(client, app, make):
    member = opted_in(make)
    path = link_path(member.id)
    settings = app.extensions["omniloyal.settings"]
    days = settings.unsubscribe_token_days
    old = int((utcnow() - timedelta(days=days, minutes=1)).timestamp())

    class SignedLongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return old

    stale = URLSafeTimedSerializer(
        app.config["SECRET_KEY"], salt=unsubscribe.SALT, signer=SignedLongAgo
    ).dumps({"m": member.id, "c": "email"})

    answer = client.post("/notifications/unsubscribe/" + stale)
    page = client.get("/notifications/unsubscribe/" + stale)

    assert answer.status_code == 410
    assert page.status_code == 410
    assert marketing_allowed(member.id)
    assert client.post(path).status_code == 200  # a fresh one still works


def test_an_erased_members_link_does_nothing_and_does_not_fail(client, make):
    member = opted_in(make)
    path = link_path(member.id)
    admin = make.api_key()
    from tests.factories import idem

    assert client.post(f"/v1/members/{member.id}/erase", headers=idem(admin)).status_code == 200

    assert client.post(path).status_code == 200
