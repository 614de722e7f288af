"""Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payloads (RFC 8291), via pywebpush.

The destination is a browser subscription as JSON (`endpoint`, `keys.p256dh`, `keys.auth`;
`expirationTime` may be null), stored by `notifications.push`. The payload is JSON:
`{"title", "body", "message_id", "data"}`; the service worker shows it.

pywebpush writes `aud` and `exp` into the claims dict it is given, so each call gets a fresh
dict (one shared dict would carry the first push service's `aud` to the next: 403). The key
is a `Vapid` object made once from the configured base64url private key (pywebpush refuses
a PEM string). pywebpush's default TTL is 0 (dropped unless the device is online right
now), so every push sets one.

| push service says             | outcome  |
| ----------------------------- | -------- |
| 201 / 202                     | ACCEPTED |
| 404 / 410                     | GONE: the subscription is removed (`notifications.push`) |
| 429, 5xx, network errors      | RETRY (Retry-After honoured) |
| 400 / 403 / 413, other 4xx    | FAILED   |
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from notifications.providers.base import Channel, Outcome, OutgoingMessage, SendResult
from notifications.providers.settings import WebPushSettings

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 24 * 3600


def parse_subscription(raw: str) -> dict[str, Any]:
    """The `subscription_info` pywebpush wants, from stored subscription JSON."""
    data = json.loads(raw)
    keys = data.get("keys") or {}
    if not isinstance(data.get("endpoint"), str) or not keys.get("p256dh") or not keys.get("auth"):
        raise ValueError("a push subscription needs endpoint, keys.p256dh and keys.auth")
    return {"endpoint": data["endpoint"], "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}


class WebPushProvider:
    """A `Provider` for the push channel. FCM or APNs would be siblings of this class."""

    channel = Channel.PUSH
    idempotent = False

    def __init__(self, settings: WebPushSettings) -> None:
        if not settings.vapid_subject.startswith(("mailto:", "https://")):
            raise ValueError("the VAPID subject is a mailto: or https: URL (RFC 8292)")
        self.name = "webpush"
        self.settings = settings
        self._vapid = Vapid.from_string(private_key=settings.vapid_private_key)

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            subscription = parse_subscription(message.to)
        except (ValueError, AttributeError) as error:
            return SendResult(Outcome.GONE, reason=f"unusable subscription: {error}")
        payload = {
            "title": message.subject or "",
            "body": message.text,
            "message_id": message.message_id,
            "data": dict(message.data),
        }
        try:
            response = webpush(
                subscription_info=subscription,
                data=json.dumps(payload, ensure_ascii=False),
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self.settings.vapid_subject},  # fresh per call
                ttl=message.ttl_seconds or self.settings.ttl_seconds,
                timeout=self.settings.timeout_seconds,
            )
        except WebPushException as error:
            if error.response is None:  # refused before sending: keys that don't decode
                return SendResult(Outcome.GONE, reason=f"unusable subscription: {error.message}")
            return _from_status(error.response)
        except (requests.Timeout, requests.ConnectionError) as error:
            log.warning("push service unreachable for message %s", message.message_id)
            return SendResult(Outcome.RETRY, reason=f"network: {type(error).__name__}")
        if not isinstance(response, requests.Response):  # pywebpush's curl mode only
            return SendResult(Outcome.ACCEPTED)
        if response.status_code >= 300:
            return _from_status(response)
        return SendResult(Outcome.ACCEPTED, provider_message_id=response.headers.get("Location"))


def _from_status(response: requests.Response) -> SendResult:
    status = response.status_code
    code = str(status)
    if status in (404, 410):
        return SendResult(Outcome.GONE, error_code=code, reason="subscription expired")
    if status == 429 or status >= 500:
        return SendResult(
            Outcome.RETRY,
            error_code=code,
            reason=f"push service HTTP {status}",
            retry_after_seconds=_seconds(response.headers.get("Retry-After")),
        )
    if status == 413:
        return SendResult(Outcome.FAILED, error_code=code, reason="payload too large")
    return SendResult(Outcome.FAILED, error_code=code, reason=f"push service HTTP {status}")


def _seconds(raw: str | None) -> float | None:
    try:
        return max(float(raw), 0.0) if raw else None
    except ValueError:
        return None
