"""Web Push encrypted by pywebpush and decrypted by a local push service (http_ece)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from notifications.providers.base import Channel, Outcome, OutgoingMessage
from notifications.providers.settings import WebPushSettings
from notifications.providers.webpush import WebPushProvider
from tests.notifications.servers import PushService, Reply, push_service, vapid_private_key_b64


@pytest.fixture
def service() -> Iterator[PushService]:
    with push_service() as server:
        yield server


@pytest.fixture
def provider() -> WebPushProvider:
    return WebPushProvider(
        WebPushSettings(vapid_private_key_b64(), "mailto:ops@loyalty.example.com", ttl_seconds=600)
    )


def push(subscription: dict[str, object], **fields: object) -> OutgoingMessage:
    values: dict[str, object] = {
        "message_id": 9,
        "channel": Channel.PUSH,
        "to": json.dumps(subscription),
        "subject": "积分到账",
        "text": "You earned 120 points",
        "data": {"url": "/rewards"},
    }
    return OutgoingMessage(**{**values, **fields})  # type: ignore[arg-type]


def test_the_push_service_decrypts_the_payload_with_the_subscriptions_keys(
    service: PushService, provider: WebPushProvider
) -> None:
    browser = service.subscribe()

    result = provider.send(push(browser.as_json()))  # "expirationTime": null included

    assert result.outcome is Outcome.ACCEPTED
    assert service.errors == []  # VAPID JWT verified, aud = the push service's origin
    [request] = service.received
    assert request.headers["Content-Encoding"] == "aes128gcm"
    assert request.headers["TTL"] == "600"  # never pywebpush's default 0
    assert request.payload == {
        "title": "积分到账",
        "body": "You earned 120 points",
        "message_id": 9,
        "data": {"url": "/rewards"},
    }


def test_a_messages_own_ttl_wins(service: PushService, provider: WebPushProvider) -> None:
    provider.send(push(service.subscribe().as_json(), ttl_seconds=30))

    assert service.received[0].headers["TTL"] == "30"


def test_two_push_services_each_get_their_own_audience(provider: WebPushProvider) -> None:
    """pywebpush writes `aud` into the claims dict: one shared dict would 403 the second."""
    with push_service() as first, push_service() as second:
        one = provider.send(push(first.subscribe().as_json()))
        two = provider.send(push(second.subscribe().as_json()))

        assert (one.outcome, two.outcome) == (Outcome.ACCEPTED, Outcome.ACCEPTED)
        assert first.errors == second.errors == []


@pytest.mark.parametrize("status", [404, 410])
def test_an_expired_subscription_is_gone(
    service: PushService, provider: WebPushProvider, status: int
) -> None:
    service.replies.append(Reply(status))

    result = provider.send(push(service.subscribe().as_json()))

    assert (result.outcome, result.error_code) == (Outcome.GONE, str(status))


def test_throttling_and_outages_are_retried(
    service: PushService, provider: WebPushProvider
) -> None:
    service.replies += [Reply(429, None, {"Retry-After": "120"}), Reply(503)]
    subscription = service.subscribe().as_json()

    throttled = provider.send(push(subscription))
    down = provider.send(push(subscription))

    assert (throttled.outcome, throttled.retry_after_seconds) == (Outcome.RETRY, 120)
    assert down.outcome is Outcome.RETRY


def test_a_payload_too_large_fails_for_good(
    service: PushService, provider: WebPushProvider
) -> None:
    service.replies.append(Reply(413))

    assert provider.send(push(service.subscribe().as_json())).outcome is Outcome.FAILED


def test_a_subscription_without_keys_is_unusable(provider: WebPushProvider) -> None:
    result = provider.send(push({"endpoint": "https://push.example.com/x", "keys": {}}))

    assert result.outcome is Outcome.GONE


def test_the_vapid_subject_must_be_a_mailto_or_https_url() -> None:
    with pytest.raises(ValueError, match="mailto"):
        WebPushProvider(WebPushSettings(vapid_private_key_b64(), "ops@example.com"))
