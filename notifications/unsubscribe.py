"""Unsubscribe links: signed, expiring, and working without a login.

Every marketing message to a member carries `OutgoingMessage.unsubscribe_url`:
`{OMNILOYAL_PUBLIC_BASE_URL}/notifications/unsubscribe/<token>`. The token is signed
with the app's secret (itsdangerous, like member tokens, under its own salt) and names the
member and the channel; it works for `OMNILOYAL_UNSUBSCRIBE_TOKEN_DAYS` (default 90).

- GET shows a page (templates/pages/unsubscribe.html) with one button; it changes nothing,
  because mail scanners and link previews fetch links.
- POST unsubscribes: the page's button, and RFC 8058's one-click POST a mail client sends
  on its own (`List-Unsubscribe=One-Click`, form-encoded; no cookies, no login). Marketing
  consent on that channel is revoked with source `web`, recorded in the history. Posting
  twice is harmless.
A link that is forged, altered or expired changes nothing: a page (GET) or a problem
(POST), 404 or 410.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import NotFound, OmniloyalError
from loyalty.http import write_endpoint
from loyalty.members.models import Member, MemberStatus
from loyalty.members.resolution import current_member_id
from notifications import pipeline
from notifications.consent import ConsentSource, Purpose, record_consent
from notifications.models import Message
from notifications.providers.base import Channel, OutgoingMessage

blp = Blueprint("unsubscribe", __name__)
PATH = "/notifications/unsubscribe/<token>"
SALT = "unsubscribe-link"
PAGES = Path(__file__).resolve().parent.parent / "templates" / "pages"
_pages = Environment(loader=FileSystemLoader(PAGES), autoescape=select_autoescape(["html"]))

TEXTS = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Stop receiving offers and news from us by {channel}? Messages about your "
        "account, such as points and login codes, are not affected.",
        "button": "Unsubscribe",
        "done": "Done: you will no longer receive offers by {channel}. You can opt in again "
        "in the app or at a store.",
        "invalid": "This link is not valid or has expired. You can change your preferences "
        "in the app.",
    },
    "zh-CN": {
        "title": "退订",
        "ask": "不再通过{channel}接收优惠和资讯？积分、登录验证码等账户消息不受影响。",  # noqa: RUF001 (Chinese punctuation)
        "button": "退订",
        "done": "已退订：您将不再通过{channel}收到优惠信息。您可以在应用或门店重新订阅。",  # noqa: RUF001
        "invalid": "此链接无效或已过期。您可以在应用中更改偏好设置。",
    },
}
CHANNEL_NAMES = {
    "en": {"email": "email", "sms": "SMS", "push": "push notification"},
    "zh-CN": {"email": "电子邮件", "sms": "短信", "push": "推送通知"},
}


class LinkExpired(OmniloyalError):
    """The unsubscribe link is older than OMNILOYAL_UNSUBSCRIBE_TOKEN_DAYS."""

    status, slug, title = 410, "link-expired", "Link expired"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def make_token(member_id: int, channel: Channel) -> str:
    return _serializer().dumps({"m": member_id, "c": Channel(channel).value})


def read_token(token: str) -> tuple[int, Channel]:
    """Member and channel of a valid link; NotFound (forged) or LinkExpired (too old)."""
    max_age = current_app.extensions["omniloyal.settings"].unsubscribe_token_days * 86400
    try:
        payload = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkExpired("this unsubscribe link has expired") from None
    except BadSignature:
        raise NotFound("no such unsubscribe link") from None
    member_id, channel = payload.get("m"), payload.get("c")
    if not isinstance(member_id, int) or isinstance(member_id, bool):
        raise NotFound("no such unsubscribe link")
    try:
        return member_id, Channel(channel)
    except ValueError:
        raise NotFound("no such unsubscribe link") from None


def unsubscribe_url(member_id: int, channel: Channel) -> str:
    base = current_app.extensions["omniloyal.settings"].public_base_url
    return f"{base}{PATH.replace('<token>', make_token(member_id, channel))}"


@pipeline.outgoing_hook
def add_unsubscribe_url(message: Message, outgoing: OutgoingMessage) -> OutgoingMessage:
    """Marketing to a member carries its signed link (email puts it in List-Unsubscribe)."""
    if not outgoing.marketing or outgoing.member_id is None or outgoing.unsubscribe_url:
        return outgoing
    url = unsubscribe_url(outgoing.member_id, outgoing.channel)
    return dataclasses.replace(outgoing, unsubscribe_url=url)


def unsubscribe(member_id: int, channel: Channel, *, how: str, now: Any) -> bool:
    """Revoke marketing consent on `channel` (False: the member is gone; nothing to do)."""
    person = db.session.get(Member, current_member_id(member_id))
    if person is None or person.status == MemberStatus.ERASED.value:
        return False
    record_consent(
        person.id, channel, Purpose.MARKETING, False,
        source=ConsentSource.WEB.value, now=now, actor="unsubscribe link", place=how,
    )  # fmt: skip
    return True


def _page(state: str, member_id: int | None, channel: Channel | None, status: int) -> Response:
    person = db.session.get(Member, member_id) if member_id is not None else None
    lang = "zh-CN" if person is not None and (person.locale or "").startswith("zh") else "en"
    name = CHANNEL_NAMES[lang].get(channel.value if channel else "", "")
    texts = {key: text.format(channel=name) for key, text in TEXTS[lang].items()}
    html = _pages.get_template("unsubscribe.html").render(state=state, t=texts, lang=lang)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token stays out of referrers
    return response


@blp.route(PATH, methods=["GET"])
def unsubscribe_page(token: str) -> Response:
    """The page behind the link: asks, changes nothing."""
    try:
        member_id, channel = read_token(token)
    except OmniloyalError as error:
        return _page("invalid", None, None, error.status)
    return _page("ask", member_id, channel, 200)


@blp.route(PATH, methods=["POST"])
@write_endpoint(key_required=False)
def unsubscribe_now(token: str) -> Response:
    """RFC 8058 one-click (and the page's button): unsubscribe, no login."""
    member_id, channel = read_token(token)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    unsubscribe(member_id, channel, how="one-click" if one_click else "link", now=utcnow())
    return _page("done", member_id, channel, 200)
