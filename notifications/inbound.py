"""Twilio's webhooks: inbound SMS (STOP / START / HELP) and delivery status callbacks.

Both are plain form posts from Twilio, outside the API (not under /v1, not in the OpenAPI
document: no API key or member token, Twilio's signature is the credential), and
both are refused (403 problem, logged) unless `X-Twilio-Signature` checks out with twilio's
own `RequestValidator` and our auth token. Twilio signs the exact public URL it called,
query string included; behind a proxy the request we see has another host and scheme, so
the URL is rebuilt from `OMNILOYAL_PUBLIC_BASE_URL` + the path and query we received.

- Inbound: Twilio's `OptOutType` (STOP / START / HELP, set when its Advanced Opt-Out is on)
  decides; without it, the first word of the body is matched against the standard
  keywords. STOP revokes SMS consent for both purposes; START restores transactional SMS
  (marketing needs a fresh opt-in in the app or at a store); every change is recorded with
  source `provider` and the keyword as its place. HELP is answered with TwiML, unless
  Twilio already answered it (OptOutType set). Nothing personal is logged.
- Status callbacks: our message id travels in the callback URL (signed, like the rest);
  `delivered` -> delivered, `failed` / `undelivered` -> failed with Twilio's ErrorCode,
  `queued` / `accepted` / `sent` -> sent when the message is still `sending` or
  `deferred` (Twilio has it: a worker that died before recording the send leaves it
  settled, not "outcome unknown", and a call that timed out after Twilio took it is not
  sent again at its retry); otherwise they add nothing to what the pipeline recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any
from xml.sax.saxutils import escape

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, request
from twilio.request_validator import RequestValidator

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import Forbidden, InvalidInput
from loyalty.http import write_endpoint
from loyalty.members.models import IdentityKind, MemberIdentity
from notifications import pipeline
from notifications.consent import ConsentSource, Purpose, record_consent
from notifications.models import Message
from notifications.providers.base import Channel, OutgoingMessage

log = logging.getLogger(__name__)

blp = Blueprint("twilio_webhooks", __name__)
INBOUND_PATH = "/notifications/twilio/inbound"
STATUS_PATH = "/notifications/twilio/status"

# Twilio's default opt-out, opt-in and help keywords (case-insensitive, whole message).
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
HELP_TEXT = (
    "Omniloyal membership messages. Reply STOP to unsubscribe, START to resubscribe. "
    "Msg & data rates may apply."
)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _settings() -> Any:
    return current_app.extensions["omniloyal.settings"]


def public_url() -> str:
    """The URL Twilio called, as Twilio saw it (what the signature covers)."""
    query = request.query_string.decode("latin-1")
    return _settings().public_base_url + request.path + (f"?{query}" if query else "")


def verify_twilio_signature() -> dict[str, str]:
    """The form parameters of a correctly signed Twilio request; Forbidden otherwise."""
    twilio = _settings().twilio
    signature = request.headers.get("X-Twilio-Signature", "")
    params = request.form.to_dict(flat=True)
    valid = (
        twilio is not None
        and bool(signature)
        and RequestValidator(twilio.auth_token).validate(public_url(), params, signature)
    )
    if not valid:
        log.warning(
            "refused a Twilio webhook: %s",
            "Twilio is not configured"
            if twilio is None
            else ("no signature" if not signature else "wrong signature"),
            extra={"path": request.path, "request_id": g.get("request_id"),
                   "remote_addr": request.remote_addr},
        )  # fmt: skip
        raise Forbidden("X-Twilio-Signature missing or not valid for this URL")
    if params.get("AccountSid") not in (None, twilio.account_sid):
        log.warning("refused a Twilio webhook for another account", extra={"path": request.path})
        raise Forbidden("this webhook is for another Twilio account")
    return params


def _twiml(message: str | None) -> Response:
    body = EMPTY_TWIML
    if message:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Response><Message>{escape(message)}</Message></Response>"
        )
    return Response(body, status=200, mimetype="text/xml")


def keyword(params: dict[str, str]) -> str | None:
    """STOP, START or HELP: Twilio's OptOutType first, else the message's only word."""
    opt_out_type = (params.get("OptOutType") or "").strip().upper()
    if opt_out_type in {"STOP", "START", "HELP"}:
        return opt_out_type
    word = (params.get("Body") or "").strip().upper()
    if word in STOP_WORDS:
        return "STOP"
    if word in START_WORDS:
        return "START"
    if word in HELP_WORDS:
        return "HELP"
    return None


def members_with_phone(phone: str) -> list[int]:
    return list(
        db.session.scalars(
            sa.select(MemberIdentity.member_id).where(
                MemberIdentity.kind == IdentityKind.PHONE.value, MemberIdentity.value == phone
            )
        )
    )


def apply_keyword(phone: str, word: str, *, now: Any) -> int:
    """Record what STOP / START means for the members with this number; how many."""
    if word == "STOP":
        changes = [(Purpose.TRANSACTIONAL, False), (Purpose.MARKETING, False)]
    elif word == "START":
        changes = [(Purpose.TRANSACTIONAL, True)]
    else:
        return 0
    members = members_with_phone(phone)
    for member_id in members:
        for purpose, granted in changes:
            record_consent(
                member_id, Channel.SMS, purpose, granted,
                source=ConsentSource.PROVIDER.value, now=now,
                actor="provider:twilio (inbound SMS)", place=f"sms {word}",
            )  # fmt: skip
    return len(members)


@blp.route(INBOUND_PATH, methods=["POST"])
@write_endpoint(key_required=False)
def inbound_sms() -> Response:
    """An SMS a member sent to our number (Twilio's incoming message webhook)."""
    params = verify_twilio_signature()
    word = keyword(params)
    sender = params.get("From") or ""
    if word in {"STOP", "START"}:
        apply_keyword(sender, word, now=utcnow())
    if word == "HELP" and not params.get("OptOutType"):
        return _twiml(HELP_TEXT)  # Twilio didn't answer it itself
    return _twiml(None)


@blp.route(STATUS_PATH, methods=["POST"])
@write_endpoint(key_required=False)
def status_callback() -> Response:
    """Twilio's delivery receipt for a message we sent."""
    params = verify_twilio_signature()
    raw_id = request.args.get("message_id", "")
    if not raw_id.isdigit() or len(raw_id) > 18:
        raise InvalidInput("the status callback URL names no message", field="message_id")
    message = db.session.get(Message, int(raw_id))
    status = (params.get("MessageStatus") or "").lower()
    sid = (params.get("MessageSid") or "")[:100] or None
    if message is None or (message.provider_message_id not in (None, sid)):
        return Response(status=204)  # not ours (or an older send): nothing to record
    now = utcnow()
    if status in {"queued", "accepted", "sending", "sent"}:
        pipeline.record_provider_event(
            message.id, "sent", reason=f"{status} (Twilio receipt)", now=now,
            provider_message_id=sid,
        )  # fmt: skip
    elif status == "delivered":
        pipeline.record_provider_event(
            message.id, "delivered", reason=None, now=now, provider_message_id=sid
        )
    elif status in {"failed", "undelivered"}:
        code = (params.get("ErrorCode") or "").strip()[:10]
        why = f"{status} (Twilio error {code})" if code else f"{status} (Twilio receipt)"
        pipeline.record_provider_event(
            message.id, "failed", reason=why, now=now, provider_message_id=sid
        )
    return Response(status=204)


def status_callback_url(message_id: int) -> str:
    return f"{_settings().public_base_url}{STATUS_PATH}?message_id={message_id}"


@pipeline.outgoing_hook
def add_status_callback(message: Message, outgoing: OutgoingMessage) -> OutgoingMessage:
    """Every SMS asks Twilio for delivery receipts, naming our message id."""
    if outgoing.channel is not Channel.SMS or outgoing.status_callback_url:
        return outgoing
    return dataclasses.replace(outgoing, status_callback_url=status_callback_url(message.id))
