"""SMS through Twilio's Programmable Messaging, with the real `twilio` library.

One send is one `POST /2010-04-01/Accounts/{sid}/Messages.json` (form fields `To`, `From` or
`MessagingServiceSid`, `Body`, `StatusCallback`). Twilio's answers map to outcomes:

| Twilio says                                   | outcome       | why                         |
| --------------------------------------------- | ------------- | --------------------------- |
| 201, a message resource                       | ACCEPTED      | its `sid` is kept           |
| HTTP 429, or error 20429 (too many requests)  | RETRY         | back-pressure; Retry-After  |
| HTTP 5xx, a timeout, a connection error       | RETRY         | transient                   |
| 21610 (recipient replied STOP)                | UNSUBSCRIBED  | consent is revoked          |
| 21211 (invalid To), 21614 (not a mobile)      | FAILED        | permanent, with the reason  |
| any other 4xx                                 | FAILED        | a request we can't fix      |

The library never retries on a status code (its retries are mounted for https only), so
back-off is ours: the pipeline schedules the retry no sooner than Retry-After. Errors come
as `TwilioRestException` or, for RFC 9457-style bodies, `TwilioServiceException`, which is
not a subclass of the first: both are caught.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from notifications.providers.base import Channel, Outcome, OutgoingMessage, SendResult
from notifications.providers.settings import TwilioSettings

try:  # twilio >= 9.x: RFC 9457 problem bodies
    from twilio.base.exceptions import TwilioServiceException
except ImportError:  # pragma: no cover - an older library without it
    TwilioServiceException = TwilioRestException  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

UNSUBSCRIBED_CODES = frozenset({21610})
BACK_PRESSURE_CODES = frozenset({20429})
PERMANENT_REASONS = {
    21211: "invalid 'To' phone number",
    21614: "'To' number is not a mobile number",
    21408: "region not enabled for this account",
    21612: "'To' number not reachable from this sender",
}


class _RetryAfterKeeper(HttpClient):
    """Delegates to a real `TwilioHttpClient` and keeps each thread's last Retry-After.

    Twilio's exceptions don't carry response headers; this is how a 429's Retry-After
    reaches the outcome, without sharing state between worker threads."""

    def __init__(self, inner: HttpClient) -> None:
        super().__init__(inner.logger, False, inner.timeout)
        self.inner = inner
        self._local = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self._local.retry_after = None
        response = self.inner.request(*args, **kwargs)
        headers = response.headers or {}
        self._local.retry_after = next(
            (v for k, v in headers.items() if k.lower() == "retry-after"), None
        )
        return response

    @property
    def retry_after(self) -> str | None:
        return getattr(self._local, "retry_after", None)


class TwilioSmsProvider:
    """A `Provider` for the SMS channel. Thread-safe: one client, no per-call state."""

    channel = Channel.SMS
    # Twilio has no idempotency key on message creation: a send that died mid-call is not
    # repeated by the pipeline's crash recovery (at most once; see notifications.pipeline).
    idempotent = False

    def __init__(self, settings: TwilioSettings, *, http_client: TwilioHttpClient | None = None):
        if not settings.messaging_service_sid and not settings.from_number:
            raise ValueError("Twilio needs a Messaging Service SID or a sender number")
        self.name = "twilio"
        self.settings = settings
        inner = http_client or TwilioHttpClient(timeout=settings.timeout_seconds)
        self._http = _RetryAfterKeeper(inner)
        self._client = Client(settings.account_sid, settings.auth_token, http_client=self._http)

    def send(self, message: OutgoingMessage) -> SendResult:
        params: dict[str, Any] = {"to": message.to, "body": message.text}
        if self.settings.messaging_service_sid:
            params["messaging_service_sid"] = self.settings.messaging_service_sid
        else:
            params["from_"] = self.settings.from_number
        if message.status_callback_url:
            params["status_callback"] = message.status_callback_url
        try:
            created = self._client.messages.create(**params)
        except (TwilioRestException, TwilioServiceException) as error:
            return self._from_error(error)
        except (requests.Timeout, requests.ConnectionError) as error:
            log.warning("Twilio unreachable for message %s: %s", message.message_id, error)
            return SendResult(Outcome.RETRY, reason=f"network: {type(error).__name__}")
        except TwilioException as error:  # e.g. an unparseable answer from a proxy
            return SendResult(Outcome.RETRY, reason=f"twilio: {type(error).__name__}")
        return SendResult(Outcome.ACCEPTED, provider_message_id=created.sid)

    def _from_error(self, error: Exception) -> SendResult:
        status = _int(getattr(error, "status", None))
        code = _int(getattr(error, "code", None))
        error_code = str(code) if code is not None else None
        if status == 429 or code in BACK_PRESSURE_CODES:
            return SendResult(
                Outcome.RETRY,
                error_code=error_code or "429",
                reason="Twilio is throttling: too many requests",
                retry_after_seconds=self._retry_after(),
            )
        if code in UNSUBSCRIBED_CODES:
            return SendResult(
                Outcome.UNSUBSCRIBED, error_code=error_code, reason="recipient replied STOP"
            )
        if status is None or status >= 500:
            return SendResult(Outcome.RETRY, error_code=error_code, reason=f"Twilio HTTP {status}")
        reason = PERMANENT_REASONS.get(code or 0) or f"refused by Twilio (HTTP {status})"
        return SendResult(Outcome.FAILED, error_code=error_code, reason=reason)

    def _retry_after(self) -> float | None:
        """Twilio's Retry-After (seconds) from the last response, if it sent one."""
        raw = self._http.retry_after
        try:
            return max(float(raw), 0.0) if raw is not None else None
        except ValueError:
            return None  # an HTTP date: the pipeline's own backoff applies


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
